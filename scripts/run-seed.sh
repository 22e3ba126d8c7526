#!/usr/bin/env bash
# The main job: the seed on berth's embedded engine.
#
#   bash scripts/run-seed.sh                  examples/seed-runtime: the seed with
#                                             `x-runtime: node@4.2.2` (node from the npm
#                                             registry, verified, mounted on a Debian
#                                             base image made by mmdebstrap)
#   bash scripts/run-seed.sh examples/seed    the 2015 seed verbatim (image:
#                                             quay.io/oddnetworks/alpine-nodejs:4.2.2)
#
# No image registry is reachable here, so the images the example needs
# (tianon/true for the code image; the alpine-nodejs runtime image for the
# verbatim seed) are first made from the npm registry and Debian packages and
# put into a loopback registry (scripts/seed-registry.sh on port
# BERTH_SEED_PORT, default 5000); berth pulls them through that mirror.
# `berth up` stays attached: open http://127.0.0.1:8080, Ctrl-C stops it.
# BERTH=/path/to/berth uses that binary instead of building the release one.
set -euo pipefail
cd "$(dirname "$0")/.."
example=${1:-examples/seed-runtime}
port=${BERTH_SEED_PORT:-5000}
if [ -z "${BERTH:-}" ]; then
  echo "building berth (cargo build --release -p berth-cli; a few minutes the first time)" >&2
  cargo build --release -q -p berth-cli
  BERTH="${CARGO_TARGET_DIR:-$PWD/target}/release/berth"
fi
export BERTH
versions=""
base=(--no-base)
grep -q "alpine-nodejs:4.2.2" "$example/docker-compose.yml" && versions=4.2.2
grep -q "x-runtime" "$example/docker-compose.yml" && base=()
eval "$(bash scripts/seed-registry.sh "$port" --node-versions "$versions" "${base[@]}")"
cd "$example"
exec "$BERTH" up
