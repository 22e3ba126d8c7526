//! Sources served on 127.0.0.1: a dist mirror the test builds, and npm
//! registries that lie (wrong integrity, short downloads). Whatever fails,
//! nothing is left in the store.

use crate::server::{tgz, Server};
use base64::Engine as _;
use berth_runtimes::config::SourceKind;
use berth_runtimes::{Runtimes, RuntimesConfig};
use sha2::{Digest, Sha256, Sha512};
use std::path::Path;
use std::time::Duration;

const NODE_SCRIPT: &[u8] = b"#!/bin/sh\necho v4.2.3\n";

fn config(server: &Server, source: SourceKind) -> RuntimesConfig {
    RuntimesConfig {
        node_source: source,
        node_mirror: format!("{}/dist", server.base),
        npm_registry: format!("{}/npm", server.base),
        index_ttl: Duration::from_secs(3600),
        // Tests never leave 127.0.0.1.
        vulns_upstream: Some(format!("{}/security-wg/vuln/core", server.base)),
        vulns_mirror: Some(format!("{}/mirror/vuln/core", server.base)),
    }
}

/// Nothing in the store but its empty skeleton: no runtime, no scratch.
fn assert_store_empty(state: &Path) {
    let node_dir = state.join("runtimes/node");
    let left: Vec<_> = std::fs::read_dir(&node_dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "left in the store: {left:?}");
}

fn dist_mirror(server: &Server, shasums_ok: bool) -> Vec<u8> {
    let arch = berth_runtimes::index::host_arch();
    let top = format!("node-v4.2.3-linux-{arch}");
    let tarball = tgz(&[
        (&format!("{top}/bin/node"), 0o755, NODE_SCRIPT),
        (
            &format!("{top}/lib/node_modules/npm/bin/npm-cli.js"),
            0o644,
            b"#!/usr/bin/env node\n",
        ),
        (&format!("{top}/README.md"), 0o644, b"node"),
    ]);
    let index = r#"[{"version":"v4.2.3","files":["linux-x64","linux-arm64"],"npm":"2.14.7","lts":"Argon","security":true},
                   {"version":"v4.2.2","files":["linux-x64","linux-arm64"],"npm":"2.14.7","lts":"Argon","security":false}]"#;
    server.put("/dist/index.json", index);
    let file = format!("node-v4.2.3-linux-{arch}.tar.gz");
    server.put(&format!("/dist/v4.2.3/{file}"), tarball.clone());
    let sum = if shasums_ok {
        hex::encode(Sha256::digest(&tarball))
    } else {
        "0".repeat(64)
    };
    server.put(
        "/dist/v4.2.3/SHASUMS256.txt",
        format!(
            "{}  node-v4.2.3-headers.tar.gz\n{sum}  {file}\n",
            "1".repeat(64)
        ),
    );
    tarball
}

#[test]
fn dist_mirror_install_is_verified_and_laid_out() {
    let server = Server::start();
    let tarball = dist_mirror(&server, true);
    let state = tempfile::tempdir().unwrap();
    let rt = Runtimes::with_config(state.path(), config(&server, SourceKind::Dist)).unwrap();
    let resolved = rt.resolve(&"node@lts/argon".parse().unwrap()).unwrap();
    assert_eq!(resolved.version.to_string(), "4.2.3");
    let mut steps = Vec::new();
    let installed = rt
        .ensure(&resolved, &mut |p| {
            if let berth_runtimes::Progress::Step(s) = p {
                steps.push(s.to_string())
            }
        })
        .unwrap();
    assert!(
        steps.iter().any(|s| s.contains("SHASUMS256.txt")),
        "{steps:?}"
    );
    let out = std::process::Command::new(installed.node())
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "v4.2.3\n");
    assert_eq!(
        std::fs::read_link(installed.npm()).unwrap(),
        Path::new("../lib/node_modules/npm/bin/npm-cli.js")
    );
    let sha = hex::encode(Sha256::digest(&tarball));
    assert_eq!(installed.digest, format!("sha256:{sha}"));
    assert!(
        installed.id().ends_with(&sha[..16]),
        "content-addressed: {}",
        installed.id()
    );
    assert_eq!(
        installed
            .meta
            .npm
            .as_ref()
            .map(|v| v.to_string())
            .as_deref(),
        Some("2.14.7")
    );
    // The index is cached: with the server gone quiet, resolution still works.
    server.put("/dist/index.json", "not json");
    assert_eq!(
        rt.resolve(&"node@4".parse().unwrap())
            .unwrap()
            .version
            .to_string(),
        "4.2.3"
    );
}

