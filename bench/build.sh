#!/usr/bin/env bash
# `berth build` against `docker build`, same machine, same run, two parts:
#
# 1. RUN projects (default): the fixture projects of crates/cli/tests/fixtures
#    (PROJECTS, default "node-backend go-static") built by berth and by Docker
#    20.10's BuildKit (`DOCKER_BUILDKIT=1 /usr/bin/docker build`), from the
#    same Dockerfile (heredocs rewritten by bench/lib/no_heredoc.py, which
#    Docker 20.10's built-in frontend predates) on the same debian:bookworm-slim
#    (scripts/seed-registry.sh, loaded into both). Rows:
#      cold         build cache and cache mounts emptied before each run
#                   (`berth builder prune`, `docker builder prune -af`)
#      no change    everything cached
#      source       one source file changed: only the last COPY and after rerun
#      lockfile     package-lock.json changed: `npm ci` reruns on its warm
#                   cache mount (projects with a lockfile)
#    and the peak resident memory of one cold build: berth's process tree;
#    for Docker the client's plus dockerd's and containerd's trees (its steps
#    run under them), daemons included since they are what a build costs.
# 2. COPY-only contexts (COPY_ROWS=1): the seed's code image and a generated
#    context of 20,000 files, against Docker's default builder.
#
# Writes its parts of the "build" section of BENCHMARKS.md (ratios of medians).
# hyperfine runs each side's runs of a row in a block; on a loaded machine the
# cold rows are fairer from bench/build-cold-interleaved.sh (sides alternate).
# Env: PROJECTS, RUNS (warm rows, default 5), COLD_RUNS (default 2), COPY_ROWS,
# BIG_RUNS, BERTH (binary; default target/release/berth, built if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
PROJECTS=${PROJECTS:-node-backend go-static}
RUNS=${RUNS:-5}
COLD_RUNS=${COLD_RUNS:-2}
COPY_ROWS=${COPY_ROWS:-0}
docker=/usr/bin/docker

need=()
command -v hyperfine >/dev/null || need+=(hyperfine)
command -v dockerd >/dev/null || need+=(docker.io)
if ((${#need[@]})); then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null; fi
if ! $docker info >/dev/null 2>&1; then
  setsid -f dockerd >/tmp/berth-bench-dockerd.log 2>&1 </dev/null
  for _ in $(seq 1 60); do $docker info >/dev/null 2>&1 && break; sleep 0.5; done
fi
if [ -z "${BERTH:-}" ]; then
  cargo build --release -q -p berth-cli
  BERTH=${CARGO_TARGET_DIR:-$root/target}/release/berth
fi
berth=$BERTH

work=$(mktemp -d)
export BERTH_STATE_DIR=$work/state
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cleanup() {
  bash scripts/seed-registry.sh "$port" --storage "$work/registry" --stop >/dev/null 2>&1 || true
  $docker rmi -f berth-bench-seed berth-bench-big $(for p in $PROJECTS; do echo "berth-bench-$p"; done) >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

runs() { hyperfine -N --warmup "$1" --runs "$2" --export-json "$work/$3.json" \
  -n berth "$4" -n "docker build" "$5" >/dev/null; }

# ------------------------------------------------------------ RUN projects
if [ -n "$PROJECTS" ]; then
  echo "build bench: debian:bookworm-slim into a registry on 127.0.0.1:$port" >&2
  BERTH=$berth bash scripts/seed-registry.sh "$port" --node-versions "" --storage "$work/registry" >/dev/null
  export BERTH_REGISTRY_MIRRORS="docker.io=http://127.0.0.1:$port"
  $docker pull -q "127.0.0.1:$port/library/debian:bookworm-slim" >/dev/null
  # The name the Dockerfiles use; BuildKit takes a local image without asking Hub.
  $docker tag "127.0.0.1:$port/library/debian:bookworm-slim" debian:bookworm-slim
  $docker rmi "127.0.0.1:$port/library/debian:bookworm-slim" >/dev/null
  # And into berth's store, so that neither pulls during a build.
  printf 'services:\n  base:\n    image: debian:bookworm-slim\n' >"$work/base.yaml"
  "$berth" -f "$work/base.yaml" pull -q
  mkdir -p "$work/results"
  # A source change: a comment line appended (every run a new one).
  cat >"$work/touch-src" <<'SH'
#!/bin/sh
echo "// $(date +%s%N)" >>"$1"
SH
  # A version bump: the lockfile changes, the dependencies do not, so
  # `npm ci` reruns on a warm cache mount.
  cat >"$work/bump" <<'SH'
#!/bin/sh
sed -i -E "0,/\"version\": \"[^\"]*\"/s//\"version\": \"1.0.$(date +%N)\"/" "$1"
SH
  chmod +x "$work/touch-src" "$work/bump"
  for p in $PROJECTS; do
    fixture=crates/cli/tests/fixtures/$p
    [ -d "$fixture" ] || { echo "no fixture $fixture" >&2; exit 1; }
    b=$work/berth-$p d=$work/docker-$p
    for ctx in "$b" "$d"; do
      cp -r "$fixture" "$ctx"
      python3 bench/lib/no_heredoc.py "$ctx"
    done
    printf 'services:\n  app:\n    build: .\n    image: berth-bench-%s\n' "$p" >"$b/compose.yaml"
    bb="$berth -f $b/compose.yaml --progress quiet build"
    db="$docker build -q -t berth-bench-$p $d"
    export DOCKER_BUILDKIT=1
    # The source file a change of touches, per project.
    case $p in
      node-*) src=greeting.js ;;
      go-*) src=greeting.go ;;
      python-*) src=app.py ;;
      *) src=Dockerfile ;;
    esac
    echo "build bench: $p cold ($COLD_RUNS runs each)" >&2
    hyperfine -N --runs "$COLD_RUNS" --export-json "$work/results/$p.cold.json" \
      --prepare "$berth builder prune" -n berth "$bb" \
      --prepare "$docker builder prune -af" -n "docker build" "$db" >/dev/null
    echo "build bench: $p peak memory of a cold build" >&2
    $berth builder prune >/dev/null
    python3 bench/lib/peakmem.py -- $bb >"$work/results/$p.mem.berth"
    $docker builder prune -af >/dev/null
    python3 bench/lib/peakmem.py --daemon dockerd --daemon containerd -- $db >"$work/results/$p.mem.docker"
    echo "build bench: $p no change, source change ($RUNS runs each)" >&2
    runs 1 "$RUNS" "results/$p.nochange" "$bb" "$db"
    hyperfine -N --warmup 1 --runs "$RUNS" --export-json "$work/results/$p.source.json" \
      --prepare "$work/touch-src $b/$src" -n berth "$bb" \
      --prepare "$work/touch-src $d/$src" -n "docker build" "$db" >/dev/null
    if [ -f "$fixture/package-lock.json" ]; then
      echo "build bench: $p lockfile change ($RUNS runs each)" >&2
      hyperfine -N --warmup 1 --runs "$RUNS" --export-json "$work/results/$p.lockfile.json" \
        --prepare "$work/bump $b/package-lock.json" -n berth "$bb" \
        --prepare "$work/bump $d/package-lock.json" -n "docker build" "$db" >/dev/null
    fi
  done
  $docker rmi debian:bookworm-slim >/dev/null 2>&1 || true
