//! Real Dockerfiles with `RUN`, built by `berth build` on a Debian base and
//! run by `berth up`. The base (`debian:bookworm-slim`) is made by
//! `scripts/seed-registry.sh` (mmdebstrap, cached) and served by a loopback
//! registry; `apt-get` reaches Debian's mirror and `pip` PyPI through the
//! host's network, which `RUN` steps share.
//!
//! Needs root, overlayfs, mmdebstrap and `docker-registry`.

use crate::common::{repo, text};
use crate::up::{free_port, http_get, DownOnDrop, Registry};
use std::fs;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const SECRET: &str = "pypi-token-7c1d0e55aa";

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap().flatten() {
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// Every regular file under `dir` that holds `needle`.
fn files_holding(dir: &Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return found;
    };
    for e in entries.flatten() {
        let t = e.file_type().unwrap();
        if t.is_dir() {
            found.extend(files_holding(&e.path(), needle));
        } else if t.is_file() {
            let bytes = fs::read(e.path()).unwrap_or_default();
            if bytes.windows(needle.len()).any(|w| w == needle) {
                found.push(e.path());
            }
        }
    }
    found
}

/// The lines of a build log, and the line after the step whose text holds
/// `needle` (`CACHED` when the step was answered from the cache).
fn after_step<'l>(log: &'l str, needle: &str) -> &'l str {
    let lines: Vec<&str> = log.lines().collect();
    let i = lines
        .iter()
        .position(|l| l.contains("] ") && l.contains(needle))
        .unwrap_or_else(|| panic!("no step {needle:?} in {log}"));
    lines.get(i + 1).copied().unwrap_or("")
}

/// A loopback registry serving `debian:bookworm-slim`, a project dir and a
/// state dir; `run` is `berth` there with the mirror set.
struct Project {
    tmp: tempfile::TempDir,
    registry: Registry,
    dir: std::path::PathBuf,
    state: std::path::PathBuf,
}

