//! The coverage table (`COMPOSE_KEYS.md`, issue 13) against what it
//! describes: the compose spec's JSON schemas (read in place from
//! `../shared/conformance`, and the copy berth validates with), and the test
//! sources the rows name. A schema key without a row, a row naming no schema
//! key, a row naming a test that does not exist, or a table file that is not
//! what the rows generate fails here, so the table cannot rot.
//!
//! Regenerate the file with
//! `BERTH_BLESS=1 cargo nextest run -p berth-compose -E 'test(coverage)'`.

use crate::common::{conformance, repo};
use berth_compose::coverage::{self, Status, ROWS};
use indexmap::IndexSet;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The schemas whose keys the table must cover: compose-spec's, compose-go's
/// (it adds `pre_start`, `no_cache_filter`…), and the one berth validates
/// with (so a key berth accepts can never lack a row).
fn schemas() -> Vec<PathBuf> {
    vec![
        conformance().join("compose/compose-spec.json"),
        conformance().join("compose/schema-compose-go/compose-spec.json"),
        Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/compose-spec.json"),
    ]
}

/// Every key path of every schema, in schema order.
fn schema_keys() -> IndexSet<String> {
    let mut keys = IndexSet::new();
    for path in schemas() {
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let schema: Value = serde_json::from_str(&text).unwrap();
        let mut walker = Walker {
            root: &schema,
            keys: &mut keys,
            active: Vec::new(),
        };
        walker.walk(&schema, "");
    }
    keys
}

/// Collects the property paths of a JSON schema, following `$ref`s
/// (draft-07 `definitions` and 2020-12 `$defs`) and every branch of
/// `oneOf`/`anyOf`/`allOf`, so the short and long syntaxes both count.
struct Walker<'a> {
    root: &'a Value,
    keys: &'a mut IndexSet<String>,
    /// (definition, path) pairs being walked: the schema is recursive in
    /// places, and the same definition at the same path adds nothing new.
    active: Vec<(String, String)>,
}

impl<'a> Walker<'a> {
    fn resolve(&self, mut v: &'a Value) -> (&'a Value, Option<String>) {
        let mut name = None;
        while let Some(r) = v.get("$ref").and_then(Value::as_str) {
            let pointer = r.trim_start_matches('#');
            name = Some(pointer.to_string());
            v = self
                .root
                .pointer(pointer)
                .unwrap_or_else(|| panic!("unresolved $ref {r}"));
        }
        (v, name)
    }

    fn walk(&mut self, v: &'a Value, path: &str) {
        let (v, name) = self.resolve(v);
        if let Some(name) = &name {
            let here = (name.clone(), path.to_string());
            if self.active.contains(&here) {
                return;
            }
            self.active.push(here);
        }
        let join = |k: &str| {
            if path.is_empty() {
                k.to_string()
            } else {
                format!("{path}.{k}")
            }
        };
        if let Some(props) = v.get("properties").and_then(Value::as_object) {
            for (k, sub) in props {
                self.keys.insert(join(k));
                self.walk(sub, &join(k));
            }
        }
        if let Some(patterns) = v.get("patternProperties").and_then(Value::as_object) {
            for (pattern, sub) in patterns {
                // `^x-` extensions are free-form by design.
                if pattern != "^x-" {
                    self.walk(sub, &join("*"));
                }
            }
        }
        if let Some(extra) = v.get("additionalProperties").filter(|a| a.is_object()) {
            self.walk(extra, &join("*"));
        }
        if let Some(items) = v.get("items").filter(|i| i.is_object()) {
            self.walk(items, &format!("{path}[]"));
        }
        for branch in ["oneOf", "anyOf", "allOf"] {
            for alt in v
                .get(branch)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                self.walk(alt, path);
            }
        }
        if name.is_some() {
            self.active.pop();
        }
    }
}

