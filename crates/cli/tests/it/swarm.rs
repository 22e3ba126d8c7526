//! `berth --engine swarm` on the three-node cluster (scripts/swarm-cluster.sh).
//!
//! The seed verbatim (legacy v1 file, `build: .` FROM tianon/true, the
//! runtime image with `volumes_from`, `npm install && npm run start`) with
//! the real Node images scripts/seed-registry.sh builds, run through the
//! `berth` binary as a user runs it: DOCKER_HOST at the manager,
//! BERTH_SWARM_REGISTRY at the cluster's registry, only the published port
//! changed. Traffic goes only to loopback and the cluster's bridge.

#[allow(dead_code)]
#[path = "../../../engine-swarm/tests/it/cluster_lock.rs"]
mod cluster_lock;

use crate::common::{repo, text};
use crate::up::Registry;
use cluster_lock::{docker, node_addr, ClusterLease, MANAGER, REGISTRY};
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One GET / to a node's published port: the body of a 200, else what
/// went wrong.
fn try_get(addr: &str, port: u16) -> Result<String, String> {
    let to = format!("{addr}:{port}").parse().unwrap();
    let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(2))
        .map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET / HTTP/1.0\r\nHost: seed\r\n\r\n").map_err(|e| format!("write: {e}"))?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)
        .map_err(|e| format!("read: {e}"))?;
    let (head, body) = buf
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no HTTP answer: {buf:?}"))?;
    match head.split_whitespace().nth(1) {
        Some("200") => Ok(body.trim().to_string()),
        _ => Err(format!("answer: {head:?}")),
    }
}

fn get(addr: &str, port: u16) -> Option<String> {
    try_get(addr, port).ok()
}

