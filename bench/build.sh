#!/usr/bin/env bash
# `berth build` against `docker build` (Docker 20.10, its default builder),
# same machine, same run: the seed's code image and a generated context of
# 20,000 files (~300 MB) with a .dockerignore, cold (--no-cache) and cached.
# Writes the "build" section of BENCHMARKS.md as ratios of medians.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

need=()
command -v hyperfine >/dev/null || need+=(hyperfine)
command -v dockerd >/dev/null || need+=(docker.io)
if ((${#need[@]})); then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null; fi
if ! docker info >/dev/null 2>&1; then
  (dockerd >/tmp/berth-bench-dockerd.log 2>&1 &)
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
fi
cargo build --release -q -p berth-cli
berth=${CARGO_TARGET_DIR:-$root/target}/release/berth

work=$(mktemp -d)
export BERTH_STATE_DIR=$work/state
trap 'rm -rf "$work"; docker rmi -f berth-bench-seed berth-bench-big >/dev/null 2>&1 || true' EXIT

# The same base image for both, from one archive.
python3 bench/lib/true_image.py "$work/true.tar"
"$berth" load -i "$work/true.tar" >/dev/null
docker load -i "$work/true.tar" >/dev/null

# The seed, with a node_modules that .dockerignore leaves out.
cp -r examples/seed "$work/seed"
mkdir -p "$work/seed/node_modules/dep"
for i in $(seq 1 200); do echo "module.exports = $i" > "$work/seed/node_modules/dep/f$i.js"; done
printf 'services:\n  code:\n    build: .\n    image: berth-bench-seed\n' > "$work/seed/compose.yaml"

# 20,000 files, ~300 MB, plus 2,000 ignored ones.
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
size=$(du -sm "$work/big/src" | cut -f1)

runs() { hyperfine -N --warmup "$1" --runs "$2" --export-json "$work/$3.json" \
  -n berth "$4" -n "docker build" "$5" >/dev/null; }
runs 1 10 seed-cold "$berth -f $work/seed/compose.yaml build -q --no-cache" "docker build -q --no-cache -t berth-bench-seed $work/seed"
runs 1 10 seed-cached "$berth -f $work/seed/compose.yaml build -q" "docker build -q -t berth-bench-seed $work/seed"
runs 1 ${BIG_RUNS:-5} big-cold "$berth -f $work/big/compose.yaml build -q --no-cache" "docker build -q --no-cache -t berth-bench-big $work/big"
runs 1 ${BIG_RUNS:-5} big-cached "$berth -f $work/big/compose.yaml build -q" "docker build -q -t berth-bench-big $work/big"
docker builder prune -af >/dev/null 2>&1 || true

python3 - "$work" "$root/BENCHMARKS.md" "$size" <<'PY'
import json, sys, re
work, out, size = sys.argv[1], sys.argv[2], sys.argv[3]
def med(name, cmd):
    d = json.load(open(f"{work}/{name}.json"))
    return next(r["median"] for r in d["results"] if r["command"] == cmd)
rows = []
for name, label in [("seed-cold", "seed code image, cold (`--no-cache`)"), ("seed-cached", "seed code image, cached"),
                    ("big-cold", f"20,000 files / {size} MB + .dockerignore, cold"), ("big-cached", f"20,000 files / {size} MB, cached")]:
    b, d = med(name, "berth"), med(name, "docker build")
    rows.append(f"| {label} | {b*1000:.0f} ms | {d*1000:.0f} ms | **{d/b:.1f}× faster** |")
section = "\n".join([
    "## build",
    "",
    "`berth build` vs `docker build` (Docker 20.10, its default builder), medians of hyperfine runs, same machine, same run. "
    "Both start from the same `tianon/true` look-alike, loaded from one archive.",
    "",
    "| context | berth | docker build | ratio (docker / berth) |",
    "|---|---|---|---|",
    *rows,
    "",
    "Reproduce: `bash bench/build.sh` (`BIG_RUNS=` sets the run count of the large context).",
    "",
])
text = open(out).read() if __import__("os").path.exists(out) else "# Benchmarks\n\n"
if "## build" in text:
    text = re.sub(r"## build\n.*?(?=\n## |\Z)", section, text, flags=re.S)
else:
    text = text.rstrip("\n") + "\n\n" + section
open(out, "w").write(text)
print(section)
PY
