//! Network namespaces: a new one with loopback up, the host's, or one
//! joined by path (made here with `ip netns add`).

use crate::support::*;
use berth_sandbox::Network;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::process::Command;

fn ip(args: &[&str]) {
    let status = Command::new("ip")
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("`ip` is missing ({e}): run `apt-get install -y iproute2`"));
    assert!(status.success(), "ip {args:?} failed");
}

/// A named network namespace removed on drop.
struct Netns(String);

impl Netns {
    fn new(name: &str) -> Netns {
        let name = format!("berth-it-{name}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).status();
        ip(&["netns", "add", &name]);
        Netns(name)
    }

    fn path(&self) -> std::path::PathBuf {
        format!("/run/netns/{}", self.0).into()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
fn the_default_network_is_a_new_namespace_with_loopback_up() {
    let out = run(sh("net-none", "cat /proc/net/dev; ip link show lo"));
    assert!(out.status.success(), "{}", out.stderr);
    let ifaces: Vec<&str> = out
        .stdout
        .lines()
        .skip(2)
        .take_while(|l| l.contains(':') && !l.starts_with('1'))
        .map(|l| l.split(':').next().unwrap().trim())
        .collect();
    assert_eq!(ifaces, ["lo"], "{}", out.stdout);
    assert!(out.stdout.contains("UP"), "{}", out.stdout);
}

#[test]
fn a_container_joins_a_network_namespace_by_path() {
    let ns = Netns::new("join");
    ip(&[
        "-n", &ns.0, "link", "add", "berthv0", "type", "veth", "peer", "name", "berthv1",
    ]);
    let mut spec = sh("net-join", "exec sleep 100");
    spec.network = Network::Netns(ns.path());
    let mut c = create(spec);
    c.start().unwrap();
    let inside = fs::metadata(format!("/proc/{}/ns/net", c.pid())).unwrap();
    let named = fs::metadata(ns.path()).unwrap();
    assert_eq!(inside.ino(), named.ino());
    c.delete().unwrap();

    let mut spec = sh("net-join2", "cat /proc/net/dev");
    spec.network = Network::Netns(ns.path());
    let out = run(spec);
    assert!(out.stdout.contains("berthv0"), "{}", out.stdout);
}

#[test]
fn the_host_network_is_shared() {
    let mut spec = sh("net-host", "exec sleep 100");
    spec.network = Network::Host;
    let mut c = create(spec);
    c.start().unwrap();
    let inside = fs::metadata(format!("/proc/{}/ns/net", c.pid())).unwrap();
    let ours = fs::metadata("/proc/self/ns/net").unwrap();
    assert_eq!(inside.ino(), ours.ino());
    c.delete().unwrap();
}
