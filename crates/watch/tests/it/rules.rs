//! `develop.watch` as a user writes it, loaded by the real compose loader.

use berth_watch::{loaded_rules, service_rules, Action};
use std::path::Path;

fn load(dir: &Path, yaml: &str) -> berth_compose::Loaded {
    std::fs::write(dir.join("compose.yaml"), yaml).unwrap();
    berth_compose::load(&berth_compose::Options {
        cwd: dir.to_path_buf(),
        os_env: [("HOME".to_string(), "/home/dev".to_string())]
            .into_iter()
            .collect(),
        ..Default::default()
    })
    .unwrap()
}

fn first_error(yaml: &str) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let loaded = load(tmp.path(), yaml);
    loaded_rules(&loaded, &[]).unwrap_err().to_string()
}

#[test]
fn every_action_and_option_is_read_with_paths_resolved() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join(".dockerignore"), "secret.env\n").unwrap();
    let loaded = load(
        tmp.path(),
        r#"
services:
  app:
    build: .
    working_dir: /srv
    develop:
      watch:
        - action: sync
          path: ./src
          target: /app/src/../src
          ignore: [node_modules, "*.log"]
          initial_sync: true
        - action: sync+restart
          path: config
          target: conf
          include: "*.json"
        - action: sync+exec
          path: web
          target: /app/web
          exec:
            command: npm run build -- --mode "dev build"
            user: node
            environment: {MODE: dev}
        - action: rebuild
          path: package.json
        - action: restart
          path: ~/shared.env
  db:
    image: postgres
"#,
    );
    let rules = loaded_rules(&loaded, &[]).unwrap();
    let summary: Vec<(Action, String, Option<String>)> = rules
        .iter()
        .map(|r| {
            (
                r.action,
                r.path
                    .strip_prefix(tmp.path())
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|_| r.path.display().to_string()),
                r.target.clone(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (Action::Sync, "src".into(), Some("/app/src".into())),
            (
                Action::SyncRestart,
                "config".into(),
                Some("/srv/conf".into())
            ),
            (Action::SyncExec, "web".into(), Some("/app/web".into())),
            (Action::Rebuild, "package.json".into(), None),
            (Action::Restart, "/home/dev/shared.env".into(), None),
        ]
    );
    assert!(rules[0].initial_sync);
    assert!(rules[0].ignore.is_excluded("node_modules/x.js", false));
    assert!(rules[0].ignore.is_excluded("debug.log", false));
    assert!(rules[1]
        .include
        .as_ref()
        .unwrap()
        .is_excluded("a.json", false));
    let exec = rules[2].exec.as_ref().unwrap();
    assert_eq!(
        exec.command,
        ["npm", "run", "build", "--", "--mode", "dev build"]
    );
    assert_eq!(exec.user.as_deref(), Some("node"));
    assert_eq!(exec.environment, [("MODE".to_string(), "dev".to_string())]);
    // The build context's .dockerignore is part of every rule of the service.
    let (context, ignore) = rules[3].context_ignore.as_ref().unwrap();
    assert_eq!(context, tmp.path());
    assert!(ignore.is_excluded("secret.env", false));
    // `only` picks services; a service without develop has no rules.
    assert!(loaded_rules(&loaded, &["db".to_string()])
        .unwrap()
        .is_empty());
    assert_eq!(
        loaded_rules(&loaded, &["nope".to_string()])
            .unwrap_err()
            .to_string(),
        "services.nope: no such service in this project"
    );
}

