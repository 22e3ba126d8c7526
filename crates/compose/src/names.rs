//! Names that become paths or object names on the host.
//!
//! berth runs as root and turns volume names into directories under its
//! state (`volumes/NAME/_data`, removed by `down -v`), container names into
//! state directories, and network, secret and config names into objects it
//! creates and deletes. A name that is not a single, plain path component
//! (`../x`, `/abs`, `a/b`, `..`, a NUL) would let a compose file reach outside
//! berth's state. So every such name must follow docker's rule for object
//! names, `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, and fit in one path component.
//!
//! compose-go is laxer in places (the schema lets a resource key start with
//! `.` or `_`, and a volume's `name:` is any string, left for the daemon to
//! judge); berth has no daemon behind it to refuse, so it refuses at load.

use crate::error::KeyPath;
use crate::model::Project;
use crate::normalize::NormalizeError;
use serde_json::Value as Json;

/// The longest name that still fits in one path component (`NAME_MAX`).
pub const MAX_NAME_LEN: usize = 255;

const RULE: &str = "[a-zA-Z0-9][a-zA-Z0-9_.-]*";

/// Docker's rule for object names (`[a-zA-Z0-9][a-zA-Z0-9_.-]*`), at most
/// [`MAX_NAME_LEN`] bytes. A valid name is always a single path component
/// other than `.` and `..`, so the engine can also use this before joining a
/// name onto a directory.
pub fn is_valid_object_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    let Some(first) = bytes.next() else {
        return false;
    };
    name.len() <= MAX_NAME_LEN
        && first.is_ascii_alphanumeric()
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Why `name` is not a valid object name, in words, or `None` when it is.
pub fn why_invalid(name: &str) -> Option<String> {
    if is_valid_object_name(name) {
        return None;
    }
    let why = if name.is_empty() {
        "it is empty".to_string()
    } else if name.len() > MAX_NAME_LEN {
        format!("it is {} bytes long, over {MAX_NAME_LEN}", name.len())
    } else if name.contains('/') || name == "." || name == ".." {
        "it would become a path, not a name".to_string()
    } else {
        format!("it must match {RULE}")
    };
    Some(why)
}

fn fail(path: KeyPath, what: &str, name: &str, why: &str) -> Result<(), NormalizeError> {
    Err(NormalizeError {
        path,
        message: format!("invalid {what} name {name:?}: {why}"),
    })
}

/// Service names follow compose-go (`[a-zA-Z0-9._-]+`: docker compose runs a
/// service called `--test-service`), but a name of dots alone reads as a
/// path, and the containers made from a service (`PROJECT-SERVICE-N`) must
/// have valid names.
fn check_service_name(project: &str, name: &str, path: &KeyPath) -> Result<(), NormalizeError> {
    let charset = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-');
    if name.is_empty() {
        return fail(path.clone(), "service", name, "it is empty");
    }
    if !name.bytes().all(charset) {
        return fail(
            path.clone(),
            "service",
            name,
            "it must match [a-zA-Z0-9._-]+",
        );
    }
    if name.bytes().all(|b| b == b'.') {
        return fail(
            path.clone(),
            "service",
            name,
            "it would become a path, not a name",
        );
    }
    let longest = format!("{project}-{name}-{}", u32::MAX);
    if longest.len() > MAX_NAME_LEN {
        let why = format!(
            "its containers' names (\"{project}-{name}-N\") would be over {MAX_NAME_LEN} bytes"
        );
        return fail(path.clone(), "service", name, &why);
    }
    Ok(())
}

fn check_name(
    path: KeyPath,
    what: &str,
    name: &str,
    unresolved_ok: bool,
) -> Result<(), NormalizeError> {
    if unresolved_ok && name.contains('$') {
        return Ok(());
    }
    match why_invalid(name) {
        Some(why) => fail(path, what, name, &why),
        None => Ok(()),
    }
}

/// Check every name of `project` that becomes a path or an object name:
/// the project's, services' (and the container names made from them),
/// `container_name`, the named volumes services mount, and the keys and
/// `name:` of volumes, networks, secrets and configs. `unresolved_ok` lets names that still hold a `$` through,
/// for a load with interpolation skipped (nothing is created from it).
pub fn check(project: &Project, unresolved_ok: bool) -> Result<(), NormalizeError> {
    let root = KeyPath::root();
    check_name(root.key("name"), "project", &project.name, false)?;
    for (name, svc) in &project.services {
        let path = root.key("services").key(name);
        check_service_name(&project.name, name, &path)?;
        if let Some(c) = &svc.container_name {
            check_name(path.key("container_name"), "container", c, unresolved_ok)?;
        }
        // A volume a service names without defining it (consistency checks
        // off) is still made, as `PROJECT_SOURCE`.
        for (i, m) in svc.volumes.iter().enumerate() {
            if let (true, Some(src)) = (m.kind == "volume", &m.source) {
                let p = path.key("volumes").index(i).key("source");
                check_name(p, "volume", src, unresolved_ok)?;
            }
        }
    }
    for (key, net) in &project.networks {
        let path = root.key("networks").key(key);
        check_name(path.clone(), "network", key, unresolved_ok)?;
        if let Some(n) = &net.name {
            check_name(path.key("name"), "network", n, unresolved_ok)?;
        }
    }
    for (key, vol) in &project.volumes {
        let path = root.key("volumes").key(key);
        check_name(path.clone(), "volume", key, unresolved_ok)?;
        if let Some(n) = &vol.name {
            check_name(path.key("name"), "volume", n, unresolved_ok)?;
        }
    }
    for (kind, what, defs) in [
        ("secrets", "secret", &project.secrets),
        ("configs", "config", &project.configs),
    ] {
        for (key, def) in defs {
            let path = root.key(kind).key(key);
            check_name(path.clone(), what, key, unresolved_ok)?;
            match def.get("name") {
                Some(Json::String(n)) => check_name(path.key("name"), what, n, unresolved_ok)?,
                Some(other) if !other.is_null() => {
                    return fail(
                        path.key("name"),
                        what,
                        &other.to_string(),
                        "it is not a string",
                    )
                }
                _ => {}
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_rule() {
        for ok in ["a", "data", "my-vol_1.2", "A9", "0"] {
            assert!(is_valid_object_name(ok), "{ok:?} should be valid");
        }
        let long = "a".repeat(MAX_NAME_LEN + 1);
        for bad in [
            "", ".", "..", "../x", "/abs", "a/b", "_x", "-x", ".x", "a b", "a\0b", "é", &long,
        ] {
            assert!(!is_valid_object_name(bad), "{bad:?} should be invalid");
        }
    }
}
