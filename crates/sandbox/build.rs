//! Builds `init/main.rs` (berth-init, the PID 1 of `init: true` containers)
//! as a static, stripped binary that the crate embeds: containers may have
//! no libc at all, so it cannot link dynamically.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let src = "init/main.rs";
    println!("cargo:rerun-if-changed={src}");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let status = Command::new(rustc)
        .args([
            "--edition=2021",
            "-C",
            "opt-level=s",
            "-C",
            "panic=abort",
            "-C",
            "strip=symbols",
            "-C",
            "target-feature=+crt-static",
            "-o",
        ])
        .arg(out.join("berth-init"))
        .arg(src)
        .status()
        .expect("running rustc for berth-init");
    assert!(status.success(), "building berth-init failed");
}
