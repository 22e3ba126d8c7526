//! Hostile input: tar entries, build contexts and `berth load` archives
//! written by an attacker. Each test says what it defends; none of them may
//! write, read or change anything outside the place berth was told to use.

use crate::build::{request, StoreOnly};
use crate::support::make_true_image;
use berth_image::archive::{self, ArchiveError};
use berth_image::builder::{build, Silent};
use berth_image::unpack::{unpack, UnpackError, UnpackOptions};
use berth_oci::{Platform, Store};
use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

/// One tar entry as a hostile writer would make it: any name, any type.
struct Raw<'a> {
    path: &'a str,
    kind: tar::EntryType,
    mode: u32,
    link: &'a str,
    data: &'a [u8],
    device: Option<(u32, u32)>,
}

fn raw<'a>(path: &'a str, kind: tar::EntryType) -> Raw<'a> {
    Raw {
        path,
        kind,
        mode: 0o644,
        link: "",
        data: b"",
        device: None,
    }
}

fn file<'a>(path: &'a str, data: &'a [u8]) -> Raw<'a> {
    Raw {
        data,
        ..raw(path, tar::EntryType::Regular)
    }
}

fn symlink<'a>(path: &'a str, target: &'a str) -> Raw<'a> {
    Raw {
        link: target,
        mode: 0o777,
        ..raw(path, tar::EntryType::Symlink)
    }
}

fn hardlink<'a>(path: &'a str, target: &'a str) -> Raw<'a> {
    Raw {
        link: target,
        ..raw(path, tar::EntryType::Link)
    }
}

/// A tar of `entries`, names written raw (the tar crate refuses `..`).
fn tar_of(entries: &[Raw]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(e.kind);
        h.set_size(e.data.len() as u64);
        h.set_mode(e.mode);
        h.set_mtime(0);
        if let Some((major, minor)) = e.device {
            h.set_device_major(major).unwrap();
            h.set_device_minor(minor).unwrap();
        }
        let old = h.as_old_mut();
        old.name[..e.path.len()].copy_from_slice(e.path.as_bytes());
        old.linkname[..e.link.len()].copy_from_slice(e.link.as_bytes());
        h.set_cksum();
        b.append(&h, e.data).unwrap();
    }
    b.into_inner().unwrap()
}

fn layer_opts() -> UnpackOptions {
    UnpackOptions {
        whiteouts: true,
        ..Default::default()
    }
}

/// A scratch area: `dest` to unpack into, and `outside` next to it holding a
/// file the archive must not touch.
struct Arena {
    _dir: tempfile::TempDir,
    dest: std::path::PathBuf,
    outside: std::path::PathBuf,
}

impl Arena {
    fn new() -> Arena {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("root");
        let outside = dir.path().join("outside");
        fs::create_dir_all(&outside).unwrap();
        fs::write(outside.join("secret"), b"host secret").unwrap();
        fs::set_permissions(&outside, fs::Permissions::from_mode(0o700)).unwrap();
        Arena {
            _dir: dir,
            dest,
            outside,
        }
    }

    /// The outside directory exactly as the arena made it.
    fn assert_outside_untouched(&self) {
        let names: Vec<String> = fs::read_dir(&self.outside)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            ["secret"],
            "something was written next to the destination"
        );
        assert_eq!(
            fs::read(self.outside.join("secret")).unwrap(),
            b"host secret"
        );
        let mode = fs::metadata(&self.outside).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o700, "the outside directory's mode was changed");
    }

    fn outside_str(&self) -> &str {
        self.outside.to_str().unwrap()
    }
}

/// `..` in an entry name cannot climb out of the destination.
#[test]
fn dot_dot_entries_are_refused() {
    for name in [
        "../outside/pwned",
        "a/../../outside/pwned",
        "./../outside/pwned",
    ] {
        let a = Arena::new();
        let err = unpack(&tar_of(&[file(name, b"x")])[..], &a.dest, layer_opts()).unwrap_err();
        assert!(matches!(err, UnpackError::Escape(_)), "{name}: {err}");
        assert!(err.to_string().contains("escapes the destination"), "{err}");
        a.assert_outside_untouched();
    }
}