/// Defends: a key the schema gains (a newer compose spec, or a schema
/// update) cannot go into berth without a line in the table saying what
/// berth does with it.
#[test]
fn every_schema_key_has_a_coverage_row() {
    let keys = schema_keys();
    assert!(
        keys.contains("services.*.volumes[].bind.propagation") && keys.len() > 300,
        "the schema walk found only {} keys",
        keys.len()
    );
    let missing: Vec<&String> = keys.iter().filter(|k| !coverage::covers(k)).collect();
    assert!(
        missing.is_empty(),
        "schema keys without a row in crates/compose/src/coverage.rs:\n{}",
        missing
            .iter()
            .map(|k| k.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Defends: the table never describes a key compose does not have (a typo
/// would leave the real key's row missing), nor one key twice.
#[test]
fn every_coverage_row_is_a_schema_key_once() {
    let keys = schema_keys();
    let mut seen = BTreeSet::new();
    for r in ROWS {
        assert!(
            keys.contains(r.key),
            "{}: not a key of the compose schema",
            r.key
        );
        assert!(seen.insert(r.key), "{}: two rows", r.key);
        // A row under a key that is refused or not applied would say
        // something the parent's row already decides.
        let shadowed = coverage::ancestors(r.key)
            .filter_map(coverage::row_of)
            .find(|a| a.status != Status::Honoured);
        assert!(
            shadowed.is_none(),
            "{}: under {}, which stands for it",
            r.key,
            shadowed.unwrap().key
        );
        assert!(!r.test.is_empty(), "{}: no test", r.key);
        if r.status != Status::Honoured {
            assert!(!r.note.is_empty(), "{}: no reason given", r.key);
        }
    }
}

/// Every `fn NAME` in the Rust sources of the workspace's crates.
fn functions_in_crates() -> BTreeSet<String> {
    let re = regex::Regex::new(r"\bfn\s+([A-Za-z_][A-Za-z0-9_]*)").unwrap();
    let mut found = BTreeSet::new();
    let mut stack: Vec<PathBuf> = std::fs::read_dir(repo().join("crates"))
        .unwrap()
        .filter_map(|e| e.ok())
        .flat_map(|e| [e.path().join("src"), e.path().join("tests")])
        .collect();
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.filter_map(|e| e.ok()) {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let text = std::fs::read_to_string(&p).unwrap_or_default();
                found.extend(re.captures_iter(&text).map(|c| c[1].to_string()));
            }
        }
    }
    found
}

/// Defends: a row's evidence cannot vanish: renaming or deleting the test
/// a row names fails here until the row names a test that still shows it.
#[test]
fn every_coverage_row_names_an_existing_test() {
    let functions = functions_in_crates();
    let gone: Vec<String> = ROWS
        .iter()
        .filter(|r| !functions.contains(r.test))
        .map(|r| {
            format!(
                "{}: fn {} not found under crates/*/src or crates/*/tests",
                r.key, r.test
            )
        })
        .collect();
    assert!(gone.is_empty(), "{}", gone.join("\n"));
}

/// Defends: `COMPOSE_KEYS.md` says what the code's table says; with
/// `BERTH_BLESS=1` it is rewritten instead.
#[test]
fn coverage_table_is_current() {
    let path = repo().join("COMPOSE_KEYS.md");
    let want = coverage::markdown();
    if std::env::var_os("BERTH_BLESS").is_some() {
        std::fs::write(&path, &want).unwrap();
        return;
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "{} is out of date; regenerate it with\n  BERTH_BLESS=1 cargo nextest run -p berth-compose -E 'test(coverage)'",
        path.display()
    );
}

/// Defends: `up --dry-run` on berth's examples prints no "not applied"
/// line (they use only what berth applies), and on compose-go's full
/// example, which uses nearly every key, it names the swarm and
/// informational keys and the known gaps, once each, by service.
#[test]
fn coverage_not_applied_on_examples() {
    for example in ["seed/docker-compose.yml", "seed-runtime/docker-compose.yml"] {
        let file = repo().join("examples").join(example);
        if !file.exists() {
            continue;
        }
        let loaded = crate::common::load_file(&file).unwrap();
        assert_eq!(
            coverage::not_applied(&loaded.project),
            Vec::<String>::new(),
            "{example}"
        );
    }
    let dir = conformance().join("compose/compose-go-full-example");
    let mut opts = crate::common::options(&dir);
    opts.os_env.insert("BAR".into(), "this is a secret".into());
    opts.os_env
        .insert("QUX".into(), "qux_from_environment".into());
    opts.files = vec![dir.join("full-example.yml")];
    opts.skip_consistency = true;
    let project = berth_compose::load(&opts).unwrap().project;
    // When a gap here is closed (honoured or refused), its line goes.
    let expected = "\
configs.config1.labels
configs.config2.name
configs.config4.name
networks.other-network.labels
secrets.secret1.labels
secrets.secret2.name
secrets.secret4.name
services.foo.build.secrets[1].gid
services.foo.build.secrets[1].mode
services.foo.build.secrets[1].uid
services.foo.deploy.endpoint_mode
services.foo.deploy.labels
services.foo.deploy.placement
services.foo.deploy.resources.reservations.cpus
services.foo.deploy.resources.reservations.generic_resources
services.foo.deploy.rollback_config
services.foo.deploy.update_config.delay
services.foo.deploy.update_config.failure_action
services.foo.deploy.update_config.max_failure_ratio
services.foo.deploy.update_config.monitor
services.foo.deploy.update_config.parallelism
services.foo.expose
services.foo.volumes[6].consistency
volumes.other-volume.labels";
    assert_eq!(coverage::not_applied(&project).join("\n"), expected);
}

/// Defends: the table cannot claim a refusal the engines do not make: the
/// last part of every refused key is named, quoted, in the sources of the
/// embedded engine, the planner or the CLI (where refusals live), so a refusal that is removed, or a
/// row marked refused by mistake, is noticed.
#[test]
fn every_refused_key_is_named_where_refusals_live() {
    let mut text = String::new();
    let mut stack: Vec<PathBuf> = std::fs::read_dir(repo().join("crates"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        // The embedded engine's table: the Docker backend names every key.
        .filter(|p| {
            p.file_name().is_some_and(|n| {
                ["engine", "engine-embedded", "cli"].contains(&&*n.to_string_lossy())
            })
        })
        .map(|p| p.join("src"))
        .collect();
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                text.push_str(&std::fs::read_to_string(&p).unwrap_or_default());
            }
        }
    }
    let unnamed: Vec<&str> = ROWS
        .iter()
        .filter(|r| r.status == Status::Refused)
        .filter(|r| {
            let leaf = r.key.rsplit(['.', '[', ']', '*']).find(|s| !s.is_empty());
            !leaf.is_some_and(|l| text.contains(&format!("\"{l}\"")))
        })
        .map(|r| r.key)
        .collect();
    assert!(
        unnamed.is_empty(),
        "refused in the table, but no engine or CLI source names them:\n{}",
        unnamed.join("\n")
    );
}
