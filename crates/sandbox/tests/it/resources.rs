//! Resource limits (cgroups), rlimits, /dev/shm, sysctls, devices and
//! added groups.

use crate::support::*;
use berth_sandbox::{DeviceSpec, Network, SandboxError, SpecError};
use std::fs;
use std::path::PathBuf;

/// A file of the container's cgroup: `/sys/fs/cgroup/<controller>/berth/<id>/`
/// on cgroup v1, `/sys/fs/cgroup/berth/<id>/` on v2.
fn cgroup_file(id: &str, controller: &str, v1: &str, v2: &str) -> String {
    let v1_path = PathBuf::from(format!("/sys/fs/cgroup/{controller}/berth/{id}/{v1}"));
    let path = if v1_path.exists() {
        v1_path
    } else {
        PathBuf::from(format!("/sys/fs/cgroup/berth/{id}/{v2}"))
    };
    fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .to_string()
}

#[test]
fn memory_cpu_and_pids_limits_land_in_the_cgroup() {
    let mut spec = sh("limits", "exec sleep 1000");
    spec.memory = Some(64 << 20);
    spec.memory_swap = Some(128 << 20);
    spec.cpus = Some(0.5);
    spec.cpu_shares = Some(512);
    spec.pids_limit = Some(20);
    let c = create(spec);
    let id = c.id();
    assert_eq!(
        cgroup_file(id, "memory", "memory.limit_in_bytes", "memory.max"),
        (64u64 << 20).to_string()
    );
    if std::path::Path::new("/sys/fs/cgroup/memory/berth").exists() {
        assert_eq!(
            cgroup_file(id, "memory", "memory.memsw.limit_in_bytes", ""),
            (128u64 << 20).to_string()
        );
        assert_eq!(cgroup_file(id, "cpu", "cpu.cfs_quota_us", ""), "50000");
        assert_eq!(cgroup_file(id, "cpu", "cpu.cfs_period_us", ""), "100000");
        assert_eq!(cgroup_file(id, "cpu", "cpu.shares", ""), "512");
    } else {
        assert_eq!(cgroup_file(id, "", "", "cpu.max"), "50000 100000");
    }
    assert_eq!(cgroup_file(id, "pids", "pids.max", "pids.max"), "20");
    c.delete().unwrap();
}

#[test]
fn a_fork_bomb_stops_at_the_pids_limit() {
    let mut spec = sh(
        "forkbomb",
        "for i in $(seq 1 40); do sleep 1000 & done; echo forked",
    );
    spec.pids_limit = Some(20);
    let out = tempfile::tempdir().unwrap();
    spec.stderr = berth_sandbox::Stdio::File(out.path().join("stderr"));
    let mut c = create(spec);
    c.start().unwrap();
    let id = c.id().to_string();
    c.wait().unwrap();
    let current: u32 = cgroup_file(&id, "pids", "pids.current", "pids.current")
        .parse()
        .unwrap();
    assert!(current <= 20, "{current} processes");
    let stderr = fs::read_to_string(out.path().join("stderr")).unwrap();
    assert!(stderr.contains("can't fork"), "{stderr}");
    c.delete().unwrap();
}

#[test]
fn ulimits_apply_inside() {
    let mut spec = sh("ulimits", "ulimit -n; ulimit -Hn; ulimit -c");
    spec.ulimits = vec![("nofile".into(), 1024, 2048), ("core".into(), 0, 0)];
    let out = run(spec);
    assert_eq!(out.stdout, "1024\n2048\n0\n", "{}", out.stderr);
}

#[test]
fn shm_size_sets_the_dev_shm_tmpfs() {
    let mut spec = sh("shm", "df -k /dev/shm");
    spec.shm_size = Some(8 << 20);
    let out = run(spec);
    let line = out.stdout.lines().nth(1).unwrap_or_default().to_string();
    assert_eq!(
        line.split_whitespace().nth(1),
        Some("8192"),
        "{}",
        out.stdout
    );
    let out = run(sh("shm-default", "df -k /dev/shm"));
    let line = out.stdout.lines().nth(1).unwrap_or_default().to_string();
    assert_eq!(
        line.split_whitespace().nth(1),
        Some("65536"),
        "{}",
        out.stdout
    );
}