impl Project {
    fn new(name: &str) -> Project {
        let tmp = tempfile::tempdir().unwrap();
        let registry = Registry {
            port: free_port(),
            storage: tmp.path().join("registry"),
        };
        let prep = Command::new("bash")
            .arg(repo().join("scripts/seed-registry.sh"))
            .arg(registry.port.to_string())
            .args(["--node-versions", "", "--storage"])
            .arg(&registry.storage)
            .env("BERTH", env!("CARGO_BIN_EXE_berth"))
            .output()
            .unwrap();
        assert!(
            prep.status.success(),
            "seed-registry.sh: {}",
            text(&prep.stderr)
        );
        let dir = tmp.path().join(format!("{name}{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(tmp.path().join("none.toml"), "").unwrap();
        Project {
            state: tmp.path().join("state"),
            dir,
            registry,
            tmp,
        }
    }

    /// A project made of the fixture `crates/cli/tests/fixtures/NAME`.
    fn fixture(name: &str) -> Project {
        let p = Project::new(name);
        copy_dir(&repo().join("crates/cli/tests/fixtures").join(name), &p.dir);
        p
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_env(args, &[])
    }

    fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(args)
            .envs(env.iter().copied())
            .current_dir(&self.dir)
            .env("BERTH_STATE_DIR", &self.state)
            .env("BERTH_CONFIG", self.tmp.path().join("none.toml"))
            .env(
                "BERTH_REGISTRY_MIRRORS",
                format!("docker.io=http://127.0.0.1:{}", self.registry.port),
            )
            .output()
            .unwrap()
    }

    /// `up -d`, then GET / on `port` until the body holds `want`.
    fn up_and_answer(&self, port: u16, want: &str) -> DownOnDrop {
        let down = DownOnDrop {
            dir: self.dir.clone(),
            state: self.state.clone(),
        };
        let up = self.run(&["up", "-d"]);
        assert!(up.status.success(), "up -d: {}", text(&up.stderr));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let body = http_get(port).unwrap_or_default();
            if body.contains(want) {
                return down;
            }
            assert!(
                Instant::now() < deadline,
                "the app never answered {want:?}; last: {body:?}; logs: {}",
                text(&self.run(&["logs"]).stdout)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

#[test]
fn a_python_app_with_apt_pip_a_cache_mount_and_a_secret_builds_and_answers() {
    let p = Project::fixture("python-app");
    let dir = &p.dir;
    let state = &p.state;
    let berth = |args: &[&str]| p.run(args);
    let port = free_port();
    fs::write(dir.join("token.txt"), SECRET).unwrap();
    fs::write(
        dir.join("compose.yaml"),
        format!(
            "services:\n  web:\n    build:\n      context: .\n      secrets: [token]\n    ports: [\"127.0.0.1:{port}:8000\"]\nsecrets:\n  token:\n    file: ./token.txt\n"
        ),
    )
    .unwrap();

    let built = berth(&["build"]);
    let log = text(&built.stderr);
    assert!(built.status.success(), "build: {log}");
    assert!(log.contains("Successfully installed bottle"), "{log}");
    assert!(!log.contains(SECRET), "the secret is in the build log");
    // The secret is in no blob: no layer, config or manifest.
    for b in fs::read_dir(state.join("images/blobs/sha256"))
        .unwrap()
        .flatten()
    {
        let bytes = fs::read(b.path()).unwrap();
        assert!(
            !bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
            "the secret is in blob {:?}",
            b.file_name()
        );
    }

    // Unchanged: every step is answered from the cache.
    let again = berth(&["build"]);
    let log = text(&again.stderr);
    assert!(again.status.success(), "build again: {log}");
    assert!(log.contains("(6 of "), "{log}");

    // Without the build cache, apt still finds the packages it fetched in
    // its cache mount.
    let fresh = berth(&["build", "--no-cache"]);
    let log = text(&fresh.stderr);
    assert!(fresh.status.success(), "build --no-cache: {log}");
    assert!(log.contains("Need to get 0 B/"), "{log}");

    let want = format!("bottle 0.12.25, token {}", &sha256_hex(SECRET)[..12]);
    let _down = p.up_and_answer(port, &want);
    let down = berth(&["down", "-t", "1"]);
    assert!(down.status.success(), "down: {}", text(&down.stderr));
}

/// A Node backend as real projects write it: node and npm from the npm
/// registry (`ADD` of their tarballs), `COPY package*.json`, `RUN npm ci`
/// with npm's cache as a cache mount, `COPY . .`. A change to the sources
/// only reruns the last `COPY`: `npm ci` is `CACHED`.
#[test]
fn a_node_backend_builds_and_a_source_change_keeps_npm_ci_cached() {
    let p = Project::fixture("node-backend");
    let port = free_port();
    fs::write(
        p.dir.join("compose.yaml"),
        format!("services:\n  api:\n    build: .\n    ports: [\"127.0.0.1:{port}:3000\"]\n"),
    )
    .unwrap();
    let built = p.run(&["build"]);
    let log = text(&built.stderr);
    assert!(built.status.success(), "build: {log}");
    assert!(log.contains("added 72 packages"), "{log}");

    fs::write(
        p.dir.join("greeting.js"),
        "module.exports = \"hello again from node\";\n",
    )
    .unwrap();
    let rebuilt = p.run(&["build"]);
    let log = text(&rebuilt.stderr);
    assert!(rebuilt.status.success(), "rebuild: {log}");
    let lines: Vec<&str> = log.lines().collect();
    let step = |needle: &str| {
        lines
            .iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no step {needle:?} in {log}"))
    };
    let npm_ci = step("] RUN --mount=type=cache,target=/root/.npm npm ci");
    assert_eq!(lines[npm_ci + 1], "api | CACHED", "{log}");
    let copy_all = step("] COPY . .");
    assert_ne!(lines[copy_all + 1], "api | CACHED", "{log}");
    assert!(!log.contains("added 72 packages"), "{log}");

    let _down = p.up_and_answer(port, "\"greeting\":\"hello again from node\"");
    let body = http_get(port).unwrap_or_default();
    assert!(body.contains("\"node\":\"v20.20.2\""), "{body}");
    assert!(body.contains("\"express\":\"4.21.2\""), "{body}");
}

/// The same Node backend written the plain way (`RUN npm ci`, no cache
/// mount): it builds, an unchanged rebuild is all `CACHED`, and it answers.
#[test]
fn a_node_backend_with_plain_npm_ci_builds_and_answers() {
    let p = Project::fixture("node-npm-ci");
    let port = free_port();
    fs::write(
        p.dir.join("compose.yaml"),
        format!("services:\n  api:\n    build: .\n    ports: [\"127.0.0.1:{port}:3000\"]\n"),
    )
    .unwrap();
    let built = p.run(&["build"]);
    let log = text(&built.stderr);
    assert!(built.status.success(), "build: {log}");
    assert!(log.contains("added 72 packages"), "{log}");
    let again = p.run(&["build"]);
    let log = text(&again.stderr);
    assert!(again.status.success(), "build again: {log}");
    assert_eq!(after_step(&log, "] RUN npm ci"), "api | CACHED", "{log}");
    assert_eq!(after_step(&log, "] COPY . ."), "api | CACHED", "{log}");
    let _down = p.up_and_answer(port, "\"greeting\":\"hello from node\"");
}

/// A multi-stage Go build: Debian's golang-go in a build stage on
/// debian:bookworm-slim, a static binary copied into `FROM scratch`. The
/// image is that one file; it answers under `berth up`; a source change
/// reruns `go build` but not the toolchain's `apt-get`.
#[test]
fn a_go_service_builds_static_into_scratch_and_answers() {
    let p = Project::fixture("go-static");
    let port = free_port();
    fs::write(
        p.dir.join("compose.yaml"),
        format!(
            "services:\n  greeter:\n    build: .\n    image: greeter:dev\n    ports: [\"127.0.0.1:{port}:8080\"]\n"
        ),
    )
    .unwrap();
    let built = p.run(&["build"]);
    let log = text(&built.stderr);
    assert!(built.status.success(), "build: {log}");

    // The final image: one layer holding one file, run as nobody.
    let saved = p.dir.join("greeter.tar");
    let save = p.run(&["save", "-o", saved.to_str().unwrap(), "greeter:dev"]);
    assert!(save.status.success(), "save: {}", text(&save.stderr));
    let listing = Command::new("tar").arg("-tf").arg(&saved).output().unwrap();
    let blobs: Vec<String> = text(&listing.stdout)
        .lines()
        .filter(|l| l.starts_with("blobs/sha256/") && l.len() > 20)
        .map(|l| l.to_string())
        .collect();
    let mut layer_files = Vec::new();
    for b in &blobs {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "tar -xOf '{}' '{b}' | tar -tvf - 2>/dev/null",
                saved.display()
            ))
            .output()
            .unwrap();
        if out.status.success() && !out.stdout.is_empty() {
            layer_files.push(text(&out.stdout));
        }
    }
    assert_eq!(layer_files.len(), 1, "one layer: {layer_files:?}");
    let files: Vec<&str> = layer_files[0]
        .lines()
        .filter(|l| l.starts_with('-'))
        .collect();
    assert_eq!(files.len(), 1, "{}", layer_files[0]);
    assert!(files[0].ends_with(" server"), "{}", files[0]);

    let _down = p.up_and_answer(port, "hello from go1.19");
    let body = http_get(port).unwrap_or_default();
    assert!(body.contains("static, shell present: false"), "{body}");
    drop(_down);

    fs::write(
        p.dir.join("greeting.go"),
        "package main\n\nconst greeting = \"hello again\"\n",
    )
    .unwrap();
    let rebuilt = p.run(&["build"]);
    let log = text(&rebuilt.stderr);
    assert!(rebuilt.status.success(), "rebuild: {log}");
    assert_eq!(
        after_step(&log, "apt-get install"),
        "greeter | CACHED",
        "{log}"
    );
    assert_ne!(after_step(&log, "go build"), "greeter | CACHED", "{log}");
    let _down = p.up_and_answer(port, "hello again from go1.19");
}

/// `apt-get install` in a heredoc (nginx from Debian), a config written by
/// `COPY <<EOF`, a static site: it builds and serves the page.
#[test]
fn an_nginx_site_installed_by_an_apt_heredoc_builds_and_answers() {
    let p = Project::fixture("apt-nginx");
    let port = free_port();
    fs::write(
        p.dir.join("compose.yaml"),
        format!("services:\n  site:\n    build: .\n    ports: [\"127.0.0.1:{port}:8080\"]\n"),
    )
    .unwrap();
    let built = p.run(&["build"]);
    let log = text(&built.stderr);
    assert!(built.status.success(), "build: {log}");
    assert!(log.contains("Setting up nginx-light"), "{log}");
    let _down = p.up_and_answer(port, "served by nginx, built by berth");
}

/// A build secret, as a file and as an environment variable, and a step
/// that prints it: the secret's bytes are in no file of berth's state
/// (every layer, config, manifest, step record, cache mount) and not in
/// the build log; the app answers with what the build derived from it. A
/// `required` secret not provided fails with the Dockerfile's file:line.
#[test]
fn a_build_secret_reaches_no_layer_config_or_log() {
    const TOKEN: &str = "tok-1f0b6c2e9d77-do-not-ship";
    let p = Project::fixture("secret-stamp");
    let port = free_port();
    fs::write(
        p.dir.join("compose.yaml"),
        format!(
            "services:\n  stamp:\n    build:\n      context: .\n      secrets: [api_token]\n    ports: [\"127.0.0.1:{port}:8080\"]\nsecrets:\n  api_token:\n    environment: BUILD_API_TOKEN\n"
        ),
    )
    .unwrap();

    let missing = p.run(&["build"]);
    let err = text(&missing.stderr);
    assert!(!missing.status.success(), "{err}");
    assert!(
        err.contains("Dockerfile:6: RUN: secret \"api_token\" is required"),
        "{err}"
    );

    let built = p.run_env(&["build"], &[("BUILD_API_TOKEN", TOKEN)]);
    let log = format!("{}{}", text(&built.stdout), text(&built.stderr));
    assert!(built.status.success(), "build: {log}");
    assert!(
        !log.contains(TOKEN),
        "the secret is in the build log: {log}"
    );
    assert!(log.contains("debug: netrc is ****"), "{log}");
    let holding = files_holding(&p.state, TOKEN.as_bytes());
    assert!(holding.is_empty(), "the secret is in {holding:?}");
    // The layers are there to be searched: the build's own files are found.
    assert!(!files_holding(&p.state.join("images"), b"token.length").is_empty());

    let want = format!(
        "token sha256 {}, length {}",
        &sha256_hex(TOKEN)[..16],
        TOKEN.len()
    );
    let _down = p.up_and_answer(port, &want);
    let holding = files_holding(&p.state, TOKEN.as_bytes());
    assert!(holding.is_empty(), "after up, the secret is in {holding:?}");
}

fn sha256_hex(data: &str) -> String {
    let mut c = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    c.stdin.take().unwrap().write_all(data.as_bytes()).unwrap();
    let out = c.wait_with_output().unwrap();
    text(&out.stdout)[..64].to_string()
}

/// What a `RUN` step's network is: by default a namespace of its own,
/// NAT'd outbound (it has an `eth0` with the default route, and resolves
/// through the resolvers containers get) with IPv6 off; compose
/// `build.extra_hosts` in its `/etc/hosts`, `build.shm_size` as its
/// `/dev/shm`, `build.ssh` forwarding an ssh-agent the step can list the
/// keys of, as root and as a `USER` that is not; `--network=none` has no
/// route out. A build key berth does not
/// carry out is refused by its key path.
#[test]
fn run_steps_get_a_nat_network_without_ipv6_extra_hosts_shm_and_an_ssh_agent() {
    let p = Project::new("runnet");
    let agent = p.tmp.path().join("agent.sock");
    let key = p.tmp.path().join("id_ed25519");
    let mut agent_proc = Command::new("ssh-agent")
        .args(["-D", "-a"])
        .arg(&agent)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !agent.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let keygen = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "berth-test", "-f"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(keygen.status.success(), "{}", text(&keygen.stderr));
    let add = Command::new("ssh-add")
        .arg(&key)
        .env("SSH_AUTH_SOCK", &agent)
        .output()
        .unwrap();
    assert!(add.status.success(), "ssh-add: {}", text(&add.stderr));

    fs::write(
        p.dir.join("Dockerfile"),
        r#"FROM debian:bookworm-slim
RUN echo "disable_ipv6=$(cat /proc/sys/net/ipv6/conf/all/disable_ipv6)"; \
    grep -q '^eth0[[:space:]]00000000' /proc/net/route && echo "default-route=eth0"; \
    getent hosts deb.debian.org >/dev/null && echo "dns=ok"; \
    getent hosts build-peer.internal; \
    echo "shm-kb=$(df -k --output=size /dev/shm | tail -n 1 | tr -d ' ')"
RUN --network=none grep -q '^eth0' /proc/net/route || echo "none-has-no-route"
RUN --mount=type=ssh perl -MIO::Socket::UNIX -e '$s = IO::Socket::UNIX->new(Peer => $ENV{SSH_AUTH_SOCK}) or die "agent: $!"; print $s pack("NC", 1, 11); read($s, $h, 5); ($l, $t) = unpack("NC", $h); read($s, $b, $l - 1); printf "agent-answer=%d keys=%d\n", $t, unpack("N", $b)'
USER nobody
RUN --mount=type=ssh perl -MIO::Socket::UNIX -e '$s = IO::Socket::UNIX->new(Peer => $ENV{SSH_AUTH_SOCK}) or die "agent: $!"; print $s pack("NC", 1, 11); read($s, $h, 5); ($l, $t) = unpack("NC", $h); read($s, $b, $l - 1); printf "as %s: agent-answer=%d keys=%d\n", scalar getpwuid($<), $t, unpack("N", $b)'
"#,
    )
    .unwrap();
    let compose = |extra: &str| {
        fs::write(
            p.dir.join("compose.yaml"),
            format!(
                "services:\n  probe:\n    build:\n      context: .\n      extra_hosts: [\"build-peer.internal=10.9.8.7\"]\n      shm_size: 96m\n      ssh: [\"default={}\"]\n{extra}    image: probe:dev\n",
                agent.display()
            ),
        )
        .unwrap()
    };
    compose("");
    let built = p.run(&["build", "--progress", "plain"]);
    let log = text(&built.stderr);
    let _ = agent_proc.kill();
    let _ = agent_proc.wait();
    assert!(built.status.success(), "build: {log}");
    for want in [
        "disable_ipv6=1",
        "default-route=eth0",
        "dns=ok",
        "shm-kb=98304",
        "none-has-no-route",
        // SSH2_AGENT_IDENTITIES_ANSWER (12) with the one key added.
        "agent-answer=12 keys=1",
        // The forwarded socket belongs to the step's user.
        "as nobody: agent-answer=12 keys=1",
    ] {
        assert!(log.contains(want), "{want:?} not in {log}");
    }
    assert!(
        log.lines()
            .any(|l| l.contains("10.9.8.7") && l.ends_with(" build-peer.internal")),
        "{log}"
    );
    // A build's namespace goes with it: any left belongs to a live build.
    for e in fs::read_dir("/run/netns").into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name
            .strip_prefix("berth-build-")
            .and_then(|r| r.split('-').next())
        {
            assert!(Path::new(&format!("/proc/{pid}")).exists(), "{name} left");
        }
    }

    compose("      privileged: true\n");
    let refused = p.run(&["build"]);
    let err = text(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        err.contains("services.probe.build.privileged: not supported by berth's builder"),
        "{err}"
    );
}

/// A project needing no registry: a static busybox is the whole image.
fn busybox_project(name: &str, run: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(format!("{name}{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    fs::copy("/usr/bin/busybox", dir.join("busybox")).unwrap();
    fs::write(
        dir.join("Dockerfile"),
        format!(
            "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n{run}"
        ),
    )
    .unwrap();
    fs::write(
        dir.join("compose.yaml"),
        format!("services:\n  box:\n    build: .\n    image: {name}:dev\n"),
    )
    .unwrap();
    (tmp, dir)
}

fn berth_in(dir: &Path, state: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(args)
        .current_dir(dir)
        .env("BERTH_STATE_DIR", state)
        .output()
        .unwrap()
}

/// `--progress plain` streams every line of a step and its time;
/// `--progress tty` shows the running step's last lines in place and
/// collapses them into the step's line with its time once it succeeds; a
/// failing step says where (file:line), its exit code and its last lines.
#[test]
fn progress_plain_streams_tty_collapses_and_a_failure_says_where() {
    let (tmp, dir) = busybox_project(
        "progress",
        "RUN for i in 1 2 3 4 5 6 7 8 9; do echo output line $i; done\n",
    );
    let state = tmp.path().join("state");
    let plain = berth_in(
        &dir,
        &state,
        &["build", "--progress", "plain", "--no-cache"],
    );
    let log = text(&plain.stderr);
    assert!(plain.status.success(), "{log}");
    assert!(log.contains("box |   output line 1\n"), "{log}");
    assert!(log.contains("box |   output line 9\nbox | DONE "), "{log}");

    let tty = berth_in(&dir, &state, &["build", "--progress", "tty", "--no-cache"]);
    let log = text(&tty.stderr);
    assert!(tty.status.success(), "{log}");
    // The step's final line: its text and its time, after its output was
    // erased (cursor up, clear line).
    let last_step = log
        .lines()
        .rfind(|l| l.contains("[stage 1 4/4] RUN for i in"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(last_step.trim_end().ends_with('s'), "{last_step:?}");
    assert!(log.contains("\x1b[1A\x1b[2K"), "{log:?}");

    fs::write(
        dir.join("Dockerfile"),
        "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
         RUN echo about to fail; echo the reason >&2; exit 3\n",
    )
    .unwrap();
    let failed = berth_in(&dir, &state, &["build", "--progress", "tty"]);
    let err = text(&failed.stderr);
    assert!(!failed.status.success());
    assert!(err.contains("Dockerfile:4: RUN: "), "{err}");
    assert!(err.contains("exit code 3"), "{err}");
    assert!(err.contains("about to fail\nthe reason"), "{err}");
    // No step container is left behind.
    let left: Vec<_> = fs::read_dir(state.join("sandbox/build"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}

/// `berth builder prune` empties the cache mounts (and the step records):
/// a cache mount keeps what a step wrote until then.
#[test]
fn builder_prune_empties_cache_mounts() {
    let (tmp, dir) = busybox_project(
        "prune",
        "RUN --mount=type=cache,target=/cache echo x >> /cache/runs && echo runs $(wc -l < /cache/runs)\n",
    );
    let state = tmp.path().join("state");
    let runs = |args: &[&str]| {
        let out = berth_in(&dir, &state, args);
        let log = text(&out.stderr);
        assert!(out.status.success(), "{log}");
        log
    };
    assert!(runs(&["build", "--progress", "plain"]).contains("runs 1"));
    assert!(runs(&["build", "--progress", "plain", "--no-cache"]).contains("runs 2"));
    let pruned = berth_in(&dir, &state, &["builder", "prune"]);
    let said = text(&pruned.stdout);
    assert!(pruned.status.success(), "{}", text(&pruned.stderr));
    assert!(said.starts_with("Deleted 1 cache mount(s) and "), "{said}");
    // The step records went too: nothing is CACHED, and the cache is empty.
    let log = runs(&["build", "--progress", "plain"]);
    assert!(log.contains("runs 1"), "{log}");
    assert!(!log.contains("CACHED"), "{log}");
}

/// compose `build.additional_contexts`: `service:OTHER` is OTHER's image
/// (built first), a directory is read by `RUN --mount=from=` and
/// `COPY --from=`, `docker-image://` names an image; the list form works
/// too. A change in the directory reruns the step that reads it; a remote
/// context is refused by key path, as is a cycle of services.
#[test]
fn additional_contexts_name_a_service_a_directory_and_an_image() {
    let (tmp, dir) = busybox_project("ctxbase", "");
    let state = tmp.path().join("state");
    let app = dir.join("app");
    fs::create_dir_all(app.join("../shared")).unwrap();
    fs::write(dir.join("shared/msg.txt"), "hello from shared\n").unwrap();
    fs::create_dir_all(&app).unwrap();
    fs::write(
        app.join("Dockerfile"),
        "FROM tools\n\
         RUN --mount=from=shared,target=/mnt/shared echo \"read: $(cat /mnt/shared/msg.txt)\"\n\
         COPY --from=shared msg.txt /copied.txt\n\
         COPY --from=again /bin/busybox /again-busybox\n",
    )
    .unwrap();
    let compose = |contexts: &str| {
        fs::write(
            dir.join("compose.yaml"),
            format!(
                "services:\n  box:\n    build: .\n    image: ctxbase:dev\n  app:\n    image: ctxapp:dev\n    build:\n      context: ./app\n      additional_contexts:\n{contexts}"
            ),
        )
        .unwrap()
    };
    compose("        tools: service:box\n        shared: ./shared\n        again: docker-image://ctxbase:dev\n");
    let build = |args: &[&str]| {
        let out = berth_in(&dir, &state, args);
        let log = text(&out.stderr);
        assert!(out.status.success(), "{args:?}: {log}");
        log
    };
    let log = build(&["build", "--progress", "plain", "app"]);
    assert!(log.contains("|   read: hello from shared"), "{log}");
    assert!(log.contains("box | built "), "box is built first: {log}");
    let saved = dir.join("app.tar");
    build(&["save", "-o", saved.to_str().unwrap(), "ctxapp:dev"]);
    let listing = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cd {0} && mkdir -p x && tar -xf app.tar -C x && for b in x/blobs/sha256/*; do tar -tf $b 2>/dev/null; done",
            dir.display()
        ))
        .output()
        .unwrap();
    let files = text(&listing.stdout);
    for want in ["copied.txt", "again-busybox", "bin/busybox"] {
        assert!(files.lines().any(|l| l == want), "{want} not in {files}");
    }

    // The list form, unchanged inputs: every step of app is cached.
    compose("        - tools=service:box\n        - shared=./shared\n        - again=docker-image://ctxbase:dev\n");
    let log = build(&["build", "--progress", "plain", "app"]);
    assert!(!log.contains("|   read: "), "{log}");
    fs::write(dir.join("shared/msg.txt"), "changed\n").unwrap();
    let log = build(&["build", "--progress", "plain", "app"]);
    assert!(log.contains("|   read: changed"), "{log}");

    for (contexts, want) in [
        (
            "        remote: https://github.com/docker/buildx.git\n",
            "services.app.build.additional_contexts.remote",
        ),
        (
            "        tools: service:nobody\n",
            "services.app.build.additional_contexts.tools",
        ),
    ] {
        compose(contexts);
        let out = berth_in(&dir, &state, &["build", "app"]);
        let err = text(&out.stderr);
        assert!(!out.status.success(), "{err}");
        assert!(err.contains(want), "{want}: {err}");
    }
}

/// `berth build --cache-from` with an image in a registry: an image built
/// and pushed from one store answers every step of the same build in a
/// fresh store (its layers pulled from the loopback registry, no step
/// run), and the result is the same image.
#[test]
fn cache_from_a_registry_image_answers_every_step_in_a_fresh_store() {
    let (tmp, dir) = busybox_project(
        "cachereg",
        "RUN echo ran-the-step && echo built > /marker\nCOPY Dockerfile /Dockerfile.copy\n",
    );
    let registry = crate::up::Registry::seed(tmp.path(), "", false);
    let image = format!("127.0.0.1:{}/cache/box:1", registry.port);
    fs::write(
        dir.join("compose.yaml"),
        format!("services:\n  box:\n    build: .\n    image: {image}\n"),
    )
    .unwrap();
    let run = |state: &Path, args: &[&str]| {
        let out = berth_in(&dir, state, args);
        let log = text(&out.stderr);
        assert!(out.status.success(), "{args:?}: {log}");
        log
    };
    let built_as = |log: &str| {
        log.lines()
            .find_map(|l| l.strip_prefix("box | built "))
            .and_then(|l| l.split_whitespace().next())
            .map(str::to_string)
            .unwrap_or_else(|| panic!("{log}"))
    };
    let first_state = tmp.path().join("state1");
    let log = run(&first_state, &["build", "--progress", "plain"]);
    assert!(log.contains("|   ran-the-step"), "{log}");
    let first = built_as(&log);
    run(&first_state, &["push"]);

    let fresh = tmp.path().join("state2");
    let log = run(
        &fresh,
        &[
            "build",
            "--progress",
            "plain",
            "--cache-from",
            &format!("type=registry,ref={image}"),
        ],
    );
    assert!(!log.contains("|   ran-the-step"), "a step ran: {log}");
    assert!(log.contains("(4 of 4 steps cached)"), "{log}");
    assert_eq!(built_as(&log), first, "{log}");
}

/// What a terminal shows after `text` is written to it: lines, with
/// "cursor up" and "clear line" applied and colours dropped.
fn screen(text: &str) -> Vec<String> {
    let mut rows: Vec<String> = vec![String::new()];
    let mut row: usize = 0;
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if let Some(after) = rest.strip_prefix("\x1b[") {
            let end = after
                .find(|ch: char| ch.is_ascii_alphabetic())
                .unwrap_or(after.len());
            match &after[..=end.min(after.len() - 1)] {
                "1A" => row = row.saturating_sub(1),
                "2K" => rows[row].clear(),
                _ => {}
            }
            rest = &after[(end + 1).min(after.len())..];
            continue;
        }
        match c {
            '\n' => {
                row += 1;
                if rows.len() == row {
                    rows.push(String::new());
                }
            }
            '\r' => {}
            c => rows[row].push(c),
        }
        rest = &rest[c.len_utf8()..];
    }
    while rows.last().is_some_and(String::is_empty) {
        rows.pop();
    }
    rows
}

/// `--progress tty` with stages running side by side: while they run,
/// each running step shows with its own last lines; once the build is
/// done, the terminal (the log with its cursor moves applied) shows every
/// step once, collapsed with its time, and none of their output.
#[test]
fn progress_tty_shows_parallel_stages_each_collapsed_with_its_time() {
    let (tmp, dir) = busybox_project("ttypar", "");
    let state = tmp.path().join("state");
    fs::write(
        dir.join("Dockerfile"),
        "FROM scratch AS base\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
         FROM base AS left\nRUN for i in 1 2 3 4 5 6 7 8; do echo left line $i >&2; sleep 0.1; done; echo l > /l\n\
         FROM base AS right\nRUN for i in 1 2 3 4 5 6 7 8; do echo right line $i; sleep 0.1; done; echo r > /r\n\
         FROM base\nCOPY --from=left /l /l\nCOPY --from=right /r /r\n",
    )
    .unwrap();
    let out = berth_in(&dir, &state, &["build", "--progress", "tty", "--no-cache"]);
    let log = text(&out.stderr);
    assert!(out.status.success(), "{log}");
    // Their output was shown while they ran (the display redraws on a
    // tick, so which of their last lines made it to a frame varies).
    assert!(
        log.contains("|   left line ") && log.contains("|   right line "),
        "{log:?}"
    );
    let shown = screen(&log);
    for step in ["[stage 2 2/2] RUN for i in", "[stage 3 2/2] RUN for i in"] {
        let lines: Vec<&String> = shown.iter().filter(|l| l.contains(step)).collect();
        assert_eq!(lines.len(), 1, "{step}: {shown:#?}");
        assert!(lines[0].trim_end().ends_with('s'), "{:?}", lines[0]);
    }
    assert!(
        !shown
            .iter()
            .any(|l| l.contains("|   left line ") || l.contains("|   right line ")),
        "output left on screen: {shown:#?}"
    );
    assert!(shown.last().unwrap().contains("box | built "), "{shown:#?}");
}