#[test]
fn mistakes_the_schema_allows_are_refused_in_one_line_naming_the_key() {
    let cases = [
        (
            "    image: node\n    develop:\n      watch:\n        - {action: sync, path: .}\n",
            "services.app.develop.watch[0].target: is required for action sync",
        ),
        (
            "    image: node\n    develop:\n      watch:\n        - {action: sync, path: ., target: /a}\n        - {action: rebuild, path: .}\n",
            "services.app.develop.watch[1].action: rebuild needs a build section on service app",
        ),
        (
            "    image: node\n    develop:\n      watch:\n        - {action: sync+exec, path: ., target: /a}\n",
            "services.app.develop.watch[0].exec: is required for action sync+exec",
        ),
        (
            "    image: node\n    develop:\n      watch:\n        - {action: sync, path: ., target: /a, exec: {command: ls}}\n",
            "services.app.develop.watch[0].exec: only applies to action sync+exec, not sync",
        ),
        (
            "    image: node\n    develop:\n      watch:\n        - {action: sync, path: ., target: app}\n",
            "services.app.develop.watch[0].target: \"app\" is relative and the service has no absolute working_dir",
        ),
        (
            "    image: node\n    develop:\n      watch:\n        - {action: restart, path: ., initial_sync: true}\n",
            "services.app.develop.watch[0].initial_sync: only applies to syncing actions, not restart",
        ),
        (
            "    image: node\n    develop:\n      watch:\n        - {action: sync, path: ., target: /a, ignore: [\"[\"]}\n",
            "services.app.develop.watch[0].ignore: ",
        ),
        (
            "    image: node\n    develop:\n      watch:\n        - {action: sync+exec, path: ., target: /a, exec: {command: \"\"}}\n",
            "services.app.develop.watch[0].exec.command: is required and must not be empty",
        ),
    ];
    for (service, expected) in cases {
        let message = first_error(&format!("services:\n  app:\n{service}"));
        assert!(
            message.starts_with(expected),
            "{message:?} does not start with {expected:?}"
        );
        assert_eq!(message.lines().count(), 1, "{message}");
    }
}

#[test]
fn a_sync_of_a_path_the_service_bind_mounts_is_flagged() {
    let tmp = tempfile::tempdir().unwrap();
    let loaded = load(
        tmp.path(),
        "services:\n  app:\n    image: node\n    volumes: [\"./src:/app/src\"]\n    develop:\n      watch:\n        - {action: sync, path: ./src/lib, target: /app/src/lib}\n        - {action: sync, path: ./web, target: /app/web}\n        - {action: restart, path: ./src}\n",
    );
    let rules = loaded_rules(&loaded, &[]).unwrap();
    let flagged: Vec<bool> = rules.iter().map(|r| r.bind_mounted.is_some()).collect();
    assert_eq!(flagged, [true, false, false]);
    assert_eq!(
        rules[0].bind_mounted.as_deref(),
        Some(tmp.path().join("src").as_path())
    );
}

/// What the schema itself stops is still refused by name when a service
/// is built some other way (a plugin, a test, a later schema).
#[test]
fn entries_the_schema_would_stop_are_refused_by_the_parser_too() {
    let service = |develop: serde_json::Value| berth_compose::model::Service {
        image: Some("node".into()),
        extra: [("develop".to_string(), develop)].into_iter().collect(),
        ..Default::default()
    };
    let env = |_: &str| None;
    let cases = [
        (
            serde_json::json!({"watch": [{"action": "foo", "path": "."}]}),
            "services.app.develop.watch[0].action: unknown action \"foo\" (sync, rebuild, restart, sync+restart or sync+exec)",
        ),
        (
            serde_json::json!({"watch": [{"action": "sync", "target": "/a"}]}),
            "services.app.develop.watch[0].path: is required",
        ),
        (
            serde_json::json!({"watch": [{"action": "sync", "path": ".", "target": "/a", "delay": 1}]}),
            "services.app.develop.watch[0].delay: unknown key",
        ),
        (
            serde_json::json!({"watch": {"action": "sync"}}),
            "services.app.develop.watch: must be a list",
        ),
        (
            serde_json::json!({"watch": [{"action": "sync", "path": ".", "target": "/a", "ignore": [1]}]}),
            "services.app.develop.watch[0].ignore[0]: must be a string",
        ),
        (
            serde_json::json!("yes"),
            "services.app.develop: must be a mapping",
        ),
    ];
    for (develop, expected) in cases {
        let err = service_rules("app", &service(develop), Path::new("/p"), &env).unwrap_err();
        assert_eq!(err.to_string(), expected);
    }
    // `x-` keys are extensions, never errors.
    let ok = service_rules(
        "app",
        &service(serde_json::json!({"x-note": 1, "watch": [{"action": "restart", "path": ".", "x-why": "k"}]})),
        Path::new("/p"),
        &env,
    )
    .unwrap();
    assert_eq!(ok.len(), 1);
}
