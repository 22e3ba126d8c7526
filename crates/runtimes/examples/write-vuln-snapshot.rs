//! Writes `data/node-vulns.json`, the vulnerability snapshot berth ships,
//! through the same code `berth audit --refresh` runs: the security working
//! group's files, a mirror of them (`BERTH_NODE_VULNS_URL`), then the npm
//! registry's `is-my-node-vulnerable` (registry from `BERTH_NPM_REGISTRY`);
//! each dated, and refused when older than the snapshot it replaces.
//!
//! cargo run -p berth-runtimes --example write-vuln-snapshot [OUT]

use berth_runtimes::fetch::Http;
use berth_runtimes::vulns::VulnDb;
use berth_runtimes::RuntimesConfig;

fn main() {
    let out = std::env::args().nth(1).unwrap_or_else(|| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/data/node-vulns.json").to_string()
    });
    let config = RuntimesConfig::from_env_and_file().unwrap_or_else(|e| fail(&e));
    let scratch = tempfile_dir();
    let (mut db, from, _) = VulnDb::refresh(
        &Http::new(),
        &config,
        &scratch,
        &VulnDb::embedded(),
        &mut |n| eprintln!("{n}"),
        &mut |_| {},
    )
    .unwrap_or_else(|e| fail(&e));
    let _ = std::fs::remove_dir_all(&scratch);
    // The snapshot is not a stored refresh: it has no storing date.
    db.stored_at = None;
    std::fs::write(&out, db.to_json_pretty()).unwrap_or_else(|e| fail(&e));
    eprintln!(
        "{out}: {} entries from {from}, as of {} ({})",
        db.vulnerabilities.len(),
        db.as_of,
        db.as_of_basis
    );
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("berth-vuln-snapshot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| fail(&e));
    dir
}

fn fail(e: &dyn std::fmt::Display) -> ! {
    eprintln!("error: {e}");
    std::process::exit(1)
}
