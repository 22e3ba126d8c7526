//! The HTTP-aware drain: after a switch, kept-alive HTTP/1.x connections to the old target
//! end at a request boundary (no request cut, none refused), while upgraded and plain TCP
//! connections stay until they are cut at the grace period and counted.

use std::io::{BufRead, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_proxy::{Cut, PortProxy, Proto, Protocol, ProxyOptions, ProxySet, Publish, Target};

use crate::httpkit::{HttpClient, HttpServer};
use crate::support::{self, EchoServer, TestNetns};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Two backends, "A" and "B", on the same port in two namespaces: the two containers of a
/// swap.
struct Backends {
    a: HttpServer,
    b: HttpServer,
    ta: Target,
    tb: Target,
    ns_b: TestNetns,
    _ns_a: TestNetns,
}

fn backends() -> Backends {
    let (ns_a, ns_b) = (TestNetns::new(), TestNetns::new());
    let a = HttpServer::start(Some(&ns_a.path), "A", 0);
    let b = HttpServer::start(Some(&ns_b.path), "B", a.port);
    let ta = Target::InNetns {
        netns: ns_a.path.clone(),
        port: a.port,
    };
    let tb = ta.with_netns(&ns_b.path);
    Backends {
        a,
        b,
        ta,
        tb,
        ns_b,
        _ns_a: ns_a,
    }
}

fn proxy(target: &Target, protocol: Protocol) -> PortProxy {
    let options = ProxyOptions {
        protocol,
        ..ProxyOptions::default()
    };
    PortProxy::bind_with(LOCALHOST, 0, Proto::Tcp, target.clone(), &options).unwrap()
}

/// Which backend served a response (`A /path` → `A`).
fn server(body: &str) -> &str {
    body.split(' ').next().unwrap_or("")
}

#[derive(Default)]
struct ClientLog {
    failures: Vec<String>,
    /// Backends that served requests on connections opened after the switch returned.
    after_switch: Vec<String>,
    served_by_b: usize,
    /// Responses that carried `Connection: close`.
    closes: usize,
}

/// A kept-alive client: requests one after another on one connection, and a new connection
/// only when a response says `Connection: close` (what browsers and HTTP clients do). A
/// request without a complete response counts as failed.
fn keep_alive_client(
    addr: SocketAddr,
    switched: &AtomicBool,
    stop: &AtomicBool,
    progress: &AtomicUsize,
) -> ClientLog {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut log = ClientLog::default();
    let mut conn: Option<(HttpClient, bool)> = None;
    let mut n = 0;
    while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
        let (client, after_switch) = match &mut conn {
            Some(c) => c,
            None => {
                let after_switch = switched.load(Ordering::SeqCst);
                match HttpClient::connect(addr) {
                    Ok(c) => conn.insert((c, after_switch)),
                    Err(e) => {
                        log.failures.push(format!("connect: {e}"));
                        continue;
                    }
                }
            }
        };
        n += 1;
        match client.get(&format!("/r{n}")) {
            Ok(resp) if resp.status == 200 && resp.body.ends_with(&format!(" /r{n}")) => {
                let by = server(&resp.body).to_string();
                if by == "B" {
                    log.served_by_b += 1;
                }
                if *after_switch {
                    log.after_switch.push(by);
                }
                if resp.close {
                    log.closes += 1;
                    conn = None;
                }
                progress.fetch_add(1, Ordering::SeqCst);
            }
            Ok(resp) => {
                log.failures.push(format!("request {n}: {resp:?}"));
                conn = None;
            }
            Err(e) => {
                log.failures.push(format!("request {n}: {e}"));
                conn = None;
            }
        }
        // Pacing, so 200 clients leave the machine some room; not synchronisation.
        std::thread::sleep(Duration::from_millis(1));
    }
    log
}

