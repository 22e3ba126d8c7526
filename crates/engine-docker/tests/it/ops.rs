use crate::common::*;
use berth_engine::backend::{
    Control, CopyRequest, ExecRequest, HostEnd, LogOptions, PlanFlags, RunOutcome, RunRequest,
    UpRequest,
};
use berth_engine::{Backend, Status};
use std::collections::BTreeMap;

/// stop/start/kill/pause, exec, run, cp, top and logs on one project.
#[test]
fn control_exec_run_copy_top_and_logs() {
    let b = backend();
    let store_dir = tempfile::tempdir().unwrap();
    let store = berth_oci::Store::open(store_dir.path()).unwrap();
    let images = images(&b, &store, "ops", "unused");
    let p = Project::new(
        "bdk-ops",
        &format!(
            "services:\n  web:\n    image: {}\n    command: [\"sh\", \"-c\", \"echo hello from web; echo oops >&2; exec sleep 1000\"]\n    stop_grace_period: 1s\n",
            images["box"]
        ),
    );
    p.up(&b).unwrap();
    let web = || b.observe(&p.name).unwrap().unwrap().containers[0].clone();
    assert_eq!(web().status, Status::Running);

    // logs: both streams, oldest first, with times.
    let mut lines = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while lines.len() < 2 && std::time::Instant::now() < deadline {
        lines.clear();
        b.logs(
            &p.name,
            &LogOptions::default(),
            &mut |l| lines.push(l),
            &|| false,
        )
        .unwrap();
    }
    let texts: Vec<(&str, bool)> = lines.iter().map(|l| (l.text.as_str(), l.stderr)).collect();
    assert!(texts.contains(&("hello from web", false)), "{texts:?}");
    assert!(texts.contains(&("oops", true)), "{texts:?}");
    assert!(lines.iter().all(|l| l.time.is_some() && l.service == "web"));

    // exec: the exit code comes back.
    let code = b
        .exec(
            &p.name,
            &ExecRequest {
                container: web(),
                command: vec!["sh".into(), "-c".into(), "exit 3".into()],
                ..ExecRequest::default()
            },
        )
        .unwrap();
    assert_eq!(code, 3);

    // cp in and back out.
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("note.txt");
    std::fs::write(&src, "copied through the Engine API").unwrap();
    b.copy(
        &p.name,
        &CopyRequest {
            container: web(),
            path: "/tmp".into(),
            host: HostEnd::Path(src.clone()),
            out: false,
        },
    )
    .unwrap();
    let back = tmp.path().join("back.txt");
    b.copy(
        &p.name,
        &CopyRequest {
            container: web(),
            path: "/tmp/note.txt".into(),
            host: HostEnd::Path(back.clone()),
            out: true,
        },
    )
    .unwrap();
    assert_eq!(
        std::fs::read_to_string(&back).unwrap(),
        "copied through the Engine API"
    );

    // top lists the sleeping main process.
    let procs = b.top(&p.name, &web()).unwrap();
    assert!(
        procs.iter().any(|pr| pr.command.contains("sleep 1000")),
        "{procs:?}"
    );

    // pause, unpause, stop, start.
    b.control(
        &p.name,
        &Control::Pause {
            services: vec![],
            pause: true,
        },
        &|_| {},
    )
    .unwrap();
    assert_eq!(web().status, Status::Paused);
    b.control(
        &p.name,
        &Control::Pause {
            services: vec![],
            pause: false,
        },
        &|_| {},
    )
    .unwrap();
    b.control(
        &p.name,
        &Control::Stop {
            services: vec!["web".into()],
            timeout_secs: Some(0),
        },
        &|_| {},
    )
    .unwrap();
    assert_eq!(web().status, Status::Exited);
    b.control(&p.name, &Control::Start { services: vec![] }, &|_| {})
        .unwrap();
    assert_eq!(web().status, Status::Running);
    b.control(
        &p.name,
        &Control::Kill {
            services: vec![],
            signal: 9,
        },
        &|_| {},
    )
    .unwrap();
    assert_eq!(web().status, Status::Exited);

    // run: a one-off with its own exit code, labelled oneoff and removed.
    let (load, _) = p.load();
    let out = b
        .run(
            &p.name,
            &RunRequest {
                load,
                service: "web".into(),
                command: Some(vec!["sh".into(), "-c".into(), "exit 4".into()]),
                rm: true,
                ..RunRequest::default()
            },
        )
        .unwrap();
    assert_eq!(out, RunOutcome::Exited { code: 4 });
    let status = b.observe(&p.name).unwrap().unwrap();
    assert_eq!(
        status.containers.len(),
        1,
        "the one-off is gone: {:?}",
        status.containers
    );

    assert!(p.down(&b));
    assert_eq!(p.leftovers(), Vec::<String>::new());
}

