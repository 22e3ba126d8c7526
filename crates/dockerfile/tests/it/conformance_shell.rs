//! BuildKit's shell tables. `envVarTest`: `PLATFORM | word | expected`
//! rows run through single-word expansion with PWD, SHELL, KOREAN and an
//! empty NULL set; `A` (all) and `U` (unix) rows apply, `W` (windows) rows
//! do not. `wordsTest`: `ENV k=v` lines accumulate variables, other rows
//! are `word | w1,w2,…` for field-split expansion. `error` means the
//! expansion must fail.

use berth_dockerfile::{expand, expand_words};

use crate::common::{data_dir, report};

fn env(pairs: &[&str]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

#[test]
fn env_var_test() {
    let text = std::fs::read_to_string(data_dir().join("shell/envVarTest")).expect("envVarTest");
    let vars = env(&["PWD=/home", "SHELL=bash", "KOREAN=한국어", "NULL="]);
    let (mut total, mut windows_only) = (0, 0);
    let mut failures = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let cols: Vec<&str> = line.split('|').collect();
        let [platform, source, expected] = cols.as_slice() else {
            panic!("line {}: expected 3 columns: {line:?}", n + 1);
        };
        let (platform, source, expected) = (platform.trim(), source.trim(), expected.trim());
        match platform {
            "A" | "U" => {}
            "W" => {
                windows_only += 1;
                continue;
            }
            other => panic!("line {}: bad platform {other:?}", n + 1),
        }
        total += 1;
        let got = expand(source, &vars, '\\');
        let ok = match (&got, expected) {
            (Err(_), "error") => true,
            (Ok(w), e) => e != "error" && w == e,
            (Err(_), _) => false,
        };
        if !ok {
            failures.push(format!(
                "line {}: {source:?}: expected {expected:?}, got {got:?}",
                n + 1
            ));
        }
    }
    // Not a skip list: W rows describe Windows semantics ($pwd == $PWD)
    // and do not apply to a unix engine, as in BuildKit's own test.
    println!("not applicable (windows-only W rows) in shell envVarTest: {windows_only}");
    report(
        "shell envVarTest",
        total - failures.len(),
        total,
        228,
        &failures,
    );
}

#[test]
fn words_test() {
    let text = std::fs::read_to_string(data_dir().join("shell/wordsTest")).expect("wordsTest");
    let mut vars: Vec<String> = Vec::new();
    let mut total = 0;
    let mut failures = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix("ENV ") {
            // Trailing spaces of the value are significant.
            vars.push(rest.trim_start_matches(' ').to_owned());
            continue;
        }
        let Some((word, expected)) = line.split_once('|') else {
            panic!("line {}: expected one '|': {line:?}", n + 1);
        };
        total += 1;
        let word = word.trim();
        let expected: Vec<&str> = expected.trim_start_matches(' ').split(',').collect();
        let refs: Vec<&str> = vars.iter().map(String::as_str).collect();
        let got = match expand_words(word, &env(&refs), '\\') {
            Ok(words) => words,
            Err(_) => vec!["error".to_owned()],
        };
        if got != expected {
            failures.push(format!(
                "line {}: {word:?}: expected {expected:?}, got {got:?}",
                n + 1
            ));
        }
    }
    report(
        "shell wordsTest",
        total - failures.len(),
        total,
        24,
        &failures,
    );
}
