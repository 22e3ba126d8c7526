//! `cp` between the host and a running container: bytes are copied,
//! symlinks stay symlinks with their container text, and a container that
//! swaps symlinks in during a copy cannot make it read or write outside.

use crate::support::*;
use berth_sandbox::cp;
use berth_sandbox::{Container, MountKind, MountSpec};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn running(
    name: &str,
    script: &str,
    edit: impl FnOnce(&mut berth_sandbox::ContainerSpec),
) -> Container {
    let mut spec = sh(name, script);
    edit(&mut spec);
    let mut c = create(spec);
    c.start().unwrap();
    c
}

fn stop(mut c: Container) {
    c.kill(libc::SIGKILL).unwrap();
    c.wait().unwrap();
    c.delete().unwrap();
}

/// Wait until `path` exists inside the container.
fn wait_inside(c: &Container, path: &str) {
    let p = format!("/proc/{}/root{path}", c.pid());
    wait_for(path, || Path::new(&p).exists());
}

/// Copying a file out gives a regular file holding the container's bytes,
/// never a host symlink named after the container's path.
#[test]
fn copy_out_copies_bytes_not_a_link() {
    let c = running(
        "cp-shadow",
        "mkdir -p /etc && echo 'root:container-secret:1::' > /etc/shadow && chmod 640 /etc/shadow \
         && touch /ready && exec sleep 1000",
        |_| {},
    );
    wait_inside(&c, "/ready");
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("x");
    cp::copy_out(c.pid(), "/etc/shadow", &dest).unwrap();
    let meta = fs::symlink_metadata(&dest).unwrap();
    assert!(meta.file_type().is_file(), "{meta:?}");
    assert_eq!(meta.permissions().mode() & 0o777, 0o640);
    assert_eq!(
        fs::read_to_string(&dest).unwrap(),
        "root:container-secret:1::\n"
    );
    // Into a directory: under the source's name; a directory recursively.
    cp::copy_out(c.pid(), "/etc", dir.path()).unwrap();
    assert_eq!(
        fs::read_to_string(dir.path().join("etc/shadow")).unwrap(),
        "root:container-secret:1::\n"
    );
    assert!(dir.path().join("etc/passwd").is_file());
    stop(c);
}

/// Symlinks are copied as symlinks holding the container's target text, in
/// both directions, and never followed.
#[test]
fn symlinks_keep_their_target_text() {
    let c = running(
        "cp-link",
        "ln -s /etc/passwd /tmp/abs && ln -s ../etc/motd /tmp/rel && touch /ready && exec sleep 1000",
        |_| {},
    );
    wait_inside(&c, "/ready");
    let dir = tempfile::tempdir().unwrap();
    cp::copy_out(c.pid(), "/tmp/abs", &dir.path().join("abs")).unwrap();
    cp::copy_out(c.pid(), "/tmp/rel", dir.path()).unwrap();
    assert_eq!(
        fs::read_link(dir.path().join("abs")).unwrap(),
        Path::new("/etc/passwd")
    );
    assert_eq!(
        fs::read_link(dir.path().join("rel")).unwrap(),
        Path::new("../etc/motd")
    );

    let src = dir.path().join("in");
    fs::create_dir(&src).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", src.join("l")).unwrap();
    fs::write(src.join("f"), b"data").unwrap();
    cp::copy_in(c.pid(), &src, "/tmp").unwrap();
    let root = format!("/proc/{}/root", c.pid());
    assert_eq!(
        fs::read_link(format!("{root}/tmp/in/l")).unwrap(),
        Path::new("/etc/hostname")
    );
    assert_eq!(fs::read(format!("{root}/tmp/in/f")).unwrap(), b"data");
    // A file copied onto a container symlink replaces the link, not its
    // target.
    fs::write(dir.path().join("over"), b"over").unwrap();
    cp::copy_in(c.pid(), &dir.path().join("over"), "/tmp/abs").unwrap();
    assert!(fs::symlink_metadata(format!("{root}/tmp/abs"))
        .unwrap()
        .is_file());
    assert_eq!(fs::read(format!("{root}/tmp/abs")).unwrap(), b"over");
    assert_ne!(fs::read(format!("{root}/etc/passwd")).unwrap(), b"over");
    stop(c);
}

