#!/usr/bin/env bash
# The seed's scenarios on three engines, same machine, same images, same run:
#   berth-docker     berth --engine docker, on Docker 20.10 (ports held by
#                    berth's keeper, `berth __docker-ports PROJECT`)
#   docker-compose   docker-compose 1.29.2, on the same Docker 20.10
#   berth-embedded   berth's own engine (no daemon), for reference
# Each run, for each engine (the order rotates from run to run):
#   1. `up -d` until the first HTTP 200 (images present: built and loaded untimed);
#   2. `up -d` again, nothing changed (hyperfine, median of 3);
#   3. the runtime swap 4.2.2 → 4.2.3, `up -d`,
#   4. the code change (index.js edited), `up -d --build`,
#      each while bench/lib/poll.py polls the published port every 20 ms:
#      failed requests, longest outage, time from `up` to the new version
#      served, and how long `up` itself took;
#   5. `down`.
# Medians over RUNS runs go to the "engines" section of BENCHMARKS.md when all
# three engines ran. The seed publishes a free port per engine (not 8080) and
# its projects are named engbd/engdc/engbe, so this runs beside the other
# benchmarks; all traffic goes to 127.0.0.1.
#
#   bash bench/engines.sh                         # all three, writes BENCHMARKS.md
#   bash bench/engines.sh berth-docker            # some of them, prints figures only
#   RUNS=3 (default)  CODE_WAIT=15 (s to wait for new code after `up --build`)
#   BERTH=/path/to/berth  benchmarks that binary instead of building one
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
RUNS=${RUNS:-3}
CODE_WAIT=${CODE_WAIT:-15}
all=(berth-docker docker-compose berth-embedded)
engines=("$@")
((${#engines[@]})) || engines=("${all[@]}")
for e in "${engines[@]}"; do
  [[ " ${all[*]} " == *" $e "* ]] || { echo "unknown engine $e (${all[*]})" >&2; exit 2; }
done

need=()
command -v docker-compose >/dev/null || need+=(docker-compose)
command -v dockerd >/dev/null || need+=(docker.io)
command -v hyperfine >/dev/null || need+=(hyperfine)
if ((${#need[@]})); then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null; fi
if ! docker info >/dev/null 2>&1; then
  setsid -f dockerd >/tmp/berth-bench-dockerd.log 2>&1 </dev/null
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
fi
if [ -z "${BERTH:-}" ]; then
  cargo build --release -q -p berth-cli
  BERTH=${CARGO_TARGET_DIR:-$root/target}/release/berth
  BERTH_LABEL=${BERTH_LABEL:-$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates Cargo.lock || echo ' with uncommitted changes')}
fi
# What the table says berth is: BERTH_LABEL (e.g. the commit BERTH was built from).
BERTH_LABEL=${BERTH_LABEL:-a pre-built binary, BERTH=$BERTH}

work=$(mktemp -d)
# A private copy: the keeper is this binary (`berth __docker-ports`), and a
# rebuild of target/release by someone else must not change it mid-run.
mkdir -p "$work/bin"
cp "$BERTH" "$work/bin/berth"
export BERTH=$work/bin/berth
export BERTH_STATE_DIR=$work/state BERTH_CONFIG=$work/none.toml
: > "$BERTH_CONFIG"
unset BERTH_ENGINE
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
reg_port=$(free_port)

short() { case $1 in berth-docker) echo bd ;; docker-compose) echo dc ;; berth-embedded) echo be ;; esac; }
dir_of() { echo "$work/$1/eng$(short "$1")"; }
cmd_of() { # engine -> the tool's command words
  case $1 in
    berth-docker) echo "$BERTH --engine docker" ;;
    docker-compose) echo docker-compose ;;
    berth-embedded) echo "$BERTH" ;;
  esac
}
code_image() { # engine -> the code image's name in Docker
  case $1 in berth-docker) echo engbd-code ;; docker-compose) echo engdc_code ;; esac
}

