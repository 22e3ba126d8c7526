//! compose-go's dotenv tests, run from the extracted table and fixture files
//! in `shared/conformance/dotenv/` (read in place, see the table's `_about`).
//!
//! Every section prints `conformance dotenv.<section>: N/M passed` (visible with
//! `--nocapture`) and must pass completely; no row is skipped.

use std::collections::HashMap;
use std::path::PathBuf;

use berth_compose::dotenv::{parse, parse_file, DotenvError};
use indexmap::IndexMap;
use serde_json::Value;

fn data_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/conformance/dotenv"
    ))
}

fn table() -> Value {
    let path = data_dir().join("compose_go_dotenv.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("conformance data {} unreadable: {e}", path.display()));
    serde_json::from_str(&text).expect("valid JSON table")
}

fn rows<'a>(table: &'a Value, section: &str) -> &'a [Value] {
    table[section]
        .as_array()
        .unwrap_or_else(|| panic!("section {section} missing"))
}

fn str_field<'a>(row: &'a Value, field: &str) -> Option<&'a str> {
    row.get(field).and_then(Value::as_str)
}

fn string_map(value: Option<&Value>) -> HashMap<String, String> {
    value
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

fn no_lookup(_: &str) -> Option<String> {
    None
}

/// Collects failures for a section, prints the pass-rate line, asserts
/// 100% of exactly the number of rows the README quotes (so an empty or
/// truncated table fails too).
struct Tally {
    section: &'static str,
    expected: usize,
    total: usize,
    failures: Vec<String>,
}

impl Tally {
    fn new(section: &'static str, expected: usize) -> Self {
        Tally {
            section,
            expected,
            total: 0,
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
            "conformance {}: {passed}/{} passed",
            self.section, self.total
        );
        for failure in &self.failures {
            println!("  FAIL {failure}");
        }
        assert_eq!(
            self.total, self.expected,
            "{}: {} rows, the suite has {}",
            self.section, self.total, self.expected
        );
        assert!(
            self.failures.is_empty(),
            "{}: {} of {} rows failed:\n{}",
            self.section,
            self.failures.len(),
            self.total,
            self.failures.join("\n")
        );
    }
}

/// Every expected key has the expected value (and, if `exact`, nothing else
/// is there).
fn compare(
    got: &IndexMap<String, String>,
    expected: &HashMap<String, String>,
    exact: bool,
) -> Result<(), String> {
    let mut problems = Vec::new();
    for (key, value) in expected {
        match got.get(key) {
            Some(v) if v == value => {}
            other => problems.push(format!("{key}: expected {value:?}, got {other:?}")),
        }
    }
    if exact {
        for key in got.keys().filter(|k| !expected.contains_key(*k)) {
            problems.push(format!("unexpected key {key:?}"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

fn expect_error(
    result: Result<IndexMap<String, String>, DotenvError>,
    needle: &str,
) -> Result<(), String> {
    match result {
        Err(err) if err.to_string().contains(needle) => Ok(()),
        other => Err(format!(
            "expected error containing {needle:?}, got {:?}",
            other.map_err(|e| e.to_string())
        )),
    }
}

#[test]
fn parse_line_table() {
    let table = table();
    let mut tally = Tally::new("dotenv.parse_line", 52);
    for (i, row) in rows(&table, "parse_line").iter().enumerate() {
        let input = str_field(row, "input").unwrap_or_default();
        let result = parse(input, &no_lookup);
        let outcome = if row.get("error").and_then(Value::as_bool) == Some(true) {
            match result {
                Err(_) => Ok(()),
                Ok(map) => Err(format!("expected an error, got {map:?}")),
            }
        } else {
            let key = str_field(row, "key").unwrap_or_default();
            let value = str_field(row, "value").unwrap_or_default();
            match result {
                Ok(map) if map.get(key).map(String::as_str) == Some(value) => Ok(()),
                other => Err(format!("expected {key:?}={value:?}, got {other:?}")),
            }
        };
        tally.check(format!("parse_line[{i}] {input:?}"), outcome);
    }
    tally.finish();
}

#[test]
fn expanding_table() {
    let table = table();
    let mut tally = Tally::new("dotenv.expanding", 8);
    for row in rows(&table, "expanding") {
        let input = str_field(row, "input").unwrap_or_default();
        let expected = string_map(row.get("expect"));
        let outcome = parse(input, &no_lookup)
            .map_err(|e| format!("error: {e}"))
            .and_then(|got| compare(&got, &expected, true));
        tally.check(format!("expanding {}", row["name"]), outcome);
    }
    tally.finish();
}

#[test]
fn unterminated_table() {
    let table = table();
    let mut tally = Tally::new("dotenv.unterminated", 8);
    for row in rows(&table, "unterminated") {
        let input = str_field(row, "input").unwrap_or_default();
        let needle = str_field(row, "error_contains").unwrap_or_default();
        tally.check(
            format!("unterminated {input:?}"),
            expect_error(parse(input, &no_lookup), needle),
        );
    }
    tally.finish();
}

/// Keys godotenv's `Read` leaves out (`^\s*\d`): it drops them after
/// parsing. Berth reads env files the way compose does (`ReadFile` /
/// `ParseWithLookup`, which keep them), so the harness applies `Read`'s
/// filter itself for the rows that came from a `Read` test.
fn read_filter(mut map: IndexMap<String, String>) -> IndexMap<String, String> {
    map.retain(|key, _| {
        !key.trim_start()
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit())
    });
    map
}

#[test]
fn fixture_files_table() {
    let table = table();
    let mut tally = Tally::new("dotenv.fixture_files", 9);
    for row in rows(&table, "fixture_files") {
        let file = str_field(row, "file").unwrap_or_default();
        let test = str_field(row, "test").unwrap_or_default();
        let presets = string_map(row.get("presets"));
        let lookup = |k: &str| presets.get(k).cloned();
        let result = parse_file(&data_dir().join(file), &lookup);
        let outcome = if let Some(needle) = str_field(row, "error_contains") {
            expect_error(result, needle)
        } else {
            let exact = row.get("exact").and_then(Value::as_bool) == Some(true);
            let expected = string_map(row.get("expect_subset"));
            result
                .map_err(|e| format!("error: {e}"))
                .map(|map| {
                    if test.starts_with("TestRead") {
                        read_filter(map)
                    } else {
                        map
                    }
                })
                .and_then(|got| compare(&got, &expected, exact))
        };
        tally.check(format!("fixture_files {test} {file}"), outcome);
    }
    tally.finish();
}

/// compose-go tests on fixtures that the table does not carry (godotenv_test.go:
/// TestUTF8BOM, TestInheritedEnvVariable*, TestExpandingEnvironmentWithLookup,
/// TestSubstitutions*Precedence), transcribed here. The shell environment is
/// the lookup.
#[test]
fn upstream_fixture_tests_not_in_table() {
    struct Case {
        name: &'static str,
        file: Option<&'static str>,
        content: &'static str,
        env: &'static [(&'static str, &'static str)],
        expect: &'static [(&'static str, &'static str)],
        absent: &'static [&'static str],
        exact: bool,
    }
    const PLAIN_A_TO_E: &[(&str, &str)] = &[
        ("OPTION_A", "1"),
        ("OPTION_B", "2"),
        ("OPTION_C", "3"),
        ("OPTION_D", "4"),
        ("OPTION_E", "5"),
    ];
    let cases = [
        Case {
            name: "TestUTF8BOM",
            file: Some("fixtures/utf8-bom.env"),
            content: "",
            env: &[],
            expect: PLAIN_A_TO_E,
            absent: &["\u{feff}OPTION_A"],
            exact: false,
        },
        Case {
            name: "TestInheritedEnvVariable",
            file: Some("fixtures/inherited-multi-var.env"),
            content: "",
            env: &[("VAR_TO_BE_LOADED_FROM_OS_ENV", "SOME_RANDOM_VALUE")],
            expect: &[
                ("VAR_TO_BE_LOADED_FROM_OS_ENV", "SOME_RANDOM_VALUE"),
                ("foo", "bar"),
                ("bar", "baz"),
            ],
            absent: &[],
            exact: true,
        },
        Case {
            name: "TestInheritedEnvVariableSingleVar",
            file: Some("fixtures/inherited-single-var.env"),
            content: "",
            env: &[("VAR_TO_BE_LOADED_FROM_OS_ENV", "SOME_RANDOM_VALUE")],
            expect: &[("VAR_TO_BE_LOADED_FROM_OS_ENV", "SOME_RANDOM_VALUE")],
            absent: &[],
            exact: true,
        },
        Case {
            name: "TestInheritedEnvVariableNotFound",
            file: Some("fixtures/inherited-not-found.env"),
            content: "",
            env: &[],
            expect: &[],
            absent: &["VARIABLE_NOT_FOUND"],
            exact: true,
        },
        Case {
            name: "TestExpandingEnvironmentWithLookup",
            file: None,
            content: "TEST=$ME",
            env: &[("ME", "YES")],
            expect: &[("TEST", "YES")],
            absent: &[],
            exact: true,
        },
        Case {
            name: "TestSubstitutionsWithEnvFilePrecedence",
            file: Some("fixtures/substitutions.env"),
            content: "",
            env: &[("OPTION_A", "5")],
            expect: &[
                ("OPTION_A", "1"),
                ("OPTION_B", "5"),
                ("OPTION_C", "5"),
                ("OPTION_D", "5_5"),
                ("OPTION_E", ""),
            ],
            absent: &[],
            exact: true,
        },
        Case {
            name: "TestSubstitutionsWithEnvFileDefaultValuePrecedence",
            file: Some("fixtures/substitutions-default.env"),
            content: "",
            env: &[("OPTION_A", "5")],
            expect: &[
                ("OPTION_A", "5"),
                ("OPTION_B", "5"),
                ("OPTION_C", "5"),
                ("OPTION_D", "5_5"),
                ("OPTION_E", ""),
            ],
            absent: &[],
            exact: true,
        },
        Case {
            name: "TestSubstitutionsWithUnsetVarEnvFileDefaultValuePrecedence",
            file: Some("fixtures/substitutions-default.env"),
            content: "",
            env: &[],
            expect: &[
                ("OPTION_A", "1"),
                ("OPTION_B", "1"),
                ("OPTION_C", "1"),
                ("OPTION_D", "1_1"),
                ("OPTION_E", ""),
            ],
            absent: &[],
            exact: true,
        },
    ];

    let mut tally = Tally::new("dotenv.upstream_extra", 8);
    for case in &cases {
        let env: HashMap<String, String> = case
            .env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lookup = |k: &str| env.get(k).cloned();
        let result = match case.file {
            Some(file) => parse_file(&data_dir().join(file), &lookup),
            None => parse(case.content, &lookup),
        };
        let expected: HashMap<String, String> = case
            .expect
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let outcome = result.map_err(|e| format!("error: {e}")).and_then(|got| {
            compare(&got, &expected, case.exact)?;
            match case.absent.iter().find(|k| got.contains_key(**k)) {
                Some(k) => Err(format!("{k:?} should be absent")),
                None => Ok(()),
            }
        });
        tally.check(case.name.to_owned(), outcome);
    }
    tally.finish();
}
