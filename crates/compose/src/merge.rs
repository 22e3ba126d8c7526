//! Merging compose documents by the compose-spec rules.
//!
//! Used for several `-f` files (later files override earlier ones) and for
//! `extends` (the local service overrides the one it extends). Mappings merge
//! key by key; scalars are replaced; sequences follow per-key rules: some are
//! replaced (`command`), some are sets (`cap_add`), some are keyed by what they
//! configure (`volumes` by target, `ports` by the whole mapping), and the
//! list-or-dict fields (`environment`, `labels`) merge as dicts. `!reset`
//! removes the inherited value and `!override` replaces it whole.

use crate::yaml::{Node, Tag, Value};
use indexmap::IndexMap;

/// Merge `over` onto `base`. `path` is the key path of the pair (keys only).
pub fn merge(base: Node, over: Node, path: &[&str]) -> Node {
    match over.tag {
        Some(Tag::Override) => return untagged(over),
        Some(Tag::Reset) => return untagged(over),
        None => {}
    }
    let rule = rule_for(path);
    match rule {
        Rule::Replace => return over,
        Rule::Dict => {
            let (b, o) = (list_or_dict_to_map(base), list_or_dict_to_map(over));
            return merge_maps(b, o, path);
        }
        Rule::DependsOn => {
            let (b, o) = (depends_on_to_map(base), depends_on_to_map(over));
            return merge_maps(b, o, path);
        }
        Rule::ServiceNetworks => {
            let (b, o) = (networks_to_map(base), networks_to_map(over));
            return merge_maps(b, o, path);
        }
        Rule::Build => {
            let (b, o) = (build_to_map(base), build_to_map(over));
            return merge_maps(b, o, path);
        }
        Rule::Default | Rule::Set | Rule::KeyedBy(_) => {}
    }
    let mark = over.mark;
    match (base.value, over.value) {
        (Value::Map(b), Value::Map(o)) => merge_maps(
            Node::new(Value::Map(b), base.mark),
            Node::new(Value::Map(o), mark),
            path,
        ),
        (Value::Seq(b), Value::Seq(o)) => {
            let merged = match rule {
                Rule::KeyedBy(key) => merge_keyed(b, o, key),
                Rule::Set => merge_set(b, o),
                _ => {
                    let mut all = b;
                    all.extend(o);
                    all
                }
            };
            Node::new(Value::Seq(merged), mark)
        }
        (_, value) => Node::new(value, mark),
    }
}

fn untagged(mut n: Node) -> Node {
    n.tag = None;
    n
}

fn merge_maps(base: Node, over: Node, path: &[&str]) -> Node {
    let mark = base.mark;
    let (Value::Map(mut b), Value::Map(o)) = (base.value, over.value) else {
        unreachable!("merge_maps is only called with two mappings")
    };
    for (k, v) in o {
        if v.tag == Some(Tag::Reset) {
            b.shift_remove(&k);
            continue;
        }
        let mut child_path: Vec<&str> = path.to_vec();
        child_path.push(&k);
        let merged = match b.shift_remove(&k) {
            Some(old) => merge(old, v, &child_path),
            None => untagged(v),
        };
        b.insert(k, merged);
    }
    Node::new(Value::Map(b), mark)
}

#[derive(Clone, Copy)]
enum Rule {
    Default,
    Replace,
    Set,
    Dict,
    DependsOn,
    ServiceNetworks,
    Build,
    KeyedBy(fn(&Node) -> Option<String>),
}

fn rule_for(path: &[&str]) -> Rule {
    match path {
        ["services", _, key] => match *key {
            "command" | "entrypoint" => Rule::Replace,
            "environment" | "labels" | "sysctls" | "annotations" | "extra_hosts" => Rule::Dict,
            "depends_on" => Rule::DependsOn,
            "networks" => Rule::ServiceNetworks,
            "build" => Rule::Build,
            "volumes" | "tmpfs" => Rule::KeyedBy(mount_target),
            "secrets" | "configs" => Rule::KeyedBy(secret_target),
            "ports"
            | "expose"
            | "cap_add"
            | "cap_drop"
            | "dns"
            | "dns_search"
            | "dns_opt"
            | "env_file"
            | "external_links"
            | "links"
            | "volumes_from"
            | "security_opt"
            | "profiles"
            | "devices"
            | "group_add"
            | "device_cgroup_rules"
            | "label_file" => Rule::Set,
            _ => Rule::Default,
        },
        ["services", _, "build", "args" | "labels"] => Rule::Dict,
        ["services", _, "healthcheck", "test"] => Rule::Replace,
        ["services", _, "logging", "options"] => Rule::Default,
        _ => Rule::Default,
    }
}

/// Keeps order: base items first, then new ones; a later item equal to an
/// earlier one is dropped.
fn merge_set(base: Vec<Node>, over: Vec<Node>) -> Vec<Node> {
    let mut out = base;
    for item in over {
        if !out.iter().any(|n| same(n, &item)) {
            out.push(item);
        }
    }
    out
}

fn same(a: &Node, b: &Node) -> bool {
    a.to_json() == b.to_json()
}

