#!/usr/bin/env bash
# `docker stack deploy` (Docker 20.10's client, /usr/bin/docker) against
# `berth --engine swarm up -d` on the three-node swarm of
# scripts/swarm-cluster.sh, same compose file, same images, same run:
#   1. deploy until the first HTTP 200 on node 1's published port;
#   2. the runtime update 4.2.2 → 4.2.3 (a new image tag) while
#      bench/lib/poll.py polls node 1 every 20 ms: failed requests, longest
#      outage, time from the command to the new version served;
#   3. stack rm / down;
#   4. bytes pushed to the cluster's registry for a runtime bump and for a
#      code change: the app image is the runtime image (in the cluster's
#      registry, as a mirrored upstream image would be) plus a COPY of the
#      code, built with `docker build` and sent with `docker push` for
#      docker stack, built with `berth build` and sent by `berth up -d` for
#      berth; and berth with the seed's split (a code service and
#      volumes_from, which docker stack cannot express). Counted the same
#      way for both: the bytes of the IP packets the pushing client sends
#      to the registry's port (iptables counters: from node 1's daemon for
#      `docker push`, from this machine's loopback for `berth up`), around
#      the publishing command only (base images are pulled and the images
#      built before the counters are zeroed).
# The images (busybox httpd serving a CGI that prints the runtime version)
# are made here and pushed to the cluster's registry; berth pulls them from
# there into its store and pushes what it deploys back by digest.
# Traffic goes only to the test bridge the cluster script made.
#
#   bash bench/swarm.sh            # writes the "swarm" section of BENCHMARKS.md
#   RUNS=1 (default)  BERTH=/path/to/berth  benchmarks that binary
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
RUNS=${RUNS:-1}
REG=198.18.231.1:5231
NODE1=198.18.231.11
DK=(/usr/bin/docker -H unix:///run/berth-swarm/node1/docker.sock)

if [ -z "${BERTH:-}" ]; then
  cargo build --release -q -p berth-cli
  BERTH=${CARGO_TARGET_DIR:-$root/target}/release/berth
fi
# The cluster is taken as the tests take it (crates/engine-swarm/tests/it/
# cluster_lock.rs): a shared hold on the users' lock, the turn exclusively,
# so no test stops a node or tears the cluster down during the run. Nothing
# long-lived may inherit these descriptors (a daemon holding the turn would
# lock everyone out), hence the closes below.
exec 7>/run/berth-swarm-users.lock 6>/run/berth-swarm-turn.lock
flock -s 7
flock 6
bash scripts/swarm-cluster.sh up 6>&- 7>&-
work=$(mktemp -d)
COUNTER=BERTH-BENCH-BYTES
cleanup() {
  touch "$work/stop"
  iptables -w -D INPUT -d "${REG%:*}" -p tcp --dport "${REG#*:}" -j "$COUNTER" 2>/dev/null || true
  iptables -w -F "$COUNTER" 2>/dev/null && iptables -w -X "$COUNTER" 2>/dev/null || true
  rm -rf "$work"
  # The last user of the cluster takes it down, as the tests do.
  flock -u 6
  flock -u 7
  if flock -n 7; then bash scripts/swarm-cluster.sh down 6>&- 7>&- >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT
cp "$BERTH" "$work/berth"
BERTH=$work/berth
export BERTH_STATE_DIR=$work/state BERTH_CONFIG=$work/berth.toml
# berth pulls the bench images from the cluster registry over plain HTTP.
printf '[registries."%s"]\ninsecure = true\n' "$REG" >"$BERTH_CONFIG"

# The images: busybox, its httpd serving /app/cgi-bin/v, a runtime version.
for v in 4.2.2 4.2.3; do
  r=$work/img-$v
  mkdir -p "$r/bin" "$r/app/cgi-bin" "$r/runtime" "$r/tmp"
  cp /bin/busybox "$r/bin/"
  for a in sh httpd cat echo; do ln -sf busybox "$r/bin/$a"; done
  echo "$v" >"$r/runtime/version"
  printf '#!/bin/sh\necho "Content-Type: text/plain"\necho\necho "I am running version $(cat /runtime/version)"\n' >"$r/app/cgi-bin/v"
  chmod 755 "$r/app/cgi-bin/v"
  tar -C "$r" -c . | "${DK[@]}" import -c 'ENV PATH=/bin' - "$REG/bench/seed:$v" >/dev/null
  "${DK[@]}" push -q "$REG/bench/seed:$v" >/dev/null
done

compose() { # TAG PORT
  cat <<EOF
version: "3.8"
services:
  app:
    image: $REG/bench/seed:$1
    command: [httpd, -f, -p, "3000", -h, /app]
    stop_grace_period: 1s
    ports:
      - target: 3000
        published: $2
        mode: host
    deploy:
      replicas: 3
EOF
}

now() { python3 -c 'import time; print(f"{time.monotonic():.4f}")'; }
first_200() { # PORT T0 → seconds to the first 200
  for _ in $(seq 1 1200); do
    if curl -fsS -m 2 -o /dev/null "http://$NODE1:$1/cgi-bin/v" 2>/dev/null; then
      python3 -c "import time; print(f'{time.monotonic() - $2:.2f}')"
      return
    fi
    sleep 0.05
  done
  echo null
}

deploy() { # TOOL DIR PROJECT
  case $1 in
    docker-stack) "${DK[@]}" stack deploy -c "$2/docker-compose.yml" "$3" >/dev/null ;;
    berth-swarm) (cd "$2" && DOCKER_HOST=unix:///run/berth-swarm/node1/docker.sock BERTH_SWARM_REGISTRY=$REG "$BERTH" --engine swarm up -d >/dev/null 2>&1) ;;
  esac
}
remove() { # TOOL DIR PROJECT
  case $1 in
    docker-stack) "${DK[@]}" stack rm "$3" >/dev/null ;;
    berth-swarm) (cd "$2" && DOCKER_HOST=unix:///run/berth-swarm/node1/docker.sock BERTH_SWARM_REGISTRY=$REG "$BERTH" --engine swarm down >/dev/null 2>&1) ;;
  esac
  for _ in $(seq 1 240); do
    [ -z "$("${DK[@]}" service ls -q --filter "label=com.docker.stack.namespace=$3")$("${DK[@]}" network ls -q --filter "label=com.docker.stack.namespace=$3")" ] && break
    sleep 0.5
  done
}

