//! The embedded engine on bad input and on crashing containers: a port in
//! use, an image that cannot be found, a command missing from the image each
//! fail `up -d` with one clear line and leave nothing behind; `restart:
//! on-failure` restarts a crashing container with back-off and `down` then
//! removes it all.

use crate::common::{cgroups_left, text};
use crate::up::free_port;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// A project directory with a busybox image built by berth into its own
/// state directory (no registry involved).
pub(crate) struct Project {
    _tmp: tempfile::TempDir,
    pub(crate) dir: PathBuf,
    pub(crate) state: PathBuf,
    pub(crate) name: String,
}

impl Project {
    pub(crate) fn new(tag: &str) -> Project {
        let tmp = tempfile::tempdir().unwrap();
        let name = format!("{tag}{}", std::process::id());
        let dir = tmp.path().join(&name);
        let ctx = dir.join("img");
        std::fs::create_dir_all(&ctx).unwrap();
        std::fs::copy("/bin/busybox", ctx.join("busybox")).unwrap();
        std::fs::write(
            ctx.join("Dockerfile"),
            "FROM scratch\nCOPY busybox /bin/busybox\nCMD [\"/bin/busybox\", \"sleep\", \"600\"]\n",
        )
        .unwrap();
        let p = Project {
            state: tmp.path().join("state"),
            dir,
            name,
            _tmp: tmp,
        };
        std::fs::write(p.dir.join("none.toml"), "").unwrap();
        p.write("services:\n  box:\n    build: img\n    image: berth-test/busybox:1\n");
        let built = p.berth(&["build", "-q"]);
        assert!(built.status.success(), "build: {}", text(&built.stderr));
        p
    }

    pub(crate) fn write(&self, compose: &str) {
        std::fs::write(self.dir.join("compose.yaml"), compose).unwrap();
    }

    pub(crate) fn berth(&self, args: &[&str]) -> Output {
        self.berth_env(args, &[])
    }

    /// [`berth`](Self::berth) with extra environment variables.
    pub(crate) fn berth_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(args)
            .current_dir(&self.dir)
            .env("BERTH_STATE_DIR", &self.state)
            .env("BERTH_CONFIG", self.dir.join("none.toml"))
            .env("BERTH_REGISTRY_MIRRORS", "docker.io=http://127.0.0.1:9")
            .envs(env.iter().copied())
            .output()
            .unwrap()
    }

    /// `up -d` fails with one line containing every `needle`, and nothing
    /// of the project is left.
    pub(crate) fn up_fails_with(&self, needles: &[&str]) {
        let out = self.berth(&["up", "-d"]);
        let err = text(&out.stderr);
        assert!(!out.status.success(), "up -d succeeded: {err}");
        let last = err.trim().lines().last().unwrap_or_default();
        assert!(last.starts_with("error: "), "{err}");
        for n in needles {
            assert!(last.contains(n), "{n:?} not in {last:?}\n{err}");
        }
        self.assert_nothing_left();
    }

    pub(crate) fn assert_nothing_left(&self) {
        assert_nothing_left(&self.name, &self.state);
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = self.berth(&["down", "-t", "0"]);
    }
}

