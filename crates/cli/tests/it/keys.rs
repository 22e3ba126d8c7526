//! Compose keys that reach the container instead of being dropped (issue
//! 13): secrets and configs (read-only files with the long syntax's owner and
//! mode, from a file, the environment or inline content; a changed secret
//! recreates the service; a bad reference fails `up` before anything is
//! made), tmpfs options, deploy.restart_policy, pull_policy, labels,
//! namespace sharing (ipc, pid, uts, cgroup), the cgroup keys and the
//! post_start/pre_stop hooks.

use crate::common::{text, Attached};
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
/// cannot honour (`isolation`) fails `up` by name before anything is made.
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

    p.write("services:\n  box:\n    image: berth-test/busybox:1\n    isolation: process\n");
    p.up_fails_with(&["services.box.isolation"]);
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

/// `berth exec -T SERVICE sh -c SCRIPT` in `p`: its stdout, which must be a
/// success.
fn sh_in(p: &Project, service: &str, script: &str) -> String {
    let out = p.berth(&["exec", "-T", service, "/bin/busybox", "sh", "-c", script]);
    assert!(
        out.status.success(),
        "{service}: {script}: {}",
        text(&out.stderr)
    );
    text(&out.stdout).trim().to_string()
}

fn host_ns(kind: &str) -> String {
    std::fs::read_link(format!("/proc/self/ns/{kind}"))
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// Defends: `ipc: service:db` and `pid: service:db` put the service in db's
/// IPC namespace (its /dev/shm too) and PID namespace; `pid`, `ipc` and
/// `uts: host` are the host's; `cgroup: private` gives a cgroup namespace
/// of its own.
#[test]
fn namespaces_are_shared_with_another_service_or_the_host() {
    let p = Project::new("nsshare");
    p.write(
        "services:\n  db:\n    image: berth-test/busybox:1\n    \
         command: [\"/bin/busybox\", \"sh\", \"-c\", \"echo from-db > /dev/shm/marker; exec /bin/busybox sleep 600\"]\n  \
         app:\n    image: berth-test/busybox:1\n    ipc: service:db\n    pid: service:db\n  \
         hostns:\n    image: berth-test/busybox:1\n    pid: host\n    ipc: host\n    uts: host\n  \
         cg:\n    image: berth-test/busybox:1\n    cgroup: private\n",
    );
    let up = p.berth(&["up", "-d"]);
    assert!(up.status.success(), "up -d: {}", text(&up.stderr));
    let ns = |svc: &str, kind: &str| sh_in(&p, svc, &format!("readlink /proc/self/ns/{kind}"));
    // ipc: the same namespace, and db's /dev/shm.
    assert_eq!(ns("app", "ipc"), ns("db", "ipc"));
    assert_ne!(ns("app", "ipc"), host_ns("ipc"));
    assert_eq!(sh_in(&p, "app", "cat /dev/shm/marker"), "from-db");
    // pid: db's sleep is PID 1 of the namespace app is in.
    assert_eq!(ns("app", "pid"), ns("db", "pid"));
    assert_eq!(
        sh_in(&p, "app", "cat /proc/1/cmdline | /bin/busybox tr '\\0' ' '"),
        "/bin/busybox sleep 600"
    );
    // host: the host's namespaces and name; this test's own process is seen.
    assert_eq!(ns("hostns", "pid"), host_ns("pid"));
    assert_eq!(ns("hostns", "ipc"), host_ns("ipc"));
    assert_eq!(ns("hostns", "uts"), host_ns("uts"));
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(sh_in(&p, "hostns", "hostname"), host.trim());
    let me = std::process::id();
    assert_eq!(
        sh_in(&p, "hostns", &format!("test -d /proc/{me} && echo seen")),
        "seen"
    );
    // cgroup: private, so its own cgroup is its root; others see the host's.
    assert_ne!(ns("cg", "cgroup"), host_ns("cgroup"));
    assert_eq!(ns("db", "cgroup"), host_ns("cgroup"));
    let cgroups = sh_in(&p, "cg", "cat /proc/self/cgroup");
    assert!(cgroups.lines().all(|l| l.ends_with(":/")), "{cgroups}");
    assert!(p.berth(&["down", "-t", "0"]).status.success());
    p.assert_nothing_left();

    // Sharing a namespace of a service that is private, or not a service.
    p.write(
        "services:\n  db:\n    image: berth-test/busybox:1\n    ipc: private\n  \
         app:\n    image: berth-test/busybox:1\n    ipc: service:db\n",
    );
    p.up_fails_with(&["services.app.ipc", "service \"db\" has ipc: private"]);
    p.write("services:\n  box:\n    image: berth-test/busybox:1\n    uts: private\n");
    p.up_fails_with(&["services.box.uts"]);
}

/// A whole disk of this host: `(path, "major:minor")`.
fn a_disk() -> (String, String) {
    let mut names: Vec<String> = std::fs::read_dir("/sys/block")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| std::path::Path::new("/dev").join(n).exists())
        .collect();
    names.sort_by_key(|n| (n.starts_with("loop") || n.starts_with("zram"), n.clone()));
    let name = names.first().expect("a block device").clone();
    let numbers = std::fs::read_to_string(format!("/sys/block/{name}/dev")).unwrap();
    (format!("/dev/{name}"), numbers.trim().to_string())
}

