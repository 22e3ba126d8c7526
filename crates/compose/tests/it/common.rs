use berth_compose::{Loaded, Options};
use std::path::{Path, PathBuf};

/// `../shared/conformance`, beside the repository (where CI puts it).
pub fn conformance() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance")
}

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A fixed environment, so results do not depend on who runs the tests.
pub fn options(cwd: &Path) -> Options {
    Options {
        cwd: cwd.to_path_buf(),
        os_env: [("HOME".to_string(), "/home/tester".to_string())]
            .into_iter()
            .collect(),
        ..Options::default()
    }
}

pub fn load_file(file: &Path) -> Result<Loaded, berth_compose::LoadError> {
    let dir = file.parent().unwrap();
    let mut opts = options(dir);
    opts.files = vec![file.to_path_buf()];
    berth_compose::load(&opts)
}

/// Print a suite's pass rate in a form the README quotes.
pub fn report(suite: &str, passed: usize, total: usize, notes: &[String]) {
    println!("conformance {suite}: {passed}/{total} passed");
    for n in notes {
        println!("  {n}");
    }
}