#[test]
fn namespaced_sysctls_are_set_and_others_refused() {
    let mut spec = sh(
        "sysctl",
        "cat /proc/sys/kernel/shmmax /proc/sys/net/ipv4/ip_forward",
    );
    spec.sysctls = vec![
        ("kernel.shmmax".into(), "123456789".into()),
        ("net/ipv4/ip_forward".into(), "1".into()),
    ];
    let out = run(spec);
    assert_eq!(out.stdout, "123456789\n1\n", "{}", out.stderr);

    let f = fixture();
    let layers = f
        .sandbox
        .layers()
        .unpack_image(&f.store, &f.busybox)
        .unwrap();
    for (name, host) in [
        ("vm.swappiness", false),
        ("kernel.hostname", false),
        ("net.ipv4.ip_forward", true),
    ] {
        let mut spec = sh("sysctl-bad", "true");
        spec.sysctls = vec![(name.into(), "1".into())];
        if host {
            spec.network = Network::Host;
        }
        let err = f.sandbox.create(&layers, spec).unwrap_err();
        assert!(
            matches!(err, SandboxError::Spec(SpecError::Sysctl { .. })),
            "{name}: {err}"
        );
        assert!(err.to_string().contains(name), "{err}");
    }
}

#[test]
fn a_given_device_is_usable_and_others_are_not() {
    // loop-control is outside docker's default device allowlist; it is
    // given for reading only.
    let mut spec = sh(
        "device",
        "test -c /dev/lc && : < /dev/lc && echo opened; \
         : > /dev/lc && echo written",
    );
    spec.devices = vec![DeviceSpec {
        host_path: "/dev/loop-control".into(),
        container_path: "/dev/lc".into(),
        permissions: "r".into(),
    }];
    let out = run(spec);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines, ["opened"], "{}", out.stderr);
    let out = run(sh(
        "device-none",
        "mknod /dev/lc c 10 237 && : < /dev/lc && echo opened",
    ));
    assert!(!out.stdout.contains("opened"), "{}", out.stdout);
    assert!(
        out.stderr.contains("Operation not permitted"),
        "{}",
        out.stderr
    );

    let f = fixture();
    let layers = f
        .sandbox
        .layers()
        .unpack_image(&f.store, &f.busybox)
        .unwrap();
    let mut spec = sh("device-bad", "true");
    spec.devices = vec![DeviceSpec {
        host_path: "/etc/passwd".into(),
        container_path: "/dev/x".into(),
        permissions: String::new(),
    }];
    let err = f.sandbox.create(&layers, spec).unwrap_err();
    assert!(
        err.to_string().contains("not a character or block device"),
        "{err}"
    );
}

#[test]
fn group_add_adds_groups_by_name_and_gid() {
    let mut spec = sh("groups", "id");
    spec.user = Some("app".into());
    spec.group_add = vec!["root".into(), "4242".into()];
    let out = run(spec);
    assert!(
        out.stdout.contains("groups=0(root),50(staff),4242"),
        "{}",
        out.stdout
    );
    let f = fixture();
    let layers = f
        .sandbox
        .layers()
        .unpack_image(&f.store, &f.busybox)
        .unwrap();
    let mut spec = sh("groups-bad", "true");
    spec.group_add = vec!["no-such-group".into()];
    let err = f.sandbox.create(&layers, spec).unwrap_err();
    assert!(err.to_string().contains("no-such-group"), "{err}");
}

#[test]
fn bad_limits_are_clear_errors() {
    let f = fixture();
    let layers = f
        .sandbox
        .layers()
        .unpack_image(&f.store, &f.busybox)
        .unwrap();
    type Edit = Box<dyn Fn(&mut berth_sandbox::ContainerSpec)>;
    let cases: Vec<(&str, Edit)> = vec![
        ("memory", Box::new(|s| s.memory = Some(1 << 20))),
        ("memory_swap", Box::new(|s| s.memory_swap = Some(1 << 30))),
        (
            "memory_swap",
            Box::new(|s| {
                s.memory = Some(64 << 20);
                s.memory_swap = Some(32 << 20);
            }),
        ),
        ("cpus", Box::new(|s| s.cpus = Some(1000.0))),
        ("cpus", Box::new(|s| s.cpus = Some(0.0))),
        ("cpu_shares", Box::new(|s| s.cpu_shares = Some(1))),
        (
            "ulimit",
            Box::new(|s| s.ulimits = vec![("nofiles".into(), 1, 1)]),
        ),
        (
            "ulimit",
            Box::new(|s| s.ulimits = vec![("nofile".into(), 10, 1)]),
        ),
    ];
    for (what, edit) in cases {
        let mut spec = sh("bad-limit", "true");
        edit(&mut spec);
        let err = f.sandbox.create(&layers, spec).unwrap_err();
        assert!(
            matches!(&err, SandboxError::Spec(SpecError::Resource { what: w, .. }) if *w == what),
            "{what}: {err}"
        );
    }
}

