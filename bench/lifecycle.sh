#!/usr/bin/env bash
# The embedded engine's lifecycle against docker-compose 1.29.2 on Docker 20.10, same
# machine, same image (busybox, built by berth, loaded into Docker), same run:
#   exec latency          `exec -T web /bin/busybox true`
#   run --rm of true      `run --rm -T web /bin/busybox true`
#   up --scale web=20     until all 20 containers run
#   down of those 20      (`-t 10`; PID 1 is busybox sleep, which has no SIGTERM handler)
# Writes the "lifecycle" section of BENCHMARKS.md.   Usage: bash bench/lifecycle.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
RUNS=${RUNS:-10}
need=()
command -v docker-compose >/dev/null || need+=(docker-compose)
command -v dockerd >/dev/null || need+=(docker.io)
command -v hyperfine >/dev/null || need+=(hyperfine)
command -v busybox >/dev/null || need+=(busybox-static)
if ((${#need[@]})); then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null; fi
if ! docker info >/dev/null 2>&1; then
  setsid -f dockerd >/tmp/berth-bench-dockerd.log 2>&1 </dev/null
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
fi
cargo build --release -q -p berth-cli
export BERTH=${CARGO_TARGET_DIR:-$root/target}/release/berth
work=$(mktemp -d)
export BERTH_STATE_DIR=$work/state BERTH_CONFIG=$work/none.toml
: > "$BERTH_CONFIG"
cleanup() {
  (cd "$work/berth" 2>/dev/null && "$BERTH" down -t 0 >/dev/null 2>&1) || true
  (cd "$work/docker" 2>/dev/null && docker-compose down -t 0 >/dev/null 2>&1) || true
  docker rmi -f berth-bench/busybox:1 >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/img" "$work/berth" "$work/docker"
cp "$(command -v busybox)" "$work/img/busybox"
printf 'FROM scratch\nCOPY busybox /bin/busybox\nCMD ["/bin/busybox", "sleep", "600"]\n' > "$work/img/Dockerfile"
printf 'services:\n  web:\n    build: ../img\n    image: berth-bench/busybox:1\n' > "$work/berth/compose.yaml"
printf 'version: "2.4"\nservices:\n  web:\n    image: berth-bench/busybox:1\n' > "$work/docker/docker-compose.yml"
(cd "$work/berth" && "$BERTH" build -q >/dev/null)
"$BERTH" save -o "$work/bb.tar" berth-bench/busybox:1
docker load -i "$work/bb.tar" >/dev/null

ms() { python3 -c 'import time; print(int(time.monotonic()*1000))'; }
all_running() { # tool n
  for _ in $(seq 1 600); do
    if [ "$1" = berth ]; then n=$("$BERTH" ps -q | wc -l); else n=$(docker-compose ps -q | wc -l); fi
    [ "$n" -ge "$2" ] && return 0; sleep 0.05
  done; return 1
}
: > "$work/times"
for tool in berth docker-compose; do
  if [ "$tool" = berth ]; then cd "$work/berth"; c=("$BERTH"); else cd "$work/docker"; c=(docker-compose); fi
  "${c[@]}" up -d >/dev/null 2>&1
  hyperfine -N -w 2 -r "$RUNS" --export-json "$work/exec-$tool.json" "${c[*]} exec -T web /bin/busybox true" >/dev/null 2>&1
  hyperfine -N -w 1 -r "$RUNS" --export-json "$work/run-$tool.json" "${c[*]} run --rm -T web /bin/busybox true" >/dev/null 2>&1
  "${c[@]}" down -t 0 >/dev/null 2>&1
  for _ in 1 2 3; do
    t0=$(ms); "${c[@]}" up -d --scale web=20 >/dev/null 2>&1; all_running "$tool" 20; t1=$(ms)
    t2=$(ms); "${c[@]}" down -t 10 >/dev/null 2>&1; t3=$(ms)
    echo "$tool scale $((t1 - t0))" >> "$work/times"; echo "$tool down $((t3 - t2))" >> "$work/times"
  done
  cd "$root"
done
python3 - "$work" "$root/BENCHMARKS.md" "$RUNS" <<'PY'
import json, os, re, statistics, sys
work, out, runs = sys.argv[1], sys.argv[2], sys.argv[3]
def hf(name, tool): return json.load(open(f"{work}/{name}-{tool}.json"))["results"][0]["median"] * 1000
times = {}
for line in open(f"{work}/times"):
    tool, kind, v = line.split(); times.setdefault((tool, kind), []).append(int(v))
med = lambda t, k: statistics.median(times[(t, k)])
rows = []
for label, b, d in [("`exec -T web true`", hf("exec", "berth"), hf("exec", "docker-compose")),
                    ("`run --rm -T web true`", hf("run", "berth"), hf("run", "docker-compose")),
                    ("`up -d --scale web=20` until all 20 run", med("berth", "scale"), med("docker-compose", "scale")),
                    ("`down -t 10` of those 20", med("berth", "down"), med("docker-compose", "down"))]:
    rows.append(f"| {label} | {b:.0f} ms | {d:.0f} ms | **{d/b:.1f}×** |")
section = "\n".join(["## lifecycle (exec, run, scale)", "",
    f"berth's embedded engine vs docker-compose 1.29.2 on Docker 20.10, same machine, same busybox image; "
    f"exec and run: medians of {runs} hyperfine runs; scale and down: medians of 3. The ratio is docker-compose / berth. "
    "The containers' PID 1 (`busybox sleep`) has no SIGTERM handler: berth sees that and kills at once, Docker waits "
    "out the 10 s timeout.", "",
    "| what | berth | docker-compose | ratio |", "|---|---|---|---|", *rows, "",
    "Reproduce: `bash bench/lifecycle.sh` (`RUNS=` sets the hyperfine run count).", ""])
text = open(out).read() if os.path.exists(out) else "# Benchmarks\n\n"
marker = "## lifecycle (exec, run, scale)"
if marker in text:
    text = re.sub(re.escape(marker) + r"\n.*?(?=\n## |\Z)", lambda _: section, text, flags=re.S)
else:
    text = text.rstrip("\n") + "\n\n" + section
open(out, "w").write(text)
print(section)
PY
