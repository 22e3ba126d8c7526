#!/usr/bin/env bash
# The security release, the berth way vs the docker-compose way, same machine, same run:
#   berth:          `berth upgrade --security && berth up -d` on examples/seed-runtime
#                   (x-runtime: node@4.2.2 → the lowest 4.x fixing every fixable advisory)
#   docker-compose: edit the image tag 4.2.2 → that same version, `docker-compose up -d`
#                   on examples/seed (runtime images built by scripts/seed-registry.sh)
# Both seeds get one real dependency (express) so `npm install` has work to do. Measured:
# seconds from the command to the patched version served, and failed requests of a client
# polling every 20 ms. Then the dependency cache: a code change (`up -d --build`: a fresh
# /app, so npm installs everything again) with berth's shared npm cache and without it
# (`x-berth: {npm_cache: false}`). Writes the "upgrade" section of BENCHMARKS.md.
#
#   bash bench/upgrade.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
need=()
command -v docker-compose >/dev/null || need+=(docker-compose)
command -v dockerd >/dev/null || need+=(docker.io)
if ((${#need[@]})); then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null; fi
if ! docker info >/dev/null 2>&1; then
  setsid -f dockerd >/tmp/berth-bench-dockerd.log 2>&1 </dev/null
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
fi
cargo build --release -q -p berth-cli
export BERTH=${CARGO_TARGET_DIR:-$root/target}/release/berth

work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export BERTH_STATE_DIR=$work/state BERTH_CONFIG=$work/none.toml
: > "$BERTH_CONFIG"
cleanup() {
  for d in "$work"/berth-*/; do (cd "$d" 2>/dev/null && "$BERTH" down -t 1 >/dev/null 2>&1) || true; done
  (cd "$work/docker" 2>/dev/null && docker-compose down -t 1 >/dev/null 2>&1) || true
  bash scripts/seed-registry.sh "$port" --storage "$work/registry" --stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# What `--security` picks for 4.2.2 today: read it from berth itself.
cp -r examples/seed-runtime "$work/probe"
target=$(cd "$work/probe" && "$BERTH" upgrade --security --dry-run 2>&1 | sed -n 's/.*node 4.2.2 -> \([0-9.]*\).*/\1/p' | head -1)
[ -n "$target" ] || { echo "could not read the --security target" >&2; exit 1; }
echo "upgrade target: $target" >&2
eval "$(bash scripts/seed-registry.sh "$port" --storage "$work/registry" --node-versions "4.2.2 $target" 2>/dev/null)"

with_express() { # dir: add one real dependency and use it
  python3 - "$1/package.json" <<'PY'
import json, sys
p = sys.argv[1]; d = json.load(open(p)); d["dependencies"] = {"express": "4.13.3"}; json.dump(d, open(p, "w"), indent=2)
PY
  sed -i "1i var express = require('express');" "$1/index.js"
}
for d in berth-cache berth-nocache; do cp -r examples/seed-runtime "$work/$d"; with_express "$work/$d"; done
printf '  x-berth:\n    npm_cache: false\n' >> "$work/berth-nocache/docker-compose.yml"
cp -r examples/seed "$work/docker"; with_express "$work/docker"
for v in 4.2.2 "$target"; do
  printf 'services:\n  a: {image: "quay.io/oddnetworks/alpine-nodejs:%s"}\n' "$v" > "$work/pull-$v.yaml"
  "$BERTH" -f "$work/pull-$v.yaml" pull -q
  "$BERTH" save -o "$work/rt-$v.tar" "quay.io/oddnetworks/alpine-nodejs:$v"
  docker load -i "$work/rt-$v.tar" >/dev/null
done
python3 bench/lib/true_image.py "$work/true.tar"; docker load -i "$work/true.tar" >/dev/null
docker rmi -f docker_code >/dev/null 2>&1 || true  # an earlier run's code image would be reused as is

now() { python3 -c 'import time; print(f"{time.monotonic():.3f}")'; }
wait_body() { # text timeout_s
  local deadline=$(( $(date +%s) + $2 ))
  while (( $(date +%s) < deadline )); do
    curl -s --max-time 1 http://127.0.0.1:8080/ | grep -q "$1" && return 0
    sleep 0.02
  done
  echo "never served $1" >&2; return 1
}
timed() { # label expected cmd...: seconds to `expected` served, failed requests of a 20 ms poller
  local label=$1 expected=$2; shift 2
  rm -f "$work/stop"
  python3 "$root/bench/lib/poll.py" http://127.0.0.1:8080/ "$work/poll-$label" "$work/stop" &
  local poller=$! t0 t1
  sleep 0.3
  t0=$(now)
  bash -c "$*" >"$work/out-$label" 2>&1 || { echo "$label failed:" >&2; cat "$work/out-$label" >&2; }
  wait_body "$expected" 300
  t1=$(now)
  touch "$work/stop"; wait "$poller" || true
  failed=$(awk '$2 == 0' "$work/poll-$label" | wc -l)
  echo "$label $(python3 -c "print(round($t1 - $t0, 2))") $failed" >> "$work/results"
}
: > "$work/results"

# The security release.
cd "$work/berth-cache"
"$BERTH" up -d >/dev/null 2>&1; wait_body "version: 4.2.2" 300
timed berth-upgrade "version: $target" "\"$BERTH\" upgrade --security >/dev/null && \"$BERTH\" up -d"

# The dependency cache: a code change means a fresh /app and a full `npm install`.
sed -i "s/'I am running nodejs version: '/'Now running nodejs version: '/" index.js
timed berth-code-cache "Now running" "\"$BERTH\" up -d --build"
"$BERTH" down -t 1 >/dev/null 2>&1
cd "$work/berth-nocache"
"$BERTH" up -d >/dev/null 2>&1; wait_body "version: 4.2.2" 300
sed -i "s/'I am running nodejs version: '/'Now running nodejs version: '/" index.js
timed berth-code-nocache "Now running" "\"$BERTH\" up -d --build"
"$BERTH" down -t 1 >/dev/null 2>&1
cd "$work/docker"
docker-compose up -d >/dev/null 2>&1; wait_body "version: 4.2.2" 300
timed compose-upgrade "version: $target" "sed -i 's/alpine-nodejs:4.2.2/alpine-nodejs:$target/' docker-compose.yml && docker-compose up -d"
docker-compose down -t 1 >/dev/null 2>&1
cd "$root"
cat "$work/results"

python3 - "$work/results" "$root/BENCHMARKS.md" "$target" <<'PY'
import os, re, sys
res = {l.split()[0]: l.split()[1:] for l in open(sys.argv[1])}
out, target = sys.argv[2], sys.argv[3]
bu, bf = res["berth-upgrade"]; cu, cf = res["compose-upgrade"]
wc, _ = res["berth-code-cache"]; nc, _ = res["berth-code-nocache"]
section = "\n".join([
    "## upgrade (the security release)",
    "",
    f"node 4.2.2 → {target} (what `berth upgrade --security` picks: the lowest 4.x release fixing every advisory a 4.x "
    "release fixed), on the seed with one real dependency (express 4.13.3) so `npm install` has work to do, while a "
    "client polls every 20 ms. berth runs examples/seed-runtime (`x-runtime`, node from the npm registry, verified); "
    "docker-compose 1.29.2 on Docker 20.10 runs examples/seed with the runtime image for each version.",
    "",
    "| what | berth | docker-compose |",
    "|---|---|---|",
    f"| command to patched version served | {bu} s (`berth upgrade --security && berth up -d`) | {cu} s (edit the tag, `docker-compose up -d`) |",
    f"| failed requests meanwhile | {bf} | {cf} |",
    f"| code change (`up -d --build`, fresh `/app`, full `npm install`) to new code served | {wc} s with the shared npm cache, {nc} s without (`x-berth: {{npm_cache: false}}`) | never (serves the old code, see swap) |",
    "",
    "berth's figure includes fetching and verifying node from the npm registry (the runtime store was empty). Both keep "
    "`node_modules` in the code volume, so a runtime patch alone reinstalls little; the cache pays off when the code (and "
    "with it the volume) is new. Reproduce: `bash bench/upgrade.sh`.",
    "",
])
text = open(out).read() if os.path.exists(out) else "# Benchmarks\n\n"
marker = "## upgrade (the security release)"
if marker in text:
    text = re.sub(re.escape(marker) + r"\n.*?(?=\n## |\Z)", lambda _: section, text, flags=re.S)
else:
    text = text.rstrip("\n") + "\n\n" + section
open(out, "w").write(text)
print(section)
PY