/// An absolute entry name lands inside the destination, not at that host path.
#[test]
fn absolute_entries_land_inside() {
    let a = Arena::new();
    let name = format!("{}/pwned", a.outside_str());
    unpack(&tar_of(&[file(&name, b"x")])[..], &a.dest, layer_opts()).unwrap();
    a.assert_outside_untouched();
    let inside = a.dest.join(name.trim_start_matches('/'));
    assert_eq!(fs::read(inside).unwrap(), b"x");
}

/// A symlink the archive planted cannot be written through by a later entry.
#[test]
fn symlink_then_file_through_it_is_refused() {
    let a = Arena::new();
    let tar = tar_of(&[symlink("evil", a.outside_str()), file("evil/pwned", b"x")]);
    let err = unpack(&tar[..], &a.dest, layer_opts()).unwrap_err();
    assert!(matches!(err, UnpackError::ThroughSymlink { .. }), "{err}");
    a.assert_outside_untouched();

    // A relative link climbing out is no different.
    let a = Arena::new();
    let tar = tar_of(&[symlink("evil", "../outside"), file("evil/secret", b"x")]);
    let err = unpack(&tar[..], &a.dest, layer_opts()).unwrap_err();
    assert!(matches!(err, UnpackError::ThroughSymlink { .. }), "{err}");
    a.assert_outside_untouched();
}

/// A file entry with the name of a planted symlink replaces the link, never writes its target.
#[test]
fn symlink_then_file_of_the_same_name_replaces_the_link() {
    let a = Arena::new();
    let secret = format!("{}/secret", a.outside_str());
    let tar = tar_of(&[symlink("f", &secret), file("f", b"archive data")]);
    unpack(&tar[..], &a.dest, layer_opts()).unwrap();
    a.assert_outside_untouched();
    let meta = fs::symlink_metadata(a.dest.join("f")).unwrap();
    assert!(meta.is_file(), "the link was followed or kept");
    assert_eq!(fs::read(a.dest.join("f")).unwrap(), b"archive data");
}

/// A hard link cannot reach a file outside the destination, directly or through a symlink.
#[test]
fn hard_links_to_outside_are_refused() {
    let a = Arena::new();
    let secret = a.outside.join("secret");
    let cases: Vec<Vec<Raw>> = vec![
        vec![hardlink("h", "../outside/secret")],
        vec![symlink("s", a.outside_str()), hardlink("h", "s/secret")],
        vec![symlink("s", secret.to_str().unwrap()), hardlink("h", "s")],
    ];
    for (i, entries) in cases.iter().enumerate() {
        let dest = a.dest.join(i.to_string());
        let err = unpack(&tar_of(entries)[..], &dest, layer_opts()).unwrap_err();
        assert!(
            matches!(
                err,
                UnpackError::LinkEscape { .. } | UnpackError::ThroughSymlink { .. }
            ),
            "case {i}: {err}"
        );
        assert!(!dest.join("h").exists(), "case {i}");
    }
    // An absolute target names a path inside the destination, which does not exist.
    let dest = a.dest.join("abs");
    let abs = tar_of(&[hardlink("h", secret.to_str().unwrap())]);
    assert!(unpack(&abs[..], &dest, layer_opts()).is_err());
    assert!(!dest.join("h").exists());
    // However it ended, the host file has no second name.
    assert_eq!(fs::metadata(&secret).unwrap().nlink(), 1);
    a.assert_outside_untouched();
}

