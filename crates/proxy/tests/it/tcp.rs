use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use berth_proxy::{PortProxy, Proto, ProxyError, ProxyOptions, ProxySet, Publish, Target};
use sha2::{Digest, Sha256};

use crate::support::{self, request, EchoServer, TestNetns};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn netns_target(ns: &TestNetns, port: u16) -> Target {
    Target::InNetns {
        netns: ns.path.clone(),
        port,
    }
}

#[test]
fn echo_through_netns() {
    let _guard = support::shared();
    let ns = TestNetns::new();
    let server = EchoServer::start(Some(&ns.path), "A");
    let host_ns = support::own_namespace();
    let proxy = PortProxy::bind(LOCALHOST, 0, Proto::Tcp, netns_target(&ns, server.port)).unwrap();
    for i in 0..5 {
        assert_eq!(
            request(proxy.local_addr(), &format!("hello {i}\n")).unwrap(),
            "A"
        );
    }
    assert_eq!(server.accepted(), 5);
    // Only the namespace helper entered the container's namespace (besides the test's own
    // server threads): the caller, the accept thread and the relay threads stay outside.
    assert_eq!(support::own_namespace(), host_ns);
    let inside = support::threads_in_namespace(&ns.path);
    let proxy_inside: Vec<&String> = inside.iter().filter(|n| n.starts_with("berth-")).collect();
    assert_eq!(proxy_inside, ["berth-netns"]);
    let stats = proxy.stats();
    assert_eq!((stats.accepted, stats.connect_errors), (5, 0));
    // The server listens only inside its namespace: the same port on the host is free.
    let host_side = TcpListener::bind(("127.0.0.1", server.port));
    assert!(host_side.is_ok(), "port {} taken on the host", server.port);
    assert_eq!(server.accepted(), 5);
}

/// Sends `len` pseudo-random bytes through `addr` while reading the echo back; returns the
/// digests of what was sent and what came back, and the byte count received.
fn transfer(addr: SocketAddr, len: usize) -> (Vec<u8>, Vec<u8>, usize) {
    let conn = TcpStream::connect(addr).unwrap();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut greeting = String::new();
    reader.read_line(&mut greeting).unwrap();
    let mut writer = conn.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let mut hash = Sha256::new();
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut block = vec![0u8; 256 * 1024];
        let mut left = len;
        while left > 0 {
            let n = left.min(block.len());
            for chunk in block[..n].chunks_mut(8) {
                // xorshift64: cheap, non-repeating data so a reordered chunk changes the digest.
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
            }
            hash.update(&block[..n]);
            writer.write_all(&block[..n]).unwrap();
            left -= n;
        }
        writer.shutdown(Shutdown::Write).unwrap();
        hash.finalize().to_vec()
    });
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut got = 0;
    loop {
        let n = reader.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        got += n;
    }
    (sender.join().unwrap(), hash.finalize().to_vec(), got)
}

#[test]
fn large_transfer_integrity() {
    let _guard = support::shared();
    let ns = TestNetns::new();
    let server = EchoServer::start(Some(&ns.path), "A");
    let proxy = PortProxy::bind(LOCALHOST, 0, Proto::Tcp, netns_target(&ns, server.port)).unwrap();
    let len = 50 * 1024 * 1024;
    let start = Instant::now();
    let (sent, received, got) = transfer(proxy.local_addr(), len);
    eprintln!("50 MiB echoed through the proxy in {:?}", start.elapsed());
    assert_eq!(got, len);
    assert_eq!(sent, received);
}

#[test]
fn half_close_is_forwarded() {
    let _guard = support::shared();
    let ns = TestNetns::new();
    let server = EchoServer::start(Some(&ns.path), "A");
    let proxy = PortProxy::bind(LOCALHOST, 0, Proto::Tcp, netns_target(&ns, server.port)).unwrap();
    let target = proxy.target();

    let mut conn = TcpStream::connect(proxy.local_addr()).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    conn.write_all(b"last words").unwrap();
    // Our FIN must reach the server while its direction stays open: the server only sends
    // the echo's tail and closes after it sees end of stream.
    conn.shutdown(Shutdown::Write).unwrap();
    let mut all = String::new();
    conn.read_to_string(&mut all).unwrap();
    assert_eq!(all, "A\nlast words");
    // The server closed after our FIN; the proxy ends the connection and releases it.
    assert!(support::eventually(Duration::from_secs(2), || {
        proxy.active_connections(&target) == 0
    }));
}