cleanup() {
  local e d
  for e in "${engines[@]}"; do
    d=$(dir_of "$e")
    [ -d "$d" ] || continue
    # shellcheck disable=SC2046
    (cd "$d" && $(cmd_of "$e") down -v -t 1 >/dev/null 2>&1) || true
  done
  bash scripts/seed-registry.sh "$reg_port" --storage "$work/registry" --stop >/dev/null 2>&1 || true
  local pid
  pid=$(cat "$work/registry/registry.pid" 2>/dev/null) && kill "$pid" 2>/dev/null || true
  docker rmi -f engbd-code engdc_code >/dev/null 2>&1 || true
  [ -n "${KEEP:-}" ] && { echo "kept $work" >&2; return; }
  rm -rf "$work"
}
trap cleanup EXIT
eval "$(bash scripts/seed-registry.sh "$reg_port" --storage "$work/registry" --node-versions "4.2.2 4.2.3" --no-base 2>/dev/null)"

declare -A port
for e in "${engines[@]}"; do
  port[$e]=$(free_port)
  d=$(dir_of "$e")
  mkdir -p "$(dirname "$d")"
  cp -r examples/seed "$d"
  sed -i "s/\"8080:3000\"/\"${port[$e]}:3000\"/" "$d/docker-compose.yml"
  grep -q "\"${port[$e]}:3000\"" "$d/docker-compose.yml"
done
docker rmi -f engbd-code engdc_code >/dev/null 2>&1 || true

# Both runtime images in berth's store; Docker loads the very same archives.
mkdir -p "$work/pull"
printf 'services:\n  a: {image: "quay.io/oddnetworks/alpine-nodejs:4.2.2"}\n  b: {image: "quay.io/oddnetworks/alpine-nodejs:4.2.3"}\n' > "$work/pull/compose.yaml"
(cd "$work/pull" && "$BERTH" pull -q)
for v in 4.2.2 4.2.3; do "$BERTH" save -o "$work/runtime-$v.tar" "quay.io/oddnetworks/alpine-nodejs:$v"; done
python3 bench/lib/true_image.py "$work/true.tar"
# Again before each run: another benchmark sharing this dockerd may remove them.
docker_images() {
  local v
  for v in 4.2.2 4.2.3; do
    docker image inspect "quay.io/oddnetworks/alpine-nodejs:$v" >/dev/null 2>&1 || docker load -i "$work/runtime-$v.tar" >/dev/null
  done
  docker image inspect tianon/true >/dev/null 2>&1 || docker load -i "$work/true.tar" >/dev/null
}

now() { python3 -c 'import time; print(f"{time.monotonic():.4f}")'; }
wait_body() { # port text timeout_s -> 0 once a 200 carries text (a deadline, not a count)
  local deadline=$(($(date +%s) + $3))
  while (($(date +%s) < deadline)); do
    curl -sf --max-time 1 "http://127.0.0.1:$1/" 2>/dev/null | grep -q "$2" && return 0
    sleep 0.02
  done
  return 1
}
rec() { echo "$*" >> "$work/results"; } # engine run metric value

# Untimed: the seed as shipped (tag 4.2.2, original index.js), its code
# image built from that and present where the engine looks for it.
prepare() { # engine
  local e=$1 d
  d=$(dir_of "$e")
  cp "$root/examples/seed/index.js" "$d/index.js"
  sed -i 's/alpine-nodejs:4.2.3/alpine-nodejs:4.2.2/' "$d/docker-compose.yml"
  cd "$d"
  case $e in
    docker-compose) docker_images; docker-compose build -q >/dev/null 2>&1 ;;
    berth-embedded) "$BERTH" build -q >/dev/null 2>&1 ;;
    berth-docker)
      docker_images
      # berth's builder builds; Docker gets the image the way `up` hands it
      # over (berth's archive, loaded) — `berth build` alone stays in berth's store.
      "$BERTH" build -q >/dev/null 2>&1
      docker rmi -f engbd-code >/dev/null 2>&1 || true
      "$BERTH" save -o "$work/code.tar" engbd-code
      docker load -i "$work/code.tar" >/dev/null
      ;;
  esac
  cd "$root"
}

# Docker volumes the project's containers mount: removed after `down` (untimed).
volumes_of() { # engine project
  [ "$1" = berth-embedded ] && return 0
  local ids
  ids=$(docker ps -aq --filter "label=com.docker.compose.project=$2")
  [ -n "$ids" ] || return 0
  # shellcheck disable=SC2086
  docker inspect -f '{{range .Mounts}}{{if eq .Type "volume"}}{{.Name}} {{end}}{{end}}' $ids >> "$work/volumes-$1" 2>/dev/null || true
}

