#!/usr/bin/env bash
# Proof on the real Docker Engine that the seed images made by
# scripts/seed-registry.sh are what the seed needs:
#
#   1. a loopback registry of its own, filled by scripts/seed-registry.sh;
#   2. `berth pull` of the seed's runtime image (quay.io/oddnetworks/alpine-nodejs:4.2.2,
#      and :4.2.3) and `berth build` of the seed's code image (FROM tianon/true) through
#      the mirrors, into a scratch BERTH_STATE_DIR;
#   3. `berth save` | `docker load`;
#   4. `node -v`, `npm -v` in the runtime image; then the seed itself: a code container
#      providing /app, the runtime container with --volumes-from, -w /app and
#      -p 127.0.0.1:HTTP_PORT:3000 running `npm install --production && npm run start`,
#      and `curl 127.0.0.1:HTTP_PORT` answering `I am running nodejs version: 4.2.2`.
#
# Everything it starts (registry, containers, their volumes, images it loaded into
# Docker) is removed on exit, success or not; a tag that already named another image in
# Docker is pointed back at it.
#
# Usage: examples/seed-images/verify-on-docker.sh [REGISTRY_PORT]
#   REGISTRY_PORT  default: a free loopback port
# Environment: VERIFY_HTTP_PORT (default 18080), BERTH (default target/release/berth),
#   BERTH_SEED_CACHE (passed on to scripts/seed-registry.sh).
# Exit 0 when every check passes; otherwise 1 with the failed check on stderr.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HTTP_PORT=${VERIFY_HTTP_PORT:-18080}
export BERTH=${BERTH:-$REPO/target/release/berth}
RUNTIME=quay.io/oddnetworks/alpine-nodejs
PROJECT=berthverify$$
EXPECT="I am running nodejs version: 4.2.2"

say() { echo "verify: $*" >&2; }
fail() {
  echo "verify: FAILED: $*" >&2
  exit 1
}
trap 'fail "command failed (exit $?) at line $LINENO: $BASH_COMMAND"' ERR

[ -x "$BERTH" ] || fail "no berth binary at $BERTH (cargo build --release -p berth-cli, or set BERTH)"
docker info >/dev/null 2>&1 || fail "the Docker Engine does not answer (start dockerd)"
PORT=${1:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
if (exec 3<>"/dev/tcp/127.0.0.1/$HTTP_PORT") 2>/dev/null; then
  fail "127.0.0.1:$HTTP_PORT is already in use (set VERIFY_HTTP_PORT)"
fi

WORK=$(mktemp -d /tmp/berth-seed-verify.XXXXXX)
declare -A PREVIOUS=() # docker tag -> image ID it named before we loaded ours
LOADED=()              # docker tags we loaded

cleanup() {
  local rc=$? tag
  trap - ERR
  set +e
  docker rm -f -v "$PROJECT-app" >/dev/null 2>&1
  docker rm -f -v "$PROJECT-code" >/dev/null 2>&1
  for tag in "${LOADED[@]}"; do
    local ours
    ours=$(docker image inspect -f '{{.Id}}' "$tag" 2>/dev/null)
    if [ -n "${PREVIOUS[$tag]:-}" ]; then
      [ "${PREVIOUS[$tag]}" = "$ours" ] && continue
      docker tag "${PREVIOUS[$tag]}" "$tag" >/dev/null 2>&1
      [ -n "$ours" ] && docker rmi "$ours" >/dev/null 2>&1
    else
      docker rmi "$tag" >/dev/null 2>&1
    fi
  done
  "$REPO/scripts/seed-registry.sh" "$PORT" --storage "$WORK/registry" --stop 2>/dev/null
  rm -rf "$WORK"
  if ((rc == 0)); then say "cleaned up (containers, volumes, loaded images, registry on 127.0.0.1:$PORT)"; fi
  exit "$rc"
}
trap cleanup EXIT

check() { # check NAME EXPECTED ACTUAL
  if [ "$2" = "$3" ]; then
    echo "ok: $1: $3"
  else
    fail "$1: expected ${2@Q}, got ${3@Q}"
  fi
}

# 1. the registry and the images
say "seed registry on 127.0.0.1:$PORT"
if ! mirrors=$("$REPO/scripts/seed-registry.sh" "$PORT" --storage "$WORK/registry" 2>"$WORK/seed-registry.log"); then
  tail -n 6 "$WORK/seed-registry.log" | head -n 5 | sed 's/^/  /' >&2
  fail "scripts/seed-registry.sh: $(tail -n 1 "$WORK/seed-registry.log")"
fi
eval "$mirrors"
echo "ok: seed registry: $mirrors"

# 2. through the mirrors, into a scratch store, as the seed asks for them
export BERTH_STATE_DIR=$WORK/state
seed=(-p "$PROJECT" -f "$REPO/examples/seed/docker-compose.yml" --progress plain)
"$BERTH" "${seed[@]}" pull app 2>&1 | sed 's/^/  /' >&2
printf 'app:\n  image: %s:4.2.3\n' "$RUNTIME" |
  "$BERTH" -p "$PROJECT" --project-directory "$WORK" --progress plain -f - pull 2>&1 | sed 's/^/  /' >&2
"$BERTH" "${seed[@]}" build code 2>&1 | sed 's/^/  /' >&2
"$BERTH" images >&2

# 3. into Docker
images=("$RUNTIME:4.2.2" "$RUNTIME:4.2.3" "$PROJECT-code:latest")
for tag in "${images[@]}"; do
  PREVIOUS[$tag]=$(docker image inspect -f '{{.Id}}' "$tag" 2>/dev/null || true)
done
"$BERTH" save -o "$WORK/images.tar" "${images[@]}"
LOADED=("${images[@]}")
docker load -i "$WORK/images.tar" >&2
docker image ls --format '{{.Repository}}:{{.Tag}} {{.ID}} {{.Size}}' | grep -E "^($RUNTIME|$PROJECT-code):" | sed 's/^/  docker: /' >&2

# 4. the checks
check "node -v (4.2.2)" v4.2.2 "$(docker run --rm "$RUNTIME:4.2.2" node -v)"
check "node -v (4.2.3)" v4.2.3 "$(docker run --rm "$RUNTIME:4.2.3" node -v)"
check "npm -v" 2.14.7 "$(docker run --rm "$RUNTIME:4.2.2" ash -c 'npm -v')"
check "CMD of tianon/true via the code image" 0 "$(docker run --name "$PROJECT-code" "$PROJECT-code:latest" >/dev/null; docker inspect -f '{{.State.ExitCode}}' "$PROJECT-code")"
docker run -d --name "$PROJECT-app" --volumes-from "$PROJECT-code" -w /app \
  -p "127.0.0.1:$HTTP_PORT:3000" "$RUNTIME:4.2.2" \
  /bin/ash -c "npm install --production && npm run start" >/dev/null
answer=
for _ in $(seq 1 150); do
  answer=$(curl -s -m 2 "127.0.0.1:$HTTP_PORT" 2>/dev/null) && [ -n "$answer" ] && break
  [ "$(docker inspect -f '{{.State.Running}}' "$PROJECT-app")" = true ] ||
    fail "the seed's app container exited: $(docker logs "$PROJECT-app" 2>&1 | tail -n 3 | tr '\n' ' ')"
  sleep 0.2
done
check "the seed on Docker: curl 127.0.0.1:$HTTP_PORT" "$EXPECT" "$answer"
docker logs "$PROJECT-app" 2>&1 | sed 's/^/  app | /' >&2
echo "ok: all checks passed"