/// No namespace, bridge, firewall rule, container process, cgroup, mount,
/// volume, supervisor or state of `project` remains.
pub(crate) fn assert_nothing_left(project: &str, state: &Path) {
    let netns = run("ip", &["netns", "list"]);
    assert!(!netns.contains(project), "namespaces left: {netns}");
    let bridge = berth_network::bridge::bridge_name(&format!("{project}_default"));
    let links = run("ip", &["-o", "link"]);
    assert!(
        !links.contains(&format!(" {bridge}:")),
        "bridge {bridge} left: {links}"
    );
    let rules = format!(
        "{}{}",
        run("iptables", &["-S"]),
        run("iptables", &["-t", "nat", "-S"])
    );
    assert!(
        !rules.contains(&format!("berth:{project}_")),
        "rules left: {rules}"
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(state.to_str().unwrap()),
        "mounts left: {mounts}"
    );
    // A supervisor ends just after its last answer: give it a moment.
    let marker = format!("/berth/{project}-");
    let running = || -> Vec<String> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let cgroup = std::fs::read_to_string(entry.path().join("cgroup")).unwrap_or_default();
            if cgroup.contains(&marker) {
                found.push(format!(
                    "process {:?} in a container of {project}",
                    entry.file_name()
                ));
            }
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline);
            if cmdline.contains("__supervise") && cmdline.contains(project) {
                found.push(format!("a supervisor of {project}"));
            }
        }
        found
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = running();
        if found.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "still running: {found:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let cgroups = cgroups_left(project);
    assert!(cgroups.is_empty(), "cgroups left: {cgroups:?}");
    let volumes: Vec<_> = std::fs::read_dir(state.join("volumes"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(volumes.is_empty(), "volumes left: {volumes:?}");
    let project_dir = state.join("projects").join(project);
    for f in ["supervisor.sock", "state.json"] {
        assert!(!project_dir.join(f).exists(), "{f} left");
    }
}

/// Lines of `out` as they come, read on a thread of their own.
pub(crate) fn lines_of(
    out: impl std::io::Read + Send + 'static,
) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Whether process `pid` is asleep in `nanosleep`/`clock_nanosleep`.
fn sleeping(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/syscall"))
        .is_ok_and(|s| s.starts_with("230 ") || s.starts_with("35 "))
}

/// `cmd`'s output; a command that fails fails the test, so a check on
/// its output never passes because there was none.
fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

#[test]
fn bad_input_fails_with_one_line_and_leaves_nothing() {
    let p = Project::new("badin");

    // A published port someone else holds.
    let taken = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    p.write(&format!(
        "services:\n  box:\n    image: berth-test/busybox:1\n    ports: [\"{port}:80\"]\n"
    ));
    p.up_fails_with(&["box", &port.to_string(), "in use"]);
    drop(taken);

    // An image that is nowhere (its registry refuses connections).
    p.write("services:\n  box:\n    image: berth-test/not-there:1\n");
    p.up_fails_with(&["berth-test/not-there:1", "box"]);

    // A command the image does not have.
    p.write(
        "services:\n  box:\n    image: berth-test/busybox:1\n    command: [\"/usr/bin/not-here\"]\n",
    );
    p.up_fails_with(&["box", "/usr/bin/not-here"]);
}

#[test]
fn on_failure_restarts_with_backoff_and_down_removes_it_all() {
    let p = Project::new("restart");
    // Each start of `crash` notes the host's uptime (10 ms steps) in a
    // file the test reads: the gaps between starts are the back-off.
    std::fs::create_dir_all(p.dir.join("rec")).unwrap();
    p.write(
        "services:\n  crash:\n    image: berth-test/busybox:1\n    restart: on-failure\n    \
         volumes: [\"./rec:/rec\"]\n    \
         command: [\"/bin/busybox\", \"sh\", \"-c\", \"/bin/busybox cut -d' ' -f1 /proc/uptime >> /rec/boots; echo boot; exit 3\"]\n  \
         once:\n    image: berth-test/busybox:1\n    command: [\"/bin/busybox\", \"sh\", \"-c\", \"sleep 0.4; exit 4\"]\n",
    );
    let up = p.berth(&["up", "-d"]);
    assert!(up.status.success(), "up -d: {}", text(&up.stderr));
    let deadline = Instant::now() + Duration::from_secs(30);
    let (crash, once) = loop {
        let ps: serde_json::Value =
            serde_json::from_slice(&p.berth(&["ps", "-a", "--format", "json"]).stdout).unwrap();
        let find = |svc: &str| {
            ps.as_array()
                .unwrap()
                .iter()
                .find(|c| c["Service"] == svc)
                .cloned()
                .unwrap()
        };
        let (crash, once) = (find("crash"), find("once"));
        if crash["RestartCount"].as_u64().unwrap_or(0) >= 6 && once["State"] == "exited" {
            break (crash, once);
        }
        assert!(Instant::now() < deadline, "no restarts: {ps}");
        std::thread::sleep(Duration::from_millis(200));
    };
    // Back-off: the waits before restarts grow, doubling from 100 ms. The
    // first two are left out: at 100 and 200 ms they are no longer than
    // what starting a container costs on a busy machine.
    let boots: Vec<f64> = std::fs::read_to_string(p.dir.join("rec/boots"))
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert!(boots.len() >= 7, "{boots:?}");
    let gaps: Vec<f64> = boots[2..7].windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.windows(2).all(|g| g[1] > g[0]) && gaps[3] > 2.0 * gaps[0],
        "the waits between restarts do not grow: {gaps:?}"
    );
    assert_ne!(crash["State"], "exited", "{crash}");
    // Without a policy, a container that exits stays exited.
    assert_eq!(once["ExitCode"], 4, "{once}");
    assert_eq!(once["RestartCount"], 0, "{once}");
    let logs = text(&p.berth(&["logs", "crash"]).stdout);
    assert!(logs.matches("| boot").count() >= 3, "{logs}");

    let down = p.berth(&["down", "-t", "1"]);
    assert!(down.status.success(), "down: {}", text(&down.stderr));
    p.assert_nothing_left();
}

