//! Traffic: inside a network, out of it (through MASQUERADE, to a namespace
//! standing in for "the outside"), and not out of an internal network.

use std::net::Ipv4Addr;
use std::time::Duration;

use berth_network::{AttachOptions, NetworkOptions};

use crate::common::*;

/// Two containers on one network talk by address, while Docker's FORWARD
/// policy DROP (when dockerd runs) is in place.
#[test]
fn containers_on_one_network_talk() {
    let _fw = shared();
    let fx = Fixture::new("172.31.240.0/24,size=26");
    let net = unique("talk");
    let a = Ns::new(&format!("{net}-a"));
    let b = Ns::new(&format!("{net}-b"));
    let network = fx
        .networks
        .create(&net, &NetworkOptions::default())
        .unwrap();
    assert_eq!(network.subnet.to_string(), "172.31.240.0/26");
    assert!(link_exists(&network.bridge));

    let opts = AttachOptions::default();
    let ea = fx
        .networks
        .attach(&net, "ca", &a.path, None, &opts)
        .unwrap();
    let eb = fx
        .networks
        .attach(&net, "cb", &b.path, None, &opts)
        .unwrap();
    assert_eq!(ea.ip, Ipv4Addr::new(172, 31, 240, 2));
    assert_eq!(eb.ip, Ipv4Addr::new(172, 31, 240, 3));
    assert_eq!(ea.ifname, "eth0");

    // Inside: eth0 with the address and MAC, lo up, default route via the gateway.
    let links = links_in(&a.name);
    assert!(
        links.contains("eth0@") && links.contains(&ea.mac),
        "{links}"
    );
    assert!(
        links
            .lines()
            .any(|l| l.contains(": lo:") && l.contains(",UP")),
        "{links}"
    );
    assert!(
        addrs_in(&a.name).contains("inet 172.31.240.2/26"),
        "{}",
        addrs_in(&a.name)
    );
    assert!(
        routes_in(&a.name).contains("default via 172.31.240.1 dev eth0"),
        "{}",
        routes_in(&a.name)
    );

    let policy = filter_rules();
    if !policy.contains("-P FORWARD DROP") {
        eprintln!("note: FORWARD policy is not DROP (dockerd not running?); berth's verdicts are final either way");
    }
    let server = serve_once(Some(&b.path), sock(eb.ip, 7001));
    let seen = connect_from(&a.path, sock(eb.ip, 7001), Duration::from_secs(3)).unwrap();
    server.join().unwrap();
    // No NAT inside a network: b sees a's own address.
    assert_eq!(seen, ea.ip.to_string());

    fx.networks.detach(&net, "ca").unwrap();
    fx.networks.detach(&net, "cb").unwrap();
    fx.networks.remove(&net).unwrap();
    assert_network_gone(&net);
}

/// A veth pair standing in for the world outside the host: a namespace with
/// an address on a link to the host that no berth network knows about.
struct Outside {
    ns: Ns,
    host_if: String,
    addr: Ipv4Addr,
}

impl Outside {
    /// `subnet_base` is a /30: host side .1, outside namespace .2.
    fn new(tag: &str, subnet_base: [u8; 4]) -> Outside {
        let ns = Ns::new(&unique(tag));
        let host_if = format!("bto{}", std::process::id() % 100_000);
        let host_if = format!("{host_if}{}", &tag[..1]);
        let _ = std::process::Command::new(which("ip"))
            .args(["link", "del", &host_if])
            .output();
        let [a, b, c, d] = subnet_base;
        let host_addr = Ipv4Addr::new(a, b, c, d + 1);
        let addr = Ipv4Addr::new(a, b, c, d + 2);
        run(
            "ip",
            &[
                "link", "add", &host_if, "type", "veth", "peer", "name", "eth0", "netns", &ns.name,
            ],
        );
        run(
            "ip",
            &["addr", "add", &format!("{host_addr}/30"), "dev", &host_if],
        );
        run("ip", &["link", "set", &host_if, "up"]);
        in_ns(
            &ns.name,
            &["addr", "add", &format!("{addr}/30"), "dev", "eth0"],
        );
        in_ns(&ns.name, &["link", "set", "eth0", "up"]);
        // Deliberately no route back to any berth subnet: replies can only
        // find their way if the source was masqueraded to the host's address.
        Outside { ns, host_if, addr }
    }

