use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, TcpStream, UdpSocket};
use std::time::Duration;

use berth_proxy::{PortProxy, Proto, ProxyOptions, ProxySet, Publish, Target};

use crate::support::{self, request, EchoServer, TestNetns, UdpEchoServer};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

#[test]
fn no_fd_or_thread_leaks() {
    // Alone in the process: fd and thread counts must not move under other tests.
    let _guard = support::exclusive();
    let (ns_a, ns_b) = (TestNetns::new(), TestNetns::new());
    let a = EchoServer::start(Some(&ns_a.path), "A");
    let b = EchoServer::start(Some(&ns_b.path), "B");
    let ua = UdpEchoServer::start(Some(&ns_a.path), "A");
    let ta = Target::InNetns {
        netns: ns_a.path.clone(),
        port: a.port,
    };
    let tb = Target::InNetns {
        netns: ns_b.path.clone(),
        port: b.port,
    };

    let fds_before = support::fd_count();
    assert_eq!(support::proxy_threads(), 0, "no proxy thread before");

    for round in 0..3 {
        let tcp = PortProxy::bind(LOCALHOST, 0, Proto::Tcp, ta.clone()).unwrap();
        let udp = PortProxy::bind(
            LOCALHOST,
            0,
            Proto::Udp,
            Target::InNetns {
                netns: ns_a.path.clone(),
                port: ua.port,
            },
        )
        .unwrap();
        // Short connections on both targets, some still open at close, a failed connect,
        // and UDP flows.
        for i in 0..20 {
            if i == 10 {
                tcp.switch(tb.clone()).unwrap();
            }
            request(tcp.local_addr(), "x").unwrap();
        }
        let open: Vec<TcpStream> = (0..5)
            .map(|_| {
                let mut c = TcpStream::connect(tcp.local_addr()).unwrap();
                let mut greeting = [0u8; 2];
                c.read_exact(&mut greeting).unwrap();
                c
            })
            .collect();
        tcp.switch(Target::InNetns {
            netns: ns_b.path.clone(),
            port: support::closed_port(),
        })
        .unwrap();
        let refused = TcpStream::connect(tcp.local_addr()).unwrap();
        refused
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        support::assert_cut(&refused);
        let clients: Vec<UdpSocket> = (0..4)
            .map(|_| {
                let c = UdpSocket::bind("127.0.0.1:0").unwrap();
                c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                c.send_to(b"hi", udp.local_addr()).unwrap();
                c.recv_from(&mut [0u8; 16]).unwrap();
                c
            })
            .collect();
        assert!(support::proxy_threads() > 0);

        // Half the rounds close explicitly with a grace, the others just drop.
        if round % 2 == 0 {
            tcp.close(Duration::from_millis(50));
            udp.close(Duration::ZERO);
        } else {
            drop((tcp, udp));
        }
        // Closing cut the open connections: the clients see end of stream.
        for c in &open {
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            support::assert_cut(c);
        }
        drop((open, refused, clients));
    }

    // A proxy set, too.
    let set = ProxySet::bind(
        (0..3).map(|_| Publish {
            host_ip: LOCALHOST,
            host_port: 0,
            proto: Proto::Tcp,
            target: ta.clone(),
        }),
        &ProxyOptions::default(),
    )
    .unwrap();
    for p in set.proxies() {
        assert_eq!(request(p.local_addr(), "x").unwrap(), "A");
    }
    let old = set.switch_netns(&ns_b.path).unwrap();
    assert_eq!(old, vec![ta.clone(); 3]);
    assert_eq!(set.drain(&old, Duration::from_secs(2)), 0);
    set.close(Duration::ZERO);

    // Every proxy thread (accept, relay, UDP, namespace helpers) is gone once close/drop
    // returned; the servers close their side of cut connections a moment later.
    assert_eq!(support::proxy_threads(), 0, "proxy threads left");
    let settled = support::eventually(Duration::from_secs(3), || support::fd_count() == fds_before);
    assert!(
        settled,
        "fds: {} before, {} after",
        fds_before,
        support::fd_count()
    );
}