/// Until every node answers `want` on `port` (bounded).
fn wait_all_nodes(port: u16, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(180);
    for n in 1..=3 {
        let addr = node_addr(n);
        while get(&addr, port).as_deref() != Some(want) {
            assert!(
                Instant::now() < deadline,
                "{addr}:{port} never answered {want:?}: {:?}",
                get(&addr, port)
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// A client polling node 1's published port every 20 ms (at most 15 000
/// requests, at most 10 minutes) until stopped.
struct Poller {
    started: Instant,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Polled>,
}

#[derive(Debug)]
struct Polled {
    /// The bodies seen, in order, without repeats.
    seen: Vec<String>,
    failed: usize,
    requests: usize,
    /// The first failures: milliseconds after the start, and why.
    failures: Vec<(u128, String)>,
}

impl Poller {
    fn start(port: u16) -> Poller {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let started = Instant::now();
        let thread = std::thread::spawn(move || {
            let addr = node_addr(1);
            let end = started + Duration::from_secs(600);
            let start = started;
            let mut p = Polled {
                seen: Vec::new(),
                failed: 0,
                requests: 0,
                failures: Vec::new(),
            };
            while !flag.load(Ordering::Relaxed) && p.requests < 15_000 && Instant::now() < end {
                match try_get(&addr, port) {
                    Ok(body) if p.seen.last() != Some(&body) => p.seen.push(body),
                    Ok(_) => {}
                    Err(why) => {
                        p.failed += 1;
                        if p.failures.len() < 20 {
                            p.failures.push((start.elapsed().as_millis(), why));
                        }
                    }
                }
                p.requests += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            p
        });
        Poller {
            started,
            stop,
            thread,
        }
    }

    /// Milliseconds since the poller started.
    fn now(&self) -> u128 {
        self.started.elapsed().as_millis()
    }

    fn finish(self) -> Polled {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

struct Seed {
    dir: PathBuf,
    env: Vec<(&'static str, String)>,
    name: String,
}

impl Seed {
    fn berth(&self, args: &[&str]) -> Output {
        let env: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut all = vec!["--engine", "swarm"];
        all.extend_from_slice(args);
        crate::common::berth(&self.dir, &all, &env)
    }

    /// `berth --engine swarm ARGS`, which must succeed: its stderr.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.berth(args);
        let stderr = text(&out.stderr);
        assert!(
            out.status.success(),
            "berth {args:?}: {:?}\n{stderr}",
            out.status
        );
        stderr
    }

    /// What carries the project's name on the cluster: services, networks,
    /// secrets and configs on the manager, containers on every node.
    fn leftovers(&self) -> Vec<String> {
        let label = format!("label=com.docker.stack.namespace={}", self.name);
        let named = format!("name={}_", self.name);
        let mut out = Vec::new();
        for kind in ["service", "network", "secret", "config"] {
            for filter in [&label, &named] {
                for line in docker(1, &[kind, "ls", "-q", "--filter", filter]).lines() {
                    out.push(format!("{kind} {line}"));
                }
            }
        }
        for n in 1..=3 {
            for line in docker(n, &["ps", "-aq", "--filter", &label]).lines() {
                out.push(format!("container {line} on node{n}"));
            }
        }
        out
    }
}

impl Drop for Seed {
    /// A failed assertion still takes the project off the cluster.
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = self.berth(&["down"]);
        }
    }
}

fn copy_seed(to: &Path, port: u16) {
    std::fs::create_dir_all(to).unwrap();
    for f in [
        "docker-compose.yml",
        "Dockerfile",
        ".dockerignore",
        "index.js",
        "package.json",
    ] {
        std::fs::copy(repo().join("examples/seed").join(f), to.join(f)).unwrap();
    }
    let file = to.join("docker-compose.yml");
    let compose = std::fs::read_to_string(&file).unwrap();
    assert!(compose.contains("\"8080:3000\""), "{compose}");
    std::fs::write(
        &file,
        compose.replace("\"8080:3000\"", &format!("\"{port}:3000\"")),
    )
    .unwrap();
}

/// The seed on three nodes: deployed with `--scale app=3`, one task on
/// each node and every node's published port answering; the runtime tag
/// bumped and the code changed (`up -d --build`), each under a client
/// polling node 1 every 20 ms with no failed request and the new answer
/// served; `down` leaves nothing on any node.
#[test]
fn the_seed_on_three_nodes_swaps_runtime_and_code_without_a_failed_request() {
    let _cluster = ClusterLease::take();
    let tmp = tempfile::tempdir().unwrap();
    let registry = Registry::seed(tmp.path(), "4.2.2 4.2.3", false);
    let name = format!("swcli{}", std::process::id());
    // The proxy holds the port in each node's own network namespace.
    let port = 40000 + (std::process::id() % 20000) as u16;
    let dir = tmp.path().join(&name);
    copy_seed(&dir, port);
    std::fs::write(tmp.path().join("none.toml"), "").unwrap();
    let seed = Seed {
        env: vec![
            ("DOCKER_HOST", MANAGER.to_string()),
            ("BERTH_SWARM_REGISTRY", REGISTRY.to_string()),
            (
                "BERTH_STATE_DIR",
                tmp.path().join("state").display().to_string(),
            ),
            (
                "BERTH_CONFIG",
                tmp.path().join("none.toml").display().to_string(),
            ),
            ("BERTH_REGISTRY_MIRRORS", registry.mirrors()),
        ],
        dir,
        name: name.clone(),
    };

    let up = seed.ok(&["up", "-d", "--scale", "app=3"]);
    assert!(
        up.contains(&format!("Service {name}_app Converged (3 running)")),
        "{up}"
    );
    let v422 = "I am running nodejs version: 4.2.2";
    wait_all_nodes(port, v422);
    let ps = seed.berth(&["ps", "--format", "json"]);
    assert!(ps.status.success(), "{}", text(&ps.stderr));
    let ps: serde_json::Value = serde_json::from_slice(&ps.stdout).unwrap();
    let app: Vec<&serde_json::Value> = ps
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["Service"] == "app" && t["State"] == "running")
        .collect();
    assert_eq!(app.len(), 3, "{ps:#}");
    // Tasks are named `app.N@node`.
    let nodes: BTreeSet<&str> = app
        .iter()
        .filter_map(|t| t["Name"].as_str()?.split_once('@').map(|(_, n)| n))
        .collect();
    assert_eq!(nodes.len(), 3, "three tasks on three nodes: {ps:#}");

    // The runtime bump: a new tag, the code as it was.
    let file = seed.dir.join("docker-compose.yml");
    let compose = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        compose.replace("alpine-nodejs:4.2.2", "alpine-nodejs:4.2.3"),
    )
    .unwrap();
    let v423 = "I am running nodejs version: 4.2.3";
    let poller = Poller::start(port);
    let t0 = poller.now();
    let up = seed.ok(&["up", "-d", "--scale", "app=3"]);
    let t1 = poller.now();
    wait_all_nodes(port, v423);
    let polled = poller.finish();
    eprintln!("runtime bump: up from {t0} to {t1} ms: {polled:?}\n{up}");
    assert_eq!(
        polled.failed, 0,
        "requests failed during the runtime bump: {polled:?}\n{up}"
    );
    assert_eq!(
        polled.seen.last().map(String::as_str),
        Some(v423),
        "{polled:?}"
    );

    // A code change: index.js edited, `up -d --build`.
    let index = seed.dir.join("index.js");
    let code = std::fs::read_to_string(&index).unwrap();
    let changed = code.replace(
        "'I am running nodejs version: '",
        "'I am the new code on nodejs '",
    );
    assert_ne!(code, changed);
    std::fs::write(&index, changed).unwrap();
    let new_code = "I am the new code on nodejs 4.2.3";
    let poller = Poller::start(port);
    let t0 = poller.now();
    let up = seed.ok(&["up", "-d", "--build", "--scale", "app=3"]);
    let t1 = poller.now();
    wait_all_nodes(port, new_code);
    let polled = poller.finish();
    eprintln!("code change: up from {t0} to {t1} ms: {polled:?}\n{up}");
    assert_eq!(
        polled.failed, 0,
        "requests failed during the code change: {polled:?}\n{up}"
    );
    assert_eq!(
        polled.seen.last().map(String::as_str),
        Some(new_code),
        "{polled:?}"
    );

    seed.ok(&["down"]);
    let deadline = Instant::now() + Duration::from_secs(90);
    while !seed.leftovers().is_empty() {
        assert!(
            Instant::now() < deadline,
            "left on the cluster after down: {:?}",
            seed.leftovers()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(get(&node_addr(1), port).is_none(), "the port still answers");
    let ps = seed.berth(&["ps", "-q"]);
    assert!(text(&ps.stdout).trim().is_empty(), "{}", text(&ps.stdout));
    drop(registry);
}