    fn host_addr(&self) -> Ipv4Addr {
        let [a, b, c, d] = self.addr.octets();
        Ipv4Addr::new(a, b, c, d - 1)
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        let _ = std::process::Command::new(which("ip"))
            .args(["link", "del", &self.host_if])
            .output();
    }
}

/// Outbound through FORWARD + MASQUERADE, and to the gateway address itself.
#[test]
fn outbound_is_masqueraded() {
    let _fw = shared();
    let fx = Fixture::new("172.31.241.0/24,size=26");
    let net = unique("out");
    let c = Ns::new(&format!("{net}-c"));
    let outside = Outside::new("world", [172, 31, 247, 0]);
    let network = fx
        .networks
        .create(&net, &NetworkOptions::default())
        .unwrap();
    let ep = fx
        .networks
        .attach(&net, "c", &c.path, None, &AttachOptions::default())
        .unwrap();

    let nat = nat_rules();
    let masq = format!(
        "-A POSTROUTING -s {} ! -o {} -m comment --comment \"berth:{net}\" -j MASQUERADE",
        network.subnet, network.bridge
    );
    assert!(nat.contains(&masq), "no `{masq}` in:\n{nat}");

    // The world sees the host's address on its link, not the container's.
    let server = serve_once(Some(&outside.ns.path), sock(outside.addr, 7002));
    let seen = connect_from(&c.path, sock(outside.addr, 7002), Duration::from_secs(3)).unwrap();
    server.join().unwrap();
    assert_eq!(seen, outside.host_addr().to_string());

    // The gateway is the host: a listener there is reachable (INPUT, no NAT).
    let server = serve_once(None, sock(network.gateway, 7003));
    let seen = connect_from(&c.path, sock(network.gateway, 7003), Duration::from_secs(3)).unwrap();
    server.join().unwrap();
    assert_eq!(seen, ep.ip.to_string());

    // Nothing from outside may open a connection to a container, even with
    // a route to it.
    in_ns(
        &outside.ns.name,
        &[
            "route",
            "add",
            &network.subnet.to_string(),
            "via",
            &outside.host_addr().to_string(),
        ],
    );
    let server = serve_once(Some(&c.path), sock(ep.ip, 7004));
    let blocked = connect_from(&outside.ns.path, sock(ep.ip, 7004), Duration::from_secs(2));
    assert!(
        blocked.is_err(),
        "outside reached the container: {blocked:?}"
    );
    // Control: a neighbour on the container's network reaches that same listener.
    let n = Ns::new(&format!("{net}-n"));
    let en = fx
        .networks
        .attach(&net, "n", &n.path, None, &AttachOptions::default())
        .unwrap();
    let seen = connect_from(&n.path, sock(ep.ip, 7004), Duration::from_secs(3))
        .expect("a container on the same network reaches the listener");
    server.join().unwrap();
    assert_eq!(seen, en.ip.to_string());

    fx.networks.detach(&net, "n").unwrap();
    fx.networks.detach(&net, "c").unwrap();
    fx.networks.remove(&net).unwrap();
    assert_network_gone(&net);
}

