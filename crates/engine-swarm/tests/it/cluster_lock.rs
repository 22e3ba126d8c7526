//! The three-node swarm the tests share (`scripts/swarm-cluster.sh`): the
//! first test to need it starts it; the last one to finish tears it down.
//! Tests hold a shared lock on a file while they use the cluster; whoever
//! can take that lock exclusively on the way out is the last user.
//!
//! Used by crates/engine-swarm's tests and, through `#[path]`, by
//! crates/cli's, so the two test binaries take turns on one cluster. Needs
//! only std and libc.

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

/// A test's turn on the cluster, which is up while it is held.
pub struct ClusterLease {
    lock: File,
    turn: File,
}

impl ClusterLease {
    pub fn take() -> ClusterLease {
        let lock = File::create(USERS).expect("lock file");
        assert!(flock(&lock, libc::LOCK_SH));
        let turn = File::create(TURN).expect("lock file");
        assert!(flock(&turn, libc::LOCK_EX));
        cluster_script(&["up"]);
        ClusterLease { lock, turn }
    }
}

impl Drop for ClusterLease {
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
