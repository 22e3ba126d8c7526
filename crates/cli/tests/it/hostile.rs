//! berth as an attacker and a careless user meet it (issue 11): compose
//! files that name host paths, a supervisor killed under its project,
//! commands whose reader goes away, Ctrl-C at a bad moment, containers that
//! exit at once. Each test names in its first line what it defends.

use crate::common::text;
use crate::engine::Project;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The project's state file, once it exists.
fn state_json(p: &Project) -> Option<serde_json::Value> {
    let path = p.state.join("projects").join(&p.name).join("state.json");
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

fn ps_all(p: &Project) -> Vec<serde_json::Value> {
    let out = p.berth(&["ps", "-a", "--format", "json"]);
    assert!(out.status.success(), "ps: {}", text(&out.stderr));
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .unwrap()
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Defends: a volume `name:` can never make `up` write to, or `down -v`
/// delete, a host directory outside berth's volume store.
#[test]
fn a_volume_name_cannot_reach_a_host_directory() {
    let p = Project::new("volname");
    let victim = p.dir.join("victim");
    std::fs::create_dir_all(&victim).unwrap();
    std::fs::write(victim.join("precious"), "keep me").unwrap();
    let rel = "../../../../../../../..".to_string() + victim.to_str().unwrap();
    for name in [rel.as_str(), victim.to_str().unwrap(), "..", "a/b"] {
        p.write(&format!(
            "services:\n  box:\n    image: berth-test/busybox:1\n    volumes: [\"data:/data\"]\n\
             volumes:\n  data:\n    name: {name:?}\n"
        ));
        let config = p.berth(&["config", "-q"]);
        let err = text(&config.stderr);
        assert!(!config.status.success(), "config -q accepted name {name:?}");
        assert!(
            err.contains("compose.yaml:") && err.contains("volumes.data.name"),
            "the error names neither the file:line nor the key: {err}"
        );
        let up = p.berth(&["up", "-d"]);
        assert!(!up.status.success(), "up -d accepted name {name:?}");
        let down = p.berth(&["down", "-v"]);
        assert!(!down.status.success(), "down -v accepted name {name:?}");
        assert_eq!(
            std::fs::read_to_string(victim.join("precious")).unwrap(),
            "keep me",
            "the host directory was touched (name {name:?})"
        );
        assert!(
            !victim.join("_data").exists(),
            "volume data made in the host directory"
        );
    }
}

/// Defends: `down` after the supervisor was killed removes every
/// container's files (hosts, resolv.conf, output), not only the containers.
#[test]
fn down_after_a_killed_supervisor_leaves_no_container_files() {
    let p = Project::new("crashleak");
    p.write("services:\n  box:\n    image: berth-test/busybox:1\n  two:\n    image: berth-test/busybox:1\n");
    let up = p.berth(&["up", "-d"]);
    assert!(up.status.success(), "up -d: {}", text(&up.stderr));
    let containers = p.state.join("containers");
    let made = std::fs::read_dir(&containers)
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(made, 2, "expected the files of 2 containers");
    let pid = state_json(&p).unwrap()["supervisor_pid"].as_i64().unwrap() as i32;
    // SAFETY: kill(2) on the supervisor this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{pid}")).exists() {
        assert!(Instant::now() < deadline, "supervisor {pid} did not die");
        std::thread::sleep(Duration::from_millis(20));
    }
    let down = p.berth(&["down", "-v"]);
    assert!(down.status.success(), "down -v: {}", text(&down.stderr));
    let left: Vec<_> = std::fs::read_dir(&containers)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "container files left: {left:?}");
    p.assert_nothing_left();
}

/// Defends: recreating a service is not reported as a failure because the
/// old container (same name) was killed.
#[test]
fn a_recreate_is_not_a_false_failure() {
    let p = Project::new("recreate");
    p.write("services:\n  box:\n    image: berth-test/busybox:1\n    stop_grace_period: 1s\n");
    let up = p.berth(&["up", "-d"]);
    assert!(up.status.success(), "up -d: {}", text(&up.stderr));
    p.write(
        "services:\n  box:\n    image: berth-test/busybox:1\n    stop_grace_period: 1s\n    \
         command: [\"/bin/busybox\", \"sleep\", \"601\"]\n",
    );
    let again = p.berth(&["up", "-d"]);
    let err = text(&again.stderr);
    assert!(again.status.success(), "recreate failed: {err}");
    assert!(!err.contains("exited with code"), "false failure: {err}");
    let ps = ps_all(&p);
    assert_eq!(ps.len(), 1, "{ps:?}");
    assert_eq!(ps[0]["State"], "running", "{ps:?}");
}

