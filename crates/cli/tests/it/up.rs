//! The seed, verbatim, on the embedded engine: its images come from a
//! loopback registry that `scripts/seed-registry.sh` fills from the npm
//! registry and Debian packages (no image registry is reachable here);
//! `berth up` serves `I am running nodejs version: 4.2.2` on 127.0.0.1:8080;
//! Ctrl-C stops it and leaves nothing behind; then the same detached:
//! `up -d` returns with the project running under its supervisor, `ps` and
//! `logs` show it, `down` removes it all. One test, because the seed's port
//! is fixed at 8080.

use crate::common::{repo, text};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) fn http_get(port: u16) -> Option<String> {
    let mut s =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

pub(crate) struct Registry {
    pub(crate) port: u16,
    pub(crate) storage: std::path::PathBuf,
}

impl Registry {
    /// A loopback registry in `dir` filled by `scripts/seed-registry.sh`
    /// with the seed's images for `node_versions` (and the Debian base
    /// image unless `base` is false), through the test's own berth.
    pub(crate) fn seed(dir: &std::path::Path, node_versions: &str, base: bool) -> Registry {
        let registry = Registry {
            port: free_port(),
            storage: dir.join("registry"),
        };
        let mut cmd = Command::new("bash");
        cmd.arg(repo().join("scripts/seed-registry.sh"))
            .arg(registry.port.to_string())
            .args(["--node-versions", node_versions, "--storage"])
            .arg(&registry.storage)
            .env("BERTH", env!("CARGO_BIN_EXE_berth"));
        if !base {
            cmd.arg("--no-base");
        }
        let prep = cmd.output().unwrap();
        assert!(
            prep.status.success(),
            "seed-registry.sh: {}",
            text(&prep.stderr)
        );
        registry
    }

    /// `BERTH_REGISTRY_MIRRORS` sending quay.io and docker.io here.
    pub(crate) fn mirrors(&self) -> String {
        format!(
            "quay.io=http://127.0.0.1:{0},docker.io=http://127.0.0.1:{0}",
            self.port
        )
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(repo().join("scripts/seed-registry.sh"))
            .arg(self.port.to_string())
            .arg("--storage")
            .arg(&self.storage)
            .arg("--stop")
            .output();
    }
}

/// Takes a project down when the test ends, passing or failing, so a failed
/// assertion never leaves a supervisor and its containers behind.
pub(crate) struct DownOnDrop {
    pub(crate) dir: std::path::PathBuf,
    pub(crate) state: std::path::PathBuf,
}

impl Drop for DownOnDrop {
    fn drop(&mut self) {
        let _ = Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(["down", "-t", "1", "-v"])
            .current_dir(&self.dir)
            .env("BERTH_STATE_DIR", &self.state)
            .output();
    }
}

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    text(&out.stdout)
}