/// Defends: the cgroup keys reach the container's cgroup, read from inside
/// it where the runtime mounts it (cgroup v1, this machine): cpuset,
/// cpu_period/cpu_quota, cpu_rt_runtime/cpu_rt_period, mem_reservation
/// (and deploy.resources.reservations.memory), mem_swappiness,
/// oom_kill_disable, oom_score_adj, blkio_config throttles, cgroup_parent
/// and device_cgroup_rules.
#[test]
fn cgroup_keys_reach_the_containers_cgroup() {
    if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        // cgroup v2 only: mem_swappiness, oom_kill_disable and cpu_rt_* are
        // refused there (see the sandbox tests); this test reads v1 files.
        return;
    }
    let parent = format!("berth-it-{}", std::process::id());
    // Declared before the project, so it goes after the project's `down`.
    let _parent = CgroupParentGuard(parent.clone());
    let p = Project::new("cgkeys");
    let cpu = std::thread::available_parallelism().map_or(1, |n| n.get()) - 1;
    let (disk, numbers) = a_disk();
    p.write(&format!(
        "services:\n  box:\n    image: berth-test/busybox:1\n    \
         cpuset: \"{cpu}\"\n    cpu_period: 50000\n    cpu_quota: 25000\n    \
         cpu_rt_runtime: 10000\n    cpu_rt_period: 500000\n    \
         mem_limit: 64m\n    mem_reservation: 32m\n    mem_swappiness: 10\n    \
         oom_kill_disable: true\n    oom_score_adj: 300\n    \
         cgroup_parent: {parent}\n    device_cgroup_rules: [\"c 10:237 r\"]\n    \
         blkio_config:\n      device_read_bps: [{{path: {disk}, rate: 1mb}}]\n      \
         device_write_iops: [{{path: {disk}, rate: 100}}]\n  \
         reserved:\n    image: berth-test/busybox:1\n    \
         deploy: {{resources: {{reservations: {{memory: 16m, cpus: \"0.5\"}}}}}}\n"
    ));
    let up = p.berth(&["up", "-d"]);
    assert!(up.status.success(), "up -d: {}", text(&up.stderr));
    let cat = |svc: &str, file: &str| sh_in(&p, svc, &format!("cat {file}"));
    assert_eq!(
        sh_in(
            &p,
            "box",
            "grep Cpus_allowed_list /proc/1/status | /bin/busybox cut -f2"
        ),
        cpu.to_string()
    );
    assert_eq!(
        cat("box", "/sys/fs/cgroup/cpuset/cpuset.cpus"),
        cpu.to_string()
    );
    assert_eq!(cat("box", "/sys/fs/cgroup/cpu/cpu.cfs_quota_us"), "25000");
    assert_eq!(cat("box", "/sys/fs/cgroup/cpu/cpu.cfs_period_us"), "50000");
    assert_eq!(cat("box", "/sys/fs/cgroup/cpu/cpu.rt_runtime_us"), "10000");
    assert_eq!(cat("box", "/sys/fs/cgroup/cpu/cpu.rt_period_us"), "500000");
    assert_eq!(
        cat("box", "/sys/fs/cgroup/memory/memory.soft_limit_in_bytes"),
        (32u64 << 20).to_string()
    );
    assert_eq!(cat("box", "/sys/fs/cgroup/memory/memory.swappiness"), "10");
    let oom = cat("box", "/sys/fs/cgroup/memory/memory.oom_control");
    assert!(oom.contains("oom_kill_disable 1"), "{oom}");
    assert_eq!(cat("box", "/proc/1/oom_score_adj"), "300");
    assert_eq!(
        cat("box", "/sys/fs/cgroup/blkio/blkio.throttle.read_bps_device"),
        format!("{numbers} 1048576")
    );
    assert_eq!(
        cat(
            "box",
            "/sys/fs/cgroup/blkio/blkio.throttle.write_iops_device"
        ),
        format!("{numbers} 100")
    );
    let cgroups = cat("box", "/proc/1/cgroup");
    let memory = cgroups
        .lines()
        .find(|l| l.contains(":memory:"))
        .unwrap_or_default();
    assert!(memory.contains(&format!(":/{parent}/")), "{cgroups}");
    // `top` finds the container's processes under its parent cgroup.
    let top = p.berth(&["top", "box"]);
    assert!(
        text(&top.stdout).contains("/bin/busybox sleep 600"),
        "{}{}",
        text(&top.stdout),
        text(&top.stderr)
    );
    // The rule lets it use a loop-control node it makes, for reading only.
    assert_eq!(
        sh_in(
            &p,
            "box",
            "mknod /dev/lc c 10 237 && (: < /dev/lc) && echo read; \
             (: > /dev/lc) 2>/dev/null && echo written; true"
        ),
        "read"
    );
    assert_eq!(
        cat(
            "reserved",
            "/sys/fs/cgroup/memory/memory.soft_limit_in_bytes"
        ),
        (16u64 << 20).to_string()
    );
    assert!(p.berth(&["down", "-t", "0"]).status.success());
    p.assert_nothing_left();
}

/// Removes a test's cgroup parent from every hierarchy (an rmdir: only once
/// its containers are gone), even when the test fails.
struct CgroupParentGuard(String);

impl Drop for CgroupParentGuard {
    fn drop(&mut self) {
        let Ok(roots) = std::fs::read_dir("/sys/fs/cgroup") else {
            return;
        };
        for root in roots.flatten() {
            let _ = std::fs::remove_dir(root.path().join(&self.0));
        }
    }
}

/// Defends: what this host's cgroups cannot do is refused by key path
/// before anything is made, not dropped: a block I/O weight without a
/// proportional I/O scheduler (this machine), an unavailable CPU, a bad
/// device rule.
#[test]
fn cgroup_keys_this_host_cannot_honour_are_refused() {
    let p = Project::new("cgrefuse");
    let weights = ["blkio.weight", "blkio.bfq.weight"].iter().any(|f| {
        std::path::Path::new("/sys/fs/cgroup/blkio")
            .join(f)
            .exists()
    });
    if !weights && !std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        p.write(
            "services:\n  box:\n    image: berth-test/busybox:1\n    blkio_config: {weight: 300}\n",
        );
        p.up_fails_with(&[
            "services.box.blkio_config.weight",
            "not available on this host",
        ]);
        let (disk, _) = a_disk();
        p.write(&format!(
            "services:\n  box:\n    image: berth-test/busybox:1\n    \
             blkio_config: {{weight_device: [{{path: {disk}, weight: 300}}]}}\n"
        ));
        p.up_fails_with(&[
            "services.box.blkio_config.weight_device",
            "not available on this host",
        ]);
    }
    p.write("services:\n  box:\n    image: berth-test/busybox:1\n    cpuset: \"4000\"\n");
    p.up_fails_with(&["services.box.cpuset", "4000 is not available"]);
    p.write(
        "services:\n  box:\n    image: berth-test/busybox:1\n    device_cgroup_rules: [\"c 1:3\"]\n",
    );
    p.up_fails_with(&["services.box.device_cgroup_rules", "c 1:3"]);
    p.write(
        "services:\n  box:\n    image: berth-test/busybox:1\n    cpus: 0.5\n    cpu_quota: 20000\n",
    );
    p.up_fails_with(&["services.box", "cpus and cpu_period/cpu_quota"]);
}