fn cgroup_v1() -> bool {
    !std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

#[test]
fn cpuset_cfs_and_memory_settings_land_in_the_cgroup_and_apply_inside() {
    let last_cpu = std::thread::available_parallelism().map_or(1, |n| n.get()) - 1;
    let mut spec = sh(
        "cgroup-extras",
        "grep Cpus_allowed_list /proc/self/status; exec sleep 1000",
    );
    let out = tempfile::tempdir().unwrap();
    spec.stdout = berth_sandbox::Stdio::File(out.path().join("stdout"));
    spec.cpuset_cpus = Some(last_cpu.to_string());
    spec.cpu_period = Some(50_000);
    spec.cpu_quota = Some(25_000);
    spec.memory = Some(64 << 20);
    spec.memory_reservation = Some(32 << 20);
    if cgroup_v1() {
        spec.memory_swappiness = Some(10);
        spec.oom_kill_disable = true;
    }
    let mut c = create(spec);
    c.start().unwrap();
    let id = c.id().to_string();
    let stdout = out.path().join("stdout");
    wait_for("the container's cpu list", || {
        fs::read_to_string(&stdout).is_ok_and(|s| s.contains('\n'))
    });
    // The scheduler keeps the container on that CPU.
    let allowed = fs::read_to_string(&stdout).unwrap();
    assert_eq!(
        allowed.split_whitespace().nth(1),
        Some(last_cpu.to_string().as_str()),
        "{allowed}"
    );
    assert_eq!(
        cgroup_file(&id, "cpuset", "cpuset.cpus", "cpuset.cpus"),
        last_cpu.to_string()
    );
    assert_eq!(
        cgroup_file(&id, "memory", "memory.soft_limit_in_bytes", "memory.low"),
        (32u64 << 20).to_string()
    );
    if cgroup_v1() {
        assert_eq!(cgroup_file(&id, "cpu", "cpu.cfs_quota_us", ""), "25000");
        assert_eq!(cgroup_file(&id, "cpu", "cpu.cfs_period_us", ""), "50000");
        assert_eq!(cgroup_file(&id, "memory", "memory.swappiness", ""), "10");
        let oom = cgroup_file(&id, "memory", "memory.oom_control", "");
        assert!(oom.contains("oom_kill_disable 1"), "{oom}");
    } else {
        assert_eq!(cgroup_file(&id, "", "", "cpu.max"), "25000 50000");
    }
    c.delete().unwrap();
}

#[test]
fn oom_score_adj_applies_to_the_container_and_its_execs_not_to_the_caller() {
    let before = fs::read_to_string("/proc/self/oom_score_adj").unwrap();
    let mut spec = sh("oom-adj", "cat /proc/self/oom_score_adj; exec sleep 1000");
    let out = tempfile::tempdir().unwrap();
    spec.stdout = berth_sandbox::Stdio::File(out.path().join("stdout"));
    spec.oom_score_adj = Some(523);
    let mut c = create(spec);
    c.start().unwrap();
    let stdout = out.path().join("stdout");
    wait_for("the container's oom_score_adj", || {
        fs::read_to_string(&stdout).is_ok_and(|s| s.contains('\n'))
    });
    assert_eq!(fs::read_to_string(&stdout).unwrap(), "523\n");
    let exec = berth_sandbox::ExecSpec {
        args: vec!["cat".into(), "/proc/self/oom_score_adj".into()],
        stdout: berth_sandbox::Stdio::File(out.path().join("exec")),
        ..Default::default()
    };
    let mut p = fixture().sandbox.exec(c.id(), exec).unwrap();
    assert!(p.wait().unwrap().success());
    assert_eq!(
        fs::read_to_string(out.path().join("exec")).unwrap(),
        "523\n"
    );
    // Neither this process nor the next container inherit it.
    assert_eq!(
        fs::read_to_string("/proc/self/oom_score_adj").unwrap(),
        before
    );
    let next = run(sh("oom-adj-next", "cat /proc/self/oom_score_adj"));
    assert_eq!(next.stdout, before);
    c.delete().unwrap();
}

#[test]
fn a_real_time_runtime_gets_a_budget_from_the_parent_cgroups() {
    let f = fixture();
    let layers = f
        .sandbox
        .layers()
        .unpack_image(&f.store, &f.busybox)
        .unwrap();
    let mut spec = sh("rt", "exec sleep 1000");
    spec.cpu_rt_runtime = Some(10_000);
    spec.cpu_rt_period = Some(500_000);
    if !cgroup_v1() {
        let err = f.sandbox.create(&layers, spec).unwrap_err();
        assert!(err.to_string().contains("cgroup v2"), "{err}");
        return;
    }
    let c = f.sandbox.create(&layers, spec).unwrap();
    assert_eq!(cgroup_file(c.id(), "cpu", "cpu.rt_runtime_us", ""), "10000");
    assert_eq!(cgroup_file(c.id(), "cpu", "cpu.rt_period_us", ""), "500000");
    // The parent holds at least the container's share of CPU time.
    let parent: i64 = fs::read_to_string("/sys/fs/cgroup/cpu/berth/cpu.rt_runtime_us")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(parent >= 20_000, "{parent}");
    c.delete().unwrap();

    let mut spec = sh("rt-bad", "true");
    spec.cpu_rt_runtime = Some(600_000);
    spec.cpu_rt_period = Some(500_000);
    let err = f.sandbox.create(&layers, spec).unwrap_err();
    assert!(
        matches!(
            &err,
            SandboxError::Spec(SpecError::Resource {
                what: "cpu_rt_runtime",
                ..
            })
        ),
        "{err}"
    );
}

#[test]
fn a_cgroup_parent_holds_the_containers_cgroup() {
    let parent = format!("berth-it-parent-{}", std::process::id());
    let mut spec = sh("cgroup-parent", "cat /proc/self/cgroup");
    spec.cgroup_parent = Some(format!("/{parent}/sub"));
    spec.memory = Some(64 << 20);
    let id = spec.id.clone();
    let out = tempfile::tempdir().unwrap();
    spec.stdout = berth_sandbox::Stdio::File(out.path().join("stdout"));
    let mut c = create(spec);
    assert_eq!(
        fixture().sandbox.cgroup_path(&id).unwrap(),
        format!("/{parent}/sub/{id}")
    );
    c.start().unwrap();
    c.wait().unwrap();
    let cgroups = fs::read_to_string(out.path().join("stdout")).unwrap();
    let memory = cgroups
        .lines()
        .find(|l| l.contains(":memory:") || l.starts_with("0::"))
        .unwrap_or_default();
    assert!(
        memory.ends_with(&format!("/{parent}/sub/{id}")),
        "{cgroups}"
    );
    c.delete().unwrap();
    // Leave no parent behind in any hierarchy (an rmdir per level).
    for root in cgroup_roots() {
        let _ = fs::remove_dir(root.join(&parent).join("sub"));
        let _ = fs::remove_dir(root.join(&parent));
    }

    let f = fixture();
    let layers = f
        .sandbox
        .layers()
        .unpack_image(&f.store, &f.busybox)
        .unwrap();
    let mut spec = sh("cgroup-parent-bad", "true");
    spec.cgroup_parent = Some("../../escape".into());
    let err = f.sandbox.create(&layers, spec).unwrap_err();
    assert!(
        matches!(err, SandboxError::Spec(SpecError::BadCgroupParent(_))),
        "{err}"
    );
}

/// Every cgroup hierarchy's mount point.
fn cgroup_roots() -> Vec<PathBuf> {
    fs::read_to_string("/proc/self/mounts")
        .unwrap()
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_, dir, kind) = (f.next()?, f.next()?, f.next()?);
            matches!(kind, "cgroup" | "cgroup2").then(|| PathBuf::from(dir))
        })
        .collect()
}

