//! `berth save` output loads into the real Docker Engine and runs there.

use crate::support::make_true_image;
use berth_oci::Store;
use std::process::Command;

fn docker_ready() {
    let ok = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output();
    match ok {
        Ok(o) if o.status.success() => {}
        _ => panic!("the Docker Engine is not running: scripts/test.sh installs docker.io and starts dockerd"),
    }
}

#[test]
fn saved_archive_loads_and_runs_in_docker() {
    docker_ready();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("images")).unwrap();
    let name = format!("berth-test/true:{}", std::process::id());
    make_true_image(&store, &name);
    let archive = dir.path().join("true.tar");
    berth_image::archive::save(
        &store,
        std::slice::from_ref(&name),
        std::fs::File::create(&archive).unwrap(),
    )
    .unwrap();

    let load = Command::new("docker")
        .arg("load")
        .arg("-i")
        .arg(&archive)
        .output()
        .unwrap();
    assert!(
        load.status.success(),
        "docker load: {}",
        String::from_utf8_lossy(&load.stderr)
    );
    assert!(
        String::from_utf8_lossy(&load.stdout).contains(&name),
        "{}",
        String::from_utf8_lossy(&load.stdout)
    );
    let run = Command::new("docker")
        .args(["run", "--rm", "--network", "none", &name])
        .output()
        .unwrap();
    let _ = Command::new("docker").args(["rmi", "-f", &name]).output();
    assert!(
        run.status.success(),
        "docker run: {}",
        String::from_utf8_lossy(&run.stderr)
    );
}

/// `docker save` output (Docker 20.10 writes the older layout: `<id>/layer.tar`, `<hex>.json`)
/// loads into berth's store with the same layers.
#[test]
fn docker_save_output_loads_into_berth() {
    docker_ready();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("images")).unwrap();
    let name = format!("berth-test/true-back:{}", std::process::id());
    make_true_image(&store, &name);
    let ours = dir.path().join("ours.tar");
    berth_image::archive::save(
        &store,
        std::slice::from_ref(&name),
        std::fs::File::create(&ours).unwrap(),
    )
    .unwrap();
    let load = Command::new("docker")
        .arg("load")
        .arg("-i")
        .arg(&ours)
        .output()
        .unwrap();
    assert!(
        load.status.success(),
        "docker load: {}",
        String::from_utf8_lossy(&load.stderr)
    );
    let theirs = dir.path().join("theirs.tar");
    let save = Command::new("docker")
        .arg("save")
        .arg("-o")
        .arg(&theirs)
        .arg(&name)
        .output()
        .unwrap();
    let _ = Command::new("docker").args(["rmi", "-f", &name]).output();
    assert!(
        save.status.success(),
        "docker save: {}",
        String::from_utf8_lossy(&save.stderr)
    );

    let back = Store::open(dir.path().join("back")).unwrap();
    let loaded = berth_image::archive::load(&back, std::fs::File::open(&theirs).unwrap()).unwrap();
    assert_eq!(loaded, std::slice::from_ref(&name));
    let platform = berth_oci::Platform::host();
    let original = store.image(&name, &platform).unwrap();
    let reloaded = back.image(&name, &platform).unwrap();
    assert_eq!(
        reloaded.config.rootfs.diff_ids,
        original.config.rootfs.diff_ids
    );
    assert!(back.fsck().unwrap().problems.is_empty());
}
