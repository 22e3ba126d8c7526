//! Throughput and latency of a published port: direct to 127.0.0.1 against through the proxy
//! (to a host address, and, as root with `ip`, into a network namespace of its own); then
//! HTTP/1.1 keep-alive requests direct and through the proxy, and, with `wrk` installed, a
//! swap under `wrk -c200` and `-c1000` keep-alive load (socket errors, non-2xx, drain time).
//!
//! `cargo run --release -p berth-proxy --example bench [http]` (`http`: only the HTTP
//! rows). Every figure is measured, none is
//! asserted. All traffic stays on 127.0.0.1 or inside the namespace this run creates.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use berth_proxy::{PortProxy, Proto, Protocol, ProxyOptions, Target};

const BULK_BYTES: usize = 1 << 30;
const PING_PONGS: usize = 20_000;
const CONNECTIONS: usize = 2_000;

/// Starts `serve` for every connection on 127.0.0.1, inside `netns` when given.
fn server(netns: Option<&Path>, serve: fn(TcpStream)) -> u16 {
    let (tx, rx) = mpsc::channel();
    let netns = netns.map(Path::to_path_buf);
    std::thread::spawn(move || {
        if let Some(path) = netns {
            let file = File::open(path).expect("open netns");
            // SAFETY: plain syscall on an fd we hold.
            let ret = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(ret, 0, "setns");
        }
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        tx.send(listener.local_addr().unwrap().port()).unwrap();
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || serve(conn));
        }
    });
    rx.recv().expect("server up")
}

/// Reads everything, then answers one byte: the client's timer stops when all arrived.
fn sink(mut conn: TcpStream) {
    let mut buf = vec![0u8; 1 << 20];
    while matches!(conn.read(&mut buf), Ok(n) if n > 0) {}
    let _ = conn.write_all(b"k");
}

fn echo(mut conn: TcpStream) {
    let _ = conn.set_nodelay(true);
    let mut buf = [0u8; 4096];
    while let Ok(n) = conn.read(&mut buf) {
        if n == 0 || conn.write_all(&buf[..n]).is_err() {
            break;
        }
    }
}

