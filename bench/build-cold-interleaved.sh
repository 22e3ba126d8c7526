#!/usr/bin/env bash
# The cold row of bench/build.sh with berth and BuildKit alternating run by
# run, so that both sides meet the same load: hyperfine runs all of one
# side's runs before the other's, which on a shared 2-core machine lets a
# minute-long cold build meet very different load on each side.
#
# Env: PROJECT (a fixture of crates/cli/tests/fixtures, default go-static),
# RUNS (default 3), BERTH (binary; default target/release/berth, built if
# missing). Prints one line per run and the medians; changes no file.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
PROJECT=${PROJECT:-go-static}
RUNS=${RUNS:-3}
docker=/usr/bin/docker
if ! $docker info >/dev/null 2>&1; then
  setsid -f dockerd >/tmp/berth-bench-dockerd.log 2>&1 </dev/null
  for _ in $(seq 1 60); do $docker info >/dev/null 2>&1 && break; sleep 0.5; done
fi
if [ -z "${BERTH:-}" ]; then
  cargo build --release -q -p berth-cli
  BERTH=${CARGO_TARGET_DIR:-$root/target}/release/berth
fi
work=$(mktemp -d)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cleanup() {
  bash scripts/seed-registry.sh "$port" --storage "$work/registry" --stop >/dev/null 2>&1 || true
  $docker rmi -f "berth-bench-$PROJECT" debian:bookworm-slim >/dev/null 2>&1 || true
  $docker builder prune -af >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
BERTH=$BERTH bash scripts/seed-registry.sh "$port" --node-versions "" --storage "$work/registry" >/dev/null
export BERTH_STATE_DIR=$work/state BERTH_REGISTRY_MIRRORS="docker.io=http://127.0.0.1:$port" DOCKER_BUILDKIT=1
for ctx in b d; do
  cp -r "crates/cli/tests/fixtures/$PROJECT" "$work/$ctx"
  python3 bench/lib/no_heredoc.py "$work/$ctx"
done
printf 'services:\n  app:\n    build: .\n    image: berth-bench-%s\n' "$PROJECT" >"$work/b/compose.yaml"
printf 'services:\n  base:\n    image: debian:bookworm-slim\n' >"$work/base.yaml"
"$BERTH" -f "$work/base.yaml" pull -q
# The same base for Docker, from berth's store (no Docker Hub here).
"$BERTH" save -o "$work/base.tar" debian:bookworm-slim
$docker load -i "$work/base.tar" >/dev/null
rm "$work/base.tar"
ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
: >"$work/times"
for i in $(seq 1 "$RUNS"); do
  "$BERTH" builder prune >/dev/null
  s=$(date +%s%N); "$BERTH" -f "$work/b/compose.yaml" --progress quiet build; b=$(ms "$s")
  $docker builder prune -af >/dev/null
  s=$(date +%s%N); $docker build -q -t "berth-bench-$PROJECT" "$work/d" >/dev/null; d=$(ms "$s")
  echo "$b $d" >>"$work/times"
  echo "$PROJECT cold run $i: berth $b ms, BuildKit $d ms (load $(cut -d' ' -f1 /proc/loadavg))"
done
python3 - "$work/times" <<'PY'
import statistics, sys
rows = [tuple(map(int, l.split())) for l in open(sys.argv[1])]
b = statistics.median(r[0] for r in rows)
d = statistics.median(r[1] for r in rows)
r = d / b
print(f"medians: berth {b / 1000:.1f} s, BuildKit {d / 1000:.1f} s: "
      + (f"berth {r:.2f}x faster" if r >= 1 else f"berth {1 / r:.2f}x slower"))
PY
