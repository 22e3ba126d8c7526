//! docker-compose 1.29.2's `config` acceptance tests. Outputs are compared
//! semantically: the expected YAML is loaded through berth too (it keeps
//! `version:` and v1's short forms) and the two projects must be equal at the
//! path the upstream test checks.

use crate::common::{conformance, options, report};
use serde_json::Value;
use std::path::{Path, PathBuf};

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

struct Outcome {
    stdout: String,
    stderr: String,
    project: Option<Value>,
}

fn run_case(case: &Value) -> Outcome {
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
    let mut flags = Vec::new();
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
            other => flags.push(other.to_string()),
        }
    }
    if let Some(stdin) = case["stdin"].as_str() {
        opts.stdin = Some(stdin.to_string());
    }
    match berth_compose::load(&opts) {
        Err(e) => Outcome {
            stdout: String::new(),
            stderr: e.to_string(),
            project: None,
        },
        Ok(loaded) => {
            let p = &loaded.project;
            let stdout = if flags.iter().any(|f| f == "--quiet") {
                String::new()
            } else if flags.iter().any(|f| f == "--services") {
                p.services.keys().map(|k| format!("{k}\n")).collect()
            } else if flags.iter().any(|f| f == "--volumes") {
                p.volumes.keys().map(|k| format!("{k}\n")).collect()
            } else if flags.iter().any(|f| f == "--profiles") {
                loaded
                    .all_profiles
                    .iter()
                    .map(|k| format!("{k}\n"))
                    .collect()
            } else if flags.iter().any(|f| f.starts_with("--hash")) {
                p.services
                    .iter()
                    .map(|(k, s)| format!("{k} {}\n", berth_compose::hash::service_hash(s)))
                    .collect()
            } else {
                berth_compose::emit::to_yaml(&berth_compose::emit::ordered(p))
            };
            let mut project = serde_json::to_value(p).unwrap();
            project.as_object_mut().unwrap().shift_remove("name");
            Outcome {
                stdout,
                stderr: String::new(),
                project: Some(project),
            }
        }
    }
}

/// Load the expected output through berth, in the same directory and under
/// the same project name.
fn load_expected(case: &Value, expected: &Value, name: &str) -> Result<Value, String> {
    let cwd = case["base_dir"]
        .as_str()
        .map(fixture_path)
        .unwrap_or_else(v1_root);
    let mut opts = options(&cwd);
    opts.files = vec!["-".into()];
    opts.stdin = Some(serde_json::to_string(&replace_abs(expected)).unwrap());
    opts.project_directory = Some(cwd.clone());
    opts.project_name = Some(name.to_string());
    // Expected outputs are already resolved; leave env_file alone.
    opts.skip_env_resolution = true;
    let loaded = berth_compose::load(&opts).map_err(|e| e.to_string())?;
    let mut v = serde_json::to_value(&loaded.project).unwrap();
    v.as_object_mut().unwrap().shift_remove("name");
    Ok(v)
}

fn at<'a>(v: &'a Value, path: &[Value]) -> Option<&'a Value> {
    path.iter()
        .try_fold(v, |v, seg| v.get(seg.as_str().unwrap()))
}

fn check(case: &Value) -> Result<(), String> {
    let out = run_case(case);
    let name = Path::new(case["base_dir"].as_str().unwrap_or("x"))
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_string();
    for check in case["checks"].as_array().unwrap() {
        let expected = &check["expected"];
        match check["kind"].as_str().unwrap() {
            "stdout_lines_set" => {
                let mut want: Vec<String> = expected
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|s| s.as_str().unwrap().to_string())
                    .collect();
                let mut got: Vec<String> = out.stdout.lines().map(str::to_string).collect();
                want.sort();
                got.sort();
                if want != got {
                    return Err(format!(
                        "stdout lines {got:?}, expected {want:?} (stderr: {})",
                        out.stderr
                    ));
                }
            }
            "stdout_equals" => {
                if out.stdout != expected.as_str().unwrap() || !out.stderr.is_empty() {
                    return Err(format!("stdout {:?}, stderr {:?}", out.stdout, out.stderr));
                }
            }
            "stdout_not_contains" => {
                if out.stdout.contains(expected.as_str().unwrap()) {
                    return Err(format!("stdout contains {expected}"));
                }
            }
            "stderr_contains" => {
                if !out.stderr.contains(expected.as_str().unwrap()) {
                    return Err(format!("stderr {:?} lacks {expected}", out.stderr));
                }
            }
            "note" => {
                // `--hash=*`: one `SERVICE HASH` line per service (the hash values are v1's own).
                let lines: Vec<&str> = out.stdout.lines().collect();
                let ok = !lines.is_empty()
                    && lines.iter().all(|l| matches!(l.split(' ').collect::<Vec<_>>().as_slice(), [_, h] if h.len() == 64));
                if !ok {
                    return Err(format!("hash output {:?}", out.stdout));
                }
            }
            "config_equals" => {
                let Some(project) = &out.project else {
                    return Err(format!("load failed: {}", out.stderr));
                };
                let project_name = case["base_dir"]
                    .as_str()
                    .map(|_| name.clone())
                    .unwrap_or_default();
                let path = check["path"].as_array().cloned().unwrap_or_default();
                // A check of one section gets the rest of a minimal file around it.
                let mut doc = expected.clone();
                for seg in path.iter().rev() {
                    doc = serde_json::json!({ seg.as_str().unwrap(): doc });
                }
                if doc.get("services").is_none() {
                    doc["services"] = serde_json::json!({});
                }
                let want = load_expected(case, &doc, &project_name_for(case, &project_name))?;
                let (got, want) = (at(project, &path), at(&want, &path));
                if got != want {
                    return Err(format!(
                        "at {path:?}:\n  got      {}\n  expected {}",
                        serde_json::to_string(&got).unwrap(),
                        serde_json::to_string(&want).unwrap()
                    ));
                }
            }
            other => return Err(format!("unknown check kind {other}")),
        }
    }
    Ok(())
}

fn project_name_for(case: &Value, dir_name: &str) -> String {
    match case["args"]
        .as_array()
        .unwrap()
        .iter()
        .position(|a| a == "--project-directory")
    {
        Some(i) => {
            let d = case["args"][i + 1].as_str().unwrap().trim_end_matches('/');
            Path::new(d)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .to_string()
        }
        None => dir_name.to_string(),
    }
}

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
    let mut ran = 0;
    for case in cases {
        let test = case["test"].as_str().unwrap();
        if case["skipped"].as_bool() == Some(true) {
            // Skipped upstream too: `--compatibility` rewrote v3 `deploy` into v2 keys, a v1-only mode.
            notes.push(format!(
                "not run: {test} (skipped upstream; docker-compose 1.x --compatibility mode)"
            ));
            continue;
        }
        ran += 1;
        if let Err(e) = check(case) {
            failures.push(format!("{test}: {e}"));
        }
    }
    notes.extend(failures.iter().cloned());
    report(
        "docker-compose 1.29.2 config",
        ran - failures.len(),
        ran,
        &notes,
    );
    assert!(failures.is_empty(), "{failures:#?}");
}