#[test]
fn lifecycle_commands_act_on_running_containers() {
    let p = Project::new("life");
    let port = free_port();
    p.write(&format!(
        "services:\n  web:\n    image: berth-test/busybox:1\n    ports: [\"127.0.0.1:{port}:80\"]\n    \
         command: [\"/bin/busybox\", \"sh\", \"-c\", \"echo serving; exec /bin/busybox httpd -f -p 80 -h /\"]\n  \
         worker:\n    image: berth-test/busybox:1\n    command: [\"/bin/busybox\", \"sh\", \"-c\", \"echo working; exec /bin/busybox sleep 600\"]\n"
    ));
    let ok = |args: &[&str]| {
        let out = p.berth(args);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        text(&out.stdout)
    };
    let state_of = |service: &str| -> serde_json::Value {
        let ps: serde_json::Value =
            serde_json::from_str(&ok(&["ps", "-a", "--format", "json"])).unwrap();
        ps.as_array()
            .unwrap()
            .iter()
            .find(|c| c["Service"] == service)
            .cloned()
            .unwrap_or(serde_json::Value::Null)
    };
    ok(&["up", "--wait", "--wait-timeout", "30"]);
    assert_eq!(state_of("web")["State"], "running");

    let ls: serde_json::Value = serde_json::from_str(&ok(&["ls", "--format", "json"])).unwrap();
    assert!(
        ls.as_array()
            .unwrap()
            .iter()
            .any(|p2| p2["Name"] == p.name.as_str()),
        "{ls}"
    );
    assert_eq!(
        ok(&["port", "web", "80"]).trim(),
        format!("127.0.0.1:{port}")
    );
    let top = ok(&["top", "web"]);
    assert!(top.contains("httpd -f -p 80"), "{top}");

    // exec: env, working dir, user, exit code passed through.
    let out = p.berth(&[
        "exec",
        "-T",
        "-e",
        "GREETING=hi",
        "-w",
        "/bin",
        "-u",
        "1000:1000",
        "web",
        "/bin/busybox",
        "sh",
        "-c",
        "echo $GREETING; pwd; /bin/busybox id -u; exit 7",
    ]);
    assert_eq!(
        text(&out.stdout),
        "hi\n/bin\n1000\n",
        "{}",
        text(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(7));
    let nowhere = p.berth(&[
        "exec",
        "-T",
        "-w",
        "/nowhere",
        "web",
        "/bin/busybox",
        "true",
    ]);
    assert!(
        text(&nowhere.stderr).contains("working directory /nowhere does not exist"),
        "{}",
        text(&nowhere.stderr)
    );
    let missing = p.berth(&["exec", "-T", "web", "/no/such/tool"]);
    assert!(!missing.status.success());
    let err = text(&missing.stderr);
    assert!(
        err.contains("/no/such/tool") && !err.contains(".0"),
        "{err}"
    );

    // cp both ways, and no way out of the container's root.
    let host = p.dir.join("to-copy");
    std::fs::create_dir_all(host.join("sub")).unwrap();
    std::fs::write(host.join("a.txt"), "alpha\n").unwrap();
    std::fs::write(host.join("sub/b.txt"), "beta\n").unwrap();
    std::os::unix::fs::symlink("a.txt", host.join("link")).unwrap();
    ok(&["cp", host.to_str().unwrap(), "web:/srv"]);
    let listing = p.berth(&[
        "exec",
        "-T",
        "web",
        "/bin/busybox",
        "sh",
        "-c",
        "cat /srv/a.txt /srv/sub/b.txt; /bin/busybox readlink /srv/link",
    ]);
    assert_eq!(
        text(&listing.stdout),
        "alpha\nbeta\na.txt\n",
        "{}",
        text(&listing.stderr)
    );
    let back = p.dir.join("back");
    std::fs::create_dir_all(&back).unwrap();
    ok(&["cp", "web:/etc/hosts", back.to_str().unwrap()]);
    assert!(std::fs::read_to_string(back.join("hosts"))
        .unwrap()
        .contains("localhost"));
    ok(&[
        "exec",
        "-T",
        "web",
        "/bin/busybox",
        "ln",
        "-s",
        "/",
        "/escape",
    ]);
    let escape = p.berth(&["cp", "web:/escape/etc/os-release", back.to_str().unwrap()]);
    assert!(
        !escape.status.success(),
        "copied the host's os-release through a symlink"
    );
    assert!(!back.join("os-release").exists());

    // Events while a container is stopped and started again.
    let mut events = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["events", "--json"])
        .current_dir(&p.dir)
        .env("BERTH_STATE_DIR", &p.state)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let seen = lines_of(events.stdout.take().unwrap());
    let worker_id = format!("{}-worker-1", p.name);
    let web_id = format!("{}-web-1", p.name);
    // Subscribed once an event made after it started reaches it: a signal
    // httpd ignores makes a `kill` event for web, not for worker.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        ok(&["kill", "-s", "WINCH", "web"]);
        let got = seen.recv_timeout(Duration::from_secs(1));
        if got.as_ref().is_ok_and(|l| l.contains(&web_id)) {
            break;
        }
        assert!(Instant::now() < deadline, "events never reported: {got:?}");
    }
    ok(&["stop", "-t", "1", "worker"]);
    assert_eq!(state_of("worker")["State"], "exited");
    let running = ok(&["ps", "--services"]);
    assert_eq!(
        running.trim(),
        "web",
        "ps without -a lists running ones only"
    );
    ok(&["start", "worker"]);
    assert_eq!(state_of("worker")["State"], "running");
    let mut actions = Vec::new();
    while actions.last().map(String::as_str) != Some("start") {
        let line = seen
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("no start event for worker ({e}): {actions:?}"));
        let Ok(e) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if e["id"] == worker_id.as_str() {
            actions.push(e["action"].as_str().unwrap_or_default().to_string());
        }
    }
    assert_eq!(actions, ["die", "start"]);
    unsafe { libc::kill(events.id() as i32, libc::SIGINT) };
    assert!(events.wait().unwrap().success());

    // `wait` blocks while the container runs and returns its exit code once
    // it is killed.
    let mut waiter = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["wait", "worker"])
        .current_dir(&p.dir)
        .env("BERTH_STATE_DIR", &p.state)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Attached once it sleeps between looks at the container (a `wait` that
    // found it exited would have returned instead).
    let deadline = Instant::now() + Duration::from_secs(20);
    while !sleeping(waiter.id()) {
        assert!(
            waiter.try_wait().unwrap().is_none(),
            "wait returned while worker runs"
        );
        assert!(Instant::now() < deadline, "wait never got to waiting");
        std::thread::sleep(Duration::from_millis(10));
    }
    ok(&["kill", "-s", "KILL", "worker"]);
    let waited = waiter.wait_with_output().unwrap();
    assert_eq!(text(&waited.stdout).trim(), "137");
    assert_eq!(waited.status.code(), Some(137));

    // Logs with timestamps, and time windows.
    let logs = ok(&["logs", "-t", "worker"]);
    let line = logs.lines().find(|l| l.contains("working")).expect(&logs);
    assert!(
        line.contains(" | 20") && line.contains("Z working"),
        "{line}"
    );
    assert!(!ok(&["logs", "--since", "1h", "worker"]).is_empty());
    assert!(ok(&["logs", "--until", "1h", "worker"]).is_empty());
    let bad = p.berth(&["logs", "--since", "yesterday"]);
    assert!(!bad.status.success() && text(&bad.stderr).contains("--since"));

    // rm refuses a running container without -f.
    let refused = p.berth(&["rm", "web"]);
    assert!(!refused.status.success(), "rm removed a running container");
    assert!(
        text(&refused.stderr).contains("running"),
        "{}",
        text(&refused.stderr)
    );
    ok(&["rm", "worker"]);
    assert!(state_of("worker").is_null());
    ok(&["restart", "web"]);
    assert_eq!(state_of("web")["State"], "running");
    ok(&["down", "-t", "1"]);
    p.assert_nothing_left();
}

