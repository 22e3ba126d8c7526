//! `audit --refresh`'s sources, served from 127.0.0.1: the working group's
//! files first, then a mirror, then the npm package; data that does not
//! parse or is older than berth's is refused and berth's kept.

use crate::server::{tgz, Server};
use base64::Engine as _;
use berth_runtimes::upgrade::{choose, Strategy};
use berth_runtimes::vulns::{RefreshSource, VulnDb, VulnError};
use berth_runtimes::{RuntimesConfig, Version};
use sha2::{Digest as _, Sha512};
use std::path::Path;

fn v(s: &str) -> Version {
    s.parse().unwrap()
}

/// The embedded snapshot (dated 2024-07 by its newest entry) back in the
/// working group's format, its first `keep` entries, plus `extra`.
fn wg_core(keep: usize, extra: &[(u64, serde_json::Value)]) -> Vec<u8> {
    let mut doc = serde_json::Map::new();
    for (i, x) in VulnDb::embedded()
        .vulnerabilities
        .iter()
        .enumerate()
        .take(keep)
    {
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

/// A January 2025 entry: 22.x before 22.13.1 (a release the 2024-07 data
/// cannot know of).
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

fn config(upstream: &str, mirror: Option<&str>, npm: &str) -> RuntimesConfig {
    RuntimesConfig {
        npm_registry: npm.into(),
        vulns_upstream: Some(upstream.into()),
        vulns_mirror: mirror.map(String::from),
        ..Default::default()
    }
}

fn refresh(
    cfg: &RuntimesConfig,
    state: &Path,
) -> (Result<(VulnDb, RefreshSource), VulnError>, Vec<String>) {
    let mut notes = Vec::new();
    let got = VulnDb::refresh(
        &berth_runtimes::fetch::Http::new(),
        cfg,
        state,
        &VulnDb::load(state),
        &mut |n| notes.push(n.to_string()),
        &mut |_| {},
    )
    .map(|(db, from, _)| (db, from));
    (got, notes)
}

#[test]
fn the_working_group_files_come_first_then_the_mirror() {
    let server = Server::start();
    let state = tempfile::tempdir().unwrap();
    let newer = wg_core(usize::MAX, &[january_2025()]);
    server.put("/wg/index.json", newer.clone());
    server.put("/mirror/index.json", wg_core(usize::MAX, &[]));
    let up = format!("{}/wg", server.base);
    let mirror = format!("{}/mirror", server.base);
    let (got, notes) = refresh(
        &config(&up, Some(&mirror), "http://127.0.0.1:1"),
        state.path(),
    );
    let (db, from) = got.unwrap();
    assert_eq!(from, RefreshSource::Upstream(up));
    assert!(notes.is_empty(), "{notes:?}");
    assert_eq!(db.newest_entry, Some(147));
    assert!(db.as_of.as_str() >= "2025-01-01", "{}", db.as_of);

    // Upstream unreachable (as on this machine): a note, then the mirror.
    let state = tempfile::tempdir().unwrap();
    server.put("/mirror/index.json", newer);
    let (got, notes) = refresh(
        &config("http://127.0.0.1:1/wg", Some(&mirror), "http://127.0.0.1:1"),
        state.path(),
    );
    let (db, from) = got.unwrap();
    assert_eq!(from, RefreshSource::Mirror(mirror));
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].contains("cannot reach http://127.0.0.1:1/wg/index.json"),
        "{notes:?}"
    );
    // Dated by its newest entry (the mirror sent no Last-Modified).
    assert_eq!(db.as_of, "2025-01-01");
    // Stored: the next audit uses it, and the answer for 22.3.0 changes.
    let loaded = VulnDb::load(state.path());
    assert_eq!(loaded.newest_entry, Some(147));
    assert!(loaded.stored_at.is_some());
    assert!(loaded
        .affecting(&v("22.3.0"))
        .iter()
        .any(|x| x.id == "CVE-2025-23083"));
    let before = choose(
        &v("22.3.0"),
        &Strategy::Security,
        &VulnDb::embedded(),
        Err("offline".into()),
    )
    .unwrap();
    let after = choose(
        &v("22.3.0"),
        &Strategy::Security,
        &loaded,
        Err("offline".into()),
    )
    .unwrap();
    assert_eq!((before, after), (v("22.4.1"), v("22.13.1")));
}

