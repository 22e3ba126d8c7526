//! Printing a project the way `docker compose config` prints it: YAML with
//! two-space indentation, sequences indented under their key, strings quoted
//! only when they would otherwise read back as something else, and keys in
//! compose's order.

use crate::model::Project;
use serde_json::{Map, Value as Json};

/// compose-go's service field order; unknown keys follow, sorted, then `x-*`.
const SERVICE_ORDER: &[&str] = &[
    "annotations",
    "attach",
    "build",
    "blkio_config",
    "cpu_count",
    "cpu_percent",
    "cpu_shares",
    "cpu_period",
    "cpu_quota",
    "cpu_rt_period",
    "cpu_rt_runtime",
    "cpus",
    "cpuset",
    "cap_add",
    "cap_drop",
    "cgroup",
    "cgroup_parent",
    "command",
    "configs",
    "container_name",
    "credential_spec",
    "depends_on",
    "deploy",
    "develop",
    "device_cgroup_rules",
    "devices",
    "dns",
    "dns_opt",
    "dns_search",
    "domainname",
    "entrypoint",
    "environment",
    "env_file",
    "expose",
    "external_links",
    "extra_hosts",
    "group_add",
    "gpus",
    "hostname",
    "healthcheck",
    "image",
    "init",
    "ipc",
    "isolation",
    "labels",
    "label_file",
    "links",
    "logging",
    "mac_address",
    "network_mode",
    "networks",
    "mem_limit",
    "mem_reservation",
    "mem_swappiness",
    "memswap_limit",
    "oom_kill_disable",
    "oom_score_adj",
    "pid",
    "pids_limit",
    "platform",
    "ports",
    "post_start",
    "pre_stop",
    "privileged",
    "profiles",
    "pull_policy",
    "read_only",
    "restart",
    "runtime",
    "scale",
    "secrets",
    "security_opt",
    "shm_size",
    "stdin_open",
    "stop_grace_period",
    "stop_signal",
    "storage_opt",
    "sysctls",
    "tmpfs",
    "tty",
    "ulimits",
    "user",
    "userns_mode",
    "uts",
    "volume_driver",
    "volumes",
    "volumes_from",
    "working_dir",
];

/// Service keys whose values are maps keyed by user data: printed sorted.
const SORTED_SERVICE_MAPS: &[&str] = &[
    "environment",
    "labels",
    "annotations",
    "sysctls",
    "depends_on",
    "networks",
    "ulimits",
    "storage_opt",
];

/// The project as JSON in compose's key order.
pub fn ordered(project: &Project) -> Json {
    let json = serde_json::to_value(project).unwrap_or(Json::Null);
    let Json::Object(mut top) = json else {
        return json;
    };
    let mut out = Map::new();
    for key in [
        "name", "services", "networks", "volumes", "secrets", "configs", "models",
    ] {
        if let Some(mut v) = top.shift_remove(key) {
            if let Json::Object(m) = &mut v {
                sort_map(m);
                if key == "services" {
                    for svc in m.values_mut() {
                        order_service(svc);
                    }
                }
            }
            out.insert(key.to_string(), v);
        }
    }
    let mut rest: Vec<(String, Json)> = top.into_iter().collect();
    rest.sort_by(|a, b| a.0.cmp(&b.0));
    out.extend(rest);
    Json::Object(out)
}

fn sort_map(m: &mut Map<String, Json>) {
    let mut entries: Vec<(String, Json)> = std::mem::take(m).into_iter().collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    m.extend(entries);
}

fn order_service(svc: &mut Json) {
    let Json::Object(m) = svc else { return };
    let mut taken = std::mem::take(m);
    for key in SERVICE_ORDER {
        if let Some(mut v) = taken.shift_remove(*key) {
            if SORTED_SERVICE_MAPS.contains(key) {
                if let Json::Object(inner) = &mut v {
                    sort_map(inner);
                }
            }
            if *key == "build" {
                for inner in ["args", "labels"] {
                    if let Some(Json::Object(a)) = v.get_mut(inner) {
                        sort_map(a);
                    }
                }
            }
            m.insert(key.to_string(), v);
        }
    }
    let mut rest: Vec<(String, Json)> = taken.into_iter().collect();
    rest.sort_by(|a, b| (a.0.starts_with("x-"), &a.0).cmp(&(b.0.starts_with("x-"), &b.0)));
    m.extend(rest);
}

/// Render JSON as block-style YAML.
pub fn to_yaml(v: &Json) -> String {
    let mut out = String::new();
    match v {
        Json::Object(m) if !m.is_empty() => write_map(m, 0, &mut out),
        Json::Array(a) if !a.is_empty() => write_seq(a, 0, &mut out),
        other => {
            out.push_str(&inline(other));
            out.push('\n');
        }
    }
    out
}

fn indent(n: usize, out: &mut String) {
    for _ in 0..n {
        out.push(' ');
    }
}

fn write_map(m: &Map<String, Json>, level: usize, out: &mut String) {
    for (k, v) in m {
        indent(level, out);
        out.push_str(&scalar_string(k));
        out.push(':');
        write_value(v, level, out);
    }
}

/// Write the value after `key:` or `- `; `level` is the indentation of the key.
fn write_value(v: &Json, level: usize, out: &mut String) {
    match v {
        Json::Object(m) if !m.is_empty() => {
            out.push('\n');
            write_map(m, level + 2, out);
        }
        Json::Array(a) if !a.is_empty() => {
            out.push('\n');
            write_seq(a, level + 2, out);
        }
        Json::String(s) if s.contains('\n') && !s.contains('\r') => {
            write_block(s, level + 2, out);
        }
        other => {
            out.push(' ');
            out.push_str(&inline(other));
            out.push('\n');
        }
    }
}

