//! The per-service config hash the planner compares to decide on recreation.
//!
//! Like docker compose, it covers the normalized service minus what does not
//! change a running container: `build`, `pull_policy`, `scale`,
//! `deploy.replicas`, `depends_on` and `profiles`. Keys are sorted before
//! hashing, so the hash does not depend on the order keys were written in.

use crate::model::Service;
use serde_json::Value as Json;
use sha2::{Digest, Sha256};

const IGNORED: &[&str] = &["build", "pull_policy", "scale", "depends_on", "profiles"];

pub fn service_hash(service: &Service) -> String {
    let mut json = serde_json::to_value(service).unwrap_or(Json::Null);
    if let Json::Object(m) = &mut json {
        for key in IGNORED {
            m.shift_remove(*key);
        }
        if let Some(Json::Object(deploy)) = m.get_mut("deploy") {
            deploy.shift_remove("replicas");
            if deploy.is_empty() {
                m.shift_remove("deploy");
            }
        }
    }
    let mut canonical = String::new();
    write_canonical(&json, &mut canonical);
    hex::encode(Sha256::digest(canonical.as_bytes()))
}

/// JSON with object keys sorted at every level.
fn write_canonical(v: &Json, out: &mut String) {
    match v {
        Json::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Json::String((*k).clone()).to_string());
                out.push(':');
                write_canonical(&m[*k], out);
            }
            out.push('}');
        }
        Json::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(json: serde_json::Value) -> Service {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn key_order_does_not_matter() {
        let a = svc(serde_json::json!({"image": "a", "environment": {"A": "1", "B": "2"}}));
        let b = svc(serde_json::json!({"environment": {"B": "2", "A": "1"}, "image": "a"}));
        assert_eq!(service_hash(&a), service_hash(&b));
    }

    #[test]
    fn ignored_keys_do_not_change_it_others_do() {
        let base = svc(serde_json::json!({"image": "a"}));
        let with_deps = svc(serde_json::json!({
            "image": "a",
            "depends_on": {"db": {"condition": "service_started", "required": true}},
            "build": {"context": "/x"},
            "profiles": ["p"],
            "scale": 3,
            "deploy": {"replicas": 2}
        }));
        assert_eq!(service_hash(&base), service_hash(&with_deps));
        let other_image = svc(serde_json::json!({"image": "b"}));
        assert_ne!(service_hash(&base), service_hash(&other_image));
    }

    #[test]
    fn hash_is_stable() {
        let s = svc(serde_json::json!({"image": "nginx"}));
        assert_eq!(service_hash(&s), service_hash(&s.clone()));
        assert_eq!(service_hash(&s).len(), 64);
    }
}
