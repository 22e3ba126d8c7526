//! docker compose v2's `config` end-to-end expectations (substring checks on
//! the exact output, as upstream makes them).

use crate::common::{berth, conformance, report, text};
use serde_json::Value;

#[test]
fn docker_compose_v2_config_expectations() {
    let data: Value = serde_json::from_str(
        &std::fs::read_to_string(
            conformance().join("compose/v2-config-expected/e2e_config_cases.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let base = conformance().join("compose/fixtures/docker-compose-v2");
    let cases = data["cases"].as_array().unwrap();
    let mut failures = Vec::new();
    for case in cases {
        let test = case["test"].as_str().unwrap();
        // The process sees its working directory with symlinks resolved
        // (CI may put ../shared behind one), so <DIR> must be the real path.
        let cwd = std::fs::canonicalize(base.join(case["cwd"].as_str().unwrap())).unwrap();
        let args: Vec<&str> = case["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        let env: Vec<(&str, &str)> = case["env"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str().unwrap()))
            .collect();
        let out = berth(&cwd, &args, &env);
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        let project = berth_compose::loader::normalize_project_name(
            &cwd.file_name().unwrap().to_string_lossy(),
        );
        let subst = |s: &str| {
            s.replace("<PROJECT>", &project)
                .replace("<DIR>", &cwd.to_string_lossy())
        };
        let mut problems = Vec::new();
        if let Some(code) = case.get("exit_code").and_then(Value::as_i64) {
            if out.status.code() != Some(code as i32) {
                problems.push(format!(
                    "exit code {:?}, expected {code}",
                    out.status.code()
                ));
            }
        }
        for (key, haystack) in [
            ("stdout_contains", stdout.clone()),
            ("stderr_contains", stderr.clone()),
            ("output_contains", format!("{stdout}{stderr}")),
        ] {
            for want in case
                .get(key)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let want = subst(want.as_str().unwrap());
                if !haystack.contains(&want) {
                    problems.push(format!("{key} {want:?} not in {haystack:?}"));
                }
            }
        }
        if !problems.is_empty() {
            failures.push(format!("{test}: {}", problems.join("; ")));
        }
    }
    report(
        "docker compose v2 config (e2e)",
        cases.len() - failures.len(),
        cases.len(),
        &failures,
    );
    assert!(failures.is_empty(), "{failures:#?}");
    // The README's count: an empty or truncated data set must not pass.
    assert_eq!(cases.len(), 20, "docker compose v2 config cases");
}
