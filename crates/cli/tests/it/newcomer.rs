//! What a newcomer meets (issue 12): name lookups inside containers that do
//! not wait on AAAA queries, a `down` that says why it had to kill, an
//! `init: true` that makes it quick, `berth --version`.

use crate::common::text;
use crate::engine::Project;
use std::net::UdpSocket;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

/// A build context: busybox, and glibc's `getent` with the libraries `ldd`
/// names, so lookups go through glibc's resolver as real programs' do.
fn glibc_image_context(dir: &Path) {
    let root = dir.join("rootfs");
    let put = |host: &str| {
        let to = root.join(host.trim_start_matches('/'));
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(host, &to).unwrap_or_else(|e| panic!("{host}: {e}"));
    };
    put("/usr/bin/getent");
    let ldd = Command::new("ldd").arg("/usr/bin/getent").output().unwrap();
    for line in text(&ldd.stdout).lines() {
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
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/nsswitch.conf"), "hosts: files dns\n").unwrap();
    std::fs::write(dir.join("Dockerfile"), "FROM scratch\nCOPY rootfs/ /\n").unwrap();
}

/// Answers every query with NXDOMAIN and records its type (1 = A, 28 = AAAA).
fn fake_dns(addr: &str) -> Arc<Mutex<Vec<u16>>> {
    let socket = UdpSocket::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            if n < 17 {
                continue;
            }
            // Header (12 bytes), then the name's labels, then QTYPE.
            let mut i = 12;
            while i < n && buf[i] != 0 {
                i += 1 + buf[i] as usize;
            }
            if i + 2 < n {
                record
                    .lock()
                    .unwrap()
                    .push(u16::from_be_bytes([buf[i + 1], buf[i + 2]]));
            }
            let mut reply = buf[..n].to_vec();
            reply[2] |= 0x80; // a response
            reply[3] = (reply[3] & 0xf0) | 3; // NXDOMAIN
            let _ = socket.send_to(&reply, from);
        }
    });
    seen
}

/// Defends: a container on a network without `enable_ipv6` has IPv6 off,
/// as in Docker, so glibc asks only for A records and a resolver that drops
/// AAAA queries costs nothing (it cost npm 5 s per lookup).
#[test]
fn containers_ask_no_aaaa_on_ipv4_networks() {
    let p = Project::new("noaaaa");
    let ctx = p.dir.join("glibc");
    glibc_image_context(&ctx);
    // A subnet of this test's own, so the gateway (the bridge's address on
    // the host, where the fake resolver listens) is known in advance.
    p.write(
        "services:\n  box:\n    build: glibc\n    image: berth-test/glibc:1\n    \
         command: [\"/bin/busybox\", \"sleep\", \"600\"]\n    dns: [\"172.31.253.1\"]\n\
         networks:\n  default:\n    ipam:\n      config:\n        - subnet: 172.31.253.0/24\n",
    );
    let up = p.berth(&["up", "-d", "--build"]);
    assert!(up.status.success(), "up -d: {}", text(&up.stderr));
    let seen = fake_dns("172.31.253.1:53");

    let inet6 = p.berth(&[
        "exec",
        "-T",
        "box",
        "/bin/busybox",
        "cat",
        "/proc/net/if_inet6",
    ]);
    assert!(inet6.status.success(), "{}", text(&inet6.stderr));
    assert_eq!(text(&inet6.stdout), "", "the container has IPv6 addresses");

    let lookup = p.berth(&[
        "exec",
        "-T",
        "box",
        "/usr/bin/getent",
        "ahosts",
        "probe.berth.test",
    ]);
    assert_eq!(
        lookup.status.code(),
        Some(2),
        "getent: {}",
        text(&lookup.stderr)
    );
    let types = seen.lock().unwrap().clone();
    assert!(
        types.contains(&1),
        "no A query reached the resolver: {types:?}"
    );
    assert!(!types.contains(&28), "AAAA queries were sent: {types:?}");
}

/// Defends: a container killed after its grace period is explained (PID 1
/// kept the signal from its child), and `init: true` forwards the signal so
/// nothing needs killing.
#[test]
fn a_kill_after_the_grace_period_is_explained_and_init_avoids_it() {
    let p = Project::new("graceful");
    // Like the seed's `npm start`: PID 1 catches SIGTERM but waits for its
    // child, which never hears it.
    let compose = |init: bool| {
        format!(
            "services:\n  app:\n    image: berth-test/busybox:1\n    init: {init}\n    stop_grace_period: 2s\n    \
             command: [\"/bin/busybox\", \"sh\", \"-c\", \"trap 'exit 0' TERM; /bin/busybox sleep 600; true\"]\n"
        )
    };
    p.write(&compose(false));
    let up = p.berth(&["up", "-d"]);
    assert!(up.status.success(), "up -d: {}", text(&up.stderr));
    let down = p.berth(&["down"]);
    let err = text(&down.stderr);
    assert!(down.status.success(), "down: {err}");
    let line = err
        .lines()
        .find(|l| l.contains("was killed"))
        .unwrap_or_else(|| panic!("no word on the kill: {err}"));
    assert!(line.contains(&format!("{}-app-1", p.name)), "{line}");
    assert!(line.contains("SIGTERM"), "{line}");
    assert!(line.contains("child"), "{line}");
    assert!(line.contains("init: true"), "{line}");

    p.write(&compose(true));
    let up = p.berth(&["up", "-d"]);
    assert!(up.status.success(), "up -d: {}", text(&up.stderr));
    let down = p.berth(&["down"]);
    let err = text(&down.stderr);
    assert!(down.status.success(), "down: {err}");
    assert!(
        !err.contains("was killed"),
        "init: true still needed a kill: {err}"
    );
    p.assert_nothing_left();
}

