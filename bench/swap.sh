#!/usr/bin/env bash
# The seed's promise under load, berth vs docker-compose 1.29.2 on Docker 20.10:
#   1. runtime swap: change the image tag 4.2.2 → 4.2.3, run `up -d`;
#   2. code change: edit index.js, run `up -d --build`;
#   3. `up -d` with nothing to do;
# each while a client polls http://127.0.0.1:8080/ every 20 ms. Reports failed
# requests, the longest outage, seconds from `up` to the new version served,
# and how long `up` took.
#
#   bash bench/swap.sh                  # both tools, writes BENCHMARKS.md
#   bash bench/swap.sh berth            # one tool, prints its figures
#   bash bench/swap.sh docker-compose
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
tools=("$@")
((${#tools[@]})) || tools=(berth docker-compose)

need=()
command -v docker-compose >/dev/null || need+=(docker-compose)
command -v dockerd >/dev/null || need+=(docker.io)
if ((${#need[@]})); then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null; fi
if [[ " ${tools[*]} " == *" docker-compose "* ]] && ! docker info >/dev/null 2>&1; then
  (dockerd >/tmp/berth-bench-dockerd.log 2>&1 &)
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
fi
cargo build --release -q -p berth-cli
export BERTH=${CARGO_TARGET_DIR:-$root/target}/release/berth

work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export BERTH_STATE_DIR=$work/state BERTH_CONFIG=$work/none.toml
: > "$BERTH_CONFIG"
cleanup() {
  if [ -n "${KEEP:-}" ]; then echo "kept $work (projects still up)" >&2; return; fi
  (cd "$work/berth/seed" 2>/dev/null && "$BERTH" down -t 1 >/dev/null 2>&1) || true
  (cd "$work/docker-compose/seed" 2>/dev/null && docker-compose down -t 1 >/dev/null 2>&1) || true
  bash scripts/seed-registry.sh "$port" --storage "$work/registry" --stop >/dev/null 2>&1 || true
  docker rmi -f seed_code >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
eval "$(bash scripts/seed-registry.sh "$port" --storage "$work/registry" --node-versions "4.2.2 4.2.3" 2>/dev/null)"

for tool in "${tools[@]}"; do
  mkdir -p "$work/$tool"
  cp -r examples/seed "$work/$tool/seed"
done
# A code image left by an earlier run would be used as is by docker-compose
# (it builds only what is missing) and start it with that run's code.
docker rmi -f seed_code >/dev/null 2>&1 || true
# Both runtime images in berth's store (a compose file naming them both).
mkdir -p "$work/pull"
printf 'services:\n  a: {image: "quay.io/oddnetworks/alpine-nodejs:4.2.2"}\n  b: {image: "quay.io/oddnetworks/alpine-nodejs:4.2.3"}\n' > "$work/pull/compose.yaml"
(cd "$work/pull" && "$BERTH" pull -q)
if [[ " ${tools[*]} " == *" docker-compose "* ]]; then
  # Docker gets the very images berth pulled: saved by berth, loaded by docker.
  for v in 4.2.2 4.2.3; do
    "$BERTH" save -o "$work/runtime-$v.tar" "quay.io/oddnetworks/alpine-nodejs:$v"
    docker load -i "$work/runtime-$v.tar" >/dev/null
  done
  python3 bench/lib/true_image.py "$work/true.tar"
  docker load -i "$work/true.tar" >/dev/null
fi

now() { python3 -c 'import time; print(f"{time.monotonic():.4f}")'; }
wait_body() { # text timeout_s -> 0 when served
  local deadline=$(( $(date +%s) + $2 ))
  while (( $(date +%s) < deadline )); do
    curl -s --max-time 1 http://127.0.0.1:8080/ | grep -q "$1" && return 0
    sleep 0.02
  done
  return 1
}

# One step under the poller: `step NAME EXPECTED CMD...` appends a JSON line.
step() {
  local name=$1 expected=$2; shift 2
  rm -f "$work/stop"
  python3 "$root/bench/lib/poll.py" http://127.0.0.1:8080/ "$work/poll-$tool-$name" "$work/stop" &
  local poller=$!
  sleep 0.5
  local t0 t1
  t0=$(now)
  "$@" >"$work/out-$tool-$name" 2>&1 || echo "  ($tool $name: exit $?)" >&2
  t1=$(now)
  wait_body "$expected" 30 || true
  sleep 1
  touch "$work/stop"; wait "$poller" || true
  python3 - "$work/poll-$tool-$name" "$t0" "$t1" "$expected" "$tool" "$name" >> "$work/results" <<'PY'
import json, sys
path, t0, t1, expected, tool, name = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
rows = []
for line in open(path):
    parts = line.rstrip("\n").split(" ", 2)
    if len(parts) >= 2:
        rows.append((float(parts[0]), parts[1] == "1", parts[2] if len(parts) > 2 else ""))
failed = sum(1 for _, ok, _ in rows if not ok)
longest, start = 0.0, None
for t, ok, _ in rows:
    if not ok and start is None: start = t
    if ok and start is not None: longest, start = max(longest, t - start), None
if start is not None: longest = max(longest, rows[-1][0] - start)
served = next((t for t, ok, body in rows if ok and expected in body and t >= t0), None)
print(json.dumps({"tool": tool, "step": name, "requests": len(rows), "failed": failed,
                  "longest_outage_s": round(longest, 3), "up_s": round(t1 - t0, 3),
                  "new_version_after_s": None if served is None else round(served - t0, 3)}))
PY
}

: > "$work/results"
for tool in "${tools[@]}"; do
  cd "$work/$tool/seed"
  if [ "$tool" = berth ]; then up=("$BERTH" up -d); down=("$BERTH" down -t 10); else up=(docker-compose up -d); down=(docker-compose down -t 10); fi
  "${up[@]}" >/dev/null 2>&1
  wait_body "version: 4.2.2" 120 || { echo "$tool: the seed never served 4.2.2" >&2; exit 1; }
  sed -i 's/alpine-nodejs:4.2.2/alpine-nodejs:4.2.3/' docker-compose.yml
  step runtime-swap "version: 4.2.3" "${up[@]}"
  sed -i "s/'I am running nodejs version: '/'Now running nodejs version: '/" index.js
  step code-change "Now running" "${up[@]}" --build
  step no-op "version: 4.2.3" "${up[@]}"
  [ -n "${KEEP:-}" ] && [ "$tool" = docker-compose ] || "${down[@]}" >/dev/null 2>&1
  cd "$root"
done
cat "$work/results"

if ((${#tools[@]} == 2)); then
python3 - "$work/results" "$root/BENCHMARKS.md" <<'PY'
import json, os, re, sys
res = {(r["tool"], r["step"]): r for r in map(json.loads, open(sys.argv[1]))}
out = sys.argv[2]
def cell(r, key, unit=""):
    v = r[key]
    return "never (still serving the old code 30 s later)" if v is None else f"{v}{unit}"
rows = []
for step, label in [("runtime-swap", "runtime swap 4.2.2 → 4.2.3, `up -d`"),
                    ("code-change", "code change, `up -d --build`")]:
    b, d = res[("berth", step)], res[("docker-compose", step)]
    rows.append(f"| {label}: failed requests (of ~{b['requests']}) | {b['failed']} | {d['failed']} |")
    rows.append(f"| {label}: longest outage | {b['longest_outage_s']} s | {d['longest_outage_s']} s |")
    rows.append(f"| {label}: from `up` to the new version served | {cell(b, 'new_version_after_s', ' s')} | {cell(d, 'new_version_after_s', ' s')} |")
    rows.append(f"| {label}: `up` itself | {b['up_s']} s | {d['up_s']} s |")
b, d = res[("berth", "no-op")], res[("docker-compose", "no-op")]
rows.append(f"| `up -d` with nothing to do | {b['up_s']*1000:.0f} ms | {d['up_s']*1000:.0f} ms (**{d['up_s']/max(b['up_s'],1e-3):.1f}×**) |")
section = "\n".join([
    "## swap (the seed's promise under load)",
    "",
    "A client polls http://127.0.0.1:8080/ every 20 ms (bench/lib/poll.py) while each tool applies a change to the "
    "running seed: berth on its embedded engine, docker-compose 1.29.2 on Docker 20.10, same machine, same images, "
    "same run. berth starts the new container beside the old, waits until it accepts connections, switches the port "
    "proxy and drains the old one; docker-compose stops the old container first and, on a code change, carries the "
    "old anonymous `/app` volume over to the new container.",
    "",
    "| what | berth | docker-compose |",
    "|---|---|---|",
    *rows,
    "",
    "Reproduce: `bash bench/swap.sh` (one tool: `bash bench/swap.sh berth` or `bash bench/swap.sh docker-compose`).",
    "",
])
text = open(out).read() if os.path.exists(out) else "# Benchmarks\n\n"
marker = "## swap (the seed's promise under load)"
if marker in text:
    text = re.sub(re.escape(marker) + r"\n.*?(?=\n## |\Z)", lambda _: section, text, flags=re.S)
else:
    text = text.rstrip("\n") + "\n\n" + section
open(out, "w").write(text)
print(section)
PY
fi
