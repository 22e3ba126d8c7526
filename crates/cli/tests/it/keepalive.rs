//! Swaps that keep-alive clients never notice (issue 17), end to end on the
//! seed: during a runtime swap 4.2.2 → 4.2.3, 200 keep-alive clients and a
//! pipelining client through the published port see no failed request and
//! no non-2xx; every connection opened after the switch is served by the
//! new container; a connection that is not HTTP stays on the old container
//! until the grace period, is then closed, and `up` says so.

use crate::common::text;
use crate::up::{free_port, http_get, DownOnDrop, Registry};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One HTTP/1.1 response off a kept-alive connection: (status, body,
/// whether the server closes the connection after it).
fn read_response(r: &mut BufReader<TcpStream>) -> Result<(u16, String, bool), String> {
    let mut status = String::new();
    match r.read_line(&mut status) {
        Ok(0) => return Err("connection closed before a response".into()),
        Ok(_) => {}
        Err(e) => return Err(format!("reading the status line: {e}")),
    }
    let code: u16 = status
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad status line {status:?}"))?;
    let (mut length, mut close, mut chunked) = (None, false, false);
    loop {
        let mut h = String::new();
        r.read_line(&mut h)
            .map_err(|e| format!("reading headers: {e}"))?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':').unwrap_or((h, ""));
        let (k, v) = (k.to_ascii_lowercase(), v.trim().to_ascii_lowercase());
        match k.as_str() {
            "content-length" => length = v.parse::<usize>().ok(),
            "connection" if v == "close" => close = true,
            "transfer-encoding" if v.contains("chunked") => chunked = true,
            _ => {}
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            r.read_line(&mut size)
                .map_err(|e| format!("chunk size: {e}"))?;
            let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| format!("bad chunk size {size:?}"))?;
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk)
                .map_err(|e| format!("chunk: {e}"))?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(n) = length {
        body.resize(n, 0);
        r.read_exact(&mut body).map_err(|e| format!("body: {e}"))?;
    } else {
        r.read_to_end(&mut body).map_err(|e| format!("body: {e}"))?;
        close = true;
    }
    Ok((code, String::from_utf8_lossy(&body).into_owned(), close))
}

#[derive(Default)]
struct Tally {
    requests: AtomicUsize,
    /// Connections the server ended with `Connection: close`.
    closed_by_server: AtomicUsize,
    failures: Mutex<Vec<String>>,
    /// Bodies answered on connections opened after the switch.
    after_switch: Mutex<Vec<String>>,
    /// Clients with 3 answers on such connections.
    moved_clients: AtomicUsize,
}