/// Device nodes and fifos in an archive are not created (no host device reachable through a layer).
#[test]
fn device_nodes_are_not_created() {
    let a = Arena::new();
    let tar = tar_of(&[
        Raw {
            device: Some((1, 1)), // /dev/mem
            ..raw("dev/mem", tar::EntryType::Char)
        },
        Raw {
            device: Some((8, 0)), // a disk
            ..raw("dev/sda", tar::EntryType::Block)
        },
        raw("run/fifo", tar::EntryType::Fifo),
        file("ok", b"x"),
    ]);
    unpack(&tar[..], &a.dest, layer_opts()).unwrap();
    for p in ["dev/mem", "dev/sda", "run/fifo"] {
        assert!(
            fs::symlink_metadata(a.dest.join(p)).is_err(),
            "{p} was created"
        );
    }
    assert_eq!(fs::read(a.dest.join("ok")).unwrap(), b"x");
}

/// Set-user/group-ID bits do not survive when the files become berth's (no-same-owner).
#[test]
fn setuid_bits_are_dropped_when_the_owner_is_not_kept() {
    let a = Arena::new();
    let tar = tar_of(&[
        Raw {
            mode: 0o4755,
            ..file("bin/suid", b"#!/bin/sh\n")
        },
        Raw {
            mode: 0o2755,
            ..file("bin/sgid", b"#!/bin/sh\n")
        },
        Raw {
            mode: 0o1777,
            ..raw("tmp", tar::EntryType::Directory)
        },
    ]);
    unpack(&tar[..], &a.dest, UnpackOptions::default()).unwrap();
    let mode = |p: &str| fs::metadata(a.dest.join(p)).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode("bin/suid"), 0o755);
    assert_eq!(mode("bin/sgid"), 0o755);
    // The sticky bit gives nobody anything: /tmp keeps it.
    assert_eq!(mode("tmp"), 0o1777);
}

/// A directory's mode is not applied through a symlink that later replaced it.
#[test]
fn directory_modes_are_not_applied_through_a_later_symlink() {
    let a = Arena::new();
    let tar = tar_of(&[
        Raw {
            mode: 0o777,
            ..raw("d/", tar::EntryType::Directory)
        },
        symlink("d", a.outside_str()),
    ]);
    unpack(&tar[..], &a.dest, layer_opts()).unwrap();
    a.assert_outside_untouched();
}

/// A whiteout naming `.` or `..` cannot delete the destination or its parent.
#[test]
fn whiteouts_of_dot_and_dot_dot_are_refused() {
    for name in [".wh...", ".wh..", "sub/.wh..."] {
        let a = Arena::new();
        let tar = tar_of(&[file("sub/keep", b"k"), file(name, b"")]);
        let err = unpack(&tar[..], &a.dest, layer_opts()).unwrap_err();
        assert!(matches!(err, UnpackError::Escape(_)), "{name}: {err}");
        a.assert_outside_untouched();
        assert_eq!(fs::read(a.dest.join("sub/keep")).unwrap(), b"k", "{name}");
    }
}

/// The entries of an image's layers, by path: (type, mode, link target, contents).
fn layer_entries(store: &Store, name: &str) -> Vec<(String, tar::EntryType, u32, String, Vec<u8>)> {
    let img = store.image(name, &Platform::host()).unwrap();
    let mut out = Vec::new();
    for l in &img.manifest.layers {
        let f = store.open_blob(&l.digest).unwrap();
        let r = berth_image::unpack::decompress(Box::new(f)).unwrap();
        let mut ar = tar::Archive::new(r);
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let path = e.path().unwrap().to_string_lossy().into_owned();
            let link = e
                .link_name()
                .unwrap()
                .map(|l| l.to_string_lossy().into_owned())
                .unwrap_or_default();
            let kind = e.header().entry_type();
            let mode = e.header().mode().unwrap();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            out.push((path, kind, mode, link, data));
        }
    }
    out
}

