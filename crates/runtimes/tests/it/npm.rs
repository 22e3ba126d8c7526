//! The default source, for real: node 4.2.2 from the npm registry.

use berth_runtimes::{Runtimes, RuntimesConfig};
use std::process::Command;

#[test]
fn pulls_node_4_2_2_with_npm_2_14_7_from_the_npm_registry() {
    let state = tempfile::tempdir().unwrap();
    let runtimes = Runtimes::with_config(state.path(), RuntimesConfig::default()).unwrap();
    let resolved = runtimes.resolve(&"node@4.2.2".parse().unwrap()).unwrap();
    assert_eq!(resolved.version.to_string(), "4.2.2");
    let installed = runtimes.ensure(&resolved, &mut |_| {}).unwrap();
    let out = Command::new(installed.node())
        .arg("--version")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "v4.2.2");
    // bin/npm is a link to npm-cli.js, run with this node.
    let out = Command::new(installed.node())
        .arg(installed.npm())
        .arg("--version")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "2.14.7",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        installed.id().starts_with("4.2.2-x64-"),
        "{}",
        installed.id()
    );
    // A second ensure finds it in the store, no download.
    let again = runtimes
        .ensure(
            &runtimes.resolve(&"node@4.2.2".parse().unwrap()).unwrap(),
            &mut |p| panic!("no progress expected: {p:?}"),
        )
        .unwrap();
    assert_eq!(again.root, installed.root);
    assert_eq!(runtimes.installed().unwrap().len(), 1);
    let leftovers: Vec<_> = std::fs::read_dir(runtimes.root().join("node"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "{leftovers:?}");
}
