//! `testfiles/*/Dockerfile` must dump exactly to `result` (BuildKit's test
//! compares `Dump() + "\n"` with the file byte for byte);
//! `testfiles-negative/*/Dockerfile` must fail; `testfile-line` has the
//! line numbers BuildKit's parser_test asserts.

use berth_dockerfile::parse_ast;

use crate::common::{data_dir, report, subdirs};

#[test]
fn testfiles_dump_exactly() {
    let dirs = subdirs(&data_dir().join("testfiles"));
    let mut failures = Vec::new();
    for dir in &dirs {
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("?")
            .to_owned();
        let text = std::fs::read_to_string(dir.join("Dockerfile")).expect("Dockerfile");
        let expected = std::fs::read_to_string(dir.join("result")).expect("result");
        match parse_ast(&text) {
            Ok(ast) => {
                let got = ast.dump() + "\n";
                if got != expected {
                    failures.push(format!("{name}:\n--- expected\n{expected}--- got\n{got}"));
                }
            }
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }
    report(
        "parser",
        dirs.len() - failures.len(),
        dirs.len(),
        33,
        &failures,
    );
}

#[test]
fn negative_testfiles_fail() {
    let dirs = subdirs(&data_dir().join("testfiles-negative"));
    let mut failures = Vec::new();
    for dir in &dirs {
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("?")
            .to_owned();
        let text = std::fs::read_to_string(dir.join("Dockerfile")).expect("Dockerfile");
        // Negative cases must fail to parse at all (not only to type).
        if let Ok(ast) = parse_ast(&text) {
            failures.push(format!("{name}: parsed as\n{}", ast.dump()));
        }
    }
    report(
        "negative",
        dirs.len() - failures.len(),
        dirs.len(),
        4,
        &failures,
    );
}

#[test]
fn negative_messages() {
    let read = |name: &str| {
        std::fs::read_to_string(
            data_dir()
                .join("testfiles-negative")
                .join(name)
                .join("Dockerfile"),
        )
        .expect("Dockerfile")
    };
    let err = |name: &str| parse_ast(&read(name)).unwrap_err().to_string();
    assert_eq!(err("empty_dockerfile"), "file with no instructions");
    assert_eq!(err("only_comments"), "file with no instructions");
    assert_eq!(
        err("env_no_value"),
        "line 3: ENV: ENV must have two arguments"
    );
    assert_eq!(
        err("shykes-nested-json"),
        "line 1: CMD: when using JSON array syntax, arrays must be comprised of strings only"
    );
}

#[test]
fn testfile_line_numbers() {
    let text =
        std::fs::read_to_string(data_dir().join("testfile-line/Dockerfile")).expect("Dockerfile");
    let ast = parse_ast(&text).expect("parses");
    let lines: Vec<(usize, usize)> = ast
        .children
        .iter()
        .map(|c| (c.start_line, c.end_line))
        .collect();
    assert_eq!(lines, [(5, 5), (11, 12), (17, 31)]);
}