# One change under the poller: `step ENGINE RUN NAME EXPECTED WAIT CMD...`.
step() {
  local e=$1 run=$2 name=$3 expected=$4 wait_s=$5; shift 5
  local p=${port[$e]} stop=$work/stop poll=$work/poll-$e-$run-$name
  rm -f "$stop"
  python3 "$root/bench/lib/poll.py" "http://127.0.0.1:$p/" "$poll" "$stop" &
  local poller=$!
  sleep 0.5
  local t0 t1
  t0=$(now)
  "$@" >"$work/out-$e-$run-$name" 2>&1 || echo "  ($e run $run $name: exit $?; $work/out-$e-$run-$name)" >&2
  t1=$(now)
  wait_body "$p" "$expected" "$wait_s" || true
  sleep 1
  touch "$stop"; wait "$poller" || true
  rec "$e" "$run" "$name" "$(python3 "$root/bench/lib/outage.py" "$poll" "$t0" "$t1" "$expected")"
}

one_run() { # engine run
  local e=$1 run=$2 d t0 t1 proj
  d=$(dir_of "$e")
  proj=eng$(short "$e")
  local -a c
  read -r -a c <<<"$(cmd_of "$e")"
  : > "$work/volumes-$e"
  prepare "$e"
  cd "$d"
  t0=$EPOCHREALTIME
  "${c[@]}" up -d >"$work/out-$e-$run-up" 2>&1 || echo "  ($e run $run up: exit $?)" >&2
  wait_body "${port[$e]}" "version: 4.2.2" 180 || { echo "$e: the seed never served 4.2.2; $work/out-$e-$run-up:" >&2; cat "$work/out-$e-$run-up" >&2; exit 1; }
  t1=$EPOCHREALTIME
  rec "$e" "$run" up_to_200 "$(python3 -c "print(round(($t1 - $t0) * 1000))")"
  hyperfine -N -r 3 --export-json "$work/noop.json" "$(cmd_of "$e") up -d" >/dev/null 2>&1
  rec "$e" "$run" up_noop "$(python3 -c 'import json,sys; print(round(json.load(open(sys.argv[1]))["results"][0]["median"]*1000))' "$work/noop.json")"
  volumes_of "$e" "$proj"
  sed -i 's/alpine-nodejs:4.2.2/alpine-nodejs:4.2.3/' docker-compose.yml
  step "$e" "$run" runtime-swap "version: 4.2.3" 30 "${c[@]}" up -d
  volumes_of "$e" "$proj"
  sed -i "s/'I am running nodejs version: '/'Now running nodejs version: '/" index.js
  grep -q "Now running" index.js
  step "$e" "$run" code-change "Now running" "$CODE_WAIT" "${c[@]}" up -d --build
  volumes_of "$e" "$proj"
  t0=$EPOCHREALTIME
  "${c[@]}" down >"$work/out-$e-$run-down" 2>&1 || echo "  ($e run $run down: exit $?)" >&2
  t1=$EPOCHREALTIME
  rec "$e" "$run" down "$(python3 -c "print(round(($t1 - $t0) * 1000))")"
  # Untimed: what down leaves (anonymous volumes, for docker-compose) goes.
  # shellcheck disable=SC2046
  [ -s "$work/volumes-$e" ] && docker volume rm $(tr ' ' '\n' <"$work/volumes-$e" | sort -u) >/dev/null 2>&1 || true
  cd "$root"
}