#[test]
fn server_close_reaches_client() {
    let _guard = support::shared();
    // A server that writes and closes at once, without reading: the client must see the data
    // and then end of stream, even though it never sent anything.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.write_all(b"bye").unwrap();
    });
    let proxy = PortProxy::bind(LOCALHOST, 0, Proto::Tcp, Target::Addr(addr)).unwrap();
    let mut conn = TcpStream::connect(proxy.local_addr()).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut all = Vec::new();
    conn.read_to_end(&mut all).unwrap();
    assert_eq!(all, b"bye");
    server.join().unwrap();
}

#[test]
fn port_in_use_is_a_clear_error() {
    let _guard = support::shared();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let target = Target::Addr(SocketAddr::from(([127, 0, 0, 1], support::closed_port())));
    let err = PortProxy::bind(LOCALHOST, port, Proto::Tcp, target.clone()).unwrap_err();
    assert!(matches!(err, ProxyError::PortInUse { port: p, .. } if p == port));
    assert_eq!(
        err.to_string(),
        format!("port {port} is already in use on 127.0.0.1")
    );

    let udp_taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let udp_port = udp_taken.local_addr().unwrap().port();
    let err = PortProxy::bind(LOCALHOST, udp_port, Proto::Udp, target).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("port {udp_port}/udp is already in use on 127.0.0.1")
    );
}

#[test]
fn proxy_set_binds_all_or_nothing() {
    let _guard = support::shared();
    let target = Target::Addr(SocketAddr::from(([127, 0, 0, 1], support::closed_port())));
    let free = support::closed_port();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port();
    let publish = |port| Publish {
        host_ip: LOCALHOST,
        host_port: port,
        proto: Proto::Tcp,
        target: target.clone(),
    };
    let err = ProxySet::bind(
        [publish(free), publish(taken_port)],
        &ProxyOptions::default(),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("port {taken_port} is already in use on 127.0.0.1")
    );
    // The first port was released again.
    TcpListener::bind(("127.0.0.1", free)).expect("first port released");
}

#[test]
fn failed_connect_closes_client_and_counts() {
    let _guard = support::shared();
    let ns = TestNetns::new();
    // Nothing listens on this port inside the namespace.
    let target = netns_target(&ns, 9);
    let proxy = PortProxy::bind(LOCALHOST, 0, Proto::Tcp, target.clone()).unwrap();
    for _ in 0..3 {
        let conn = TcpStream::connect(proxy.local_addr()).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        // The client is closed, not served, and not left hanging.
        support::assert_cut(conn);
    }
    let stats = proxy.stats();
    assert_eq!(stats.connect_errors, 3);
    assert!(
        stats
            .last_connect_error
            .as_deref()
            .is_some_and(|e| e.contains("refused")),
        "{stats:?}"
    );
    assert!(support::eventually(Duration::from_secs(2), || {
        proxy.active_connections(&target) == 0
    }));
}

#[test]
fn bad_namespace_fails_bind_and_switch() {
    let _guard = support::shared();
    let missing = Target::InNetns {
        netns: PathBuf::from("/run/netns/berth-proxytest-does-not-exist"),
        port: 80,
    };
    let err = PortProxy::bind(LOCALHOST, 0, Proto::Tcp, missing.clone()).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("cannot open network namespace /run/netns/berth-proxytest-does-not-exist"),
        "{err}"
    );
    // A namespace file of another kind cannot be entered as a network namespace.
    let not_net = Target::InNetns {
        netns: PathBuf::from("/proc/self/ns/uts"),
        port: 80,
    };
    let err = PortProxy::bind(LOCALHOST, 0, Proto::Tcp, not_net).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("cannot enter network namespace"),
        "{err}"
    );

    let good = Target::Addr(SocketAddr::from(([127, 0, 0, 1], support::closed_port())));
    let proxy = PortProxy::bind(LOCALHOST, 0, Proto::Tcp, good.clone()).unwrap();
    assert!(proxy.switch(missing).is_err());
    assert_eq!(proxy.target(), good, "a failed switch changes nothing");
}