/// Defends: `post_start` runs in the container after it started and
/// `pre_stop` before its stop signal, each through exec with its own user,
/// privileges and environment; a failing post_start fails `up` by name.
#[test]
fn post_start_and_pre_stop_hooks_run_around_the_container() {
    let p = Project::new("hooks");
    let out = p.dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::set_permissions(&out, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    // The main process notes its stop signal after whatever the hooks wrote
    // (`$$` keeps compose's interpolation off the hooks' variables).
    p.write(
        "services:\n  box:\n    image: berth-test/busybox:1\n    volumes: [\"./out:/out\"]\n    \
         command: [\"/bin/busybox\", \"sh\", \"-c\", \"trap 'echo term >> /out/order; exit 0' TERM; while true; do /bin/busybox sleep 0.1; done\"]\n    \
         post_start:\n      - command: [\"/bin/busybox\", \"sh\", \"-c\", \"echo post_start $$HOOK $(id -u) >> /out/order; grep CapEff /proc/self/status > /out/caps\"]\n        \
         user: \"1000\"\n        privileged: true\n        environment: {HOOK: started}\n    \
         pre_stop:\n      - command: /bin/busybox sh -c 'echo pre_stop $$HOOK $(id -u) >> /out/order'\n        \
         environment: [HOOK=stopping]\n",
    );
    let up = p.berth(&["up", "-d"]);
    assert!(up.status.success(), "up -d: {}", text(&up.stderr));
    let order = || std::fs::read_to_string(out.join("order")).unwrap_or_default();
    // Done before `up` returned.
    assert_eq!(order(), "post_start started 1000\n");
    let caps = std::fs::read_to_string(out.join("caps")).unwrap();
    let container_caps = sh_in(&p, "box", "grep CapEff /proc/1/status");
    assert_ne!(
        caps.trim(),
        container_caps,
        "the privileged hook had the container's capabilities"
    );
    let stop = p.berth(&["stop", "-t", "5"]);
    assert!(stop.status.success(), "stop: {}", text(&stop.stderr));
    assert_eq!(
        order(),
        "post_start started 1000\npre_stop stopping 0\nterm\n"
    );
    assert!(p.berth(&["down", "-t", "0"]).status.success());
    // down runs pre_stop too (the container was stopped: no hook, no signal).
    std::fs::remove_file(out.join("order")).unwrap();
    let up = p.berth(&["up", "-d"]);
    assert!(up.status.success(), "up -d: {}", text(&up.stderr));
    assert!(p.berth(&["down", "-t", "5"]).status.success());
    assert_eq!(
        order(),
        "post_start started 1000\npre_stop stopping 0\nterm\n"
    );
    p.assert_nothing_left();

    p.write(
        "services:\n  box:\n    image: berth-test/busybox:1\n    \
         post_start: [{command: [\"/bin/busybox\", \"false\"]}]\n",
    );
    let up = p.berth(&["up", "-d"]);
    assert!(!up.status.success(), "a failing post_start hook passed");
    let err = text(&up.stderr);
    assert!(
        err.contains("post_start hook") && err.contains("exited with code 1"),
        "{err}"
    );
    assert!(p.berth(&["down", "-t", "0"]).status.success());
    p.assert_nothing_left();
}

/// Defends: the long syntax's `tmpfs.mode` is the mount's mode (not
/// dropped), and `bind.create_host_path: false` binds an existing path but
/// fails `up` by key path on a missing one instead of creating it, as
/// docker does, before anything is made.
#[test]
fn tmpfs_mode_and_create_host_path_false_apply() {
    let p = Project::new("mounts");
    std::fs::create_dir_all(p.dir.join("present")).unwrap();
    std::fs::write(p.dir.join("present/here"), "on the host").unwrap();
    p.write(
        "services:\n  box:\n    image: berth-test/busybox:1\n    volumes:\n      \
         - {type: tmpfs, target: /scratch, tmpfs: {size: 2m, mode: 01777}}\n      \
         - {type: bind, source: ./present, target: /present, bind: {create_host_path: false}}\n",
    );
    let up = p.berth(&["up", "-d"]);
    assert!(up.status.success(), "up -d: {}", text(&up.stderr));
    let seen = sh_in(
        &p,
        "box",
        "/bin/busybox stat -c %a /scratch; /bin/busybox grep ' /scratch ' /proc/mounts; cat /present/here",
    );
    let mut lines = seen.lines();
    assert_eq!(lines.next(), Some("1777"), "{seen}");
    assert!(
        lines.next().is_some_and(|m| m.contains("size=2048k")),
        "{seen}"
    );
    assert_eq!(lines.next(), Some("on the host"), "{seen}");
    assert!(p.berth(&["down", "-t", "0"]).status.success());
    p.assert_nothing_left();

    p.write(
        "services:\n  box:\n    image: berth-test/busybox:1\n    volumes:\n      \
         - {type: bind, source: ./absent, target: /absent, bind: {create_host_path: false}}\n",
    );
    p.up_fails_with(&["services.box.volumes[0].source", "does not exist"]);
    assert!(
        !p.dir.join("absent").exists(),
        "the missing path was created"
    );
}

/// Defends: `attach: false` keeps a service's output out of an attached
/// `up` (it still runs, and its exit still ends `up`), while the other
/// services' output is shown.
#[test]
fn attach_false_hides_a_services_output_from_up() {
    let p = Project::new("attach");
    p.write(
        "services:\n  loud:\n    image: berth-test/busybox:1\n    \
         command: [\"/bin/busybox\", \"sh\", \"-c\", \"/bin/busybox sleep 1; echo from-loud\"]\n  \
         quiet:\n    image: berth-test/busybox:1\n    attach: false\n    \
         command: [\"/bin/busybox\", \"sh\", \"-c\", \"/bin/busybox sleep 1; echo from-quiet\"]\n",
    );
    let up = p.berth(&["up"]);
    let (out, err) = (text(&up.stdout), text(&up.stderr));
    assert!(up.status.success(), "up: {err}");
    assert!(out.contains("from-loud"), "{out}\n{err}");
    assert!(!out.contains("from-quiet"), "{out}\n{err}");
    let attaching = err
        .lines()
        .find(|l| l.starts_with("Attaching to"))
        .unwrap_or_default();
    assert!(
        attaching.contains("loud") && !attaching.contains("quiet"),
        "{err}"
    );
    p.assert_nothing_left();
}

/// Defends: a service's `annotations` are kept on its container: `inspect`
/// shows them (docker's `HostConfig.Annotations`), in both compose forms.
#[test]
fn annotations_are_kept_and_shown_by_inspect() {
    let p = Project::new("annot");
    p.write(
        "services:\n  box:\n    image: berth-test/busybox:1\n    \
         annotations:\n      com.example.owner: team-a\n      com.example.tier: \"2\"\n    \
         command: [\"/bin/busybox\", \"sleep\", \"60\"]\n  \
         listed:\n    image: berth-test/busybox:1\n    annotations: [\"org.example.k=v\"]\n    \
         command: [\"/bin/busybox\", \"sleep\", \"60\"]\n",
    );
    let up = p.berth(&["up", "-d"]);
    assert!(up.status.success(), "up -d: {}", text(&up.stderr));
    let out = p.berth(&["inspect", "box", "listed"]);
    assert!(out.status.success(), "inspect: {}", text(&out.stderr));
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let of = |name: &str| {
        shown
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["Name"].as_str().is_some_and(|n| n.contains(name)))
            .map(|c| c["HostConfig"]["Annotations"].clone())
            .unwrap_or_default()
    };
    assert_eq!(
        of("-box-"),
        serde_json::json!({"com.example.owner": "team-a", "com.example.tier": "2"})
    );
    assert_eq!(of("-listed-"), serde_json::json!({"org.example.k": "v"}));
    assert!(p.berth(&["down", "-t", "0"]).status.success());
    p.assert_nothing_left();
}

