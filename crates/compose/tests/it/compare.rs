//! Compare berth's normalized project with a peer's expected output read as
//! plain JSON, never through berth's own loader: a key berth drops must show
//! up as missing, not vanish from both sides.
//!
//! Peers print the same configuration in different shapes (docker-compose
//! 1.x keeps short syntax, Go marshals zero-value structs as `{}`). Each
//! shape difference accepted here is one named rule below; anything else
//! is a difference.

use serde_json::Value;

/// Every difference between `want` (the peer's) and `got` (berth's) under
/// `path`. Keys berth adds that the peer leaves out are differences too,
/// except where `extra_ok(path, key, value)` says the peer's format omits them.
pub fn diff(
    want: &Value,
    got: &Value,
    path: &str,
    extra_ok: &dyn Fn(&str, &str, &Value) -> bool,
) -> Vec<String> {
    let mut out = Vec::new();
    walk(want, got, path, extra_ok, &mut out);
    out
}

fn walk(
    want: &Value,
    got: &Value,
    path: &str,
    extra_ok: &dyn Fn(&str, &str, &Value) -> bool,
    out: &mut Vec<String>,
) {
    if want == got || same_scalar(want, got) || same_by_rule(want, got, path) {
        return;
    }
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => {
            for (k, wv) in w {
                let p = format!("{path}.{k}");
                match g.get(k) {
                    Some(gv) => walk(wv, gv, &p, extra_ok, out),
                    // Rule: Go marshals an empty struct or list as `{}`/`[]`,
                    // v1 prints `null` for "set, no value": the same as absent.
                    None if is_empty(wv) => {}
                    None => out.push(format!("{p}: missing (expected {wv})")),
                }
            }
            for (k, gv) in g {
                if !w.contains_key(k)
                    && !extra_ok(path.trim_start_matches('.'), k, gv)
                    && !is_empty(gv)
                {
                    out.push(format!("{path}.{k}: unexpected {gv}"));
                }
            }
        }
        (Value::Array(w), Value::Array(g)) if w.len() == g.len() => {
            for (i, (wv, gv)) in w.iter().zip(g).enumerate() {
                walk(wv, gv, &format!("{path}[{i}]"), extra_ok, out);
            }
        }
        _ => out.push(format!("{path}: expected {want}, got {got}")),
    }
}

/// Null, `{}` or `[]`: what Go prints for a field with no value.
pub fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// Rule: a scalar printed as a string by one peer and a number or boolean by
/// the other (`"8080"` and `8080`, `0.05` and `"0.05"`).
fn same_scalar(want: &Value, got: &Value) -> bool {
    let text = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    matches!((text(want), text(got)), (Some(a), Some(b)) if a == b)
}

/// Rules for the short forms docker-compose 1.x keeps where the compose spec
/// (and berth) normalize to long ones.
fn same_by_rule(want: &Value, got: &Value, path: &str) -> bool {
    let key = path.rsplit('.').next().unwrap_or_default();
    match (want, got) {
        // `command: top`, `test: cat /etc/passwd`: a string that the spec
        // splits into words (command, entrypoint) or runs with a shell (test).
        (Value::String(s), Value::Array(words)) => {
            let words: Vec<&str> = words.iter().filter_map(Value::as_str).collect();
            let split: Vec<&str> = s.split_whitespace().collect();
            words == split || (key == "test" && words == ["CMD-SHELL", s.as_str()])
        }
        // `labels: [FOO=BAR]`: a list of `KEY=VALUE` for a mapping.
        (Value::Array(items), Value::Object(map)) => {
            items.len() == map.len()
                && items.iter().all(|i| {
                    i.as_str()
                        .and_then(|s| s.split_once('='))
                        .is_some_and(|(k, v)| map.get(k).and_then(Value::as_str) == Some(v))
                })
        }
        // `devices: [{source, target, permissions}]`: the long form of berth's
        // `SOURCE:TARGET:PERMISSIONS`.
        (Value::Object(m), Value::String(s)) if path.contains("devices[") => {
            let field = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or_default();
            *s == format!(
                "{}:{}:{}",
                field("source"),
                field("target"),
                field("permissions")
            )
        }
        // `volumes: [/data, foo:/bar:rw]`: short syntax for a mount.
        (Value::String(s), Value::Object(m))
            if key.starts_with('[') || path.contains("volumes[") =>
        {
            short_volume_matches(s, m)
        }
        // `monitor: 60s` and `1m0s`: one duration, written two ways.
        (Value::String(a), Value::String(b)) if seconds(a).is_some() => seconds(a) == seconds(b),
        // `memory: 50M`: a byte size the spec writes in bytes.
        (Value::String(s), _) if bytes(s).is_some() => {
            bytes(s) == got.as_str().and_then(|g| g.parse().ok()).or(got.as_u64())
        }
        _ => false,
    }
}

fn short_volume_matches(spec: &str, m: &serde_json::Map<String, Value>) -> bool {
    let parts: Vec<&str> = spec.split(':').collect();
    let (source, target, mode) = match parts.as_slice() {
        [t] => (None, *t, None),
        [s, t] => (Some(*s), *t, None),
        [s, t, mode] => (Some(*s), *t, Some(*mode)),
        _ => return false,
    };
    let kind = match source {
        None => "volume",
        Some(s) if s.starts_with('/') || s.starts_with('.') || s.starts_with('~') => "bind",
        Some(_) => "volume",
    };
    m.get("type").and_then(Value::as_str) == Some(kind)
        && m.get("target").and_then(Value::as_str) == Some(target)
        && m.get("source").and_then(Value::as_str) == source
        && (m.get("read_only") == Some(&Value::Bool(true))) == (mode == Some("ro"))
}

/// `50M` → bytes, as docker reads sizes (powers of 1024).
fn bytes(s: &str) -> Option<u64> {
    let lower = s.to_ascii_lowercase();
    let lower = lower.trim_end_matches('b');
    let (digits, unit) = lower.split_at(lower.find(|c: char| !c.is_ascii_digit())?);
    let n: u64 = digits.parse().ok()?;
    let shift = match unit {
        "k" => 10,
        "m" => 20,
        "g" => 30,
        _ => return None,
    };
    Some(n << shift)
}

/// `1m30s`, `90s`, `1h` → seconds (whole units only, as the cases use).
fn seconds(s: &str) -> Option<u64> {
    let mut total = 0;
    let mut digits = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let n: u64 = std::mem::take(&mut digits).parse().ok()?;
        total += n * match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return None,
        };
    }
    digits.is_empty().then_some(total)
}
