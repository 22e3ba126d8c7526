//! Compose keys that reach the container instead of being dropped (issue
//! 13): secrets and configs (read-only files with the long syntax's owner and
//! mode, from a file, the environment or inline content; a changed secret
//! recreates the service; a bad reference fails `up` before anything is
//! made), tmpfs options, deploy.restart_policy, pull_policy, labels.

use crate::common::text;
use crate::engine::Project;

/// Defends: an application that expects its password in
/// `/run/secrets/db-password` gets it, with the mode and owner asked for.
#[test]
fn secrets_and_configs_are_mounted_with_owner_and_mode() {
    let p = Project::new("secrets");
    std::fs::write(p.dir.join("db-password.txt"), "hunter2").unwrap();
    let compose = "services:\n  box:\n    image: berth-test/busybox:1\n    \
         secrets:\n      - db-password\n      - {source: token, target: api-token, uid: \"1000\", gid: \"1001\", mode: 0400}\n    \
         configs:\n      - {source: app, target: /etc/app.conf, mode: 0440}\n\
         secrets:\n  db-password:\n    file: ./db-password.txt\n  token:\n    environment: BERTH_TEST_TOKEN\n\
         configs:\n  app:\n    content: \"listen = 80\"\n";
    p.write(compose);
    let up = p.berth_env(&["up", "-d"], &[("BERTH_TEST_TOKEN", "t0k3n")]);
    assert!(up.status.success(), "up -d: {}", text(&up.stderr));
    let exec = |cmd: &str| {
        let out = p.berth(&["exec", "-T", "box", "/bin/busybox", "sh", "-c", cmd]);
        assert!(out.status.success(), "{cmd}: {}", text(&out.stderr));
        text(&out.stdout)
    };
    assert_eq!(exec("cat /run/secrets/db-password"), "hunter2");
    assert_eq!(exec("cat /run/secrets/api-token"), "t0k3n");
    assert_eq!(exec("cat /etc/app.conf"), "listen = 80");
    assert_eq!(
        exec("/bin/busybox stat -c '%a %u %g' /run/secrets/db-password /run/secrets/api-token /etc/app.conf"),
        "444 0 0\n400 1000 1001\n440 0 0\n"
    );
    // Read-only, even for root inside.
    let write = p.berth(&[
        "exec",
        "-T",
        "box",
        "/bin/busybox",
        "sh",
        "-c",
        "echo x > /run/secrets/db-password",
    ]);
    assert!(!write.status.success(), "a secret was writable");

    // A changed secret recreates the service; the same one does not.
    let id = |p: &Project| {
        let ps = p.berth(&["ps", "--format", "json"]);
        let v: serde_json::Value = serde_json::from_slice(&ps.stdout).unwrap();
        v[0]["ID"].as_str().unwrap_or_default().to_string()
    };
    let before = id(&p);
    assert!(!before.is_empty());
    let same = p.berth_env(&["up", "-d"], &[("BERTH_TEST_TOKEN", "t0k3n")]);
    assert!(same.status.success(), "{}", text(&same.stderr));
    assert_eq!(id(&p), before, "an unchanged secret recreated the service");
    let changed = p.berth_env(&["up", "-d"], &[("BERTH_TEST_TOKEN", "rotated")]);
    assert!(changed.status.success(), "{}", text(&changed.stderr));
    assert_ne!(
        id(&p),
        before,
        "a changed secret did not recreate the service"
    );
    assert_eq!(exec("cat /run/secrets/api-token"), "rotated");
    let down = p.berth(&["down", "-t", "0"]);
    assert!(down.status.success(), "{}", text(&down.stderr));
    p.assert_nothing_left();
}

/// Defends: a secret that cannot be read fails `up` with the key path, and
/// nothing is left half-made.
#[test]
fn a_missing_secret_fails_up_before_anything_is_made() {
    let p = Project::new("nosecret");
    p.write(
        "services:\n  box:\n    image: berth-test/busybox:1\n    secrets: [token]\n\
         secrets:\n  token:\n    environment: BERTH_TEST_UNSET_TOKEN\n",
    );
    p.up_fails_with(&["secrets.token.environment", "BERTH_TEST_UNSET_TOKEN"]);
}

