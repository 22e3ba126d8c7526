#!/usr/bin/env bash
# `berth config` against `docker-compose config` (1.29.2), same machine, same
# run: on the seed file and on a generated file with 1,000 services.
# Writes the figures into BENCHMARKS.md (section "config") as ratios of medians.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

command -v hyperfine >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq hyperfine >/dev/null; }
command -v docker-compose >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null; }
cargo build --release -q -p berth-cli
berth=${CARGO_TARGET_DIR:-$root/target}/release/berth

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/big"
python3 - "$work/big/docker-compose.yml" <<'PY'
import sys
with open(sys.argv[1], "w") as f:
    f.write('version: "3.8"\nservices:\n')
    for i in range(1000):
        f.write(f"""  svc{i}:
    image: registry.example/app{i % 17}:1.{i % 5}
    command: ["node", "server.js", "--port", "{3000 + i}"]
    environment:
      - NODE_ENV=production
      - INDEX={i}
    ports:
      - "{20000 + i}:{3000 + i}"
    volumes:
      - data{i % 10}:/var/lib/app
      - ./conf:/etc/app:ro
    labels:
      tier: "t{i % 3}"
""")
        if i:
            f.write(f"    depends_on:\n      - svc{i - 1}\n")
    f.write("volumes:\n")
    for i in range(10):
        f.write(f"  data{i}:\n")
PY
"$berth" -f "$work/big/docker-compose.yml" config -q
docker-compose -f "$work/big/docker-compose.yml" config -q

run() { # name dir
  hyperfine -N --warmup 2 --runs "${RUNS:-20}" --export-json "$work/$1.json" \
    -n berth "$berth --project-directory $2 -f $2/docker-compose.yml config" \
    -n docker-compose "docker-compose --project-directory $2 -f $2/docker-compose.yml config" >/dev/null
}
run seed "$root/examples/seed"
run big "$work/big"

python3 - "$work" "$root/BENCHMARKS.md" <<'PY'
import json, sys, re, platform, subprocess
work, out = sys.argv[1], sys.argv[2]
def med(name, cmd):
    d = json.load(open(f"{work}/{name}.json"))
    return next(r["median"] for r in d["results"] if r["command"] == cmd)
dc = subprocess.run(["docker-compose", "version", "--short"], capture_output=True, text=True).stdout.strip()
rows = []
for name, label in [("seed", "seed file (examples/seed, legacy v1)"), ("big", "generated file, 1,000 services")]:
    b, d = med(name, "berth"), med(name, "docker-compose")
    rows.append(f"| {label} | {b*1000:.1f} ms | {d*1000:.1f} ms | **{d/b:.1f}× faster** |")
section = "\n".join([
    "## config",
    "",
    f"`berth config` vs `docker-compose config` (docker-compose {dc}), medians of hyperfine runs, same machine, same run "
    f"({platform.machine()}, {subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()} cores).",
    "",
    "| input | berth | docker-compose | ratio (docker-compose / berth) |",
    "|---|---|---|---|",
    *rows,
    "",
    "Reproduce: `bash bench/config.sh` (set `RUNS=` to change the run count).",
    "",
])
try:
    text = open(out).read()
except FileNotFoundError:
    text = "# Benchmarks\n\nEvery figure is a ratio of medians measured side by side on the same machine in the same run.\n\n"
if "## config" in text:
    text = re.sub(r"## config\n.*?(?=\n## |\Z)", section, text, flags=re.S)
else:
    text = text.rstrip("\n") + "\n\n" + section
open(out, "w").write(text)
print(section)
PY
