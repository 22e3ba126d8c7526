//! docker-compose 1.29.2's `config` acceptance tests that check the printed
//! configuration (`config_equals`): berth's normalized project must match the
//! expected output, read as plain JSON, at the path the upstream test checks
//! (the shape differences between v1's output and the compose spec are the
//! named rules of `compare.rs`). The cases that check `config`'s other
//! outputs (`--services`, `--volumes`, `--profiles`, `--hash`, `-q`, errors)
//! run the `berth` binary in `crates/cli/tests/it/peer_config.rs`.

use crate::common::{conformance, options, report};
use crate::compare;
use serde_json::Value;
use std::path::PathBuf;

fn v1_root() -> PathBuf {
    berth_compose::normalize::clean_path(&conformance().join("compose/fixtures/docker-compose-v1"))
}

fn fixture_path(p: &str) -> PathBuf {
    v1_root().join(
        p.trim_start_matches("tests/fixtures/")
            .trim_start_matches("tests/fixtures"),
    )
}

fn replace_abs(v: &Value) -> Value {
    match v {
        Value::String(s) => {
            let mut out = s.clone();
            while let Some(start) = out.find("<ABS:") {
                let Some(end) = out[start..].find('>') else {
                    break;
                };
                let rel = &out[start + 5..start + end];
                out = format!(
                    "{}{}{}",
                    &out[..start],
                    fixture_path(rel).display(),
                    &out[start + end + 1..]
                );
            }
            Value::String(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(replace_abs).collect()),
        Value::Object(m) => {
            Value::Object(m.iter().map(|(k, v)| (k.clone(), replace_abs(v))).collect())
        }
        other => other.clone(),
    }
}

/// berth's project for the case's command line (without the project name,
/// which v1 does not print), or the load error.
fn run_case(case: &Value) -> Result<Value, String> {
    let cwd = case["base_dir"]
        .as_str()
        .map(fixture_path)
        .unwrap_or_else(v1_root);
    let mut opts = options(&cwd);
    for (k, v) in case["env"].as_object().unwrap() {
        opts.os_env
            .insert(k.clone(), v.as_str().unwrap().to_string());
    }
    let args: Vec<String> = case["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-f" => {
                let f = it.next().unwrap();
                let f = f
                    .strip_prefix("tests/fixtures/")
                    .map(|r| v1_root().join(r))
                    .unwrap_or_else(|| PathBuf::from(f));
                opts.files.push(f);
            }
            "--env-file" => opts.env_files.push(PathBuf::from(it.next().unwrap())),
            "--project-directory" => {
                opts.project_directory = Some(PathBuf::from(it.next().unwrap()))
            }
            "config" => {}
            other => return Err(format!("flag {other} is not a config_equals case's")),
        }
    }
    let loaded = berth_compose::load(&opts).map_err(|e| e.to_string())?;
    let mut project = serde_json::to_value(&loaded.project).unwrap();
    project.as_object_mut().unwrap().shift_remove("name");
    Ok(project)
}

/// Keys berth prints that docker-compose 1.x leaves out, each for a reason.
fn v1_omits(path: &str, key: &str, value: &Value) -> bool {
    let in_service = path.starts_with("services.") && path.matches('.').count() == 1;
    let only_default = |v: &Value| {
        v.as_object()
            .is_some_and(|m| m.keys().all(|k| k == "default"))
    };
    match key {
        // The spec puts services that name no network on `default` and
        // defines it; v1 does the same without printing it.
        "networks" if in_service || path.is_empty() => only_default(value),
        "default" => path == "networks",
        // The spec names every network and volume (`<project>_<key>`); v1 does
        // not print the name of one the project creates.
        "name" => path.starts_with("networks.") || path.starts_with("volumes."),
        // Defaults the spec writes out: a port's mode and protocol, the build's Dockerfile.
        "mode" => path.contains(".ports[") && value == "ingress",
        "protocol" => path.contains(".ports[") && value == "tcp",
        "dockerfile" => path.ends_with(".build") && value == "Dockerfile",
        _ => false,
    }
}

fn at<'a>(v: &'a Value, path: &[Value]) -> Option<&'a Value> {
    path.iter()
        .try_fold(v, |v, seg| v.get(seg.as_str().unwrap()))
}

fn check(case: &Value) -> Result<(), String> {
    let project = run_case(case).map_err(|e| format!("load failed: {e}"))?;
    for check in case["checks"].as_array().unwrap() {
        if check["kind"] != "config_equals" {
            continue;
        }
        let path = check["path"].as_array().cloned().unwrap_or_default();
        let mut want = replace_abs(&check["expected"]);
        // docker compose v2 drops the obsolete `version`, and so does berth.
        if let Some(m) = want.as_object_mut() {
            m.shift_remove("version");
        }
        let got = at(&project, &path).ok_or_else(|| format!("nothing at {path:?}"))?;
        let name = path
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(".");
        let diffs = compare::diff(&want, got, &name, &v1_omits);
        if !diffs.is_empty() {
            return Err(diffs.join("; "));
        }
    }
    Ok(())
}

/// The README's count: cases that check the printed configuration, and
/// cases upstream skips (docker-compose 1.x's `--compatibility` mode).
const CONFIG_EQUALS_CASES: usize = 13;
const SKIPPED_UPSTREAM: usize = 3;

#[test]
fn docker_compose_v1_config_expectations() {
    let data: Value = serde_json::from_str(
        &std::fs::read_to_string(
            conformance().join("compose/v1-config-expected/cli_test_config_cases.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let cases = data["cases"].as_array().unwrap();
    let mut failures = Vec::new();
    let mut notes = Vec::new();
    let (mut ran, mut skipped) = (0, 0);
    for case in cases {
        let test = case["test"].as_str().unwrap();
        let checks_config = case["checks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["kind"] == "config_equals");
        if !checks_config {
            continue;
        }
        if case["skipped"].as_bool() == Some(true) {
            // Skipped upstream too: `--compatibility` rewrote v3 `deploy` into v2 keys, a v1-only mode.
            notes.push(format!(
                "not run: {test} (skipped upstream; docker-compose 1.x --compatibility mode)"
            ));
            skipped += 1;
            continue;
        }
        ran += 1;
        if let Err(e) = check(case) {
            failures.push(format!("{test}: {e}"));
        }
    }
    notes.extend(failures.iter().cloned());
    report(
        "docker-compose 1.29.2 config (configuration)",
        ran - failures.len(),
        ran,
        &notes,
    );
    assert!(failures.is_empty(), "{failures:#?}");
    assert_eq!(ran, CONFIG_EQUALS_CASES, "cases run");
    assert_eq!(skipped, SKIPPED_UPSTREAM, "cases skipped upstream");
}