/// Defends: `tmpfs` options and `deploy.restart_policy` are applied, not
/// dropped: the mount has the size and mode asked for, and a failing
/// container is restarted exactly `max_attempts` times.
#[test]
fn tmpfs_options_and_deploy_restart_policy_apply() {
    let p = Project::new("keys");
    p.write(
        "services:\n  box:\n    image: berth-test/busybox:1\n    tmpfs: [\"/scratch:size=1m,mode=0700\"]\n  \
         flaky:\n    image: berth-test/busybox:1\n    command: [\"/bin/busybox\", \"sh\", \"-c\", \"exit 2\"]\n    \
         deploy:\n      restart_policy: {condition: on-failure, max_attempts: 2}\n",
    );
    let up = p.berth(&["up", "-d"]);
    assert!(up.status.success(), "up -d: {}", text(&up.stderr));
    let out = p.berth(&[
        "exec",
        "-T",
        "box",
        "/bin/busybox",
        "sh",
        "-c",
        "/bin/busybox grep ' /scratch ' /proc/mounts; /bin/busybox stat -c %a /scratch",
    ]);
    let seen = text(&out.stdout);
    assert!(seen.contains("size=1024k"), "{seen}");
    assert!(seen.trim_end().ends_with("700"), "{seen}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let flaky = loop {
        let ps: serde_json::Value =
            serde_json::from_slice(&p.berth(&["ps", "-a", "--format", "json"]).stdout).unwrap();
        let f = ps
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["Service"] == "flaky")
            .cloned()
            .unwrap();
        if f["State"] == "exited" && f["RestartCount"] == 2 {
            break f;
        }
        assert!(std::time::Instant::now() < deadline, "{f}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(flaky["ExitCode"], 2, "{flaky}");
    let down = p.berth(&["down", "-t", "0"]);
    assert!(down.status.success(), "{}", text(&down.stderr));
}

/// Defends: `pull_policy` decides whether `up` pulls: `always` pulls an image
/// that is present (here it cannot: no registry answers, so `up` fails
/// naming the pull), `missing` uses it, `never` refuses a missing one.
#[test]
fn pull_policy_is_followed() {
    let p = Project::new("pullpol");
    let with = |policy: &str, image: &str| {
        format!("services:\n  box:\n    image: {image}\n    pull_policy: {policy}\n")
    };
    p.write(&with("always", "berth-test/busybox:1"));
    let up = p.berth(&["up", "-d"]);
    let err = text(&up.stderr);
    assert!(!up.status.success(), "always did not pull: {err}");
    assert!(err.contains("pulling berth-test/busybox:1"), "{err}");
    p.write(&with("missing", "berth-test/busybox:1"));
    let up = p.berth(&["up", "-d"]);
    assert!(up.status.success(), "missing: {}", text(&up.stderr));
    assert!(p.berth(&["down", "-t", "0"]).status.success());
    p.write(&with("never", "berth-test/not-here:1"));
    let up = p.berth(&["up", "-d"]);
    let err = text(&up.stderr);
    assert!(!up.status.success(), "never pulled a missing image: {err}");
    assert!(err.contains("pull policy is never"), "{err}");
    p.write(&with("sometimes", "berth-test/busybox:1"));
    let up = p.berth(&["up", "-d"]);
    assert!(
        text(&up.stderr).contains("services.box.pull_policy:"),
        "{}",
        text(&up.stderr)
    );
    p.assert_nothing_left();
}

/// Defends: a service's `labels` (and `label_file`) are kept on its
/// container, with compose's own, and can be seen and filtered on.
#[test]
fn labels_are_kept_inspected_and_filtered() {
    let p = Project::new("labels");
    std::fs::write(p.dir.join("more.labels"), "team=web\n").unwrap();
    p.write(
        "services:\n  box:\n    image: berth-test/busybox:1\n    labels: {tier: front}\n    label_file: ./more.labels\n  \
         other:\n    image: berth-test/busybox:1\n",
    );
    let up = p.berth(&["up", "-d"]);
    assert!(up.status.success(), "up -d: {}", text(&up.stderr));
    let out = p.berth(&["inspect", "box"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let labels = &v[0]["Config"]["Labels"];
    assert_eq!(labels["tier"], "front", "{v}");
    assert_eq!(labels["team"], "web", "{v}");
    assert_eq!(labels["com.docker.compose.service"], "box", "{v}");
    assert_eq!(labels["com.docker.compose.project"], p.name.as_str(), "{v}");
    assert_eq!(v[0]["State"]["Running"], true, "{v}");
    let names = |filter: &str| {
        let out = p.berth(&["ps", "-q", "--filter", filter]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    assert_eq!(
        names("label=tier=front").trim(),
        format!("{}-box-1", p.name)
    );
    assert_eq!(names("label=tier=back").trim(), "");
    assert_eq!(names("label=com.docker.compose.service").lines().count(), 2);
    let bad = p.berth(&["ps", "--filter", "colour=red"]);
    assert!(!bad.status.success());
    assert!(p.berth(&["down", "-t", "0"]).status.success());
}

/// Defends: `volume: {nocopy: true}` starts a new volume empty (without it,
/// the image's files at the target are copied in), and a key the engine
/// cannot honour (`cpuset`) fails `up` by name before anything is made.
#[test]
fn nocopy_applies_and_unsupported_keys_are_refused() {
    let p = Project::new("nocopy");
    let ctx = p.dir.join("seeded");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("seed"), "from the image").unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM berth-test/busybox:1\nCOPY seed /data/seed\n",
    )
    .unwrap();
    p.write(
        "services:\n  copied:\n    build: seeded\n    image: berth-test/seeded:1\n    volumes: [\"a:/data\"]\n  \
         empty:\n    image: berth-test/seeded:1\n    \
         volumes: [{type: volume, source: b, target: /data, volume: {nocopy: true}}]\n\
         volumes:\n  a: {}\n  b: {}\n",
    );
    let up = p.berth(&["up", "-d", "--build"]);
    assert!(up.status.success(), "up -d: {}", text(&up.stderr));
    let ls = |svc: &str| {
        let out = p.berth(&["exec", "-T", svc, "/bin/busybox", "ls", "/data"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    assert_eq!(ls("copied").trim(), "seed");
    assert_eq!(ls("empty").trim(), "");
    assert!(p.berth(&["down", "-t", "0", "-v"]).status.success());

    p.write("services:\n  box:\n    image: berth-test/busybox:1\n    cpuset: \"0\"\n");
    p.up_fails_with(&["services.box.cpuset"]);
}

/// Defends: `stdin_open: true` keeps the container's stdin open (a `cat`
/// waits instead of reading end of file at once), and `tty: true` gives the
/// container a terminal whose output is logged.
#[test]
fn stdin_open_keeps_stdin_open_and_tty_gives_a_terminal() {
    let p = Project::new("stdin");
    let compose = |open: bool| {
        format!(
            "services:\n  box:\n    image: berth-test/busybox:1\n    stdin_open: {open}\n    \
             command: [\"/bin/busybox\", \"sh\", \"-c\", \"/bin/busybox cat; echo stdin ended\"]\n"
        )
    };
    p.write(&compose(true));
    let up = p.berth(&["up", "-d"]);
    assert!(up.status.success(), "up -d: {}", text(&up.stderr));
    let stdin = p.berth(&[
        "exec",
        "-T",
        "box",
        "/bin/busybox",
        "readlink",
        "/proc/1/fd/0",
    ]);
    let stdin = text(&stdin.stdout);
    assert!(!stdin.contains("/dev/null"), "stdin is {stdin}");
    let ps = text(&p.berth(&["ps", "--format", "json"]).stdout);
    assert!(ps.contains("\"running\""), "the cat ended: {ps}");
    // With stdin closed, `cat` ends at once and the container exits 0.
    p.write(&compose(false));
    let up = p.berth(&["up", "-d"]);
    assert!(up.status.success(), "up -d: {}", text(&up.stderr));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let logs = text(&p.berth(&["logs", "--no-color"]).stdout);
        if logs.contains("stdin ended") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{logs}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // The stdin_open container had been running all along: it printed
    // nothing before it was replaced.
    let logs = text(&p.berth(&["logs", "--no-color"]).stdout);
    assert_eq!(logs.matches("stdin ended").count(), 1, "{logs}");
    assert!(p.berth(&["down", "-t", "0"]).status.success());

    // `tty: true`: the streams are a terminal, and what goes to it is logged.
    p.write(
        "services:\n  box:\n    image: berth-test/busybox:1\n    tty: true\n    \
         command: [\"/bin/busybox\", \"sh\", \"-c\", \"[ -t 0 ] && [ -t 1 ] && echo on a terminal; /bin/busybox sleep 600\"]\n",
    );
    let up = p.berth(&["up", "-d"]);
    assert!(up.status.success(), "up -d: {}", text(&up.stderr));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let logs = text(&p.berth(&["logs", "--no-color"]).stdout);
        if logs.contains("on a terminal") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{logs}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(p.berth(&["down", "-t", "0"]).status.success());
    p.assert_nothing_left();
}
