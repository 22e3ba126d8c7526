#!/usr/bin/env bash
# `docker stack deploy` (Docker 20.10's client, /usr/bin/docker) against
# `berth --engine swarm up -d` on the three-node swarm of
# scripts/swarm-cluster.sh, same compose file, same images, same run:
#   1. deploy until the first HTTP 200 on node 1's published port;
#   2. the runtime update 4.2.2 → 4.2.3 (a new image tag) while
#      bench/lib/poll.py polls node 1 every 20 ms: failed requests, longest
#      outage, time from the command to the new version served;
#   3. stack rm / down.
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

bash scripts/swarm-cluster.sh up
if [ -z "${BERTH:-}" ]; then
  cargo build --release -q -p berth-cli
  BERTH=${CARGO_TARGET_DIR:-$root/target}/release/berth
fi
work=$(mktemp -d)
trap 'touch "$work/stop"; rm -rf "$work"' EXIT
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
    python3 bench/lib/poll.py "http://$NODE1:$port/cgi-bin/v" "$work/poll-$p" "$work/stop" &
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

python3 - "$results" "$root/BENCHMARKS.md" "$RUNS" "$("${DK[@]}" version --format '{{.Server.Version}}')" <<'PY'
import json, re, statistics, sys
path, bench, runs, version = sys.argv[1:5]
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
    "",
    "berth's `up` returns once every task runs the new image; `docker stack deploy` returns at once",
    "and swarm rolls on after it, one task at a time in an order of its own, so when node 1 gets the",
    f"new version varies (docker stack: {min(rows[ds]['new']):.1f}–{max(rows[ds]['new']):.1f} s over these runs). Bytes pushed for a runtime bump and a code change are shown by",
    "crates/engine-swarm's seed test (a runtime bump uploads the runtime layer and a config, a code",
    "change the code layer and a config; the other layer is not sent again); not in this table yet.",
    "",
    "Reproduce: `bash bench/swarm.sh` (as root; RUNS=1 by default).",
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
