use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn conformance() -> PathBuf {
    berth_compose::normalize::clean_path(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance"),
    )
}

pub fn repo() -> PathBuf {
    berth_compose::normalize::clean_path(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
}

/// `berth` with a clean environment (only PATH and a fixed HOME) in `cwd`.
pub fn berth(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
    cmd.current_dir(cwd).args(args).env_clear();
    cmd.env("PATH", std::env::var("PATH").unwrap_or_default());
    cmd.env("HOME", "/home/tester");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run berth")
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub fn report(suite: &str, passed: usize, total: usize, notes: &[String]) {
    println!("conformance {suite}: {passed}/{total} passed");
    for n in notes {
        println!("  {n}");
    }
}
