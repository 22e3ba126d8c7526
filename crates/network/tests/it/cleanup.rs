//! Nothing left behind: after removal, after a failure midway, after a crash.

use std::net::Ipv4Addr;
use std::path::Path;

use berth_network::{AttachOptions, Error, Network, NetworkOptions};

use crate::common::*;

/// The full lifecycle, then: no bridge, no veth, no namespace, no rule, and
/// (no other network being up meanwhile) no BERTH-FORWARD chain or jump.
#[test]
fn remove_and_delete_netns_leave_nothing() {
    let _fw = exclusive();
    let fx = Fixture::new("172.31.248.0/24,size=26");
    let net = unique("gone");
    let ns_guard = Ns::new(&format!("{net}-a"));
    let (ns_name, ns) = (ns_guard.name.clone(), ns_guard.path.clone());
    let network = fx
        .networks
        .create(&net, &NetworkOptions::default())
        .unwrap();
    fx.networks
        .attach(&net, "a", &ns, None, &AttachOptions::default())
        .unwrap();
    let veth = berth_network::veth::host_ifname(&net, "a");
    assert!(link_exists(&veth));
    assert!(
        filter_rules()
            .lines()
            .any(|l| l.starts_with("-A FORWARD ") && l.ends_with("-j BERTH-FORWARD")),
        "no jump to BERTH-FORWARD"
    );

    fx.networks.detach(&net, "a").unwrap();
    fx.networks.remove(&net).unwrap();
    berth_network::delete_netns(&ns_name).unwrap();

    let links = run("ip", &["-o", "link"]);
    assert!(!links.contains(&network.bridge), "{links}");
    assert!(!links.contains(&veth), "{links}");
    assert!(!run("ip", &["netns", "list"]).contains(&ns_name));
    assert!(berth_rules(&net).is_empty());
    // This network's filter and NAT rules are gone (`berth_rules` above).
    // The shared chain goes with the last berth network; tests running in
    // parallel (nextest: one process per test) may still have theirs, so
    // check it only when no other berth rule exists.
    let (filter, nat) = (filter_rules(), nat_rules());
    let others_remain = filter.contains("berth:") || nat.contains("berth:");
    assert!(
        others_remain || !filter.contains("BERTH-FORWARD"),
        "shared chain left:\n{filter}"
    );
    assert!(fx.networks.list().unwrap().is_empty());
}

