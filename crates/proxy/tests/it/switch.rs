use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_proxy::{PortProxy, Proto, Target};

use crate::support::{self, request, EchoServer, TestNetns};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

struct Sample {
    start: Instant,
    end: Instant,
    result: Result<String, String>,
}

struct Switch {
    called: Instant,
    returned: Instant,
    to: &'static str,
}

/// Opens a connection and reads the server's greeting (its name).
fn open(addr: std::net::SocketAddr) -> (TcpStream, BufReader<TcpStream>, String) {
    let conn = TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut name = String::new();
    reader.read_line(&mut name).unwrap();
    name.pop();
    (conn, reader, name)
}

#[test]
fn switch_under_load() {
    let _guard = support::shared();
    let (ns_a, ns_b) = (TestNetns::new(), TestNetns::new());
    let a = EchoServer::start(Some(&ns_a.path), "A");
    let b = EchoServer::start(Some(&ns_b.path), "B");
    let ta = Target::InNetns {
        netns: ns_a.path.clone(),
        port: a.port,
    };
    let tb = Target::InNetns {
        netns: ns_b.path.clone(),
        port: b.port,
    };
    let proxy = PortProxy::bind(LOCALHOST, 0, Proto::Tcp, ta.clone()).unwrap();
    let addr = proxy.local_addr();

    // A long-lived connection, opened before any switch.
    let (mut long, mut long_reader, long_name) = open(addr);
    assert_eq!(long_name, "A");

    // Two clients opening short connections every 2 ms, bounded in count and time.
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let (stop, done) = (stop.clone(), done.clone());
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(60);
                let mut samples = Vec::new();
                while !stop.load(Ordering::SeqCst)
                    && samples.len() < 1000
                    && Instant::now() < deadline
                {
                    let start = Instant::now();
                    let result = request(addr, "ping\n").map_err(|e| e.to_string());
                    let end = Instant::now();
                    samples.push(Sample { start, end, result });
                    done.fetch_add(1, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(2));
                }
                samples
            })
        })
        .collect();

    // Between switches the clients get some requests through, however busy the machine.
    let some_requests = || {
        let before = done.load(Ordering::SeqCst);
        assert!(
            support::eventually(Duration::from_secs(20), || {
                done.load(Ordering::SeqCst) >= before + 30
            }),
            "the clients stopped making requests"
        );
    };
    let mut switches = Vec::new();
    for i in 0..5 {
        some_requests();
        let (next, to) = if i % 2 == 0 { (&tb, "B") } else { (&ta, "A") };
        let called = Instant::now();
        let old = proxy.switch(next.clone()).unwrap();
        let returned = Instant::now();
        assert_ne!(&old, next);
        switches.push(Switch {
            called,
            returned,
            to,
        });
    }
    some_requests();
    stop.store(true, Ordering::SeqCst);
    let samples: Vec<Sample> = clients
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();

    let failures: Vec<&String> = samples
        .iter()
        .filter_map(|s| s.result.as_ref().err())
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} requests failed: {:?}",
        failures.len(),
        samples.len(),
        &failures[..failures.len().min(5)]
    );
    let served = |name: &str| {
        samples
            .iter()
            .filter(|s| s.result.as_deref() == Ok(name))
            .count()
    };
    let (by_a, by_b) = (served("A"), served("B"));
    eprintln!(
        "{} requests, {by_a} served by A, {by_b} by B, 0 failed",
        samples.len()
    );
    assert!(by_a > 0 && by_b > 0);

    // A request that started after a switch returned, and ended before the next switch
    // began, went to that switch's target: no new connection reaches the old one.
    let mut misrouted = 0;
    let mut checked = 0;
    for s in &samples {
        let k = switches.iter().rposition(|w| w.returned <= s.start);
        let expected = match k {
            None => "A",
            Some(k) => switches[k].to,
        };
        let next_called = match k {
            None => Some(switches[0].called),
            Some(k) => switches.get(k + 1).map(|w| w.called),
        };
        if k.is_none() && s.start >= switches[0].called {
            continue; // Overlaps the first switch.
        }
        if next_called.is_some_and(|next| s.end > next) {
            continue; // Overlaps the next switch: either target is right.
        }
        checked += 1;
        if s.result.as_deref() != Ok(expected) {
            misrouted += 1;
        }
    }
    assert!(
        checked > samples.len() / 2,
        "{checked} of {} checked",
        samples.len()
    );
    assert_eq!(
        misrouted, 0,
        "requests routed to a target switched away from"
    );

    // The long-lived connection still talks to A.
    long.write_all(b"still here\n").unwrap();
    let mut line = String::new();
    long_reader.read_line(&mut line).unwrap();
    assert_eq!(line, "still here\n");
    assert_eq!(proxy.target(), tb);

    // Draining A waits for the long connection, and only for it: while it is open the
    // drain gives up with it counted; once it ends, the drain completes.
    assert_eq!(proxy.drain(&ta, Duration::from_millis(300)), 1);
    assert_eq!(proxy.active_connections(&ta), 1);
    drop(long_reader);
    drop(long);
    assert_eq!(proxy.drain(&ta, Duration::from_secs(30)), 0);
    assert_eq!(proxy.active_connections(&ta), 0);

    // After the switch and the drain, A gets no connection at all.
    let a_before = a.accepted();
    for _ in 0..20 {
        assert_eq!(request(addr, "after\n").unwrap(), "B");
    }
    assert_eq!(a.accepted(), a_before);
    assert_eq!(proxy.stats().connect_errors, 0);
}