results=$work/results
: >"$results"
for run in $(seq 1 "$RUNS"); do
  for tool in docker-stack berth-swarm; do
    p=bsw${tool%%-*}$run
    port=$((24000 + RANDOM % 1000))
    dir=$work/$p
    mkdir -p "$dir"
    compose 4.2.2 "$port" >"$dir/docker-compose.yml"
    t0=$(now)
    deploy "$tool" "$dir" "$p"
    first=$(first_200 "$port" "$t0")
    # Every node serves before the update starts.
    sleep 2
    compose 4.2.3 "$port" >"$dir/docker-compose.yml"
    rm -f "$work/stop"
    python3 bench/lib/poll.py "http://$NODE1:$port/cgi-bin/v" "$work/poll-$p" "$work/stop" 6>&- 7>&- &
    poller=$!
    sleep 1
    t0=$(now)
    deploy "$tool" "$dir" "$p"
    t1=$(now)
    for _ in $(seq 1 1200); do
      tail -n 1 "$work/poll-$p" | grep -q "1 I am running version 4.2.3" && break
      sleep 0.1
    done
    sleep 1
    touch "$work/stop"
    wait "$poller"
    update=$(python3 bench/lib/outage.py "$work/poll-$p" "$t0" "$t1" "I am running version 4.2.3")
    echo "$tool $first $update" | tee -a "$results"
    remove "$tool" "$dir" "$p"
  done
done