/// Files bind-mounted into the container (as berth does for /etc/hostname,
/// /etc/hosts and /etc/resolv.conf) are read from its mount namespace.
#[test]
fn bind_mounted_files_are_readable() {
    let dir = tempfile::tempdir().unwrap();
    let host_file = dir.path().join("hostname");
    fs::write(&host_file, b"box-from-mount\n").unwrap();
    let c = running("cp-hostname", "touch /ready && exec sleep 1000", |s| {
        s.mounts.push(MountSpec {
            target: "/etc/hostname".into(),
            kind: MountKind::Bind {
                source: host_file.clone(),
                read_only: true,
            },
        })
    });
    wait_inside(&c, "/ready");
    let out = dir.path().join("x");
    cp::copy_out(c.pid(), "/etc/hostname", &out).unwrap();
    assert_eq!(fs::read(&out).unwrap(), b"box-from-mount\n");
    stop(c);
}

/// `cp CONTAINER:SRC -` writes a tar stream, and `-` as the source unpacks
/// one inside; entries with `..` are refused.
#[test]
fn tar_streams_in_and_out() {
    let c = running(
        "cp-tar",
        "mkdir -p /data/sub && echo one > /data/a && ln -s /nowhere /data/sub/l && touch /ready \
         && exec sleep 1000",
        |_| {},
    );
    wait_inside(&c, "/ready");
    let mut tar_bytes = Vec::new();
    cp::copy_out_tar(c.pid(), "/data", &mut tar_bytes).unwrap();
    let mut names = Vec::new();
    for e in tar::Archive::new(&tar_bytes[..]).entries().unwrap() {
        let e = e.unwrap();
        let link = e.link_name().unwrap().map(|l| l.display().to_string());
        names.push((e.path().unwrap().display().to_string(), link));
    }
    names.sort();
    assert_eq!(
        names,
        [
            ("data".to_string(), None),
            ("data/a".into(), None),
            ("data/sub".into(), None),
            ("data/sub/l".into(), Some("/nowhere".to_string())),
        ]
    );
    cp::copy_in_tar(c.pid(), &tar_bytes[..], "/tmp").unwrap();
    let root = format!("/proc/{}/root", c.pid());
    assert_eq!(fs::read(format!("{root}/tmp/data/a")).unwrap(), b"one\n");
    assert_eq!(
        fs::read_link(format!("{root}/tmp/data/sub/l")).unwrap(),
        Path::new("/nowhere")
    );

    let mut evil = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(1);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    // `append_data` refuses `..`: write the name into the header directly.
    h.as_old_mut().name[..12].copy_from_slice(b"../../escape");
    h.set_cksum();
    evil.append(&h, &b"x"[..]).unwrap();
    let evil = evil.into_inner().unwrap();
    assert!(cp::copy_in_tar(c.pid(), &evil[..], "/tmp/data").is_err());
    assert!(!Path::new(&format!("{root}/escape")).exists());
    stop(c);
}

/// Number of files each racing copy moves.
const RACE_FILES: usize = 500;

/// A container that keeps swapping `DIR/sub` for a symlink to `target`
/// (bounded: at most 200000 swaps) while the test copies.
fn swapper(name: &str, dir: &str, target: &Path) -> Container {
    let script = format!(
        "mkdir -p {dir}/sub && cd {dir} && touch /ready && i=0; \
         while [ $i -lt 200000 ]; do \
           mv sub sub.real; ln -s {target} sub; rm -f sub; mv sub.real sub; i=$((i+1)); \
         done",
        target = target.display()
    );
    running(name, &script, |_| {})
}

