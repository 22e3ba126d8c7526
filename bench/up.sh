#!/usr/bin/env bash
# The seed on berth's embedded engine against docker-compose 1.29.2 on Docker
# 20.10, same machine, same images, same run: `up -d` until the first HTTP
# 200 (images present), `up -d` when nothing changed, `down`, throughput and
# latency through the published port (wrk, 5 s per run), and the memory of
# what keeps the project running (berth's supervisor vs dockerd + containerd
# + shims + docker-proxy). Then the seed with one real dependency (express
# 4.13.3 added to its package.json, so `npm install` downloads 30-odd packages
# from the npm registry; every run starts from an empty npm cache and an empty
# /app/node_modules for both tools), runs of the two tools interleaved; and
# `down` of the seed with `init: true` on both. Writes the "up" section of
# BENCHMARKS.md.
#
#   bash bench/up.sh     (RUNS=5 by default; EXPRESS_RUNS= the express row's, default RUNS;
#                         BERTH= a pre-built binary instead of building one)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
RUNS=${RUNS:-5}
# The express row depends on the npm registry and this machine's resolver: noisier.
EXPRESS_RUNS=${EXPRESS_RUNS:-$RUNS}

need=()
command -v docker-compose >/dev/null || need+=(docker-compose)
command -v wrk >/dev/null || need+=(wrk)
command -v hyperfine >/dev/null || need+=(hyperfine)
command -v dockerd >/dev/null || need+=(docker.io)
if ((${#need[@]})); then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null; fi
if ! docker info >/dev/null 2>&1; then
  setsid -f dockerd >/tmp/berth-bench-dockerd.log 2>&1 </dev/null
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
fi
# BERTH=/path/to/berth benchmarks that binary instead of building one.
if [ -z "${BERTH:-}" ]; then
  cargo build --release -q -p berth-cli
  BERTH=${CARGO_TARGET_DIR:-$root/target}/release/berth
fi
export BERTH

work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export BERTH_STATE_DIR=$work/state BERTH_CONFIG=$work/none.toml
: > "$BERTH_CONFIG"
cleanup() {
  (cd "$work/berth/seed" 2>/dev/null && "$BERTH" down -t 1 >/dev/null 2>&1) || true
  (cd "$work/docker/seed" 2>/dev/null && docker-compose down -t 1 >/dev/null 2>&1) || true
  for v in express init; do
    (cd "$work/berth/seed-$v" 2>/dev/null && "$BERTH" down -v -t 1 >/dev/null 2>&1) || true
    (cd "$work/docker/seed-$v" 2>/dev/null && docker-compose down -v --rmi local -t 1 >/dev/null 2>&1) || true
  done
  bash scripts/seed-registry.sh "$port" --storage "$work/registry" --stop >/dev/null 2>&1 || true
  # --stop has been seen to leave it running after a failed run; the pid is ours.
  pid=$(cat "$work/registry/registry.pid" 2>/dev/null) && kill "$pid" 2>/dev/null || true
  docker rmi -f quay.io/oddnetworks/alpine-nodejs:4.2.2 tianon/true >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
eval "$(bash scripts/seed-registry.sh "$port" --storage "$work/registry" --node-versions 4.2.2 --no-base 2>/dev/null)"

# Copies of the seed, so each tool has its own project directories: the seed
# verbatim; with one real dependency, required by index.js (as bench/upgrade.sh
# does); and with `init: true`, which needs the 2.x file format on docker-compose
# (the v1 format has no `init`), so both tools get that same 2.4 file.
mkdir -p "$work/berth" "$work/docker"
for t in berth docker; do
  cp -r examples/seed "$work/$t/seed"
  cp -r examples/seed "$work/$t/seed-express"
  python3 - "$work/$t/seed-express/package.json" <<'PY'
import json, sys
p = sys.argv[1]; d = json.load(open(p)); d["dependencies"] = {"express": "4.13.3"}; json.dump(d, open(p, "w"), indent=2)
PY
  sed -i "1i var express = require('express');" "$work/$t/seed-express/index.js"
  cp -r examples/seed "$work/$t/seed-init"
  cat > "$work/$t/seed-init/docker-compose.yml" <<'YAML'
version: "2.4"
services:
  code:
    build: .
  app:
    image: quay.io/oddnetworks/alpine-nodejs:4.2.2
    volumes_from:
      - code
    ports:
      - "8080:3000"
    working_dir: /app
    init: true
    command: /bin/ash -c "npm install --production && npm run start"
YAML
done

# Images present for both: berth pulls and builds; Docker loads the same images.
(cd "$work/berth/seed" && "$BERTH" pull -q && "$BERTH" build -q)
for v in express init; do (cd "$work/berth/seed-$v" && "$BERTH" build -q); done
"$BERTH" save -o "$work/runtime.tar" quay.io/oddnetworks/alpine-nodejs:4.2.2
python3 bench/lib/true_image.py "$work/true.tar"
docker load -i "$work/runtime.tar" >/dev/null
docker load -i "$work/true.tar" >/dev/null
for v in "" -express -init; do (cd "$work/docker/seed$v" && docker-compose build -q >/dev/null 2>&1); done

wait_200() { # a deadline, not a try count: npm install may take a while
  local deadline=$(($(date +%s) + 180))
  while (($(date +%s) < deadline)); do
    curl -sf -o /dev/null --max-time 1 http://127.0.0.1:8080/ && return 0
    sleep 0.02
  done
  echo "no HTTP 200 on :8080 within 180 s" >&2
  return 1
}
ms() { python3 -c 'import time; print(int(time.monotonic()*1000))'; }

measure() { # tool up_cmd down_cmd -> appends "tool kind ms" lines
  local tool=$1 up=$2 down=$3 dir=$4
  for _ in $(seq 1 "$RUNS"); do
    cd "$dir"
    t0=$(ms); eval "$up" >/dev/null 2>&1; wait_200; t1=$(ms)
    echo "$tool up_to_200 $((t1 - t0))" >> "$work/times"
    # No-op: hyperfine, so the clock's own start-up (python) is not counted.
    hyperfine -N -r 5 --export-json "$work/noop.json" "$up" >/dev/null 2>&1
    echo "$tool up_noop $(python3 -c 'import json,sys; print(int(json.load(open(sys.argv[1]))["results"][0]["median"]*1000))' "$work/noop.json")" >> "$work/times"
    t0=$(ms); eval "$down" >/dev/null 2>&1; t1=$(ms)
    echo "$tool down $((t1 - t0))" >> "$work/times"
    cd "$root"
  done
}
# The machine is shared: say how busy it was.
cut -d' ' -f1-3 /proc/loadavg > "$work/load-start"
: > "$work/times"
measure berth "\"$BERTH\" up -d" "\"$BERTH\" down -t 10" "$work/berth/seed"
measure docker-compose "docker-compose up -d" "docker-compose down -t 10" "$work/docker/seed"

# With express: runs of the two tools interleaved, so a slow spell of the npm
# registry or the network hits both. Each run starts with fresh containers
# (empty ~/.npm) and a fresh /app volume (`down -v` after every run, untimed);
# the logs must show npm installing express, or the run does not count.
express_run() { # tool
  local tool=$1 c
  if [ "$tool" = berth ]; then c=("$BERTH"); else c=(docker-compose); fi
  cd "$work/${tool%-compose}/seed-express"
  t0=$(ms); "${c[@]}" up -d >/dev/null 2>&1; wait_200; t1=$(ms)
  "${c[@]}" logs app > "$work/express.log" 2>&1 || true
  grep -q "express@4.13.3 node_modules/express" "$work/express.log" || {
    echo "$tool: npm did not install express in this run; its log:" >&2
    cat "$work/express.log" >&2
    exit 1
  }
  echo "$tool express_up_to_200 $((t1 - t0))" >> "$work/times"
  # What the resolver sees depends on it: with IPv6 on, glibc asks A and AAAA.
  "${c[@]}" exec -T app cat /proc/sys/net/ipv6/conf/all/disable_ipv6 > "$work/ipv6-off-$tool" 2>&1 || true
  "${c[@]}" down -v -t 1 >/dev/null 2>&1
  cd "$root"
}
for _ in $(seq 1 "$EXPRESS_RUNS"); do express_run berth; express_run docker-compose; done

# `init: true`: the stop signal reaches a process that passes it on.
init_run() { # tool
  local tool=$1 c
  if [ "$tool" = berth ]; then c=("$BERTH"); else c=(docker-compose); fi
  cd "$work/${tool%-compose}/seed-init"
  "${c[@]}" up -d >/dev/null 2>&1; wait_200
  t0=$(ms); "${c[@]}" down -t 10 >/dev/null 2>&1; t1=$(ms)
  echo "$tool init_down $((t1 - t0))" >> "$work/times"
  cd "$root"
}
for _ in $(seq 1 "$RUNS"); do init_run berth; init_run docker-compose; done

rss_kb() { awk '/VmRSS/ {s += $2} END {print s + 0}' "$@" 2>/dev/null || echo 0; }
load() { # tool: bring it up, wrk, memory, down
  local tool=$1 dir=$2
  cd "$dir"
  if [ "$tool" = berth ]; then "$BERTH" up -d >/dev/null 2>&1; else docker-compose up -d >/dev/null 2>&1; fi
  wait_200
  wrk -t2 -c20 -d5s --latency http://127.0.0.1:8080/ > "$work/wrk-$tool.txt"
  if [ "$tool" = berth ]; then
    pid=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["supervisor_pid"])' "$BERTH_STATE_DIR/projects/seed/state.json")
    rss_kb "/proc/$pid/status" > "$work/mem-$tool"
    "$BERTH" down -t 10 >/dev/null 2>&1
  else
    pids=$(pgrep -x dockerd; pgrep -x containerd; pgrep -f containerd-shim; pgrep -x docker-proxy) || true
    files=(); for p in $pids; do files+=("/proc/$p/status"); done
    rss_kb "${files[@]}" > "$work/mem-$tool"
    docker-compose down -t 10 >/dev/null 2>&1
  fi
  cd "$root"
}
load berth "$work/berth/seed"
load docker-compose "$work/docker/seed"
cut -d' ' -f1-3 /proc/loadavg > "$work/load-end"
cat "$work/times" >&2

python3 - "$work" "$root/BENCHMARKS.md" "$RUNS" "$EXPRESS_RUNS" <<'PY'
import os, re, statistics, sys
work, out, runs, eruns = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
times = {}
for line in open(f"{work}/times"):
    tool, kind, v = line.split()
    times.setdefault((tool, kind), []).append(int(v))
def med(tool, kind): return statistics.median(times[(tool, kind)])
def wrk(tool):
    text = open(f"{work}/wrk-{tool}.txt").read()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    def lat(p):
        m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", text)
        v, u = float(m.group(1)), m.group(2)
        return v / 1000 if u == "us" else v * 1000 if u == "s" else v
    return rps, lat(50), lat(99)
rows = []
for kind, label in [("up_to_200", "`up -d` until the first HTTP 200 (images present)"),
                    ("up_noop", "`up -d` again, nothing changed"), ("down", "`down`"),
                    ("express_up_to_200", "with express 4.13.3: `up -d` until the first HTTP 200 (empty npm cache)"),
                    ("init_down", "with `init: true`: `down`")]:
    b, d = med("berth", kind), med("docker-compose", kind)
    rows.append(f"| {label} | {b:.0f} ms | {d:.0f} ms | **{d/b:.1f}×** |")
brps, b50, b99 = wrk("berth"); drps, d50, d99 = wrk("docker-compose")
rows.append(f"| requests/s through 127.0.0.1:8080 (wrk, 2 threads, 20 connections, 5 s) | {brps:.0f} | {drps:.0f} | **{brps/drps:.2f}×** (higher is better) |")
rows.append(f"| latency p50 / p99 through the port | {b50:.2f} / {b99:.2f} ms | {d50:.2f} / {d99:.2f} ms | **{d50/b50:.2f}× / {d99/b99:.2f}×** |")
bm, dm = int(open(f"{work}/mem-berth").read()), int(open(f"{work}/mem-docker-compose").read())
rows.append(f"| memory keeping the project up (RSS) | {bm/1024:.1f} MiB (supervisor) | {dm/1024:.1f} MiB (dockerd + containerd + shim + docker-proxy) | **{dm/bm:.1f}× less** |")
section = "\n".join([
    "## up (the seed)",
    "",
    f"The seed, verbatim, on berth's embedded engine vs docker-compose 1.29.2 on Docker 20.10, same machine, same images "
    f"(made by `scripts/seed-registry.sh`; Docker loads the same archives), medians of {runs} runs, {eruns} for the express row "
    f"(x86_64, {os.cpu_count()} cores; load average {open(f'{work}/load-start').read().split()[0]} at the start, "
    f"{open(f'{work}/load-end').read().split()[0]} at the end). The ratio is "
    "docker-compose / berth unless noted. Both run `npm install --production && npm run start` in the container, which "
    "dominates the time to the first 200.",
    "",
    "| what | berth | docker-compose | ratio |",
    "|---|---|---|---|",
    *rows,
    "",
    "`down` of the verbatim seed is the same for both: the seed's PID 1 is npm, which catches SIGTERM without stopping "
    "the node process it started, so both engines wait out the 10 s timeout and then kill. With `init: true` (the same "
    "2.4-format file for both, since docker-compose's v1 format has no `init`) the stop signal reaches an init that "
    "passes it on: berth's own init, Docker's `docker-init` (tini 0.19).",
    "",
    "The express row adds `express@4.13.3` to the seed's package.json (required by index.js), so the container's "
    "`npm install --production` fetches express and its dependencies from the npm registry, through this machine's "
    "resolver and HTTPS proxy. Nothing is cached for either tool: each run starts with new containers (an empty "
    "`~/.npm`) and a new `/app` volume (`down -v` after each run, untimed; the script checks that npm installed "
    "express in every run), the runs of the two tools interleaved. Images are present for both, as above. "
    f"Every run, in order (ms): berth {', '.join(map(str, times[('berth', 'express_up_to_200')]))}; docker-compose "
    f"{', '.join(map(str, times[('docker-compose', 'express_up_to_200')]))}. "
    f"`net.ipv6.conf.all.disable_ipv6` in the app container: berth {open(f'{work}/ipv6-off-berth').read().strip()}, "
    f"docker-compose {open(f'{work}/ipv6-off-docker-compose').read().strip()}. "
    "Container start latency on its own is in *lifecycle* below (`run --rm` of `true`).",
    "",
    f"Reproduce: `RUNS={runs} EXPRESS_RUNS={eruns} bash bench/up.sh` (`BERTH=` benchmarks a pre-built binary instead of building one).",
    "",
])
text = open(out).read() if os.path.exists(out) else "# Benchmarks\n\n"
if "## up (the seed)" in text:
    text = re.sub(r"## up \(the seed\)\n.*?(?=\n## |\Z)", section, text, flags=re.S)
else:
    text = text.rstrip("\n") + "\n\n" + section
open(out, "w").write(text)
print(section)
PY