# ---------------------------------------------------------------- bytes pushed
# Counters on what reaches the registry's port: rule 1 from this machine
# (loopback: berth), rule 2 from node 1 (its daemon runs `docker push`).
iptables -w -N "$COUNTER" 2>/dev/null || iptables -w -F "$COUNTER"
iptables -w -A "$COUNTER" -i lo -j RETURN
iptables -w -A "$COUNTER" -s "$NODE1" -j RETURN
iptables -w -I INPUT -d "${REG%:*}" -p tcp --dport "${REG#*:}" -j "$COUNTER"
counted() { # lo|node1 → bytes since the last zero
  iptables -w -L "$COUNTER" -v -x -n | awk -v r="$([ "$1" = lo ] && echo 3 || echo 4)" 'NR == r { print $2 }'
}
zero() { iptables -w -Z "$COUNTER"; }

# The runtime images, without the app: what an upstream runtime image is.
for v in 4.2.2 4.2.3; do
  r=$work/rt-$v
  mkdir -p "$r/bin" "$r/runtime" "$r/tmp"
  cp /bin/busybox "$r/bin/"
  for a in sh httpd cat echo; do ln -sf busybox "$r/bin/$a"; done
  echo "$v" >"$r/runtime/version"
  tar -C "$r" -c . | "${DK[@]}" import -c 'ENV PATH=/bin' - "$REG/bench/runtime:$v" >/dev/null
  "${DK[@]}" push -q "$REG/bench/runtime:$v" >/dev/null
