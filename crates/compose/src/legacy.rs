//! The legacy v1 file format: services at the top level, no `services:` key.
//!
//! docker-compose 1.x ran these on Docker's default bridge (`network_mode:
//! bridge`) and spelled `network_mode` as `net`, with `container:NAME`
//! naming another service. They are converted to the spec shape before
//! validation, so everything after this sees one format.

use crate::error::KeyPath;
use crate::yaml::{Mark, Node, Value};
use indexmap::IndexMap;

/// Top-level keys of a spec file; a v1 file has services there instead.
const SPEC_TOP_LEVEL: &[&str] = &[
    "version", "name", "include", "services", "networks", "volumes", "secrets", "configs", "models",
];

pub fn is_v1(doc: &Node) -> bool {
    let Some(m) = doc.as_map() else { return false };
    if m.contains_key("version") || m.contains_key("services") {
        return false;
    }
    m.keys()
        .any(|k| !k.starts_with("x-") && !SPEC_TOP_LEVEL.contains(&k.as_str()))
}

/// Why a v1 file cannot be converted: where, and what.
pub type LegacyError = (KeyPath, Mark, String);

pub fn to_spec(doc: Node) -> Result<Node, LegacyError> {
    let mark = doc.mark;
    let Value::Map(top) = doc.value else {
        return Ok(doc);
    };
    let names: Vec<String> = top
        .keys()
        .filter(|k| !k.starts_with("x-"))
        .cloned()
        .collect();
    let mut out = IndexMap::new();
    let mut services = IndexMap::new();
    for (key, svc) in top {
        if key.starts_with("x-") {
            out.insert(key, svc);
            continue;
        }
        let path = KeyPath::root().key(&key);
        let svc_mark = svc.mark;
        let Value::Map(mut m) = svc.value else {
            let message = format!("service '{key}' must be a mapping, not {}", svc.kind());
            return Err((path, svc.mark, message));
        };
        let net = m.shift_remove("net");
        let mode = match net.as_ref().and_then(Node::scalar_text) {
            Some(n) => match n.strip_prefix("container:") {
                Some(c) if names.iter().any(|s| s == c) => format!("service:{c}"),
                _ => n,
            },
            None => "bridge".to_string(),
        };
        if !m.contains_key("network_mode") {
            let at = net.map(|n| n.mark).unwrap_or(svc_mark);
            m.insert("network_mode".into(), Node::new(Value::String(mode), at));
        }
        // v1 spelled the Dockerfile next to `build: PATH`.
        if let Some(dockerfile) = m.shift_remove("dockerfile") {
            let at = dockerfile.mark;
            let context = m
                .shift_remove("build")
                .unwrap_or_else(|| Node::new(Value::String(".".into()), at));
            let mut build = IndexMap::new();
            build.insert("context".to_string(), context);
            build.insert("dockerfile".to_string(), dockerfile);
            m.insert("build".into(), Node::new(Value::Map(build), at));
        }
        let log_driver = m.shift_remove("log_driver");
        let log_opt = m.shift_remove("log_opt");
        if log_driver.is_some() || log_opt.is_some() {
            let mut logging = IndexMap::new();
            if let Some(d) = log_driver {
                logging.insert("driver".to_string(), d);
            }
            if let Some(o) = log_opt {
                logging.insert("options".to_string(), o);
            }
            m.insert("logging".into(), Node::new(Value::Map(logging), svc_mark));
        }
        services.insert(key, Node::new(Value::Map(m), svc_mark));
    }
    out.insert("services".into(), Node::new(Value::Map(services), mark));
    Ok(Node::new(Value::Map(out), mark))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = r#"code:
  build: .
app:
  image: quay.io/oddnetworks/alpine-nodejs:4.2.2
  volumes_from:
    - code
  ports:
    - "8080:3000"
  working_dir: /app
  command: /bin/ash -c "npm install --production && npm run start"
"#;

    #[test]
    fn seed_is_v1_and_converts() {
        let doc = crate::yaml::parse(SEED).unwrap().remove(0);
        assert!(is_v1(&doc));
        let spec = to_spec(doc).unwrap().to_json();
        assert_eq!(spec["services"]["code"]["network_mode"], "bridge");
        assert_eq!(spec["services"]["app"]["volumes_from"][0], "code");
    }

    #[test]
    fn net_container_of_a_service_becomes_service_mode() {
        let doc = crate::yaml::parse("net: {image: a}\napp: {image: b, net: 'container:net'}\nother: {image: c, net: host}\n")
            .unwrap()
            .remove(0);
        let spec = to_spec(doc).unwrap().to_json();
        assert_eq!(spec["services"]["app"]["network_mode"], "service:net");
        assert_eq!(spec["services"]["other"]["network_mode"], "host");
    }

    #[test]
    fn spec_files_are_not_v1() {
        for src in [
            "services: {}",
            "version: '2'\nservices: {}",
            "name: x\n",
            "x-a: 1\n",
        ] {
            let doc = crate::yaml::parse(src).unwrap().remove(0);
            assert!(!is_v1(&doc), "{src}");
        }
    }
}
