#!/usr/bin/env bash
# The seed's promise under load, berth vs docker-compose 1.29.2 on Docker 20.10:
#   1. runtime swap: change the image tag 4.2.2 → 4.2.3, run `up -d`;
#   2. code change: edit index.js, run `up -d --build`;
#   3. `up -d` with nothing to do;
# each while a client polls the seed's published port every 20 ms. Reports
# failed requests, the longest outage, seconds from `up` to the new version
# served, and how long `up` took. Then the runtime swap again under keep-alive
# load, `wrk -t2 -c200` and `-c1000` (--timeout 5s), started before `up` and
# running on well past the old container's stop_grace_period, so the load
# outlasts the whole swap, drain included: wrk's socket errors and non-2xx
# responses for berth (its proxy's HTTP-aware drain, the default), berth with
# `x-berth: {protocol: tcp}` (connections drain until the grace period, then
# are cut) and docker-compose.
#
# The seed publishes a free port instead of 8080 and its projects are named
# seedswap/seedwrk, so the script runs beside the other benchmarks.
#
#   bash bench/swap.sh                  # both tools, writes BENCHMARKS.md
#   bash bench/swap.sh berth            # one tool, prints its figures
#   bash bench/swap.sh docker-compose
#   WRK_SECONDS=40 WRK_LEAD=5 WRK_CONNS="200 1000"   (the keep-alive runs; WRK_CONNS= skips them)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
tools=("$@")
((${#tools[@]})) || tools=(berth docker-compose)

WRK_SECONDS=${WRK_SECONDS:-40}
WRK_LEAD=${WRK_LEAD:-5}
WRK_CONNS=${WRK_CONNS-200 1000}
need=()
command -v wrk >/dev/null || need+=(wrk)
command -v docker-compose >/dev/null || need+=(docker-compose)
command -v dockerd >/dev/null || need+=(docker.io)
if ((${#need[@]})); then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null; fi
if [[ " ${tools[*]} " == *" docker-compose "* ]] && ! docker info >/dev/null 2>&1; then
  setsid -f dockerd >/tmp/berth-bench-dockerd.log 2>&1 </dev/null
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
fi
# wrk holds one fd per connection; berth's supervisor (started by `up`)
# inherits this limit before raising its own.
max_conns=0
for c in $WRK_CONNS; do ((c > max_conns)) && max_conns=$c; done
if (($(ulimit -n) < max_conns + 1024)); then
  ulimit -n $((max_conns + 1024)) 2>/dev/null || {
    echo "open-files limit $(ulimit -n) (hard $(ulimit -Hn)) is too low for wrk -c$max_conns" >&2
    exit 1
  }
fi
cargo build --release -q -p berth-cli
export BERTH=${CARGO_TARGET_DIR:-$root/target}/release/berth

work=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
app_port=$(free_port)
url=http://127.0.0.1:$app_port/
export BERTH_STATE_DIR=$work/state BERTH_CONFIG=$work/none.toml
: > "$BERTH_CONFIG"
cleanup() {
  if [ -n "${KEEP:-}" ]; then echo "kept $work (projects still up)" >&2; return; fi
  (cd "$work/berth/seedswap" 2>/dev/null && "$BERTH" down -t 1 >/dev/null 2>&1) || true
  (cd "$work/docker-compose/seedswap" 2>/dev/null && docker-compose down -t 1 >/dev/null 2>&1) || true
  for d in "$work"/wrk/*/seedwrk; do
    [ -d "$d" ] || continue
    if [[ $d == */docker-compose/* ]]; then (cd "$d" && docker-compose down -v -t 1 >/dev/null 2>&1) || true
    else (cd "$d" && "$BERTH" down -v -t 1 >/dev/null 2>&1) || true; fi
  done
  bash scripts/seed-registry.sh "$port" --storage "$work/registry" --stop >/dev/null 2>&1 || true
  docker rmi -f seedswap_code seedwrk_code >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
eval "$(bash scripts/seed-registry.sh "$port" --storage "$work/registry" --node-versions "4.2.2 4.2.3" 2>/dev/null)"

seed_copy() { # dir: the seed, publishing $app_port
  mkdir -p "$(dirname "$1")"
  cp -r examples/seed "$1"
  sed -i "s/\"8080:3000\"/\"$app_port:3000\"/" "$1/docker-compose.yml"
  grep -q "\"$app_port:3000\"" "$1/docker-compose.yml"
}
for tool in "${tools[@]}"; do seed_copy "$work/$tool/seedswap"; done
# A code image left by an earlier run would be used as is by docker-compose
# (it builds only what is missing) and start it with that run's code.
docker rmi -f seedswap_code seedwrk_code >/dev/null 2>&1 || true
# Both runtime images in berth's store (a compose file naming them both).
mkdir -p "$work/pull"
printf 'services:\n  a: {image: "quay.io/oddnetworks/alpine-nodejs:4.2.2"}\n  b: {image: "quay.io/oddnetworks/alpine-nodejs:4.2.3"}\n' > "$work/pull/compose.yaml"
(cd "$work/pull" && "$BERTH" pull -q)
if [[ " ${tools[*]} " == *" docker-compose "* ]]; then
  # Docker gets the very images berth pulled: saved by berth, loaded by docker.
  for v in 4.2.2 4.2.3; do
    "$BERTH" save -o "$work/runtime-$v.tar" "quay.io/oddnetworks/alpine-nodejs:$v"
  done
  python3 bench/lib/true_image.py "$work/true.tar"
fi
# Loaded again before each docker-compose run if missing: another benchmark
# sharing this dockerd may remove them when it ends.
docker_images() {
  local v
  for v in 4.2.2 4.2.3; do
    docker image inspect "quay.io/oddnetworks/alpine-nodejs:$v" >/dev/null 2>&1 || docker load -i "$work/runtime-$v.tar" >/dev/null
  done
  docker image inspect tianon/true >/dev/null 2>&1 || docker load -i "$work/true.tar" >/dev/null
}

now() { python3 -c 'import time; print(f"{time.monotonic():.4f}")'; }
wait_body() { # text timeout_s -> 0 when served
  local deadline=$(( $(date +%s) + $2 ))
  while (( $(date +%s) < deadline )); do
    curl -s --max-time 1 "$url" | grep -q "$1" && return 0
    sleep 0.02
  done
  return 1
}

# One step under the poller: `step NAME EXPECTED CMD...` appends a JSON line.
step() {
  local name=$1 expected=$2; shift 2
  rm -f "$work/stop"
  python3 "$root/bench/lib/poll.py" "$url" "$work/poll-$tool-$name" "$work/stop" &
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
  cd "$work/$tool/seedswap"
  if [ "$tool" = berth ]; then up=("$BERTH" up -d); down=("$BERTH" down -t 10); else docker_images; up=(docker-compose up -d); down=(docker-compose down -t 10); fi
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

# The runtime swap under keep-alive load: `wrk_swap VARIANT CONNS` appends a
# JSON line. A fresh project at 4.2.2 each time (set up and removed untimed).
wrk_swap() {
  local variant=$1 conns=$2 dir=$work/wrk/$1/seedwrk up down
  [ -d "$dir" ] || seed_copy "$dir"
  if [ "$variant" = berth-tcp ] && ! grep -q x-berth "$dir/docker-compose.yml"; then
    sed -i 's|^  working_dir: /app$|&\n  x-berth:\n    protocol: tcp|' "$dir/docker-compose.yml"
    grep -q '^    protocol: tcp$' "$dir/docker-compose.yml"
  fi
  if [ "$variant" = docker-compose ]; then docker_images; up=(docker-compose up -d); down=(docker-compose down -v -t 1)
  else up=("$BERTH" up -d); down=("$BERTH" down -v -t 1); fi
  cd "$dir"
  sed -i 's/alpine-nodejs:4.2.3/alpine-nodejs:4.2.2/' docker-compose.yml
  "${up[@]}" >/dev/null 2>&1
  wait_body "version: 4.2.2" 120 || { echo "$variant: the seed never served 4.2.2" >&2; exit 1; }
  sed -i 's/alpine-nodejs:4.2.2/alpine-nodejs:4.2.3/' docker-compose.yml
  local out=$work/wrk-$variant-$conns t0 t1 t2 wrk_pid
  wrk -t2 -c"$conns" -d"${WRK_SECONDS}s" --timeout 5s "$url" >"$out" 2>&1 &
  wrk_pid=$!
  t0=$(now)
  sleep "$WRK_LEAD"
  t1=$(now)
  "${up[@]}" >"$out.up" 2>&1 || echo "  ($variant -c$conns: up exit $?)" >&2
  t2=$(now)
  wait "$wrk_pid" || echo "  ($variant -c$conns: wrk exit $?)" >&2
  local t3 served=0
  t3=$(now)
  curl -s --max-time 2 "$url" | grep -q "version: 4.2.3" && served=1
  "${down[@]}" >/dev/null 2>&1 || true
  cd "$root"
  python3 - "$out" "$variant" "$conns" "$t0" "$t1" "$t2" "$t3" "$served" >> "$work/wrk-results" <<'PY'
import json, re, sys
out, variant, conns, t0, t1, t2, t3, served = sys.argv[1:]
t0, t1, t2, t3 = map(float, (t0, t1, t2, t3))
text = open(out).read()
up_text = open(out + ".up").read()
m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
errors = dict(zip(("connect", "read", "write", "timeout"), map(int, m.groups()))) if m else dict.fromkeys(("connect", "read", "write", "timeout"), 0)
m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
non2xx = int(m.group(1)) if m else 0
m = re.search(r"(\d+) requests in ([\d.]+)(m?s)", text)
if not m:
    sys.exit(f"{variant} -c{conns}: no summary in wrk's output:\n{text}")
m2 = re.search(r"(\d+) connections? still open[^\n]*", up_text)
print(json.dumps({"variant": variant, "conns": int(conns), "requests": int(m.group(1)),
                  "errors": errors, "non2xx": non2xx, "up_s": round(t2 - t1, 3),
                  "load_after_up_s": round(t3 - t2, 1), "load_s": round(t3 - t0, 1),
                  "cut": int(m2.group(1)) if m2 else 0, "cut_note": m2.group(0) if m2 else "",
                  "new_version_served": served == "1"}))
PY
}

: > "$work/wrk-results"
variants=()
for tool in "${tools[@]}"; do
  if [ "$tool" = berth ]; then variants+=(berth berth-tcp); else variants+=("$tool"); fi
done
# Variants side by side for each load, so each row is measured close in time.
for conns in $WRK_CONNS; do
  for variant in "${variants[@]}"; do wrk_swap "$variant" "$conns"; done
done
cat "$work/results" "$work/wrk-results"

if ((${#tools[@]} == 2)); then
# The seed sets no stop_grace_period: 10 s, the default, for both tools.
grace=$(sed -n 's/^ *stop_grace_period: *//p' examples/seed/docker-compose.yml)
python3 - "$work/results" "$root/BENCHMARKS.md" "$work/wrk-results" "$WRK_SECONDS" "$WRK_LEAD" "${grace:-10 s, the default}" "$(uptime)" <<'PY'
import json, os, re, sys
res = {(r["tool"], r["step"]): r for r in map(json.loads, open(sys.argv[1]))}
out = sys.argv[2]
wrk = {(r["variant"], r["conns"]): r for r in map(json.loads, open(sys.argv[3]))}
wrk_s, lead, grace, load = sys.argv[4], sys.argv[5], sys.argv[6], sys.argv[7]
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

variants = ["berth", "berth-tcp", "docker-compose"]
def errs(r):
    e = r["errors"]
    total = sum(e.values())
    return f"**{total:,}** ({e['connect']:,} / {e['read']:,} / {e['write']:,} / {e['timeout']:,})"
wrows = []
for conns in sorted({c for _, c in wrk}):
    rs = [wrk[(v, conns)] for v in variants]
    label = f"`-c{conns}`"
    wrows.append(f"| {label}: socket errors (connect / read / write / timeout) | " + " | ".join(errs(r) for r in rs) + " |")
    wrows.append(f"| {label}: non-2xx responses | " + " | ".join(f"**{r['non2xx']}**" for r in rs) + " |")
    wrows.append(f"| {label}: requests completed | " + " | ".join(f"{r['requests']:,}" for r in rs) + " |")
    wrows.append(f"| {label}: connections cut at the end of the grace period (`up`'s count) | "
                 + " | ".join("n/a" if r["variant"] == "docker-compose" else f"{r['cut']:,}" for r in rs) + " |")
    wrows.append(f"| {label}: `up` itself; load still running after it returned | "
                 + " | ".join(f"{r['up_s']} s; {r['load_after_up_s']} s" for r in rs) + " |")
    wrows.append(f"| {label}: 4.2.3 served after the load | "
                 + " | ".join("yes" if r["new_version_served"] else "**no**" for r in rs) + " |")
wrk_part = [] if not wrows else [
    "",
    "### the runtime swap under keep-alive load",
    "",
    f"The runtime swap again, under `wrk -t2 -cN -d{wrk_s}s --timeout 5s` on the seed's port, N = 200 and 1,000: keep-alive "
    "connections, the way browsers, load balancers and HTTP clients talk. wrk starts on a fresh project serving 4.2.2, "
    f"`up -d` runs {lead} s later, and the load goes on after `up` returns well past the old container's "
    f"`stop_grace_period` ({grace}), so it outlasts the whole swap, drain and stop included. "
    "Socket errors and non-2xx responses as wrk counts them. Three ways, same images, same machine, same run "
    f"(load average at the end: {load.split('load average:')[-1].strip()}): berth as it is (its port proxy drains "
    "HTTP/1.x connections at a request boundary: after the response in flight it adds `Connection: close`, so the "
    "client reconnects, to the new container); berth with `x-berth: {protocol: tcp}` on the service (connections to "
    "the old container drain until the grace period and are then cut, which `up` counts); docker-compose "
    "(stops the old container, then starts the new one).",
    "",
    "| `up -d` 4.2.2 → 4.2.3 under load | berth | berth, `protocol: tcp` | docker-compose |",
    "|---|---|---|---|",
    *wrows,
]
section = "\n".join([
    "## swap (the seed's promise under load)",
    "",
    "A client polls the seed's published port every 20 ms (bench/lib/poll.py) while each tool applies a change to the "
    "running seed: berth on its embedded engine, docker-compose 1.29.2 on Docker 20.10, same machine, same images, "
    "same run. berth starts the new container beside the old, waits until it accepts connections, switches the port "
    "proxy and drains the old one; docker-compose stops the old container first and, on a code change, carries the "
    "old anonymous `/app` volume over to the new container.",
    "",
    "| what | berth | docker-compose |",
    "|---|---|---|",
    *rows,
    *wrk_part,
    "",
    "Reproduce: `bash bench/swap.sh` (one tool: `bash bench/swap.sh berth` or `bash bench/swap.sh docker-compose`; "
    "`WRK_CONNS=`, `WRK_SECONDS=`, `WRK_LEAD=` set the keep-alive runs). The seed publishes a free port instead of "
    "8080 so the script can run beside the other benchmarks.",
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
