//! A full disk while building: a clear error, and the store as it was.
//! Needs root (to mount a small tmpfs); CI runs the tests as root.

use crate::build::{request, StoreOnly};
use berth_image::builder::{build, Silent};
use berth_oci::Store;
use std::fs;
use std::process::Command;

struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("small");
    fs::create_dir_all(&mnt).unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&mnt)
        .status()
        .expect("run mount");
    assert!(
        ok.success(),
        "mounting a tmpfs needs root: run the tests as root (CI does)"
    );
    let _mount = Mount(mnt.clone());
    let store = Store::open(mnt.join("images")).unwrap();
    let ctx = dir.path().join("ctx");
    fs::create_dir_all(&ctx).unwrap();
    fs::write(ctx.join("small.txt"), "fits").unwrap();
    fs::write(ctx.join("Dockerfile"), "FROM scratch\nCOPY small.txt /\n").unwrap();
    build(&store, &request(&ctx, "fits:1"), &StoreOnly, &Silent).unwrap();

    fs::write(ctx.join("big.bin"), vec![7u8; 3 << 20]).unwrap();
    fs::write(ctx.join("Dockerfile"), "FROM scratch\nCOPY big.bin /\n").unwrap();
    let err = build(&store, &request(&ctx, "big:1"), &StoreOnly, &Silent)
        .unwrap_err()
        .to_string();
    assert!(err.to_lowercase().contains("no space left"), "{err}");
    let refs: Vec<String> = store
        .references()
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(refs, ["fits:1"]);
    assert!(store.fsck().unwrap().problems.is_empty());
    assert_eq!(
        fs::read_dir(store.root().join("ingest")).unwrap().count(),
        0,
        "no partial files left"
    );
}
