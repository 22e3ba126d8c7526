//! `berth audit` and `berth upgrade` on a compose file with `x-runtime`,
//! offline: the npm registry is pointed at a closed port on 127.0.0.1, so
//! the vulnerability snapshot inside berth and its fix releases decide.

use crate::common::{berth, repo, text};
use std::path::Path;

/// A copy of examples/seed-runtime with a comment and quoting to keep.
const COMPOSE: &str = "# the seed, with its runtime as an input\ncode:\n  build: .\napp:\n  x-runtime: node@4.2.2   # pinned on purpose\n  volumes_from:\n    - code\n  ports:\n    - \"8080:3000\"\n  working_dir: /app\n";

fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in ["Dockerfile", "index.js", "package.json"] {
        std::fs::copy(
            repo().join("examples/seed-runtime").join(f),
            dir.path().join(f),
        )
        .unwrap();
    }
    std::fs::write(dir.path().join("docker-compose.yml"), COMPOSE).unwrap();
    dir
}

fn run(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let state = dir.join(".state");
    let out = berth(
        dir,
        args,
        &[
            ("BERTH_STATE_DIR", state.to_str().unwrap()),
            ("BERTH_NPM_REGISTRY", "http://127.0.0.1:1"),
            ("BERTH_CONFIG", "/dev/null"),
        ],
    );
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        text(&out.stderr),
    )
}

#[test]
fn seed_runtime_example_is_a_valid_project() {
    let dir = repo().join("examples/seed-runtime");
    let out = berth(&dir, &["config"], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("x-runtime: node@4.2.2"));
}

#[test]
fn audit_names_the_december_2015_cves_and_fails() {
    let dir = project();
    let (code, out, err) = run(dir.path(), &["audit"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains(
            "app: node 4.2.2 (x-runtime node@4.2.2), line 4.x end-of-life since 2018-04-30"
        ),
        "{out}"
    );
    for cve in ["CVE-2015-8027", "CVE-2015-6764"] {
        let line = out
            .lines()
            .find(|l| l.trim_start().starts_with(cve))
            .unwrap_or_else(|| panic!("{cve} in {out}"));
        assert!(
            line.contains("unknown") && line.ends_with("4.2.3"),
            "{line}"
        );
    }
    assert!(
        !out.contains("code:"),
        "the code service runs no runtime: {out}"
    );
}

#[test]
fn audit_json() {
    let dir = project();
    let (code, out, err) = run(dir.path(), &["audit", "--format", "json"]);
    assert_eq!(code, 1, "{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    let services = doc["services"].as_array().unwrap();
    assert_eq!(services.len(), 1);
    let app = &services[0];
    assert_eq!(
        (
            app["service"].as_str(),
            app["version"].as_str(),
            app["origin"].as_str()
        ),
        (Some("app"), Some("4.2.2"), Some("x-runtime"))
    );
    assert_eq!(app["end_of_life"], true);
    for cve in ["CVE-2015-8027", "CVE-2015-6764"] {
        let f = app["vulnerabilities"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["id"] == cve)
            .unwrap();
        assert_eq!(f["fixed_in_line"], "4.2.3");
        assert_eq!(f["severity"], "unknown");
    }
}

#[test]
fn fail_on_thresholds() {
    let dir = project();
    // Every 4.x entry in the list is ungraded: only the default gate trips.
    assert_eq!(run(dir.path(), &["audit", "--fail-on", "unknown"]).0, 1);
    assert_eq!(run(dir.path(), &["audit", "--fail-on", "low"]).0, 0);
    assert_eq!(run(dir.path(), &["audit", "--fail-on", "high"]).0, 0);
    assert_eq!(run(dir.path(), &["audit", "--fail-on", "none"]).0, 0);
    // 18.0.0 has graded ones (CVE-2022-32212, high).
    std::fs::write(
        dir.path().join("docker-compose.yml"),
        "services:\n  api:\n    x-runtime: node@18.0.0\n",
    )
    .unwrap();
    let (code, out, _) = run(dir.path(), &["audit", "--fail-on", "high"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains("CVE-2022-32212") && l.contains("high")),
        "{out}"
    );
    let (code, _, err) = run(dir.path(), &["audit", "--fail-on", "bogus"]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn upgrade_to_dry_run_shows_the_diff_and_leaves_the_file() {
    let dir = project();
    let (code, out, err) = run(dir.path(), &["upgrade", "--to", "4.2.3", "--dry-run"]);
    assert_eq!(code, 0, "{err}");
    let path = dir.path().join("docker-compose.yml");
    assert_eq!(
        out,
        format!(
            "--- {p}\n+++ {p}\n@@ -5 +5 @@\n-  x-runtime: node@4.2.2   # pinned on purpose\n+  x-runtime: node@4.2.3   # pinned on purpose\n",
            p = path.display()
        )
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), COMPOSE);
}

#[test]
fn upgrade_security_changes_only_that_value() {
    let dir = project();
    let (code, _, err) = run(dir.path(), &["upgrade", "--security"]);
    assert_eq!(code, 0, "{err}");
    // The lowest 4.x with every fix 4.x got: past 4.2.3 (4.9.0 by the snapshot).
    assert!(err.contains("app: node 4.2.2 -> 4.9.0"), "{err}");
    let got = std::fs::read_to_string(dir.path().join("docker-compose.yml")).unwrap();
    assert_eq!(got, COMPOSE.replace("node@4.2.2   #", "node@4.9.0   #"));
    // Nothing left to do the second time.
    let (code, out, err) = run(dir.path(), &["upgrade"]);
    assert_eq!((code, out.as_str()), (0, ""), "{err}");
    // An image tag is rewritten the same way, in the file that defines it.
    std::fs::write(
        dir.path().join("docker-compose.yml"),
        "services:\n  app:\n    image: 'quay.io/oddnetworks/alpine-nodejs:4.2.2'\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("override.yml"),
        "services:\n  app:\n    working_dir: /app\n",
    )
    .unwrap();
    let (code, _, err) = run(
        dir.path(),
        &[
            "-f",
            "docker-compose.yml",
            "-f",
            "override.yml",
            "upgrade",
            "--to",
            "4.2.3",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("docker-compose.yml")).unwrap(),
        "services:\n  app:\n    image: 'quay.io/oddnetworks/alpine-nodejs:4.2.3'\n"
    );
}

#[test]
fn user_errors_are_one_line() {
    let dir = project();
    let (code, _, err) = run(dir.path(), &["upgrade", "nosuch"]);
    assert_eq!((code, err.trim()), (1, "error: no such service: nosuch"));
    std::fs::write(
        dir.path().join("docker-compose.yml"),
        "services:\n  app:\n    x-runtime: node@lts/bogus\n",
    )
    .unwrap();
    let (code, _, err) = run(dir.path(), &["upgrade"]);
    assert_eq!(code, 1);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("unknown LTS codename"), "{err}");
    let (code, _, err) = run(dir.path(), &["runtime", "pull", "node@4.2.2"]);
    assert_eq!(code, 1);
    assert_eq!(
        err.lines().filter(|l| l.starts_with("error:")).count(),
        1,
        "{err}"
    );
    assert!(err.contains("127.0.0.1:1"), "{err}");
}