fn throughput(addr: SocketAddr) -> f64 {
    let start = Instant::now();
    let mut conn = TcpStream::connect(addr).unwrap();
    let block = vec![0x5au8; 1 << 20];
    for _ in 0..BULK_BYTES / block.len() {
        conn.write_all(&block).unwrap();
    }
    conn.shutdown(Shutdown::Write).unwrap();
    let mut ack = [0u8; 1];
    conn.read_exact(&mut ack).unwrap();
    BULK_BYTES as f64 / start.elapsed().as_secs_f64() / (1u64 << 30) as f64
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

/// Round trips of one byte over one connection: (median µs, p99 µs).
fn ping_pong(addr: SocketAddr) -> (f64, f64) {
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.set_nodelay(true).unwrap();
    let mut times = Vec::with_capacity(PING_PONGS);
    let mut b = [0u8; 1];
    for _ in 0..PING_PONGS {
        let start = Instant::now();
        conn.write_all(b"p").unwrap();
        conn.read_exact(&mut b).unwrap();
        times.push(start.elapsed());
    }
    times.sort();
    (percentile(&times, 0.5), percentile(&times, 0.99))
}

/// Connect, one round trip, close: (p50, p90, p99 in µs, connections per second).
fn connect_rate(addr: SocketAddr) -> (f64, f64, f64, f64) {
    let mut times = Vec::with_capacity(CONNECTIONS);
    let all = Instant::now();
    let mut b = [0u8; 1];
    for _ in 0..CONNECTIONS {
        let start = Instant::now();
        let mut conn = TcpStream::connect(addr).unwrap();
        conn.set_nodelay(true).unwrap();
        conn.write_all(b"c").unwrap();
        conn.read_exact(&mut b).unwrap();
        drop(conn);
        times.push(start.elapsed());
    }
    let rate = CONNECTIONS as f64 / all.elapsed().as_secs_f64();
    times.sort();
    (
        percentile(&times, 0.5),
        percentile(&times, 0.9),
        percentile(&times, 0.99),
        rate,
    )
}

fn report(label: &str, sink_addr: SocketAddr, echo_addr: SocketAddr) {
    let gib = throughput(sink_addr);
    let (rtt50, rtt99) = ping_pong(echo_addr);
    let (c50, c90, c99, rate) = connect_rate(echo_addr);
    println!(
        "{label:<28} {gib:>6.2} GiB/s   rtt p50 {rtt50:>6.1} µs  p99 {rtt99:>6.1} µs   \
         connect+rtt p50 {c50:>6.0} p90 {c90:>6.0} p99 {c99:>6.0} µs  {rate:>5.0} conn/s"
    );
}

const CUTS: usize = 200;

/// How long a client waits to learn its connection is over, when the target refuses
/// (the proxy closes the client) and when the proxy is closed without grace (it cuts open
/// connections): (refused p50, refused p99, cut p50, cut p99) in µs. The tests assert
/// only that both happen; these are the durations.
fn cut_latency(echo_port: u16) -> (f64, f64, f64, f64) {
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let refusing = proxied(Target::Addr(closed));
    let mut refused = Vec::with_capacity(CUTS);
    let mut b = [0u8; 1];
    for _ in 0..CUTS {
        let start = Instant::now();
        let mut conn = TcpStream::connect(refusing.local_addr()).unwrap();
        assert!(matches!(conn.read(&mut b), Ok(0) | Err(_)));
        refused.push(start.elapsed());
    }
    let mut cut = Vec::with_capacity(CUTS);
    for _ in 0..CUTS {
        let proxy = proxied(Target::Addr(SocketAddr::from(([127, 0, 0, 1], echo_port))));
        let mut conn = TcpStream::connect(proxy.local_addr()).unwrap();
        conn.write_all(b"x").unwrap();
        conn.read_exact(&mut b).unwrap();
        let start = Instant::now();
        proxy.close(Duration::ZERO);
        assert!(matches!(conn.read(&mut b), Ok(0) | Err(_)));
        cut.push(start.elapsed());
    }
    refused.sort();
    cut.sort();
    (
        percentile(&refused, 0.5),
        percentile(&refused, 0.99),
        percentile(&cut, 0.5),
        percentile(&cut, 0.99),
    )
}

/// A namespace of this run's own, with loopback up; deleted on drop.
struct BenchNetns(String);

impl BenchNetns {
    fn create() -> Option<BenchNetns> {
        let name = format!("berth-proxybench-{}", std::process::id());
        let ok = |args: &[&str]| {
            Command::new("ip")
                .args(args)
                .status()
                .is_ok_and(|s| s.success())
        };
        if !ok(&["netns", "add", &name]) {
            return None;
        }
        let ns = BenchNetns(name);
        ok(&["netns", "exec", &ns.0, "ip", "link", "set", "lo", "up"]).then_some(ns)
    }

    fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.0)
    }
}

impl Drop for BenchNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.0])
            .status();
    }
}

fn proxied(target: Target) -> PortProxy {
    PortProxy::bind(IpAddr::V4(Ipv4Addr::LOCALHOST), 0, Proto::Tcp, target).expect("bind proxy")
}

/// A kept-alive HTTP/1.1 server answering every request with its name (requests have no
/// body: GET from the benchmark clients and wrk).
fn http_server(name: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::Builder::new()
                .stack_size(64 * 1024)
                .spawn(move || serve_http(conn, name))
                .expect("server thread");
        }
    });
    port
}

fn serve_http(conn: TcpStream, name: &str) {
    let _ = conn.set_nodelay(true);
    let Ok(read_half) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut writer = conn;
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{name}",
        name.len()
    );
    let mut line = String::new();
    loop {
        let mut close = false;
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if line.to_ascii_lowercase().starts_with("connection: close") {
                close = true;
            }
            if line == "\r\n" {
                break;
            }
        }
        if writer.write_all(response.as_bytes()).is_err() || close {
            return;
        }
    }
}