#[test]
fn a_device_cgroup_rule_allows_a_node_the_container_makes() {
    let mut spec = sh(
        "device-rule",
        "mknod /dev/lc c 10 237 && : < /dev/lc && echo opened; : > /dev/lc && echo written",
    );
    spec.device_cgroup_rules = vec!["c 10:237 r".into()];
    let out = run(spec);
    assert_eq!(out.stdout, "opened\n", "{}", out.stderr);

    let f = fixture();
    let layers = f
        .sandbox
        .layers()
        .unpack_image(&f.store, &f.busybox)
        .unwrap();
    for rule in ["c 10:237", "x 1:3 r", "c 1-3 r", "c 1:3 rx", "c a:3 r"] {
        let mut spec = sh("device-rule-bad", "true");
        spec.device_cgroup_rules = vec![rule.into()];
        let err = f.sandbox.create(&layers, spec).unwrap_err();
        assert!(
            matches!(&err, SandboxError::Spec(SpecError::DeviceRule { .. })),
            "{rule}: {err}"
        );
        assert!(err.to_string().contains(rule), "{err}");
    }
}

/// A whole disk of this host: `(path, "major:minor")`.
fn a_disk() -> (PathBuf, String) {
    let mut names: Vec<String> = fs::read_dir("/sys/block")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| PathBuf::from("/dev").join(n).exists())
        .collect();
    // A real disk before loop and zram devices.
    names.sort_by_key(|n| (n.starts_with("loop") || n.starts_with("zram"), n.clone()));
    let name = names.first().expect("a block device in /sys/block").clone();
    let numbers = fs::read_to_string(format!("/sys/block/{name}/dev")).unwrap();
    (PathBuf::from("/dev").join(name), numbers.trim().to_string())
}