#[test]
fn the_seed_runs_attached_and_detached_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::seed(dir.path(), "4.2.2", false);
    let mirrors = registry.mirrors();

    // A copy named for this run: the project name (and so every resource
    // name) is unique to it.
    let project = format!("seedup{}", std::process::id());
    let seed = dir.path().join(&project);
    std::fs::create_dir_all(&seed).unwrap();
    for f in [
        "docker-compose.yml",
        "Dockerfile",
        ".dockerignore",
        "index.js",
        "package.json",
    ] {
        std::fs::copy(repo().join("examples/seed").join(f), seed.join(f)).unwrap();
    }
    let state = dir.path().join("state");
    std::fs::write(dir.path().join("none.toml"), "").unwrap();
    let mut up = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["up", "-t", "1"])
        .current_dir(&seed)
        .env("BERTH_STATE_DIR", &state)
        .env("BERTH_REGISTRY_MIRRORS", &mirrors)
        .env("BERTH_CONFIG", dir.path().join("none.toml"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    let deadline = Instant::now() + Duration::from_secs(120);
    let mut answer = None;
    while Instant::now() < deadline {
        if let Some(body) = http_get(8080) {
            if body.contains("I am running nodejs version") {
                answer = Some(body);
                break;
            }
        }
        if let Ok(Some(_)) = up.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    // Ctrl-C, as a user at the terminal would.
    unsafe { libc::kill(up.id() as i32, libc::SIGINT) };
    let out = up.wait_with_output().unwrap();
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    let body = answer.unwrap_or_else(|| {
        panic!("no answer on 127.0.0.1:8080\nstdout:\n{stdout}\nstderr:\n{stderr}")
    });
    assert!(
        body.contains("I am running nodejs version: 4.2.2"),
        "{body}"
    );
    assert!(
        out.status.success(),
        "berth up exited with {:?}\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains(&format!("{project}-app-1")) && stdout.contains("listening on 3000"),
        "{stdout}"
    );

    // Nothing left: processes, mounts, namespaces, interfaces, rules, cgroups, volumes, the port.
    let netns = run("ip", &["netns", "list"]);
    assert!(!netns.contains(&project), "{netns}");
    let rules = format!(
        "{}{}",
        run("iptables", &["-S"]),
        run("iptables", &["-t", "nat", "-S"])
    );
    assert!(
        !rules.contains(&format!("berth:{project}_default")),
        "{rules}"
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(state.to_str().unwrap()), "{mounts}");
    let cgroups = crate::common::cgroups_left(&project);
    assert!(cgroups.is_empty(), "cgroups left: {cgroups:?}");
    let volumes = state.join("volumes");
    let left: Vec<_> = std::fs::read_dir(&volumes)
        .map(|d| d.flatten().collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "anonymous volumes left: {left:?}");
    assert!(http_get(8080).is_none(), "the published port is still open");

    // Detached, under the supervisor.
    let _guard = DownOnDrop {
        dir: seed.clone(),
        state: state.clone(),
    };
    let berth = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(args)
            .current_dir(&seed)
            .env("BERTH_STATE_DIR", &state)
            .env("BERTH_REGISTRY_MIRRORS", &mirrors)
            .env("BERTH_CONFIG", dir.path().join("none.toml"))
            .output()
            .unwrap()
    };
    let up = berth(&["up", "-d"]);
    assert!(up.status.success(), "up -d: {}", text(&up.stderr));
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut body = None;
    while Instant::now() < deadline && body.is_none() {
        body = http_get(8080).filter(|b| b.contains("I am running nodejs version: 4.2.2"));
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        body.is_some(),
        "no answer after up -d: {}",
        text(&up.stderr)
    );
    let again = berth(&["up", "-d"]);
    assert!(
        again.status.success() && text(&again.stderr).contains("is up to date"),
        "{}",
        text(&again.stderr)
    );
    let ps: serde_json::Value =
        serde_json::from_slice(&berth(&["ps", "-a", "--format", "json"]).stdout).unwrap();
    let app = ps
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["Service"] == "app")
        .expect("app in ps")
        .clone();
    assert_eq!(app["State"], "running");
    assert_eq!(app["Publishers"][0], "0.0.0.0:8080->3000/tcp");
    let code = ps
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["Service"] == "code")
        .unwrap()
        .clone();
    assert_eq!(code["ExitCode"], 0);
    let logs = text(&berth(&["logs", "app"]).stdout);
    assert!(
        logs.contains(&format!("{project}-app-1 | listening on 3000")),
        "{logs}"
    );

    // A changed service is recreated by the next `up -d`; an unchanged one is not.
    let file = seed.join("docker-compose.yml");
    let changed = std::fs::read_to_string(&file).unwrap().replace(
        "  working_dir: /app\n",
        "  working_dir: /app\n  environment:\n    - CHANGED=1\n",
    );
    std::fs::write(&file, changed).unwrap();
    let again = berth(&["up", "-d"]);
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert!(
        text(&again.stderr).contains(&format!("Container {project}-app-1  Swapped")),
        "{}",
        text(&again.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while http_get(8080).filter(|b| b.contains("4.2.2")).is_none() {
        assert!(Instant::now() < deadline, "no answer after the recreate");
        std::thread::sleep(Duration::from_millis(200));
    }
    let down = berth(&["down", "-t", "1"]);
    assert!(down.status.success(), "down: {}", text(&down.stderr));
    assert!(
        http_get(8080).is_none(),
        "the published port is still open after down"
    );
    assert!(!run("ip", &["netns", "list"]).contains(&project));
    assert!(!std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .contains(state.to_str().unwrap()));
    // No supervisor process left for this project (it runs in the project's directory).
    let seed_real = std::fs::canonicalize(&seed).unwrap();
    let supervisors: Vec<std::path::PathBuf> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read(e.path().join("cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains("__supervise"))
                .unwrap_or(false)
        })
        .filter_map(|e| std::fs::read_link(e.path().join("cwd")).ok())
        .collect();
    assert!(
        !supervisors.contains(&seed_real),
        "a supervisor is still running in {}",
        seed_real.display()
    );
    assert!(text(&berth(&["ps", "-q"]).stdout).is_empty());
    drop(registry);
}

/// `peer` retries its connection: `depends_on` (service_started) only
/// orders the starts, as in docker compose; `data` may not listen yet.
const VOLUMES_PROJECT: &str = r#"services:
  data:
    image: quay.io/oddnetworks/alpine-nodejs:4.2.2
    volumes:
      - store:/data
    command:
      - sh
      - -c
      - |
        echo boot >> /data/boots
        echo "boots: $$(wc -l < /data/boots)"
        exec node -e "require('net').createServer(function (s) { s.end('hi') }).listen(4000)"
  peer:
    image: quay.io/oddnetworks/alpine-nodejs:4.2.2
    depends_on: [data]
    volumes_from:
      - data:ro
    command:
      - sh
      - -c
      - |
        if touch /data/x 2>/dev/null; then echo "volume: writable"; else echo "volume: read-only"; fi
        exec node -e "var n = 0; (function go() { var c = require('net').connect(4000, 'data'); c.on('data', function (d) { console.log('data says ' + d); process.exit(0) }); c.on('error', function (e) { if (++n < 100) return setTimeout(go, 100); console.log('error ' + e.message); process.exit(1) }) })()"
volumes:
  store: {}
"#;

#[test]
fn named_volumes_volumes_from_and_service_names() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::seed(dir.path(), "4.2.2", false);
    let mirrors = registry.mirrors();
    let project = format!("vols{}", std::process::id());
    let root = dir.path().join(&project);
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("compose.yaml"), VOLUMES_PROJECT).unwrap();
    std::fs::write(dir.path().join("none.toml"), "").unwrap();
    let state = dir.path().join("state");
    let _guard = DownOnDrop {
        dir: root.clone(),
        state: state.clone(),
    };
    let berth = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(args)
            .current_dir(&root)
            .env("BERTH_STATE_DIR", &state)
            .env("BERTH_REGISTRY_MIRRORS", &mirrors)
            .env("BERTH_CONFIG", dir.path().join("none.toml"))
            .output()
            .unwrap()
    };
    // Wait until both containers said what they have to say.
    let settle = |expect_boots: &str| -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let logs = text(&berth(&["logs"]).stdout);
            if (logs.contains("data says hi") || logs.contains("error ")) && logs.contains("boots:")
            {
                assert!(
                    logs.contains(expect_boots),
                    "expected {expect_boots:?}:\n{logs}"
                );
                return logs;
            }
            assert!(
                Instant::now() < deadline,
                "containers did not report:\n{logs}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let up = berth(&["up", "-d"]);
    assert!(up.status.success(), "up -d: {}", text(&up.stderr));
    let logs = settle("boots: 1");
    assert!(
        logs.contains("data says hi"),
        "the service name `data` resolves and connects:\n{logs}"
    );
    assert!(
        logs.contains("volume: read-only"),
        "volumes_from with :ro is read-only:\n{logs}"
    );

    // A named volume survives `down`…
    assert!(berth(&["down", "-t", "1"]).status.success());
    assert!(berth(&["up", "-d"]).status.success());
    settle("boots: 2");
    // …and not `down -v`.
    assert!(berth(&["down", "-t", "1", "-v"]).status.success());
    assert!(berth(&["up", "-d"]).status.success());
    settle("boots: 1");
    let down = berth(&["down", "-t", "1", "-v"]);
    assert!(down.status.success(), "{}", text(&down.stderr));
    let left: Vec<_> = std::fs::read_dir(state.join("volumes"))
        .map(|d| d.flatten().collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "volumes left after down -v: {left:?}");
    assert!(!run("ip", &["netns", "list"]).contains(&project));
    drop(registry);
}

