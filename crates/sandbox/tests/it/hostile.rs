//! Hostile image layers: archives crafted to write, link, chmod or delete
//! outside the layer being unpacked, or to plant host devices. (A layer
//! whose content does not match its diff ID: `layers.rs`.)

use crate::support::*;
use berth_oci::{media, Descriptor, Digest};
use berth_sandbox::{LayerError, Sandbox};
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::PathBuf;

/// A tar entry written header-first, so names the `tar` crate's builder
/// refuses (`..`, `.wh..`) can be made.
struct Entry<'a> {
    name: &'a str,
    kind: tar::EntryType,
    mode: u32,
    data: &'a [u8],
    link: Option<&'a str>,
    device: (u32, u32),
}

fn entry(name: &str, kind: tar::EntryType) -> Entry<'_> {
    Entry {
        name,
        kind,
        mode: 0o644,
        data: b"",
        link: None,
        device: (0, 0),
    }
}

fn archive(entries: &[Entry]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(e.kind);
        h.set_mode(e.mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_000_000);
        h.set_size(e.data.len() as u64);
        let name = &mut h.as_old_mut().name;
        name[..e.name.len()].copy_from_slice(e.name.as_bytes());
        if let Some(link) = e.link {
            h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        if matches!(e.kind, tar::EntryType::Char | tar::EntryType::Block) {
            h.set_device_major(e.device.0).unwrap();
            h.set_device_minor(e.device.1).unwrap();
        }
        h.set_cksum();
        b.append(&h, e.data).unwrap();
    }
    b.into_inner().unwrap()
}

/// A fresh sandbox state dir, and the result of unpacking `tar` (with its
/// true diff ID) as an image's only layer there.
fn unpack(name: &str, tar: &[u8]) -> (tempfile::TempDir, Result<PathBuf, LayerError>) {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::open(dir.path()).unwrap();
    // Something beside the layers that no layer may touch.
    fs::write(dir.path().join("layers/keep"), b"k").unwrap();
    let blob = f.store.write_blob(tar).unwrap();
    let image = image_of(
        &f.store,
        &format!("hostile-{name}:it"),
        vec![Descriptor::new(media::OCI_LAYER, blob, tar.len() as u64)],
        vec![Digest::of(tar)],
        Default::default(),
    );
    let result = sandbox
        .layers()
        .unpack_image(&f.store, &image)
        .map(|mut l| l.remove(0));
    assert_eq!(fs::read(dir.path().join("layers/keep")).unwrap(), b"k");
    (dir, result)
}

/// Entries with `..` cannot write beside the layer.
#[test]
fn dot_dot_entries_are_refused() {
    let mut e = entry("../../escaped", tar::EntryType::Regular);
    e.data = b"x";
    let (dir, result) = unpack("dotdot", &archive(&[e]));
    assert!(result.is_err());
    for p in ["escaped", "layers/escaped"] {
        assert!(!dir.path().join(p).exists(), "{p}");
    }
}

/// Absolute entry paths land inside the layer, never at the host path.
#[test]
fn absolute_entries_stay_in_the_layer() {
    let host = tempfile::tempdir().unwrap();
    let target = host.path().join("planted");
    let name = target.to_str().unwrap().to_string();
    let mut e = entry(&name, tar::EntryType::Regular);
    e.data = b"x";
    let (_dir, result) = unpack("absolute", &archive(&[e]));
    let layer = result.unwrap();
    assert!(!target.exists());
    assert_eq!(
        fs::read(layer.join(name.trim_start_matches('/'))).unwrap(),
        b"x"
    );
}

/// A file written through a symlink the same archive planted is refused;
/// the link's target on the host is untouched.
#[test]
fn files_through_a_planted_symlink_are_refused() {
    let victim = tempfile::tempdir().unwrap();
    let v = victim.path().to_str().unwrap();
    let mut link = entry("evil", tar::EntryType::Symlink);
    link.link = Some(v);
    let mut file = entry("evil/pwned", tar::EntryType::Regular);
    file.data = b"x";
    let (_dir, result) = unpack("through-link", &archive(&[link, file]));
    assert!(result.is_err());
    assert!(!victim.path().join("pwned").exists());
}

