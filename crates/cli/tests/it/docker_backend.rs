//! berth on the Docker Engine, through the binary (`--engine docker`): the
//! seed's shape built by berth and handed to the daemon, listed by
//! docker-compose 1.29.2, a code change swapped under a 20 ms poller with no
//! failed request, and `down` leaving nothing labelled with the project.

use crate::common::{text, Attached};
use crate::up::free_port;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Project {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    state: PathBuf,
    name: String,
}

impl Project {
    fn new(tag: &str, port: u16) -> Project {
        let tmp = tempfile::tempdir().unwrap();
        let name = format!("{tag}{}", std::process::id());
        let dir = tmp.path().join(&name);
        for (ctx, extra) in [
            (
                "code",
                "COPY index.html /app/index.html\nVOLUME /app\nCMD [\"/bin/busybox\", \"true\"]\n",
            ),
            ("web", ""),
        ] {
            let ctx = dir.join(ctx);
            std::fs::create_dir_all(&ctx).unwrap();
            std::fs::copy("/bin/busybox", ctx.join("busybox")).unwrap();
            std::fs::write(
                ctx.join("Dockerfile"),
                format!("FROM scratch\nCOPY busybox /bin/busybox\n{extra}"),
            )
            .unwrap();
        }
        std::fs::write(dir.join("code/index.html"), "code one").unwrap();
        // No user config file: the engine comes from --engine alone.
        std::fs::write(dir.join("none.toml"), "").unwrap();
        // The seed's shape (busybox httpd as PID 1 ignores SIGTERM: a short
        // grace period keeps the old container's stop quick).
        std::fs::write(
            dir.join("docker-compose.yml"),
            format!(
                "services:\n  code:\n    build: ./code\n  app:\n    build: ./web\n    volumes_from:\n      - code\n    ports:\n      - \"127.0.0.1:{port}:3000\"\n    working_dir: /app\n    command: /bin/busybox httpd -f -p 3000 -h /app\n    stop_grace_period: 1s\n"
            ),
        )
        .unwrap();
        Project {
            state: tmp.path().join("state"),
            dir,
            name,
            _tmp: tmp,
        }
    }

    fn berth(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_berth"))
            .arg("--engine")
            .arg("docker")
            .args(args)
            .current_dir(&self.dir)
            .env("BERTH_STATE_DIR", &self.state)
            .env("BERTH_CONFIG", self.dir.join("none.toml"))
            .output()
            .unwrap()
    }

    fn leftovers(&self) -> String {
        let mut out = String::new();
        for kind in ["container", "network", "volume"] {
            let filter = format!("label=com.docker.compose.project={}", self.name);
            let mut args = vec![kind, "ls", "-q", "--filter", &filter];
            if kind == "container" {
                args.push("-a");
            }
            let o = Command::new("docker").args(&args).output().unwrap();
            out.push_str(&text(&o.stdout));
        }
        out
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = self.berth(&["down", "-v", "-t", "0"]);
    }
}

fn get(port: u16) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET /index.html HTTP/1.0\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let status = buf.split_whitespace().nth(1)?;
    (status == "200")
        .then(|| buf.split_once("\r\n\r\n").map(|(_, b)| b.to_string()))
        .flatten()
}

fn wait_for(port: u16, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(port).as_deref() != Some(want) {
        assert!(
            Instant::now() < deadline,
            "never served {want:?}: {:?}",
            get(port)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn docker_compose_ps(dir: &Path) -> String {
    let o = Command::new("docker-compose")
        .arg("ps")
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    text(&o.stdout)
}

#[test]
fn the_seed_shape_on_the_docker_engine_swaps_new_code_with_no_failed_request() {
    let port = free_port();
    let p = Project::new("bdkcli", port);
    let up = p.berth(&["up", "-d"]);
    assert!(up.status.success(), "up: {}", text(&up.stderr));
    wait_for(port, "code one");
    let ps = p.berth(&["ps"]);
    assert!(ps.status.success(), "{}", text(&ps.stderr));
    assert!(
        text(&ps.stdout).contains(&format!("{}-app-1", p.name)),
        "{}",
        text(&ps.stdout)
    );
    let listed = docker_compose_ps(&p.dir);
    assert!(listed.contains(&format!("{}-app-1", p.name)), "{listed}");

    // New code under a poller: the code container gets a fresh volume, the
    // app is swapped start-first by berth's port keeper.
    std::fs::write(p.dir.join("code/index.html"), "code two").unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let poller = {
        let (stop, seen) = (stop.clone(), seen.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let got = get(port).unwrap_or_else(|| "FAILED".into());
                let mut s = seen.lock().unwrap();
                if s.last() != Some(&got) {
                    s.push(got);
                }
                n += 1;
                drop(s);
                std::thread::sleep(Duration::from_millis(20));
            }
            n
        })
    };
    let up = p.berth(&["up", "-d", "--build"]);
    assert!(up.status.success(), "up --build: {}", text(&up.stderr));
    wait_for(port, "code two");
    stop.store(true, Ordering::Relaxed);
    let requests = poller.join().unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        ["code one", "code two"],
        "{requests} requests"
    );

    let down = p.berth(&["down"]);
    assert!(down.status.success(), "down: {}", text(&down.stderr));
    assert_eq!(p.leftovers(), "");
    assert!(
        std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(),
        "port {port} still held"
    );
}