/// Sequential keep-alive requests over one connection: (p50 µs, p99 µs).
fn http_latency(addr: SocketAddr) -> (f64, f64) {
    let conn = TcpStream::connect(addr).unwrap();
    conn.set_nodelay(true).unwrap();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut writer = conn;
    let mut times = Vec::with_capacity(PING_PONGS);
    let mut line = String::new();
    for _ in 0..PING_PONGS {
        let start = Instant::now();
        writer
            .write_all(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
            .unwrap();
        let mut len = 0;
        loop {
            line.clear();
            reader.read_line(&mut line).unwrap();
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap();
            }
            if line == "\r\n" {
                break;
            }
        }
        let mut body = vec![0u8; len];
        reader.read_exact(&mut body).unwrap();
        times.push(start.elapsed());
    }
    times.sort();
    (percentile(&times, 0.5), percentile(&times, 0.99))
}

/// What wrk reported.
#[derive(Debug, Default)]
struct Wrk {
    requests_per_sec: f64,
    p50: String,
    p99: String,
    socket_errors: String,
    non_2xx: u64,
    requests: u64,
}

fn wrk(addr: SocketAddr, connections: usize, seconds: u64) -> Option<std::process::Child> {
    Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{connections}"),
            &format!("-d{seconds}s"),
            "--timeout",
            "5s",
            "--latency",
            &format!("http://{addr}/"),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()
}

fn parse_wrk(out: &str) -> Wrk {
    let mut w = Wrk {
        socket_errors: "none".into(),
        ..Wrk::default()
    };
    for line in out.lines().map(str::trim) {
        let field = |i: usize| line.split_whitespace().nth(i).unwrap_or("").to_string();
        if let Some(v) = line.strip_prefix("Requests/sec:") {
            w.requests_per_sec = v.trim().parse().unwrap_or(0.0);
        } else if line.starts_with("50%") {
            w.p50 = field(1);
        } else if line.starts_with("99%") {
            w.p99 = field(1);
        } else if let Some(v) = line.strip_prefix("Socket errors:") {
            w.socket_errors = v.trim().to_string();
        } else if let Some(v) = line.strip_prefix("Non-2xx or 3xx responses:") {
            w.non_2xx = v.trim().parse().unwrap_or(0);
        } else if line.contains(" requests in ") {
            w.requests = field(0).parse().unwrap_or(0);
        }
    }
    w
}

fn wrk_output(child: std::process::Child) -> Wrk {
    let out = child.wait_with_output().expect("wrk");
    parse_wrk(&String::from_utf8_lossy(&out.stdout))
}

fn http_proxy(target: Target, protocol: Protocol) -> PortProxy {
    let options = ProxyOptions {
        protocol,
        ..ProxyOptions::default()
    };
    PortProxy::bind_with(
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        0,
        Proto::Tcp,
        target,
        &options,
    )
    .expect("bind proxy")
}

/// Keep-alive HTTP: one client's request latency, and wrk's throughput with 100 connections.
fn http_report() {
    let local = |port| SocketAddr::from(([127, 0, 0, 1], port));
    let a = local(http_server("A"));
    let auto = http_proxy(Target::Addr(a), Protocol::Auto);
    let tcp = http_proxy(Target::Addr(a), Protocol::Tcp);
    for (label, addr) in [
        ("http direct", a),
        ("http via proxy (auto: http)", auto.local_addr()),
        ("http via proxy (tcp: splice)", tcp.local_addr()),
    ] {
        let (p50, p99) = http_latency(addr);
        print!("{label:<28} keep-alive request p50 {p50:>6.1} µs  p99 {p99:>6.1} µs");
        match wrk(addr, 100, 5) {
            Some(child) => {
                let w = wrk_output(child);
                println!(
                    "   wrk -c100: {:>8.0} req/s  p50 {}  p99 {}",
                    w.requests_per_sec, w.p50, w.p99
                );
            }
            None => println!("   (no wrk)"),
        }
    }
}