/// Four free loopback ports, the first two consecutive (for a range).
fn free_ports() -> [u16; 4] {
    for base in (21000..40000).step_by(7) {
        let ok = (base..base + 4).all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok())
            && std::net::UdpSocket::bind(("127.0.0.1", base + 3)).is_ok();
        if ok {
            return [base, base + 1, base + 2, base + 3];
        }
    }
    panic!("no four free loopback ports");
}

const PORTS_SERVER: &str = "var net = require('net'); \
[5000, 5001, 5002].forEach(function (p) { net.createServer(function (s) { s.end('port ' + p) }).listen(p) }); \
var u = require('dgram').createSocket('udp4'); \
u.on('message', function (m, r) { u.send(new Buffer('udp ' + m), 0, m.length + 4, r.port, r.address) }); \
u.bind(6000); console.log('serving');";

#[test]
fn published_port_forms_short_long_range_and_udp() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::seed(dir.path(), "4.2.2", false);
    let mirrors = registry.mirrors();
    let [a, b, c, d] = free_ports();
    let project = format!("ports{}", std::process::id());
    let root = dir.path().join(&project);
    std::fs::create_dir_all(&root).unwrap();
    let compose = format!(
        "services:\n  web:\n    image: quay.io/oddnetworks/alpine-nodejs:4.2.2\n    command: [node, -e, {script:?}]\n    ports:\n      - \"127.0.0.1:{a}-{b}:5000-5001\"\n      - target: 5002\n        published: \"{c}\"\n        host_ip: 127.0.0.1\n        protocol: tcp\n      - \"127.0.0.1:{d}:6000/udp\"\n",
        script = PORTS_SERVER
    );
    std::fs::write(root.join("compose.yaml"), compose).unwrap();
    std::fs::write(dir.path().join("none.toml"), "").unwrap();
    let state = dir.path().join("state");
    let _guard = DownOnDrop {
        dir: root.clone(),
        state: state.clone(),
    };
    let berth = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(args)
            .current_dir(&root)
            .env("BERTH_STATE_DIR", &state)
            .env("BERTH_REGISTRY_MIRRORS", &mirrors)
            .env("BERTH_CONFIG", dir.path().join("none.toml"))
            .output()
            .unwrap()
    };
    let up = berth(&["up", "-d"]);
    assert!(up.status.success(), "up -d: {}", text(&up.stderr));
    let read_tcp = |p: u16| -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", p)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        Some(out)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while read_tcp(c).as_deref() != Some("port 5002") {
        assert!(
            Instant::now() < deadline,
            "no answer on {c}: {}",
            text(&berth(&["logs"]).stdout)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        read_tcp(a).as_deref(),
        Some("port 5000"),
        "range, first port"
    );
    assert_eq!(
        read_tcp(b).as_deref(),
        Some("port 5001"),
        "range, second port"
    );
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut got = None;
    for _ in 0..20 {
        udp.send_to(b"ping", ("127.0.0.1", d)).unwrap();
        let mut buf = [0u8; 64];
        if let Ok((n, _)) = udp.recv_from(&mut buf) {
            got = Some(String::from_utf8_lossy(&buf[..n]).into_owned());
            break;
        }
    }
    assert_eq!(
        got.as_deref(),
        Some("udp ping"),
        "udp through the published port"
    );
    let ps: serde_json::Value =
        serde_json::from_slice(&berth(&["ps", "-a", "--format", "json"]).stdout).unwrap();
    let publishers = ps[0]["Publishers"].as_array().unwrap().len();
    assert_eq!(publishers, 4, "the range counts as two: {ps}");
    assert!(berth(&["down", "-t", "1"]).status.success());
    assert!(read_tcp(c).is_none(), "port {c} still open after down");
    drop(registry);
}