/// COPY never reads a host file through a symlink in the build context.
#[test]
fn copy_does_not_follow_context_symlinks_out_of_the_context() {
    let a = Arena::new();
    let store = Store::open(a.dest.join("images")).unwrap();
    let ctx = a.dest.join("ctx");
    fs::create_dir_all(&ctx).unwrap();
    std::os::unix::fs::symlink(&a.outside, ctx.join("dir-link")).unwrap();
    std::os::unix::fs::symlink(a.outside.join("secret"), ctx.join("file-link")).unwrap();
    fs::write(ctx.join("real"), b"context data").unwrap();

    // Through a directory link: not in the context at all.
    fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nCOPY dir-link/secret /x\n",
    )
    .unwrap();
    let err = build(&store, &request(&ctx, "c:1"), &StoreOnly, &Silent)
        .unwrap_err()
        .to_string();
    assert!(err.contains("dir-link/secret"), "{err}");

    // The links themselves are copied as links, with their text.
    fs::write(ctx.join("Dockerfile"), "FROM scratch\nCOPY . /app/\n").unwrap();
    build(&store, &request(&ctx, "c:2"), &StoreOnly, &Silent).unwrap();
    let entries = layer_entries(&store, "c:2");
    for (path, kind, _, link, data) in &entries {
        assert!(
            !data.windows(11).any(|w| w == b"host secret"),
            "{path} carries the host file's bytes"
        );
        if path.contains("link") {
            assert_eq!(*kind, tar::EntryType::Symlink, "{path}");
            assert!(link.starts_with(a.outside_str()), "{path} -> {link}");
        }
    }
    assert!(
        entries
            .iter()
            .any(|(p, _, _, _, d)| p == "app/real" && d == b"context data"),
        "{:?}",
        entries.iter().map(|e| &e.0).collect::<Vec<_>>()
    );
}

/// `ADD` of an archive: its set-user-ID files do not become root's set-user-ID files.
#[test]
fn add_of_an_archive_drops_setuid_bits() {
    let a = Arena::new();
    let store = Store::open(a.dest.join("images")).unwrap();
    let ctx = a.dest.join("ctx");
    fs::create_dir_all(&ctx).unwrap();
    let tar = tar_of(&[Raw {
        mode: 0o4755,
        ..file("bin/suid", b"#!/bin/sh\n")
    }]);
    fs::write(ctx.join("pkg.tar"), tar).unwrap();
    fs::write(ctx.join("Dockerfile"), "FROM scratch\nADD pkg.tar /opt/\n").unwrap();
    build(&store, &request(&ctx, "add:suid"), &StoreOnly, &Silent).unwrap();
    let entries = layer_entries(&store, "add:suid");
    let (_, _, mode, _, _) = entries
        .iter()
        .find(|e| e.0 == "opt/bin/suid")
        .expect("the archive's file is in the layer");
    assert_eq!(mode & 0o7777, 0o755);
}

// ---- berth load ----

/// A saved image as a list of tar entries (path, type, link, data).
fn saved(store: &Store, name: &str) -> Vec<(String, tar::EntryType, String, Vec<u8>)> {
    let mut buf = Vec::new();
    archive::save(store, &[name.to_string()], &mut buf).unwrap();
    let mut ar = tar::Archive::new(&buf[..]);
    let mut out = Vec::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        out.push((path, e.header().entry_type(), String::new(), data));
    }
    out
}

fn rebuild(entries: &[(String, tar::EntryType, String, Vec<u8>)]) -> Vec<u8> {
    let raws: Vec<Raw> = entries
        .iter()
        .map(|(p, k, l, d)| Raw {
            path: p,
            kind: *k,
            mode: 0o644,
            link: l,
            data: d,
            device: None,
        })
        .collect();
    tar_of(&raws)
}

/// Replace the entry `path` with a symlink to `target`.
fn make_link(entries: &mut [(String, tar::EntryType, String, Vec<u8>)], path: &str, target: &str) {
    let e = entries
        .iter_mut()
        .find(|e| e.0 == path)
        .unwrap_or_else(|| panic!("{path} is not in the archive"));
    e.1 = tar::EntryType::Symlink;
    e.2 = target.to_string();
    e.3.clear();
}