/// Failures midway through attach undo what that attach made.
#[test]
fn failed_attach_leaves_nothing() {
    let _fw = shared();
    let fx = Fixture::new("172.31.249.128/25,size=26");
    let net = unique("fail");
    let ns = Ns::new(&format!("{net}-a"));
    fx.networks
        .create(&net, &NetworkOptions::default())
        .unwrap();

    // A namespace that does not exist: refused before anything is made.
    let err = fx
        .networks
        .attach(
            &net,
            "ghost",
            Path::new("/run/netns/berth-no-such-ns"),
            None,
            &AttachOptions::default(),
        )
        .unwrap_err();
    assert!(
        err.to_string().contains("/run/netns/berth-no-such-ns"),
        "{err}"
    );
    assert_no_veth(&net, "ghost");

    // Fails late: eth0 is in place, then the second default route clashes.
    fx.networks
        .attach(&net, "a", &ns.path, None, &AttachOptions::default())
        .unwrap();
    let second = unique("fail2");
    fx.networks
        .create(&second, &NetworkOptions::default())
        .unwrap();
    let opts = AttachOptions {
        ifname: "eth1".into(),
        default_route: true,
        ..Default::default()
    };
    let err = fx
        .networks
        .attach(&second, "a", &ns.path, None, &opts)
        .unwrap_err();
    assert!(matches!(err, Error::Attach(_)), "{err}");
    assert_no_veth(&second, "a");
    assert!(
        !links_in(&ns.name).contains("eth1"),
        "{}",
        links_in(&ns.name)
    );
    // The reserved address was given back.
    assert!(fx.networks.endpoints(&second).unwrap().is_empty());
    // An interface name already taken inside fails at once, nothing made.
    let err = fx
        .networks
        .attach(
            &second,
            "a",
            &ns.path,
            None,
            &AttachOptions {
                ifname: "eth0".into(),
                default_route: false,
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(
        err.to_string().contains("File exists") || err.to_string().contains("exists"),
        "{err}"
    );
    assert_no_veth(&second, "a");

    // Attaching to a network that does not exist.
    let err = fx
        .networks
        .attach(
            "no-such-net",
            "a",
            &ns.path,
            None,
            &AttachOptions::default(),
        )
        .unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err}");

    fx.networks.detach(&net, "a").unwrap();
    fx.networks.remove(&net).unwrap();
    fx.networks.remove(&second).unwrap();
    assert_network_gone(&net);
    assert_network_gone(&second);
}

/// Kernel objects without state (as after a crash that lost it) are found
/// by name and comment; state without kernel objects (as after a reboot) is
/// rebuilt by the next create.
#[test]
fn leftovers_are_found_and_rebuilt() {
    let _fw = shared();
    let fx = Fixture::new("172.31.249.64/26,size=26");
    let net = unique("crash");
    let ns = Ns::new(&format!("{net}-a"));

    // A network and an endpoint made behind the state's back.
    let _guard = NetworkGuard(net.clone());
    let orphan = Network::create(&net, "172.31.249.64/26".parse().unwrap(), false).unwrap();
    berth_network::attach(
        &orphan,
        "a",
        &ns.path,
        Ipv4Addr::new(172, 31, 249, 70),
        &AttachOptions::default(),
    )
    .unwrap();
    assert!(!berth_rules(&net).is_empty());
    // remove works with no record, takes the plugged-in veth too, and can repeat.
    fx.networks.remove(&net).unwrap();
    fx.networks.remove(&net).unwrap();
    assert_network_gone(&net);
    assert_no_veth(&net, "a");

    // Recorded, then the kernel side vanishes (reboot, someone's `ip link del`).
    let network = fx
        .networks
        .create(&net, &NetworkOptions::default())
        .unwrap();
    run("ip", &["link", "del", &network.bridge]);
    assert!(!network.is_installed().unwrap());
    let again = fx
        .networks
        .create(&net, &NetworkOptions::default())
        .unwrap();
    assert_eq!(again, network);
    assert!(again.is_installed().unwrap());
    // Rules flushed and the address gone while a container is attached: the
    // next create repairs both and leaves the container plugged in.
    let ep = fx
        .networks
        .attach(&net, "a", &ns.path, None, &AttachOptions::default())
        .unwrap();
    let masq = berth_rules(&net)
        .into_iter()
        .find(|r| r.contains("MASQUERADE"))
        .unwrap();
    let delete: Vec<String> = masq
        .replacen("-A", "-D", 1)
        .split_whitespace()
        .map(|w| w.trim_matches('"').to_string())
        .collect();
    let mut args = vec!["-w", "-t", "nat"];
    args.extend(delete.iter().map(String::as_str));
    run("iptables", &args);
    run("ip", &["addr", "flush", "dev", &network.bridge]);
    assert!(!network.is_installed().unwrap());
    fx.networks
        .create(&net, &NetworkOptions::default())
        .unwrap();
    assert!(network.is_installed().unwrap());
    assert!(
        link_exists(&ep.host_ifname),
        "repair unplugged the container"
    );
    fx.networks.detach(&net, "a").unwrap();

    // Asking for it with different settings is a conflict, not a silent change.
    let err = fx
        .networks
        .create(
            &net,
            &NetworkOptions {
                internal: true,
                subnet: None,
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(matches!(err, Error::Conflict { .. }), "{err}");

    fx.networks.remove(&net).unwrap();
    assert_network_gone(&net);
}
