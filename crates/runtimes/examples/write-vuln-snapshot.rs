//! Writes `data/node-vulns.json`, the vulnerability snapshot berth ships,
//! through the same code `berth audit --refresh` runs (the working group's
//! list from the npm registry's `is-my-node-vulnerable`, or from
//! `BERTH_NODE_VULNS_URL`; registry from `BERTH_NPM_REGISTRY`).
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
    let scratch = std::env::temp_dir();
    let db =
        VulnDb::fetch(&Http::new(), &config, &scratch, &mut |_| {}).unwrap_or_else(|e| fail(&e));
    std::fs::write(&out, db.to_json_pretty()).unwrap_or_else(|e| fail(&e));
    eprintln!(
        "{out}: {} entries from {}",
        db.vulnerabilities.len(),
        db.source
    );
}

fn fail(e: &dyn std::fmt::Display) -> ! {
    eprintln!("error: {e}");
    std::process::exit(1)
}
