//! The swarm backend on a real three-node Docker Swarm built on this
//! machine by `scripts/swarm-cluster.sh` (three dockerds in their own
//! network namespaces, a registry on the test bridge). Traffic goes only to
//! addresses on that bridge.

mod cluster;
mod mapping;
mod ops;

use berth_engine::backend::{DownOptions, LoadRequest, PlanFlags, UpRequest};
use berth_engine::{Action, Backend};
use berth_engine_swarm::SwarmBackend;
use berth_oci::{media, Descriptor, Store};
use cluster::{docker, node_addr, Cluster, REGISTRY};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// berth's store for this test process (the backend reads `BERTH_STATE_DIR`).
fn store() -> Store {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let d = tempfile::tempdir().unwrap().keep();
        std::env::set_var("BERTH_STATE_DIR", &d);
        d
    });
    Store::open(dir.join("images")).unwrap()
}

/// A layer of `files` (path, mode, content), plus busybox when `busybox`.
fn layer(busybox: bool, files: &[(&str, u32, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let dir = |b: &mut tar::Builder<Vec<u8>>, p: &str| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        h.set_mtime(0);
        b.append_data(&mut h, p, std::io::empty()).unwrap();
    };
    if busybox {
        for d in ["bin", "tmp", "runtime"] {
            dir(&mut b, d);
        }
        let bin = std::fs::read("/bin/busybox").expect("busybox-static installs /bin/busybox");
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o755);
        h.set_size(bin.len() as u64);
        h.set_mtime(0);
        b.append_data(&mut h, "bin/busybox", &bin[..]).unwrap();
        for applet in ["sh", "httpd", "cat", "echo", "sleep", "wget", "true"] {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            h.set_mode(0o777);
            h.set_mtime(0);
            b.append_link(&mut h, format!("bin/{applet}"), "busybox")
                .unwrap();
        }
    } else {
        dir(&mut b, "app");
        dir(&mut b, "app/cgi-bin");
    }
    for (path, mode, content) in files {
        let mut h = tar::Header::new_gnu();
        h.set_mode(*mode);
        h.set_size(content.len() as u64);
        h.set_mtime(0);
        b.append_data(&mut h, path, *content).unwrap();
    }
    b.into_inner().unwrap()
}

/// An image in berth's store, as the builder or a pull leaves one.
fn make_image(store: &Store, reference: &str, tar: &[u8], config: Value) -> Descriptor {
    let digest = store.write_blob(tar).unwrap();
    let cfg = json!({
        "architecture": "amd64", "os": "linux", "config": config,
        "rootfs": {"type": "layers", "diff_ids": [digest.to_string()]},
    });
    let c = store.put_json(media::OCI_CONFIG, &cfg).unwrap();
    let m = json!({
        "schemaVersion": 2, "mediaType": media::OCI_MANIFEST,
        "config": {"mediaType": media::OCI_CONFIG, "digest": c.digest.to_string(), "size": c.size},
        "layers": [{"mediaType": media::OCI_LAYER, "digest": digest.to_string(), "size": tar.len()}],
    });
    let desc = store.put_json(media::OCI_MANIFEST, &m).unwrap();
    store.tag(reference, &desc).unwrap();
    desc
}

/// The seed's runtime image: busybox (its httpd runs CGI) and a version file.
fn runtime_image(store: &Store, version: &str) -> String {
    let reference = format!("berth-test/swarm-runtime:{version}");
    make_image(
        store,
        &reference,
        &layer(true, &[("runtime/version", 0o644, version.as_bytes())]),
        json!({"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"]}),
    );
    reference
}

/// The seed's code image: only /app (FROM scratch, ADD . /app, VOLUME /app).
fn code_image(store: &Store, reference: &str, text: &str) {
    let cgi = b"#!/bin/sh\necho 'Content-Type: text/plain'\necho\necho \"I am running version $(cat /runtime/version) with $(cat /app/code.txt)\"\n";
    make_image(
        store,
        reference,
        &layer(
            false,
            &[
                ("app/code.txt", 0o644, text.as_bytes()),
                ("app/cgi-bin/v", 0o755, cgi),
            ],
        ),
        json!({"Volumes": {"/app": {}}}),
    );
}

