//! compose-go's interpolation tests, run from the extracted tables in
//! `shared/conformance/interpolation/` (read in place, see its `_about`).
//!
//! Every section prints `conformance interpolation.<section>: N/M passed` (visible with
//! `--nocapture`) and must pass completely; no row is skipped.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use berth_compose::interpolate::{
    describe_at, extract_variables, operator_for, substitute, substitute_tracking_unset,
    InterpolateError, Variable,
};
use serde_json::{Map, Value};

fn data_path(name: &str) -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/conformance/interpolation/"
    ))
    .join(name)
}

fn read_data(name: &str) -> String {
    let path = data_path(name);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("conformance data {} unreadable: {e}", path.display()))
}

fn table() -> Value {
    serde_json::from_str(&read_data("compose_go_interpolation.json")).expect("valid JSON table")
}

fn rows<'a>(table: &'a Value, section: &str) -> &'a [Value] {
    table[section]
        .as_array()
        .unwrap_or_else(|| panic!("section {section} missing"))
}

fn env_of(row_env: &Value) -> HashMap<String, String> {
    row_env
        .as_object()
        .map(|env| {
            env.iter()
                .map(|(k, v)| (k.clone(), v.as_str().expect("string env value").to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

fn str_field<'a>(row: &'a Value, field: &str) -> Option<&'a str> {
    row.get(field).and_then(Value::as_str)
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

/// compose-go's `interpolation.Interpolate`, reduced to what the tables need:
/// every string is substituted, the path is dot-joined keys with `[]` for
/// list items, and `casts` (path pattern with `*` for any one segment →
/// "int"/"bool") converts the substituted text.
fn interpolate_document(
    value: &Value,
    env: &HashMap<String, String>,
    casts: &[(Vec<String>, String)],
) -> Result<Value, String> {
    fn walk(
        value: &Value,
        path: &mut Vec<String>,
        env: &HashMap<String, String>,
        casts: &[(Vec<String>, String)],
    ) -> Result<Value, String> {
        match value {
            Value::String(text) => {
                let joined = path.join(".");
                let substituted = substitute(text, &|k| env.get(k).cloned())
                    .map_err(|e| describe_at(&joined, &e))?;
                let cast = casts.iter().find(|(pattern, _)| {
                    pattern.len() == path.len()
                        && pattern
                            .iter()
                            .zip(path.iter())
                            .all(|(p, s)| p == "*" || p == s)
                });
                match cast.map(|(_, kind)| kind.as_str()) {
                    None => Ok(Value::String(substituted)),
                    Some("int") => substituted
                        .parse::<i64>()
                        .map(Value::from)
                        .map_err(|e| format!("error while interpolating {joined}: failed to cast to expected type: {e}")),
                    Some("bool") => match substituted.as_str() {
                        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(Value::Bool(true)),
                        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(Value::Bool(false)),
                        other => Err(format!("error while interpolating {joined}: failed to cast to expected type: invalid boolean {other:?}")),
                    },
                    Some(other) => Err(format!("test harness: unknown cast {other}")),
                }
            }
            Value::Object(map) => {
                let mut out = Map::new();
                for (key, elem) in map {
                    path.push(key.clone());
                    let result = walk(elem, path, env, casts);
                    path.pop();
                    out.insert(key.clone(), result?);
                }
                Ok(Value::Object(out))
            }
            Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    path.push("[]".to_owned());
                    let result = walk(item, path, env, casts);
                    path.pop();
                    out.push(result?);
                }
                Ok(Value::Array(out))
            }
            other => Ok(other.clone()),
        }
    }
    walk(value, &mut Vec::new(), env, casts)
}

/// The document compose-go's `TestValid*Interpolation` builds around a value.
fn document_with_testvar(template: &str) -> Value {
    serde_json::json!({ "myservice": { "environment": { "TESTVAR": template } } })
}

fn check_substitute_row(row: &Value) -> Result<(), String> {
    let env = env_of(&row["env"]);
    let template = str_field(row, "template").ok_or("row without template")?;
    let mut unset = Vec::new();
    let result = substitute_tracking_unset(template, &|k| env.get(k).cloned(), &mut |name| {
        unset.push(name.to_owned())
    });
    match (
        str_field(row, "expect"),
        str_field(row, "error_contains"),
        result,
    ) {
        (Some(expect), _, Ok(got)) if got == expect => {}
        (Some(expect), _, got) => return Err(format!("expected {expect:?}, got {got:?}")),
        (None, Some(needle), Err(err)) if err.to_string().contains(needle) => {}
        (None, Some(needle), got) => {
            return Err(format!(
                "expected error containing {needle:?}, got {:?}",
                got.map_err(|e| e.to_string())
            ))
        }
        (None, None, _) => return Err("row without expectation".into()),
    }
    // The upstream tests count logged "variable is not set" warnings.
    if let Some(note) = str_field(row, "note") {
        if let Some(expected) = expected_warning_count(note) {
            if unset.len() != expected {
                return Err(format!(
                    "expected {expected} unset-variable warning(s), got {unset:?}"
                ));
            }
        }
    }
    Ok(())
}

/// "expects 0 warnings logged", "expects exactly 1 warning (B unset)", …
fn expected_warning_count(note: &str) -> Option<usize> {
    if !note.contains("warning") {
        return None;
    }
    note.split_whitespace().find_map(|word| word.parse().ok())
}

fn check_document_row(row: &Value) -> Result<(), String> {
    let env = env_of(&row["env"]);
    let template = str_field(row, "template").ok_or("row without template")?;
    let result = interpolate_document(&document_with_testvar(template), &env, &[]);
    match (
        str_field(row, "expect"),
        str_field(row, "error_equals"),
        result,
    ) {
        (Some(expect), _, Ok(doc)) => {
            let got = &doc["myservice"]["environment"]["TESTVAR"];
            if got == expect {
                Ok(())
            } else {
                Err(format!("expected {expect:?}, got {got}"))
            }
        }
        (None, Some(expected), Err(message)) if message == expected => Ok(()),
        (expect, error, got) => Err(format!(
            "expected {:?}, got {got:?}",
            expect.or(error).unwrap_or("<nothing>")
        )),
    }
}

#[test]
fn substitute_table() {
    let table = table();
    let mut tally = Tally::new("interpolation.substitute", 70);
    for (i, row) in rows(&table, "substitute").iter().enumerate() {
        let id = format!("substitute[{i}] {} {:?}", row["source"], row["template"]);
        tally.check(id, check_substitute_row(row));
    }
    tally.finish();
}

#[test]
fn document_value_table() {
    let table = table();
    let mut tally = Tally::new("interpolation.document_value", 31);
    for (i, row) in rows(&table, "document_value").iter().enumerate() {
        let id = format!(
            "document_value[{i}] {} {:?}",
            row["source"], row["template"]
        );
        tally.check(id, check_document_row(row));
    }
    tally.finish();
}

#[test]
fn whole_document_table() {
    let table = table();
    let mut tally = Tally::new("interpolation.whole_document", 3);
    for (i, row) in rows(&table, "whole_document").iter().enumerate() {
        let id = format!("whole_document[{i}] {}", row["source"]);
        let env = env_of(&row["env"]);
        let casts: Vec<(Vec<String>, String)> = row
            .get("cast")
            .and_then(Value::as_object)
            .map(|casts| {
                casts
                    .iter()
                    .map(|(pattern, kind)| {
                        (
                            pattern.split('.').map(str::to_owned).collect(),
                            kind.as_str().unwrap_or_default().to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let result = interpolate_document(&row["input"], &env, &casts);
        let outcome = match (row.get("expect"), str_field(row, "error_equals"), result) {
            (Some(expect), _, Ok(got)) if &got == expect => Ok(()),
            (None, Some(expected), Err(message)) if message == expected => Ok(()),
            (expect, error, got) => Err(format!(
                "expected {:?}, got {got:?}",
                expect.map(Value::to_string).or(error.map(str::to_owned))
            )),
        };
        tally.check(id, outcome);
    }
    tally.finish();
}

#[test]
fn operator_choice_table() {
    let table = table();
    let mut tally = Tally::new("interpolation.operator_choice", 12);
    for row in rows(&table, "operator_choice") {
        let input = str_field(row, "input").unwrap_or_default();
        let expected = str_field(row, "symbol").unwrap_or_default();
        let got = operator_for(input).map(|op| op.symbol());
        let outcome = if got == Some(expected) {
            Ok(())
        } else {
            Err(format!("expected {expected:?}, got {got:?}"))
        };
        tally.check(
            format!("operator_choice {} {input:?}", row["name"]),
            outcome,
        );
    }
    tally.finish();
}

/// compose-go's `ExtractVariables` over a whole document: the variables of
/// every string, merged by name.
fn extract_from_document(value: &Value, into: &mut BTreeMap<String, Variable>) {
    match value {
        Value::String(text) => into.extend(extract_variables(text)),
        Value::Object(map) => map.values().for_each(|v| extract_from_document(v, into)),
        Value::Array(items) => items.iter().for_each(|v| extract_from_document(v, into)),
        _ => {}
    }
}

#[test]
fn extract_variables_table() {
    let table = table();
    let mut tally = Tally::new("interpolation.extract_variables", 18);
    for row in rows(&table, "extract_variables") {
        let mut found = BTreeMap::new();
        extract_from_document(&row["input"], &mut found);
        let got: BTreeMap<String, Value> = found
            .into_iter()
            .map(|(name, var)| (name, serde_json::to_value(var).expect("serializable")))
            .collect();
        let expected: BTreeMap<String, Value> = row["expect"]
            .as_object()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        let outcome = if got == expected {
            Ok(())
        } else {
            Err(format!("expected {expected:?}, got {got:?}"))
        };
        tally.check(format!("extract_variables {}", row["name"]), outcome);
    }
    tally.finish();
}

/// The TSV holds the `substitute` and `document_value` rows again, in a
/// second extraction; rows from interpolation_test.go (`interpolation.*`)
/// run through the document walk, whose errors carry the path.
#[test]
fn substitute_tsv() {
    let tsv = read_data("compose_go_substitute.tsv");
    let mut lines = tsv.lines();
    let header = lines.next().unwrap_or_default();
    assert_eq!(
        header, "source\tenv_json\ttemplate_json\tkind\texpected_json",
        "unexpected TSV header"
    );
    let mut tally = Tally::new("interpolation.substitute_tsv", 101);
    for (i, line) in lines.enumerate().filter(|(_, l)| !l.is_empty()) {
        let fields: Vec<&str> = line.split('\t').collect();
        let id = format!("tsv line {}: {}", i + 2, fields.first().unwrap_or(&""));
        let outcome = (|| -> Result<(), String> {
            let [source, env_json, template_json, kind, expected_json] = fields[..] else {
                return Err(format!("expected 5 fields, got {}", fields.len()));
            };
            let parse = |text: &str| -> Result<Value, String> {
                serde_json::from_str(text).map_err(|e| format!("bad JSON {text:?}: {e}"))
            };
            let env = parse(env_json)?;
            let template = parse(template_json)?;
            let expected = parse(expected_json)?;
            let field = match kind {
                "ok" => "expect",
                "error_contains" => "error_contains",
                "error_equals" => "error_equals",
                other => return Err(format!("unknown kind {other:?}")),
            };
            let row = serde_json::json!({ "env": env, "template": template, field: expected });
            if source.starts_with("interpolation.") {
                check_document_row(&row)
            } else {
                check_substitute_row(&row)
            }
        })();
        tally.check(id, outcome);
    }
    tally.finish();
}

/// `InterpolateError` must stay usable as a plain error value.
#[test]
fn errors_are_std_errors() {
    fn assert_error<E: std::error::Error + Send + Sync + 'static>() {}
    assert_error::<InterpolateError>();
}
