//! `up` that converges (issue 6), end to end on the seed: a runtime swap
//! 4.2.2 → 4.2.3 and a code change with `up --build` reach a client that
//! polls every 20 ms with zero failed requests, and a new container that
//! never gets ready leaves the old one serving and fails `up`.

use crate::common::{repo, text};
use crate::up::{free_port, http_get, DownOnDrop, Registry};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Polls `GET /` every 20 ms until stopped; counts what failed.
struct Poller {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<Result<String, String>>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Poller {
    fn start(port: u16) -> Poller {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (s, r) = (stop.clone(), seen.clone());
        let thread = std::thread::spawn(move || {
            // Bounded: at most 10 minutes of requests.
            let deadline = Instant::now() + Duration::from_secs(600);
            while !s.load(Ordering::SeqCst) && Instant::now() < deadline {
                let answer = match http_get(port) {
                    Some(b) if b.starts_with("HTTP/1.1 200") => {
                        Ok(b.lines().last().unwrap_or("").to_string())
                    }
                    Some(b) => Err(format!("bad answer: {b:?}")),
                    None => Err("no answer".to_string()),
                };
                r.lock().unwrap().push(answer);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Poller {
            stop,
            seen,
            thread: Some(thread),
        }
    }

    /// Until `n` more requests than now have been answered or failed, so
    /// the swap is seen under traffic from before to after.
    fn wait_more(&self, n: usize) {
        let from = self.seen.lock().unwrap().len();
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.seen.lock().unwrap().len() < from + n {
            assert!(Instant::now() < deadline, "the poller stalled");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stop; (requests, failures, last body).
    fn finish(mut self) -> (usize, Vec<String>, String) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        let seen = self.seen.lock().unwrap();
        let failures = seen.iter().filter_map(|r| r.clone().err()).collect();
        let last = seen
            .iter()
            .rev()
            .find_map(|r| r.clone().ok())
            .unwrap_or_default();
        (seen.len(), failures, last)
    }
}

struct Seed {
    dir: PathBuf,
    state: PathBuf,
    mirrors: String,
    config: PathBuf,
}

impl Seed {
    fn berth(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(args)
            .current_dir(&self.dir)
            .env("BERTH_STATE_DIR", &self.state)
            .env("BERTH_REGISTRY_MIRRORS", &self.mirrors)
            .env("BERTH_CONFIG", &self.config)
            .output()
            .unwrap()
    }

    fn edit(&self, file: &str, from: &str, to: &str) {
        let path = self.dir.join(file);
        let before = std::fs::read_to_string(&path).unwrap();
        assert!(before.contains(from), "{file} has no {from:?}");
        std::fs::write(&path, before.replace(from, to)).unwrap();
    }
}

fn wait_for(port: u16, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(b) = http_get(port).filter(|b| b.contains(needle)) {
            return b;
        }
        assert!(Instant::now() < deadline, "never served {needle:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Digest of the code image in berth's store, as `berth images` lists it.
/// A missing image fails the test: two missing images are not "the same".
fn code_image_id(seed: &Seed, project: &str) -> String {
    let out = seed.berth(&["images", "--format", "json"]);
    assert!(out.status.success(), "images: {}", text(&out.stderr));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = list
        .as_array()
        .unwrap()
        .iter()
        .find(|i| {
            i["Repository"]
                .as_str()
                .is_some_and(|r| r.ends_with(&format!("{project}-code")))
        })
        .and_then(|i| i["ID"].as_str())
        .unwrap_or_default()
        .to_string();
    assert!(
        id.starts_with("sha256:") && id.len() > "sha256:".len(),
        "no code image {project}-code in the store: {list}"
    );
    id
}

#[test]
fn runtime_swap_and_code_change_drop_no_request() {
    let tmp = tempfile::tempdir().unwrap();
    let registry = Registry::seed(tmp.path(), "4.2.2 4.2.3", false);

    let project = format!("seedswap{}", std::process::id());
    let dir = tmp.path().join(&project);
    copy_seed(&dir);
    let port = free_port();
    let seed = Seed {
        dir: dir.clone(),
        state: tmp.path().join("state"),
        mirrors: format!(
            "quay.io=http://127.0.0.1:{0},docker.io=http://127.0.0.1:{0}",
            registry.port
        ),
        config: tmp.path().join("none.toml"),
    };
    std::fs::write(&seed.config, "").unwrap();
    seed.edit(
        "docker-compose.yml",
        "\"8080:3000\"",
        &format!("\"{port}:3000\""),
    );
    let _down = DownOnDrop {
        dir: dir.clone(),
        state: seed.state.clone(),
    };

    let up = seed.berth(&["up", "-d"]);
    assert!(up.status.success(), "up -d: {}", text(&up.stderr));
    wait_for(port, "I am running nodejs version: 4.2.2");
    let code_before = code_image_id(&seed, &project);

    // The plan explains itself before anything changes.
    seed.edit(
        "docker-compose.yml",
        "alpine-nodejs:4.2.2",
        "alpine-nodejs:4.2.3",
    );
    let pull = seed.berth(&["pull"]);
    assert!(pull.status.success(), "pull: {}", text(&pull.stderr));
    let dry = seed.berth(&["up", "--dry-run"]);
    let plan = text(&dry.stdout);
    assert!(
        plan.contains("app: runtime image changed sha256:"),
        "{plan}{}",
        text(&dry.stderr)
    );

    // The runtime swap, under a client polling every 20 ms.
    let poller = Poller::start(port);
    poller.wait_more(5);
    let up = seed.berth(&["up", "-d"]);
    assert!(up.status.success(), "up -d (4.2.3): {}", text(&up.stderr));
    poller.wait_more(5);
    let (requests, failures, last) = poller.finish();
    assert!(requests > 10, "only {requests} requests were made");
    assert!(
        failures.is_empty(),
        "{} of {requests} requests failed during the swap: {:?}\n{}",
        failures.len(),
        &failures[..failures.len().min(5)],
        text(&up.stderr)
    );
    assert_eq!(last, "I am running nodejs version: 4.2.3");
    assert!(text(&up.stderr).contains("Swapped"), "{}", text(&up.stderr));
    assert_eq!(
        code_image_id(&seed, &project),
        code_before,
        "the code image changed on a runtime swap"
    );

    // New code with `up --build`: docker-compose keeps serving the old
    // code from the carried-over volume; berth serves the new one.
    seed.edit(
        "index.js",
        "'I am running nodejs version: '",
        "'Now running nodejs version: '",
    );
    let poller = Poller::start(port);
    poller.wait_more(5);
    let up = seed.berth(&["up", "-d", "--build"]);
    assert!(up.status.success(), "up --build: {}", text(&up.stderr));
    poller.wait_more(5);
    let (requests, failures, last) = poller.finish();
    assert!(
        failures.is_empty(),
        "{} of {requests} requests failed during the code change: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert_eq!(last, "Now running nodejs version: 4.2.3");
    assert_ne!(code_image_id(&seed, &project), code_before);

    // Nothing changed: nothing to do.
    let again = seed.berth(&["up", "-d"]);
    assert!(
        text(&again.stderr).contains("is up to date"),
        "{}",
        text(&again.stderr)
    );

    // A new container that never gets ready: the old one keeps serving.
    seed.edit(
        "docker-compose.yml",
        "command: /bin/ash -c \"npm install --production && npm run start\"",
        "command: /bin/ash -c \"sleep 600\"\n  x-berth:\n    ready_timeout: 2s",
    );
    let poller = Poller::start(port);
    let up = seed.berth(&["up", "-d"]);
    let (requests, failures, last) = poller.finish();
    assert!(
        !up.status.success(),
        "up succeeded with a container that never got ready"
    );
    let err = text(&up.stderr);
    assert!(
        err.contains("never became ready") && err.contains("keeps serving"),
        "{err}"
    );
    assert!(err.trim().lines().count() <= 4, "not a short error: {err}");
    assert!(failures.is_empty(), "{failures:?} of {requests}");
    assert_eq!(last, "Now running nodejs version: 4.2.3");
    let ps: serde_json::Value =
        serde_json::from_slice(&seed.berth(&["ps", "--format", "json"]).stdout).unwrap();
    let running: Vec<&str> = ps
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["Name"].as_str())
        .collect();
    assert_eq!(running, [format!("{project}-app-1")], "{ps}");
    drop(registry);
}

pub(crate) fn copy_seed(to: &Path) {
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
}

/// examples/seed-runtime: the seed with `x-runtime: node@4.2.2` instead of
/// an image: node from the npm registry, mounted on the Debian base image
/// (`debian:bookworm-slim`, made by mmdebstrap in the loopback registry). Audit names the Dec 2015 CVEs; `upgrade --to 4.2.3` is the
/// 2015 step and `upgrade --security` the lowest 4.x fixing everything
/// fixable; each `up -d` after them swaps with zero failed requests and
/// leaves the code image as it was.
#[test]
fn seed_runtime_audit_upgrade_and_swap() {
    let tmp = tempfile::tempdir().unwrap();
    let registry = Registry::seed(tmp.path(), "", true);

    let project = format!("seedrt{}", std::process::id());
    let dir = tmp.path().join(&project);
    std::fs::create_dir_all(&dir).unwrap();
    for f in [
        "docker-compose.yml",
        "Dockerfile",
        ".dockerignore",
        "index.js",
        "package.json",
    ] {
        std::fs::copy(repo().join("examples/seed-runtime").join(f), dir.join(f)).unwrap();
    }
    let port = free_port();
    let seed = Seed {
        dir: dir.clone(),
        state: tmp.path().join("state"),
        mirrors: format!("docker.io=http://127.0.0.1:{}", registry.port),
        config: tmp.path().join("none.toml"),
    };
    std::fs::write(&seed.config, "").unwrap();
    seed.edit(
        "docker-compose.yml",
        "\"8080:3000\"",
        &format!("\"{port}:3000\""),
    );
    let _down = DownOnDrop {
        dir: dir.clone(),
        state: seed.state.clone(),
    };

    let up = seed.berth(&["up", "-d"]);
    assert!(up.status.success(), "up -d: {}", text(&up.stderr));
    wait_for(port, "I am running nodejs version: 4.2.2");
    let code_before = code_image_id(&seed, &project);

    let audit = seed.berth(&["audit"]);
    let report = text(&audit.stdout);
    assert_eq!(
        audit.status.code(),
        Some(1),
        "{report}{}",
        text(&audit.stderr)
    );
    for cve in ["CVE-2015-8027", "CVE-2015-6764"] {
        let line = report
            .lines()
            .find(|l| l.contains(cve))
            .unwrap_or_else(|| panic!("{cve} missing: {report}"));
        assert!(line.trim_end().ends_with("4.2.3"), "{line}");
    }

    let file = dir.join("docker-compose.yml");
    let before = std::fs::read_to_string(&file).unwrap();
    let mut served = Vec::new();
    for (args, version) in [
        (&["upgrade", "--to", "4.2.3"][..], "4.2.3"),
        (&["upgrade", "--security"][..], "4.9.0"),
    ] {
        let out = seed.berth(args);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        let after = std::fs::read_to_string(&file).unwrap();
        let changed: Vec<(&str, &str)> = before
            .lines()
            .zip(after.lines())
            .filter(|(a, b)| a != b)
            .collect();
        assert_eq!(
            changed,
            [(
                "  x-runtime: node@4.2.2",
                &*format!("  x-runtime: node@{version}")
            )],
            "{args:?} changed more than the runtime line"
        );
        let poller = Poller::start(port);
        poller.wait_more(5);
        let up = seed.berth(&["up", "-d"]);
        assert!(
            up.status.success(),
            "up -d ({version}): {}",
            text(&up.stderr)
        );
        poller.wait_more(5);
        let (requests, failures, last) = poller.finish();
        assert!(
            failures.is_empty(),
            "{} of {requests} requests failed moving to {version}: {:?}",
            failures.len(),
            &failures[..failures.len().min(5)]
        );
        served.push(last);
        assert_eq!(code_image_id(&seed, &project), code_before);
    }
    assert_eq!(
        served,
        [
            "I am running nodejs version: 4.2.3",
            "I am running nodejs version: 4.9.0"
        ]
    );
    drop(registry);
}
