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

/// An image whose mount targets (or their parents) are absolute symlinks:
/// the mounts land where the symlinks lead inside the container's root, as
/// with docker, never on the host path the link names.
#[test]
fn mount_targets_behind_absolute_symlinks_resolve_inside_the_root() {
    let f = fixture();
    let mut l = berth_image::layer::LayerBuilder::new(&f.store).unwrap();
    let root = berth_image::layer::Owner::ROOT;
    l.add_dir("srv", 0o755, root).unwrap();
    l.add_dir("srv/data", 0o755, root).unwrap();
    // Absolute links whose host meaning is elsewhere: the host's /etc is
    // not the image's /srv.
    l.add_symlink("data", "/srv/data", root).unwrap();
    l.add_bytes("srv/hosts", b"image hosts\n", 0o644, root)
        .unwrap();
    l.add_symlink("etc/hosts", "/srv/hosts", root).unwrap();
    // Dangling ones: what they name is made inside the root.
    l.add_symlink("etc/resolv.conf", "/run/missing/resolv.conf", root)
        .unwrap();
    l.add_symlink("cache", "/nowhere/cache", root).unwrap();
    let layer = l.finish().unwrap();
    let mut blobs = f.busybox.manifest.layers.clone();
    blobs.push(layer.descriptor);
    let mut diff_ids = f.busybox.config.rootfs.diff_ids.clone();
    diff_ids.push(layer.diff_id);
    let image = image_of(
        &f.store,
        "symlinked-targets:it",
        blobs,
        diff_ids,
        f.busybox.config.config.clone(),
    );

    let host = tempfile::tempdir().unwrap();
    let hosts = host.path().join("hosts");
    fs::write(&hosts, "127.0.0.1 from-berth\n").unwrap();
    let vol = host.path().join("vol");
    fs::create_dir(&vol).unwrap();
    fs::write(vol.join("v"), "volume\n").unwrap();
    let mut spec = sh(
        "symlinked-targets",
        "cat /etc/hosts /srv/hosts /data/sub/v /srv/data/sub/v /etc/resolv.conf /cache/sub/v",
    );
    spec.mounts = vec![
        MountSpec {
            target: "/etc/hosts".into(),
            kind: MountKind::Bind {
                source: hosts.clone(),
                read_only: true,
            },
        },
        MountSpec {
            target: "/data/sub".into(),
            kind: MountKind::Bind {
                source: vol.clone(),
                read_only: true,
            },
        },
        MountSpec {
            target: "/etc/resolv.conf".into(),
            kind: MountKind::Bind {
                source: hosts.clone(),
                read_only: true,
            },
        },
        MountSpec {
            target: "/cache/sub".into(),
            kind: MountKind::Bind {
                source: vol.clone(),
                read_only: true,
            },
        },
    ];
    let out = run_on(&f.sandbox, &image, spec);
    assert_eq!(
        out.stdout,
        "127.0.0.1 from-berth\n127.0.0.1 from-berth\nvolume\nvolume\n127.0.0.1 from-berth\nvolume\n",
        "{}",
        out.stderr
    );
    assert_eq!(out.status, berth_sandbox::ExitStatus::Exited(0));
    // Nothing was made on the host at the links' host meaning.
    for host_path in ["/srv/data/sub", "/run/missing", "/nowhere"] {
        assert!(!std::path::Path::new(host_path).exists(), "{host_path}");
    }
}
