//! A project no part of berth was written for: Debian's redis-server in an
//! image this test builds (the binary and the libraries `ldd` names), a
//! worker that counts jobs in it and a web service (busybox httpd with a
//! CGI script) that reports the count. Health-gated order, exec, run, logs,
//! scale, a restart by policy after a crash, and a clean teardown — one
//! test body, run on the embedded engine and on the Docker Engine.

use crate::common::text;
use crate::engine::assert_nothing_left;
use crate::up::free_port;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// A build context: busybox, redis-server and its libraries, a CGI script.
fn redis_image_context(dir: &Path) {
    let root = dir.join("rootfs");
    let put = |host: &str| {
        let to = root.join(host.trim_start_matches('/'));
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(host, &to).unwrap_or_else(|e| panic!("{host}: {e}"));
    };
    put("/usr/bin/redis-server");
    let ldd = Command::new("ldd")
        .arg("/usr/bin/redis-server")
        .output()
        .unwrap();
    for line in text(&ldd.stdout).lines() {
        // "libx.so => /lib/…/libx.so (0x…)" or "/lib64/ld-linux… (0x…)"
        let path = line
            .split("=>")
            .last()
            .and_then(|p| p.split_whitespace().next())
            .filter(|p| p.starts_with('/'));
        if let Some(p) = path {
            put(p);
        }
    }
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    std::fs::create_dir_all(root.join("www/cgi-bin")).unwrap();
    std::fs::write(
        root.join("www/cgi-bin/jobs"),
        "#!/bin/busybox sh\necho 'Content-Type: text/plain'\necho\n\
         printf 'GET jobs\\r\\n' | /bin/busybox nc -w 1 redis 6379 | /bin/busybox tail -n 1\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        root.join("www/cgi-bin/jobs"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::fs::write(dir.join("Dockerfile"), "FROM scratch\nCOPY rootfs/ /\n").unwrap();
}

const COMPOSE: &str = r#"services:
  redis:
    build: redis
    image: berth-test/redis:1
    volumes: ["./order:/order"]
    command: ["/usr/bin/redis-server", "--port", "6379", "--save", "", "--appendonly", "no", "--protected-mode", "no"]
    healthcheck:
      test: ["CMD", "/bin/busybox", "sh", "-c", "printf 'PING\\r\\n' | /bin/busybox nc -w 1 127.0.0.1 6379 | /bin/busybox grep -q PONG && echo healthy >> /order/events"]
      interval: 300ms
      start_period: 20s
      start_interval: 100ms
  worker:
    image: berth-test/redis:1
    restart: on-failure
    depends_on:
      redis: {condition: service_healthy}
    volumes: ["./order:/order"]
    command: ["/bin/busybox", "sh", "-c", "echo worker >> /order/events; echo worker up; while true; do printf 'INCR jobs\\r\\n' | /bin/busybox nc -w 1 redis 6379; /bin/busybox sleep 0.2; done"]
  web:
    image: berth-test/redis:1
    depends_on: [redis]
    ports: ["127.0.0.1:${WEB_PORT}:8080"]
    command: ["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/www"]
"#;

#[test]
fn redis_worker_and_web_from_debian_packages() {
    redis_worker_and_web_on("embedded");
}

/// Defends: the same project, commands and expectations hold on the
/// Docker backend (`--engine docker`).
#[test]
fn redis_worker_and_web_from_debian_packages_on_docker() {
    redis_worker_and_web_on("docker");
}

/// `down` on drop, on the engine the test used, so a failed assertion
/// leaves nothing running.
struct Down<'a> {
    dir: &'a Path,
    state: &'a Path,
    engine: &'a str,
}

impl Drop for Down<'_> {
    fn drop(&mut self) {
        let _ = Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(["--engine", self.engine, "down", "-t", "1", "-v"])
            .current_dir(self.dir)
            .env("BERTH_STATE_DIR", self.state)
            .output();
    }
}

/// Nothing Docker holds carries the project's label.
fn assert_nothing_left_in_docker(project: &str) {
    let label = format!("label=com.docker.compose.project={project}");
    for what in [
        &["ps", "-aq"][..],
        &["network", "ls", "-q"],
        &["volume", "ls", "-q"],
    ] {
        let out = Command::new("docker")
            .args(what)
            .args(["--filter", &label])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "docker {what:?}: {}",
            text(&out.stderr)
        );
        assert_eq!(text(&out.stdout).trim(), "", "docker {what:?} left");
    }
}