/// Defends: each `build` key berth's builder cannot carry out fails `build`
/// with one line naming its path, before any step runs (no image is made).
#[test]
fn build_keys_the_builder_cannot_honour_are_refused_by_path() {
    let p = Project::new("buildkeys");
    std::fs::write(
        p.dir.join("Dockerfile"),
        "FROM scratch\nCOPY Dockerfile /\n",
    )
    .unwrap();
    let cases = [
        ("entitlements", "[\"network.host\"]"),
        ("cache_to", "[\"type=local,dest=/tmp/c\"]"),
        ("no_cache_filter", "[\"a\"]"),
        ("provenance", "true"),
        ("sbom", "true"),
        ("privileged", "true"),
        ("ulimits", "{nofile: 10}"),
        ("platforms", "[\"linux/arm64\"]"),
    ];
    for (key, value) in cases {
        p.write(&format!(
            "services:\n  box:\n    image: berth-test/buildkeys:1\n    build:\n      context: .\n      {key}: {value}\n"
        ));
        let out = p.berth(&["build"]);
        let err = text(&out.stderr);
        assert!(!out.status.success(), "{key}: build succeeded: {err}");
        let line = err
            .lines()
            .find(|l| l.starts_with("error:"))
            .unwrap_or_default();
        assert!(
            line.contains(&format!("services.box.build.{key}")),
            "{key}: {err}"
        );
        let images = p.berth(&["images", "--format", "json"]);
        assert!(
            !text(&images.stdout).contains("buildkeys"),
            "{key}: an image was made"
        );
    }
}

/// Defends: each key the embedded engine cannot honour fails `up` with one
/// line naming its path (not dropped, and not half-applied: an image mount
/// is not taken for a named volume), and nothing of the project is made.
#[test]
fn keys_the_engine_cannot_honour_are_refused_by_path() {
    let p = Project::new("refuse");
    let svc = |extra: &str| format!("services:\n  box:\n    image: berth-test/busybox:1\n{extra}");
    let cases: &[(String, &str)] = &[
        (svc("    volumes: [{type: image, source: berth-test/busybox:1, target: /img}]\n"), "services.box.volumes[0].type: \"image\""),
        (svc("    volumes: [{type: npipe, source: x, target: /pipe}]\n"), "services.box.volumes[0].type: \"npipe\""),
        (svc("    volumes: [{type: bind, source: ., target: /h, bind: {propagation: rshared}}]\n"), "services.box.volumes[0].bind.propagation"),
        (svc("    volumes: [{type: bind, source: ., target: /h, bind: {recursive: disabled}}]\n"), "services.box.volumes[0].bind.recursive"),
        (svc("    volumes: [{type: volume, source: v, target: /d, volume: {subpath: ../s}}]\nvolumes:\n  v: {}\n"), "services.box.volumes[0].volume.subpath: \"../s\" is not a relative path inside the volume"),
        (svc("    volumes: [{type: image, source: berth-test/busybox:1, target: /img, image: {subpath: bin}}]\n"), "services.box.volumes[0].type: \"image\""),
        (svc("    deploy: {resources: {reservations: {devices: [{capabilities: [gpu]}]}}}\n"), "services.box.deploy.resources.reservations.devices"),
        (svc("    networks:\n      default: {interface_name: lo}\n"), "services.box.networks.default.interface_name: \"lo\" cannot be an interface name"),
        (svc("    networks:\n      default: {ipv6_address: \"fd00::9\"}\n"), "services.box.networks.default.ipv6_address"),
        (svc("    networks:\n      default: {link_local_ips: [10.0.0.8]}\n"), "services.box.networks.default.link_local_ips[0]: \"10.0.0.8\" is not a link-local address"),
        (svc("    networks:\n      default: {link_local_ips: [\"fe80::8\"]}\n"), "services.box.networks.default.link_local_ips[0]: an IPv6 address needs"),
        (svc("    networks:\n      default: {mac_address: \"01:00:5e:00:00:09\"}\n"), "services.box.networks.default.mac_address: \"01:00:5e:00:00:09\" is a multicast address"),
        (svc("    networks:\n      default: {driver_opts: {foo: bar}}\n"), "services.box.networks.default.driver_opts"),
        (svc("networks:\n  default:\n    enable_ipv6: true\n    driver_opts: {com.docker.network.bridge.enable_icc: \"false\"}\n"), "networks.default.driver_opts.com.docker.network.bridge.enable_icc"),
        (svc("networks:\n  default:\n    ipam:\n      config: [{subnet: \"fd42:1::/64\"}]\n"), "networks.default.ipam.config[0].subnet: an IPv6 subnet needs enable_ipv6"),
        (svc("networks:\n  default:\n    enable_ipv4: false\n"), "networks.default.enable_ipv4"),
        (svc("networks:\n  default:\n    driver_opts: {com.docker.network.bridge.host_binding_ipv4: 127.0.0.1}\n"), "networks.default.driver_opts.com.docker.network.bridge.host_binding_ipv4"),
        (svc("networks:\n  default:\n    driver_opts: {com.docker.network.driver.mtu: \"20\"}\n"), "networks.default.driver_opts.com.docker.network.driver.mtu"),
        (svc("networks:\n  default:\n    driver_opts: {com.docker.network.bridge.name: \"a-name-far-too-long\"}\n"), "networks.default.driver_opts.com.docker.network.bridge.name"),
        (svc("networks:\n  default:\n    ipam: {driver: dhcp}\n"), "networks.default.ipam.driver"),
        (svc("networks:\n  default:\n    ipam: {options: {foo: bar}}\n"), "networks.default.ipam.options"),
        (svc("networks:\n  default:\n    ipam:\n      config: [{subnet: 172.31.250.0/24}, {subnet: 172.31.251.0/24}]\n"), "networks.default.ipam.config[1]"),
        (svc("networks:\n  default:\n    ipam:\n      config: [{subnet: 172.31.250.0/24, ip_range: 172.31.249.0/25}]\n"), "networks.default.ipam.config[0].ip_range"),
        (svc("networks:\n  default:\n    ipam:\n      config: [{subnet: 172.31.250.0/24, gateway: 172.31.250.254}]\n"), "networks.default.ipam.config[0].gateway"),
        (svc("networks:\n  default:\n    ipam:\n      config: [{subnet: 172.31.250.0/24, aux_addresses: {h: 172.31.249.9}}]\n"), "networks.default.ipam.config[0].aux_addresses"),
        (svc("volumes:\n  v:\n    driver_opts: {type: nfs, o: \"addr=127.0.0.1,rw\", device: \":/export\"}\n"), "volumes.v.driver_opts.type: \"nfs\""),
        (svc("volumes:\n  v:\n    driver_opts: {type: none, o: bind, device: /nonexistent/berth-device}\n"), "volumes.v.driver_opts.device: /nonexistent/berth-device does not exist"),
        (svc("volumes:\n  v:\n    driver_opts: {type: none, o: bind, device: ./relative}\n"), "volumes.v.driver_opts.device"),
        (svc("volumes:\n  v:\n    driver_opts: {type: tmpfs, device: tmpfs, o: \"size=1m,huge=always\"}\n"), "volumes.v.driver_opts.o"),
        (svc("volumes:\n  v:\n    driver_opts: {type: none, o: bind, device: /tmp, flavour: x}\n"), "volumes.v.driver_opts.flavour"),
        (svc("    pre_start: [{image: berth-test/busybox:1, command: [\"true\"]}]\n"), "services.box.pre_start"),
        (svc("    pull_refresh_after: 1h\n"), "services.box.pull_refresh_after"),
        (svc("    provider: {type: model, options: {model: ai/x}}\n"), "services.box.provider"),
        (svc("    models: [m]\nmodels:\n  m: {model: ai/x}\n"), "models"),
        (svc("    userns_mode: \"private\"\n"), "services.box.userns_mode"),
        (svc("    logging: {driver: syslog}\n"), "services.box.logging.driver"),
        (svc("    gpus: all\n"), "services.box.gpus"),
        (svc("    credential_spec: {file: spec.json}\n"), "services.box.credential_spec"),
        (svc("    storage_opt: {size: 1G}\n"), "services.box.storage_opt"),
        (svc("    cpu_count: 2\n"), "services.box.cpu_count"),
        (svc("    cpu_percent: 50\n"), "services.box.cpu_percent"),
        (svc("    domainname: example.test\n    uts: host\n"), "services.box.domainname: cannot be set with uts: host"),
        (svc("    mac_address: \"02:42:ac:11:00:zz\"\n"), "services.box.mac_address: \"02:42:ac:11:00:zz\" is not a MAC address"),
        (svc("    mac_address: \"02:42:ac:11:00:09\"\n    networks:\n      default: {mac_address: \"02:42:ac:11:00:0a\"}\n"), "services.box.mac_address: 02:42:ac:11:00:09 differs from networks.default.mac_address"),
        (svc("    mac_address: \"02:42:ac:11:00:09\"\n    network_mode: none\n"), "services.box.mac_address: the service joins no network"),
        (svc("    external_links: [\"other:db\"]\n"), "services.box.external_links"),
        (svc("    use_api_socket: true\n"), "services.box.use_api_socket"),
        (svc("    deploy: {restart_policy: {condition: any, window: 10s}}\n"), "services.box.deploy.restart_policy.window"),
    ];
    for (compose, key) in cases {
        p.write(compose);
        // The file is valid compose: only `up` refuses it.
        let config = p.berth(&["config", "-q"]);
        assert!(
            config.status.success(),
            "{key}: config -q: {}",
            text(&config.stderr)
        );
        p.up_fails_with(&[key]);
    }
}