fn merge_keyed(base: Vec<Node>, over: Vec<Node>, key: fn(&Node) -> Option<String>) -> Vec<Node> {
    let mut out = base;
    for item in over {
        let k = key(&item);
        match out.iter().position(|n| k.is_some() && key(n) == k) {
            Some(i) => out[i] = item,
            None => out.push(item),
        }
    }
    out
}

/// The container path a volume/tmpfs entry mounts at, in either syntax.
fn mount_target(n: &Node) -> Option<String> {
    match &n.value {
        Value::String(s) => {
            let parts = crate::normalize::split_volume_spec(s);
            match parts.len() {
                1 => Some(parts[0].clone()),
                _ => parts.get(1).cloned(),
            }
        }
        Value::Map(m) => m.get("target").and_then(Node::scalar_text),
        _ => None,
    }
}

fn secret_target(n: &Node) -> Option<String> {
    match &n.value {
        Value::String(s) => Some(s.clone()),
        Value::Map(m) => m
            .get("target")
            .or_else(|| m.get("source"))
            .and_then(Node::scalar_text),
        _ => None,
    }
}

/// `[A=1, B]` or `{A: 1}` → mapping (`B` maps to null).
pub fn list_or_dict_to_map(n: Node) -> Node {
    let mark = n.mark;
    match n.value {
        Value::Seq(items) => {
            let mut m = IndexMap::new();
            for item in items {
                let text = item.scalar_text().unwrap_or_default();
                let (k, v) = match text.split_once('=') {
                    Some((k, v)) => (k.to_string(), Node::new(Value::String(v.into()), item.mark)),
                    None => (text, Node::new(Value::Null, item.mark)),
                };
                m.insert(k, v);
            }
            Node::new(Value::Map(m), mark)
        }
        value => Node {
            value,
            mark,
            tag: n.tag,
        },
    }
}

fn seq_to_keys(n: Node) -> Node {
    let mark = n.mark;
    match n.value {
        Value::Seq(items) => {
            let m = items
                .into_iter()
                .map(|i| {
                    let key = i.scalar_text().unwrap_or_default();
                    (key, Node::new(Value::Null, i.mark))
                })
                .collect();
            Node::new(Value::Map(m), mark)
        }
        value => Node {
            value,
            mark,
            tag: n.tag,
        },
    }
}

fn depends_on_to_map(n: Node) -> Node {
    seq_to_keys(n)
}

fn networks_to_map(n: Node) -> Node {
    seq_to_keys(n)
}

fn build_to_map(n: Node) -> Node {
    match n.value {
        Value::String(s) => {
            let mut m = IndexMap::new();
            m.insert("context".to_string(), Node::new(Value::String(s), n.mark));
            Node::new(Value::Map(m), n.mark)
        }
        value => Node {
            value,
            mark: n.mark,
            tag: n.tag,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(src: &str) -> Node {
        crate::yaml::parse(src).unwrap().remove(0)
    }

    fn merged(a: &str, b: &str) -> serde_json::Value {
        merge(doc(a), doc(b), &[]).to_json()
    }

    #[test]
    fn scalars_replace_and_maps_merge() {
        let out = merged(
            "services: {app: {image: a, environment: [A=1, B=2]}}",
            "services: {app: {image: b, environment: {B: 3, C: 4}}}",
        );
        assert_eq!(out["services"]["app"]["image"], "b");
        assert_eq!(
            out["services"]["app"]["environment"],
            serde_json::json!({"A": "1", "B": 3, "C": 4})
        );
    }

    #[test]
    fn command_is_replaced_ports_are_a_set() {
        let out = merged(
            "services: {app: {command: [a, b], ports: ['80:80']}}",
            "services: {app: {command: [c], ports: ['80:80', '443:443']}}",
        );
        assert_eq!(out["services"]["app"]["command"], serde_json::json!(["c"]));
        assert_eq!(
            out["services"]["app"]["ports"],
            serde_json::json!(["80:80", "443:443"])
        );
    }

    #[test]
    fn volumes_merge_by_target() {
        let out = merged(
            "services: {app: {volumes: ['./a:/data', 'x:/other']}}",
            "services: {app: {volumes: [{type: bind, source: ./b, target: /data}]}}",
        );
        let vols = out["services"]["app"]["volumes"]
            .as_array()
            .unwrap()
            .clone();
        assert_eq!(vols.len(), 2);
        assert_eq!(vols[0]["source"], "./b");
    }

    #[test]
    fn reset_and_override_tags() {
        let out = merged(
            "services: {app: {ports: ['80:80'], environment: {A: 1}}}",
            "services: {app: {ports: !reset [], environment: !override {B: 2}}}",
        );
        assert!(out["services"]["app"].get("ports").is_none());
        assert_eq!(
            out["services"]["app"]["environment"],
            serde_json::json!({"B": 2})
        );
    }

    #[test]
    fn build_string_merges_with_mapping() {
        let out = merged(
            "services: {app: {build: .}}",
            "services: {app: {build: {dockerfile: Other}}}",
        );
        assert_eq!(
            out["services"]["app"]["build"],
            serde_json::json!({"context": ".", "dockerfile": "Other"})
        );
    }
}
