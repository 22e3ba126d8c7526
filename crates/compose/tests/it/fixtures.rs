//! Every compose fixture file of the peer projects either loads or fails with
//! a located, one-line error, and never panics. The outcome of each is pinned
//! in an insta snapshot, so a change in behaviour shows up in review.

use crate::common::{conformance, load_file, report};
use std::path::{Path, PathBuf};

fn fixture_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, out);
            } else if matches!(p.extension().and_then(|e| e.to_str()), Some("yml" | "yaml")) {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(&conformance().join("compose/fixtures"), &mut out);
    out
}

#[test]
fn fixture_corpus_loads_or_fails_cleanly() {
    let root = conformance().join("compose/fixtures");
    let root_text = std::fs::canonicalize(&root)
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let root_lexical = berth_compose::normalize::clean_path(&root)
        .to_string_lossy()
        .into_owned();
    let files = fixture_files();
    assert_eq!(files.len(), 239, "the corpus has 239 YAML fixture files");
    let mut outcomes = String::new();
    let (mut loaded, mut errors, mut panics, mut unclear) = (0, 0, Vec::new(), Vec::new());
    for file in &files {
        let rel = file.strip_prefix(&root).unwrap().display().to_string();
        let result = std::panic::catch_unwind(|| load_file(file));
        let line = match result {
            Err(_) => {
                panics.push(rel.clone());
                "PANIC".to_string()
            }
            Ok(Ok(l)) => {
                loaded += 1;
                let names: Vec<&String> = l.project.services.keys().collect();
                format!("ok: {} service(s) {names:?}", names.len())
            }
            Ok(Err(e)) => {
                errors += 1;
                let text = e.to_string();
                // A clear error points at file:line:column and says what is wrong in one line.
                let first = text.lines().next().unwrap_or_default().to_string();
                let located = e
                    .location
                    .as_ref()
                    .is_some_and(|l| l.line > 0 && l.column > 0 && !l.file.as_os_str().is_empty());
                if !located || first.len() < 12 {
                    unclear.push(format!("{rel}: {first}"));
                }
                format!(
                    "error: {}",
                    first
                        .replace(&root_text, "<FIXTURES>")
                        .replace(&root_lexical, "<FIXTURES>")
                )
            }
        };
        outcomes.push_str(&format!("{rel}\n    {line}\n"));
    }
    report(
        "compose fixtures (load or clear error, no panic)",
        files.len() - panics.len() - unclear.len(),
        files.len(),
        &[format!(
            "{loaded} loaded, {errors} rejected with a located error"
        )],
    );
    assert!(panics.is_empty(), "panicked on: {panics:?}");
    assert!(
        unclear.is_empty(),
        "errors without a location: {unclear:#?}"
    );
    insta::assert_snapshot!("fixture_outcomes", outcomes);
}