/// Defends: a local-driver bind volume (`type: none, o: bind, device:`)
/// shows the host directory itself in the container, and `down -v` leaves
/// the directory and what strangers wrote there alone (berth is root: a
/// removal there would delete someone else's files); a tmpfs volume is
/// one tmpfs with the size, mode and owner asked for, shared by the
/// containers that mount it and gone with `down`.
#[test]
fn local_driver_bind_and_tmpfs_volumes_mount_as_docker_does() {
    let p = Project::new("localvol");
    let device = p.dir.parent().unwrap().join("device");
    std::fs::create_dir_all(device.join("sub")).unwrap();
    std::fs::write(device.join("stranger.txt"), "written by someone else").unwrap();
    std::fs::write(device.join("sub/deep.txt"), "deeper").unwrap();
    p.write(&format!(
        "services:\n  box:\n    image: berth-test/busybox:1\n    volumes: [data:/data, scratch:/scratch]\n  \
         peer:\n    image: berth-test/busybox:1\n    volumes: [scratch:/scratch]\n\
         volumes:\n  data:\n    driver: local\n    driver_opts: {{type: none, o: bind, device: {}}}\n  \
         scratch:\n    driver_opts: {{type: tmpfs, device: tmpfs, o: \"size=2m,mode=0710,uid=1000,gid=1001\"}}\n",
        device.display()
    ));
    let up = p.berth(&["up", "-d"]);
    assert!(up.status.success(), "up -d: {}", text(&up.stderr));
    assert_eq!(
        sh_in(
            &p,
            "box",
            "cat /data/stranger.txt; echo; cat /data/sub/deep.txt"
        ),
        "written by someone else\ndeeper"
    );
    sh_in(&p, "box", "echo from the container > /data/from-box");
    assert_eq!(
        std::fs::read_to_string(device.join("from-box")).unwrap(),
        "from the container\n"
    );
    let scratch = sh_in(
        &p,
        "box",
        "/bin/busybox grep ' /scratch ' /proc/mounts; /bin/busybox stat -c '%a %u %g' /scratch",
    );
    let mut lines = scratch.lines();
    let mount = lines.next().unwrap_or_default();
    assert!(mount.starts_with("tmpfs /scratch tmpfs "), "{scratch}");
    for opt in ["size=2048k", "mode=710", "uid=1000", "gid=1001"] {
        assert!(mount.contains(opt), "{opt} not in {scratch}");
    }
    assert_eq!(lines.next(), Some("710 1000 1001"), "{scratch}");
    // One tmpfs for both containers.
    sh_in(&p, "box", "echo shared > /scratch/note");
    assert_eq!(sh_in(&p, "peer", "cat /scratch/note"), "shared");

    let down = p.berth(&["down", "-v", "-t", "0"]);
    assert!(down.status.success(), "down -v: {}", text(&down.stderr));
    p.assert_nothing_left();
    assert_eq!(
        std::fs::read_to_string(device.join("stranger.txt")).unwrap(),
        "written by someone else"
    );
    assert_eq!(
        std::fs::read_to_string(device.join("sub/deep.txt")).unwrap(),
        "deeper"
    );
    assert!(
        device.join("from-box").is_file(),
        "down -v removed a file of the device"
    );

    // The tmpfs's content went with it: a new up starts it empty.
    let up = p.berth(&["up", "-d"]);
    assert!(up.status.success(), "up -d: {}", text(&up.stderr));
    assert_eq!(sh_in(&p, "peer", "ls -A /scratch"), "");
    assert!(p.berth(&["down", "-v", "-t", "0"]).status.success());
    p.assert_nothing_left();
    assert!(device.join("stranger.txt").is_file());
}