fn without(
    entries: &[(String, tar::EntryType, String, Vec<u8>)],
    path: &str,
) -> Vec<(String, tar::EntryType, String, Vec<u8>)> {
    entries.iter().filter(|e| e.0 != path).cloned().collect()
}

/// The store has no reference, no blob and no leftover: as if never touched.
fn assert_untouched(store: &Store) {
    assert!(store.references().unwrap().is_empty());
    let blobs = fs::read_dir(store.root().join("blobs/sha256"))
        .unwrap()
        .count();
    assert_eq!(blobs, 0, "blobs were imported from a refused archive");
    let ingest = fs::read_dir(store.root().join("ingest")).unwrap().count();
    assert_eq!(ingest, 0, "leftovers in ingest/");
}

fn layer_path(entries: &[(String, tar::EntryType, String, Vec<u8>)]) -> String {
    let manifest: serde_json::Value =
        serde_json::from_slice(&entries.iter().find(|e| e.0 == "manifest.json").unwrap().3)
            .unwrap();
    manifest[0]["Layers"][0].as_str().unwrap().to_string()
}

struct LoadArena {
    arena: Arena,
    src: Store,
    dst: Store,
}

fn load_arena() -> LoadArena {
    let arena = Arena::new();
    let src = Store::open(arena.dest.join("src")).unwrap();
    let dst = Store::open(arena.dest.join("dst")).unwrap();
    make_true_image(&src, "example.com/app:1");
    LoadArena { arena, src, dst }
}

