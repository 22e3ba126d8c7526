//! Behaviour of the CLI that users see: errors, exit codes, listings.

use crate::common::{berth, repo, text};
use std::path::PathBuf;

fn scratch(name: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("berth-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for (f, content) in files {
        let p = dir.join(f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
    dir
}

#[test]
fn seed_config_prints_the_normalized_v1_file() {
    let seed = repo().join("examples/seed");
    let out = berth(&seed, &["config"], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with("name: seed\nservices:\n  app:\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("    volumes_from:\n      - service:code:rw\n"),
        "{stdout}"
    );
    assert!(stdout.contains("        published: \"8080\"\n"), "{stdout}");
}

#[test]
fn yaml_error_names_file_line_column_and_shows_the_line() {
    let dir = scratch(
        "yamlerr",
        &[("compose.yaml", "services:\n  app:\n    image: a: b\n")],
    );
    let out = berth(&dir, &["config"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    let first = err.lines().next().unwrap();
    assert!(
        first.starts_with("error: ") && first.contains("compose.yaml:3:"),
        "{err}"
    );
    assert!(err.contains("3 |     image: a: b"), "{err}");
}

#[test]
fn schema_error_names_the_key_path() {
    let dir = scratch(
        "schemaerr",
        &[(
            "compose.yaml",
            "services:\n  app:\n    image: a\n    ports:\n      - {target: [1]}\n",
        )],
    );
    let out = berth(&dir, &["config"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("compose.yaml:5:") && err.contains("services.app.ports[0]"),
        "{err}"
    );
}

#[test]
fn missing_required_variable_is_named() {
    let dir = scratch(
        "varerr",
        &[(
            "compose.yaml",
            "services:\n  app:\n    image: ${TAG:?set TAG to the image tag}\n",
        )],
    );
    let out = berth(&dir, &["config"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("services.app.image") && err.contains("required variable TAG"),
        "{err}"
    );
    let ok = berth(&dir, &["config", "--images"], &[("TAG", "nginx:1")]);
    assert_eq!(text(&ok.stdout), "nginx:1\n");
}

#[test]
fn discovery_walks_up_and_merges_the_override_file() {
    let dir = scratch(
        "discover",
        &[
            (
                "compose.yaml",
                "services:\n  web:\n    image: a\n    ports: ['80:80']\n",
            ),
            ("compose.override.yaml", "services:\n  web:\n    image: b\n"),
            ("sub/deeper/.keep", ""),
        ],
    );
    let out = berth(&dir.join("sub/deeper"), &["config", "--images"], &[]);
    assert_eq!(text(&out.stdout), "b\n", "{}", text(&out.stderr));
    let named = berth(
        &dir,
        &["-p", "My Project!", "config", "--format", "json"],
        &[],
    );
    let v: serde_json::Value = serde_json::from_slice(&named.stdout).unwrap();
    assert_eq!(v["name"], "myproject");
}

#[test]
fn profiles_select_services() {
    let dir = scratch(
        "profiles",
        &[(
            "compose.yaml",
            "services:\n  web: {image: a}\n  debug: {image: b, profiles: [dev]}\n",
        )],
    );
    assert_eq!(
        text(&berth(&dir, &["config", "--services"], &[]).stdout),
        "web\n"
    );
    assert_eq!(
        text(&berth(&dir, &["--profile", "dev", "config", "--services"], &[]).stdout),
        "web\ndebug\n"
    );
    assert_eq!(
        text(
            &berth(
                &dir,
                &["config", "--services"],
                &[("COMPOSE_PROFILES", "dev")]
            )
            .stdout
        ),
        "web\ndebug\n"
    );
    assert_eq!(
        text(&berth(&dir, &["config", "--profiles"], &[]).stdout),
        "dev\n"
    );
}

#[test]
fn duplicate_published_port_is_refused() {
    let dir = scratch(
        "dupport",
        &[(
            "compose.yaml",
            "services:\n  a: {image: x, ports: ['8080:80']}\n  b: {image: y, ports: ['8080:81']}\n",
        )],
    );
    let out = berth(&dir, &["config", "-q"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("host port 8080/tcp is already published"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn hash_is_stable_and_per_service() {
    let dir = scratch(
        "hash",
        &[(
            "compose.yaml",
            "services:\n  a: {image: x, environment: {A: '1', B: '2'}}\n",
        )],
    );
    let one = text(&berth(&dir, &["config", "--hash", "a"], &[]).stdout);
    std::fs::write(
        dir.join("compose.yaml"),
        "services:\n  a:\n    environment: [B=2, A=1]\n    image: x\n",
    )
    .unwrap();
    let two = text(&berth(&dir, &["config", "--hash", "*"], &[]).stdout);
    assert_eq!(one, two);
    assert!(one.starts_with("a ") && one.trim().len() == 66, "{one}");
    let missing = berth(&dir, &["config", "--hash", "nope"], &[]);
    assert_eq!(missing.status.code(), Some(1));
}

#[test]
fn every_command_has_help_and_version_works() {
    for args in [
        vec!["--help"],
        vec!["config", "--help"],
        vec!["version", "--help"],
        vec!["completion", "--help"],
    ] {
        let out = berth(&repo(), &args, &[]);
        assert!(
            out.status.success() && text(&out.stdout).contains("Usage:"),
            "{args:?}"
        );
    }
    let v = berth(&repo(), &["version", "--format", "json"], &[]);
    let json: serde_json::Value = serde_json::from_slice(&v.stdout).unwrap();
    assert_eq!(json["version"], env!("CARGO_PKG_VERSION"));
    let comp = berth(&repo(), &["completion", "bash"], &[]);
    assert!(text(&comp.stdout).contains("berth"));
}

#[test]
fn no_compose_file_is_a_clear_error() {
    let dir = scratch("nofile", &[]);
    let out = berth(&dir, &["config"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no configuration file provided"),
        "{}",
        text(&out.stderr)
    );
}

/// The bar: on the seed file, `berth config` agrees with
/// docker-compose 1.29.2 on every service key both print. docker-compose's
/// output (v1 short forms, `version: '1'`) is read back through berth so the
/// comparison is of meaning, not spelling.
#[test]
fn seed_config_agrees_with_docker_compose() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let seed = repo().join("examples/seed");
    let theirs = Command::new("docker-compose")
        .arg("config")
        .current_dir(&seed)
        .output()
        .expect("docker-compose 1.29.2 must be installed (scripts/test.sh installs it)");
    assert!(theirs.status.success(), "{}", text(&theirs.stderr));
    let raw: serde_json::Value = {
        let doc = berth_compose::yaml::parse(&text(&theirs.stdout))
            .unwrap()
            .remove(0);
        doc.to_json()
    };
    let printed_by_them: Vec<(String, Vec<String>)> = raw["services"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(n, s)| (n.clone(), s.as_object().unwrap().keys().cloned().collect()))
        .collect();

    let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["-f", "-", "--project-directory"])
        .arg(&seed)
        .args(["-p", "seed", "config", "--format", "json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&theirs.stdout)
        .unwrap();
    let reread = child.wait_with_output().unwrap();
    assert!(reread.status.success(), "{}", text(&reread.stderr));
    let theirs_json: serde_json::Value = serde_json::from_slice(&reread.stdout).unwrap();

    let ours = berth(&seed, &["config", "--format", "json"], &[]);
    let ours_json: serde_json::Value = serde_json::from_slice(&ours.stdout).unwrap();
    let mut compared = 0;
    for (service, keys) in printed_by_them {
        for key in keys {
            let (a, b) = (
                &ours_json["services"][&service][&key],
                &theirs_json["services"][&service][&key],
            );
            assert!(
                !a.is_null(),
                "berth does not print services.{service}.{key}"
            );
            assert_eq!(a, b, "services.{service}.{key} differs");
            compared += 1;
        }
    }
    println!("seed: berth and docker-compose agree on {compared} service keys");
    assert!(compared >= 8, "compared only {compared} keys");
}
