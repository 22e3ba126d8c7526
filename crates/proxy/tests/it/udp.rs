use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use berth_proxy::{PortProxy, Proto, ProxyOptions, Target};

use crate::support::{self, TestNetns, UdpEchoServer};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn client() -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    socket
}

/// Sends `msg` to the proxy and returns the reply, checking it came from the proxy's address.
fn ask(socket: &UdpSocket, proxy: SocketAddr, msg: &str) -> String {
    socket.send_to(msg.as_bytes(), proxy).unwrap();
    let mut buf = vec![0u8; 65536];
    let (n, from) = socket.recv_from(&mut buf).expect("reply");
    assert_eq!(from, proxy, "replies come from the published address");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn udp_round_trip_through_netns() {
    let _guard = support::shared();
    let ns = TestNetns::new();
    let server = UdpEchoServer::start(Some(&ns.path), "A");
    let target = Target::InNetns {
        netns: ns.path.clone(),
        port: server.port,
    };
    let proxy = PortProxy::bind(LOCALHOST, 0, Proto::Udp, target.clone()).unwrap();
    let addr = proxy.local_addr();
    let (c1, c2) = (client(), client());
    assert_eq!(ask(&c1, addr, "hello"), "A:hello");
    assert_eq!(ask(&c2, addr, "world"), "A:world");
    assert_eq!(ask(&c1, addr, "again"), "A:again");
    // One flow per client address.
    assert_eq!(proxy.active_connections(&target), 2);
    assert_eq!(proxy.stats().accepted, 2);
    // A large datagram passes whole.
    let big = "x".repeat(60_000);
    assert_eq!(ask(&c1, addr, &big).len(), 60_002);
}

#[test]
fn udp_switch_and_idle_expiry() {
    let _guard = support::shared();
    let (ns_a, ns_b) = (TestNetns::new(), TestNetns::new());
    let a = UdpEchoServer::start(Some(&ns_a.path), "A");
    let b = UdpEchoServer::start(Some(&ns_b.path), "B");
    let ta = Target::InNetns {
        netns: ns_a.path.clone(),
        port: a.port,
    };
    let tb = Target::InNetns {
        netns: ns_b.path.clone(),
        port: b.port,
    };
    let options = ProxyOptions {
        udp_idle_timeout: Duration::from_millis(300),
        ..ProxyOptions::default()
    };
    let proxy = PortProxy::bind_with(LOCALHOST, 0, Proto::Udp, ta.clone(), &options).unwrap();
    let addr = proxy.local_addr();
    let (c1, c2) = (client(), client());
    assert_eq!(ask(&c1, addr, "1"), "A:1");
    assert_eq!(proxy.switch(tb.clone()).unwrap(), ta);
    // The existing flow stays on A; a new client goes to B.
    assert_eq!(ask(&c1, addr, "2"), "A:2");
    assert_eq!(ask(&c2, addr, "3"), "B:3");
    assert_eq!(proxy.active_connections(&ta), 1);
    assert_eq!(proxy.active_connections(&tb), 1);
    // Once idle, A's flow expires and draining A completes.
    assert_eq!(proxy.drain(&ta, Duration::from_secs(30)), 0);
    // The same client now gets a fresh flow, on B.
    assert_eq!(ask(&c1, addr, "4"), "B:4");

    assert!(proxy.active_connections(&tb) >= 1);
    assert!(proxy.close_connections(&tb) >= 1);
    assert_eq!(proxy.drain(&tb, Duration::from_secs(2)), 0);
}

#[test]
fn udp_unreachable_target_drops_without_breaking() {
    let _guard = support::shared();
    let ns = TestNetns::new();
    let server = UdpEchoServer::start(Some(&ns.path), "A");
    let proxy = PortProxy::bind(
        LOCALHOST,
        0,
        Proto::Udp,
        Target::InNetns {
            netns: ns.path.clone(),
            port: support::closed_port(),
        },
    )
    .unwrap();
    let addr = proxy.local_addr();
    let c = client();
    c.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    c.send_to(b"lost", addr).unwrap();
    let mut buf = [0u8; 64];
    assert!(
        c.recv_from(&mut buf).is_err(),
        "no reply from a closed port"
    );
    // The proxy keeps working once pointed at a live target.
    proxy
        .switch(Target::InNetns {
            netns: ns.path.clone(),
            port: server.port,
        })
        .unwrap();
    let c2 = client();
    assert_eq!(ask(&c2, addr, "found"), "A:found");
}
