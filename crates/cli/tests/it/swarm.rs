//! `berth --engine swarm` on the three-node cluster (scripts/swarm-cluster.sh).
