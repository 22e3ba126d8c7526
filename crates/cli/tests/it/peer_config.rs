//! docker-compose 1.29.2's `config` acceptance tests that check what the
//! command prints (`--services`, `--volumes`, `--profiles`, `--hash`, `-q`,
//! errors), run on the real `berth` binary with the upstream command line.
//! The cases that compare the printed configuration itself run in-process in
//! `crates/compose/tests/it/v1_config.rs`.

use crate::common::{conformance, report, text};
use serde_json::Value;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

/// Cases with output checks other than the configuration, as the README counts them.
const OUTPUT_CASES: usize = 8;

fn v1_root() -> PathBuf {
    conformance().join("compose/fixtures/docker-compose-v1")
}

/// `tests/fixtures/X` of the upstream repository → the fixture here.
fn fixture(p: &str) -> PathBuf {
    v1_root().join(
        p.trim_start_matches("tests/fixtures")
            .trim_start_matches('/'),
    )
}

fn run(case: &Value) -> Output {
    let cwd = case["base_dir"]
        .as_str()
        .map(fixture)
        .unwrap_or_else(v1_root);
    let args: Vec<String> = case["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let a = a.as_str().unwrap();
            match a.strip_prefix("tests/fixtures/") {
                Some(_) => fixture(a).to_string_lossy().into_owned(),
                None => a.to_string(),
            }
        })
        .collect();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
    cmd.current_dir(&cwd).args(&args).env_clear();
    cmd.env("PATH", std::env::var("PATH").unwrap_or_default());
    cmd.env("HOME", "/home/tester");
    for (k, v) in case["env"].as_object().unwrap() {
        cmd.env(k, v.as_str().unwrap());
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run berth");
    let stdin = case["stdin"].as_str().unwrap_or_default().to_string();
    let mut pipe = child.stdin.take().expect("stdin");
    // Written from a thread: berth may print before it reads all of its input.
    let writer = std::thread::spawn(move || pipe.write_all(stdin.as_bytes()));
    let out = child.wait_with_output().expect("berth output");
    writer
        .join()
        .expect("stdin writer")
        .expect("write berth's stdin");
    out
}

fn check(case: &Value) -> Result<(), String> {
    let out = run(case);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    let want_code = case["returncode"].as_i64().unwrap_or(0);
    if out.status.code() != Some(want_code as i32) {
        return Err(format!(
            "exit {:?}, expected {want_code} (stderr {stderr:?})",
            out.status.code()
        ));
    }
    for check in case["checks"].as_array().unwrap() {
        let expected = &check["expected"];
        match check["kind"].as_str().unwrap() {
            "config_equals" => {} // compared in crates/compose/tests/it/v1_config.rs
            "stdout_lines_set" => {
                let mut want: Vec<&str> = expected
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|s| s.as_str().unwrap())
                    .collect();
                let mut got: Vec<&str> = stdout.lines().collect();
                want.sort_unstable();
                got.sort_unstable();
                if want != got {
                    return Err(format!("stdout lines {got:?}, expected {want:?}"));
                }
            }
            "stdout_equals" => {
                if stdout != expected.as_str().unwrap() {
                    return Err(format!("stdout {stdout:?}, expected {expected}"));
                }
            }
            "stdout_not_contains" => {
                if stdout.contains(expected.as_str().unwrap()) {
                    return Err(format!("stdout contains {expected}"));
                }
            }
            "stderr_contains" => {
                if !stderr.contains(expected.as_str().unwrap()) {
                    return Err(format!("stderr {stderr:?} lacks {expected}"));
                }
            }
            "note" => {
                // `--hash=*`: upstream checks a `SERVICE HASH` line for every
                // service; the hash values themselves are v1's own.
                let mut names = Vec::new();
                for line in stdout.lines() {
                    match line.split(' ').collect::<Vec<_>>().as_slice() {
                        [name, hash]
                            if hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()) =>
                        {
                            names.push(*name)
                        }
                        _ => return Err(format!("not a `SERVICE HASH` line: {line:?}")),
                    }
                }
                names.sort_unstable();
                if names != ["other", "web"] {
                    return Err(format!("hashes for {names:?}, expected other and web"));
                }
            }
            other => return Err(format!("unknown check kind {other}")),
        }
    }
    Ok(())
}

#[test]
fn docker_compose_v1_config_output() {
    let data: Value = serde_json::from_str(
        &std::fs::read_to_string(
            conformance().join("compose/v1-config-expected/cli_test_config_cases.json"),
        )
        .expect("v1 config cases"),
    )
    .expect("v1 config cases are JSON");
    let mut ran = 0;
    let mut failures = Vec::new();
    for case in data["cases"].as_array().unwrap() {
        let checks_output = case["checks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["kind"] != "config_equals");
        if !checks_output || case["skipped"].as_bool() == Some(true) {
            continue;
        }
        ran += 1;
        if let Err(e) = check(case) {
            failures.push(format!("{}: {e}", case["test"].as_str().unwrap()));
        }
    }
    report(
        "docker-compose 1.29.2 config (output)",
        ran - failures.len(),
        ran,
        &failures,
    );
    assert!(failures.is_empty(), "{failures:#?}");
    assert_eq!(ran, OUTPUT_CASES, "cases run");
}