done
code() { # DIR N: the app's code, version N
  mkdir -p "$1/app/cgi-bin"
  printf '#!/bin/sh\necho "Content-Type: text/plain"\necho\necho "I am running version $(cat /runtime/version) with code %s"\n' "$2" >"$1/app/cgi-bin/v"
  chmod 755 "$1/app/cgi-bin/v"
}
whole_dockerfile() { printf 'FROM %s/bench/runtime:%s\nCOPY app /app\n' "$REG" "$1"; }
swarm_berth() { DOCKER_HOST=unix:///run/berth-swarm/node1/docker.sock BERTH_SWARM_REGISTRY=$REG "$BERTH" "$@"; }
bytes=$work/bytes
wire=$work/wire
: >"$bytes"
: >"$wire"
port=$((25000 + RANDOM % 1000))
# Each tool: the first deploy (4.2.2, code 1), the runtime bump (4.2.3),
# the code change (code 2).
steps=("4.2.2 1 first" "4.2.3 1 runtime" "4.2.3 2 code")

# docker stack: docker build (classic builder, as stack users build) and docker push.
d=$work/bytes-docker
mkdir -p "$d"
for step in "${steps[@]}"; do
  read -r v n what <<<"$step"
  code "$d" "$n"
  whole_dockerfile "$v" >"$d/Dockerfile"
  "${DK[@]}" pull -q "$REG/bench/runtime:$v" >/dev/null
  DOCKER_BUILDKIT=0 "${DK[@]}" build -q -t "$REG/bench/bytes-docker:$what" "$d" >/dev/null
  zero
  "${DK[@]}" push "$REG/bench/bytes-docker:$what" >"$work/push-docker-$what.log"
  echo "docker-stack $what $(counted node1)" | tee -a "$bytes"
  echo "docker-stack $what:" >>"$wire"
  # What went: each layer pushed, mounted from another repository or already there.
  grep -E "Pushed|Mounted|exists" "$work/push-docker-$what.log" | sed 's/^/  /' | tee -a "$wire" || true
done

# berth, the same Dockerfile (a whole image), and berth with the seed's split.
for layout in whole split; do
  p=bswbytes$layout
  d=$work/$p
  mkdir -p "$d"
  for step in "${steps[@]}"; do
    read -r v n what <<<"$step"
    if [ "$layout" = whole ]; then
      code "$d" "$n"
      whole_dockerfile "$v" >"$d/Dockerfile"
      service="    build: .
    image: bench-bytes/app:latest"
    else
      # Its own code text: the whole-image rows' code layer (same bytes
      # otherwise) is in the registry by now and would be mounted.
      code "$d/code" "split-$n"
      printf 'FROM scratch\nCOPY app /app\nVOLUME /app\n' >"$d/code/Dockerfile"
      service="    image: $REG/bench/runtime:$v
    volumes_from: [code]"
    fi
    {
      echo "services:"
      [ "$layout" = whole ] || printf '  code:\n    build: ./code\n'
      cat <<EOF
  app:
$service
    command: [httpd, -f, -p, "3000", -h, /app]
    stop_grace_period: 1s
    ports: ["$port:3000"]
    deploy:
      replicas: 3
EOF
    } >"$d/docker-compose.yml"
    # Bases pulled and images built before counting, as for docker.
    [ "$layout" = whole ] || (cd "$d" && "$BERTH" pull -q app >/dev/null)
    (cd "$d" && "$BERTH" build -q >/dev/null)
    zero
    (cd "$d" && swarm_berth --engine swarm up -d >"$work/up-$p-$what.log" 2>&1)
    echo "berth-$layout $what $(counted lo)" | tee -a "$bytes"
    echo "berth-$layout $what:" >>"$wire"
    grep -E "Image .* Pushed" "$work/up-$p-$what.log" | sed 's/^.*Pushed /  /' | tee -a "$wire" || true
  done
  remove berth-swarm "$d" "$p"
done

python3 - "$results" "$root/BENCHMARKS.md" "$RUNS" "$("${DK[@]}" version --format '{{.Server.Version}}')" "$bytes" "$wire" <<'PY'
import json, re, statistics, sys
path, bench, runs, version, bytes_path, wire_path = sys.argv[1:7]
# What each push sent, per layer, as docker push and berth up printed it.
wire = " ".join(l.strip() for l in open(wire_path) if l.strip())
pushed = {}
for line in open(bytes_path):
    tool, what, n = line.split()
    pushed[(tool, what)] = int(n)
def kb(tool, what):
    return f"{pushed[(tool, what)] / 1000:.1f} kB"
def bratio(tool, what):
    b = pushed[(tool, what)]
    if not b:
        return "-"
    r = pushed[('docker-stack', what)] / b
    return f"{r:.2f}x" if r >= 1 else f"{r:.2f}x (berth sends {1 / r:.0f}x more)"
rows = {}
for line in open(path):
    tool, first, rest = line.split(" ", 2)
    u = json.loads(rest)
    r = rows.setdefault(tool, {"first": [], "new": [], "failed": [], "outage": [], "cmd": []})
    r["first"].append(float(first))
    r["new"].append(u["new_version_after_s"] if u["new_version_after_s"] is not None else float("nan"))
    r["failed"].append(u["failed"])
    r["outage"].append(u["longest_outage_s"])
    r["cmd"].append(u["up_s"])
med = lambda k, t: statistics.median(rows[t][k])
ds, bs = "docker-stack", "berth-swarm"
def ratio(k):
    b = med(k, bs)
    return f"{med(k, ds) / b:.1f}x" if b else "-"
lines = [
    "## swarm (berth --engine swarm vs docker stack deploy)",
    "",
    f"Three dockerds ({version}) on this machine, one manager and two workers, each in its own",
    "network namespace (scripts/swarm-cluster.sh); the same compose file (busybox httpd, 3 replicas,",
    "port published in host mode: no IPVS here, so no routing mesh) and images in the cluster's",
    f"registry; medians of {runs} run(s); the client polls node 1 every 20 ms.",
    "docker stack's tasks publish the port themselves and update stop-first (a host port cannot be",
    "held twice on a node); berth publishes through its proxy service on every node and rolls start-first.",
    "",
    "| | docker stack deploy | berth --engine swarm up -d | docker stack / berth |",
    "|---|---|---|---|",
    f"| deploy → first 200 (s) | {med('first', ds):.2f} | {med('first', bs):.2f} | {ratio('first')} |",
    f"| runtime update: command returned (s) | {med('cmd', ds):.2f} | {med('cmd', bs):.2f} | {ratio('cmd')} |",
    f"| runtime update: new version served on node 1 (s) | {med('new', ds):.2f} | {med('new', bs):.2f} | {ratio('new')} |",
    f"| runtime update: failed requests | {med('failed', ds):.0f} | {med('failed', bs):.0f} | |",
    f"| runtime update: longest outage (s) | {med('outage', ds):.2f} | {med('outage', bs):.2f} | |",
    f"| runtime bump 4.2.2 → 4.2.3: bytes pushed to the registry (app image = runtime + COPY code) | {kb('docker-stack', 'runtime')} | {kb('berth-whole', 'runtime')} | {bratio('berth-whole', 'runtime')} |",
    f"| code change: bytes pushed (same images) | {kb('docker-stack', 'code')} | {kb('berth-whole', 'code')} | {bratio('berth-whole', 'code')} |",
    f"| runtime bump: bytes pushed, berth with the seed's split (code service + volumes_from) | {kb('docker-stack', 'runtime')} | {kb('berth-split', 'runtime')} | {bratio('berth-split', 'runtime')} |",
    f"| code change: bytes pushed, berth with the seed's split | {kb('docker-stack', 'code')} | {kb('berth-split', 'code')} | {bratio('berth-split', 'code')} |",
    "",
    "berth's `up` returns once every task runs the new image; `docker stack deploy` returns at once",
    "and swarm rolls on after it, one task at a time in an order of its own, so when node 1 gets the",
    f"new version varies (docker stack: {min(rows[ds]['new']):.1f}–{max(rows[ds]['new']):.1f} s over these runs).",
    "",
    "Bytes pushed (one run; IP packets the pushing client sends to the registry's port, counted by",
    "iptables around `docker push` on node 1 and around `berth up -d` on this machine; the base",
    "pulled and the image built before). The runtime images live in the cluster's registry",
    "(`bench/runtime:4.2.x`, busybox + a version file) as a mirrored upstream image would; the app",
    "image is `FROM` that plus `COPY app /app` for docker (`docker build`, classic builder) and for",
    "berth's whole-image rows (`berth build`). What goes over the wire, per `docker push` and",
    "`berth up`'s output. docker mounts the runtime layer from `bench/runtime` (a cross-repository",
    "mount: no body) and sends the code layer again when the classic builder's COPY on the new base",
    "made a new digest (it does in some runs, not in others). berth mounts the runtime layer from",
    "`bench/runtime` too (its store knows it pulled that layer from there), and its code layer keeps",
    "its digest across a runtime bump, so a bump sends a config and a manifest; a code change sends",
    "the code layer, a config and a manifest. With the seed's split (berth composes the runtime",
    "image's layers and the code layer into one manifest, no rebuild) the bytes are the same as with",
    "the whole image. berth's images also carry its TCP readiness probe (a layer of a few hundred",
    "bytes, sent or mounted once per repository, on the first deploy). Where the runtime comes from",
    "outside the cluster's registry (quay.io, Docker Hub) both tools send its layers once (not",
    "measured here). What each push sent, layer by layer, in this run: " + wire,
    "Every figure (bytes): " + ", ".join(f"{t} {w} {n}" for (t, w), n in pushed.items()) + " (`first`: the first deploy; berth's proxy image was already in the registry from the rows above).",
    "",
    f"Reproduce: `RUNS={runs} bash bench/swarm.sh` (as root; `BERTH=target/release/berth` to use a pre-built binary).",
    "",
]
text = open(bench).read()
section = "\n".join(lines)
if "## swarm (" in text:
    text = re.sub(r"## swarm \(.*?(?=\n## |\Z)", section, text, flags=re.S)
else:
    text = text.rstrip("\n") + "\n\n" + section
open(bench, "w").write(text.rstrip("\n") + "\n")
print(section)
PY
