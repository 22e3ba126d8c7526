//! berth on the Docker Engine, through the binary (`--engine docker`): the
//! seed's shape built by berth and handed to the daemon, listed by
//! docker-compose 1.29.2, a code change swapped under a 20 ms poller with no
//! failed request, and `down` leaving nothing labelled with the project.

use crate::common::text;
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
