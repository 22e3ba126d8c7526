use crate::common::*;
use berth_engine::{Action, Backend, Strategy};
use berth_engine_docker::KeeperLaunch;
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn web_image(
    b: &berth_engine_docker::DockerBackend,
    store: &berth_oci::Store,
    tag: &str,
    text: &str,
) -> String {
    // A tag per test: tests run in parallel against one daemon.
    let reference = format!("berth-test/web:{tag}");
    make_image(
        store,
        &reference,
        &[("www/index.html", text.as_bytes())],
        json!({"Env": ["PATH=/bin"]}),
    );
    b.import_image(store, &reference, &|_| {}).unwrap();
    reference
}

/// Polls 127.0.0.1:`port` every 20 ms until stopped: the request count and
/// each distinct answer in order (a failure as `FAILED: …`).
struct Poller {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<(usize, Vec<String>)>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Poller {
    fn start(port: u16) -> Poller {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new((0usize, Vec::<String>::new())));
        let thread = {
            let (stop, seen) = (stop.clone(), seen.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let r = http_get(port, "/index.html");
                    let mut s = seen.lock().unwrap();
                    s.0 += 1;
                    match r {
                        Some((200, body)) => {
                            if s.1.last() != Some(&body) {
                                s.1.push(body);
                            }
                        }
                        other => s.1.push(format!("FAILED: {other:?}")),
                    }
                    drop(s);
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        std::thread::sleep(Duration::from_millis(200));
        Poller {
            stop,
            seen,
            thread: Some(thread),
        }
    }

    /// Wait for `want`, poll a little longer, stop: (requests, answers).
    fn finish(mut self, want: &str) -> (usize, Vec<String>) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.seen.lock().unwrap().1.iter().any(|b| b.contains(want)) {
            assert!(
                Instant::now() < deadline,
                "{want:?} never came: {:?}",
                self.seen.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(200));
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A new runtime image for a service with published ports: the new
/// container starts beside the old one, berth's keeper switches the port
/// once it answers, the old one drains and goes. A client polling every
/// 20 ms sees no failed request, then the new content.
#[test]
fn a_runtime_swap_under_a_20ms_poller_fails_no_request() {
    let b = backend().with_port_keeper(KeeperLaunch::Thread);
    let store_dir = tempfile::tempdir().unwrap();
    let store = berth_oci::Store::open(store_dir.path()).unwrap();
    let image = web_image(&b, &store, "swap", "runtime one");
    let port = free_port();
    let p = Project::new(
        "bdk-swap",
        &format!(
            r#"services:
  web:
    image: {image}
    ports:
      - "127.0.0.1:{port}:3000"
    command: ["httpd", "-f", "-p", "3000", "-h", "/www"]
    stop_grace_period: 1s
"#
        ),
    );
    p.up(&b).unwrap();
    wait_for_body(port, "/index.html", "runtime one");
    let web = b.observe(&p.name).unwrap().unwrap().containers[0].clone();
    assert_eq!(web.ports, [format!("127.0.0.1:{port}->3000/tcp")]);

    web_image(&b, &store, "swap", "runtime two");
    let plan = p.plan(&b);
    let step = &plan.steps[0];
    assert!(
        matches!(
            step.action,
            Action::Recreate {
                strategy: Strategy::StartFirst,
                ..
            }
        ),
        "{plan:#?}"
    );

    let poller = Poller::start(port);
    p.up(&b).unwrap();
    let (requests, bodies) = poller.finish("runtime two");
    let failed: Vec<&String> = bodies.iter().filter(|b| b.starts_with("FAILED")).collect();
    assert!(failed.is_empty(), "{failed:?} of {requests} requests");
    assert_eq!(
        bodies,
        ["runtime one", "runtime two"],
        "{requests} requests"
    );
    assert!(p.plan(&b).is_noop());

    assert!(p.down(&b));
    assert_eq!(p.leftovers(), Vec::<String>::new());
    // The keeper let the port go.
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "port {port} still held after down"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// New code (`up --build` leaves a new code image) for the seed's shape:
/// the code container gets a fresh volume, its `volumes_from` consumer is
/// swapped start-first, and the poller sees no failure, then the new code.
#[test]
fn a_code_change_under_a_20ms_poller_fails_no_request() {
    let b = backend().with_port_keeper(KeeperLaunch::Thread);
    let store_dir = tempfile::tempdir().unwrap();
    let store = berth_oci::Store::open(store_dir.path()).unwrap();
    let images = images(&b, &store, "swapcode", "code one");
    let port = free_port();
    let p = Project::new(
        "bdk-swapcode",
        &format!(
            r#"code:
  build: .
  image: {code}
app:
  image: {app}
  volumes_from:
    - code
  ports:
    - "127.0.0.1:{port}:3000"
  working_dir: /app
  command: httpd -f -p 3000 -h /app
  stop_grace_period: 1s
"#,
            code = images["code"],
            app = images["box"],
        ),
    );
    p.up(&b).unwrap();
    wait_for_body(port, "/index.html", "code one");
    let old_volume = code_volume(&p.name);
    images_code(&b, &store, "swapcode", "code two");
    let plan = p.plan(&b);
    let app = plan.steps.iter().find(|s| s.service == "app").unwrap();
    assert!(
        matches!(
            app.action,
            Action::Recreate {
                strategy: Strategy::StartFirst,
                ..
            }
        ),
        "{plan:#?}"
    );
    let poller = Poller::start(port);
    p.up(&b).unwrap();
    let (requests, bodies) = poller.finish("code two");
    let failed: Vec<&String> = bodies.iter().filter(|b| b.starts_with("FAILED")).collect();
    assert!(failed.is_empty(), "{failed:?} of {requests} requests");
    assert_eq!(bodies, ["code one", "code two"], "{requests} requests");
    // The old app held the old code volume until it was drained and gone
    // (the keeper retires it after `up` returned); then the volume went too.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while volume_exists(&old_volume) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(!volume_exists(&old_volume), "{old_volume} is still there");
    assert!(p.down(&b));
    assert_eq!(p.leftovers(), Vec::<String>::new());
}

/// The keeper as a detached process (what `berth up -d` leaves behind):
/// it outlives the backend that started it, a later `up` reaches it to
/// swap, and `down` stops it and frees the port.
#[test]
fn a_detached_keeper_outlives_its_command_and_goes_with_down() {
    let launch = KeeperLaunch::Exec {
        program: env!("CARGO_BIN_EXE_berth-docker-ports").into(),
        args: Vec::new(),
    };
    let store_dir = tempfile::tempdir().unwrap();
    let store = berth_oci::Store::open(store_dir.path()).unwrap();
    let port = free_port();
    let p = {
        let b = backend().with_port_keeper(launch.clone());
        let image = web_image(&b, &store, "detached", "detached one");
        let p = Project::new(
            "bdk-detached",
            &format!(
                "services:\n  web:\n    image: {image}\n    ports: [\"127.0.0.1:{port}:3000\"]\n    command: [\"httpd\", \"-f\", \"-p\", \"3000\", \"-h\", \"/www\"]\n    stop_grace_period: 1s\n"
            ),
        );
        p.up(&b).unwrap();
        p
    };
    // The command that started it is gone; the port still answers.
    wait_for_body(port, "/index.html", "detached one");
    let b = backend().with_port_keeper(launch);
    // A reboot takes the keeper away while Docker brings the container
    // back: the next `up`, with nothing to change, publishes it again.
    {
        use std::io::{BufRead, Write};
        let s =
            std::os::unix::net::UnixStream::connect(berth_engine_docker::keeper_socket(&p.name))
                .unwrap();
        writeln!(&s, r#"{{"op":"stop"}}"#).unwrap();
        let mut line = String::new();
        std::io::BufReader::new(&s).read_line(&mut line).unwrap();
    }
    assert_eq!(http_get(port, "/index.html"), None);
    assert!(p.plan(&b).is_noop());
    p.up(&b).unwrap();
    wait_for_body(port, "/index.html", "detached one");

    web_image(&b, &store, "detached", "detached two");
    let poller = Poller::start(port);
    p.up(&b).unwrap();
    let (requests, bodies) = poller.finish("detached two");
    assert_eq!(
        bodies,
        ["detached one", "detached two"],
        "{requests} requests"
    );
    assert!(p.down(&b));
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "port {port} still held after down"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!berth_engine_docker::keeper_socket(&p.name).exists());
}