/// An archive whose index.json is a symlink to a host file is refused; the host file is not read.
#[test]
fn load_refuses_an_index_json_that_is_a_symlink() {
    let t = load_arena();
    let mut entries = saved(&t.src, "example.com/app:1");
    // The host file holds a valid index, so following the link would load.
    let index = entries
        .iter()
        .find(|e| e.0 == "index.json")
        .unwrap()
        .3
        .clone();
    let host = t.arena.outside.join("index.json");
    fs::write(&host, &index).unwrap();
    make_link(&mut entries, "index.json", host.to_str().unwrap());
    let err = archive::load(&t.dst, &rebuild(&entries)[..]).unwrap_err();
    assert!(matches!(err, ArchiveError::Link { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with("index.json in the archive is a link"),
        "{err}"
    );
    assert_untouched(&t.dst);

    // The same for oci-layout, which berth does not even need.
    let mut entries = saved(&t.src, "example.com/app:1");
    make_link(&mut entries, "oci-layout", "/etc/hostname");
    let err = archive::load(&t.dst, &rebuild(&entries)[..]).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("oci-layout in the archive is a link"),
        "{err}"
    );
    assert_untouched(&t.dst);
}

/// A blob of the layout that is a symlink to a host file (with the right content) is refused.
#[test]
fn load_refuses_a_blob_that_is_a_symlink() {
    let t = load_arena();
    let mut entries = saved(&t.src, "example.com/app:1");
    let layer = layer_path(&entries);
    let data = entries.iter().find(|e| e.0 == layer).unwrap().3.clone();
    let host = t.arena.outside.join("layer");
    fs::write(&host, &data).unwrap();
    make_link(&mut entries, &layer, host.to_str().unwrap());
    let err = archive::load(&t.dst, &rebuild(&entries)[..]).unwrap_err();
    assert!(matches!(err, ArchiveError::Link { .. }), "{err}");
    assert_untouched(&t.dst);
}

/// A `docker save` archive whose layer or manifest.json links to a host file is refused.
#[test]
fn docker_load_refuses_links_to_host_files() {
    let t = load_arena();
    let entries = without(&saved(&t.src, "example.com/app:1"), "index.json");
    let layer = layer_path(&entries);

    // The layer: a link out of the archive (absolute, and climbing with `..`).
    let secret = t.arena.outside.join("secret");
    for target in [
        secret.to_str().unwrap(),
        "../../../../../../../../etc/passwd",
    ] {
        let mut e = entries.clone();
        make_link(&mut e, &layer, target);
        let err = archive::load(&t.dst, &rebuild(&e)[..]).unwrap_err();
        assert!(
            matches!(err, ArchiveError::LinkOutside { .. }),
            "{target}: {err}"
        );
        assert_untouched(&t.dst);
    }

    // manifest.json itself.
    let mut e = entries.clone();
    let manifest = e.iter().find(|x| x.0 == "manifest.json").unwrap().3.clone();
    let host = t.arena.outside.join("manifest.json");
    fs::write(&host, manifest).unwrap();
    make_link(&mut e, "manifest.json", host.to_str().unwrap());
    let err = archive::load(&t.dst, &rebuild(&e)[..]).unwrap_err();
    assert!(matches!(err, ArchiveError::Link { .. }), "{err}");
    assert_untouched(&t.dst);
}

/// Older `docker save` writes a repeated layer as a link to its first copy: that still loads.
#[test]
fn docker_load_follows_links_between_its_own_entries() {
    let t = load_arena();
    let mut entries = without(&saved(&t.src, "example.com/app:1"), "index.json");
    let layer = layer_path(&entries);
    let data = entries.iter().find(|e| e.0 == layer).unwrap().3.clone();
    entries.push((
        "first/layer.tar".into(),
        tar::EntryType::Regular,
        String::new(),
        data,
    ));
    make_link(&mut entries, &layer, "../../first/layer.tar");
    assert_eq!(
        archive::load(&t.dst, &rebuild(&entries)[..]).unwrap(),
        ["example.com/app:1"]
    );
    assert!(t.dst.fsck().unwrap().problems.is_empty());
}

/// A layer whose bytes do not match its digest is refused by both formats, and nothing is kept.
#[test]
fn load_refuses_a_tampered_layer_and_keeps_nothing() {
    let t = load_arena();
    let mut entries = saved(&t.src, "example.com/app:1");
    let layer = layer_path(&entries);
    // Same length, one bit different; the name still claims the old digest.
    let e = entries.iter_mut().find(|e| e.0 == layer).unwrap();
    let mid = e.3.len() / 2;
    e.3[mid] ^= 1;
    let err = archive::load(&t.dst, &rebuild(&entries)[..]).unwrap_err();
    assert!(err.to_string().contains("digest mismatch"), "{err}");
    assert_untouched(&t.dst);

    let docker = without(&entries, "index.json");
    let err = archive::load(&t.dst, &rebuild(&docker)[..]).unwrap_err();
    assert!(err.to_string().contains("digest mismatch"), "{err}");
    assert_untouched(&t.dst);

    // Older docker names layers `<id>/layer.tar`: the config's diff_id is what catches it.
    let mut legacy = without(&saved(&t.src, "example.com/app:1"), "index.json");
    let compressed = legacy.iter().find(|e| e.0 == layer).unwrap().3.clone();
    let mut data = Vec::new();
    berth_image::unpack::decompress(Box::new(&compressed[..]))
        .unwrap()
        .read_to_end(&mut data)
        .unwrap();
    data[600] ^= 1; // inside the file's contents
    legacy.retain(|e| e.0 != layer);
    legacy.push((
        "abc/layer.tar".into(),
        tar::EntryType::Regular,
        String::new(),
        data,
    ));
    let m = legacy.iter_mut().find(|e| e.0 == "manifest.json").unwrap();
    m.3 = String::from_utf8(m.3.clone())
        .unwrap()
        .replace(&layer, "abc/layer.tar")
        .into_bytes();
    let err = archive::load(&t.dst, &rebuild(&legacy)[..]).unwrap_err();
    assert!(err.to_string().contains("digest mismatch"), "{err}");
    assert_untouched(&t.dst);
}

/// Entry names climbing out with `..` are refused before anything is written.
#[test]
fn load_refuses_entries_that_climb_out() {
    let t = load_arena();
    let mut entries = saved(&t.src, "example.com/app:1");
    entries.insert(
        0,
        (
            "../../outside/pwned".into(),
            tar::EntryType::Regular,
            String::new(),
            b"x".to_vec(),
        ),
    );
    let err = archive::load(&t.dst, &rebuild(&entries)[..]).unwrap_err();
    assert!(err.to_string().contains("escapes the archive"), "{err}");
    assert_untouched(&t.dst);
    t.arena.assert_outside_untouched();
}

/// An oversized index.json is refused without being read into memory.
#[test]
fn load_refuses_an_oversized_document() {
    let t = load_arena();
    let mut entries = saved(&t.src, "example.com/app:1");
    let e = entries.iter_mut().find(|e| e.0 == "index.json").unwrap();
    e.3.resize(9 << 20, b' ');
    let err = archive::load(&t.dst, &rebuild(&entries)[..]).unwrap_err();
    assert!(
        err.to_string().contains("index.json is 9437184 bytes"),
        "{err}"
    );
    assert_untouched(&t.dst);
}

/// A context file, or a directory above it, swapped for a symlink after the walk is not read through it.
#[test]
fn a_context_changed_after_the_walk_is_not_read_through_new_symlinks() {
    use berth_image::context::{open_entry, walk, Everything};
    let a = Arena::new();
    let ctx = a.dest.join("ctx");
    fs::create_dir_all(ctx.join("dir")).unwrap();
    fs::write(ctx.join("file"), b"context data").unwrap();
    fs::write(ctx.join("dir/inner"), b"context data").unwrap();
    let entries = walk(&ctx, &Everything).unwrap();
    let path_of = |rel: &str| entries.iter().find(|e| e.rel == rel).unwrap().path.clone();
    let (file, inner) = (path_of("file"), path_of("dir/inner"));
    let mut data = Vec::new();
    open_entry(&file).unwrap().read_to_end(&mut data).unwrap();
    assert_eq!(data, b"context data");

    // The file itself becomes a link to a host file.
    fs::remove_file(ctx.join("file")).unwrap();
    std::os::unix::fs::symlink(a.outside.join("secret"), ctx.join("file")).unwrap();
    let err = open_entry(&file).unwrap_err();
    assert!(
        err.to_string().contains("changed while the build read it"),
        "{err}"
    );

    // A directory above it becomes a link to a host directory with the same name inside.
    fs::write(a.outside.join("inner"), b"host secret").unwrap();
    fs::rename(ctx.join("dir"), ctx.join("dir.real")).unwrap();
    std::os::unix::fs::symlink(&a.outside, ctx.join("dir")).unwrap();
    let err = open_entry(&inner).unwrap_err();
    assert!(
        err.to_string().contains("changed while the build read it"),
        "{err}"
    );
}

/// A base image's /etc/passwd that is a decompression bomb is not read into memory whole.
#[test]
fn an_oversized_passwd_in_a_base_image_is_not_read() {
    use berth_image::layer::{LayerBuilder, Owner};
    let a = Arena::new();
    let store = Store::open(a.dest.join("images")).unwrap();
    let mut passwd = b"root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/app:/bin/sh\n".to_vec();
    let mut small = LayerBuilder::new(&store).unwrap();
    small
        .add_bytes("etc/passwd", &passwd, 0o644, Owner::ROOT)
        .unwrap();
    let small = small.finish().unwrap();
    let found = berth_image::passwd::read_from_layers(&store, &[small.descriptor], "etc/passwd");
    assert_eq!(found.as_deref(), Some(&passwd[..]));

    passwd.resize(17 << 20, b'\n');
    let mut big = LayerBuilder::new(&store).unwrap();
    big.add_bytes("etc/passwd", &passwd, 0o644, Owner::ROOT)
        .unwrap();
    let big = big.finish().unwrap();
    let found = berth_image::passwd::read_from_layers(&store, &[big.descriptor], "etc/passwd");
    assert!(found.is_none(), "a 17 MiB passwd was read");
}
