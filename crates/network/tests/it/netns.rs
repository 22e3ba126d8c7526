//! Namespace helpers and the low-level (stateless) API.

use std::net::Ipv4Addr;
use std::path::Path;

use berth_network::{AttachOptions, Network};

use crate::common::*;

#[test]
fn create_and_delete_netns() {
    require_root_and_tools();
    let name = unique("nsonly");
    berth_network::delete_netns(&name).unwrap();
    let path = berth_network::create_netns(&name).unwrap();
    assert_eq!(path, Path::new("/run/netns").join(&name));
    assert!(run("ip", &["netns", "list"])
        .lines()
        .any(|l| l.split_whitespace().next() == Some(&name)));
    // Refused, not reused, while it exists.
    assert!(matches!(
        berth_network::create_netns(&name),
        Err(berth_network::NetnsError::Exists(_))
    ));
    // Code run inside sees only the namespace's own (down) loopback.
    let ifaces = berth_network::run_in_netns(&path, || {
        std::fs::read_to_string("/proc/thread-self/net/dev").unwrap()
    })
    .unwrap();
    assert_eq!(ifaces.lines().count(), 3, "{ifaces}");
    berth_network::delete_netns(&name).unwrap();
    berth_network::delete_netns(&name).unwrap();
    assert!(!path.exists());
    assert!(!run("ip", &["netns", "list"])
        .lines()
        .any(|l| l.split_whitespace().next() == Some(&name)));
    assert!(berth_network::create_netns("../escape").is_err());
}

/// The stateless layer on its own, as the brief describes it:
/// `Network::create` / `attach` / `detach` / `Network::remove`, plus a
/// second network on the same container as `eth1` without a default route.
#[test]
fn low_level_create_attach_remove() {
    let _fw = shared();
    require_root_and_tools();
    let n1 = unique("ll1");
    let n2 = unique("ll2");
    Network::remove_by_name(&n1).unwrap();
    Network::remove_by_name(&n2).unwrap();
    let _guards = (NetworkGuard(n1.clone()), NetworkGuard(n2.clone()));
    let ns = Ns::new(&format!("{n1}-x"));
    let net1 = Network::create(&n1, "172.31.246.0/26".parse().unwrap(), false).unwrap();
    let net2 = Network::create(&n2, "172.31.246.64/26".parse().unwrap(), true).unwrap();
    assert!(net1.is_installed().unwrap() && net2.is_installed().unwrap());

    // The bridge exists already: refused, and the existing one is untouched.
    let dup = Network::create(&n1, "172.31.246.128/26".parse().unwrap(), false).unwrap_err();
    assert!(dup.to_string().contains("already exists"), "{dup}");
    assert!(net1.is_installed().unwrap());

    let ip1 = Ipv4Addr::new(172, 31, 246, 10);
    let e1 = berth_network::attach(&net1, "x", &ns.path, ip1, &AttachOptions::default()).unwrap();
    let opts2 = AttachOptions {
        ifname: "eth1".into(),
        default_route: false,
        ..Default::default()
    };
    let e2 = berth_network::attach(
        &net2,
        "x",
        &ns.path,
        Ipv4Addr::new(172, 31, 246, 70),
        &opts2,
    )
    .unwrap();
    assert_eq!((e1.ifname.as_str(), e2.ifname.as_str()), ("eth0", "eth1"));
    let routes = routes_in(&ns.name);
    assert!(
        routes.contains("default via 172.31.246.1 dev eth0"),
        "{routes}"
    );
    assert!(routes.contains("172.31.246.64/26 dev eth1"), "{routes}");
    assert_eq!(routes.matches("default").count(), 1, "{routes}");
    // The MTU follows the uplink's (capped at 1500) on both ends.
    let mtu = format!("mtu {}", net1.mtu);
    assert!(links_in(&ns.name)
        .lines()
        .filter(|l| l.contains("eth"))
        .all(|l| l.contains(&mtu)));

    berth_network::detach(&n1, "x").unwrap();
    berth_network::detach(&n2, "x").unwrap();
    assert!(!links_in(&ns.name).contains("eth0"));
    net1.remove().unwrap();
    net2.remove().unwrap();
    net1.remove().unwrap();
    assert!(!net1.is_installed().unwrap());
    assert_network_gone(&n1);
    assert_network_gone(&n2);
}
