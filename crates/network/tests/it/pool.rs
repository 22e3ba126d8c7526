//! Subnet and address allocation against the real host.

use std::net::Ipv4Addr;

use berth_network::{AttachOptions, Error, NetworkOptions, PoolError};

use crate::common::*;

/// A blackhole route stands in for a host network the pool must avoid; it
/// sends nothing anywhere.
struct Route(String);

impl Route {
    fn blackhole(dst: &str) -> Route {
        let _ = std::process::Command::new(which("ip"))
            .args(["route", "del", "blackhole", dst])
            .output();
        run("ip", &["route", "add", "blackhole", dst]);
        Route(dst.to_string())
    }
}

impl Drop for Route {
    fn drop(&mut self) {
        let _ = std::process::Command::new(which("ip"))
            .args(["route", "del", "blackhole", &self.0])
            .output();
    }
}

#[test]
fn subnet_overlapping_a_host_route_is_skipped() {
    let _fw = shared();
    let _route = Route::blackhole("172.31.244.0/27");
    let fx = Fixture::new("172.31.244.0/24,size=26");
    let net = unique("skip");
    let network = fx
        .networks
        .create(&net, &NetworkOptions::default())
        .unwrap();
    assert_eq!(network.subnet.to_string(), "172.31.244.64/26");

    // An explicit subnet over the host route is refused, naming the route.
    let err = fx
        .networks
        .create(
            &unique("skip2"),
            &NetworkOptions {
                internal: false,
                subnet: Some("172.31.244.0/26".parse().unwrap()),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(
        matches!(err, Error::Pool(PoolError::OverlapsHost { .. })),
        "{err}"
    );
    assert!(
        err.to_string().contains("blackhole route 172.31.244.0/27"),
        "{err}"
    );

    // And one over the network just made is refused too (state, then host).
    let err = fx
        .networks
        .create(
            &unique("skip3"),
            &NetworkOptions {
                internal: false,
                subnet: Some("172.31.244.64/27".parse().unwrap()),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(matches!(err, Error::Pool(PoolError::InUse { .. })), "{err}");

    fx.networks.remove(&net).unwrap();
    assert_network_gone(&net);
}

#[test]
fn exhausted_pool_is_a_clear_error_and_leaves_nothing() {
    let _fw = shared();
    let fx = Fixture::new("172.31.245.0/26,size=26");
    let n1 = unique("full1");
    let n2 = unique("full2");
    fx.networks.create(&n1, &NetworkOptions::default()).unwrap();
    let err = fx
        .networks
        .create(&n2, &NetworkOptions::default())
        .unwrap_err();
    assert!(
        matches!(err, Error::Pool(PoolError::Exhausted { .. })),
        "{err}"
    );
    assert!(fx.networks.get(&n2).unwrap().is_none());
    assert_network_gone(&n2);
    fx.networks.remove(&n1).unwrap();
    assert_network_gone(&n1);
}

#[test]
fn requested_addresses_are_honoured_or_refused() {
    let _fw = shared();
    let fx = Fixture::new("172.31.245.64/26,size=26");
    let net = unique("addr");
    let a = Ns::new(&format!("{net}-a"));
    let b = Ns::new(&format!("{net}-b"));
    let c = Ns::new(&format!("{net}-c"));
    let network = fx
        .networks
        .create(&net, &NetworkOptions::default())
        .unwrap();
    let want = Ipv4Addr::new(172, 31, 245, 100);
    let ea = fx
        .networks
        .attach(&net, "a", &a.path, Some(want), &AttachOptions::default())
        .unwrap();
    assert_eq!(ea.ip, want);
    assert!(addrs_in(&a.name).contains("inet 172.31.245.100/26"));

    let opts = AttachOptions::default();
    let taken = fx
        .networks
        .attach(&net, "b", &b.path, Some(want), &opts)
        .unwrap_err();
    assert!(
        matches!(taken, Error::Pool(PoolError::AddressInUse { .. })),
        "{taken}"
    );
    assert!(taken.to_string().contains("container `a`"), "{taken}");
    let outside = fx
        .networks
        .attach(
            &net,
            "b",
            &b.path,
            Some(Ipv4Addr::new(172, 31, 245, 2)),
            &opts,
        )
        .unwrap_err();
    assert!(
        matches!(outside, Error::Pool(PoolError::OutsideSubnet { .. })),
        "{outside}"
    );
    let gw = fx
        .networks
        .attach(&net, "b", &b.path, Some(network.gateway), &opts)
        .unwrap_err();
    assert!(
        matches!(gw, Error::Pool(PoolError::Reserved { .. })),
        "{gw}"
    );
    assert_no_veth(&net, "b");

    // Unrequested addresses start at .2 of the subnet.
    let eb = fx.networks.attach(&net, "b", &b.path, None, &opts).unwrap();
    assert_eq!(eb.ip, Ipv4Addr::new(172, 31, 245, 66));
    // Attaching the same container twice is refused.
    let again = fx
        .networks
        .attach(&net, "b", &b.path, None, &opts)
        .unwrap_err();
    assert!(matches!(again, Error::AlreadyAttached { .. }), "{again}");
    // Removing a network in use is refused.
    assert!(matches!(fx.networks.remove(&net), Err(Error::InUse { .. })));

    // A detached container's address goes back to the pool.
    fx.networks.detach(&net, "b").unwrap();
    assert_no_veth(&net, "b");
    let ec = fx.networks.attach(&net, "c", &c.path, None, &opts).unwrap();
    assert_eq!(ec.ip, Ipv4Addr::new(172, 31, 245, 66));
    let eps = fx.networks.endpoints(&net).unwrap();
    assert_eq!(eps.len(), 2);

    for id in ["a", "c"] {
        fx.networks.detach(&net, id).unwrap();
        // Detach is idempotent.
        fx.networks.detach(&net, id).unwrap();
    }
    fx.networks.remove(&net).unwrap();
    assert_network_gone(&net);
}
