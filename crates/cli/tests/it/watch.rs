//! `berth watch` on the seed (issue 13): the code lives in the `code`
//! service's volume and `app` mounts it with `volumes_from`; a `sync` rule
//! on `app` writes an edited `index.js` into that volume through the running
//! container, so a client polling every 20 ms gets the new text without a
//! rebuild, a restart or a single failed request. Then the other actions:
//! `sync+exec` runs its hook, `rebuild` of the code service swaps app onto
//! the new code volume without a failed request, `restart` restarts app.

use crate::common::text;
use crate::swap::copy_seed;
use crate::up::{free_port, http_get, Registry};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One answer to `GET /` (its last line) or why there was none, and when.
type Answer = (Instant, Result<String, String>);

/// `GET /` every 20 ms, each answer kept with when it came.
struct Poller {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<Answer>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Poller {
    fn start(port: u16) -> Poller {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (s, r) = (stop.clone(), seen.clone());
        let thread = std::thread::spawn(move || {
            // Bounded: at most 5000 requests (100 s at 20 ms).
            for _ in 0..5000 {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let answer = match http_get(port) {
                    Some(b) if b.starts_with("HTTP/1.1 200") => {
                        Ok(b.lines().last().unwrap_or("").to_string())
                    }
                    Some(b) => Err(format!("bad answer: {b:?}")),
                    None => Err("no answer".to_string()),
                };
                r.lock().unwrap().push((Instant::now(), answer));
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Poller {
            stop,
            seen,
            thread: Some(thread),
        }
    }

    fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// When `needle` was first served, waiting for it up to `within`.
    fn first_serving(&self, needle: &str, within: Duration) -> Option<Instant> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            let found = self
                .seen
                .lock()
                .unwrap()
                .iter()
                .find(|(_, r)| r.as_ref().is_ok_and(|b| b.contains(needle)))
                .map(|(t, _)| *t);
            if found.is_some() {
                return found;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        None
    }

    /// Stop; every answer, in order.
    fn finish(mut self) -> Vec<Answer> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

struct Seed {
    dir: PathBuf,
    state: PathBuf,
    mirrors: String,
    config: PathBuf,
    /// `embedded` or `docker`, for every command (`BERTH_ENGINE`).
    engine: &'static str,
}

impl Seed {
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
        cmd.args(args)
            .current_dir(&self.dir)
            .env("BERTH_STATE_DIR", &self.state)
            .env("BERTH_REGISTRY_MIRRORS", &self.mirrors)
            .env("BERTH_CONFIG", &self.config)
            .env("BERTH_ENGINE", self.engine);
        cmd
    }

    /// The ID of the service's container, as `ps` shows it.
    fn container_id(&self, service: &str) -> String {
        let ps: serde_json::Value =
            serde_json::from_slice(&self.berth(&["ps", "--format", "json"]).stdout).unwrap();
        ps.as_array()
            .unwrap()
            .iter()
            .find(|c| c["Service"] == service)
            .and_then(|c| c["ID"].as_str())
            .unwrap_or_else(|| panic!("no {service} container in {ps}"))
            .to_string()
    }

    fn berth(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    fn edit(&self, file: &str, from: &str, to: &str) {
        let path = self.dir.join(file);
        let before = std::fs::read_to_string(&path).unwrap();
        assert!(before.contains(from), "{file} has no {from:?}");
        std::fs::write(&path, before.replace(from, to)).unwrap();
    }
}

/// `down` on drop, on the seed's engine, so a failed assertion leaves
/// nothing running.
struct SeedDown<'a>(&'a Seed);

impl Drop for SeedDown<'_> {
    fn drop(&mut self) {
        let _ = self.0.berth(&["down", "-t", "1", "-v"]);
    }
}

/// A running `berth watch`, its stderr collected line by line; SIGINT and
/// a bounded wait on drop, so a failed test leaves no watcher behind.
struct Watcher {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Watcher {
    fn start(mut cmd: Command) -> Watcher {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (stderr, l) = (child.stderr.take().unwrap(), lines.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                l.lock().unwrap().push(line);
            }
        });
        Watcher { child, lines }
    }

    fn wait_for_line(&self, needle: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self
                .lines
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.contains(needle))
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    fn output(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// Ctrl-C, then its exit status (bounded wait).
    fn interrupt(&mut self) -> Option<std::process::ExitStatus> {
        self.interrupt_within(Duration::from_secs(10))
    }

    fn interrupt_within(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        // SAFETY: signals our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The seed made to serve whatever `index.js` says now: `server.js`
/// requires the handler afresh on every request, as a dev server with hot
/// reload does, so a synced file is served without restarting node.
fn hot_reloading_seed(dir: &Path, port: u16) {
    copy_seed(dir);
    std::fs::write(
        dir.join("server.js"),
        "var http = require('http');\n\
         var handler = require('path').join(__dirname, 'index.js');\n\
         http.createServer(function (req, res) {\n\
         \x20 delete require.cache[handler];\n\
         \x20 require(handler)(req, res);\n\
         }).listen(3000, function () { console.log('listening on 3000'); });\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("index.js"),
        "module.exports = function (req, res) {\n\
         \x20 res.writeHead(200, {'Content-Type': 'text/plain'});\n\
         \x20 res.end('I am running nodejs version: ' + process.versions.node + '\\n');\n\
         };\n",
    )
    .unwrap();
    let package = dir.join("package.json");
    let text = std::fs::read_to_string(&package).unwrap();
    std::fs::write(
        &package,
        text.replace("\"node index.js\"", "\"node server.js\""),
    )
    .unwrap();
    std::fs::create_dir(dir.join("conf")).unwrap();
    std::fs::write(dir.join("conf/greeting"), "hello").unwrap();
    std::fs::write(dir.join("restart.txt"), "").unwrap();
    let compose = dir.join("docker-compose.yml");
    let text = std::fs::read_to_string(&compose).unwrap();
    let text = text.replace("\"8080:3000\"", &format!("\"{port}:3000\""));
    // The code service is rebuilt when package.json changes; app gets the
    // code synced, a hook run when conf/ changes, and a restart when
    // restart.txt (the only file its `include` takes in) changes.
    let text = text.replace(
        "  build: .\n",
        "  build: .\n  develop:\n    watch:\n      - action: rebuild\n        path: ./package.json\n",
    );
    std::fs::write(
        &compose,
        format!(
            "{text}  develop:\n    watch:\n      - action: sync\n        path: .\n        target: /app\n        ignore:\n          - node_modules\n      - action: sync+exec\n        path: ./conf\n        target: /app/conf\n        exec:\n          command: /bin/ash -c \"cat /app/conf/greeting > /tmp/hooked\"\n      - action: sync+restart\n        path: .\n        target: /app\n        include:\n          - restart.txt\n"
        ),
    )
    .unwrap();
}

#[test]
fn watch_syncs_an_edit_into_the_running_seed_with_no_failed_request() {
    seed_watch_on("embedded");
}

/// The same on the Docker Engine: its containers run on this host, so the
/// sync goes through their `/proc/<pid>/root` as well.
#[test]
fn watch_syncs_an_edit_into_the_running_seed_on_docker() {
    seed_watch_on("docker");
}

fn seed_watch_on(engine: &'static str) {
    let tmp = tempfile::tempdir().unwrap();
    let registry = Registry::seed(tmp.path(), "4.2.2", false);
    let project = format!("seedwatch{engine}{}", std::process::id());
    let dir = tmp.path().join(&project);
    let port = free_port();
    hot_reloading_seed(&dir, port);
    let seed = Seed {
        dir: dir.clone(),
        state: tmp.path().join("state"),
        mirrors: registry.mirrors(),
        config: tmp.path().join("none.toml"),
        engine,
    };
    std::fs::write(&seed.config, "").unwrap();
    let _down = SeedDown(&seed);

    let up = seed.berth(&["up", "-d"]);
    assert!(up.status.success(), "up -d: {}", text(&up.stderr));
    let deadline = Instant::now() + Duration::from_secs(120);
    while !http_get(port).is_some_and(|b| b.contains("I am running nodejs version: 4.2.2")) {
        assert!(Instant::now() < deadline, "the seed never answered");
        std::thread::sleep(Duration::from_millis(100));
    }

    let mut watcher = Watcher::start(seed.command(&["watch", "--no-up"]));
    assert!(
        watcher.wait_for_line("Watching", Duration::from_secs(60)),
        "watch never started: {}",
        watcher.output()
    );

    let poller = Poller::start(port);
    let before = poller.count();
    while poller.count() < before + 5 {
        std::thread::sleep(Duration::from_millis(20));
    }
    let edited = Instant::now();
    seed.edit(
        "index.js",
        "'I am running nodejs version: '",
        "'Now watching nodejs version: '",
    );
    let served = poller.first_serving(
        "Now watching nodejs version: 4.2.2",
        Duration::from_secs(30),
    );
    // A few more requests after the change, to see that it holds.
    let at = poller.count();
    while poller.count() < at + 5 {
        std::thread::sleep(Duration::from_millis(20));
    }
    let answers = poller.finish();
    let served = served.unwrap_or_else(|| {
        panic!(
            "the edit was never served within 30 s\nwatch: {}",
            watcher.output()
        )
    });
    let latency = served.saturating_duration_since(edited);
    let polls_before_new = answers
        .iter()
        .filter(|(t, _)| *t > edited && *t < served)
        .count();
    println!(
        "edit served {} ms after the save ({polls_before_new} polls in between, {} requests in all)",
        latency.as_millis(),
        answers.len()
    );
    let failures: Vec<&String> = answers
        .iter()
        .filter_map(|(_, r)| r.as_ref().err())
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} requests failed: {:?}",
        failures.len(),
        answers.len(),
        &failures[..failures.len().min(5)]
    );
    // Once served, the new text stays: no request falls back to the old one.
    let after: Vec<&str> = answers
        .iter()
        .filter(|(t, _)| *t >= served)
        .filter_map(|(_, r)| r.as_deref().ok())
        .collect();
    assert!(
        after
            .iter()
            .all(|b| *b == "Now watching nodejs version: 4.2.2"),
        "{after:?}"
    );

    // One sync of index.js, nothing rebuilt or restarted.
    assert!(
        watcher.wait_for_line("Synced 1 file to app", Duration::from_secs(5)),
        "{}",
        watcher.output()
    );
    let log = watcher.output();
    assert!(
        !log.contains("Rebuilt") && !log.contains("Restarted") && !log.contains("Ran "),
        "{log}"
    );
    let ps: serde_json::Value =
        serde_json::from_slice(&seed.berth(&["ps", "--format", "json"]).stdout).unwrap();
    let restarts: Vec<u64> = ps
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["Service"] == "app")
        .map(|c| c["RestartCount"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(restarts, [0], "{ps}");

    // sync+exec: the hook runs in the container after the sync.
    std::fs::write(dir.join("conf/greeting"), "bonjour").unwrap();
    assert!(
        watcher.wait_for_line("Ran \"/bin/ash -c cat", Duration::from_secs(30)),
        "{}",
        watcher.output()
    );
    let hooked = seed.berth(&["exec", "-T", "app", "cat", "/tmp/hooked"]);
    assert_eq!(text(&hooked.stdout), "bonjour", "{}", text(&hooked.stderr));

    // rebuild: a new code image, and app swapped onto its volume with no
    // failed request (the same swap as `up --build`).
    let app_before = seed.container_id("app");
    let poller = Poller::start(port);
    let before = poller.count();
    while poller.count() < before + 5 {
        std::thread::sleep(Duration::from_millis(20));
    }
    seed.edit(
        "package.json",
        "\"version\": \"1.0.0\"",
        "\"version\": \"1.0.1\"",
    );
    assert!(
        watcher.wait_for_line("Rebuilt code", Duration::from_secs(300)),
        "{}",
        watcher.output()
    );
    assert_ne!(
        seed.container_id("app"),
        app_before,
        "app was not moved onto the new code volume: {}",
        watcher.output()
    );
    let at = poller.count();
    while poller.count() < at + 5 {
        std::thread::sleep(Duration::from_millis(20));
    }
    let answers = poller.finish();
    let failures: Vec<&String> = answers
        .iter()
        .filter_map(|(_, r)| r.as_ref().err())
        .collect();
    // Both engines swap app start-first onto the new code volume.
    println!(
        "{engine}: {} of {} requests failed during the rebuild",
        failures.len(),
        answers.len()
    );
    assert!(
        failures.is_empty(),
        "{engine}: {} of {} requests failed during the rebuild: {:?}",
        failures.len(),
        answers.len(),
        &failures[..failures.len().min(5)]
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    while !http_get(port).is_some_and(|b| b.contains("Now watching nodejs version: 4.2.2")) {
        assert!(
            Instant::now() < deadline,
            "app never served the synced code after the rebuild"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        answers.last().and_then(|(_, r)| r.as_deref().ok()),
        Some("Now watching nodejs version: 4.2.2")
    );

    // sync+restart, whose `include` takes in only restart.txt (so no edit
    // above restarted anything): the app's container restarts and serves
    // again.
    std::fs::write(dir.join("restart.txt"), "now").unwrap();
    assert!(
        watcher.wait_for_line("Restarted app", Duration::from_secs(60)),
        "{}",
        watcher.output()
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while !http_get(port).is_some_and(|b| b.contains("Now watching")) {
        assert!(
            Instant::now() < deadline,
            "app never served again after the restart"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // sync+restart synced the file it includes before restarting.
    let synced = seed.berth(&["exec", "-T", "app", "cat", "/app/restart.txt"]);
    assert_eq!(text(&synced.stdout), "now", "{}", text(&synced.stderr));
    let log = watcher.output();
    assert!(!log.contains("error"), "{log}");
    println!("watch said:\n{log}");

    // Ctrl-C ends watch cleanly and leaves the project running.
    let status = watcher.interrupt().expect("watch did not stop on Ctrl-C");
    assert!(
        status.success(),
        "watch exited {status:?}: {}",
        watcher.output()
    );
    assert!(http_get(port).is_some_and(|b| b.contains("Now watching")));
    drop(registry);
}

/// `up --watch`, attached: the project comes up with the watcher beside it,
/// an edit is served, and Ctrl-C takes both down.
#[test]
fn up_watch_runs_the_seed_attached_and_syncs_edits_until_ctrl_c() {
    let tmp = tempfile::tempdir().unwrap();
    let registry = Registry::seed(tmp.path(), "4.2.2", false);
    let project = format!("seedupwatch{}", std::process::id());
    let dir = tmp.path().join(&project);
    let port = free_port();
    hot_reloading_seed(&dir, port);
    let seed = Seed {
        dir: dir.clone(),
        state: tmp.path().join("state"),
        mirrors: registry.mirrors(),
        config: tmp.path().join("none.toml"),
        engine: "embedded",
    };
    std::fs::write(&seed.config, "").unwrap();
    let _down = SeedDown(&seed);

    let mut up = Watcher::start(seed.command(&["up", "--watch", "-t", "1"]));
    let deadline = Instant::now() + Duration::from_secs(180);
    while !http_get(port).is_some_and(|b| b.contains("I am running nodejs version: 4.2.2")) {
        assert!(
            Instant::now() < deadline,
            "the seed never answered: {}",
            up.output()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        up.wait_for_line("Watching", Duration::from_secs(30)),
        "{}",
        up.output()
    );
    seed.edit(
        "index.js",
        "'I am running nodejs version: '",
        "'Up and watching nodejs version: '",
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !http_get(port).is_some_and(|b| b.contains("Up and watching nodejs version: 4.2.2")) {
        assert!(
            Instant::now() < deadline,
            "the edit was never served: {}",
            up.output()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        up.output().contains("Synced 1 file to app"),
        "{}",
        up.output()
    );

    // Ctrl-C: attached `up` takes the project down, and the watcher ends too.
    let status = up.interrupt_within(Duration::from_secs(60));
    let status = status.unwrap_or_else(|| panic!("up --watch did not end: {}", up.output()));
    assert!(status.success(), "{status:?}: {}", up.output());
    assert!(http_get(port).is_none(), "still served after Ctrl-C");
    drop(registry);
}

/// Mistakes are named in one line before anything is built or started.
#[test]
fn watch_refuses_what_it_cannot_act_on_in_one_line_before_starting() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let state_env = state.to_str().unwrap();
    let cases = [
        (
            "services:\n  app:\n    image: node\n",
            &["watch"][..],
            "none of the services has a develop.watch section to act on",
        ),
        (
            "services:\n  app:\n    image: node\n    develop:\n      watch:\n        - {action: sync, path: .}\n",
            &["watch"][..],
            "services.app.develop.watch[0].target: is required for action sync",
        ),
        (
            "services:\n  app:\n    image: node\n    develop:\n      watch:\n        - {action: rebuild, path: .}\n",
            &["up", "--watch"][..],
            "services.app.develop.watch[0].action: rebuild needs a build section on service app",
        ),
        (
            "services:\n  app:\n    image: node\n    volumes: [\"./src:/app/src\"]\n    develop:\n      watch:\n        - {action: sync, path: ./src, target: /app/src}\n",
            &["watch"][..],
            "none of the services has a develop.watch section to act on",
        ),
        (
            "services:\n  app:\n    image: node\n    develop:\n      watch:\n        - {action: restart, path: .}\n",
            &["watch", "web"][..],
            "services.web: no such service in this project",
        ),
        (
            "services:\n  app:\n    image: node\n    develop:\n      watch:\n        - {action: restart, path: ./missing}\n",
            &["watch"][..],
            "services.app.develop.watch[0].path: ",
        ),
        (
            "services:\n  app:\n    image: node\n    develop:\n      watch:\n        - {action: restart, path: .}\n",
            &["watch", "--no-up"][..],
            "is not running",
        ),
    ];
    for (compose, args, expected) in cases {
        std::fs::write(tmp.path().join("compose.yaml"), compose).unwrap();
        let out = crate::common::berth(tmp.path(), args, &[("BERTH_STATE_DIR", state_env)]);
        let err = text(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded: {err}");
        // One error line, after any warnings.
        let lines: Vec<&str> = err.trim().lines().collect();
        let (last, warnings) = lines.split_last().unwrap();
        assert!(last.contains(expected), "{args:?}: {err}");
        assert!(
            warnings.iter().all(|w| w.starts_with("warning: ")),
            "{args:?}: {err}"
        );
        if compose.contains("volumes:") {
            assert!(
                warnings
                    .iter()
                    .any(|w| w.contains("services.app.develop.watch[0]: ")
                        && w.contains("is bind-mounted into service app")),
                "{err}"
            );
        }
    }
    assert!(!state.join("projects").exists(), "something was started");
}

/// `up -d --watch` with `initial_sync`: an edit made while nothing watched
/// is copied in when watching starts; the command stays in the foreground
/// until Ctrl-C and the project keeps running after it.
#[test]
fn up_detached_watch_initial_sync_copies_edits_made_while_not_watching() {
    let tmp = tempfile::tempdir().unwrap();
    let registry = Registry::seed(tmp.path(), "4.2.2", false);
    let project = format!("seedinitial{}", std::process::id());
    let dir = tmp.path().join(&project);
    let port = free_port();
    hot_reloading_seed(&dir, port);
    let compose = dir.join("docker-compose.yml");
    let text_before = std::fs::read_to_string(&compose).unwrap();
    std::fs::write(
        &compose,
        text_before.replacen(
            "        target: /app\n",
            "        target: /app\n        initial_sync: true\n",
            1,
        ),
    )
    .unwrap();
    let seed = Seed {
        dir: dir.clone(),
        state: tmp.path().join("state"),
        mirrors: registry.mirrors(),
        config: tmp.path().join("none.toml"),
        engine: "embedded",
    };
    std::fs::write(&seed.config, "").unwrap();
    let _down = SeedDown(&seed);

    let up = seed.berth(&["up", "-d"]);
    assert!(up.status.success(), "up -d: {}", text(&up.stderr));
    let deadline = Instant::now() + Duration::from_secs(120);
    while !http_get(port).is_some_and(|b| b.contains("I am running nodejs version: 4.2.2")) {
        assert!(Instant::now() < deadline, "the seed never answered");
        std::thread::sleep(Duration::from_millis(100));
    }
    seed.edit(
        "index.js",
        "'I am running nodejs version: '",
        "'Synced at start nodejs version: '",
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        http_get(port).is_some_and(|b| b.contains("I am running")),
        "changed with nothing watching"
    );

    let mut watch = Watcher::start(seed.command(&["up", "-d", "--watch"]));
    assert!(
        watch.wait_for_line("Watching for changes", Duration::from_secs(60)),
        "{}",
        watch.output()
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !http_get(port).is_some_and(|b| b.contains("Synced at start nodejs version: 4.2.2")) {
        assert!(
            Instant::now() < deadline,
            "the initial sync never reached the app: {}",
            watch.output()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = watch
        .interrupt()
        .expect("up -d --watch did not stop on Ctrl-C");
    assert!(status.success(), "{status:?}: {}", watch.output());
    assert!(
        http_get(port).is_some_and(|b| b.contains("Synced at start")),
        "the project did not keep running after Ctrl-C"
    );
    drop(registry);
}

/// Defends: `watch --prune` (docker compose's default) takes the image a
/// rebuild replaced out of berth's store, `--prune=false` keeps it; the
/// build's steps are shown unless `--quiet`, which shows only the outcome.
#[test]
fn watch_prunes_the_image_a_rebuild_replaced_and_quiet_hides_the_build() {
    let p = crate::engine::Project::new("wprune");
    let img = p.dir.join("img");
    std::fs::write(img.join("marker.txt"), "one\n").unwrap();
    std::fs::write(
        img.join("Dockerfile"),
        "FROM scratch\nCOPY busybox /bin/busybox\nCOPY marker.txt /marker.txt\n\
         CMD [\"/bin/busybox\", \"sleep\", \"600\"]\n",
    )
    .unwrap();
    p.write(
        "services:\n  box:\n    build: img\n    image: berth-test/wprune:1\n    develop:\n      \
         watch:\n        - {action: rebuild, path: ./img/marker.txt}\n",
    );
    let up = p.berth(&["up", "-d"]);
    assert!(up.status.success(), "up -d: {}", text(&up.stderr));
    let blobs = p.state.join("images/blobs/sha256");
    // The manifest `berth-test/wprune:1` names now (its IMAGE ID's digits).
    let image_id = || {
        let images = text(&p.berth(&["images"]).stdout);
        let line = images
            .lines()
            .find(|l| l.contains("berth-test/wprune"))
            .unwrap_or_default()
            .to_string();
        line.split_whitespace()
            .nth(2)
            .unwrap_or_default()
            .to_string()
    };
    let blob_of = |id: &str| {
        std::fs::read_dir(&blobs)
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with(id))
    };
    let watch = |args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
        cmd.arg("watch")
            .args(args)
            .current_dir(&p.dir)
            .env("BERTH_STATE_DIR", &p.state)
            .env("BERTH_CONFIG", p.dir.join("none.toml"));
        let w = Watcher::start(cmd);
        assert!(
            w.wait_for_line("Watching", Duration::from_secs(20)),
            "{}",
            w.output()
        );
        w
    };
    let rebuild = |w: &mut Watcher, marker: &str| {
        std::fs::write(img.join("marker.txt"), marker).unwrap();
        assert!(
            w.wait_for_line("Rebuilt box", Duration::from_secs(60)),
            "{}",
            w.output()
        );
        assert!(w.interrupt().is_some_and(|s| s.success()), "{}", w.output());
        let cat = p.berth(&["exec", "-T", "box", "/bin/busybox", "cat", "/marker.txt"]);
        assert_eq!(text(&cat.stdout), marker);
    };

    let first = image_id();
    assert!(!first.is_empty() && blob_of(&first));
    let mut w = watch(&["--no-up", "--prune=false"]);
    rebuild(&mut w, "two\n");
    assert!(
        w.output().contains("COPY marker.txt /marker.txt"),
        "{}",
        w.output()
    );
    let second = image_id();
    assert_ne!(second, first);
    assert!(blob_of(&first), "--prune=false removed the replaced image");

    let mut w = watch(&["--no-up", "--quiet"]);
    rebuild(&mut w, "three\n");
    assert!(!w.output().contains("COPY"), "{}", w.output());
    let third = image_id();
    assert!(blob_of(&third));
    assert!(!blob_of(&second), "the replaced image was not pruned");
    assert!(p.berth(&["down", "-t", "0"]).status.success());
    p.assert_nothing_left();
}