/// A project docker-compose 1.29.2 started (its names, its build, Docker
/// publishing its port) is listed by `berth --engine docker ps` and
/// converged by `berth --engine docker up -d`, which takes the port over.
#[test]
fn a_project_docker_compose_started_is_listed_and_converged() {
    let port = free_port();
    let p = Project::new("bdkadopt", port);
    let o = Command::new("docker-compose")
        .args(["up", "-d"])
        .current_dir(&p.dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "docker-compose up: {}", text(&o.stderr));
    wait_for(port, "code one");
    let ps = p.berth(&["ps"]);
    assert!(ps.status.success(), "{}", text(&ps.stderr));
    assert!(
        text(&ps.stdout).contains(&format!("{}_app_1", p.name)),
        "{}",
        text(&ps.stdout)
    );

    // The plan says what it does and why: docker-compose's config hash is
    // not berth's, and Docker holds the port, so the swap is stop-first.
    let dry = p.berth(&["up", "-d", "--dry-run"]);
    let said = format!("{}{}", text(&dry.stdout), text(&dry.stderr));
    assert!(dry.status.success(), "{said}");
    assert!(said.contains("configuration changed"), "{said}");
    assert!(said.contains("holds the ports through Docker"), "{said}");
    let up = p.berth(&["up", "-d"]);
    assert!(up.status.success(), "up: {}", text(&up.stderr));
    wait_for(port, "code one");
    let again = p.berth(&["up", "-d", "--dry-run"]);
    let said = format!("{}{}", text(&again.stdout), text(&again.stderr));
    assert!(again.status.success(), "{said}");
    assert!(said.contains("up to date"), "{said}");
    let listed = docker_compose_ps(&p.dir);
    assert!(listed.contains("app") && listed.contains("Up"), "{listed}");
    let down = p.berth(&["down"]);
    assert!(down.status.success(), "down: {}", text(&down.stderr));
    assert_eq!(p.leftovers(), "");
}