#[test]
fn block_io_throttles_land_in_the_cgroup_and_weights_need_a_scheduler() {
    let (disk, numbers) = a_disk();
    let mut spec = sh("blkio", "exec sleep 1000");
    spec.blkio.read_bps = vec![(disk.clone(), 1 << 20)];
    spec.blkio.write_iops = vec![(disk.clone(), 100)];
    let c = create(spec);
    if cgroup_v1() {
        assert_eq!(
            cgroup_file(c.id(), "blkio", "blkio.throttle.read_bps_device", ""),
            format!("{numbers} {}", 1 << 20)
        );
        assert_eq!(
            cgroup_file(c.id(), "blkio", "blkio.throttle.write_iops_device", ""),
            format!("{numbers} 100")
        );
    } else {
        let max = cgroup_file(c.id(), "", "", "io.max");
        assert!(max.contains(&format!("{numbers} rbps=1048576")), "{max}");
    }
    c.delete().unwrap();

    let f = fixture();
    let layers = f
        .sandbox
        .layers()
        .unpack_image(&f.store, &f.busybox)
        .unwrap();
    // A weight needs a proportional I/O scheduler's files: set where they
    // exist, refused by name where they do not (this machine: no device
    // uses BFQ).
    let weight_file = ["blkio.weight", "blkio.bfq.weight"]
        .iter()
        .find(|f| PathBuf::from("/sys/fs/cgroup/blkio").join(f).exists());
    let mut spec = sh("blkio-weight", "exec sleep 1000");
    spec.blkio.weight = Some(300);
    match (cgroup_v1(), weight_file) {
        (true, None) => {
            let err = f.sandbox.create(&layers, spec).unwrap_err();
            assert!(
                matches!(
                    &err,
                    SandboxError::Spec(SpecError::Unavailable {
                        what: "blkio_config.weight",
                        ..
                    })
                ),
                "{err}"
            );
        }
        (true, Some(file)) => {
            let c = f.sandbox.create(&layers, spec).unwrap();
            assert_eq!(cgroup_file(c.id(), "blkio", file, ""), "300");
            c.delete().unwrap();
        }
        (false, _) => {
            if let Ok(c) = f.sandbox.create(&layers, spec) {
                c.delete().unwrap();
            }
        }
    }
    let mut spec = sh("blkio-bad", "true");
    spec.blkio.read_bps = vec![("/etc/passwd".into(), 1)];
    let err = f.sandbox.create(&layers, spec).unwrap_err();
    assert!(err.to_string().contains("not a block device"), "{err}");
}

#[test]
fn conflicting_or_out_of_range_cgroup_settings_are_clear_errors() {
    let f = fixture();
    let layers = f
        .sandbox
        .layers()
        .unpack_image(&f.store, &f.busybox)
        .unwrap();
    type Edit = Box<dyn Fn(&mut berth_sandbox::ContainerSpec)>;
    let cases: Vec<(&str, Edit)> = vec![
        (
            "cpus and cpu_period",
            Box::new(|s| {
                s.cpus = Some(0.5);
                s.cpu_period = Some(50_000);
            }),
        ),
        ("cpu_period", Box::new(|s| s.cpu_period = Some(10))),
        ("cpu_quota", Box::new(|s| s.cpu_quota = Some(10))),
        (
            "is not available",
            Box::new(|s| s.cpuset_cpus = Some("4096".into())),
        ),
        ("cpuset", Box::new(|s| s.cpuset_cpus = Some("1-x".into()))),
        (
            "mem_swappiness",
            Box::new(|s| s.memory_swappiness = Some(101)),
        ),
        ("oom_score_adj", Box::new(|s| s.oom_score_adj = Some(2000))),
        (
            "mem_reservation",
            Box::new(|s| {
                s.memory = Some(64 << 20);
                s.memory_reservation = Some(128 << 20);
            }),
        ),
    ];
    for (text, edit) in cases {
        let mut spec = sh("bad-cgroup", "true");
        edit(&mut spec);
        let err = f.sandbox.create(&layers, spec).unwrap_err();
        assert!(
            matches!(&err, SandboxError::Spec(_)),
            "{text}: not a spec error: {err}"
        );
        assert!(err.to_string().contains(text), "{text}: {err}");
    }
}
