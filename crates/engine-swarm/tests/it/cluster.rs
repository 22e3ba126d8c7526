//! The three-node swarm the tests share (`scripts/swarm-cluster.sh`): the
//! first test to need it starts it; the last one to finish tears it down.
//! Tests hold a shared lock on a file while they use the cluster; whoever
//! can take that lock exclusively on the way out is the last user.

use berth_engine_docker::Endpoint;
use berth_engine_swarm::{NodeEndpoints, SwarmBackend};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;

pub const MANAGER: &str = "unix:///run/berth-swarm/node1/docker.sock";
pub const REGISTRY: &str = "198.18.231.1:5231";
const USERS: &str = "/run/berth-swarm-users.lock";
/// Held exclusively by the test using the cluster: one stops a node, which
/// another test's rollout would not survive.
const TURN: &str = "/run/berth-swarm-turn.lock";

pub fn node_socket(n: u32) -> String {
    format!("unix:///run/berth-swarm/node{n}/docker.sock")
}

pub fn node_addr(n: u32) -> String {
    format!("198.18.231.{}", 10 + n)
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/swarm-cluster.sh")
}

pub fn cluster_script(args: &[&str]) {
    let o = Command::new("bash")
        .arg(script())
        .args(args)
        .output()
        .expect("bash");
    assert!(
        o.status.success(),
        "swarm-cluster.sh {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn flock(f: &File, op: i32) -> bool {
    // SAFETY: flock on a file descriptor this process owns.
    unsafe { libc::flock(f.as_raw_fd(), op) == 0 }
}

/// A test's hold on the cluster.
pub struct Cluster {
    lock: File,
    turn: File,
}

impl Cluster {
    pub fn get() -> Cluster {
        let lock = File::create(USERS).expect("lock file");
        assert!(flock(&lock, libc::LOCK_SH));
        let turn = File::create(TURN).expect("lock file");
        assert!(flock(&turn, libc::LOCK_EX));
        cluster_script(&["up"]);
        Cluster { lock, turn }
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

impl Drop for Cluster {
    fn drop(&mut self) {
        flock(&self.turn, libc::LOCK_UN);
        flock(&self.lock, libc::LOCK_UN);
        if flock(&self.lock, libc::LOCK_EX | libc::LOCK_NB) {
            cluster_script(&["down"]);
            flock(&self.lock, libc::LOCK_UN);
        }
    }
}

/// `/usr/bin/docker` (Debian's 20.10 client) against node `n`.
pub fn docker(n: u32, args: &[&str]) -> String {
    let o = Command::new("/usr/bin/docker")
        .arg("-H")
        .arg(node_socket(n))
        .args(args)
        .output()
        .expect("/usr/bin/docker");
    assert!(
        o.status.success(),
        "docker {args:?} on node{n}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}