#[test]
fn networks_aliases_internal_links_dns_and_shared_namespaces() {
    let p = Project::new("nets");
    // A /24 from the pool's range, unlikely to be taken by other tests.
    let third = 200 + (std::process::id() % 50);
    let compose = format!(
        r#"services:
  web:
    image: berth-test/busybox:1
    command: ["/bin/busybox", "httpd", "-f", "-p", "80", "-h", "/"]
    networks:
      front:
        aliases: [www]
      back:
        ipv4_address: 172.31.{third}.50
  db:
    image: berth-test/busybox:1
    networks: [back]
    dns: [192.0.2.53]
    dns_search: [example.test]
  client:
    image: berth-test/busybox:1
    networks: [front]
    links: ["web:legacy-web"]
  sidecar:
    image: berth-test/busybox:1
    network_mode: "service:web"
networks:
  front: {{}}
  back:
    internal: true
    ipam:
      config:
        - subnet: 172.31.{third}.0/24
"#
    );
    p.write(&compose);
    let up = p.berth(&["up", "-d"]);
    assert!(up.status.success(), "up -d: {}", text(&up.stderr));
    let exec = |svc: &str, script: &str| -> String {
        // No `exec` yet for the embedded engine: read through /proc of the container's PID 1.
        let ps: serde_json::Value =
            serde_json::from_slice(&p.berth(&["ps", "--format", "json"]).stdout).unwrap();
        let pid = ps
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["Service"] == svc)
            .and_then(|c| c["Pid"].as_i64())
            .unwrap_or_else(|| panic!("{svc} has no pid: {ps}"));
        let out = Command::new("nsenter")
            .args(["-t", &pid.to_string(), "-m", "-n", "-u", "-p", "-r", "-w"])
            .args(["/bin/busybox", "sh", "-c", script])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "in {svc}: {script}: {}",
            text(&out.stderr)
        );
        text(&out.stdout)
    };
    let client_hosts = exec("client", "cat /etc/hosts");
    for name in ["web", "www", "legacy-web"] {
        assert!(
            client_hosts.split_whitespace().any(|w| w == name),
            "{name} not in client's hosts:\n{client_hosts}"
        );
    }
    assert!(
        !client_hosts.split_whitespace().any(|w| w == "db"),
        "client shares no network with db:\n{client_hosts}"
    );
    let db_hosts = exec("db", "cat /etc/hosts");
    let web_line = db_hosts
        .lines()
        .find(|l| l.split_whitespace().any(|w| w == "web"))
        .unwrap_or_else(|| panic!("web not in db's hosts:\n{db_hosts}"));
    assert!(
        web_line.starts_with(&format!("172.31.{third}.50")),
        "{web_line}"
    );
    // Internal: no default route out of the back network.
    let routes = exec("db", "/bin/busybox ip route");
    assert!(!routes.contains("default"), "{routes}");
    assert!(exec("client", "/bin/busybox ip route").contains("default"));
    let resolv = exec("db", "cat /etc/resolv.conf");
    assert!(
        resolv.contains("nameserver 192.0.2.53") && resolv.contains("search example.test"),
        "{resolv}"
    );
    // The sidecar shares web's namespace: web answers on its loopback.
    let page = exec(
        "sidecar",
        "/bin/busybox wget -qO- http://127.0.0.1:80/etc/hosts && echo fetched",
    );
    assert!(
        page.contains("localhost") && page.contains("fetched"),
        "{page}"
    );
    let web_addrs = exec("web", "/bin/busybox ip -o -4 addr");
    assert!(
        web_addrs.contains("eth1"),
        "two networks, two interfaces: {web_addrs}"
    );
    let down = p.berth(&["down", "-t", "1"]);
    assert!(down.status.success(), "{}", text(&down.stderr));
    p.assert_nothing_left();

    // An external network that is not there.
    p.write(
        "services:\n  box:\n    image: berth-test/busybox:1\n    networks: [outside]\nnetworks:\n  outside:\n    external: true\n    name: no-such-net\n",
    );
    p.up_fails_with(&["no-such-net", "external"]);
}

