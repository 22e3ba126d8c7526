#!/usr/bin/env bash
# A three-node Docker Swarm on this machine, for berth's swarm backend tests
# and benchmarks: three dockerds (each with its own containerd), each in its
# own network namespace on a test bridge, one manager and two workers, and a
# registry on the bridge that the nodes and the host both reach.
#
#   scripts/swarm-cluster.sh up          # idempotent: a healthy cluster is left as is
#   scripts/swarm-cluster.sh down        # no netns, bridge, rule, mount or process left
#   scripts/swarm-cluster.sh env         # DOCKER_HOST=…, BERTH_SWARM_REGISTRY=… and BERTH_SWARM_NODES=… lines
#   scripts/swarm-cluster.sh stop-node N # stop node N's dockerd and containerd (a node loss)
#   scripts/swarm-cluster.sh start-node N
#
# Addresses: 198.18.231.0/24 on the bridge (RFC 2544's benchmarking range,
# clear of Docker's default pools and of berth's embedded engine, which uses
# 172.31.0.0/16); overlay networks from 10.231.0.0/16, inside the nodes'
# namespaces only. Everything lives under /run/berth-swarm and
# /var/lib/berth-swarm. Run as root.
set -euo pipefail

RUN=/run/berth-swarm
DATA=/var/lib/berth-swarm
BRIDGE=berthsw0
PREFIX=198.18.231
HOST_IP=$PREFIX.1
REGISTRY_PORT=5231
REGISTRY=$HOST_IP:$REGISTRY_PORT
CHAIN=BERTH-SWARM
NODES=(1 2 3)

node_ip() { echo "$PREFIX.$((10 + $1))"; }
node_ns() { echo "berthsw$1"; }
node_sock() { echo "$RUN/node$1/docker.sock"; }
dk() { local n=$1; shift; /usr/bin/docker -H "unix://$(node_sock "$n")" "$@"; }

log() { echo "swarm-cluster: $*" >&2; }

need() {
  for bin in dockerd containerd docker-registry ip iptables; do
    command -v "$bin" >/dev/null || [ -x "/usr/sbin/$bin" ] || {
      log "$bin is missing (apt-get install docker.io docker-registry iproute2 iptables)"
      exit 1
    }
  done
  [ -x /usr/bin/docker ] || { log "/usr/bin/docker (Debian's docker.io client) is missing"; exit 1; }
}

# Kill the process whose pid is in $1, politely first; wait until it is gone.
stop_pidfile() {
  local file=$1 pid
  [ -f "$file" ] || return 0
  pid=$(cat "$file" 2>/dev/null || true)
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$file"
}

wait_sock() {
  local n=$1
  for _ in $(seq 1 120); do
    dk "$n" info >/dev/null 2>&1 && return 0
    # Gone (it writes its pidfile early): no point waiting out the minute.
    if [ -f "$RUN/node$n/docker.pid" ] && ! kill -0 "$(cat "$RUN/node$n/docker.pid")" 2>/dev/null; then break; fi
    sleep 0.25
  done
  log "node$n's dockerd did not answer; see $RUN/node$n/dockerd.log"
  tail -n 20 "$RUN/node$n/dockerd.log" >&2 || true
  return 1
}

start_node() {
  local n=$1 ns dir
  ns=$(node_ns "$n")
  dir=$RUN/node$n
  mkdir -p "$dir" "$DATA/node$n"
  # nsenter, not `ip netns exec`: that remounts /sys for the namespace and
  # so hides the cgroup hierarchies dockerd needs.
  # Its own containerd: the host's would be shared with the host's dockerd
  # and the other nodes, and a node loss must take its tasks down with it.
  if ! { [ -f "$dir/containerd.pid" ] && kill -0 "$(cat "$dir/containerd.pid")" 2>/dev/null; }; then
    nsenter --net="/run/netns/$ns" setsid -f sh -c 'echo $$ > "$1"; exec containerd --root "$2" --state "$3" --address "$4" >"$5" 2>&1' \
      sh "$dir/containerd.pid" "$DATA/node$n/containerd" "$dir/containerd" "$dir/containerd.sock" "$dir/containerd.log" </dev/null 9>&-
    for _ in $(seq 1 80); do [ -S "$dir/containerd.sock" ] && break; sleep 0.1; done
  fi
  if ! { [ -f "$dir/docker.pid" ] && kill -0 "$(cat "$dir/docker.pid")" 2>/dev/null; }; then
    # Its own UTS namespace too: a node's hostname is how swarm names it.
    nsenter --net="/run/netns/$ns" unshare --uts setsid -f sh -c 'hostname "$0"; exec "$@"' "berth-swarm-$n" dockerd \
      --data-root "$DATA/node$n/docker" \
      --exec-root "$dir/exec" \
      --pidfile "$dir/docker.pid" \
      --host "unix://$(node_sock "$n")" \
      --containerd "$dir/containerd.sock" \
      --cgroup-parent "berth-swarm-node$n" \
      --insecure-registry "$REGISTRY" \
      --log-level warn \
      >"$dir/dockerd.log" 2>&1 </dev/null 9>&-
  fi
  wait_sock "$n"
}

stop_node() {
  local n=$1 dir=$RUN/node$1
  stop_pidfile "$dir/docker.pid"
  stop_pidfile "$dir/containerd.pid"
  # containerd's shims (and their containers) outlive a killed containerd.
  local pids
  pids=$(pgrep -f -- "-address $dir/containerd.sock" || true)
  if [ -n "$pids" ]; then
    for p in $pids; do
      for c in $(pgrep -P "$p" || true); do kill -KILL "$c" 2>/dev/null || true; done
      kill -KILL "$p" 2>/dev/null || true
    done
  fi
}