struct Project {
    name: String,
    dir: PathBuf,
    _root: tempfile::TempDir,
}

impl Project {
    fn new(name: &str, compose: &str) -> Project {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("docker-compose.yml"), compose).unwrap();
        Project {
            name: name.into(),
            dir,
            _root: root,
        }
    }

    fn load(&self) -> (LoadRequest, berth_compose::Loaded) {
        let options = berth_compose::Options {
            cwd: self.dir.clone(),
            ..Default::default()
        };
        let loaded = berth_compose::load(&options).expect("loads");
        (LoadRequest::from(&options), loaded)
    }

    /// `up`, returning its progress lines.
    fn up(&self, b: &SwarmBackend) -> Vec<String> {
        let (load, loaded) = self.load();
        let (images, runtimes, flags) = (BTreeMap::new(), BTreeMap::new(), PlanFlags::default());
        let req = UpRequest {
            load: &load,
            loaded: &loaded,
            images: &images,
            runtimes: &runtimes,
            flags: &flags,
        };
        let lines = Mutex::new(Vec::new());
        b.up(&req, &|l| {
            eprintln!("{l}");
            lines.lock().unwrap().push(l.to_string());
        })
        .expect("up");
        lines.into_inner().unwrap()
    }

    fn plan(&self, b: &SwarmBackend) -> berth_engine::Plan {
        let (load, loaded) = self.load();
        let (images, runtimes, flags) = (BTreeMap::new(), BTreeMap::new(), PlanFlags::default());
        b.plan(&UpRequest {
            load: &load,
            loaded: &loaded,
            images: &images,
            runtimes: &runtimes,
            flags: &flags,
        })
        .expect("plan")
    }

    fn down(&self, b: &SwarmBackend) -> bool {
        let (_, loaded) = self.load();
        b.down(&loaded.project, &DownOptions::default(), &|l| {
            eprintln!("{l}")
        })
        .expect("down")
    }

    /// `down`, then until it has left nothing of the project on any node.
    fn down_and_gone(&self, b: &SwarmBackend) {
        assert!(self.down(b));
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.leftovers().is_empty() {
            assert!(
                Instant::now() < deadline,
                "left after down: {:?}",
                self.leftovers()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// What carries the project's label on any node: services and networks
    /// on the manager, containers on every node.
    fn leftovers(&self) -> Vec<String> {
        let filter = format!("label=com.docker.stack.namespace={}", self.name);
        let mut out = Vec::new();
        for line in docker(1, &["service", "ls", "-q", "--filter", &filter]).lines() {
            out.push(format!("service {line}"));
        }
        for line in docker(1, &["network", "ls", "-q", "--filter", &filter]).lines() {
            out.push(format!("network {line}"));
        }
        for n in 1..=3 {
            for line in docker(n, &["ps", "-aq", "--filter", &filter]).lines() {
                out.push(format!("container {line} on node{n}"));
            }
        }
        out
    }
}

/// One GET to a node's published port: the body of a 200, else None.
fn get(addr: &str, port: u16) -> Option<String> {
    let mut s = TcpStream::connect_timeout(
        &format!("{addr}:{port}").parse().ok()?,
        Duration::from_secs(2),
    )
    .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET /cgi-bin/v HTTP/1.0\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    // busybox's CGI headers end in bare newlines.
    let buf = buf.replace("\r\n", "\n");
    (buf.split_whitespace().nth(1)? == "200")
        .then(|| buf.split_once("\n\n").map(|(_, b)| b.trim().to_string()))
        .flatten()
}

/// Until every node serves `want` on `port`.
fn wait_all_nodes(port: u16, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    for n in 1..=3 {
        let addr = node_addr(n);
        while get(&addr, port).as_deref() != Some(want) {
            assert!(
                Instant::now() < deadline,
                "node{n} never served {want:?}: {:?}",
                get(&addr, port)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// The layer digests of what service `svc` of `project` runs, read from the
/// cluster's registry (on the test bridge).
fn deployed_layers(project: &str, svc: &str) -> Vec<String> {
    let image = docker(
        1,
        &[
            "service",
            "inspect",
            "-f",
            "{{.Spec.TaskTemplate.ContainerSpec.Image}}",
            &format!("{project}_{svc}"),
        ],
    );
    let image = image.trim();
    let (repo, digest) = image
        .strip_prefix(&format!("{REGISTRY}/"))
        .and_then(|r| r.split_once('@'))
        .unwrap_or_else(|| panic!("not from the cluster registry: {image}"));
    let mut s = TcpStream::connect(REGISTRY).unwrap();
    write!(
        s,
        "GET /v2/{repo}/manifests/{digest} HTTP/1.0\r\nAccept: {}\r\n\r\n",
        media::OCI_MANIFEST
    )
    .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    let body = buf.split_once("\r\n\r\n").unwrap().1;
    let m: Value = serde_json::from_str(body).unwrap();
    m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect()
}

/// The app's image pushes `up` reported (berth's proxy image aside).
fn uploaded(lines: &[String]) -> Vec<&String> {
    lines
        .iter()
        .filter(|l| l.starts_with("Image ") && !l.contains("/berth/proxy@"))
        .collect()
}

/// A client polling node1's published port every 20 ms (at most 10 000
/// requests) until stopped: the bodies it saw, in order without repeats,
/// and how many requests failed.
struct Poller {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<(Vec<String>, usize, usize)>,
}

impl Poller {
    fn start(port: u16) -> Poller {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let (mut seen, mut failed, mut n) = (Vec::<String>::new(), 0, 0);
            let addr = node_addr(1);
            while !flag.load(Ordering::Relaxed) && n < 10_000 {
                match get(&addr, port) {
                    Some(body) => {
                        if seen.last() != Some(&body) {
                            seen.push(body);
                        }
                    }
                    None => failed += 1,
                }
                n += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            (seen, failed, n)
        });
        Poller { stop, thread }
    }

    fn finish(self) -> (Vec<String>, usize, usize) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

/// The seed on three nodes: the code service's layers ride in the app's
/// image (no volumes_from in swarm); a runtime bump ships a new runtime
/// layer and a new manifest with the code layer unchanged; a code change
/// ships only the code layer; both roll start-first behind berth's proxy
/// under a client polling every 20 ms with no failed request; `down` leaves
/// nothing on any node.
#[test]
fn the_seed_runs_over_three_nodes_and_swaps_runtime_and_code() {
    let cluster = Cluster::get();
    let b = cluster.backend();
    let store = store();
    let name = format!("swseed{}", std::process::id());
    let port = 20000 + (std::process::id() % 10000) as u16;
    let compose = |runtime: &str, code: &str| {
        format!(
            "services:\n  code:\n    image: {code}\n  app:\n    image: {runtime}\n    volumes_from: [code]\n    ports: [\"{port}:3000\"]\n    working_dir: /app\n    command: [httpd, -f, -p, \"3000\", -h, /app]\n    stop_grace_period: 1s\n    deploy:\n      replicas: 3\n"
        )
    };
    let rt1 = runtime_image(&store, "4.2.2");
    let code1 = format!("berth-test/swarm-code:{name}-1");
    code_image(&store, &code1, "code one");
    let p = Project::new(&name, &compose(&rt1, &code1));
    let plan = p.plan(&b);
    assert!(
        matches!(plan.steps[0].action, Action::Nothing { container: None }),
        "{plan}"
    );
    assert!(
        plan.steps[0].reason.contains("ride in the image of app"),
        "{plan}"
    );
    assert!(
        matches!(plan.steps[1].action, Action::Create { number: 3, .. }),
        "{plan}"
    );

    let lines = p.up(&b);
    assert_eq!(uploaded(&lines).len(), 1, "{lines:?}");
    wait_all_nodes(port, "I am running version 4.2.2 with code one");
    // One task per node, and docker's own tools see the stack.
    let nodes: BTreeSet<String> = docker(
        1,
        &[
            "stack",
            "ps",
            &name,
            "--format",
            "{{.Node}}",
            "--filter",
            "desired-state=running",
        ],
    )
    .lines()
    .map(str::to_string)
    .collect();
    assert_eq!(nodes.len(), 3, "{nodes:?}");
    assert!(docker(1, &["stack", "ls"]).contains(&name));
    assert!(docker(1, &["stack", "services", &name]).contains(&format!("{name}_app")));
    let first = deployed_layers(&name, "app");
    assert_eq!(first.len(), 3, "runtime, code, readiness probe: {first:?}");
    assert!(p
        .plan(&b)
        .steps
        .iter()
        .all(|s| matches!(s.action, Action::Nothing { .. })));

    // Runtime bump: a new runtime layer, the code layer as it was.
    let rt2 = runtime_image(&store, "4.2.3");
    std::fs::write(p.dir.join("docker-compose.yml"), compose(&rt2, &code1)).unwrap();
    let plan = p.plan(&b);
    assert!(plan.steps[1].reason.contains("image changed"), "{plan}");
    let poller = Poller::start(port);
    let lines = p.up(&b);
    assert!(
        uploaded(&lines)[0].contains("(2 blobs uploaded"),
        "{lines:?}"
    );
    wait_all_nodes(port, "I am running version 4.2.3 with code one");
    let (seen, failed, n) = poller.finish();
    eprintln!("poller: {n} requests, {failed} failed, saw {seen:?}");
    assert_eq!(
        failed, 0,
        "{failed} of {n} requests failed during the runtime swap"
    );
    assert_eq!(
        seen.last().map(String::as_str),
        Some("I am running version 4.2.3 with code one"),
        "{seen:?}"
    );
    let second = deployed_layers(&name, "app");
    assert_ne!(second[0], first[0]);
    assert_eq!(second[1], first[1], "the code layer is shipped unchanged");

    // Code change: only the code layer (and a config) goes over the wire.
    let code2 = format!("berth-test/swarm-code:{name}-2");
    code_image(&store, &code2, "code two");
    std::fs::write(p.dir.join("docker-compose.yml"), compose(&rt2, &code2)).unwrap();
    let plan = p.plan(&b);
    assert!(
        plan.steps[1].reason.contains("code image of code changed"),
        "{plan}"
    );
    let poller = Poller::start(port);
    let lines = p.up(&b);
    assert!(
        uploaded(&lines)[0].contains("(2 blobs uploaded"),
        "{lines:?}"
    );
    wait_all_nodes(port, "I am running version 4.2.3 with code two");
    let (seen, failed, n) = poller.finish();
    eprintln!("poller: {n} requests, {failed} failed, saw {seen:?}");
    assert_eq!(
        failed, 0,
        "{failed} of {n} requests failed during the code change"
    );
    assert_eq!(
        seen.last().map(String::as_str),
        Some("I am running version 4.2.3 with code two"),
        "{seen:?}"
    );
    let third = deployed_layers(&name, "app");
    assert_eq!(
        third[0], second[0],
        "the runtime layer is not shipped again"
    );
    assert_ne!(third[1], second[1]);

    // ps names each task by slot and node.
    let status = b.observe(&name).unwrap().expect("running");
    let running: Vec<&str> = status
        .containers
        .iter()
        .filter(|c| c.service == "app")
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(running.len(), 3, "{running:?}");
    // berth's proxy runs one task on each node.
    let proxies: Vec<_> = status
        .containers
        .iter()
        .filter(|c| c.service == "berth-proxy")
        .collect();
    assert_eq!(proxies.len(), 3);
    // Each publishes the port once, on its node's address (docker binds
    // 0.0.0.0 and :: and swarm reports both).
    for c in &proxies {
        let addr = c.ip.clone().unwrap_or_default();
        assert_eq!(
            c.ports,
            [format!("{addr}:{port}->{port}/tcp")],
            "{}",
            c.name
        );
    }
    assert!(
        running
            .iter()
            .all(|n| n.starts_with("app.") && n.contains("@berth-swarm-")),
        "{running:?}"
    );

    p.down_and_gone(&b);
    assert!(b.observe(&name).unwrap().is_none());
}

/// Keys swarm cannot honour stop `up` before anything is made, naming the key.
#[test]
fn a_key_swarm_cannot_honour_is_refused_before_anything_is_made() {
    let cluster = Cluster::get();
    let b = cluster.backend();
    let name = format!("swrefuse{}", std::process::id());
    let p = Project::new(
        &name,
        "services:\n  a:\n    image: x\n    privileged: true\n",
    );
    let (load, loaded) = p.load();
    let (images, runtimes, flags) = (BTreeMap::new(), BTreeMap::new(), PlanFlags::default());
    let req = UpRequest {
        load: &load,
        loaded: &loaded,
        images: &images,
        runtimes: &runtimes,
        flags: &flags,
    };
    let err = b.up(&req, &|_| {}).unwrap_err();
    assert_eq!(
        err.message,
        "services.a.privileged: the swarm engine does not support privileged"
    );
    assert!(p.leftovers().is_empty());
}

/// A worker's daemon stops: swarm reschedules its task on the other nodes
/// and berth's proxy on the manager keeps answering; the failed requests
/// a 20 ms client saw are reported.
#[test]
fn a_lost_worker_s_tasks_are_rescheduled_and_the_proxy_keeps_serving() {
    let cluster = Cluster::get();
    let b = cluster.backend();
    let store = store();
    let name = format!("swloss{}", std::process::id());
    let port = 30000 + (std::process::id() % 10000) as u16;
    let rt = runtime_image(&store, "4.2.2");
    let code = format!("berth-test/swarm-code:{name}");
    code_image(&store, &code, "code one");
    let p = Project::new(
        &name,
        &format!(
            "services:\n  code:\n    image: {code}\n  app:\n    image: {rt}\n    volumes_from: [code]\n    ports: [\"{port}:3000\"]\n    command: [httpd, -f, -p, \"3000\", -h, /app]\n    stop_grace_period: 1s\n    deploy:\n      replicas: 3\n"
        ),
    );
    p.up(&b);
    let want = "I am running version 4.2.2 with code one";
    wait_all_nodes(port, want);
    let on_node3 = || {
        docker(
            1,
            &[
                "service",
                "ps",
                &format!("{name}_app"),
                "--filter",
                "desired-state=running",
                "--format",
                "{{.Node}} {{.CurrentState}}",
            ],
        )
        .lines()
        .filter(|l| l.starts_with("berth-swarm-3 ") && l.contains("Running"))
        .count()
    };
    assert_eq!(
        on_node3(),
        1,
        "the scheduler spreads three replicas over three nodes"
    );

    let poller = Poller::start(port);
    cluster::cluster_script(&["stop-node", "3"]);
    // Swarm notices the node is gone, then starts its task elsewhere.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let running = docker(
            1,
            &[
                "service",
                "ps",
                &format!("{name}_app"),
                "--filter",
                "desired-state=running",
                "--format",
                "{{.Node}} {{.CurrentState}}",
            ],
        );
        let elsewhere = running
            .lines()
            .filter(|l| !l.starts_with("berth-swarm-3 ") && l.contains("Running"))
            .count();
        if elsewhere == 3 {
            break;
        }
        assert!(Instant::now() < deadline, "not rescheduled: {running}");
        std::thread::sleep(Duration::from_millis(500));
    }
    // A few more seconds of traffic on the two remaining nodes' tasks.
    std::thread::sleep(Duration::from_secs(3));
    let (seen, failed, n) = poller.finish();
    eprintln!("node loss: {n} requests, {failed} failed, saw {seen:?}");
    assert_eq!(seen.last().map(String::as_str), Some(want));
    assert_eq!(get(&node_addr(1), port).as_deref(), Some(want));
    cluster::cluster_script(&["start-node", "3"]);
    p.down_and_gone(&b);
}

/// No healthcheck in the file or the image: berth's TCP readiness probe
/// gates the roll. An update whose new tasks never open their port (a
/// `healthcheck:` with timings only tunes the probe) is rolled back by
/// swarm, `up` says so, and the old tasks answer throughout: a 20 ms client
/// sees no failed request. Without the probe swarm would count the new
/// tasks running at once and retire the old ones.
#[test]
fn an_update_that_never_opens_its_port_is_rolled_back_while_the_old_tasks_serve() {
    let cluster = Cluster::get();
    let b = cluster.backend();
    let store = store();
    let name = format!("swprobe{}", std::process::id());
    let port = 40000 + (std::process::id() % 10000) as u16;
    let rt = runtime_image(&store, "4.2.2");
    let code = format!("berth-test/swarm-code:{name}");
    code_image(&store, &code, "code one");
    let compose = |command: &str| {
        format!(
            "services:\n  code:\n    image: {code}\n  app:\n    image: {rt}\n    volumes_from: [code]\n    ports: [\"{port}:3000\"]\n    command: {command}\n    stop_grace_period: 1s\n    healthcheck:\n      start_period: 3s\n      interval: 1s\n      retries: 2\n    deploy:\n      replicas: 2\n      update_config: {{monitor: 2s}}\n"
        )
    };
    let p = Project::new(&name, &compose("[httpd, -f, -p, \"3000\", -h, /app]"));
    let plan = p.plan(&b);
    assert!(
        plan.warnings.iter().any(|w| w.starts_with(
            "services.app: no healthcheck: berth adds a TCP readiness probe on port 3000"
        )),
        "{plan}"
    );
    p.up(&b);
    let want = "I am running version 4.2.2 with code one";
    wait_all_nodes(port, want);
    let check = docker(
        1,
        &[
            "service",
            "inspect",
            "-f",
            "{{json .Spec.TaskTemplate.ContainerSpec.Healthcheck}}",
            &format!("{name}_app"),
        ],
    );
    let check: Value = serde_json::from_str(check.trim()).unwrap();
    assert_eq!(
        check["Test"],
        json!(["CMD", "/.berth/tcp-ready"]),
        "{check}"
    );
    assert_eq!(check["StartPeriod"], json!(3_000_000_000i64), "{check}");

    std::fs::write(
        p.dir.join("docker-compose.yml"),
        compose("[sleep, \"3600\"]"),
    )
    .unwrap();
    let poller = Poller::start(port);
    let (load, loaded) = p.load();
    let (images, runtimes, flags) = (BTreeMap::new(), BTreeMap::new(), PlanFlags::default());
    let req = UpRequest {
        load: &load,
        loaded: &loaded,
        images: &images,
        runtimes: &runtimes,
        flags: &flags,
    };
    let err = b
        .up(&req, &|l| eprintln!("{l}"))
        .expect_err("an update that never gets ready fails");
    assert!(
        err.message.contains(&format!(
            "service {name}_app: the update failed and swarm rolled it back"
        )),
        "{}",
        err.message
    );
    // The rollback finishes; the old tasks answered all along.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let state = docker(
            1,
            &[
                "service",
                "inspect",
                "-f",
                "{{.UpdateStatus.State}}",
                &format!("{name}_app"),
            ],
        );
        if state.trim() == "rollback_completed" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "rollback did not complete: {state}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    std::thread::sleep(Duration::from_secs(1));
    let (seen, failed, n) = poller.finish();
    eprintln!("failed update: {n} requests, {failed} failed, saw {seen:?}");
    assert_eq!(failed, 0, "{failed} of {n} requests failed");
    assert_eq!(seen, vec![want.to_string()]);
    p.down_and_gone(&b);
}
