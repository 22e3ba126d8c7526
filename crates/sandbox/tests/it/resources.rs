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