/// Secrets and configs arrive as read-only files with the content the
/// project gives them; a changed secret recreates the service.
#[test]
fn secrets_and_configs_are_files_in_the_container() {
    let b = backend();
    let store_dir = tempfile::tempdir().unwrap();
    let store = berth_oci::Store::open(store_dir.path()).unwrap();
    let images = images(&b, &store, "secrets", "unused");
    let compose = |secret: &str| {
        format!(
            r#"services:
  app:
    image: {}
    command: ["sleep", "1000"]
    stop_grace_period: 1s
    secrets: [token]
    configs:
      - source: conf
        target: /etc/app.conf
secrets:
  token:
    file: ./token.txt
configs:
  conf:
    content: "port = {secret}"
"#,
            images["box"]
        )
    };
    let p = Project::new("bdk-secrets", &compose("80"));
    std::fs::write(p.dir.join("token.txt"), "s3cret").unwrap();
    p.up(&b).unwrap();
    let app = || b.observe(&p.name).unwrap().unwrap().containers[0].clone();
    let tmp = tempfile::tempdir().unwrap();
    let read = |path: &str| {
        let out = tmp.path().join("out");
        let _ = std::fs::remove_file(&out);
        b.copy(
            &p.name,
            &CopyRequest {
                container: app(),
                path: path.into(),
                host: HostEnd::Path(out.clone()),
                out: true,
            },
        )
        .unwrap();
        std::fs::read_to_string(&out).unwrap()
    };
    assert_eq!(read("/run/secrets/token"), "s3cret");
    assert_eq!(read("/etc/app.conf"), "port = 80");
    let code = b
        .exec(
            &p.name,
            &ExecRequest {
                container: app(),
                command: vec![
                    "sh".into(),
                    "-c".into(),
                    "echo x > /run/secrets/token".into(),
                ],
                ..ExecRequest::default()
            },
        )
        .unwrap();
    assert_ne!(code, 0, "a secret is read-only");

    std::fs::write(p.dir.join("token.txt"), "n3w").unwrap();
    let plan = p.plan(&b);
    assert!(
        plan.steps[0].reason.contains("configuration changed"),
        "{plan:#?}"
    );
    p.up(&b).unwrap();
    assert_eq!(read("/run/secrets/token"), "n3w");
    assert!(p.down(&b));
    assert_eq!(p.leftovers(), Vec::<String>::new());
}

/// An attached `up` follows logs and, between batches, asks the same
/// backend whether a container exited: the backend must take that call
/// from inside its own `logs` (and `events`).
#[test]
fn a_watcher_may_call_the_backend_between_batches() {
    let b = backend();
    let store_dir = tempfile::tempdir().unwrap();
    let store = berth_oci::Store::open(store_dir.path()).unwrap();
    let images = images(&b, &store, "reenter", "unused");
    let p = Project::new(
        "bdk-reenter",
        &format!(
            "services:\n  once:\n    image: {}\n    command: [\"sh\", \"-c\", \"echo done\"]\n",
            images["box"]
        ),
    );
    p.up(&b).unwrap();
    let exited = || {
        b.observe(&p.name)
            .unwrap()
            .is_some_and(|s| s.containers.iter().all(|c| c.status == Status::Exited))
    };
    let lines = std::cell::RefCell::new(Vec::new());
    let options = LogOptions {
        follow: true,
        ..LogOptions::default()
    };
    b.logs(
        &p.name,
        &options,
        &mut |l| lines.borrow_mut().push(l.text),
        &|| exited() && !lines.borrow().is_empty(),
    )
    .unwrap();
    assert_eq!(*lines.borrow(), ["done"]);
    b.events(&p.name, &mut |_| {}, &exited).unwrap();
    assert!(p.down(&b));
}