/// The seed verbatim on the Docker Engine (issue 15): its images from the
/// loopback registry (the daemon cannot reach quay.io, so berth pulls
/// through its mirrors and hands the image over), 4.2.2 served and listed
/// by docker-compose 1.29.2; the runtime swap to 4.2.3 and a code change
/// with `up --build`, each under a client polling every 20 ms, fail no
/// request; `down` leaves nothing labelled with the project.
#[test]
fn the_seed_verbatim_on_docker_swaps_runtime_and_code_with_no_failed_request() {
    use crate::up::{http_get, Registry};
    let tmp = tempfile::tempdir().unwrap();
    let registry = Registry::seed(tmp.path(), "4.2.2 4.2.3", false);
    let name = format!("seeddocker{}", std::process::id());
    let dir = tmp.path().join(&name);
    crate::swap::copy_seed(&dir);
    let port = free_port();
    let compose = dir.join("docker-compose.yml");
    let edit = |from: &str, to: &str| {
        let text = std::fs::read_to_string(&compose).unwrap();
        assert!(text.contains(from), "no {from:?} in the seed");
        std::fs::write(&compose, text.replace(from, to)).unwrap();
    };
    edit("\"8080:3000\"", &format!("\"127.0.0.1:{port}:3000\""));
    std::fs::write(dir.join("none.toml"), "").unwrap();
    let p = Project {
        state: tmp.path().join("state"),
        dir,
        name,
        _tmp: tmp,
    };
    let mirrors = format!(
        "quay.io=http://127.0.0.1:{0},docker.io=http://127.0.0.1:{0}",
        registry.port
    );
    let berth = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_berth"))
            .arg("--engine")
            .arg("docker")
            .args(args)
            .current_dir(&p.dir)
            .env("BERTH_STATE_DIR", &p.state)
            .env("BERTH_CONFIG", p.dir.join("none.toml"))
            .env("BERTH_REGISTRY_MIRRORS", &mirrors)
            .output()
            .unwrap()
    };
    let serves = |want: &str| {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if http_get(port).is_some_and(|b| b.contains(want)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "never served {want:?}: {:?}",
                http_get(port)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let up = berth(&["up", "-d"]);
    assert!(up.status.success(), "up -d: {}", text(&up.stderr));
    serves("I am running nodejs version: 4.2.2");
    let listed = docker_compose_ps(&p.dir);
    assert!(
        listed.contains(&format!("{}-app-1", p.name))
            && listed.contains(&format!("{}-code-1", p.name)),
        "{listed}"
    );

    // Polls every 20 ms while `up` runs; every answer must be a 200.
    let under_poller = |args: &[&str]| {
        let stop = Arc::new(AtomicBool::new(false));
        let answers = Arc::new(Mutex::new(Vec::<String>::new()));
        let poller = {
            let (stop, answers) = (stop.clone(), answers.clone());
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(600);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let a = match http_get(port) {
                        Some(b) if b.starts_with("HTTP/1.1 200") => {
                            b.lines().last().unwrap_or("").to_string()
                        }
                        other => format!("FAILED: {other:?}"),
                    };
                    answers.lock().unwrap().push(a);
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        std::thread::sleep(Duration::from_millis(300));
        let up = berth(args);
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::Relaxed);
        poller.join().unwrap();
        assert!(up.status.success(), "up {args:?}: {}", text(&up.stderr));
        let answers = answers.lock().unwrap().clone();
        let failed: Vec<&String> = answers.iter().filter(|a| a.starts_with("FAILED")).collect();
        assert!(
            failed.is_empty(),
            "{} of {} failed: {:?}",
            failed.len(),
            answers.len(),
            &failed[..failed.len().min(3)]
        );
        answers.last().cloned().unwrap_or_default()
    };

    edit("alpine-nodejs:4.2.2", "alpine-nodejs:4.2.3");
    let last = under_poller(&["up", "-d"]);
    assert_eq!(last, "I am running nodejs version: 4.2.3");

    let index = p.dir.join("index.js");
    let code = std::fs::read_to_string(&index).unwrap();
    std::fs::write(
        &index,
        code.replace(
            "'I am running nodejs version: '",
            "'Now running nodejs version: '",
        ),
    )
    .unwrap();
    let last = under_poller(&["up", "-d", "--build"]);
    assert_eq!(last, "Now running nodejs version: 4.2.3");

    let down = berth(&["down"]);
    assert!(down.status.success(), "down: {}", text(&down.stderr));
    assert_eq!(p.leftovers(), "");
    drop(registry);
}

/// Defends: `attach` on the Docker Engine joins this process to a
/// `stdin_open` container (what it reads comes from attach's stdin, what it
/// writes reaches attach's stdout), the detach keys leave it running, a
/// SIGINT to attach reaches the container's main process (`--sig-proxy`),
/// and attach ends with the container's exit code.
#[test]
fn attach_on_docker_joins_stdin_detaches_and_passes_signals_on() {
    let p = Project::new("dkattach", free_port());
    std::fs::write(
        p.dir.join("docker-compose.yml"),
        "services:\n  box:\n    build: ./web\n    stdin_open: true\n    \
         command: [/bin/busybox, sh, -c, \"trap 'echo got INT; exit 5' INT; while read l; do [ \\\"$$l\\\" = tick ] && break; echo \\\"got $$l\\\"; done; while true; do echo tick; /bin/busybox sleep 0.2; done\"]\n",
    )
    .unwrap();
    let up = p.berth(&["up", "-d"]);
    assert!(up.status.success(), "up -d: {}", text(&up.stderr));
    let attach = |args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
        cmd.args(["--engine", "docker", "attach"])
            .args(args)
            .current_dir(&p.dir)
            .env("BERTH_STATE_DIR", &p.state)
            .env("BERTH_CONFIG", p.dir.join("none.toml"));
        Attached::spawn(cmd, None)
    };
    let state = || {
        let o = Command::new("docker")
            .args(["inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}"])
            .arg(format!("{}-box-1", p.name))
            .output()
            .unwrap();
        text(&o.stdout).trim().to_string()
    };

    let mut a = attach(&["box"]);
    a.send(b"hello\n");
    a.wait_for("got hello");
    // ctrl-p, ctrl-q: detached, the container runs on.
    a.send(b"\x10\x11");
    assert_eq!(a.code(), 0, "{}", a.seen());
    assert_eq!(state(), "running 0");

    // A SIGINT to attach goes to the container's shell (ticking by then:
    // attach watches for signals before it joins the streams).
    let mut a = attach(&["box"]);
    a.send(b"tick\n");
    a.wait_for("tick");
    // SAFETY: a signal to the child this test started.
    unsafe { libc::kill(a.child.id() as i32, libc::SIGINT) };
    assert_eq!(a.code(), 5, "{}", a.seen());
    assert!(a.seen().contains("got INT"), "{}", a.seen());
    assert_eq!(state(), "exited 5");

    assert!(p.berth(&["down", "-v", "-t", "0"]).status.success());
    assert_eq!(p.leftovers(), "");
}