/// A client that keeps one connection alive, sending `pipeline` requests at
/// a time, and opens a new one whenever the server ends it. A connection
/// opened after the server ended one, or after `up` returned, must be
/// served by the new container.
fn client(
    port: u16,
    pipeline: usize,
    stop: Arc<AtomicBool>,
    switched: Arc<AtomicBool>,
    t: Arc<Tally>,
) {
    // Bounded: at most 5 minutes, whatever happens.
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut ended_by_server = false;
    let mut moved_answers = 0;
    'connections: while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
        let moved = ended_by_server || switched.load(Ordering::SeqCst);
        let s = match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => s,
            Err(e) => {
                t.failures.lock().unwrap().push(format!("connect: {e}"));
                return;
            }
        };
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut w = s.try_clone().unwrap();
        let mut r = BufReader::new(s);
        while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
            let batch = "GET / HTTP/1.1\r\nHost: seed\r\n\r\n".repeat(pipeline);
            if let Err(e) = w.write_all(batch.as_bytes()) {
                t.failures.lock().unwrap().push(format!("write: {e}"));
                return;
            }
            for _ in 0..pipeline {
                match read_response(&mut r) {
                    Ok((code, body, close)) => {
                        t.requests.fetch_add(1, Ordering::SeqCst);
                        if code != 200 {
                            t.failures.lock().unwrap().push(format!("status {code}"));
                        }
                        if moved {
                            t.after_switch.lock().unwrap().push(body);
                            moved_answers += 1;
                            if moved_answers == 3 {
                                t.moved_clients.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                        if close {
                            t.closed_by_server.fetch_add(1, Ordering::SeqCst);
                            ended_by_server = true;
                            // Requests pipelined after this one are never
                            // answered: HTTP says send them again.
                            continue 'connections;
                        }
                    }
                    Err(e) => {
                        t.failures.lock().unwrap().push(e);
                        return;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn keep_alive_and_pipelining_clients_see_no_error_across_a_swap() {
    let tmp = tempfile::tempdir().unwrap();
    let registry = Registry::seed(tmp.path(), "4.2.2 4.2.3", false);

    let project = format!("seedka{}", std::process::id());
    let dir = tmp.path().join(&project);
    crate::swap::copy_seed(&dir);
    let port = free_port();
    let compose = dir.join("docker-compose.yml");
    let text_of = std::fs::read_to_string(&compose).unwrap();
    std::fs::write(
        &compose,
        text_of
            .replace("\"8080:3000\"", &format!("\"{port}:3000\""))
            .replace(
                "  working_dir: /app",
                "  working_dir: /app\n  stop_grace_period: 3s",
            ),
    )
    .unwrap();
    let state = tmp.path().join("state");
    std::fs::write(tmp.path().join("none.toml"), "").unwrap();
    let mirrors = registry.mirrors();
    let berth = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(args)
            .current_dir(&dir)
            .env("BERTH_STATE_DIR", &state)
            .env("BERTH_REGISTRY_MIRRORS", &mirrors)
            .env("BERTH_CONFIG", tmp.path().join("none.toml"))
            .output()
            .unwrap()
    };
    let _down = DownOnDrop {
        dir: dir.clone(),
        state: state.clone(),
    };
    let up = berth(&["up", "-d"]);
    assert!(up.status.success(), "up -d: {}", text(&up.stderr));
    let deadline = Instant::now() + Duration::from_secs(120);
    while !http_get(port).is_some_and(|b| b.contains("nodejs version: 4.2.2")) {
        assert!(Instant::now() < deadline, "the seed never served 4.2.2");
        std::thread::sleep(Duration::from_millis(100));
    }

    // 200 keep-alive clients, one pipelining three at a time, and one
    // connection that never speaks HTTP.
    let stop = Arc::new(AtomicBool::new(false));
    let switched = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let mut threads = Vec::new();
    for i in 0..201 {
        let (stop, switched, tally) = (stop.clone(), switched.clone(), tally.clone());
        let pipeline = if i == 200 { 3 } else { 1 };
        threads.push(std::thread::spawn(move || {
            client(port, pipeline, stop, switched, tally)
        }));
    }
    let mut raw = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while tally.requests.load(Ordering::SeqCst) < 1000 {
        assert!(Instant::now() < deadline, "the clients never got going");
        std::thread::sleep(Duration::from_millis(20));
    }

    let edited = std::fs::read_to_string(&compose).unwrap();
    std::fs::write(
        &compose,
        edited.replace("alpine-nodejs:4.2.2", "alpine-nodejs:4.2.3"),
    )
    .unwrap();
    let up = berth(&["up", "-d"]);
    // Traffic has moved once `up` returns.
    switched.store(true, Ordering::SeqCst);
    let err = text(&up.stderr);
    assert!(up.status.success(), "up -d (4.2.3): {err}");
    // Every client on a connection of its own since the switch, a few times.
    let deadline = Instant::now() + Duration::from_secs(60);
    while tally.moved_clients.load(Ordering::SeqCst) < 201 {
        assert!(
            Instant::now() < deadline,
            "clients did not move to new connections"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::SeqCst);
    for t in threads {
        t.join().unwrap();
    }
    let failures = tally.failures.lock().unwrap().clone();
    let requests = tally.requests.load(Ordering::SeqCst);
    assert!(
        failures.is_empty(),
        "{} failures among {requests} requests: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(
        tally.closed_by_server.load(Ordering::SeqCst) >= 201,
        "not every kept-alive connection was ended at a request boundary"
    );
    let after = tally.after_switch.lock().unwrap();
    let old: Vec<&String> = after.iter().filter(|b| !b.contains("4.2.3")).collect();
    assert!(
        old.is_empty(),
        "new connections served by the old container: {:?}",
        &old[..old.len().min(3)]
    );

    // The connection that never spoke HTTP was cut at the grace period,
    // and `up` said so.
    raw.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut buf = [0u8; 16];
    let end = raw.read(&mut buf);
    assert!(
        matches!(end, Ok(0))
            || end
                .as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "the idle connection was not closed: {end:?}"
    );
    assert!(
        err.contains("1 connection still open (1 tcp) at the end of the 3s grace period, closed"),
        "up did not say a connection was cut: {err}"
    );
}
