#!/usr/bin/env bash
# What a user installs: the size of the release binary, the libraries it loads
# (`ldd`), and the time of a cold `cargo build --release -p berth-cli` (an empty
# target directory of its own, so the shared target/ is left alone; crates already
# downloaded, so the time is compiling only). The build runs under `nice`, as the
# machine may be shared. Writes the "release binary" section of BENCHMARKS.md.
#
#   bash bench/release.sh        (TARGET= the empty target directory; default a temp one)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
if [ -n "${TARGET:-}" ]; then
  target=$TARGET
else
  target=$(mktemp -d)
  trap 'rm -rf "$target"' EXIT
fi
if [ -n "$(ls -A "$target" 2>/dev/null)" ]; then
  echo "$target is not empty: a cold build needs an empty target directory" >&2
  exit 1
fi
# The source measured: this checkout's HEAD (plus any uncommitted edits), or COMMIT=
# when run in an exported tree (`git archive HEAD | tar -x -C DIR`).
commit=${COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
cargo fetch -q
load_start=$(cut -d' ' -f1 /proc/loadavg)
t0=$(date +%s.%N)
CARGO_TARGET_DIR=$target nice -n 10 cargo build --release -q -p berth-cli
t1=$(date +%s.%N)
load_end=$(cut -d' ' -f1 /proc/loadavg)
bin=$target/release/berth
size=$(stat -c %s "$bin")
libs=$(ldd "$bin" | awk '{print $1}' | sed 's|.*/||' | sort | paste -sd, - | sed 's/,/, /g')

python3 - "$root/BENCHMARKS.md" "$size" "$t0" "$t1" "$libs" "$load_start" "$load_end" "$commit" <<'PY'
import os, re, sys
out, size, t0, t1, libs, ls, le, commit = sys.argv[1:]
secs = float(t1) - float(t0)
section = "\n".join([
    "## release binary",
    "",
    f"What `cargo build --release -p berth-cli` produces (commit {commit}) with the workspace's release profile (`strip = true`, "
    "`lto = \"thin\"`, `codegen-units = 16`, no debug info; with full debug info the binary was 161 MB).",
    "",
    "| what | value |",
    "|---|---|",
    f"| size of `target/release/berth` | {int(size) / 1e6:.1f} MB ({int(size):,} bytes) |",
    f"| cold build (empty target directory, crates already downloaded, x86_64, {os.cpu_count()} cores, `nice -n 10`; "
    f"load average {ls} at the start, {le} at the end) | {int(secs // 60)} min {secs % 60:.0f} s |",
    f"| `ldd` | {libs} |",
    "",
    "`ldd` lists glibc's libraries (libc, libm, the loader, the vDSO) and libgcc_s (the unwinder Rust's standard "
    "library uses); no libseccomp or any other C library. Reproduce: `bash bench/release.sh`.",
    "",
])
text = open(out).read() if os.path.exists(out) else "# Benchmarks\n\n"
marker = "## release binary"
if marker in text:
    text = re.sub(re.escape(marker) + r"\n.*?(?=\n## |\Z)", lambda _: section, text, flags=re.S)
else:
    text = text.rstrip("\n") + "\n\n" + section
open(out, "w").write(text)
print(section)
PY
