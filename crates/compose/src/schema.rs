//! Validation against the compose-spec JSON schema (vendored in `schema/`).
//!
//! The schema accepts strings almost everywhere (so that `${VAR}` can stand for
//! a number), so it runs after interpolation and before normalization, once per
//! file, like compose-go. Errors are rewritten to name the key path the way a
//! person reads it and to point at the line the value came from.

use crate::error::{KeyPath, LoadError};
use crate::yaml::Node;
use serde_json::Value as Json;
use std::path::Path;
use std::sync::OnceLock;

const COMPOSE_SPEC: &str = include_str!("../schema/compose-spec.json");

fn validator() -> &'static jsonschema::Validator {
    static VALIDATOR: OnceLock<jsonschema::Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| {
        // The vendored schema is data we ship; failing to parse it is a build defect.
        let schema: Json = serde_json::from_str(COMPOSE_SPEC).expect("vendored compose-spec.json");
        jsonschema::validator_for(&schema).expect("vendored compose-spec.json compiles")
    })
}

/// Validate one file's document. Reports the first error, like docker compose.
pub fn validate(doc: &Node, file: &Path) -> Result<(), LoadError> {
    let instance = doc.to_json();
    let validator = validator();
    let mut errors: Vec<_> = validator.iter_errors(&instance).collect();
    if errors.is_empty() {
        return Ok(());
    }
    // The deepest error is the most specific one (a oneOf failure at the
    // parent says less than the type error inside it).
    errors.sort_by_key(|e| std::cmp::Reverse(e.instance_path().as_str().matches('/').count()));
    let err = &errors[0];
    let pointer = err.instance_path().as_str().to_string();
    let (path, node) = resolve_pointer(doc, &pointer);
    let message = describe(err.kind(), &instance, &pointer);
    let mut e = LoadError::new(message).key(path.to_string());
    e = match node {
        Some(n) if n.mark.line > 0 => e.at(file, n.mark.line, n.mark.column),
        _ => e.in_file(file),
    };
    Err(e)
}

/// Walk a JSON pointer through the tree, building the readable key path.
fn resolve_pointer<'a>(doc: &'a Node, pointer: &str) -> (KeyPath, Option<&'a Node>) {
    let mut path = KeyPath::root();
    let mut node = Some(doc);
    for raw in pointer.split('/').skip(1) {
        let seg = raw.replace("~1", "/").replace("~0", "~");
        match node.map(|n| &n.value) {
            Some(crate::yaml::Value::Seq(items)) => {
                let idx: usize = seg.parse().unwrap_or(usize::MAX);
                path = path.index(idx);
                node = items.get(idx);
            }
            Some(crate::yaml::Value::Map(m)) => {
                path = path.key(&seg);
                node = m.get(&seg);
            }
            _ => {
                path = path.key(&seg);
                node = None;
            }
        }
    }
    (path, node)
}

fn json_kind(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "a list",
        Json::Object(_) => "a mapping",
    }
}

fn lookup<'a>(instance: &'a Json, pointer: &str) -> Option<&'a Json> {
    instance.pointer(pointer)
}

fn describe(
    kind: &jsonschema::error::ValidationErrorKind,
    instance: &Json,
    pointer: &str,
) -> String {
    use jsonschema::error::{TypeKind, ValidationErrorKind as K};
    let found = lookup(instance, pointer)
        .map(json_kind)
        .unwrap_or("nothing");
    match kind {
        K::AdditionalProperties { unexpected } => {
            let names: Vec<String> = unexpected.iter().map(|u| format!("'{u}'")).collect();
            if names.len() == 1 {
                format!("additional property {} is not allowed", names[0])
            } else {
                format!("additional properties {} are not allowed", names.join(", "))
            }
        }
        K::Type { kind } => {
            let expected = match kind {
                TypeKind::Single(t) => type_name(&t.to_string()),
                TypeKind::Multiple(set) => {
                    let names: Vec<String> =
                        set.iter().map(|t| type_name(&t.to_string())).collect();
                    names.join(" or ")
                }
            };
            format!("must be {expected}, not {found}")
        }
        K::OneOfNotValid { .. } | K::AnyOf { .. } => {
            format!("{found} is not a valid value here")
        }
        K::OneOfMultipleValid { .. } => "matches more than one allowed form".to_string(),
        K::Enum { options } => format!("must be one of {options}"),
        K::Required { property } => format!("missing required property {property}"),
        K::UniqueItems => "must not contain duplicate items".to_string(),
        K::Pattern { pattern } => format!("does not match the pattern {pattern}"),
        K::PropertyNames { .. } => "contains an invalid property name".to_string(),
        K::Minimum { limit } => format!("must be at least {limit}"),
        K::Maximum { limit } => format!("must be at most {limit}"),
        K::MinItems { limit } => format!("must have at least {limit} item(s)"),
        K::MinLength { limit } => format!("must be at least {limit} character(s) long"),
        K::Format { format } => format!("is not a valid {format}"),
        other => format!("{other:?}")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" "),
    }
}

fn type_name(t: &str) -> String {
    match t {
        "object" => "a mapping".into(),
        "array" => "a list".into(),
        "string" => "a string".into(),
        "integer" => "an integer".into(),
        "number" => "a number".into(),
        "boolean" => "a boolean".into(),
        "null" => "null".into(),
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(src: &str) -> Result<(), LoadError> {
        let doc = crate::yaml::parse(src).unwrap().remove(0);
        validate(&doc, Path::new("compose.yaml"))
    }

    #[test]
    fn valid_file_passes() {
        check("services:\n  app:\n    image: nginx\n    ports: ['80:80']\n").unwrap();
    }

    #[test]
    fn unknown_key_names_path_and_line() {
        let err = check("services:\n  app:\n    image: nginx\n    imagez: x\n").unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("compose.yaml:2:3: services.app: additional property 'imagez'"),
            "{text}"
        );
    }

    #[test]
    fn wrong_type_names_index() {
        let err =
            check("services:\n  app:\n    image: nginx\n    ports:\n      - [1]\n").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("services.app.ports[0]"), "{text}");
        assert!(text.starts_with("compose.yaml:5:9"), "{text}");
    }
}
