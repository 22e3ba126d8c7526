//! The seed example of DESIGN.md loads verbatim as a legacy v1 file.

use crate::common::{load_file, repo};

#[test]
fn seed_loads_verbatim() {
    let loaded = load_file(&repo().join("examples/seed/docker-compose.yml")).unwrap();
    let p = &loaded.project;
    assert_eq!(p.name, "seed");
    let app = &p.services["app"];
    assert_eq!(app.volumes_from, vec!["service:code:rw"]);
    assert_eq!(
        app.image.as_deref(),
        Some("quay.io/oddnetworks/alpine-nodejs:4.2.2")
    );
    assert_eq!(app.ports[0].target, 3000);
    assert_eq!(app.ports[0].published.as_deref(), Some("8080"));
    assert_eq!(
        app.command.as_deref().unwrap(),
        [
            "/bin/ash",
            "-c",
            "npm install --production && npm run start"
        ]
    );
    assert_eq!(app.working_dir.as_deref(), Some("/app"));
    let code = &p.services["code"];
    let build = code.build.as_ref().unwrap();
    assert!(build.context.ends_with("examples/seed"));
    assert_eq!(build.dockerfile.as_deref(), Some("Dockerfile"));
}

#[test]
fn runtime_tag_change_changes_only_app_hash() {
    let dir = tempdir();
    let seed = std::fs::read_to_string(repo().join("examples/seed/docker-compose.yml")).unwrap();
    std::fs::write(dir.join("docker-compose.yml"), &seed).unwrap();
    let before = load_file(&dir.join("docker-compose.yml")).unwrap().project;
    std::fs::write(
        dir.join("docker-compose.yml"),
        seed.replace("4.2.2", "4.2.3"),
    )
    .unwrap();
    let after = load_file(&dir.join("docker-compose.yml")).unwrap().project;
    let h = |p: &berth_compose::Project, s: &str| berth_compose::hash::service_hash(&p.services[s]);
    assert_eq!(h(&before, "code"), h(&after, "code"));
    assert_ne!(h(&before, "app"), h(&after, "app"));
    std::fs::remove_dir_all(&dir).unwrap();
}

fn tempdir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("berth-seed-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}
