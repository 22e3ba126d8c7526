//! compose-go's full example: input + the output it expects. berth's
//! project is compared with `expected.yaml` read as plain YAML (not through
//! berth's loader, which would drop on both sides what it drops), key by key,
//! so formatting and key order don't matter but every value does; the shape
//! differences accepted are the named rules of `compare.rs` and
//! `compose_go_omits` below.

use crate::common::{conformance, options, report};
use crate::compare;
use serde_json::Value;
use std::path::Path;

fn load(dir: &Path) -> Value {
    let mut opts = options(dir);
    opts.os_env.insert("HOME".into(), "/home/tester".into());
    opts.os_env.insert("BAR".into(), "this is a secret".into());
    opts.os_env
        .insert("QUX".into(), "qux_from_environment".into());
    opts.files = vec![dir.join("full-example.yml")];
    // The upstream test skips the consistency check (the example names
    // networks and containers that do not exist).
    opts.skip_consistency = true;
    let loaded = berth_compose::load(&opts).unwrap_or_else(|e| panic!("full-example.yml: {e}"));
    serde_json::to_value(&loaded.project).unwrap()
}

/// What berth prints that compose-go's expectation leaves out, and why: the
/// expectation was made with normalization off (`SkipNormalization`), so it
/// lacks what normalizing adds (default names, the default network, default
/// port mode and protocol).
fn compose_go_omits(path: &str, key: &str, value: &Value) -> bool {
    match key {
        "name" => path.starts_with("networks.") || path.starts_with("volumes."),
        "mode" => path.contains(".ports[") && value == "ingress",
        "protocol" => path.contains(".ports[") && value == "tcp",
        _ => false,
    }
}

/// The default network normalizing adds (a service that names no network is
/// on `default`, which is then defined), absent with normalization off.
fn default_network(facet: &str, value: &Value) -> bool {
    facet == "networks.default"
        || (facet.starts_with("services.")
            && facet.ends_with(".networks")
            && value
                .as_object()
                .is_some_and(|m| m.keys().all(|k| k == "default")))
}

/// A YAML document as plain JSON, with no compose meaning applied.
fn plain(y: &yaml_rust2::Yaml) -> Value {
    use yaml_rust2::Yaml;
    match y {
        Yaml::Real(r) => r
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or_else(|| Value::String(r.clone()), Value::Number),
        Yaml::Integer(i) => Value::from(*i),
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Array(items) => Value::Array(items.iter().map(plain).collect()),
        Yaml::Hash(h) => Value::Object(
            h.iter()
                .map(|(k, v)| {
                    let key = match k {
                        Yaml::String(s) => s.clone(),
                        other => plain(other).to_string(),
                    };
                    (key, plain(v))
                })
                .collect(),
        ),
        Yaml::Null | Yaml::BadValue | Yaml::Alias(_) => Value::Null,
    }
}

/// Flatten to `path → value` pairs at the level of a service's keys and a
/// resource's definition, which is the granularity the pass rate counts.
fn facets(v: &Value) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    if let Value::Object(top) = v {
        for (k, section) in top {
            match (k.as_str(), section) {
                ("services", Value::Object(svcs)) => {
                    for (name, svc) in svcs {
                        if let Value::Object(keys) = svc {
                            for (key, val) in keys {
                                out.push((format!("services.{name}.{key}"), val.clone()));
                            }
                        }
                    }
                }
                (_, Value::Object(entries)) if k != "name" => {
                    for (name, def) in entries {
                        out.push((format!("{k}.{name}"), def.clone()));
                    }
                }
                _ => out.push((k.clone(), section.clone())),
            }
        }
    }
    out
}

#[test]
fn compose_go_full_example() {
    let dir = conformance().join("compose/compose-go-full-example");
    let dir = berth_compose::normalize::clean_path(&dir);
    let expected_text = std::fs::read_to_string(dir.join("expected.yaml"))
        .unwrap()
        .replace("<WORKING_DIR>", &dir.to_string_lossy())
        .replace("<HOME_DIR>", "/home/tester");
    // expected.json lacks the `x-*` extensions (Go's JSON leaves them out); the YAML has them.
    let docs =
        yaml_rust2::YamlLoader::load_from_str(&expected_text).expect("expected.yaml is YAML");
    let theirs = plain(&docs[0]);
    let mut ours = load(&dir);
    // Known difference: the upstream expectation was produced without
    // normalization, while `docker compose config` (and berth) mark short-syntax
    // binds with `create_host_path: true`. Drop the marker before comparing.
    if let Some(Value::Array(vols)) = ours.pointer_mut("/services/foo/volumes") {
        for v in vols {
            if let Some(Value::Object(b)) = v.get_mut("bind") {
                b.shift_remove("create_host_path");
            }
        }
    }
    let ours_facets = facets(&ours);
    let theirs_facets = facets(&theirs);
    let mut diffs = Vec::new();
    for (path, want) in &theirs_facets {
        match ours_facets.iter().find(|(p, _)| p == path) {
            Some((_, got)) => diffs.extend(compare::diff(want, got, path, &compose_go_omits)),
            // `command: null`: Go prints a field that has no value.
            None if compare::is_empty(want) => {}
            None => diffs.push(format!("{path}: missing")),
        }
    }
    for (path, got) in &ours_facets {
        if !theirs_facets.iter().any(|(p, _)| p == path) && !default_network(path, got) {
            diffs.push(format!("{path}: unexpected"));
        }
    }
    let total = theirs_facets.len();
    report(
        "compose-go full example (keys)",
        total - diffs.len().min(total),
        total,
        &diffs,
    );
    assert!(diffs.is_empty(), "{diffs:#?}");
    // Service keys and resource definitions in expected.yaml (the README's count).
    assert_eq!(total, 78, "facets of the expectation");
}
