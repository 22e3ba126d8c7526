#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need,
# checks formatting and lints, then runs every test (unit, conformance, CLI).
set -euo pipefail
cd "$(dirname "$0")/.."

# Real peers the tests talk to: docker-compose 1.29.2 (config agreement),
# the Docker Engine (`berth save` | `docker load`), a registry on loopback.
need_apt=()
command -v docker-compose >/dev/null || need_apt+=(docker-compose)
command -v dockerd >/dev/null || need_apt+=(docker.io)
command -v docker-registry >/dev/null || need_apt+=(docker-registry)
command -v ip >/dev/null || [ -x /usr/sbin/ip ] || need_apt+=(iproute2)
# The sandbox tests run a static busybox; images.rs packs a project with npm;
# base images for x-runtime services are made by mmdebstrap from Debian's packages.
command -v npm >/dev/null || need_apt+=(npm)
command -v mmdebstrap >/dev/null || need_apt+=(mmdebstrap)
dpkg -s busybox-static >/dev/null 2>&1 || need_apt+=(busybox-static)
command -v iptables >/dev/null || [ -x /usr/sbin/iptables ] || need_apt+=(iptables)
# The multi-service test builds an image around Debian's redis-server;
# nsenter (util-linux) looks into containers from the host.
command -v redis-server >/dev/null || [ -x /usr/bin/redis-server ] || need_apt+=(redis-server)
command -v nsenter >/dev/null || need_apt+=(util-linux)
# The swarm tests' cluster (scripts/swarm-cluster.sh) checks its registry with curl.
command -v curl >/dev/null || need_apt+=(curl)
if ((${#need_apt[@]})); then
  echo "installing: ${need_apt[*]}"
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "run as root (or install ${need_apt[*]}) first" >&2
    exit 1
  fi
fi
# Debian's package starts a registry service on :5000; the tests start their
# own on free loopback ports, so it is not needed.
if ! docker info >/dev/null 2>&1; then
  echo "starting dockerd"
  # Its own session: it must outlive the shell (and process group) that started it.
  setsid -f dockerd >/tmp/berth-test-dockerd.log 2>&1 </dev/null
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  docker info >/dev/null 2>&1 || { echo "dockerd did not start; see /tmp/berth-test-dockerd.log" >&2; exit 1; }
fi

if [ ! -d ../shared/conformance ]; then
  echo "../shared/conformance is missing: the peer suites are read from there" >&2
  exit 1
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings

# berth without the embedded engine's runtime (`--no-default-features`): it
# must not link libcontainer, and must still validate and plan; `up` says
# in one line what the build lacks.
cargo clippy -p berth-cli -p berth-engine-embedded --no-default-features --all-targets -- -D warnings
if cargo tree -p berth-cli --no-default-features -e normal --prefix none | grep -q '^libcontainer '; then
  echo "berth built with --no-default-features links libcontainer" >&2
  exit 1
fi
cargo build -q -p berth-cli --no-default-features
lean=$(mktemp -d /tmp/berth-lean.XXXXXX)
cp "${CARGO_TARGET_DIR:-target}/debug/berth" "$lean/berth"
mkdir "$lean/project"
printf 'FROM scratch\nCOPY hello /hello\n' >"$lean/project/Dockerfile"
echo hello >"$lean/project/hello"
printf 'name: lean\nservices:\n  a:\n    build: .\n    command: ["/hello"]\n' >"$lean/project/compose.yml"
(
  cd "$lean/project"
  export BERTH_STATE_DIR="$lean/state"
  "$lean/berth" config -q
  "$lean/berth" up --dry-run | grep -q 'create .*lean-a-1'
  if "$lean/berth" up -d 2>"$lean/up.err"; then
    echo "berth without the runtime started a project" >&2
    exit 1
  fi
  grep -q "built without the embedded engine's runtime" "$lean/up.err"
) || { echo "berth without the runtime: config, up --dry-run or up's refusal failed" >&2; exit 1; }
rm -rf "$lean"
echo "berth --no-default-features: no libcontainer; config, up --dry-run and up's one-line refusal checked"
# One run of the suite; its output is kept so the peer suites' pass rates
# (the `conformance …` lines the tests print) can be listed at the end.
out=$(mktemp /tmp/berth-test-output.XXXXXX)
status=0
if command -v cargo-nextest >/dev/null; then
  cargo nextest run --workspace --no-fail-fast --success-output final --failure-output final 2>&1 | tee "$out" || status=$?
else
  cargo test --workspace --no-fail-fast -- --nocapture 2>&1 | tee "$out" || status=$?
fi
cargo test --workspace --doc || status=$?
# The swarm tests tear their cluster down when the last one ends; a run cut
# short may not have.
bash scripts/swarm-cluster.sh down >/dev/null 2>&1 || true
echo
echo "conformance pass rates:"
grep -E '^ *conformance ' "$out" | sed 's/^ *//' | sort -u || true
rm -f "$out"
exit "$status"
