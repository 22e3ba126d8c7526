//! Compose features the embedded engine claims, each seen from where a
//! user would notice it: inside the container, in what containers record
//! themselves, or in what the commands print.

use crate::common::text;
use crate::engine::{lines_of, Project};
use crate::up::free_port;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `berth args` in `p`, which must succeed; its standard output.
fn ok(p: &Project, args: &[&str]) -> String {
    let out = p.berth(args);
    assert!(
        out.status.success(),
        "{args:?}: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// The newest container of `service` in `ps -a`, or null.
fn container(p: &Project, service: &str) -> serde_json::Value {
    let ps: serde_json::Value =
        serde_json::from_str(&ok(p, &["ps", "-a", "--format", "json"])).expect("ps --format json");
    ps.as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|c| c["Service"] == service)
        .cloned()
        .unwrap_or(serde_json::Value::Null)
}

/// Poll `done` until it holds; fail with `what` after 30 s.
fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `script` run by busybox's shell in `service`: (success, stdout+stderr).
fn exec(p: &Project, service: &str, script: &str) -> (bool, String) {
    let out = p.berth(&["exec", "-T", service, "/bin/busybox", "sh", "-c", script]);
    (
        out.status.success(),
        format!("{}{}", text(&out.stdout), text(&out.stderr)),
    )
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// A service that notes `start-$GEN` when it starts and `stop-$GEN` when
/// it is told to stop, in `rec/<name>` of the project directory.
fn recorder(name: &str, gen: u32, extra: &str) -> String {
    format!(
        "  {name}:\n    image: berth-test/busybox:1\n    environment: [GEN={gen}]\n    \
         volumes: [\"./rec:/rec\"]\n{extra}    command: [\"/bin/busybox\", \"sh\", \"-c\", \
         \"trap 'echo stop-$$GEN >> /rec/{name}; exit 0' TERM; echo start-$$GEN >> /rec/{name}; \
         while true; do /bin/busybox sleep 0.1; done\"]\n"
    )
}

#[test]
fn update_order_stop_first_and_start_first() {
    let p = Project::new("order");
    std::fs::create_dir_all(p.dir.join("rec")).unwrap();
    let (a, b) = (free_port(), free_port());
    let compose = |gen: u32| {
        format!(
            "services:\n{}{}{}",
            // Published ports swap start-first by default; these say otherwise.
            recorder(
                "berthkey",
                gen,
                &format!(
                    "    ports: [\"127.0.0.1:{a}:80\"]\n    x-berth: {{update: stop-first}}\n"
                ),
            ),
            recorder(
                "deploykey",
                gen,
                &format!(
                    "    ports: [\"127.0.0.1:{b}:80\"]\n    \
                     deploy: {{update_config: {{order: stop-first}}}}\n"
                ),
            ),
            // Ready once it noted its start: without ports or a
            // healthcheck, a new container is ready when it runs, and on a
            // loaded machine the old one could be told to stop before the
            // new one's shell got to write its line.
            recorder(
                "startfirst",
                gen,
                &format!(
                    "    deploy: {{update_config: {{order: start-first}}}}\n    \
                     healthcheck: {{test: [\"CMD\", \"/bin/busybox\", \"grep\", \"-q\", \"start-{gen}\", \"/rec/startfirst\"], \
                     interval: 100ms, start_period: 30s, start_interval: 50ms}}\n"
                ),
            ),
        )
    };
    p.write(&compose(1));
    ok(&p, &["up", "-d"]);
    p.write(&compose(2));
    let plan = ok(&p, &["up", "--dry-run"]);
    for reason in [
        "berthkey: ",
        "; stop-first (x-berth.update)",
        "deploykey: ",
        "; stop-first (deploy.update_config.order)",
        "startfirst: ",
        "; start-first swap (deploy.update_config.order)",
    ] {
        assert!(plan.contains(reason), "{reason:?} not in the plan:\n{plan}");
    }
    ok(&p, &["up", "-d"]);
    // The order as the containers saw it.
    let rec = p.dir.join("rec");
    until("not every old container stopped", || {
        ["berthkey", "deploykey", "startfirst"]
            .iter()
            .all(|s| lines(&rec.join(s)).len() >= 3)
    });
    assert_eq!(
        lines(&rec.join("berthkey")),
        ["start-1", "stop-1", "start-2"]
    );
    assert_eq!(
        lines(&rec.join("deploykey")),
        ["start-1", "stop-1", "start-2"]
    );
    assert_eq!(
        lines(&rec.join("startfirst")),
        ["start-1", "start-2", "stop-1"]
    );
    ok(&p, &["down", "-t", "1"]);
    p.assert_nothing_left();
}

#[test]
fn anonymous_volumes_carry_over_on_recreate_and_renew_with_v() {
    let p = Project::new("anonvol");
    let compose = |gen: u32| {
        format!(
            "services:\n  keeper:\n    image: berth-test/busybox:1\n    environment: [GEN={gen}]\n    \
             volumes: [/data]\n    command: [\"/bin/busybox\", \"sh\", \"-c\", \
             \"[ -f /data/marker ] || echo $$GEN > /data/marker; exec /bin/busybox sleep 600\"]\n"
        )
    };
    let marker = || {
        let (done, out) = exec(&p, "keeper", "cat /data/marker; echo $GEN");
        assert!(done, "{out}");
        out.split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    p.write(&compose(1));
    ok(&p, &["up", "-d"]);
    assert_eq!(marker(), ["1", "1"]);
    // A new container (GEN=2) gets the old one's anonymous volume.
    p.write(&compose(2));
    let up = p.berth(&["up", "-d"]);
    let err = text(&up.stderr);
    assert!(up.status.success(), "{err}");
    // The old container dies of SIGKILL (a shell as PID 1 takes no
    // SIGTERM): that is no news about the new one.
    assert!(!err.contains("exited with code"), "{err}");
    assert_eq!(
        marker(),
        ["1", "2"],
        "the anonymous volume was not carried over"
    );
    // -V: a fresh one.
    p.write(&compose(3));
    ok(&p, &["up", "-d", "-V"]);
    assert_eq!(marker(), ["3", "3"], "-V kept the old anonymous volume");
    ok(&p, &["down", "-t", "0", "-v"]);
    p.assert_nothing_left();
}

#[test]
fn network_modes_host_none_and_container() {
    let p = Project::new("netmode");
    p.write(&format!(
        "services:\n  web:\n    image: berth-test/busybox:1\n  \
         onhost:\n    image: berth-test/busybox:1\n    network_mode: host\n  \
         nonet:\n    image: berth-test/busybox:1\n    network_mode: none\n  \
         sidecar:\n    image: berth-test/busybox:1\n    network_mode: \"container:{}-web-1\"\n    \
         depends_on: [web]\n",
        p.name
    ));
    ok(&p, &["up", "-d"]);
    let netns = |svc: &str| {
        let (done, out) = exec(&p, svc, "/bin/busybox readlink /proc/self/ns/net");
        assert!(done, "{svc}: {out}");
        out.trim().to_string()
    };
    let host = std::fs::read_link("/proc/self/ns/net").unwrap();
    let host = host.to_string_lossy();
    assert_eq!(netns("onhost"), host, "network_mode: host");
    let web = netns("web");
    assert_ne!(web, host);
    assert_eq!(netns("sidecar"), web, "network_mode: container:");
    let none = netns("nonet");
    assert!(
        none != host && none != web,
        "network_mode: none shares {none}"
    );
    // No interface but loopback.
    let (done, dev) = exec(&p, "nonet", "cat /proc/net/dev");
    assert!(done, "{dev}");
    let interfaces: Vec<&str> = dev
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(str::trim)
        .collect();
    assert_eq!(interfaces, ["lo"], "{dev}");
    ok(&p, &["down", "-t", "0"]);
    p.assert_nothing_left();
}

fn restart_service(name: &str, policy: &str, script: &str) -> String {
    format!(
        "  {name}:\n    image: berth-test/busybox:1\n    restart: {policy}\n    \
         command: [\"/bin/busybox\", \"sh\", \"-c\", \"{script}\"]\n"
    )
}

#[test]
fn restart_always_and_unless_stopped_restart_a_clean_exit() {
    let p = Project::new("restartpol");
    let quick = "echo boot; exit 0";
    p.write(&format!(
        "services:\n{}{}{}",
        restart_service("always", "always", quick),
        restart_service("unless", "unless-stopped", quick),
        restart_service("onfailure", "on-failure", quick),
    ));
    ok(&p, &["up", "-d"]);
    let restarts = |s: &str| container(&p, s)["RestartCount"].as_u64().unwrap_or(0);
    until("no restarts after exit 0", || {
        restarts("always") >= 2 && restarts("unless") >= 2
    });
    // on-failure leaves a clean exit alone, however many restarts the
    // others made meanwhile.
    let onfailure = container(&p, "onfailure");
    assert_eq!(onfailure["State"], "exited", "{onfailure}");
    assert_eq!(onfailure["RestartCount"], 0, "{onfailure}");
    ok(&p, &["down", "-t", "0"]);
    p.assert_nothing_left();
}

#[test]
fn a_takeover_brings_back_always_not_unless_stopped() {
    let p = Project::new("takeover");
    let long = "exec /bin/busybox sleep 600";
    p.write(&format!(
        "services:\n{}{}",
        restart_service("always", "always", long),
        restart_service("unless", "unless-stopped", long),
    ));
    ok(&p, &["up", "-d"]);
    // Stopped by hand, then the supervisor dies: the one that takes over
    // brings back `always` (as docker after a daemon restart), not
    // `unless-stopped`.
    ok(&p, &["stop", "-t", "0", "always", "unless"]);
    for s in ["always", "unless"] {
        assert_eq!(container(&p, s)["State"], "exited", "{s}");
    }
    let state: serde_json::Value = serde_json::from_slice(
        &std::fs::read(p.state.join("projects").join(&p.name).join("state.json")).unwrap(),
    )
    .unwrap();
    let pid = state["supervisor_pid"].as_i64().unwrap() as i32;
    unsafe { libc::kill(pid, libc::SIGKILL) };
    until("the supervisor did not die", || {
        !Path::new(&format!("/proc/{pid}")).exists()
    });
    until("always did not come back", || {
        container(&p, "always")["State"] == "running"
    });
    // Both were decided in the same pass of the takeover, and `always` is
    // running since: `unless-stopped` stayed down.
    let unless = container(&p, "unless");
    assert_eq!(unless["State"], "exited", "{unless}");
    assert_eq!(unless["RestartCount"], 0, "{unless}");
    ok(&p, &["down", "-t", "0"]);
    p.assert_nothing_left();
}

#[test]
fn service_completed_successfully_gates_dependants() {
    let p = Project::new("completed");
    std::fs::create_dir_all(p.dir.join("rec")).unwrap();
    let compose = |code: u32| {
        format!(
            "services:\n  migrate:\n    image: berth-test/busybox:1\n    volumes: [\"./rec:/rec\"]\n    \
             command: [\"/bin/busybox\", \"sh\", \"-c\", \
             \"/bin/busybox sleep 0.5; echo migrated >> /rec/order; exit {code}\"]\n  \
             app:\n    image: berth-test/busybox:1\n    volumes: [\"./rec:/rec\"]\n    \
             depends_on:\n      migrate: {{condition: service_completed_successfully}}\n    \
             command: [\"/bin/busybox\", \"sh\", \"-c\", \
             \"echo app >> /rec/order; exec /bin/busybox sleep 600\"]\n"
        )
    };
    p.write(&compose(0));
    ok(&p, &["up", "-d"]);
    assert_eq!(lines(&p.dir.join("rec/order")), ["migrated", "app"]);
    let migrate = container(&p, "migrate");
    assert_eq!(migrate["State"], "exited", "{migrate}");
    assert_eq!(migrate["ExitCode"], 0, "{migrate}");
    assert_eq!(container(&p, "app")["State"], "running");
    ok(&p, &["down", "-t", "0"]);

    // A dependency that fails: its dependant never starts.
    std::fs::remove_file(p.dir.join("rec/order")).unwrap();
    p.write(&compose(3));
    p.up_fails_with(&["migrate", "exited with code 3"]);
    assert_eq!(lines(&p.dir.join("rec/order")), ["migrated"]);
}

#[test]
fn local_log_driver_rotates_to_five_files_by_default() {
    let p = Project::new("locallog");
    let chatty = |name: &str, driver: &str| {
        format!(
            "  {name}:\n    image: berth-test/busybox:1\n    \
             logging: {{driver: {driver}, options: {{max-size: 1k}}}}\n    \
             command: [\"/bin/busybox\", \"sh\", \"-c\", \
             \"for i in $$(/bin/busybox seq 1 300); do echo line-$$i; done; exec /bin/busybox sleep 600\"]\n"
        )
    };
    p.write(&format!(
        "services:\n{}{}",
        chatty("loc", "local"),
        chatty("js", "json-file")
    ));
    ok(&p, &["up", "-d"]);
    for svc in ["loc", "js"] {
        until(&format!("{svc} never logged its last line"), || {
            ok(&p, &["logs", "--no-color", svc]).contains("line-300")
        });
    }
    let logs = p.state.join("projects").join(&p.name).join("logs");
    let files = |svc: &str| {
        let mut names: Vec<String> = std::fs::read_dir(&logs)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(&format!("{}-{svc}-1", p.name)))
            .collect();
        names.sort();
        names
    };
    // 300 lines of some 40 bytes: far more than five files of 1 kB.
    assert_eq!(
        files("loc").len(),
        5,
        "local keeps 5 files: {:?}",
        files("loc")
    );
    assert_eq!(files("js").len(), 1, "json-file keeps 1: {:?}", files("js"));
    // What the five files hold comes back in order, ending with the last line.
    let kept: Vec<u32> = ok(&p, &["logs", "--no-color", "loc"])
        .lines()
        .filter_map(|l| l.rsplit("line-").next()?.trim().parse().ok())
        .collect();
    assert!(kept.len() > 50, "{kept:?}");
    assert!(kept.windows(2).all(|w| w[1] == w[0] + 1), "{kept:?}");
    assert_eq!(kept.last(), Some(&300));
    ok(&p, &["down", "-t", "0"]);
    p.assert_nothing_left();
}

#[test]
fn logs_follow_shows_new_lines_until_down() {
    let p = Project::new("follow");
    p.write(
        "services:\n  talker:\n    image: berth-test/busybox:1\n    \
         command: [\"/bin/busybox\", \"sh\", \"-c\", \"echo first; while true; do \
         if [ -f /go ]; then /bin/busybox rm /go; echo second; fi; \
         /bin/busybox sleep 0.1; done\"]\n",
    );
    ok(&p, &["up", "-d"]);
    let mut follow = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["logs", "-f", "--no-color", "talker"])
        .current_dir(&p.dir)
        .env("BERTH_STATE_DIR", &p.state)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let seen = lines_of(follow.stdout.take().unwrap());
    let next = |what: &str| {
        let line = seen
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("no {what} from logs -f: {e}"));
        assert!(line.ends_with(&format!("| {what}")), "{line}");
    };
    next("first");
    // Written after `logs -f` printed what there was: it follows.
    let (done, out) = exec(&p, "talker", "/bin/busybox touch /go");
    assert!(done, "{out}");
    next("second");
    ok(&p, &["down", "-t", "0"]);
    until("logs -f outlived the project", || {
        follow.try_wait().unwrap().is_some()
    });
    assert!(follow.wait().unwrap().success());
    assert!(
        seen.try_recv().is_err(),
        "logs -f printed a line twice or made one up"
    );
}

