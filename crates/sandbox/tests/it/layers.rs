//! The layer cache and the rootfs over it: sharing, isolation of writes,
//! whiteouts, diff ID verification, the copy fallback.

use crate::support::*;
use berth_image::layer::{LayerBuilder, Owner};
use berth_oci::{media, Descriptor, Digest};
use berth_sandbox::{LayerError, RootfsMode, Sandbox, SandboxError};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

#[test]
fn writes_land_in_the_upper_dir_and_layers_stay_untouched() {
    let f = fixture();
    let base = f
        .sandbox
        .layers()
        .unpack_image(&f.store, &f.busybox)
        .unwrap()[0]
        .clone();
    let motd_before = fs::metadata(base.join("etc/motd")).unwrap();
    let spec = sh(
        "upper",
        "echo new > /newfile && echo changed > /etc/motd && rm /opq/old && cat /etc/motd",
    );
    let mut c = create(spec);
    c.start().unwrap();
    assert_eq!(c.wait().unwrap(), berth_sandbox::ExitStatus::Exited(0));
    let upper = c.upper_dir().expect("an overlay rootfs").to_path_buf();
    assert_eq!(fs::read_to_string(upper.join("newfile")).unwrap(), "new\n");
    assert_eq!(
        fs::read_to_string(upper.join("etc/motd")).unwrap(),
        "changed\n"
    );
    // The deletion is an overlay whiteout in the upper dir.
    let gone = fs::symlink_metadata(upper.join("opq/old")).unwrap();
    assert!(gone.file_type().is_char_device() && gone.rdev() == 0);
    // The shared layer did not change.
    assert_eq!(
        fs::read_to_string(base.join("etc/motd")).unwrap(),
        "lower motd\n"
    );
    assert!(base.join("opq/old").exists());
    assert!(!base.join("newfile").exists());
    let motd_after = fs::metadata(base.join("etc/motd")).unwrap();
    assert_eq!(motd_before.ino(), motd_after.ino());
    assert_eq!(motd_before.mtime(), motd_after.mtime());
    c.delete().unwrap();
    assert!(!upper.exists());
}

#[test]
fn two_containers_from_one_image_share_the_unpacked_layers() {
    let f = fixture();
    let diff_id = &f.busybox.config.rootfs.diff_ids[0];
    let a = create(sh("share-a", "sleep 100"));
    let b = create(sh("share-b", "sleep 100"));
    // One unpacked copy: the same inode is seen through both rootfs.
    let layer_ino = fs::metadata(f.sandbox.layers().path(diff_id).join("bin/busybox"))
        .unwrap()
        .ino();
    for c in [&a, &b] {
        let m = fs::metadata(c.rootfs().join("bin/busybox")).unwrap();
        // overlayfs reports the lower inode for non-dirs on one filesystem.
        assert_eq!(m.ino(), layer_ino);
    }
    let dirs = fs::read_dir(f.dir.join("layers"))
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&diff_id.hex()[..12])
        })
        .count();
    assert_eq!(dirs, 1);
    a.delete().unwrap();
    b.delete().unwrap();
}

#[test]
fn whiteouts_in_an_upper_layer_hide_lower_files() {
    let f = fixture();
    let script = "ls /etc/motd 2>&1; ls /opq";
    let out = run_on(&f.sandbox, &f.whiteouts, sh("wh", script));
    assert!(out.stdout.contains("No such file"), "{}", out.stdout);
    assert!(out.stdout.ends_with("new\n"), "{}", out.stdout);
    assert!(!out.stdout.contains("old"), "{}", out.stdout);
}

#[test]
fn the_copy_fallback_gives_the_same_filesystem() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::open(dir.path())
        .unwrap()
        .with_rootfs_mode(RootfsMode::Copy);
    let out = run_on(
        &sandbox,
        &f.whiteouts,
        sh(
            "copy",
            "ls /etc/motd 2>&1; ls /opq; stat -c %a /tmp; echo x > /w",
        ),
    );
    assert!(out.status.success(), "{}", out.stderr);
    assert!(out.stdout.contains("No such file"), "{}", out.stdout);
    assert!(out.stdout.contains("new\n1777\n"), "{}", out.stdout);
    assert!(!out.stdout.contains("old"), "{}", out.stdout);
    let mut c = create_on(&sandbox, &f.busybox, sh("copy2", "true"));
    assert!(c.upper_dir().is_none());
    c.start().unwrap();
    c.wait().unwrap();
    c.delete().unwrap();
    assert_eq!(fs::read_dir(dir.path().join("bundles")).unwrap().count(), 0);
}

#[test]
fn a_layer_that_does_not_match_its_diff_id_is_refused() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::open(dir.path()).unwrap();
    let mut l = LayerBuilder::new(&f.store).unwrap();
    l.add_bytes("file", b"real content", 0o644, Owner::ROOT)
        .unwrap();
    let layer = l.finish().unwrap();
    let wrong = Digest::of(b"what the config claims");
    let image = image_of(
        &f.store,
        "tampered:it",
        vec![layer.descriptor.clone()],
        vec![wrong.clone()],
        Default::default(),
    );
    let err = sandbox.layers().unpack_image(&f.store, &image).unwrap_err();
    match &err {
        LayerError::DiffIdMismatch {
            expected, actual, ..
        } => {
            assert_eq!(expected, &wrong);
            assert_eq!(actual, &layer.diff_id);
        }
        other => panic!("expected a diff ID mismatch, got {other}"),
    }
    assert!(!sandbox.layers().contains(&wrong));
    let left: Vec<String> = fs::read_dir(dir.path().join("layers"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != ".locks")
        .collect();
    assert!(left.is_empty(), "{left:?}");
    // And through `create`'s usual path the error reads clearly.
    let err = SandboxError::from(err);
    assert!(
        err.to_string().contains("does not match its diff ID"),
        "{err}"
    );
}

#[test]
fn compressed_layers_are_verified_against_the_uncompressed_digest() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::open(dir.path()).unwrap();
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(3);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    tar.append_data(&mut h, "zipped", &b"abc"[..]).unwrap();
    let tar = tar.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    let gz = gz.finish().unwrap();
    let blob = f.store.write_blob(&gz).unwrap();
    let image = image_of(
        &f.store,
        "gz:it",
        vec![Descriptor::new(
            media::OCI_LAYER_GZIP,
            blob,
            gz.len() as u64,
        )],
        vec![Digest::of(&tar)],
        Default::default(),
    );
    let layers = sandbox.layers().unpack_image(&f.store, &image).unwrap();
    assert_eq!(fs::read(layers[0].join("zipped")).unwrap(), b"abc");
    assert_eq!(layers[0], sandbox.layers().path(&Digest::of(&tar)));
}

#[test]
fn concurrent_unpacks_of_one_layer_agree() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let sandboxes: Vec<Sandbox> = (0..4).map(|_| Sandbox::open(dir.path()).unwrap()).collect();
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = sandboxes
            .iter()
            .map(|sb| s.spawn(|| sb.layers().unpack_image(&f.store, &f.whiteouts).unwrap()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(results.windows(2).all(|w| w[0] == w[1]));
    let tmp = fs::read_dir(dir.path().join("layers"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
        .count();
    assert_eq!(tmp, 0);
}