fn write_seq(items: &[Json], level: usize, out: &mut String) {
    for item in items {
        indent(level, out);
        out.push('-');
        match item {
            Json::Object(m) if !m.is_empty() => {
                // The first key goes on the dash line, the rest align with it.
                let mut first = true;
                for (k, v) in m {
                    if first {
                        out.push(' ');
                        first = false;
                    } else {
                        indent(level + 2, out);
                    }
                    out.push_str(&scalar_string(k));
                    out.push(':');
                    write_value(v, level + 2, out);
                }
            }
            Json::Array(a) if !a.is_empty() => {
                out.push('\n');
                write_seq(a, level + 2, out);
            }
            Json::String(s) if s.contains('\n') && !s.contains('\r') => {
                write_block(s, level + 2, out);
            }
            other => {
                out.push(' ');
                out.push_str(&inline(other));
                out.push('\n');
            }
        }
    }
}

fn write_block(s: &str, level: usize, out: &mut String) {
    let chomp = if s.ends_with('\n') { "" } else { "-" };
    let keep_leading = s.starts_with(' ') || s.starts_with('\n');
    out.push_str(" |");
    if keep_leading {
        out.push('2');
    }
    out.push_str(chomp);
    out.push('\n');
    for line in s.strip_suffix('\n').unwrap_or(s).split('\n') {
        if !line.is_empty() {
            indent(level, out);
            out.push_str(line);
        }
        out.push('\n');
    }
}

fn inline(v: &Json) -> String {
    match v {
        Json::Null => "null".into(),
        Json::Bool(b) => b.to_string(),
        Json::Number(n) => n.to_string(),
        Json::String(s) => scalar_string(s),
        Json::Array(_) => "[]".into(),
        Json::Object(_) => "{}".into(),
    }
}

/// A string as a YAML scalar: plain when it reads back as the same string.
pub fn scalar_string(s: &str) -> String {
    if needs_quotes(s) {
        quote(s)
    } else {
        s.to_string()
    }
}

fn needs_quotes(s: &str) -> bool {
    if s.is_empty() || s != s.trim() {
        return true;
    }
    // Anything a YAML 1.1 or 1.2 reader would take for another type.
    let lower = s.to_ascii_lowercase();
    if matches!(
        lower.as_str(),
        "null"
            | "~"
            | "true"
            | "false"
            | "yes"
            | "no"
            | "on"
            | "off"
            | "y"
            | "n"
            | ".inf"
            | "-.inf"
            | "+.inf"
            | ".nan"
    ) {
        return true;
    }
    let first = s.chars().next().unwrap_or(' ');
    if "-?:,[]{}#&*!|>'\"%@`".contains(first) {
        // `-` alone or `- x` starts a sequence; `-x` is fine plain, but keep it simple.
        return !(first == '-' && s.len() > 1 && !s[1..].starts_with(' '));
    }
    if s.contains(": ")
        || s.contains(" #")
        || s.ends_with(':')
        || s.chars().any(|c| c.is_control())
        || looks_numeric(s)
    {
        return true;
    }
    // The rules above are cheap; for anything with YAML punctuation left,
    // ask the parser whether it reads back as this very string.
    s.contains([
        '{', '}', '[', ']', ',', '&', '*', '!', '|', '>', '\'', '"', '%', '@', '`', '#', ':',
    ]) && !matches!(crate::yaml::parse(s).ok().as_deref(), Some([n]) if n.as_str() == Some(s))
}

fn looks_numeric(s: &str) -> bool {
    let t = s.strip_prefix(['-', '+']).unwrap_or(s);
    !t.is_empty()
        && (t
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'.' || b == b'_')
            || t.starts_with("0x")
            || t.starts_with("0o")
            || (t.contains(['e', 'E']) && t.parse::<f64>().is_ok()))
}

fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn layout_matches_compose() {
        let v = json!({
            "services": {"web": {
                "ports": [{"mode": "ingress", "target": 80, "published": "8080", "protocol": "tcp"}],
                "networks": {"default": null},
                "command": ["npm", "run start"],
            }},
        });
        let text = to_yaml(&v);
        assert!(text.contains(
            "\n    ports:\n      - mode: ingress\n        target: 80\n        published: \"8080\"\n        protocol: tcp\n"
        ), "{text}");
        assert!(
            text.contains("    networks:\n      default: null\n"),
            "{text}"
        );
        assert!(text.contains("      - run start\n"), "{text}");
    }

    #[test]
    fn strings_that_look_like_other_types_are_quoted() {
        for s in [
            "", "true", "no", "1024", "0440", "1.5", "null", "a: b", "#x", " x", "1e3",
        ] {
            assert!(scalar_string(s).starts_with('"'), "{s}");
        }
        for s in [
            "nginx",
            "redis:7",
            "/app",
            "-p",
            "02:42:ac:11:65:43",
            "node@4.2.3",
        ] {
            assert_eq!(scalar_string(s), s, "{s}");
        }
    }

    #[test]
    fn output_reads_back_identically() {
        let v = json!({"a": {"b": ["x", "y: z", "multi\nline\n", "", "3"], "c": {}, "d": []}});
        let text = to_yaml(&v);
        let back = crate::yaml::parse(&text).unwrap().remove(0).to_json();
        assert_eq!(back, v, "{text}");
    }
}