/// `berth images --format json` entries whose repository is `repo`.
fn image_ids(p: &Project, repo: &str) -> Vec<String> {
    let list: serde_json::Value =
        serde_json::from_str(&ok(p, &["images", "--format", "json"])).unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .filter(|i| i["Repository"] == repo)
        .filter_map(|i| i["ID"].as_str().map(str::to_string))
        .collect()
}

/// The file of blob `digest` (`sha256:…`) in the state's image store.
fn blob(p: &Project, digest: &str) -> std::path::PathBuf {
    let hex = digest.strip_prefix("sha256:").expect(digest);
    p.state.join("images/blobs/sha256").join(hex)
}

/// Every blob in the store an hour old, past the collector's grace period.
fn age_blobs(p: &Project) {
    let out = Command::new("find")
        .arg(p.state.join("images/blobs"))
        .args([
            "-type",
            "f",
            "-exec",
            "touch",
            "-m",
            "-d",
            "1 hour ago",
            "{}",
            "+",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn build_no_cache_image_prune_and_rmi() {
    let p = Project::new("imgcmds");
    let ctx = p.dir.join("data");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::copy("/bin/busybox", ctx.join("busybox")).unwrap();
    std::fs::write(ctx.join("data.txt"), "one\n").unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nCOPY busybox /bin/busybox\nCOPY data.txt /data.txt\n\
         CMD [\"/bin/busybox\", \"cat\", \"/data.txt\"]\n",
    )
    .unwrap();
    p.write("services:\n  data:\n    build: data\n    image: berth-test/data:1\n");
    let build = |args: &[&str]| {
        let out = p.berth(args);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        format!("{}{}", text(&out.stdout), text(&out.stderr))
    };
    build(&["build"]);
    let first = image_ids(&p, "berth-test/data");
    assert_eq!(first.len(), 1, "{first:?}");
    let again = build(&["build"]);
    assert!(again.contains("CACHED"), "{again}");
    // --no-cache: every step runs again, to the same (reproducible) image.
    let fresh = build(&["build", "--no-cache"]);
    assert!(
        !fresh.contains("CACHED"),
        "--no-cache used the cache: {fresh}"
    );
    assert_eq!(image_ids(&p, "berth-test/data"), first);

    // New content: a new image; the old one's blobs are no image's now.
    std::fs::write(ctx.join("data.txt"), "two\n").unwrap();
    build(&["build"]);
    let second = image_ids(&p, "berth-test/data");
    assert_eq!(second.len(), 1);
    assert_ne!(second, first);
    assert!(blob(&p, &first[0]).exists(), "the old manifest went early");
    // Unused blobs younger than the grace period stay (another process may
    // be about to tag them); an hour old, they go.
    let fresh = ok(&p, &["image", "prune"]);
    assert!(fresh.starts_with("Deleted 0 blobs"), "{fresh}");
    assert!(blob(&p, &first[0]).exists(), "prune took a fresh blob");
    age_blobs(&p);
    let pruned = ok(&p, &["image", "prune"]);
    let deleted: u64 = pruned
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{pruned}"));
    assert!(deleted >= 2, "{pruned}");
    assert!(!blob(&p, &first[0]).exists(), "prune kept the old manifest");
    assert!(blob(&p, &second[0]).exists(), "prune took the image in use");
    let fsck = ok(&p, &["image", "fsck"]);
    assert!(fsck.contains("no problems"), "{fsck}");
    let run = ok(&p, &["run", "--rm", "-T", "data"]);
    assert_eq!(run, "two\n");
    let again = ok(&p, &["image", "prune"]);
    assert!(again.starts_with("Deleted 0 blobs"), "{again}");

    // rmi: untagged, listed no more, its blobs gone; busybox's image stays.
    age_blobs(&p);
    let removed = ok(&p, &["rmi", "berth-test/data:1"]);
    assert!(
        removed.starts_with("Untagged: ") && removed.contains("berth-test/data:1"),
        "{removed}"
    );
    assert!(image_ids(&p, "berth-test/data").is_empty());
    assert!(!blob(&p, &second[0]).exists(), "rmi left the manifest");
    assert_eq!(image_ids(&p, "berth-test/busybox").len(), 1);
    let missing = p.berth(&["rmi", "berth-test/data:1"]);
    assert!(!missing.status.success());
    assert!(
        text(&missing.stderr).contains("no such image"),
        "{}",
        text(&missing.stderr)
    );
}

/// Whether capability `bit` is in the `CapEff:` mask of a status file.
fn has_cap(status: &str, bit: u32) -> bool {
    let mask = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .map(|m| u64::from_str_radix(m.trim(), 16).unwrap())
        .unwrap_or_else(|| panic!("no CapEff in {status}"));
    mask & (1 << bit) != 0
}

#[test]
fn cap_drop_privileged_sysctls_and_cpus_reach_the_container() {
    let p = Project::new("seckeys");
    p.write(
        r#"services:
  plain:
    image: berth-test/busybox:1
  dropped:
    image: berth-test/busybox:1
    cap_drop: [CHOWN, NET_RAW]
  priv:
    image: berth-test/busybox:1
    privileged: true
  tuned:
    image: berth-test/busybox:1
    sysctls:
      net.core.somaxconn: "1234"
    cpus: "0.5"
"#,
    );
    ok(&p, &["up", "-d"]);
    let status = |svc: &str| {
        let (done, out) = exec(&p, svc, "cat /proc/self/status");
        assert!(done, "{svc}: {out}");
        out
    };
    const CHOWN: u32 = 0;
    const NET_RAW: u32 = 13;
    const SYS_ADMIN: u32 = 21;
    let plain = status("plain");
    assert!(
        has_cap(&plain, CHOWN) && has_cap(&plain, NET_RAW),
        "{plain}"
    );
    assert!(!has_cap(&plain, SYS_ADMIN), "{plain}");
    let dropped = status("dropped");
    assert!(
        !has_cap(&dropped, CHOWN) && !has_cap(&dropped, NET_RAW),
        "{dropped}"
    );
    let chown = "echo x > /f && /bin/busybox chown 1 /f";
    let (done, out) = exec(&p, "plain", chown);
    assert!(done, "{out}");
    let (done, out) = exec(&p, "dropped", chown);
    assert!(!done && out.contains("Operation not permitted"), "{out}");
    // privileged: every capability this host has, and mounts work.
    let host = std::fs::read_to_string("/proc/self/status").unwrap();
    let host_caps = host
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .unwrap()
        .trim()
        .to_string();
    let privileged = status("priv");
    let eff = privileged
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap()
        .trim();
    assert_eq!(eff, host_caps, "{privileged}");
    let (done, out) = exec(
        &p,
        "priv",
        "/bin/busybox mkdir -p /mnt && /bin/busybox mount -t tmpfs x /mnt && echo mounted",
    );
    assert!(done && out.contains("mounted"), "{out}");
    // sysctls: set in the container's own network namespace only.
    let somaxconn = |svc: &str| {
        let (done, out) = exec(&p, svc, "cat /proc/sys/net/core/somaxconn");
        assert!(done, "{out}");
        out.trim().to_string()
    };
    assert_eq!(somaxconn("tuned"), "1234");
    assert_ne!(somaxconn("plain"), "1234");
    // cpus: 0.5 is a CFS quota of half the period, read where the container
    // finds its own cgroup.
    let (done, out) = exec(
        &p,
        "tuned",
        // The runtime mounts the container's own cgroup where the
        // hierarchy's root would be (v1), or a cgroup namespace (v2).
        "for d in /sys/fs/cgroup/cpu /sys/fs/cgroup/cpu,cpuacct; do \
         if [ -f $d/cpu.cfs_quota_us ]; then cat $d/cpu.cfs_quota_us $d/cpu.cfs_period_us; exit; fi; \
         done; cat /sys/fs/cgroup/cpu.max",
    );
    assert!(done, "{out}");
    let n: Vec<u64> = out
        .split_whitespace()
        .map(|v| v.parse().unwrap_or_else(|_| panic!("{out}")))
        .collect();
    assert_eq!(n.len(), 2, "{out}");
    assert_eq!(n[0] * 2, n[1], "not half a CPU: quota {} of {}", n[0], n[1]);
    ok(&p, &["down", "-t", "0"]);
    p.assert_nothing_left();
}