/// Defends: a container that exits with an error right after it starts stays
/// listed with its exit code, `up -d` says so and succeeds (as docker
/// compose's does), and `--exit-code-from` returns that service's code.
#[test]
fn exit_codes_are_kept_and_passed_through() {
    let p = Project::new("exitcode");
    p.write(
        "services:\n  quick:\n    image: berth-test/busybox:1\n    \
         command: [\"/bin/busybox\", \"sh\", \"-c\", \"exit 3\"]\n  \
         other:\n    image: berth-test/busybox:1\n",
    );
    let up = p.berth(&["up", "-d"]);
    let err = text(&up.stderr);
    assert!(up.status.success(), "up -d: {err}");
    // It exits within the settling window, or just after: wait for the state.
    let deadline = Instant::now() + Duration::from_secs(10);
    let quick = loop {
        let ps = ps_all(&p);
        if let Some(q) = ps
            .iter()
            .find(|c| c["Service"] == "quick" && c["State"] == "exited")
        {
            break q.clone();
        }
        assert!(
            Instant::now() < deadline,
            "quick not listed as exited: {ps:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(quick["ExitCode"], 3, "{quick}");
    let down = p.berth(&["down", "-t", "0"]);
    assert!(down.status.success(), "down: {}", text(&down.stderr));

    let attached = p.berth(&["up", "--exit-code-from", "quick"]);
    assert_eq!(
        attached.status.code(),
        Some(3),
        "up --exit-code-from quick: {}",
        text(&attached.stderr)
    );
    p.assert_nothing_left();
}

/// Defends: Ctrl-C while `up` waits for a dependency to get healthy stops
/// the wait at once (not at the health deadline) and undoes what started.
#[test]
fn ctrl_c_ends_a_dependency_wait_and_undoes_it() {
    let p = Project::new("ctrlcdep");
    p.write(
        "services:\n  db:\n    image: berth-test/busybox:1\n    \
         healthcheck:\n      test: [\"CMD\", \"/bin/busybox\", \"false\"]\n      interval: 1s\n      retries: 1000\n  \
         web:\n    image: berth-test/busybox:1\n    depends_on:\n      db:\n        condition: service_healthy\n",
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["up", "-d"])
        .current_dir(&p.dir)
        .env("BERTH_STATE_DIR", &p.state)
        .env("BERTH_CONFIG", p.dir.join("none.toml"))
        .env("BERTH_REGISTRY_MIRRORS", "docker.io=http://127.0.0.1:9")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A known point: db's container exists (its files do), and web is
    // about to wait for it, or already waits.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let made = std::fs::read_dir(p.state.join("containers"))
            .map(|d| d.count())
            .unwrap_or(0);
        if made > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "db never started");
        assert!(
            child.try_wait().unwrap().is_none(),
            "up ended before the wait"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: kill(2) on the child this test spawned.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    // The health deadline is 20 s away; well before it, up must be gone.
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("up still waits after Ctrl-C");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(!status.success(), "up succeeded after Ctrl-C: {err}");
    assert!(err.contains("interrupted"), "{err}");
    // What it started is gone once the supervisor has undone it.
    let deadline = Instant::now() + Duration::from_secs(30);
    while p
        .state
        .join("projects")
        .join(&p.name)
        .join("supervisor.sock")
        .exists()
    {
        assert!(
            Instant::now() < deadline,
            "the supervisor stays after Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    p.assert_nothing_left();
}

/// Defends: a command whose reader goes away (`| head`) ends quietly, never
/// with a panic (exit 101).
#[test]
fn closed_stdout_ends_commands_quietly() {
    let p = Project::new("pipe");
    p.write("services:\n  box:\n    image: berth-test/busybox:1\n");
    let up = p.berth(&["up", "-d"]);
    assert!(up.status.success(), "up -d: {}", text(&up.stderr));
    for cmd in [
        "top box",
        "ls",
        "images",
        "image ls",
        "runtime ls",
        "completion bash",
        "config",
        "ps",
    ] {
        // A pipe whose reader is already gone: the first write fails, every
        // time, however short the output.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(cmd.split(' '))
            .current_dir(&p.dir)
            .env("BERTH_STATE_DIR", &p.state)
            .env("BERTH_CONFIG", p.dir.join("none.toml"))
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let err = text(&out.stderr);
        assert!(!err.contains("panicked"), "berth {cmd}: {err}");
        use std::os::unix::process::ExitStatusExt;
        assert!(
            out.status.code() == Some(0) || out.status.signal() == Some(libc::SIGPIPE),
            "berth {cmd} into a closed pipe: {:?}: {err}",
            out.status
        );
    }
}

/// Defends: a service with only an `x-runtime` runs on a base image, not on
/// the host's root: a file on the host is not there, the runtime is.
#[test]
fn an_x_runtime_service_does_not_see_the_host() {
    use crate::up::Registry;
    let tmp = tempfile::tempdir().unwrap();
    // debian:bookworm-slim's stand-in (mmdebstrap, cached between runs).
    let registry = Registry::seed(tmp.path(), "", true);

    let secret = tmp.path().join("host-only-secret");
    std::fs::write(&secret, "host data").unwrap();
    let dir = tmp.path().join(format!("xrt{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("compose.yaml"),
        "services:\n  app:\n    x-runtime: node@4.2.2\n    command: [\"sleep\", \"600\"]\n",
    )
    .unwrap();
    std::fs::write(tmp.path().join("none.toml"), "").unwrap();
    let berth = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(args)
            .current_dir(&dir)
            .env("BERTH_STATE_DIR", tmp.path().join("state"))
            .env("BERTH_CONFIG", tmp.path().join("none.toml"))
            .env(
                "BERTH_REGISTRY_MIRRORS",
                format!("docker.io=http://127.0.0.1:{}", registry.port),
            )
            .output()
            .unwrap()
    };
    let up = berth(&["up", "-d"]);
    assert!(up.status.success(), "up -d: {}", text(&up.stderr));
    let seen = berth(&["exec", "-T", "app", "cat", secret.to_str().unwrap()]);
    let node = berth(&["exec", "-T", "app", "node", "-v"]);
    let os = berth(&["exec", "-T", "app", "cat", "/etc/debian_version"]);
    let down = berth(&["down", "-t", "0"]);
    assert!(down.status.success(), "down: {}", text(&down.stderr));
    assert!(
        !seen.status.success() && !text(&seen.stdout).contains("host data"),
        "the container read a host file: {}",
        text(&seen.stdout)
    );
    assert_eq!(
        text(&node.stdout).trim(),
        "v4.2.2",
        "{}",
        text(&node.stderr)
    );
    assert!(
        text(&os.stdout).starts_with("12."),
        "not the Debian base: {}",
        text(&os.stdout)
    );
}