/// Hard links may only point at entries of the layer itself.
#[test]
fn hard_links_out_of_the_layer_are_refused() {
    let mut up = entry("h", tar::EntryType::Link);
    up.link = Some("../../../../../../etc/passwd");
    let (_dir, result) = unpack("hardlink-up", &archive(&[up]));
    assert!(result.is_err());

    // An absolute target means the layer's own path, which is not there.
    let mut abs = entry("h", tar::EntryType::Link);
    abs.link = Some("/etc/passwd");
    let (_dir, result) = unpack("hardlink-abs", &archive(&[abs]));
    if let Ok(layer) = result {
        let host = fs::metadata("/etc/passwd").unwrap();
        let ours = fs::symlink_metadata(layer.join("h")).unwrap();
        assert_ne!((host.dev(), host.ino()), (ours.dev(), ours.ino()));
    }
}

/// A directory the archive later replaces with a symlink does not get its
/// mode applied through the link.
#[test]
fn directory_modes_are_not_applied_through_a_later_symlink() {
    let victim = tempfile::tempdir().unwrap();
    fs::set_permissions(victim.path(), fs::Permissions::from_mode(0o700)).unwrap();
    let mut dir = entry("d", tar::EntryType::Directory);
    dir.mode = 0o777;
    let mut link = entry("d", tar::EntryType::Symlink);
    link.link = Some(victim.path().to_str().unwrap());
    let (_dir, result) = unpack("dir-then-link", &archive(&[dir, link]));
    result.unwrap();
    let mode = fs::metadata(victim.path()).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o700);
}

/// `.wh..` and `.wh...` name a directory or its parent: refused, not a
/// deletion of the layer cache.
#[test]
fn whiteouts_of_dot_and_dot_dot_are_refused() {
    for name in [".wh..", ".wh...", "a/.wh..", "a/.wh..."] {
        let (dir, result) = unpack(
            "wh-dots",
            &archive(&[
                entry("a/", tar::EntryType::Directory),
                entry("a/f", tar::EntryType::Regular),
                entry(name, tar::EntryType::Regular),
            ]),
        );
        assert!(result.is_err(), "{name}");
        assert!(dir.path().join("layers/.locks").is_dir(), "{name}");
    }
}

/// Device nodes in a layer are not created (the layer cache is on the
/// host); fifos and overlayfs' 0/0 whiteout nodes are.
#[test]
fn device_nodes_are_not_created() {
    let mut disk = entry("disk", tar::EntryType::Block);
    disk.device = (8, 0);
    disk.mode = 0o666;
    let mut mem = entry("mem", tar::EntryType::Char);
    mem.device = (1, 1);
    mem.mode = 0o666;
    let whiteout = entry("gone", tar::EntryType::Char);
    let fifo = entry("pipe", tar::EntryType::Fifo);
    let (_dir, result) = unpack("devices", &archive(&[disk, mem, whiteout, fifo]));
    let layer = result.unwrap();
    assert!(!layer.join("disk").exists());
    assert!(fs::symlink_metadata(layer.join("mem")).is_err());
    let gone = fs::symlink_metadata(layer.join("gone")).unwrap();
    assert!(gone.file_type().is_char_device() && gone.rdev() == 0);
    assert!(fs::symlink_metadata(layer.join("pipe"))
        .unwrap()
        .file_type()
        .is_fifo());
}

/// Set-ID bits are kept (an image's `su` must work in its containers), but
/// the unpacked layers and containers' root filesystems are out of reach
/// of every host user except root.
#[test]
fn setuid_files_are_kept_out_of_host_users_reach() {
    let mut suid = entry("bin/su", tar::EntryType::Regular);
    suid.mode = 0o4755;
    suid.data = b"#!/bin/sh\n";
    let (dir, result) = unpack(
        "setuid",
        &archive(&[entry("bin/", tar::EntryType::Directory), suid]),
    );
    let layer = result.unwrap();
    let mode = fs::metadata(layer.join("bin/su")).unwrap().mode();
    assert_eq!(mode & 0o7777, 0o4755);
    for d in ["layers", "bundles"] {
        let mode = fs::metadata(dir.path().join(d)).unwrap().mode();
        assert_eq!(mode & 0o077, 0, "{d}: {mode:o}");
    }
}