fn redis_worker_and_web_on(engine: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let name = format!("redis{engine}{}", std::process::id());
    let dir = tmp.path().join(&name);
    redis_image_context(&dir.join("redis"));
    std::fs::create_dir_all(dir.join("order")).unwrap();
    std::fs::write(dir.join("compose.yaml"), COMPOSE).unwrap();
    let state = tmp.path().join("state");
    let port = free_port();
    let berth = |args: &[&str]| -> Output {
        Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(["--engine", engine])
            .args(args)
            .current_dir(&dir)
            .env("BERTH_STATE_DIR", &state)
            .env("BERTH_CONFIG", tmp.path().join("none.toml"))
            .env("WEB_PORT", port.to_string())
            .output()
            .unwrap()
    };
    std::fs::write(tmp.path().join("none.toml"), "").unwrap();
    let _down = Down {
        dir: &dir,
        state: &state,
        engine,
    };
    let ok = |args: &[&str]| -> String {
        let out = berth(args);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        text(&out.stdout)
    };

    let up = berth(&["up", "-d", "--wait", "--wait-timeout", "60"]);
    let progress = text(&up.stderr);
    assert!(up.status.success(), "{progress}");
    let ps: serde_json::Value = serde_json::from_str(&ok(&["ps", "--format", "json"])).unwrap();
    let redis = ps
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["Service"] == "redis")
        .unwrap();
    assert_eq!(redis["Health"], "healthy", "{ps}");
    // The worker waited for a healthy redis: in what the containers noted
    // themselves, redis's first passing healthcheck comes before the
    // worker's start.
    let events = std::fs::read_to_string(dir.join("order/events")).unwrap();
    let events: Vec<&str> = events.lines().collect();
    let healthy = events.iter().position(|e| *e == "healthy");
    let worker = events.iter().position(|e| *e == "worker");
    assert!(
        healthy.is_some() && worker.is_some() && healthy < worker,
        "{events:?}"
    );

    let jobs = || -> Option<u64> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        s.write_all(b"GET /cgi-bin/jobs HTTP/1.0\r\n\r\n").ok()?;
        let mut body = String::new();
        s.read_to_string(&mut body).ok()?;
        body.lines()
            .last()?
            .trim()
            .trim_start_matches('$')
            .parse()
            .ok()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let first = loop {
        if let Some(n) = jobs().filter(|n| *n > 0) {
            break n;
        }
        assert!(
            Instant::now() < deadline,
            "the web service never reported jobs"
        );
        std::thread::sleep(Duration::from_millis(200));
    };

    // exec and run talk to redis too.
    let size = ok(&[
        "exec",
        "-T",
        "redis",
        "/bin/busybox",
        "sh",
        "-c",
        "printf 'DBSIZE\\r\\n' | /bin/busybox nc -w 1 127.0.0.1 6379",
    ]);
    assert_eq!(size.trim(), ":1", "{size}");
    let got = ok(&[
        "run",
        "--rm",
        "-T",
        "--no-deps",
        "worker",
        "/bin/busybox",
        "sh",
        "-c",
        "printf 'GET jobs\\r\\n' | /bin/busybox nc -w 1 redis 6379 | /bin/busybox tail -n 1",
    ]);
    assert!(got.trim().parse::<u64>().unwrap_or(0) >= first, "{got}");
    assert!(ok(&["logs", "worker"]).contains("worker up"));

    // Scale the worker; a crash (SIGKILL from outside berth) is restarted by policy.
    ok(&["up", "-d", "--scale", "worker=3"]);
    let ps: serde_json::Value = serde_json::from_str(&ok(&["ps", "--format", "json"])).unwrap();
    let workers: Vec<&serde_json::Value> = ps
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["Service"] == "worker")
        .collect();
    assert_eq!(workers.len(), 3, "{ps}");
    let victim = workers[0]["Name"].as_str().unwrap().to_string();
    let pid = workers[0]["Pid"].as_i64().unwrap() as i32;
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ps: serde_json::Value = serde_json::from_str(&ok(&["ps", "--format", "json"])).unwrap();
        let c = ps
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["Name"] == victim.as_str())
            .cloned()
            .unwrap();
        if c["RestartCount"].as_u64() == Some(1) && c["State"] == "running" {
            break;
        }
        assert!(Instant::now() < deadline, "not restarted: {c}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let later = jobs().unwrap_or(0);
    assert!(
        later > first,
        "the count did not move on ({first} → {later})"
    );

    ok(&["down", "-v", "-t", "1"]);
    assert_nothing_left(&name, &state);
    if engine == "docker" {
        assert_nothing_left_in_docker(&name);
    }
}