/// Swaps between two backends under wrk keep-alive load that outlasts every drain: at 3 s
/// A → B, at 8 s B → A, each drained (up to a 2 s grace period, then the rest cut); wrk
/// runs 14 s.
/// `Protocol::Tcp` is the drain without HTTP awareness, for comparison: kept-alive
/// connections stay on the old backend until the grace period (here 2 s, so the load
/// outlasts it) and are then cut, each a failed request for wrk.
fn swap_under_load(connections: usize, protocol: Protocol) {
    let local = |port| SocketAddr::from(([127, 0, 0, 1], port));
    let (ta, tb) = (
        Target::Addr(local(http_server("A"))),
        Target::Addr(local(http_server("B"))),
    );
    let proxy = http_proxy(ta.clone(), protocol);
    let grace = Duration::from_secs(2);
    let Some(child) = wrk(proxy.local_addr(), connections, 14) else {
        println!("(no wrk: no swap-under-load row)");
        return;
    };
    let start = Instant::now();
    let mut drains = Vec::new();
    for (at, to) in [(3, &tb), (8, &ta)] {
        std::thread::sleep(Duration::from_secs(at).saturating_sub(start.elapsed()));
        let before = proxy.active_connections(&proxy.target());
        let old = proxy.switch(to.clone()).unwrap();
        let t = Instant::now();
        let left = proxy.drain(&old, grace);
        let cut = proxy.cut_connections(&old);
        drains.push(format!(
            "{before} conns drained in {:.2} s ({left} left, cut: {})",
            t.elapsed().as_secs_f64(),
            cut
        ));
    }
    let w = wrk_output(child);
    println!(
        "swap under wrk -c{connections:<5} ({protocol:<4}) {} requests, {:.0} req/s, socket errors: {}, non-2xx: {}; {}",
        w.requests,
        w.requests_per_sec,
        w.socket_errors,
        w.non_2xx,
        drains.join("; ")
    );
}

fn main() {
    match berth_proxy::raise_fd_limit() {
        Ok(limit) => println!("open-file limit {}", limit.soft),
        Err(e) => println!("{e}"),
    }
    if std::env::args().nth(1).as_deref() == Some("http") {
        http_report();
        swap_rows();
        return;
    }
    println!(
        "{} GiB bulk, {PING_PONGS} ping-pongs, {CONNECTIONS} short connections per row",
        BULK_BYTES >> 30
    );
    let local = |port| SocketAddr::from(([127, 0, 0, 1], port));
    let (sink_port, echo_port) = (server(None, sink), server(None, echo));
    report("direct 127.0.0.1", local(sink_port), local(echo_port));

    let sink_proxy = proxied(Target::Addr(local(sink_port)));
    let echo_proxy = proxied(Target::Addr(local(echo_port)));
    report(
        "proxy -> 127.0.0.1",
        sink_proxy.local_addr(),
        echo_proxy.local_addr(),
    );
    drop((sink_proxy, echo_proxy));
    let (r50, r99, c50, c99) = cut_latency(echo_port);
    println!(
        "{:<28} refused target p50 {r50:>6.0} p99 {r99:>6.0} µs   close(0) cut p50 {c50:>6.0} p99 {c99:>6.0} µs",
        "client learns it is over"
    );

    match BenchNetns::create() {
        Some(ns) => {
            let path = ns.path();
            let (sink_port, echo_port) = (server(Some(&path), sink), server(Some(&path), echo));
            let netns = |port| Target::InNetns {
                netns: path.clone(),
                port,
            };
            let sink_proxy = proxied(netns(sink_port));
            let echo_proxy = proxied(netns(echo_port));
            report(
                "proxy -> netns 127.0.0.1",
                sink_proxy.local_addr(),
                echo_proxy.local_addr(),
            );
        }
        None => println!("(no network namespace: run as root with `ip` for the netns row)"),
    }

    http_report();
    swap_rows();
}

fn swap_rows() {
    for protocol in [Protocol::Auto, Protocol::Tcp] {
        swap_under_load(200, protocol);
        swap_under_load(1000, protocol);
    }
}