#[test]
fn dist_mirror_with_a_wrong_shasums_line_installs_nothing() {
    let server = Server::start();
    dist_mirror(&server, false);
    let state = tempfile::tempdir().unwrap();
    let rt = Runtimes::with_config(state.path(), config(&server, SourceKind::Dist)).unwrap();
    let resolved = rt.resolve(&"node@4.2.3".parse().unwrap()).unwrap();
    let err = rt.ensure(&resolved, &mut |_| {}).unwrap_err().to_string();
    assert!(err.contains("checksum mismatch"), "{err}");
    assert_eq!(err.lines().count(), 1);
    assert_store_empty(state.path());
    // An unknown version is a clear error too.
    let err = rt
        .resolve(&"node@4.2.9".parse().unwrap())
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        format!(
            "node 4.2.9 is not published for linux-{} (source: dist)",
            berth_runtimes::index::host_arch()
        )
    );
    let err = rt
        .resolve(&"node@^9".parse().unwrap())
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("no node release matches node@^9"), "{err}");
}

fn npm_registry(server: &Server, node_tgz: &[u8], integrity_of: &[u8]) {
    let arch = berth_runtimes::index::host_arch();
    let integrity = format!(
        "sha512-{}",
        base64::engine::general_purpose::STANDARD.encode(Sha512::digest(integrity_of))
    );
    let tarball = format!(
        "{}/npm/node-linux-{arch}/-/node-linux-{arch}-4.2.3.tgz",
        server.base
    );
    let packument = serde_json::json!({
        "name": format!("node-linux-{arch}"),
        "versions": { "4.2.3": { "dist": { "tarball": tarball, "integrity": integrity } } }
    });
    server.put(&format!("/npm/node-linux-{arch}"), packument.to_string());
    server.put(
        &format!("/npm/node-linux-{arch}/-/node-linux-{arch}-4.2.3.tgz"),
        node_tgz.to_vec(),
    );
}

#[test]
fn npm_package_whose_integrity_does_not_match_installs_nothing() {
    let server = Server::start();
    let node = tgz(&[("package/bin/node", 0o755, NODE_SCRIPT)]);
    npm_registry(&server, &node, b"something else");
    let state = tempfile::tempdir().unwrap();
    let rt = Runtimes::with_config(state.path(), config(&server, SourceKind::Npm)).unwrap();
    let resolved = rt.resolve(&"node@4.2".parse().unwrap()).unwrap();
    let err = rt.ensure(&resolved, &mut |_| {}).unwrap_err().to_string();
    assert!(err.contains("checksum mismatch: expected sha512-"), "{err}");
    assert_store_empty(state.path());
}

#[test]
fn truncated_download_installs_nothing() {
    let server = Server::start();
    let node = tgz(&[("package/bin/node", 0o755, NODE_SCRIPT)]);
    npm_registry(&server, &node, &node);
    let arch = berth_runtimes::index::host_arch();
    let half = node[..node.len() / 2].to_vec();
    server.put_truncated(
        &format!("/npm/node-linux-{arch}/-/node-linux-{arch}-4.2.3.tgz"),
        half,
        node.len(),
    );
    let state = tempfile::tempdir().unwrap();
    let rt = Runtimes::with_config(state.path(), config(&server, SourceKind::Npm)).unwrap();
    let resolved = rt.resolve(&"node@4.2.3".parse().unwrap()).unwrap();
    let err = rt.ensure(&resolved, &mut |_| {}).unwrap_err().to_string();
    assert!(
        err.contains("truncated") || err.contains("interrupted"),
        "{err}"
    );
    assert_store_empty(state.path());
}

#[test]
fn unreachable_source_is_one_line() {
    let state = tempfile::tempdir().unwrap();
    let cfg = RuntimesConfig {
        npm_registry: "http://127.0.0.1:1".into(),
        ..Default::default()
    };
    let rt = Runtimes::with_config(state.path(), cfg).unwrap();
    let err = rt
        .resolve(&"node@lts".parse().unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("cannot resolve node@lts: cannot reach http://127.0.0.1:1/node-linux-"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1);
    assert_store_empty(state.path());
}