healthy() {
  [ -S "$(node_sock 1)" ] || return 1
  local ready
  ready=$(dk 1 node ls --format '{{.Status}}' 2>/dev/null | grep -c '^Ready$' || true)
  [ "$ready" = "${#NODES[@]}" ] || return 1
  curl -fsS -o /dev/null "http://$REGISTRY/v2/" 2>/dev/null || return 1
}

up() {
  need
  if healthy; then
    log "already up"
    return 0
  fi
  down_quiet
  log "bridge $BRIDGE $HOST_IP/24"
  mkdir -p "$RUN" "$DATA"
  ip link add "$BRIDGE" type bridge
  ip addr add "$HOST_IP/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  # Traffic between nodes crosses FORWARD (bridge-nf-call-iptables) whose
  # policy Docker sets to DROP: accept what stays on the test bridge.
  iptables -N "$CHAIN"
  iptables -A "$CHAIN" -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT
  iptables -A "$CHAIN" -j RETURN
  iptables -I FORWARD 1 -j "$CHAIN"
  for n in "${NODES[@]}"; do
    local ns
    ns=$(node_ns "$n")
    ip netns add "$ns"
    ip link add "bsw${n}h" type veth peer name eth0 netns "$ns"
    ip link set "bsw${n}h" master "$BRIDGE" up
    ip -n "$ns" addr add "$(node_ip "$n")/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
    ip -n "$ns" route add default via "$HOST_IP"
  done

  # The registry on the bridge's host address: the host pushes to it, the
  # nodes pull from it (plain HTTP, named to each dockerd as insecure).
  mkdir -p "$DATA/registry"
  cat >"$RUN/registry.yml" <<EOF
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $DATA/registry
  delete:
    enabled: true
http:
  addr: $REGISTRY
EOF
  setsid -f sh -c 'echo $$ > "$1"; exec docker-registry serve "$2" >"$3" 2>&1' \
    sh "$RUN/registry.pid" "$RUN/registry.yml" "$RUN/registry.log" </dev/null 9>&-

  for n in "${NODES[@]}"; do start_node "$n" & done
  wait
  for n in "${NODES[@]}"; do wait_sock "$n"; done

  log "swarm init on node1 ($(node_ip 1))"
  dk 1 swarm init --advertise-addr "$(node_ip 1)" \
    --default-addr-pool 10.231.0.0/16 --default-addr-pool-mask-length 24 >/dev/null
  local token
  token=$(dk 1 swarm join-token -q worker)
  for n in "${NODES[@]:1}"; do
    dk "$n" swarm join --advertise-addr "$(node_ip "$n")" --token "$token" "$(node_ip 1):2377" >/dev/null
  done
  # No IPVS on this kernel: the routing mesh cannot work, and its ingress
  # network only makes the nodes log errors. Services publish in host mode.
  dk 1 network rm ingress >/dev/null 2>&1 <<<"y" || true
  for _ in $(seq 1 120); do
    healthy && break
    sleep 0.25
  done
  healthy || { log "the cluster did not become ready"; dk 1 node ls >&2 || true; exit 1; }
  log "up: manager $(node_sock 1), registry $REGISTRY"
}

down_quiet() {
  for n in "${NODES[@]}"; do stop_node "$n"; done
  stop_pidfile "$RUN/registry.pid"
  # Mounts the daemons left (overlay, netns bind mounts, shm), deepest first.
  local mounts m
  mounts=$(awk '{print $5}' /proc/self/mountinfo | grep -E "^($RUN|$DATA)(/|$)" | sort -r || true)
  for m in $mounts; do umount -l "$m" 2>/dev/null || true; done
  for n in "${NODES[@]}"; do
    ip netns del "$(node_ns "$n")" 2>/dev/null || true
    ip link del "bsw${n}h" 2>/dev/null || true
  done
  ip link del "$BRIDGE" 2>/dev/null || true
  while iptables -D FORWARD -j "$CHAIN" 2>/dev/null; do :; done
  iptables -F "$CHAIN" 2>/dev/null || true
  iptables -X "$CHAIN" 2>/dev/null || true
  rm -rf "$RUN" "$DATA"
}

down() {
  down_quiet
  log "down"
}

cmd=${1:-}
[ "$(id -u)" = 0 ] || { log "run as root"; exit 1; }
# One invocation at a time: tests in several processes may ask for it at once.
# (What it starts gets `9>&-`: a daemon holding the lock would block the next call.)
exec 9>/run/berth-swarm.lock
flock 9
case "$cmd" in
  up) up ;;
  down) down ;;
  env)
    echo "DOCKER_HOST=unix://$(node_sock 1)"
    echo "BERTH_SWARM_REGISTRY=$REGISTRY"
    nodes=()
    for n in "${NODES[@]}"; do nodes+=("berth-swarm-$n=unix://$(node_sock "$n")"); done
    echo "BERTH_SWARM_NODES=$(IFS=,; echo "${nodes[*]}")"
    ;;
  stop-node) stop_node "${2:?node number}" ;;
  start-node) start_node "${2:?node number}" ;;
  *) echo "usage: $0 up|down|env|stop-node N|start-node N" >&2; exit 2 ;;
esac