: > "$work/results"
echo "load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)" | tee "$work/load" >&2
started=$(date +%s)
for run in $(seq 1 "$RUNS"); do
  n=${#engines[@]}
  for i in $(seq 0 $((n - 1))); do
    e=${engines[$(((i + run - 1) % n))]}
    one_run "$e" "$run"
    echo "run $run $e done ($(($(date +%s) - started)) s; load $(cut -d' ' -f1 /proc/loadavg))" >&2
  done
  echo "load average after run $run: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$work/load" >&2
done
cat "$work/results"

write=0
((${#engines[@]} == 3)) && write=1
python3 - "$work/results" "$root/BENCHMARKS.md" "$RUNS" "$CODE_WAIT" "$write" "$work/load" "$(docker version --format '{{.Server.Version}}')" "$(docker-compose version --short)" "$BERTH_LABEL" <<'PY'
import json, os, re, statistics, sys
results, out, runs, code_wait, write, loadf, dver, dcver, commit = sys.argv[1:]
vals = {}
for line in open(results):
    e, run, metric, value = line.rstrip("\n").split(" ", 3)
    if value.startswith("{"):
        for k, v in json.loads(value).items():
            vals.setdefault((e, f"{metric}.{k}"), []).append(v)
    else:
        vals.setdefault((e, metric), []).append(float(value))
engines = [e for e in ("docker-compose", "berth-docker", "berth-embedded") if any(k[0] == e for k in vals)]

def med(e, m):
    xs = vals.get((e, m))
    if not xs:
        return None
    if any(x is None for x in xs):
        # "never" counts as longer than any time: the median is "never" when half or more are.
        never = sum(x is None for x in xs)
        if never * 2 >= len(xs):
            return None
        xs = sorted(x for x in xs if x is not None) + [float("inf")] * never
    return statistics.median(xs)

def fmt(v, unit):
    if v is None:
        return "never"
    if v == float("inf"):
        return "never"
    if unit == "ms":
        return f"{v:.0f} ms"
    if unit == "s":
        return f"{v:.2f} s"
    return f"{v:g}"

def ratio(d, b, unit):
    """docker-compose / berth: > 1 means berth is better (less time, fewer failures)."""
    if d is None and b is None:
        return "—"
    if b is None:
        return "berth: never"
    if d is None:
        return "**∞** (docker-compose never)"
    if b == 0 and d == 0:
        return "= (both 0)"
    if b == 0:
        return f"**∞** ({fmt(d, unit)} vs 0)"
    r = d / b
    return f"**{r:.1f}×**" if r >= 1 else f"**{r:.2f}×** (slower)"

rows_spec = [
    ("up_to_200", "ms", "`up -d` until the first HTTP 200 (images present)"),
    ("up_noop", "ms", "`up -d` again, nothing changed"),
    ("runtime-swap.failed", "", "runtime swap 4.2.2 → 4.2.3 (`up -d`) under a 20 ms poller: failed requests"),
    ("runtime-swap.longest_outage_s", "s", "runtime swap: longest outage"),
    ("runtime-swap.new_version_after_s", "s", "runtime swap: from `up` to 4.2.3 served"),
    ("runtime-swap.up_s", "s", "runtime swap: `up -d` itself"),
    ("code-change.failed", "", "code change (`up -d --build`) under a 20 ms poller: failed requests"),
    ("code-change.longest_outage_s", "s", "code change: longest outage"),
    ("code-change.new_version_after_s", "s", f"code change: from `up` to the new code served"),
    ("code-change.up_s", "s", "code change: `up -d --build` itself"),
    ("down", "ms", "`down`"),
]
load = open(loadf).read().strip().splitlines()
rows = []
plain = []
for metric, unit, label in rows_spec:
    d, b, e = med("docker-compose", metric), med("berth-docker", metric), med("berth-embedded", metric)
    # fewer is better everywhere; berth-docker "beats" docker-compose when strictly better or both perfect.
    if d is None and b is not None:
        win = "yes"
    elif b is None:
        win = "**no**"
    elif b == d:
        win = "tie" + (" (both 0)" if b == 0 else "")
    else:
        win = "yes" if b < d else "**no**"
        # Runs are paired (same run, engines back to back): say when a median win is not a win in every run.
        pairs = [(x, y) for x, y in zip(vals.get(("berth-docker", metric), []), vals.get(("docker-compose", metric), []))
                 if x is not None and y is not None]
        if win == "yes" and any(x >= y for x, y in pairs):
            win = f"yes, not in every run ({sum(x < y for x, y in pairs)} of {len(pairs)})"
    rows.append(f"| {label} | {fmt(d, unit)} | {fmt(b, unit)} | {fmt(e, unit)} | {ratio(d, b, unit)} | {ratio(d, e, unit)} | {win} |")
    plain.append((metric, [vals.get((x, metric)) for x in ("docker-compose", "berth-docker", "berth-embedded")]))
for m, xs in plain:
    print(m, *xs, sep="\t")
if write != "1":
    sys.exit(0)
every = []
for metric, unit, label in rows_spec:
    if metric in ("up_to_200", "runtime-swap.failed", "runtime-swap.longest_outage_s", "runtime-swap.new_version_after_s",
                  "runtime-swap.up_s", "code-change.new_version_after_s", "code-change.up_s", "down"):
        parts = []
        for x in ("docker-compose", "berth-docker", "berth-embedded"):
            xs = vals.get((x, metric), [])
            parts.append(f"{x} " + ", ".join("never" if v is None else f"{v:g}" for v in xs))
        every.append(f"{label.split(' under')[0]} ({unit or 'count'}): " + "; ".join(parts))
notes = []
for step in ("runtime-swap", "code-change"):
    b, d = med("berth-docker", f"{step}.up_s"), med("docker-compose", f"{step}.up_s")
    if b is not None and d is not None and b > d:
        notes.append(
            f"{step.replace('-', ' ')}: `up` itself returns later on berth on Docker ({b:.2f} s) than with docker-compose "
            f"({d:.2f} s), though the new version is served sooner: berth's `up` "
            + ("hands the rebuilt code image to the daemon (an image load), recreates `code`, then " if step == "code-change" else "")
            + "starts the new `app` beside the old one and returns only once it answers (npm install and start) and the "
            "ports have switched to it; the replaced container is stopped by the port keeper after `up` returns"
            + (". docker-compose's `up -d --build` recreates only the exited `code` container: it has nothing to wait for, "
               "and serves the old code." if step == "code-change" else "."))
section = "\n".join([
    "## engines (berth on Docker vs docker-compose on Docker)",
    "",
    f"The seed, verbatim, on three engines, same machine, same images, same run: berth `--engine docker` and "
    f"docker-compose {dcver} on the same Docker {dver}, and berth's embedded engine for reference (berth {commit}, "
    f"release build). Medians of {runs} runs per engine, the three engines interleaved in each run (order rotated). "
    "Images present for every engine before `up` (built or loaded untimed: the runtime images are the archives berth "
    "pulled from the seed's loopback registry, loaded into Docker; berth's code image is handed to Docker the way "
    "`up` does it, as berth's archive loaded by the daemon). A client polls the published port every 20 ms "
    "(bench/lib/poll.py) during the swap and the code change. Ratios are docker-compose / berth: above 1, berth takes "
    "less time or drops fewer requests. "
    f"x86_64, {os.cpu_count()} cores shared with other engineers' builds: load average "
    + "; ".join(l.replace("load average ", "") for l in load) + ".",
    "",
    "| what | docker-compose on Docker | berth on Docker | berth embedded | docker-compose / berth on Docker | docker-compose / berth embedded | berth on Docker beats docker-compose |",
    "|---|---|---|---|---|---|---|",
    *rows,
    "",
    f"\"never\": docker-compose's `up -d --build` rebuilds the code image and recreates `code`, but `app` stays "
    "\"up-to-date\" and keeps its old anonymous `/app` volume, so it keeps serving the **old** code (not served "
    f"within {code_wait} s after `up` returned). berth gives the new code image a new volume and swaps "
    "`app`. `down` is the seed's npm as PID 1 ignoring SIGTERM: every engine waits out the 10 s stop timeout.",
    "",
    *[line for n in notes for line in (f"Where berth on Docker loses — {n}", "")],
    "Every run, in order: " + ". ".join(every) + ".",
    "",
    f"Reproduce: `RUNS={runs} bash bench/engines.sh` (one or two engines: `bash bench/engines.sh berth-docker "
    "docker-compose` prints the figures and leaves this file alone; `BERTH=` benchmarks a pre-built binary).",
    "",
])
text = open(out).read() if os.path.exists(out) else "# Benchmarks\n\n"
marker = "## engines (berth on Docker vs docker-compose on Docker)"
if marker in text:
    text = re.sub(re.escape(marker) + r"\n.*?(?=\n## |\Z)", lambda _: section, text, flags=re.S)
else:
    text = text.rstrip("\n") + "\n\n" + section
open(out, "w").write(text)
print(section)
PY