#[test]
fn switch_under_200_keep_alive_clients_fails_no_request() {
    let _guard = support::shared();
    // 200 clients hold about 1,200 fds here (client, server and proxy sockets, A's and B's):
    // more than the usual soft limit, as for a supervisor under that load.
    berth_proxy::raise_fd_limit().unwrap();
    let bk = backends();
    let proxy = proxy(&bk.ta, Protocol::Auto);
    let addr = proxy.local_addr();
    const CLIENTS: usize = 200;

    let switched = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (switched, stop, progress) = (switched.clone(), stop.clone(), progress.clone());
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || keep_alive_client(addr, &switched, &stop, &progress))
                .unwrap()
        })
        .collect();
    let stop_on_failure = scopeguard(stop.clone());

    // Every client holds a kept-alive connection to A.
    assert!(
        support::eventually(Duration::from_secs(60), || proxy.active_connections(&bk.ta)
            == CLIENTS
            && progress.load(Ordering::SeqCst) >= 2 * CLIENTS),
        "the clients never all connected: {} open, {} requests",
        proxy.active_connections(&bk.ta),
        progress.load(Ordering::SeqCst)
    );
    assert_eq!(proxy.switch(bk.tb.clone()).unwrap(), bk.ta);
    switched.store(true, Ordering::SeqCst);

    // While the clients keep going, every connection to A ends at a request boundary.
    assert!(
        support::eventually(Duration::from_secs(60), || proxy.active_connections(&bk.ta)
            == 0),
        "{} kept-alive connections still on the old target",
        proxy.active_connections(&bk.ta)
    );
    let now = progress.load(Ordering::SeqCst);
    assert!(
        support::eventually(Duration::from_secs(60), || progress.load(Ordering::SeqCst)
            >= now + 2 * CLIENTS),
        "the clients stopped making requests after the drain"
    );
    drop(stop_on_failure);
    let logs: Vec<ClientLog> = clients.into_iter().map(|c| c.join().unwrap()).collect();

    let failures: Vec<&String> = logs.iter().flat_map(|l| &l.failures).collect();
    let requests = progress.load(Ordering::SeqCst);
    assert!(
        failures.is_empty(),
        "{} of {requests} requests failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    let misrouted = logs
        .iter()
        .flat_map(|l| &l.after_switch)
        .filter(|s| *s != "B")
        .count();
    assert_eq!(
        misrouted, 0,
        "connections opened after the switch reached A"
    );
    assert!(
        logs.iter().all(|l| l.served_by_b > 0 && l.closes >= 1),
        "every client moved to B after one Connection: close"
    );
    eprintln!(
        "{requests} requests by {CLIENTS} kept-alive clients, 0 failed; A served {}, B {}",
        bk.a.requests(),
        bk.b.requests()
    );
}

