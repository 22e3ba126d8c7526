//! moby/patternmatcher's tests, run from the extracted tables.
//!
//! Each table prints `conformance dockerignore <table>: N/M passed` (visible
//! with `--nocapture`) and must pass completely. Rows for the `windows` OS
//! are not run (berth matches `/`-separated paths only); the count of such
//! rows is printed, and the tables currently have none. No other row is
//! skipped.

use std::path::PathBuf;

use berth_dockerignore::{clean, read, MatchInfo, MatchType, PatternMatcher};
use serde_json::Value;

fn table(name: &str) -> Vec<Value> {
    let path = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/conformance/dockerignore"
    ))
    .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("conformance data {} unreadable: {e}", path.display()));
    match serde_json::from_str(&text) {
        Ok(Value::Array(rows)) => rows,
        other => panic!("{name}: expected a JSON array, got {other:?}"),
    }
}

fn str_field<'a>(row: &'a Value, field: &str) -> Result<&'a str, String> {
    row.get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("row has no string field {field:?}"))
}

fn bool_field(row: &Value, field: &str) -> Result<bool, String> {
    row.get(field)
        .and_then(Value::as_bool)
        .ok_or_else(|| format!("row has no boolean field {field:?}"))
}

fn strings(value: Option<&Value>) -> Result<Vec<String>, String> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or("non-string item".to_owned())
            })
            .collect(),
        Some(other) => Err(format!("expected a list of strings, got {other}")),
    }
}

/// Collects failures for a table, prints the pass-rate line, asserts 100%.
struct Tally {
    table: &'static str,
    expected: usize,
    total: usize,
    not_run: Vec<String>,
    failures: Vec<String>,
}

impl Tally {
    fn new(table: &'static str, expected: usize) -> Self {
        Tally {
            table,
            expected,
            total: 0,
            not_run: Vec::new(),
            failures: Vec::new(),
        }
    }

    fn check(&mut self, id: String, outcome: Result<(), String>) {
        self.total += 1;
        if let Err(why) = outcome {
            self.failures.push(format!("{id}: {why}"));
        }
    }

    fn finish(self) {
        let passed = self.total - self.failures.len();
        println!(
            "conformance dockerignore {}: {passed}/{} passed",
            self.table, self.total
        );
        for id in &self.not_run {
            println!("  not run (windows-only row): {id}");
        }
        for failure in &self.failures {
            println!("  FAIL {failure}");
        }
        assert!(
            self.failures.is_empty(),
            "{} of {} {} rows failed",
            self.failures.len(),
            self.total,
            self.table
        );
        // The README's count: an empty or truncated table fails.
        assert_eq!(
            self.total, self.expected,
            "{}: {} rows ran, the table has {}",
            self.table, self.total, self.expected
        );
    }
}

/// `matches_using_parent_results` fed its own results for each parent
/// directory, walking down as docker's test does (parents from Go's
/// `filepath.Dir`).
fn walk_with_parent_results(matcher: &PatternMatcher, path: &str) -> Result<bool, String> {
    let parent = match path.rfind('/') {
        Some(slash) => clean(&path[..=slash]),
        None => ".".to_owned(),
    };
    let mut info = MatchInfo::default();
    if parent != "." {
        let elements: Vec<&str> = parent.split('/').collect();
        for end in 1..=elements.len() {
            let so_far = elements[..end].join("/");
            info = matcher
                .matches_using_parent_results(&so_far, &info)
                .map_err(|e| format!("parent {so_far:?}: {e}"))?
                .1;
        }
    }
    matcher
        .matches_using_parent_results(path, &info)
        .map(|(matched, _)| matched)
        .map_err(|e| e.to_string())
}

fn run_matches_row(row: &Value) -> Result<(), String> {
    let api = str_field(row, "api")?;
    let patterns = strings(row.get("patterns"))?;
    let path = str_field(row, "path")?;
    let expect = bool_field(row, "expect")?;
    let expect_error = bool_field(row, "error")?;

    let outcome = match api {
        #[allow(deprecated)]
        "Matches" => berth_dockerignore::matches(path, &patterns).map_err(|e| e.to_string()),
        "MatchesOrParentMatches" => match PatternMatcher::new(&patterns) {
            Err(e) => Err(e.to_string()),
            Ok(matcher) => {
                let first = matcher.matches_or_parent_matches(path);
                // Docker once panicked on the second use of a broken
                // pattern; the answer must simply repeat.
                let second = matcher.matches_or_parent_matches(path);
                if first != second {
                    return Err(format!("repeated call changed: {first:?} then {second:?}"));
                }
                if let Ok(matched) = first {
                    let walked = walk_with_parent_results(&matcher, path)?;
                    let cold = matcher
                        .matches_using_parent_results(path, &MatchInfo::default())
                        .map(|(m, _)| m)
                        .map_err(|e| e.to_string())?;
                    if walked != matched || cold != matched {
                        return Err(format!(
                            "MatchesOrParentMatches={matched} but MatchesUsingParentResults \
                             walked={walked} cold={cold}"
                        ));
                    }
                }
                first.map_err(|e| e.to_string())
            }
        },
        other => return Err(format!("unknown api {other:?}")),
    };
    match (outcome, expect_error) {
        (Ok(got), false) if got == expect => Ok(()),
        (Ok(got), false) => Err(format!("got {got}, want {expect}")),
        (Ok(got), true) => Err(format!("got {got}, want an error")),
        (Err(_), true) if !expect => Ok(()),
        (Err(e), _) => Err(format!("error {e:?}, want {expect}")),
    }
}