fi

# ------------------------------------------------------------ COPY-only contexts
if [ "$COPY_ROWS" = 1 ]; then
  unset DOCKER_BUILDKIT
  python3 bench/lib/true_image.py "$work/true.tar"
  "$berth" load -i "$work/true.tar" >/dev/null
  $docker load -i "$work/true.tar" >/dev/null
  cp -r examples/seed "$work/seed"
  mkdir -p "$work/seed/node_modules/dep"
  for i in $(seq 1 200); do echo "module.exports = $i" >"$work/seed/node_modules/dep/f$i.js"; done
  printf 'services:\n  code:\n    build: .\n    image: berth-bench-seed\n' >"$work/seed/compose.yaml"
  python3 - "$work/big" <<'PY'
import os, sys, random
root = sys.argv[1]
random.seed(42)
for i in range(20000):
    d = os.path.join(root, "src", f"d{i % 200:03}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i:05}.bin"), "wb") as f:
        f.write(random.randbytes(random.randint(1000, 29000)))
for i in range(2000):
    d = os.path.join(root, "ignored", f"d{i % 20}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"x{i}.tmp"), "wb") as f:
        f.write(b"x" * 1000)
with open(os.path.join(root, ".dockerignore"), "w") as f:
    f.write("ignored\n**/*.tmp\n")
with open(os.path.join(root, "Dockerfile"), "w") as f:
    f.write("FROM scratch\nCOPY . /data\n")
with open(os.path.join(root, "compose.yaml"), "w") as f:
    f.write("services:\n  big:\n    build: .\n    image: berth-bench-big\n")
PY
  du -sm "$work/big/src" | cut -f1 >"$work/big.size"
  runs 1 10 seed-cold "$berth -f $work/seed/compose.yaml build -q --no-cache" "$docker build -q --no-cache -t berth-bench-seed $work/seed"
  runs 1 10 seed-cached "$berth -f $work/seed/compose.yaml build -q" "$docker build -q -t berth-bench-seed $work/seed"
  runs 1 "${BIG_RUNS:-5}" big-cold "$berth -f $work/big/compose.yaml build -q --no-cache" "$docker build -q --no-cache -t berth-bench-big $work/big"
  runs 1 "${BIG_RUNS:-5}" big-cached "$berth -f $work/big/compose.yaml build -q" "$docker build -q -t berth-bench-big $work/big"
fi

python3 - "$work" "$root/BENCHMARKS.md" "$PROJECTS" "$COPY_ROWS" "$RUNS" "$COLD_RUNS" "$(git rev-parse --short HEAD)" <<'PY'
import json, os, re, sys
work, out, projects, copy_rows, runs, cold_runs, commit = sys.argv[1:8]

def med(path, cmd):
    d = json.load(open(path))
    return next(r["median"] for r in d["results"] if r["command"] == cmd)

def ms(s):
    return f"{s:.1f} s" if s >= 10 else f"{s * 1000:.0f} ms"

def ratio(b, d):
    r = d / b
    return f"**{r:.1f}× faster**" if r >= 1 else f"{1 / r:.1f}× slower"

text = open(out).read() if os.path.exists(out) else "# Benchmarks\n\n"
m = re.search(r"## build\n.*?(?=\n## |\Z)", text, flags=re.S)
section = m.group(0) if m else "## build\n"

def replace_part(section, tag, body):
    start, end = f"<!-- build:{tag} -->", f"<!-- /build:{tag} -->"
    block = f"{start}\n{body}\n{end}"
    if start in section:
        return re.sub(re.escape(start) + r".*?" + re.escape(end), lambda _: block, section, flags=re.S)
    # A new part goes before the other part there is, else at the end.
    for other in ("<!-- build:run -->", "<!-- build:copy -->"):
        if other in section:
            return section.replace(other, block + "\n\n" + other, 1)
    return section.rstrip("\n") + "\n\n" + block + "\n"

if projects.strip():
    rows, mem = [], []
    labels = [("cold", "cold (caches emptied)"), ("nochange", "no change"),
              ("source", "source change (last `COPY`)"), ("lockfile", "lockfile change, `npm ci` on a warm cache mount")]
    for p in projects.split():
        for key, label in labels:
            path = f"{work}/results/{p}.{key}.json"
            if not os.path.exists(path):
                continue
            b, d = med(path, "berth"), med(path, "docker build")
            rows.append(f"| `{p}` | {label} | {ms(b)} | {ms(d)} | {ratio(b, d)} |")
        mb = open(f"{work}/results/{p}.mem.berth").read().strip()
        md = open(f"{work}/results/{p}.mem.docker").read().strip()
        mem.append(f"| `{p}` | {mb} MB | {md} MB |")
    body = "\n".join([
        "### RUN projects: berth vs BuildKit",
        "",
        f"Fixture projects of `crates/cli/tests/fixtures` built by `berth build` and by BuildKit "
        f"(`DOCKER_BUILDKIT=1`, Docker 20.10.24's client and daemon), same Dockerfile (heredocs rewritten, "
        f"`bench/lib/no_heredoc.py`), same `debian:bookworm-slim`, same machine, same run (commit {commit}). "
        f"Medians of hyperfine runs: {cold_runs} cold, {runs} of each other row. The machine has 2 cores shared "
        f"with other work, so absolute times move between runs; the ratios are what to read.",
        "",
        "| project | row | berth | BuildKit | ratio (BuildKit / berth) |",
        "|---|---|---|---|---|",
        *rows,
        "",
        "Peak resident memory of one cold build (berth: its process tree, steps included; Docker: the client's, "
        "dockerd's and containerd's trees, daemons included, since they are what a build costs):",
        "",
        "| project | berth | Docker + BuildKit |",
        "|---|---|---|",
        *mem,
        "",
        "Reproduce: `bash bench/build.sh` (`PROJECTS=`, `RUNS=`, `COLD_RUNS=`; it starts `dockerd` if none runs).",
    ])
    section = replace_part(section, "run", body)

if copy_rows == "1":
    size = open(f"{work}/big.size").read().strip()
    rows = []
    for name, label in [("seed-cold", "seed code image, cold (`--no-cache`)"), ("seed-cached", "seed code image, cached"),
                        ("big-cold", f"20,000 files / {size} MB + .dockerignore, cold"), ("big-cached", f"20,000 files / {size} MB, cached")]:
        b, d = med(f"{work}/{name}.json", "berth"), med(f"{work}/{name}.json", "docker build")
        rows.append(f"| {label} | {b*1000:.0f} ms | {d*1000:.0f} ms | {ratio(b, d)} |")
    body = "\n".join([
        "### COPY-only contexts: berth vs Docker's default builder",
        "",
        "Both start from the same `tianon/true` look-alike, loaded from one archive.",
        "",
        "| context | berth | docker build | ratio (docker / berth) |",
        "|---|---|---|---|",
        *rows,
        "",
        "Reproduce: `PROJECTS= COPY_ROWS=1 bash bench/build.sh` (`BIG_RUNS=` sets the run count of the large context).",
    ])
    section = replace_part(section, "copy", body)

text = text.replace(m.group(0), section) if m else text.rstrip("\n") + "\n\n" + section + "\n"
open(out, "w").write(text)
print(section)
PY