/// Host and cgroup keys docker compose passes to the daemon reach the
/// container: its cgroup parent, CPU set, OOM score and domain name seen
/// from inside, the rest in the daemon's own record of it; what the daemon
/// discards (a block I/O weight on a kernel without it) is said, not lost.
#[test]
fn host_and_cgroup_keys_reach_the_container() {
    let b = backend();
    let store_dir = tempfile::tempdir().unwrap();
    let store = berth_oci::Store::open(store_dir.path()).unwrap();
    let images = images(&b, &store, "hostkeys", "unused");
    let parent = format!("/berth-test-{}", std::process::id());
    let compose = format!(
        r#"services:
  app:
    image: {}
    command: ["sleep", "1000"]
    stop_grace_period: 1s
    cgroup_parent: {parent}
    cpu_period: 100000
    cpu_quota: 50000
    cpuset: "0"
    mem_reservation: 32m
    mem_swappiness: 10
    oom_score_adj: 123
    domainname: example.test
    device_cgroup_rules: ["c 1:3 mr"]
    blkio_config:
      weight: 300
"#,
        images["box"]
    );
    let p = Project::new("bdk-hostkeys", &compose);
    let (load, loaded) = p.load();
    let lines = std::sync::Mutex::new(Vec::<String>::new());
    b.up(
        &UpRequest {
            load: &load,
            loaded: &loaded,
            images: &BTreeMap::new(),
            runtimes: &BTreeMap::new(),
            flags: &PlanFlags::default(),
        },
        &|l| lines.lock().unwrap().push(l.to_string()),
    )
    .unwrap();
    let name = format!("{}-app-1", p.name);
    let inside = |cmd: &str| {
        let o = std::process::Command::new("docker")
            .args(["exec", &name, "sh", "-c", cmd])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{cmd}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    assert_eq!(inside("cat /proc/1/oom_score_adj"), "123");
    assert_eq!(inside("cat /proc/sys/kernel/domainname"), "example.test");
    assert!(
        inside("cat /proc/1/cgroup").contains(&format!(":{parent}/")),
        "not under {parent}"
    );
    let inspect = |field: &str| {
        let o = std::process::Command::new("docker")
            .args([
                "inspect",
                "-f",
                &format!("{{{{json .HostConfig.{field}}}}}"),
                &name,
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    assert_eq!(inspect("CpusetCpus"), "\"0\"");
    assert_eq!(inspect("CpuPeriod"), "100000");
    assert_eq!(inspect("CpuQuota"), "50000");
    assert_eq!(inspect("MemoryReservation"), "33554432");
    assert_eq!(inspect("MemorySwappiness"), "10");
    assert_eq!(inspect("DeviceCgroupRules"), "[\"c 1:3 mr\"]");
    // The weight is kept where the kernel has it, and said to be
    // discarded where it does not.
    let said = lines.lock().unwrap().join("\n");
    if std::path::Path::new("/sys/fs/cgroup/blkio/blkio.weight").exists()
        || std::path::Path::new("/sys/fs/cgroup/blkio/blkio.bfq.weight").exists()
    {
        assert_eq!(inspect("BlkioWeight"), "300");
    } else {
        assert!(
            said.contains(&format!(
                "warning: container {name}: the Docker Engine says:"
            )) && said.contains("Weight discarded"),
            "{said}"
        );
    }
    assert!(p.down(&b));
    assert_eq!(p.leftovers(), Vec::<String>::new());
}

/// `post_start` runs in the container once it started, with its user and
/// environment; `pre_stop` before `stop` stops it; a failing `post_start`
/// fails `up` with a line naming the hook.
#[test]
fn hooks_run_in_the_container_around_start_and_stop() {
    let b = backend();
    let store_dir = tempfile::tempdir().unwrap();
    let store = berth_oci::Store::open(store_dir.path()).unwrap();
    let images = images(&b, &store, "hooks", "unused");
    let compose = |post: &str| {
        format!(
            r#"services:
  app:
    image: {}
    command: ["sleep", "1000"]
    stop_grace_period: 1s
    volumes: ["./marks:/marks"]
    post_start:
      - command: {post}
        user: "1000"
        environment:
          GREETING: hi
    pre_stop:
      - command: ["sh", "-c", "echo stopping > /marks/pre"]
"#,
            images["box"]
        )
    };
    let p = Project::new(
        "bdk-hooks",
        &compose(r#"["sh", "-c", "echo started $$GREETING $$(id -u) > /marks/post"]"#),
    );
    let marks = p.dir.join("marks");
    std::fs::create_dir_all(&marks).unwrap();
    std::fs::set_permissions(&marks, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    p.up(&b).unwrap();
    assert_eq!(
        std::fs::read_to_string(marks.join("post")).unwrap().trim(),
        "started hi 1000"
    );
    assert!(!marks.join("pre").exists());
    b.control(
        &p.name,
        &Control::Stop {
            services: vec![],
            timeout_secs: None,
        },
        &|_| {},
    )
    .unwrap();
    assert_eq!(
        std::fs::read_to_string(marks.join("pre")).unwrap().trim(),
        "stopping"
    );

    std::fs::write(p.dir.join("docker-compose.yml"), compose(r#"["false"]"#)).unwrap();
    let e = p.up(&b).unwrap_err();
    assert!(
        e.message
            .starts_with("services.app.post_start[0]: \"false\" exited with code 1"),
        "{e}"
    );
    assert!(p.down(&b));

    assert_eq!(p.leftovers(), Vec::<String>::new());
}
