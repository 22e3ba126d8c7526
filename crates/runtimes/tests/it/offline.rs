//! Audit with no network at all: the snapshot inside berth decides.

use berth_runtimes::audit::audit_project;
use berth_runtimes::vulns::VulnDb;

#[test]
fn audit_works_offline_from_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("docker-compose.yml"),
        "code:\n  build: .\napp:\n  x-runtime: node@4.2.2\nold:\n  image: node:0.12.7\n",
    )
    .unwrap();
    let opts = berth_compose::Options {
        cwd: dir.path().to_path_buf(),
        ..Default::default()
    };
    let project = berth_compose::load(&opts).unwrap().project;
    // A state dir with nothing refreshed: the embedded snapshot is used.
    let db = VulnDb::load(dir.path());
    assert_eq!(db, VulnDb::embedded());
    let audits = audit_project(&project, &db, None, None, &mut |s| {
        panic!("no resolution needed for {s}")
    });
    let app = audits.iter().find(|a| a.service == "app").unwrap();
    for cve in ["CVE-2015-8027", "CVE-2015-6764"] {
        let f = app.vulnerabilities.iter().find(|f| f.id == cve).unwrap();
        assert_eq!(f.fixed_in_line.as_ref().unwrap().to_string(), "4.2.3");
    }
    let old = audits.iter().find(|a| a.service == "old").unwrap();
    let f = old
        .vulnerabilities
        .iter()
        .find(|f| f.id == "CVE-2015-8027")
        .expect("berth's 0.12.x correction");
    assert_eq!(f.fixed_in_line.as_ref().unwrap().to_string(), "0.12.9");
}

/// berth-compose accepts `x-runtime` on a service with neither `image` nor
/// `build`, and the value is part of the service's config hash.
#[test]
fn x_runtime_is_accepted_and_hashed() {
    let hash_of = |rt: &str| {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("compose.yaml"),
            format!("services:\n  app:\n    x-runtime: {rt}\n"),
        )
        .unwrap();
        let opts = berth_compose::Options {
            cwd: dir.path().to_path_buf(),
            ..Default::default()
        };
        let project = berth_compose::load(&opts).unwrap().project;
        berth_compose::hash::service_hash(&project.services["app"])
    };
    assert_eq!(hash_of("node@4.2.2"), hash_of("node@4.2.2"));
    assert_ne!(hash_of("node@4.2.2"), hash_of("node@4.2.3"));
}
