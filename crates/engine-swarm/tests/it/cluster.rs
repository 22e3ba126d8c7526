//! The shared cluster (see `cluster_lock.rs`, which crates/cli's tests
//! include too) and berth's swarm backend on its manager.

#[path = "cluster_lock.rs"]
mod lock;

pub use lock::*;

use berth_engine_docker::Endpoint;
use berth_engine_swarm::{NodeEndpoints, SwarmBackend};

/// A test's hold on the cluster.
pub struct Cluster {
    _lease: ClusterLease,
}

impl Cluster {
    pub fn get() -> Cluster {
        Cluster {
            _lease: ClusterLease::take(),
        }
    }

    /// The manager, with every node's Engine (as `swarm-cluster.sh env`
    /// names them) for exec, cp and top.
    pub fn backend(&self) -> SwarmBackend {
        let nodes: Vec<String> = (1..=3)
            .map(|n| format!("berth-swarm-{n}={}", node_socket(n)))
            .collect();
        self.manager_only()
            .with_node_endpoints(NodeEndpoints::parse(&nodes.join(",")).unwrap())
    }

    /// The manager alone: other nodes' containers are out of its reach.
    pub fn manager_only(&self) -> SwarmBackend {
        SwarmBackend::connect_to(
            Endpoint {
                host: MANAGER.into(),
                context: None,
            },
            Some(REGISTRY),
        )
        .expect("the swarm manager answers")
        .with_proxy(berth_engine_swarm::ProxyLaunch {
            exe: env!("CARGO_BIN_EXE_berth-swarm-proxy").into(),
            args: Vec::new(),
        })
    }
}