#[test]
fn a_mirror_is_dated_by_its_last_modified() {
    let server = Server::start();
    let state = tempfile::tempdir().unwrap();
    server.put_with_headers(
        "/mirror/vuln/core/index.json",
        wg_core(usize::MAX, &[]),
        &["Last-Modified: Sat, 01 Mar 2025 10:00:00 GMT"],
    );
    let mirror = format!("{}/mirror/vuln/core/", server.base);
    let (got, _) = refresh(
        &config("http://127.0.0.1:1/wg", Some(&mirror), "http://127.0.0.1:1"),
        state.path(),
    );
    let (db, _) = got.unwrap();
    assert_eq!(db.as_of, "2025-03-01");
    assert_eq!(db.as_of_basis, "the mirror's Last-Modified");
}

#[test]
fn older_or_malformed_data_is_refused_and_berths_kept() {
    let server = Server::start();
    let state = tempfile::tempdir().unwrap();
    let mirror = format!("{}/mirror", server.base);
    let cfg = config("http://127.0.0.1:1/wg", Some(&mirror), "http://127.0.0.1:1");
    // First a newer set, stored.
    server.put("/mirror/index.json", wg_core(usize::MAX, &[january_2025()]));
    refresh(&cfg, state.path()).0.unwrap();
    let stored = std::fs::read(VulnDb::refreshed_path(state.path())).unwrap();

    // Then the mirror serves the 2024-07 set: older, refused.
    server.put("/mirror/index.json", wg_core(usize::MAX, &[]));
    let (got, notes) = refresh(&cfg, state.path());
    let err = got.unwrap_err().to_string();
    assert!(err.contains("the data berth has is kept"), "{err}");
    assert!(
        notes
            .iter()
            .any(|n| n.contains("is older than the data berth has")
                && n.contains(
                    "as of 2024-07-01, newest entry 146 < as of 2025-01-01, newest entry 147"
                )),
        "{notes:?}"
    );
    // Fewer entries with a later date is older too.
    let mut late = wg_core(140, &[]);
    late = String::from_utf8(late)
        .unwrap()
        .replacen("\"ref\":", "\"publish_date\":\"2026-01-01\",\"ref\":", 1)
        .into_bytes();
    server.put("/mirror/index.json", late);
    let (got, notes) = refresh(&cfg, state.path());
    assert!(got.is_err());
    assert!(
        notes.iter().any(|n| n.contains("newest entry 140 <")),
        "{notes:?}"
    );

    // Malformed: refused with what was wrong.
    server.put(
        "/mirror/index.json",
        b"{\"1\": {\"vulnerable\": \"not a range!\"".to_vec(),
    );
    let (got, notes) = refresh(&cfg, state.path());
    assert!(got.is_err());
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with(&format!("the mirror {mirror}: vulnerability data"))),
        "{notes:?}"
    );
    assert_eq!(
        std::fs::read(VulnDb::refreshed_path(state.path())).unwrap(),
        stored
    );
    assert_eq!(VulnDb::load(state.path()).newest_entry, Some(147));
}

#[test]
fn the_npm_package_is_the_last_resort() {
    let server = Server::start();
    let state = tempfile::tempdir().unwrap();
    let core = wg_core(usize::MAX, &[]);
    let tarball = tgz(&[("package/core.json", 0o644, &core)]);
    let integrity = format!(
        "sha512-{}",
        base64::engine::general_purpose::STANDARD.encode(Sha512::digest(&tarball))
    );
    server.put("/npm/is-my-node-vulnerable/-/imnv-1.6.1.tgz", tarball);
    server.put(
        "/npm/is-my-node-vulnerable/latest",
        serde_json::to_vec(&serde_json::json!({
            "version": "1.6.1",
            "dist": {
                "tarball": format!("{}/npm/is-my-node-vulnerable/-/imnv-1.6.1.tgz", server.base),
                "integrity": integrity,
            }
        }))
        .unwrap(),
    );
    server.put("/mirror/index.json", b"<html>not here</html>".to_vec());
    let mirror = format!("{}/mirror", server.base);
    let (got, notes) = refresh(
        &config(
            "http://127.0.0.1:1/wg",
            Some(&mirror),
            &format!("{}/npm", server.base),
        ),
        state.path(),
    );
    let (db, from) = got.unwrap();
    assert_eq!(from, RefreshSource::NpmPackage);
    assert_eq!(notes.len(), 2, "{notes:?}");
    // The same list as berth's: accepted (not older), dated by its content.
    assert_eq!(
        db.source,
        "npm package is-my-node-vulnerable 1.6.1 (core.json)"
    );
    assert_eq!(db.as_of, VulnDb::embedded().as_of);
    assert_eq!(db.newest_entry, Some(146));
    assert_eq!(
        db.affecting(&v("22.3.0")).len(),
        VulnDb::embedded().affecting(&v("22.3.0")).len()
    );
}