#[test]
fn healthchecks_gate_dependants_and_show_in_ps() {
    let p = Project::new("health");
    // An image with its own HEALTHCHECK, inherited by a service.
    let ctx = p.dir.join("hc");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::copy("/bin/busybox", ctx.join("busybox")).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nCOPY busybox /bin/busybox\nHEALTHCHECK --interval=1s CMD [\"/bin/busybox\", \"true\"]\n\
         CMD [\"/bin/busybox\", \"sleep\", \"600\"]\n",
    )
    .unwrap();
    let port = free_port();
    let probe = r#"["CMD", "/bin/busybox", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:80/etc/hosts"]"#;
    let compose = |env: &str| {
        format!(
            r#"services:
  web:
    image: berth-test/busybox:1
    command: ["/bin/busybox", "sh", "-c", "sleep 0.5; exec /bin/busybox httpd -f -p 80 -h /"]
    environment: [GEN={env}]
    ports: ["127.0.0.1:{port}:80"]
    healthcheck:
      test: {probe}
      interval: 200ms
      retries: 2
      start_period: 10s
      start_interval: 100ms
  worker:
    image: berth-test/busybox:1
    depends_on:
      web: {{condition: service_healthy}}
  inherited:
    build: hc
    image: berth-test/hc:1
"#
        )
    };
    p.write(&compose("1"));
    let up = p.berth(&["up", "-d"]);
    assert!(up.status.success(), "up -d: {}", text(&up.stderr));
    let err = text(&up.stderr);
    let web_at = err.find("web-1  Started").expect(&err);
    let worker_at = err.find("worker-1  Creating").expect(&err);
    assert!(web_at < worker_at, "{err}");
    let health = |svc: &str| -> String {
        let ps: serde_json::Value =
            serde_json::from_slice(&p.berth(&["ps", "--format", "json"]).stdout).unwrap();
        ps.as_array()
            .unwrap()
            .iter()
            .find(|c| c["Service"] == svc)
            .and_then(|c| c["Health"].as_str())
            .unwrap_or("none")
            .to_string()
    };
    // web was healthy before worker started.
    assert_eq!(health("web"), "healthy");
    assert_eq!(health("worker"), "none");
    let deadline = Instant::now() + Duration::from_secs(20);
    while health("inherited") != "healthy" {
        assert!(
            Instant::now() < deadline,
            "the image's HEALTHCHECK never passed"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // A swap waits for the new container's healthcheck.
    p.write(&compose("2"));
    let up = p.berth(&["up", "-d"]);
    assert!(up.status.success(), "{}", text(&up.stderr));
    assert!(
        text(&up.stderr).contains("web-1  Swapped"),
        "{}",
        text(&up.stderr)
    );
    assert_eq!(health("web"), "healthy");

    // A dependency that never gets healthy fails the dependant's `up`.
    p.write(
        r#"services:
  sick:
    image: berth-test/busybox:1
    healthcheck:
      test: ["CMD", "/bin/busybox", "false"]
      interval: 100ms
      retries: 2
  needs:
    image: berth-test/busybox:1
    depends_on:
      sick: {condition: service_healthy}
"#,
    );
    let down = p.berth(&["down", "-t", "0"]);
    assert!(down.status.success());
    p.up_fails_with(&["dependency sick failed", "healthcheck failed"]);
}

#[test]
fn run_makes_one_off_containers() {
    let p = Project::new("oneoff");
    let port = free_port();
    p.write(
        "services:\n  web:\n    image: berth-test/busybox:1\n    command: [\"/bin/busybox\", \"httpd\", \"-f\", \"-p\", \"80\", \"-h\", \"/\"]\n  \
         job:\n    image: berth-test/busybox:1\n    depends_on: [web]\n",
    );
    let services = |all: bool| -> Vec<String> {
        let args: &[&str] = if all {
            &["ps", "-a", "--format", "json"]
        } else {
            &["ps", "--format", "json"]
        };
        let ps: serde_json::Value = serde_json::from_slice(&p.berth(args).stdout).unwrap();
        ps.as_array()
            .unwrap()
            .iter()
            .map(|c| c["Name"].as_str().unwrap_or_default().to_string())
            .collect()
    };

    // Attached, --rm, --no-deps: output and exit code come back, nothing stays.
    let out = p.berth(&[
        "run",
        "--rm",
        "--no-deps",
        "-T",
        "-e",
        "X=y",
        "job",
        "/bin/busybox",
        "sh",
        "-c",
        "echo one-off $X; exit 5",
    ]);
    assert_eq!(text(&out.stdout), "one-off y\n", "{}", text(&out.stderr));
    assert_eq!(out.status.code(), Some(5));
    assert!(services(true).is_empty(), "{:?}", services(true));

    // Detached with a name and a published port; its dependency comes up first.
    let out = p.berth(&[
        "run",
        "-d",
        "--name",
        "adhoc-web",
        "-p",
        &format!("127.0.0.1:{port}:80"),
        "web",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "adhoc-web");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            use std::io::{Read, Write};
            s.write_all(b"GET /etc/hosts HTTP/1.0\r\n\r\n").unwrap();
            let mut body = String::new();
            let _ = s.read_to_string(&mut body);
            if body.contains("200 OK") {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the one-off's port never answered"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = p.berth(&["run", "-T", "job", "/bin/busybox", "true"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let names = services(true);
    assert!(names.contains(&"adhoc-web".to_string()), "{names:?}");
    assert!(
        names.contains(&format!("{}-web-1", p.name)),
        "run started the dependency: {names:?}"
    );
    // `up` leaves one-offs alone, `down` removes them.
    let up = p.berth(&["up", "-d"]);
    assert!(up.status.success(), "{}", text(&up.stderr));
    assert!(services(false).contains(&"adhoc-web".to_string()));
    let down = p.berth(&["down", "-t", "0"]);
    assert!(down.status.success());
    p.assert_nothing_left();
}

#[test]
fn security_defaults_resources_and_pause() {
    let p = Project::new("secure");
    p.write(
        r#"services:
  plain:
    image: berth-test/busybox:1
    mem_limit: 64m
    pids_limit: 40
    ulimits:
      nofile: {soft: 512, hard: 1024}
  admin:
    image: berth-test/busybox:1
    cap_add: [SYS_ADMIN]
    security_opt: ["seccomp=unconfined"]
  ticker:
    image: berth-test/busybox:1
    command: ["/bin/busybox", "sh", "-c", "while true; do echo tick; /bin/busybox sleep 0.05; done"]
"#,
    );
    let up = p.berth(&["up", "-d"]);
    assert!(up.status.success(), "up -d: {}", text(&up.stderr));
    let exec = |svc: &str, script: &str| -> (bool, String) {
        let out = p.berth(&["exec", "-T", svc, "/bin/busybox", "sh", "-c", script]);
        (
            out.status.success(),
            format!("{}{}", text(&out.stdout), text(&out.stderr)),
        )
    };
    // Docker's defaults hold: no mounts, no modules, no host processes, no
    // writes to the kernel's settings.
    let (ok, out) = exec(
        "plain",
        "/bin/busybox mkdir -p /mnt && /bin/busybox mount -t tmpfs x /mnt",
    );
    assert!(!ok, "a default container mounted a filesystem: {out}");
    // A real file (busybox itself): the module syscalls are refused before
    // the file is parsed (seccomp, then CAP_SYS_MODULE), so only
    // confinement gives EPERM. This kernel has no module support at all, so
    // without confinement the same call says so instead (`admin` below).
    let load = "/bin/busybox insmod /bin/busybox";
    let (ok, out) = exec("plain", load);
    assert!(
        !ok && out.contains("Operation not permitted"),
        "a default container could try to load a module: {out}"
    );
    let (_, procs) = exec(
        "plain",
        "/bin/busybox ls /proc | /bin/busybox grep -c '^[0-9]'",
    );
    assert!(
        procs.trim().parse::<u32>().unwrap_or(99) < 5,
        "host processes visible: {procs}"
    );
    let (ok, out) = exec("plain", "echo x > /proc/sys/kernel/hostname");
    assert!(!ok, "{out}");
    // Limits reach the kernel.
    let (_, nofile) = exec("plain", "ulimit -n");
    assert_eq!(nofile.trim(), "512");
    let ps: serde_json::Value =
        serde_json::from_slice(&p.berth(&["ps", "--format", "json"]).stdout).unwrap();
    let id_of = |svc: &str| {
        ps.as_array()
            .unwrap()
            .iter()
            .find(|c| c["Service"] == svc)
            .and_then(|c| c["ID"].as_str())
            .unwrap()
            .to_string()
    };
    let plain = id_of("plain");
    let read = |path: String| std::fs::read_to_string(&path).map(|s| s.trim().to_string());
    let memory = read(format!(
        "/sys/fs/cgroup/memory/berth/{plain}/memory.limit_in_bytes"
    ))
    .or_else(|_| read(format!("/sys/fs/cgroup/berth/{plain}/memory.max")))
    .unwrap();
    assert_eq!(memory, (64u64 << 20).to_string());
    let pids = read(format!("/sys/fs/cgroup/pids/berth/{plain}/pids.max"))
        .or_else(|_| read(format!("/sys/fs/cgroup/berth/{plain}/pids.max")))
        .unwrap();
    assert_eq!(pids, "40");
    // The explicit opt-out: SYS_ADMIN without seccomp may mount.
    let (ok, out) = exec(
        "admin",
        "/bin/busybox mkdir -p /mnt && /bin/busybox mount -t tmpfs x /mnt && echo mounted",
    );
    assert!(ok && out.contains("mounted"), "{out}");
    let (ok, out) = exec("admin", load);
    assert!(
        !ok && !out.contains("Operation not permitted"),
        "without seccomp the kernel itself answers: {out}"
    );

    // pause freezes, unpause thaws.
    let count = || {
        text(&p.berth(&["logs", "ticker"]).stdout)
            .matches("tick")
            .count()
    };
    let ok = p.berth(&["pause", "ticker"]);
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    let ps = text(&p.berth(&["ps", "--format", "json"]).stdout);
    assert!(ps.contains("\"paused\""), "{ps}");
    // The kernel's own word that the ticker cannot run.
    let ticker = id_of("ticker");
    let freezer = || {
        read(format!(
            "/sys/fs/cgroup/freezer/berth/{ticker}/freezer.state"
        ))
        .or_else(|_| {
            read(format!("/sys/fs/cgroup/berth/{ticker}/cgroup.events")).map(|events| {
                let frozen = events.lines().any(|l| l == "frozen 1");
                if frozen { "FROZEN" } else { "THAWED" }.to_string()
            })
        })
        .unwrap_or_else(|e| panic!("no freezer state for {ticker}: {e}"))
    };
    assert_eq!(freezer(), "FROZEN");
    let frozen = count();
    assert!(p.berth(&["unpause", "ticker"]).status.success());
    assert_eq!(freezer(), "THAWED");
    let deadline = Instant::now() + Duration::from_secs(10);
    while count() <= frozen {
        assert!(Instant::now() < deadline, "unpause did not thaw it");
        std::thread::sleep(Duration::from_millis(50));
    }
    let down = p.berth(&["down", "-t", "0"]);
    assert!(down.status.success(), "{}", text(&down.stderr));
    p.assert_nothing_left();
}

#[test]
fn a_killed_supervisor_is_taken_over_without_losing_output() {
    let p = Project::new("crash");
    let port = free_port();
    p.write(&format!(
        "services:\n  web:\n    image: berth-test/busybox:1\n    ports: [\"127.0.0.1:{port}:80\"]\n    \
         command: [\"/bin/busybox\", \"httpd\", \"-f\", \"-p\", \"80\", \"-h\", \"/\"]\n  \
         counter:\n    image: berth-test/busybox:1\n    \
         command: [\"/bin/busybox\", \"sh\", \"-c\", \"i=0; while true; do i=$$((i+1)); echo n=$$i; /bin/busybox sleep 0.02; done\"]\n"
    ));
    let supervisor = || -> i32 {
        let state: serde_json::Value = serde_json::from_slice(
            &std::fs::read(p.state.join("projects").join(&p.name).join("state.json")).unwrap(),
        )
        .unwrap();
        state["supervisor_pid"].as_i64().unwrap() as i32
    };
    let kill_supervisor = || {
        let pid = supervisor();
        unsafe { libc::kill(pid, libc::SIGKILL) };
        while std::path::Path::new(&format!("/proc/{pid}")).exists() {
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let ids = || -> Vec<String> {
        let ps: serde_json::Value =
            serde_json::from_slice(&p.berth(&["ps", "--format", "json"]).stdout).unwrap();
        let mut v: Vec<String> = ps
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["ID"].as_str().unwrap().to_string())
            .collect();
        v.sort();
        v
    };
    let answers = || {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
            return false;
        };
        let _ = s.write_all(b"GET /etc/hosts HTTP/1.0\r\n\r\n");
        let mut body = String::new();
        let _ = s.read_to_string(&mut body);
        body.contains("200 OK")
    };
    let up = p.berth(&["up", "-d"]);
    assert!(up.status.success(), "up -d: {}", text(&up.stderr));
    let before = ids();
    assert_eq!(before.len(), 2);
    let logged = || -> Vec<u64> {
        text(&p.berth(&["logs", "--no-color", "counter"]).stdout)
            .lines()
            .filter_map(|l| l.rsplit("n=").next()?.trim().parse().ok())
            .collect()
    };
    let until_logged = |n: usize| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while logged().len() < n {
            assert!(Instant::now() < deadline, "fewer than {n} lines logged");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    until_logged(5);
    let ps: serde_json::Value =
        serde_json::from_slice(&p.berth(&["ps", "--format", "json"]).stdout).unwrap();
    let counter = ps
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["Service"] == "counter")
        .and_then(|c| c["ID"].as_str())
        .unwrap()
        .to_string();
    let output = p.state.join("containers").join(&counter).join("output");
    let written = || std::fs::metadata(&output).unwrap().len();

    kill_supervisor();
    // The containers keep running and writing while nobody supervises them.
    let at_kill = written();
    let deadline = Instant::now() + Duration::from_secs(20);
    while written() < at_kill + 100 {
        assert!(
            Instant::now() < deadline,
            "the counter stopped writing without a supervisor"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let unsupervised = written();
    // The next command, whatever it is, brings a supervisor back.
    let ps = p.berth(&["ps"]);
    assert!(ps.status.success(), "{}", text(&ps.stderr));
    assert!(
        text(&ps.stderr).contains("takes over"),
        "{}",
        text(&ps.stderr)
    );
    assert_eq!(ids(), before, "the same containers, no duplicates");
    let again = p.berth(&["up", "-d"]);
    assert!(
        text(&again.stderr).contains("up to date"),
        "{}",
        text(&again.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !answers() {
        assert!(
            Instant::now() < deadline,
            "the port was not published again"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Every line, once, in order, across the two supervisors. A line
    // "n=<number>\n" takes at least 4 bytes, so this many lines include
    // everything written while nobody read.
    until_logged(unsupervised as usize / 4 + 1);
    let numbers = logged();
    let expected: Vec<u64> = (1..=numbers.len() as u64).collect();
    assert_eq!(numbers, expected, "lines lost or repeated");

    // And after a second crash, `down` still removes everything.
    kill_supervisor();
    let down = p.berth(&["down", "-t", "0"]);
    assert!(down.status.success(), "{}", text(&down.stderr));
    p.assert_nothing_left();
}

#[test]
fn log_rotation_and_drivers() {
    let p = Project::new("logrot");
    p.write(
        r#"services:
  chatty:
    image: berth-test/busybox:1
    command: ["/bin/busybox", "sh", "-c", "for i in $$(/bin/busybox seq 1 60); do echo line-$$i; done; /bin/busybox sleep 600"]
    logging:
      driver: json-file
      options: {max-size: "400", max-file: "3"}
  silent:
    image: berth-test/busybox:1
    command: ["/bin/busybox", "sh", "-c", "echo not-kept; /bin/busybox sleep 600"]
    logging:
      driver: none
"#,
    );
    let up = p.berth(&["up", "-d"]);
    assert!(up.status.success(), "up -d: {}", text(&up.stderr));
    let logs_dir = p.state.join("projects").join(&p.name).join("logs");
    let deadline = Instant::now() + Duration::from_secs(10);
    let logs = loop {
        let logs = text(&p.berth(&["logs", "--no-color", "chatty"]).stdout);
        if logs.contains("line-60") {
            break logs;
        }
        assert!(Instant::now() < deadline, "{logs}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let files: Vec<String> = std::fs::read_dir(&logs_dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("chatty"))
        .collect();
    assert_eq!(files.len(), 3, "{files:?}");
    for f in &files {
        let size = std::fs::metadata(logs_dir.join(f)).unwrap().len();
        assert!(size <= 400, "{f} is {size} bytes");
    }
    // What the rotation kept comes back in order, across the files.
    let numbers: Vec<u32> = logs
        .lines()
        .filter_map(|l| l.rsplit("line-").next()?.trim().parse().ok())
        .collect();
    assert!(numbers.len() > 10, "{logs}");
    assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "{numbers:?}");
    assert_eq!(numbers.last(), Some(&60));
    assert_eq!(
        text(&p.berth(&["logs", "--tail", "2", "chatty"]).stdout)
            .lines()
            .count(),
        2
    );
    let silent = text(&p.berth(&["logs", "silent"]).stdout);
    assert!(!silent.contains("not-kept"), "{silent}");
    let down = p.berth(&["down", "-t", "0"]);
    assert!(down.status.success());

    p.write("services:\n  x:\n    image: berth-test/busybox:1\n    logging: {driver: syslog}\n");
    p.up_fails_with(&["syslog", "json-file"]);
}

#[test]
fn init_forwards_the_stop_signal() {
    let p = Project::new("initpid");
    let script = r#"["/bin/busybox", "sh", "-c", "/bin/busybox sleep 600; echo never"]"#;
    p.write(&format!(
        "services:\n  with-init:\n    image: berth-test/busybox:1\n    init: true\n    command: {script}\n  \
         without:\n    image: berth-test/busybox:1\n    command: {script}\n"
    ));
    let up = p.berth(&["up", "-d"]);
    assert!(up.status.success(), "{}", text(&up.stderr));
    let pid1 = text(
        &p.berth(&[
            "exec",
            "-T",
            "with-init",
            "/bin/busybox",
            "cat",
            "/proc/1/cmdline",
        ])
        .stdout,
    );
    assert!(
        pid1.starts_with("/sbin/berth-init\0--\0/bin/busybox"),
        "{pid1:?}"
    );
    // A grace period of an hour: a stop that waited it out instead of
    // killing at once would not end before the deadline.
    let mut stop = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["stop", "-t", "3600"])
        .current_dir(&p.dir)
        .env("BERTH_STATE_DIR", &p.state)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = stop.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = stop.kill();
            panic!("stop waited for the grace period instead of killing at once");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "stop failed");
    let ps: serde_json::Value =
        serde_json::from_slice(&p.berth(&["ps", "-a", "--format", "json"]).stdout).unwrap();
    let code = |svc: &str| {
        ps.as_array()
            .unwrap()
            .iter()
            .find(|c| c["Service"] == svc)
            .map(|c| c["ExitCode"].clone())
            .unwrap()
    };
    // Under berth-init the shell got SIGTERM and died of it (128 + 15); a
    // shell as PID 1 ignores SIGTERM, so berth had to SIGKILL it (128 + 9).
    assert_eq!(code("with-init"), 143, "{ps}");
    assert_eq!(code("without"), 137, "{ps}");
    let down = p.berth(&["down", "-t", "0"]);
    assert!(down.status.success());
}

#[test]
fn two_ups_at_once_and_an_interrupted_up() {
    let p = Project::new("racing");
    p.write(
        "services:\n  a:\n    image: berth-test/busybox:1\n  b:\n    image: berth-test/busybox:1\n    depends_on: [a]\n",
    );
    let spawn = || {
        Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(["up", "-d"])
            .current_dir(&p.dir)
            .env("BERTH_STATE_DIR", &p.state)
            .env("BERTH_CONFIG", p.dir.join("none.toml"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    // Two at once: both succeed, against one supervisor, with one container each.
    let (first, second) = (spawn(), spawn());
    for child in [first, second] {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    let names = text(&p.berth(&["ps", "-q"]).stdout);
    assert_eq!(names.lines().count(), 2, "{names}");
    let supervisors = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read(e.path().join("cmdline"))
                .map(|c| {
                    let c = String::from_utf8_lossy(&c);
                    c.contains("__supervise") && c.contains(&p.name)
                })
                .unwrap_or(false)
        })
        .count();
    assert_eq!(supervisors, 1);
    assert!(p.berth(&["down", "-t", "0"]).status.success());

    // Ctrl-C while `up` is under way, at a known point: a's container
    // exists and b waits for a to be healthy, which a is only once the
    // test opens the gate. The project ends up either whole or gone.
    let gate = p.dir.join("gate");
    std::fs::create_dir_all(&gate).unwrap();
    p.write(
        "services:\n  a:\n    image: berth-test/busybox:1\n    volumes: [\"./gate:/gate\"]\n    \
         healthcheck:\n      test: [\"CMD\", \"/bin/busybox\", \"test\", \"-f\", \"/gate/open\"]\n      \
         interval: 100ms\n  b:\n    image: berth-test/busybox:1\n    \
         depends_on:\n      a: {condition: service_healthy}\n",
    );
    let child = spawn();
    // Sandbox ids are `<container name>.<incarnation>`.
    let a_cgroup = format!("{}-a-1.", p.name);
    let a_exists = || {
        cgroups_left(&p.name).iter().any(|c| {
            c.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&a_cgroup))
        })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !a_exists() {
        assert!(Instant::now() < deadline, "a's container never appeared");
        std::thread::sleep(Duration::from_millis(10));
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    std::fs::write(gate.join("open"), "").unwrap();
    let out = child.wait_with_output().unwrap();
    let ps: serde_json::Value =
        serde_json::from_slice(&p.berth(&["ps", "-a", "--format", "json"]).stdout).unwrap();
    if out.status.success() {
        let states: Vec<(&str, &str)> = ps
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["Service"].as_str().unwrap_or_default(),
                    c["State"].as_str().unwrap_or_default(),
                )
            })
            .collect();
        assert_eq!(
            states,
            [("a", "running"), ("b", "running")],
            "an up that succeeded left a half-made project"
        );
    } else {
        assert_eq!(ps, serde_json::json!([]), "{}", text(&out.stderr));
        p.assert_nothing_left();
    }
    // The next `up` finishes the job.
    let again = p.berth(&["up", "-d"]);
    assert!(again.status.success(), "{}", text(&again.stderr));
    let names = text(&p.berth(&["ps", "-q"]).stdout);
    assert_eq!(names.lines().count(), 2, "{names}");
    assert!(p.berth(&["down", "-t", "0"]).status.success());
    p.assert_nothing_left();
}

/// Free bytes for an unprivileged writer on the filesystem at `path`.
fn free_bytes(path: &Path) -> u64 {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: statvfs fills the zeroed struct we own from a valid C string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut st) }, 0);
    st.f_bavail * st.f_bsize
}

#[test]
fn a_full_disk_under_the_logs_loses_lines_not_the_project() {
    let p = Project::new("fulldisk");
    p.write(
        "services:\n  chatty:\n    image: berth-test/busybox:1\n    \
         command: [\"/bin/busybox\", \"sh\", \"-c\", \"i=0; while true; do i=$$((i+1)); echo n=$$i; done\"]\n",
    );
    // A 64 KiB filesystem where the supervisor will write the logs, in
    // place before `up`, a quarter of it taken by a file we can delete.
    let logs = p.state.join("projects").join(&p.name).join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let status = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(&logs)
        .status()
        .unwrap();
    assert!(status.success());
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let unmount = Unmount(logs.clone());
    std::fs::write(logs.join("filler"), vec![b'x'; 16 << 10]).unwrap();

    let up = p.berth(&["up", "-d"]);
    assert!(up.status.success(), "{}", text(&up.stderr));
    // The container's numbers, with berth's marker for lost lines as
    // `u64::MAX - lost`.
    let numbers = || -> Vec<u64> {
        let out = p.berth(&["logs", "--no-color", "chatty"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
            .lines()
            .map(|l| {
                if let Some((_, rest)) = l.split_once("[berth: ") {
                    let lost = rest
                        .split_once(" lines lost: ")
                        .map(|(n, _)| n.parse::<u64>());
                    return match lost {
                        Some(Ok(n)) => u64::MAX - n,
                        _ => panic!("a garbled marker line: {l:?}"),
                    };
                }
                let n = l.rsplit_once(" | n=").map(|(_, n)| n.parse::<u64>());
                match n {
                    Some(Ok(n)) => n,
                    _ => panic!("a cut or garbled line in the logs: {l:?}"),
                }
            })
            .collect()
    };
    // Full: less room than the filler takes, and the log stops growing
    // while the container goes on writing (berth takes back a write cut
    // short, so a little room may stay free).
    let log = logs.join(format!("{}-chatty-1.log", p.name));
    let size = || std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < deadline, "the logs never filled the disk");
        if free_bytes(&logs) < 16 << 10 {
            let was = size();
            std::thread::sleep(Duration::from_millis(300));
            if size() == was {
                break;
            }
        } else {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let before = numbers();
    let last_before = *before.last().expect("nothing was logged");

    // Room again: logging goes on, from what the container writes now.
    std::fs::remove_file(logs.join("filler")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let after = loop {
        let all = numbers();
        if all.len() > before.len() + 1 {
            break all;
        }
        assert!(Instant::now() < deadline, "logging never resumed");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(after[..before.len()], before[..], "logged lines changed");
    // First a line saying how many were lost, then the container's lines
    // from where writing works again: exactly that many are missing.
    let marker = after[before.len()];
    assert!(
        marker > u64::MAX / 2,
        "no marker line for the lost lines: {:?}",
        &after[before.len()..]
    );
    let lost = u64::MAX - marker;
    let resumed = after[before.len() + 1];
    assert!(lost > 0, "the marker says no line was lost");
    assert_eq!(
        resumed - last_before - 1,
        lost,
        "the marker's count is not what is missing ({last_before} then {resumed})"
    );
    // Still supervised, still running.
    let ps: serde_json::Value =
        serde_json::from_slice(&p.berth(&["ps", "--format", "json"]).stdout).unwrap();
    assert_eq!(ps[0]["State"], "running", "{ps}");
    let stop = p.berth(&["stop", "-t", "0"]);
    assert!(stop.status.success(), "{}", text(&stop.stderr));
    drop(unmount);
    let down = p.berth(&["down", "-t", "0"]);
    assert!(down.status.success(), "{}", text(&down.stderr));
    p.assert_nothing_left();
}