/// Defends: the bridge driver's options reach the kernel: the bridge has
/// the name and MTU asked for (so do the containers' interfaces), no
/// MASQUERADE rule is made when masquerading is off, and with
/// `enable_icc: false` containers on the network cannot reach each other
/// while the host still can; `down` removes the named bridge.
#[test]
fn bridge_driver_options_name_the_bridge_and_set_mtu_masquerade_and_icc() {
    let p = Project::new("bropts");
    let bridge = format!("bo{}", std::process::id());
    let compose = |icc: bool| {
        format!(
            "services:\n  box:\n    image: berth-test/busybox:1\n  \
             web:\n    image: berth-test/busybox:1\n    command: [/bin/busybox, httpd, -f, -p, \"80\", -h, /]\n\
             networks:\n  default:\n    driver_opts:\n      com.docker.network.bridge.name: {bridge}\n      \
             com.docker.network.driver.mtu: \"1400\"\n      com.docker.network.bridge.enable_ip_masquerade: \"false\"\n      \
             com.docker.network.bridge.enable_icc: \"{icc}\"\n"
        )
    };
    // Whether box gets an HTTP answer from web, by web's address, once web
    // answers the host (busybox's nc: its wget crashes on this host).
    let request = "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | /bin/busybox nc -w 2";
    let box_reaches_web = |p: &Project| {
        let web_ip = sh_in(p, "web", "/bin/busybox hostname -i");
        let answers = || {
            let out = std::process::Command::new("/bin/busybox")
                .args(["sh", "-c", &format!("{request} {web_ip} 80")])
                .env_clear()
                .output()
                .unwrap();
            text(&out.stdout).starts_with("HTTP/1.")
        };
        let from_host = (0..50).any(|_| {
            answers() || {
                std::thread::sleep(std::time::Duration::from_millis(100));
                false
            }
        });
        assert!(from_host, "web does not answer the host at {web_ip}");
        let out = p.berth(&[
            "exec",
            "-T",
            "box",
            "/bin/busybox",
            "sh",
            "-c",
            &format!("{request} {web_ip} 80"),
        ]);
        text(&out.stdout).starts_with("HTTP/1.")
    };
    p.write(&compose(true));
    let up = p.berth(&["up", "-d"]);
    assert!(up.status.success(), "up -d: {}", text(&up.stderr));
    let link = run_ok("ip", &["-o", "link", "show", "dev", &bridge]);
    assert!(link.contains(" mtu 1400 "), "{link}");
    assert_eq!(sh_in(&p, "box", "cat /sys/class/net/eth0/mtu"), "1400");
    let nat = run_ok("iptables", &["-t", "nat", "-S", "POSTROUTING"]);
    assert!(
        !nat.contains(&format!("berth:{}_default", p.name)),
        "masquerading is on: {nat}"
    );
    assert!(box_reaches_web(&p), "box cannot reach web with icc on");
    assert!(p.berth(&["down", "-t", "0"]).status.success());
    p.assert_nothing_left();
    let links = run_ok("ip", &["-o", "link"]);
    assert!(
        !links.contains(&format!(" {bridge}:")),
        "bridge left: {links}"
    );

    p.write(&compose(false));
    let up = p.berth(&["up", "-d"]);
    assert!(up.status.success(), "up -d: {}", text(&up.stderr));
    assert!(!box_reaches_web(&p), "box reached web with icc off");
    assert!(p.berth(&["down", "-t", "0"]).status.success());
    p.assert_nothing_left();
    let links = run_ok("ip", &["-o", "link"]);
    assert!(
        !links.contains(&format!(" {bridge}:")),
        "bridge left: {links}"
    );
}

