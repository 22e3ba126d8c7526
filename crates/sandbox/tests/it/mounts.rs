//! Bind mounts, tmpfs, a read-only rootfs.

use crate::support::*;
use berth_sandbox::{MountKind, MountSpec};
use std::fs;

#[test]
fn a_read_only_bind_cannot_be_written_and_a_read_write_one_can() {
    let host = tempfile::tempdir().unwrap();
    let (ro, rw) = (host.path().join("ro"), host.path().join("rw"));
    fs::create_dir(&ro).unwrap();
    fs::create_dir(&rw).unwrap();
    fs::write(ro.join("given"), "from host\n").unwrap();
    let mut spec = sh(
        "binds",
        "cat /ro/given; touch /ro/x 2>/dev/null && echo ro-writable; \
         echo hi > /rw/y && echo rw-ok",
    );
    spec.mounts = vec![
        MountSpec {
            target: "/ro".into(),
            kind: MountKind::Bind {
                source: ro.clone(),
                read_only: true,
            },
        },
        MountSpec {
            target: "/deep/rw".into(),
            kind: MountKind::Bind {
                source: rw.clone(),
                read_only: false,
            },
        },
    ];
    spec.cmd = Some(vec![
        "sh".into(),
        "-c".into(),
        "cat /ro/given; touch /ro/x 2>/dev/null && echo ro-writable; \
         echo hi > /deep/rw/y && echo rw-ok"
            .into(),
    ]);
    let out = run(spec);
    assert_eq!(out.stdout, "from host\nrw-ok\n", "{}", out.stderr);
    assert!(!ro.join("x").exists());
    assert_eq!(fs::read_to_string(rw.join("y")).unwrap(), "hi\n");
}

#[test]
fn tmpfs_mounts_are_fresh_sized_and_writable() {
    let mut spec = sh(
        "tmpfs",
        "grep ' /scratch ' /proc/mounts; stat -c %a /scratch; echo data > /scratch/f && cat /scratch/f",
    );
    spec.mounts = vec![MountSpec {
        target: "/scratch".into(),
        kind: MountKind::Tmpfs {
            size: Some(1 << 20),
            mode: None,
        },
    }];
    let out = run(spec);
    assert!(out.status.success(), "{}", out.stderr);
    let line = out.stdout.lines().next().unwrap_or_default();
    assert!(line.starts_with("tmpfs /scratch tmpfs"), "{line}");
    // tmpfs shows no mode when it is its default, 1777.
    assert!(out.stdout.contains("\n1777\n"), "{}", out.stdout);
    for opt in ["size=1024k", "nosuid", "nodev", "noexec"] {
        assert!(line.contains(opt), "{opt} missing: {line}");
    }
    assert!(out.stdout.ends_with("data\n"));
}

#[test]
fn a_read_only_rootfs_refuses_writes_but_mounts_still_work() {
    let mut spec = sh(
        "rofs",
        "touch /newfile 2>/dev/null && echo rootfs-writable; \
         echo ok > /scratch/f && cat /scratch/f; pwd",
    );
    spec.read_only_rootfs = true;
    spec.working_dir = Some("/made/for/ro".into());
    spec.mounts = vec![MountSpec {
        target: "/scratch".into(),
        kind: MountKind::Tmpfs {
            size: None,
            mode: None,
        },
    }];
    let out = run(spec);
    assert_eq!(out.stdout, "ok\n/made/for/ro\n", "{}", out.stderr);
}