/// An internal network has no MASQUERADE and no way out, but traffic
/// inside it flows.
#[test]
fn internal_network_has_no_way_out() {
    let _fw = shared();
    let fx = Fixture::new("172.31.242.0/24,size=26");
    let net = unique("internal");
    let c = Ns::new(&format!("{net}-c"));
    let d = Ns::new(&format!("{net}-d"));
    let outside = Outside::new("xworld", [172, 31, 247, 4]);
    let opts = NetworkOptions {
        internal: true,
        subnet: None,
        ..Default::default()
    };
    let network = fx.networks.create(&net, &opts).unwrap();
    assert!(network.internal);
    let ec = fx
        .networks
        .attach(&net, "c", &c.path, None, &AttachOptions::default())
        .unwrap();
    let ed = fx
        .networks
        .attach(&net, "d", &d.path, None, &AttachOptions::default())
        .unwrap();

    let rules = berth_rules(&net);
    assert!(
        !rules.iter().any(|r| r.contains("MASQUERADE")),
        "{rules:#?}"
    );
    assert!(
        !rules.iter().any(|r| r.contains("ESTABLISHED")),
        "{rules:#?}"
    );
    assert!(
        !rules
            .iter()
            .any(|r| !r.contains(" -o ") && r.ends_with("-j ACCEPT")),
        "{rules:#?}"
    );

    // The outside listens and can answer the internal subnet directly (a
    // route back, no NAT needed): only berth's isolation can stop the connect.
    in_ns(
        &outside.ns.name,
        &[
            "route",
            "add",
            &network.subnet.to_string(),
            "via",
            &outside.host_addr().to_string(),
        ],
    );
    let server = serve_once(Some(&outside.ns.path), sock(outside.addr, 7005));
    let blocked = connect_from(&c.path, sock(outside.addr, 7005), Duration::from_secs(2));
    assert!(
        blocked.is_err(),
        "internal network reached outside: {blocked:?}"
    );

    // Control: the same connect from an ordinary network reaches that same
    // listener (so it was there, and reachable, all along).
    let open_net = unique("notinternal");
    let e = Ns::new(&format!("{open_net}-e"));
    fx.networks
        .create(&open_net, &NetworkOptions::default())
        .unwrap();
    fx.networks
        .attach(&open_net, "e", &e.path, None, &AttachOptions::default())
        .unwrap();
    let seen = connect_from(&e.path, sock(outside.addr, 7005), Duration::from_secs(3))
        .expect("an ordinary network reaches the outside listener");
    server.join().unwrap();
    assert_eq!(seen, outside.host_addr().to_string());
    fx.networks.detach(&open_net, "e").unwrap();
    fx.networks.remove(&open_net).unwrap();
    assert_network_gone(&open_net);

    // Inside the internal network traffic still flows.
    let server = serve_once(Some(&d.path), sock(ed.ip, 7006));
    let seen = connect_from(&c.path, sock(ed.ip, 7006), Duration::from_secs(3)).unwrap();
    server.join().unwrap();
    assert_eq!(seen, ec.ip.to_string());

    fx.networks.detach(&net, "c").unwrap();
    fx.networks.detach(&net, "d").unwrap();
    fx.networks.remove(&net).unwrap();
    assert_network_gone(&net);
}

/// Two networks: different subnets, and no traffic from one into the other.
#[test]
fn networks_are_isolated_from_each_other() {
    let _fw = shared();
    let fx = Fixture::new("172.31.243.0/24,size=26");
    let n1 = unique("iso1");
    let n2 = unique("iso2");
    let a = Ns::new(&format!("{n1}-a"));
    let b = Ns::new(&format!("{n2}-b"));
    let net1 = fx.networks.create(&n1, &NetworkOptions::default()).unwrap();
    let net2 = fx.networks.create(&n2, &NetworkOptions::default()).unwrap();
    assert_ne!(net1.subnet, net2.subnet);
    assert!(!net1.subnet.overlaps(&net2.subnet));
    assert_ne!(net1.bridge, net2.bridge);
    // Creating again is a no-op that returns the same network.
    assert_eq!(
        fx.networks.create(&n1, &NetworkOptions::default()).unwrap(),
        net1
    );

    fx.networks
        .attach(&n1, "a", &a.path, None, &AttachOptions::default())
        .unwrap();
    let eb = fx
        .networks
        .attach(&n2, "b", &b.path, None, &AttachOptions::default())
        .unwrap();
    let server = serve_once(Some(&b.path), sock(eb.ip, 7007));
    let crossed = connect_from(&a.path, sock(eb.ip, 7007), Duration::from_secs(2));
    assert!(crossed.is_err(), "network {n1} reached {n2}: {crossed:?}");
    // Control: a neighbour on b's own network reaches that same listener.
    let b2 = Ns::new(&format!("{n2}-b2"));
    let eb2 = fx
        .networks
        .attach(&n2, "b2", &b2.path, None, &AttachOptions::default())
        .unwrap();
    let seen = connect_from(&b2.path, sock(eb.ip, 7007), Duration::from_secs(3))
        .expect("a container on the same network reaches the listener");
    server.join().unwrap();
    assert_eq!(seen, eb2.ip.to_string());

    fx.networks.detach(&n1, "a").unwrap();
    fx.networks.detach(&n2, "b").unwrap();
    fx.networks.detach(&n2, "b2").unwrap();
    fx.networks.remove(&n1).unwrap();
    fx.networks.remove(&n2).unwrap();
    assert_network_gone(&n1);
    assert_network_gone(&n2);
}