fn run_ok(cmd: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(cmd).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// `berth attach ARGS` in `p` (see [`Attached::spawn`]).
fn attach(p: &Project, args: &[&str], tty: Option<(std::fs::File, std::fs::File)>) -> Attached {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_berth"));
    cmd.arg("attach")
        .args(args)
        .current_dir(&p.dir)
        .env("BERTH_STATE_DIR", &p.state)
        .env("BERTH_CONFIG", p.dir.join("none.toml"));
    Attached::spawn(cmd, tty)
}

fn state_of(p: &Project, service: &str) -> serde_json::Value {
    let ps: serde_json::Value =
        serde_json::from_slice(&p.berth(&["ps", "-a", "--format", "json"]).stdout).unwrap();
    ps.as_array()
        .unwrap()
        .iter()
        .find(|c| c["Service"] == service)
        .cloned()
        .unwrap_or_default()
}

/// Defends: `berth attach` joins this process to a `stdin_open` container:
/// what it reads comes from attach's stdin, what it writes reaches attach's
/// stdout; the detach keys leave it running, and attach ends with the
/// container's exit code when it exits.
#[test]
fn attach_joins_stdin_and_output_detaches_and_returns_the_exit_code() {
    let p = Project::new("attach");
    p.write(
        "services:\n  box:\n    image: berth-test/busybox:1\n    stdin_open: true\n    \
         command: [/bin/busybox, sh, -c, \"while read l; do [ \\\"$$l\\\" = quit ] && exit 3; echo \\\"got $$l\\\"; done\"]\n",
    );
    let up = p.berth(&["up", "-d"]);
    assert!(up.status.success(), "up -d: {}", text(&up.stderr));

    let mut a = attach(&p, &["box"], None);
    a.send(b"hello\n");
    a.wait_for("got hello");
    // ctrl-p, ctrl-q: detached, the container runs on.
    a.send(b"\x10\x11");
    assert_eq!(a.code(), 0, "{}", a.seen());
    assert_eq!(state_of(&p, "box")["State"], "running");

    // Other detach keys; a key that only starts them is sent as typed.
    let mut a = attach(&p, &["--detach-keys", "ctrl-x,x", "box"], None);
    a.send(b"a\x18b\n");
    a.wait_for("got a\x18b");
    a.send(b"quit\n");
    assert_eq!(a.code(), 3, "{}", a.seen());
    assert_eq!(state_of(&p, "box")["ExitCode"], 3);

    let bad = p.berth(&["attach", "--detach-keys", "ctrl-1", "box"]);
    assert!(!bad.status.success());
    assert!(
        text(&bad.stderr).contains("--detach-keys"),
        "{}",
        text(&bad.stderr)
    );
    assert!(p.berth(&["down", "-t", "0"]).status.success());
    p.assert_nothing_left();
}

/// Defends: attach passes the signals it gets to the container's main
/// process (`--sig-proxy`, the default); with `--sig-proxy=false` Ctrl-C
/// only detaches.
#[test]
fn attach_proxies_signals_unless_told_not_to() {
    let p = Project::new("attachsig");
    p.write(
        "services:\n  box:\n    image: berth-test/busybox:1\n    \
         command: [/bin/busybox, sh, -c, \"trap 'echo got INT; exit 5' INT; while true; do echo tick; /bin/busybox sleep 0.2; done\"]\n",
    );
    let up = p.berth(&["up", "-d"]);
    assert!(up.status.success(), "up -d: {}", text(&up.stderr));

    let mut a = attach(&p, &["--sig-proxy=false", "--no-stdin", "box"], None);
    a.wait_for("tick");
    // SAFETY: a signal to the child this test started.
    unsafe { libc::kill(a.child.id() as i32, libc::SIGINT) };
    assert_eq!(a.code(), 0, "{}", a.seen());
    assert_eq!(state_of(&p, "box")["State"], "running");

    let mut a = attach(&p, &["--no-stdin", "box"], None);
    a.wait_for("tick");
    // SAFETY: as above.
    unsafe { libc::kill(a.child.id() as i32, libc::SIGINT) };
    assert_eq!(a.code(), 5, "{}", a.seen());
    assert!(a.seen().contains("got INT"), "{}", a.seen());
    assert!(p.berth(&["down", "-t", "0"]).status.success());
    p.assert_nothing_left();
}

/// Defends: a `tty: true, stdin_open: true` service is a terminal to
/// attach to: keys reach its shell through the terminal, the terminal has
/// attach's window size, and the detach keys leave it running.
#[test]
fn attach_to_a_tty_service_is_a_terminal() {
    let p = Project::new("attachtty");
    p.write(
        "services:\n  box:\n    image: berth-test/busybox:1\n    tty: true\n    stdin_open: true\n    \
         command: [/bin/busybox, sh]\n",
    );
    let up = p.berth(&["up", "-d"]);
    assert!(up.status.success(), "up -d: {}", text(&up.stderr));
    let (mut master, slave) = {
        let (mut m, mut s) = (-1, -1);
        let ws = libc::winsize {
            ws_row: 33,
            ws_col: 121,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: openpty writes two fds; the winsize outlives the call.
        let rc =
            unsafe { libc::openpty(&mut m, &mut s, std::ptr::null_mut(), std::ptr::null(), &ws) };
        assert_eq!(rc, 0);
        // SAFETY: two new descriptors owned from here on.
        unsafe {
            use std::os::fd::FromRawFd;
            (std::fs::File::from_raw_fd(m), std::fs::File::from_raw_fd(s))
        }
    };
    let reader = master.try_clone().unwrap();
    let mut a = attach(&p, &["box"], Some((slave, reader)));
    use std::io::Write;
    master
        .write_all(b"echo $((6*7))x; /bin/busybox stty size\r")
        .unwrap();
    a.wait_for("42x");
    a.wait_for("33 121");
    master.write_all(b"\x10\x11").unwrap();
    assert_eq!(a.code(), 0, "{}", a.seen());
    assert_eq!(state_of(&p, "box")["State"], "running");
    assert!(p.berth(&["down", "-t", "0"]).status.success());
    p.assert_nothing_left();
}

/// Defends: a service with published ports whose image declares a VOLUME
/// is not swapped start-first while its anonymous volume is carried over
/// (two copies of a database on one data directory corrupt it): the old
/// container stops first and the new one finds the data; with `-V` (fresh
/// anonymous volumes) nothing is shared and the swap is start-first.
#[test]
fn a_carried_image_volume_makes_a_replacement_stop_first() {
    let p = Project::new("volswap");
    std::fs::write(
        p.dir.join("img/Dockerfile"),
        "FROM scratch\nCOPY busybox /bin/busybox\nVOLUME /data\n\
         CMD [\"/bin/busybox\", \"httpd\", \"-f\", \"-p\", \"80\", \"-h\", \"/\"]\n",
    )
    .unwrap();
    let port = crate::up::free_port();
    let compose = |version: u32| {
        format!(
            "services:\n  db:\n    build: img\n    image: berth-test/volswap:1\n    \
             ports: [\"127.0.0.1:{port}:80\"]\n    environment: {{VERSION: \"{version}\"}}\n"
        )
    };
    p.write(&compose(1));
    let up = p.berth(&["up", "-d", "--build"]);
    assert!(up.status.success(), "up -d: {}", text(&up.stderr));
    sh_in(&p, "db", "echo kept > /data/x");

    p.write(&compose(2));
    let up = p.berth(&["up", "-d"]);
    let err = text(&up.stderr);
    assert!(up.status.success(), "up -d: {err}");
    assert!(
        err.contains("stop-first: it keeps its anonymous volumes (/data)"),
        "{err}"
    );
    assert!(!err.contains("Swapping"), "{err}");
    assert_eq!(sh_in(&p, "db", "echo $VERSION; cat /data/x"), "2\nkept");

    p.write(&compose(3));
    let up = p.berth(&["up", "-d", "-V"]);
    let err = text(&up.stderr);
    assert!(up.status.success(), "up -d -V: {err}");
    assert!(err.contains("Swapping (start-first)"), "{err}");
    assert_eq!(sh_in(&p, "db", "echo $VERSION; ls -A /data"), "3");
    assert!(p.berth(&["down", "-t", "0"]).status.success());
    p.assert_nothing_left();
}

/// Defends: `enable_ipv6` gives a network an IPv6 subnet (the one in
/// `ipam.config`) and its containers IPv6 addresses (`ipv6_address`, or
/// derived from the IPv4 one) that reach each other and the host, while a
/// container on an IPv4-only network keeps IPv6 off (the resolver here
/// drops AAAA queries); `link_local_ips` are on the interface; `down`
/// leaves nothing.
#[test]
fn enable_ipv6_gives_addresses_on_its_network_only_and_link_local_ips_apply() {
    let p = Project::new("ipv6");
    p.write(
        "services:\n  web:\n    image: berth-test/busybox:1\n    \
         command: [/bin/busybox, httpd, -f, -p, \"80\", -h, /]\n    \
         networks:\n      v6: {ipv6_address: \"fd42:b3:1::99\", link_local_ips: [169.254.8.8]}\n  \
         client:\n    image: berth-test/busybox:1\n    networks: [v6]\n  \
         plain:\n    image: berth-test/busybox:1\n\
         networks:\n  v6:\n    enable_ipv6: true\n    ipam:\n      config: [{subnet: \"fd42:b3:1::/64\"}]\n",
    );
    let up = p.berth(&["up", "-d"]);
    assert!(up.status.success(), "up -d: {}", text(&up.stderr));
    let ipv6_off = |s: &str| sh_in(&p, s, "cat /proc/sys/net/ipv6/conf/all/disable_ipv6");
    assert_eq!(ipv6_off("web"), "0");
    assert_eq!(ipv6_off("client"), "0");
    assert_eq!(
        ipv6_off("plain"),
        "1",
        "IPv6 on in a container of an IPv4 network"
    );
    let web = sh_in(&p, "web", "/bin/busybox ip addr show dev eth0");
    assert!(web.contains("inet6 fd42:b3:1::99/64"), "{web}");
    assert!(web.contains("inet 169.254.8.8/16"), "{web}");
    // client's address: the subnet's prefix and its IPv4 host part.
    let client = sh_in(
        &p,
        "client",
        "/bin/busybox ip -6 addr show dev eth0 scope global",
    );
    let v4 = sh_in(&p, "client", "/bin/busybox hostname -i");
    let host_part = v4.rsplit('.').next().unwrap();
    assert!(
        client.contains(&format!("inet6 fd42:b3:1::{host_part}/64")),
        "{client}"
    );
    // Traffic over IPv6: client to web, and the host to web (the bridge).
    let request = "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | /bin/busybox nc -w 5 fd42:b3:1::99 80";
    let answered = (0..50).any(|_| {
        let out = std::process::Command::new("/bin/busybox")
            .args(["sh", "-c", request])
            .env_clear()
            .output()
            .unwrap();
        text(&out.stdout).starts_with("HTTP/1.") || {
            std::thread::sleep(std::time::Duration::from_millis(100));
            false
        }
    });
    assert!(answered, "web does not answer the host over IPv6");
    assert!(sh_in(&p, "client", request).starts_with("HTTP/1."));
    // plain has no IPv6 and is on another network.
    let from_plain = p.berth(&["exec", "-T", "plain", "/bin/busybox", "sh", "-c", request]);
    assert!(!text(&from_plain.stdout).starts_with("HTTP/1."));
    assert!(p.berth(&["down", "-t", "0"]).status.success());
    p.assert_nothing_left();
    let links = run_ok("ip", &["-6", "route"]);
    assert!(!links.contains("fd42:b3:1::"), "route left: {links}");
}

/// Defends: `mac_address` reaches the interface: a service's own on its
/// first network, a network's own on that network (docker's `-` form
/// taken too), instead of the one berth derives from the address.
#[test]
fn mac_addresses_are_the_interfaces() {
    let p = Project::new("macaddr");
    p.write(
        "services:\n  box:\n    image: berth-test/busybox:1\n    mac_address: \"02:42:AC:11:00:09\"\n  \
         two:\n    image: berth-test/busybox:1\n    networks:\n      default: {}\n      \
         back: {mac_address: \"02-42-ac-11-00-0b\"}\n\
         networks:\n  back: {}\n",
    );
    let up = p.berth(&["up", "-d"]);
    assert!(up.status.success(), "up -d: {}", text(&up.stderr));
    assert_eq!(
        sh_in(&p, "box", "cat /sys/class/net/eth0/address"),
        "02:42:ac:11:00:09"
    );
    let two = sh_in(
        &p,
        "two",
        "cat /sys/class/net/eth0/address /sys/class/net/eth1/address",
    );
    // Networks in name order: back is eth0, default eth1 (derived MAC).
    let mut lines = two.lines();
    assert_eq!(lines.next(), Some("02:42:ac:11:00:0b"), "{two}");
    assert!(
        lines.next().is_some_and(|m| m.starts_with("02:b7:")),
        "{two}"
    );
    assert!(p.berth(&["down", "-t", "0"]).status.success());
    p.assert_nothing_left();
}

/// Defends: `domainname` is the NIS domain name of the container's UTS
/// namespace, beside its hostname.
#[test]
fn domainname_is_the_containers() {
    let p = Project::new("domain");
    p.write(
        "services:\n  box:\n    image: berth-test/busybox:1\n    hostname: web\n    domainname: example.test\n",
    );
    let up = p.berth(&["up", "-d"]);
    assert!(up.status.success(), "up -d: {}", text(&up.stderr));
    assert_eq!(
        sh_in(
            &p,
            "box",
            "cat /proc/sys/kernel/hostname /proc/sys/kernel/domainname"
        ),
        "web\nexample.test"
    );
    assert!(p.berth(&["down", "-t", "0"]).status.success());
    p.assert_nothing_left();
}

/// Defends: `volume: {subpath: …}` mounts that part of a named volume
/// (both ways: what the container writes lands there), and a subpath that
/// is a symlink a container planted (to `/`) is refused instead of
/// mounting the host's root.
#[test]
fn volume_subpath_mounts_part_of_a_volume_and_never_follows_a_symlink() {
    let p = Project::new("subpath");
    let writer =
        "services:\n  writer:\n    image: berth-test/busybox:1\n    volumes: [data:/data]\n";
    p.write(&format!("{writer}volumes:\n  data: {{}}\n"));
    let up = p.berth(&["up", "-d"]);
    assert!(up.status.success(), "up -d: {}", text(&up.stderr));
    sh_in(
        &p,
        "writer",
        "mkdir /data/app && echo hi > /data/app/config.txt && ln -s / /data/evil",
    );
    let with = |sub: &str| {
        format!(
            "{writer}  box:\n    image: berth-test/busybox:1\n    \
             volumes: [{{type: volume, source: data, target: /cfg, volume: {{subpath: {sub}}}}}]\n\
             volumes:\n  data: {{}}\n"
        )
    };
    p.write(&with("app"));
    let up = p.berth(&["up", "-d"]);
    assert!(up.status.success(), "up -d: {}", text(&up.stderr));
    assert_eq!(
        sh_in(&p, "box", "ls /cfg; cat /cfg/config.txt"),
        "config.txt\nhi"
    );
    sh_in(&p, "box", "echo back > /cfg/new");
    assert_eq!(sh_in(&p, "writer", "cat /data/app/new"), "back");

    p.write(&with("evil"));
    let up = p.berth(&["up", "-d"]);
    let err = text(&up.stderr);
    assert!(!up.status.success(), "a symlink subpath was mounted: {err}");
    assert!(err.contains("subpath evil"), "{err}");
    assert!(p.berth(&["down", "-v", "-t", "0"]).status.success());
    p.assert_nothing_left();
    let left = std::fs::read_dir(p.state.join("subpaths"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(left, 0, "staging paths left");
}

/// Defends: `interface_name` names the container's interface on that
/// network (the others keep eth<n>), and the network with the highest
/// `gw_priority` carries the default route.
#[test]
fn interface_name_and_gw_priority_shape_the_interfaces_and_route() {
    let p = Project::new("ifname");
    p.write(
        "services:\n  box:\n    image: berth-test/busybox:1\n    networks:\n      \
         back: {}\n      front: {interface_name: front0, gw_priority: 10}\n\
         networks:\n  back: {}\n  front: {}\n",
    );
    let up = p.berth(&["up", "-d"]);
    assert!(up.status.success(), "up -d: {}", text(&up.stderr));
    assert_eq!(sh_in(&p, "box", "ls /sys/class/net"), "eth0\nfront0\nlo");
    let route = sh_in(&p, "box", "/bin/busybox ip route show default");
    assert!(route.contains("dev front0"), "{route}");
    assert!(p.berth(&["down", "-t", "0"]).status.success());
    p.assert_nothing_left();
}

/// Defends: `ipam.config[].ip_range` is where a network's containers get
/// their addresses, and `aux_addresses` are never given out.
#[test]
fn ip_range_and_aux_addresses_shape_address_allocation() {
    let p = Project::new("iprange");
    p.write(
        "services:\n  box:\n    image: berth-test/busybox:1\n\
         networks:\n  default:\n    ipam:\n      config:\n        \
         - {subnet: 172.31.251.0/24, ip_range: 172.31.251.128/25, aux_addresses: {router: 172.31.251.128}}\n",
    );
    let up = p.berth(&["up", "-d"]);
    assert!(up.status.success(), "up -d: {}", text(&up.stderr));
    assert_eq!(
        sh_in(&p, "box", "/bin/busybox hostname -i"),
        "172.31.251.129"
    );
    assert!(p.berth(&["down", "-t", "0"]).status.success());
    p.assert_nothing_left();
}