#[test]
fn close_connections_cuts_only_the_old_target() {
    let _guard = support::shared();
    let (ns_a, ns_b) = (TestNetns::new(), TestNetns::new());
    let a = EchoServer::start(Some(&ns_a.path), "A");
    let b = EchoServer::start(Some(&ns_b.path), "B");
    let ta = Target::InNetns {
        netns: ns_a.path.clone(),
        port: a.port,
    };
    let tb = Target::InNetns {
        netns: ns_b.path.clone(),
        port: b.port,
    };
    let proxy = PortProxy::bind(LOCALHOST, 0, Proto::Tcp, ta.clone()).unwrap();
    let (_old_conn, mut old_reader, old_name) = open(proxy.local_addr());
    assert_eq!(proxy.switch(tb.clone()).unwrap(), ta);
    let (mut new_conn, mut new_reader, new_name) = open(proxy.local_addr());
    assert_eq!((old_name.as_str(), new_name.as_str()), ("A", "B"));
    assert!(support::eventually(Duration::from_secs(2), || {
        proxy.active_connections(&ta) == 1 && proxy.active_connections(&tb) == 1
    }));

    assert_eq!(proxy.close_connections(&ta), 1);
    // The old connection ends (end of stream for the client)...
    support::assert_cut(&mut old_reader);
    assert_eq!(proxy.drain(&ta, Duration::from_secs(2)), 0);
    // ...and the new one is untouched.
    new_conn.write_all(b"ok\n").unwrap();
    let mut line = String::new();
    new_reader.read_line(&mut line).unwrap();
    assert_eq!(line, "ok\n");
}

#[test]
fn switch_back_and_forth_shares_namespace_helpers() {
    let _guard = support::shared();
    let ns = TestNetns::new();
    let a = EchoServer::start(Some(&ns.path), "A");
    let b = EchoServer::start(Some(&ns.path), "B");
    // Two servers in one namespace (one container with two ports, say): switching between
    // them is immediate and both are served.
    let ta = Target::InNetns {
        netns: ns.path.clone(),
        port: a.port,
    };
    let proxy = PortProxy::bind(LOCALHOST, 0, Proto::Tcp, ta.clone()).unwrap();
    for i in 0..20 {
        let (t, name) = if i % 2 == 0 {
            (ta.with_netns(&ns.path), "A")
        } else {
            (
                Target::InNetns {
                    netns: ns.path.clone(),
                    port: b.port,
                },
                "B",
            )
        };
        proxy.switch(t).unwrap();
        assert_eq!(request(proxy.local_addr(), "x").unwrap(), name);
    }
}