#[test]
fn host_addresses() {
    let _guard = support::shared();
    let server = EchoServer::start(None, "H");
    let target = Target::Addr(SocketAddr::from(([127, 0, 0, 1], server.port)));

    // The wildcard address, reached through loopback.
    let any = PortProxy::bind(Ipv4Addr::UNSPECIFIED.into(), 0, Proto::Tcp, target.clone()).unwrap();
    let port = any.local_addr().port();
    assert_eq!(
        request(SocketAddr::from(([127, 0, 0, 1], port)), "x").unwrap(),
        "H"
    );

    // `::` is IPv6-only, so it coexists with 0.0.0.0 on the same port (as docker publishes).
    let any6 = PortProxy::bind(
        Ipv6Addr::UNSPECIFIED.into(),
        port,
        Proto::Tcp,
        target.clone(),
    )
    .expect(":: next to 0.0.0.0");
    assert_eq!(
        any6.local_addr(),
        SocketAddr::from((Ipv6Addr::UNSPECIFIED, port))
    );
    drop((any, any6));

    // Two specific addresses, same port: two independent proxies.
    let free = support::closed_port();
    let a = PortProxy::bind([127, 0, 0, 2].into(), free, Proto::Tcp, target.clone()).unwrap();
    let b = PortProxy::bind([127, 0, 0, 3].into(), free, Proto::Tcp, target.clone()).unwrap();
    assert_eq!(
        request(SocketAddr::from(([127, 0, 0, 2], free)), "a").unwrap(),
        "H"
    );
    assert_eq!(
        request(SocketAddr::from(([127, 0, 0, 3], free)), "b").unwrap(),
        "H"
    );
    assert_eq!(a.stats().accepted, 1);
    assert_eq!(b.stats().accepted, 1);
    // But 0.0.0.0 on that port now clashes with them.
    let err = PortProxy::bind(Ipv4Addr::UNSPECIFIED.into(), free, Proto::Tcp, target).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("port {free} is already in use on 0.0.0.0")
    );
}

#[test]
fn ipv6_wildcard_relays() {
    let _guard = support::shared();
    // IPv6 traffic stays inside a namespace of our own: the proxy is bound there by a thread
    // that entered it, and the client connects to [::1] there too.
    let ns = TestNetns::new();
    let server = EchoServer::start(Some(&ns.path), "V6");
    let port = server.port;
    let result = support::spawn_in(Some(&ns.path), move || {
        let target = Target::Addr(SocketAddr::from(([127, 0, 0, 1], port)));
        let proxy = PortProxy::bind(Ipv6Addr::UNSPECIFIED.into(), 0, Proto::Tcp, target).unwrap();
        let addr = SocketAddr::from((Ipv6Addr::LOCALHOST, proxy.local_addr().port()));
        request(addr, "six").map_err(|e| e.to_string())
    })
    .join()
    .unwrap();
    assert_eq!(result.unwrap(), "V6");
}

#[test]
fn close_with_grace_lets_open_connections_finish() {
    let _guard = support::shared();
    let ns = TestNetns::new();
    let server = EchoServer::start(Some(&ns.path), "A");
    let proxy = PortProxy::bind(LOCALHOST, 0, Proto::Tcp, netns_target(&ns, server.port)).unwrap();
    let addr = proxy.local_addr();
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut greeting = [0u8; 2];
    conn.read_exact(&mut greeting).unwrap();

    // A grace far longer than the test: close must end because the connection did.
    let (closed_tx, closed_rx) = std::sync::mpsc::channel();
    let closer = std::thread::spawn(move || {
        proxy.close(Duration::from_secs(120));
        closed_tx.send(()).unwrap();
    });
    // The port is freed at once...
    assert!(support::eventually(Duration::from_secs(2), || {
        TcpStream::connect(addr).is_err()
    }));
    // ...while the open connection still works until we end it.
    conn.write_all(b"ping").unwrap();
    let mut back = [0u8; 4];
    conn.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"ping");
    assert!(
        !closer.is_finished(),
        "close returned with a connection open"
    );
    drop(conn);
    closed_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("close returned once its last connection ended");
    closer.join().unwrap();

    // Without grace, open connections are cut.
    let proxy = PortProxy::bind(LOCALHOST, 0, Proto::Tcp, netns_target(&ns, server.port)).unwrap();
    let mut conn = TcpStream::connect(proxy.local_addr()).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    conn.read_exact(&mut greeting).unwrap();
    proxy.close(Duration::ZERO);
    support::assert_cut(conn);
}

#[test]
fn probe_tells_ready_from_not_ready() {
    let _guard = support::shared();
    let ns = TestNetns::new();
    let server = EchoServer::start(Some(&ns.path), "A");
    berth_proxy::probe_tcp(&netns_target(&ns, server.port), Duration::from_secs(1))
        .expect("listening target is ready");
    let err = berth_proxy::probe_tcp(&netns_target(&ns, 9), Duration::from_secs(1)).unwrap_err();
    assert!(
        err.to_string().starts_with(&format!(
            "cannot connect to 127.0.0.1:9 in network namespace {}",
            ns.path.display()
        )),
        "{err}"
    );
    // The probe's own connection reached the server, and nothing else did.
    assert!(support::eventually(Duration::from_secs(2), || server
        .accepted()
        == 1));
}
