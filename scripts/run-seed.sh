#!/usr/bin/env bash
# The main job: the seed example, verbatim, on berth's embedded engine.
# No image registry is reachable here, so the seed's images are first made
# from the npm registry and Debian packages and put into a loopback registry
# (scripts/seed-registry.sh); berth then pulls them through that mirror.
# `berth up` stays attached: open http://127.0.0.1:8080, Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
port=${1:-5000}
cargo build --release -q -p berth-cli
export BERTH="${CARGO_TARGET_DIR:-$PWD/target}/release/berth"
eval "$(bash scripts/seed-registry.sh "$port" --node-versions 4.2.2)"
cd examples/seed
exec "$BERTH" up