#[test]
fn matches() {
    let mut tally = Tally::new("matches", 138);
    for (index, row) in table("patternmatcher_matches.json").iter().enumerate() {
        let id = format!(
            "#{index} {} {} patterns={} path={}",
            row.get("suite").and_then(Value::as_str).unwrap_or("?"),
            row.get("api").and_then(Value::as_str).unwrap_or("?"),
            row.get("patterns")
                .map(Value::to_string)
                .unwrap_or_default(),
            row.get("path").map(Value::to_string).unwrap_or_default(),
        );
        if row.get("os").and_then(Value::as_str) == Some("windows") {
            tally.not_run.push(id);
            continue;
        }
        tally.check(id, run_matches_row(row));
    }
    tally.finish();
}

/// The TSV copy of the same table must stay in step with the JSON that the
/// `matches` test runs.
#[test]
fn matches_tsv_is_the_json_table() {
    let path = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/conformance/dockerignore/patternmatcher_matches.tsv"
    ));
    let text = std::fs::read_to_string(&path).expect("tsv readable");
    let json = table("patternmatcher_matches.json");
    let rows: Vec<&str> = text.lines().skip(1).filter(|l| !l.is_empty()).collect();
    assert_eq!(rows.len(), json.len(), "row count");
    for (line, row) in rows.iter().zip(&json) {
        let cols: Vec<&str> = line.split('\t').collect();
        let patterns: Value = serde_json::from_str(cols.get(3).copied().unwrap_or("null"))
            .expect("patterns_json column");
        let path: Value =
            serde_json::from_str(cols.get(4).copied().unwrap_or("null")).expect("path_json column");
        assert_eq!(Some(&patterns), row.get("patterns"), "{line}");
        assert_eq!(Some(&path), row.get("path"), "{line}");
        assert_eq!(
            cols.get(5).copied(),
            row.get("expect").map(|v| v.to_string()).as_deref(),
            "{line}"
        );
        assert_eq!(
            cols.get(6).copied(),
            row.get("error").map(|v| v.to_string()).as_deref(),
            "{line}"
        );
    }
}

fn match_type_name(kind: MatchType) -> &'static str {
    match kind {
        MatchType::Exact => "exactMatch",
        MatchType::Prefix => "prefixMatch",
        MatchType::Suffix => "suffixMatch",
        MatchType::Regexp => "regexpMatch",
        MatchType::Invalid => "unknownMatch",
    }
}

/// The table gives docker's match type and, for regexp patterns, the Go
/// regular expression text. Berth builds that same Go text before giving it
/// Go's meaning in the `regex` crate, so it is compared exactly
/// (`regexp_slash`); `regexp_backslash` is the Windows-separator variant and
/// does not apply.
fn run_compile_row(row: &Value) -> Result<(), String> {
    let pattern = str_field(row, "pattern")?;
    let want_type = str_field(row, "matchType")?;
    let want_regexp = str_field(row, "regexp_slash")?;
    let matcher = PatternMatcher::new([pattern]).map_err(|e| e.to_string())?;
    let [compiled] = matcher.patterns() else {
        return Err(format!("{} patterns, want 1", matcher.patterns().len()));
    };
    let got_type = match_type_name(compiled.match_type());
    if got_type != want_type {
        return Err(format!("match type {got_type}, want {want_type}"));
    }
    let got_regexp = compiled.regexp().unwrap_or("");
    if got_regexp != want_regexp {
        return Err(format!("regexp {got_regexp:?}, want {want_regexp:?}"));
    }
    Ok(())
}

#[test]
fn compile() {
    let mut tally = Tally::new("compile", 21);
    for (index, row) in table("patternmatcher_compile.json").iter().enumerate() {
        let id = format!(
            "#{index} {}",
            row.get("pattern").map(Value::to_string).unwrap_or_default()
        );
        tally.check(id, run_compile_row(row));
    }
    tally.finish();
}

/// A `null` input is moby's nil reader (no ignore file), which reads as no
/// patterns; `read` takes text, so it is given the empty text.
fn run_readall_row(row: &Value) -> Result<(), String> {
    let input = match row.get("input") {
        None | Some(Value::Null) => "",
        Some(Value::String(text)) => text,
        Some(other) => return Err(format!("input {other} is not text")),
    };
    let want = strings(row.get("expect"))?;
    let got = read(input);
    if got == want {
        Ok(())
    } else {
        Err(format!("got {got:?}, want {want:?}"))
    }
}

#[test]
fn readall() {
    let mut tally = Tally::new("readall", 2);
    for (index, row) in table("ignorefile_readall.json").iter().enumerate() {
        let id = format!(
            "#{index} {}",
            row.get("suite").and_then(Value::as_str).unwrap_or("?")
        );
        tally.check(id, run_readall_row(row));
    }
    tally.finish();
}