/// Defends: `down` stops dependants before what they depend on, and
/// independent services together.
#[test]
fn down_stops_dependants_first() {
    let p = Project::new("downorder");
    // Each appends its name to a shared volume when SIGTERM arrives; web
    // takes a while to do so. The order is read back, not timed.
    p.write(
        "services:\n  db:\n    image: berth-test/busybox:1\n    volumes: [\"log:/log\"]\n    \
         command: [\"/bin/busybox\", \"sh\", \"-c\", \"trap 'echo db >> /log/order; exit 0' TERM; while true; do /bin/busybox sleep 0.05; done\"]\n  \
         web:\n    image: berth-test/busybox:1\n    volumes: [\"log:/log\"]\n    depends_on: [db]\n    \
         command: [\"/bin/busybox\", \"sh\", \"-c\", \"trap '/bin/busybox sleep 0.3; echo web >> /log/order; exit 0' TERM; while true; do /bin/busybox sleep 0.05; done\"]\n\
         volumes:\n  log: {}\n",
    );
    let up = p.berth(&["up", "-d"]);
    assert!(up.status.success(), "up -d: {}", text(&up.stderr));
    let volume = p
        .state
        .join("volumes")
        .join(format!("{}_log", p.name))
        .join("_data");
    let down = p.berth(&["down"]);
    assert!(down.status.success(), "down: {}", text(&down.stderr));
    let order = std::fs::read_to_string(volume.join("order")).unwrap();
    assert_eq!(order, "web\ndb\n", "stop order");
    let down = p.berth(&["down", "-v"]);
    assert!(down.status.success(), "down -v: {}", text(&down.stderr));
    p.assert_nothing_left();
}

/// Defends: `berth --version` and `-v` answer as docker compose's do.
#[test]
fn version_flag() {
    for flag in ["--version", "-v"] {
        let out = Command::new(env!("CARGO_BIN_EXE_berth"))
            .arg(flag)
            .output()
            .unwrap();
        assert!(out.status.success(), "{flag}: {}", text(&out.stderr));
        assert!(
            text(&out.stdout).contains(env!("CARGO_PKG_VERSION")),
            "{flag}: {}",
            text(&out.stdout)
        );
    }
}

/// Defends: the README's main job, `bash scripts/run-seed.sh`, serves the
/// seed-runtime example (node from the npm registry on a Debian base made
/// by mmdebstrap) on 127.0.0.1:8080, and Ctrl-C leaves nothing behind.
#[test]
fn the_main_job_script_serves_the_seed() {
    use crate::common::repo;
    use crate::up::{free_port, http_get};
    use std::os::unix::process::CommandExt;
    let tmp = tempfile::tempdir().unwrap();
    let registry = crate::up::Registry {
        port: free_port(),
        storage: tmp.path().join("state/seed-registry"),
    };
    let state = tmp.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(tmp.path().join("none.toml"), "").unwrap();
    // The example publishes 8080: anything else there would answer for it.
    assert!(
        std::net::TcpListener::bind("0.0.0.0:8080").is_ok(),
        "port 8080 is taken by something else; the main job needs it"
    );
    let mut child = Command::new("bash")
        .arg(repo().join("scripts/run-seed.sh"))
        // The test's own build: the script builds the release binary otherwise.
        .env("BERTH", env!("CARGO_BIN_EXE_berth"))
        .env("BERTH_SEED_PORT", registry.port.to_string())
        .env("BERTH_SEED_REGISTRY_DIR", &registry.storage)
        .env("BERTH_STATE_DIR", &state)
        .env("BERTH_CONFIG", tmp.path().join("none.toml"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    // The first run makes the base image and fetches node: minutes.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(900);
    let body = loop {
        let ours = state.join("projects/seed-runtime/state.json").exists();
        if let Some(body) = http_get(8080).filter(|b| ours && b.contains("I am running nodejs")) {
            break body;
        }
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            use std::io::Read;
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            panic!("run-seed.sh ended ({status}) before serving: {err}");
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            panic!("nothing served on 127.0.0.1:8080");
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert!(
        body.contains("I am running nodejs version: 4.2.2"),
        "{body}"
    );
    // Ctrl-C, as a user at the terminal: the whole process group.
    // SAFETY: kill(2) on the process group this test made.
    unsafe { libc::kill(-(child.id() as i32), libc::SIGINT) };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "berth up ignores Ctrl-C"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(status.success() || status.code() == Some(130), "{status}");
    crate::engine::assert_nothing_left("seed-runtime", &state);
}

/// Defends: a container starts with no signal ignored, as Docker's do
/// (berth's supervisor ignores SIGPIPE, and an ignored signal survives exec).
#[test]
fn containers_start_with_default_signal_dispositions() {
    let p = Project::new("sigdfl");
    p.write(
        "services:\n  box:\n    image: berth-test/busybox:1\n    \
         command: [\"/bin/busybox\", \"grep\", \"SigIgn\", \"/proc/self/status\"]\n",
    );
    let up = p.berth(&["up", "-d"]);
    assert!(up.status.success(), "up -d: {}", text(&up.stderr));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let line = loop {
        let logs = text(&p.berth(&["logs", "--no-color", "box"]).stdout);
        if let Some(l) = logs.lines().find(|l| l.contains("SigIgn:")) {
            break l.to_string();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no SigIgn line: {logs}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    // PID 1 itself, no shell in between (a shell changes its own).
    assert!(
        line.trim_end().ends_with("SigIgn:\t0000000000000000"),
        "{line}"
    );
    let down = p.berth(&["down", "-t", "0"]);
    assert!(down.status.success(), "{}", text(&down.stderr));
}