/// A host → container copy racing a symlink swap inside the container
/// writes nothing outside it.
#[test]
fn copy_in_racing_symlink_swaps_stays_inside() {
    let outside = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    let tree = src.path().join("race");
    fs::create_dir_all(tree.join("sub")).unwrap();
    for i in 0..RACE_FILES {
        fs::write(tree.join(format!("sub/f{i}")), b"x").unwrap();
    }
    let c = swapper("cp-race-in", "/tmp/r/race", outside.path());
    wait_inside(&c, "/ready");
    // Not vacuous: copies must also land inside. The swapper keeps moving
    // the directory (at times `sub` is the symlink and `sub.real` is gone),
    // and on a loaded machine a copy may fail many times in a row: keep
    // copying (bounded) until a copy is seen in place.
    let root = format!("/proc/{}/root/tmp/r/race", c.pid());
    let copied_inside = || {
        ["sub", "sub.real"]
            .iter()
            .filter(|d| fs::symlink_metadata(format!("{root}/{d}")).is_ok_and(|m| m.is_dir()))
            .filter_map(|d| fs::read_dir(format!("{root}/{d}")).ok())
            .map(|r| r.count())
            .sum::<usize>()
            > 0
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut attempts = 0;
    loop {
        // Failing is allowed (a directory was a symlink at that moment);
        // writing through the symlink is not.
        let _ = cp::copy_in(c.pid(), &tree, "/tmp/r/");
        attempts += 1;
        let landed: Vec<_> = fs::read_dir(outside.path()).unwrap().flatten().collect();
        assert!(landed.is_empty(), "files landed outside: {landed:?}");
        if attempts >= 10 && (0..50).any(|_| copied_inside()) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "nothing was copied in after {attempts} attempts"
        );
    }
    stop(c);
}

/// A container → host copy racing a symlink swap reads nothing of the host
/// and writes only under the destination.
#[test]
fn copy_out_racing_symlink_swaps_reads_nothing_outside() {
    let secret_dir = tempfile::tempdir().unwrap();
    for i in 0..RACE_FILES {
        fs::write(secret_dir.path().join(format!("f{i}")), b"host-secret").unwrap();
    }
    let c = running(
        "cp-race-out-setup",
        &format!(
            "mkdir -p /tmp/r/race/sub && i=0; while [ $i -lt {RACE_FILES} ]; do \
               echo inside > /tmp/r/race/sub/f$i; i=$((i+1)); done; touch /setup; exec sleep 1000"
        ),
        |_| {},
    );
    wait_inside(&c, "/setup");
    // The swapping runs as a second container process.
    let script = format!(
        "cd /tmp/r/race && touch /ready && i=0; while [ $i -lt 200000 ]; do \
           mv sub sub.real; ln -s {} sub; rm -f sub; mv sub.real sub; i=$((i+1)); done",
        secret_dir.path().display()
    );
    let mut swapper = fixture()
        .sandbox
        .exec(
            c.id(),
            berth_sandbox::ExecSpec {
                args: vec!["sh".into(), "-c".into(), script],
                ..Default::default()
            },
        )
        .unwrap();
    wait_inside(&c, "/ready");
    let mut copied = 0;
    for n in 0..4 {
        let dest = tempfile::tempdir().unwrap();
        // Failing is allowed (a directory was a symlink at that moment);
        // reading through the symlink is not.
        let _ = cp::copy_out(c.pid(), "/tmp/r/race", dest.path());
        for entry in walk(dest.path()) {
            let meta = fs::symlink_metadata(&entry).unwrap();
            if meta.is_file() {
                assert_eq!(fs::read(&entry).unwrap(), b"inside\n", "try {n}: {entry:?}");
                copied += 1;
            }
        }
    }
    assert!(copied > 0, "nothing was copied out");
    swapper.kill(libc::SIGKILL).unwrap();
    swapper.wait().unwrap();
    stop(c);
    let left: Vec<_> = fs::read_dir(secret_dir.path()).unwrap().flatten().collect();
    assert_eq!(left.len(), RACE_FILES);
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if e.file_type().unwrap().is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}
