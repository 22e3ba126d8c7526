use std::path::PathBuf;

/// `../shared/conformance/dockerfile` relative to the workspace root.
pub fn data_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/conformance/dockerfile"
    ))
}

/// Sorted subdirectories of `dir`.
pub fn subdirs(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.is_dir())
        .collect();
    out.sort();
    out
}

/// Prints the pass-rate line and fails with every failure listed, or when
/// the suite did not run exactly the `expected` cases the README quotes (an
/// empty or truncated data set must fail, not pass at 0/0).
pub fn report(suite: &str, passed: usize, total: usize, expected: usize, failures: &[String]) {
    println!("conformance dockerfile {suite}: {passed}/{total} passed");
    assert_eq!(
        total, expected,
        "{suite}: {total} cases ran, the suite has {expected}"
    );
    assert!(
        failures.is_empty(),
        "{} failure(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(passed, total);
}