/// Sets the flag when dropped: clients stop even when an assertion fails first.
fn scopeguard(flag: Arc<AtomicBool>) -> impl Drop {
    struct Guard(Arc<AtomicBool>);
    impl Drop for Guard {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    Guard(flag)
}

#[test]
fn pipelined_requests_are_all_answered_once_in_order() {
    let _guard = support::shared();
    let bk = backends();
    let proxy = proxy(&bk.ta, Protocol::Auto);
    let addr = proxy.local_addr();

    let request = |method: &str, path: &str| format!("{method} {path} HTTP/1.1\r\nHost: t\r\n\r\n");
    let sent = [
        ("GET", "/wait1"),
        ("GET", "/p2"),
        ("HEAD", "/p3"),
        ("GET", "/p4"),
        ("GET", "/p5"),
    ];
    let mut c = HttpClient::connect(addr).unwrap();
    // Three requests in one write; A holds the first one's response until the gate opens.
    let first: String = sent[..3].iter().map(|(m, p)| request(m, p)).collect();
    c.send(&first).unwrap();
    assert!(support::eventually(Duration::from_secs(10), || bk
        .a
        .requests()
        >= 1));
    proxy.switch(bk.tb.clone()).unwrap();
    // Two more, pipelined behind them after the switch.
    let more: String = sent[3..].iter().map(|(m, p)| request(m, p)).collect();
    c.send(&more).unwrap();
    bk.a.gate.open();

    let mut answered = Vec::new();
    loop {
        let (method, path) = sent[answered.len()];
        let resp = c.response(method == "HEAD").unwrap();
        assert_eq!(resp.status, 200);
        if method == "HEAD" {
            assert_eq!(resp.body, "", "a HEAD response has no body");
            answered.push("A".to_string());
        } else {
            assert_eq!(resp.body, format!("A {path}"), "answered in order, by A");
            answered.push(server(&resp.body).to_string());
        }
        if resp.close {
            break;
        }
        assert!(
            answered.len() < sent.len(),
            "no response said Connection: close"
        );
    }
    c.expect_closed();
    let a_paths = bk.a.paths.lock().unwrap().clone();
    assert!(
        !a_paths.iter().any(|p| p == "/p4" || p == "/p5"),
        "requests sent after the switch went to A: {a_paths:?}"
    );

    // The client sends what was not answered again, on a new connection: B answers all.
    let mut c = HttpClient::connect(addr).unwrap();
    let rest: String = sent[answered.len()..]
        .iter()
        .map(|(m, p)| request(m, p))
        .collect();
    c.send(&rest).unwrap();
    for (method, path) in &sent[answered.len()..] {
        let resp = c.response(*method == "HEAD").unwrap();
        assert_eq!(resp.status, 200);
        if *method != "HEAD" {
            assert_eq!(resp.body, format!("B {path}"));
        }
        assert!(!resp.close);
    }
    let all: Vec<String> = [a_paths, bk.b.paths.lock().unwrap().clone()].concat();
    for (_, path) in sent {
        assert_eq!(
            all.iter().filter(|p| *p == path).count(),
            1,
            "{path} reached the backends once: {all:?}"
        );
    }
}

#[test]
fn chunked_response_in_flight_completes_and_the_next_request_ends_the_connection() {
    let _guard = support::shared();
    let bk = backends();
    let proxy = proxy(&bk.ta, Protocol::Http);
    let addr = proxy.local_addr();
    let mut c = HttpClient::connect(addr).unwrap();

    // Expect: 100-continue: the 100, then the body, then the real response.
    c.send("PUT /upload HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        .unwrap();
    assert_eq!(c.response(false).unwrap().status, 100);
    c.send("hello").unwrap();
    let resp = c.response(false).unwrap();
    assert_eq!((resp.status, resp.body.as_str()), (200, "A /upload"));

    // A chunked request, answered by a chunked response whose end waits for the gate.
    c.send("POST /chunked HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\n\r\n")
        .unwrap();
    {
        let (reader, _) = c.stream();
        let got = reader.fill_buf().unwrap();
        assert!(got.starts_with(b"HTTP/1.1 200"), "{got:?}");
    }
    proxy.switch(bk.tb.clone()).unwrap();
    bk.a.gate.open();
    let resp = c.response(false).unwrap();
    assert_eq!(
        resp.body, "A /chunked abc",
        "the response in flight is complete"
    );
    assert!(resp.chunked);
    assert!(!resp.close, "its head left before the switch");

    // The connection is between requests: the next request is still A's, and ends it.
    let resp = c.get("/last").unwrap();
    assert_eq!(resp.body, "A /last");
    assert!(
        resp.close,
        "the response after the switch says Connection: close"
    );
    c.expect_closed();
    assert_eq!(proxy.drain(&bk.ta, Duration::from_secs(10)), 0);

    let resp = HttpClient::connect(addr).unwrap().get("/new").unwrap();
    assert_eq!(resp.body, "B /new");
}

#[test]
fn idle_keep_alive_connection_is_closed_by_the_drain() {
    let _guard = support::shared();
    let bk = backends();
    let proxy = proxy(&bk.ta, Protocol::Auto);
    let mut c = HttpClient::connect(proxy.local_addr()).unwrap();
    assert_eq!(c.get("/x").unwrap().body, "A /x");
    proxy.switch(bk.tb.clone()).unwrap();
    c.expect_closed();
    assert_eq!(proxy.drain(&bk.ta, Duration::from_secs(10)), 0);
}

#[test]
fn websocket_and_tcp_are_cut_at_the_grace_period_and_counted() {
    let _guard = support::shared();
    let bk = backends();
    // One container's two ports: one auto-detected, one declared TCP.
    let publish = |target: &Target| Publish {
        host_ip: LOCALHOST,
        host_port: 0,
        proto: Proto::Tcp,
        target: target.clone(),
    };
    let set = ProxySet::bind_each(
        [
            (publish(&bk.ta), Protocol::Auto),
            (publish(&bk.ta), Protocol::Tcp),
        ],
        &ProxyOptions::default(),
    )
    .unwrap();
    let (auto, tcp) = (&set.proxies()[0], &set.proxies()[1]);

    let mut ws = HttpClient::connect(auto.local_addr()).unwrap();
    ws.send("GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
        .unwrap();
    assert_eq!(ws.response(false).unwrap().status, 101);
    let echo = |ws: &mut HttpClient, frame: &[u8]| {
        let (reader, writer) = ws.stream();
        writer.write_all(frame).unwrap();
        let mut back = vec![0u8; frame.len()];
        reader.read_exact(&mut back).unwrap();
        assert_eq!(back, frame);
    };
    echo(&mut ws, b"\x81\x05hello");
    // Kept-alive HTTP on the port declared TCP: the proxy does not look inside.
    let mut plain = HttpClient::connect(tcp.local_addr()).unwrap();
    assert_eq!(plain.get("/x").unwrap().body, "A /x");
    // An HTTP connection with nothing in flight, to show it is not among those cut.
    let mut idle = HttpClient::connect(auto.local_addr()).unwrap();
    assert_eq!(idle.get("/y").unwrap().body, "A /y");

    let old = set.switch_netns(&bk.ns_b.path).unwrap();
    assert_eq!(old, vec![bk.ta.clone(), bk.ta.clone()]);
    // Both stay on A through the drain.
    echo(&mut ws, b"\x81\x05again");
    let resp = plain.get("/z").unwrap();
    assert_eq!(resp.body, "A /z");
    assert!(!resp.close);
    idle.expect_closed();

    assert_eq!(set.drain(&old, Duration::from_millis(300)), 2);
    let cut = set.cut_connections(&old);
    assert_eq!(
        cut,
        Cut {
            http: 0,
            upgraded: 1,
            tcp: 1
        }
    );
    assert_eq!(
        cut.to_string(),
        "2 connections still open (1 websocket/upgraded, 1 tcp)"
    );
    support::assert_cut(ws.stream().0);
    plain.expect_closed();
    assert_eq!(set.drain(&old, Duration::from_secs(10)), 0);
}

#[test]
fn declared_http_falls_back_to_tcp_for_other_protocols() {
    let _guard = support::shared();
    let ns = TestNetns::new();
    // The echo server speaks first: no HTTP server does.
    let server = EchoServer::start(Some(&ns.path), "E");
    let target = Target::InNetns {
        netns: ns.path.clone(),
        port: server.port,
    };
    let proxy = proxy(&target, Protocol::Http);
    assert_eq!(
        support::request(proxy.local_addr(), "GET / HTTP/1.1\r\n\r\n").unwrap(),
        "E"
    );
    // A client that speaks first, but not HTTP.
    let mut c = TcpStream::connect(proxy.local_addr()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let msg = b"\x16\x03\x01 not http";
    c.write_all(msg).unwrap();
    let mut back = vec![0u8; 2 + msg.len()];
    c.read_exact(&mut back).unwrap();
    assert_eq!(back, [&b"E\n"[..], msg].concat());
}

#[test]
fn a_thousand_keep_alive_connections_hold_bounded_fds_and_threads() {
    // Alone in the process: fd and thread counts must not move under other tests.
    let _guard = support::exclusive();
    let limit = berth_proxy::raise_fd_limit().unwrap();
    assert!(
        limit.soft >= 8192,
        "the fd limit is too low for this test: {limit:?}"
    );
    let bk = backends();
    let proxy = proxy(&bk.ta, Protocol::Auto);
    const CONNS: usize = 1000;

    let fds_before = support::fd_count();
    let threads_before = support::proxy_threads();
    let mut clients: Vec<HttpClient> = (0..CONNS)
        .map(|_| HttpClient::connect(proxy.local_addr()).unwrap())
        .collect();
    for (i, c) in clients.iter_mut().enumerate() {
        assert_eq!(c.get(&format!("/{i}")).unwrap().body, format!("A /{i}"));
    }
    assert_eq!(proxy.active_connections(&bk.ta), CONNS);
    // Per connection: the client's and the server's socket, each open twice (reader and
    // writer, in this test process), and the proxy's two. No pipe, no eventfd per
    // connection.
    let fds = support::fd_count() - fds_before;
    assert!(fds <= 6 * CONNS + 16, "{fds} fds for {CONNS} connections");
    // One relay thread per connection (the test server's threads are not named berth-).
    let threads = support::proxy_threads() - threads_before;
    assert!(
        threads <= CONNS + 8,
        "{threads} proxy threads for {CONNS} connections"
    );

    // All of them are idle: the drain closes every one.
    proxy.switch(bk.tb.clone()).unwrap();
    assert_eq!(proxy.drain(&bk.ta, Duration::from_secs(60)), 0);
    for c in clients {
        c.expect_closed();
    }
    let resp = HttpClient::connect(proxy.local_addr())
        .unwrap()
        .get("/new")
        .unwrap();
    assert_eq!(resp.body, "B /new");

    // Everything the connections held is released with the proxy (the test servers close
    // their side once the proxy has closed it).
    drop(proxy);
    assert_eq!(
        support::proxy_threads(),
        0,
        "a proxy thread outlived the proxy"
    );
    assert!(
        support::eventually(Duration::from_secs(30), || support::fd_count()
            <= fds_before),
        "{} fds left of {CONNS} connections",
        support::fd_count().saturating_sub(fds_before)
    );
}

#[test]
fn auto_detection_never_stalls_a_client_that_speaks_first() {
    let _guard = support::shared();
    // An echo server that, unlike EchoServer, says nothing first.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let target = Target::Addr(listener.local_addr().unwrap());
    let server = std::thread::spawn(move || {
        for _ in 0..2 {
            let (mut conn, _) = listener.accept().unwrap();
            let mut buf = [0u8; 64];
            while let Ok(n) = conn.read(&mut buf) {
                if n == 0 || conn.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    });
    let proxy = proxy(&target, Protocol::Auto);
    // One byte that cannot start a request line, and one that is the start of "GET /":
    // both must come back without the client sending more.
    for msg in [&b"p"[..], b"GET"] {
        let mut c = TcpStream::connect(proxy.local_addr()).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.write_all(msg).unwrap();
        let mut back = vec![0u8; msg.len()];
        c.read_exact(&mut back).unwrap();
        assert_eq!(back, msg);
    }
    server.join().unwrap();
}

#[test]
fn response_without_a_length_in_flight_at_the_switch_is_relayed_whole() {
    let _guard = support::shared();
    let bk = backends();
    let proxy = proxy(&bk.ta, Protocol::Auto);
    let mut c = HttpClient::connect(proxy.local_addr()).unwrap();
    assert_eq!(c.get("/first").unwrap().body, "A /first");
    // A holds the response until the switch is done; it then ends it by closing.
    c.send("GET /wait-eof HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    assert!(support::eventually(Duration::from_secs(10), || bk
        .a
        .requests()
        == 2));
    proxy.switch(bk.tb.clone()).unwrap();
    bk.a.gate.open();
    let resp = c.response(false).unwrap();
    assert_eq!(
        resp.body, "A /wait-eof",
        "the whole body, up to the server's close"
    );
    assert!(
        resp.close,
        "the response in flight at the switch ends the connection"
    );
    assert_eq!(proxy.drain(&bk.ta, Duration::from_secs(10)), 0);
}
