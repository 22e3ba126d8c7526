//! The merged document → the normalized shape `docker compose config` prints.
//!
//! Short syntax becomes long (ports, volumes, build, depends_on), lists that
//! stand for dicts become dicts (environment, labels, sysctls), strings that
//! stand for numbers or booleans are converted (the schema lets `${VAR}`
//! stand anywhere), durations and byte sizes are written one way, relative
//! paths are resolved against the project directory and defaults are filled
//! in (default network, resource names). Works on JSON so the typed model can
//! be deserialized from the result in one step.

use crate::error::KeyPath;
use crate::units;
use serde_json::{json, Map, Value as Json};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalizeError {
    pub path: KeyPath,
    pub message: String,
}

type Result<T> = std::result::Result<T, NormalizeError>;

fn err<T>(path: &KeyPath, message: impl Into<String>) -> Result<T> {
    Err(NormalizeError {
        path: path.clone(),
        message: message.into(),
    })
}

pub struct Context<'a> {
    pub project_name: &'a str,
    pub project_dir: &'a Path,
    pub lookup: &'a dyn Fn(&str) -> Option<String>,
    /// Resolve `KEY` entries and `env_file:` into `environment`.
    pub resolve_environment: bool,
    /// Legacy v1 services run on the default bridge, not a project network.
    pub legacy_v1: bool,
}

impl Context<'_> {
    fn resolve_path(&self, p: &str) -> String {
        resolve_path(self.project_dir, p, self.lookup)
    }
}

/// Resolve `p` against `base`, expanding a leading `~` to `$HOME`.
pub fn resolve_path(base: &Path, p: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let expanded: PathBuf = if p == "~" || p.starts_with("~/") {
        let home = lookup("HOME").unwrap_or_else(|| "/".into());
        PathBuf::from(home).join(p.trim_start_matches('~').trim_start_matches('/'))
    } else {
        PathBuf::from(p)
    };
    let joined = if expanded.is_absolute() {
        expanded
    } else {
        base.join(expanded)
    };
    clean_path(&joined).to_string_lossy().into_owned()
}

/// Lexically clean a path (`a/./b/../c` → `a/c`) without touching the disk.
pub fn clean_path(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

/// Split a short volume spec on `:` (`src:dst:mode`).
pub fn split_volume_spec(spec: &str) -> Vec<String> {
    spec.split(':').map(str::to_string).collect()
}

pub fn normalize(doc: Json, ctx: &Context) -> Result<Json> {
    let root = KeyPath::root();
    let Json::Object(mut top) = doc else {
        return err(&root, "the top level must be a mapping");
    };
    let mut out = Map::new();
    out.insert("name".into(), Json::String(ctx.project_name.to_string()));

    let mut uses_default_network = false;
    let mut services = Map::new();
    if let Some(Json::Object(svcs)) = top.remove("services") {
        for (name, svc) in svcs {
            let path = root.key("services").key(&name);
            let svc = match svc {
                Json::Null => Map::new(),
                Json::Object(m) => m,
                _ => return err(&path, "a service must be a mapping"),
            };
            let svc = normalize_service(svc, ctx, &path)?;
            if svc
                .get("networks")
                .and_then(Json::as_object)
                .is_some_and(|n| n.contains_key("default"))
            {
                uses_default_network = true;
            }
            services.insert(name, Json::Object(svc));
        }
    }
    out.insert("services".into(), Json::Object(services));

    let mut networks = take_map(&mut top, "networks");
    if uses_default_network && !networks.contains_key("default") {
        networks.insert("default".into(), json!({}));
    }
    if !networks.is_empty() {
        out.insert(
            "networks".into(),
            Json::Object(normalize_resources(networks, ctx, "networks", &root)?),
        );
    }
    for kind in ["volumes", "secrets", "configs"] {
        let resources = take_map(&mut top, kind);
        if !resources.is_empty() {
            out.insert(
                kind.into(),
                Json::Object(normalize_resources(resources, ctx, kind, &root)?),
            );
        }
    }
    for (k, v) in top {
        if k.starts_with("x-") || k == "models" {
            out.insert(k, v);
        }
    }
    Ok(Json::Object(out))
}

fn take_map(m: &mut Map<String, Json>, key: &str) -> Map<String, Json> {
    match m.remove(key) {
        Some(Json::Object(o)) => o,
        _ => Map::new(),
    }
}

fn normalize_resources(
    resources: Map<String, Json>,
    ctx: &Context,
    kind: &str,
    root: &KeyPath,
) -> Result<Map<String, Json>> {
    let mut out = Map::new();
    for (key, def) in resources {
        let path = root.key(kind).key(&key);
        let mut def = match def {
            Json::Null => Map::new(),
            Json::Object(m) => m,
            _ => return err(&path, "must be a mapping"),
        };
        // Legacy `external: {name: x}` (file format 2/3.0–3.3).
        if let Some(Json::Object(ext)) = def.get("external").cloned() {
            if let Some(name) = ext.get("name") {
                def.insert("name".into(), name.clone());
            }
            def.insert("external".into(), Json::Bool(true));
        }
        if let Some(v) = def.get("external") {
            let b = to_bool(v, &path.key("external"))?;
            def.insert("external".into(), Json::Bool(b));
        }
        let external = def.get("external") == Some(&Json::Bool(true));
        if !def.contains_key("name") && matches!(kind, "networks" | "volumes") {
            let name = if external {
                key.clone()
            } else {
                format!("{}_{}", ctx.project_name, key)
            };
            def.insert("name".into(), Json::String(name));
        }
        if matches!(kind, "secrets" | "configs") {
            if let Some(Json::String(f)) = def.get("file") {
                let resolved = ctx.resolve_path(f);
                def.insert("file".into(), Json::String(resolved));
            }
        }
        for dict in ["labels", "driver_opts"] {
            if let Some(v) = def.remove(dict) {
                def.insert(dict.into(), list_or_dict(v, &path.key(dict), true)?);
            }
        }
        for flag in ["internal", "attachable", "enable_ipv6", "enable_ipv4"] {
            if let Some(v) = def.get(flag) {
                let b = to_bool(v, &path.key(flag))?;
                def.insert(flag.into(), Json::Bool(b));
            }
        }
        out.insert(key, Json::Object(def));
    }
    Ok(out)
}

const BOOL_KEYS: &[&str] = &[
    "tty",
    "stdin_open",
    "privileged",
    "read_only",
    "init",
    "oom_kill_disable",
];
const INT_KEYS: &[&str] = &[
    "scale",
    "cpu_shares",
    "cpu_count",
    "cpu_percent",
    "cpu_period",
    "cpu_quota",
    "cpu_rt_period",
    "cpu_rt_runtime",
    "pids_limit",
    "oom_score_adj",
    "mem_swappiness",
];
const BYTE_KEYS: &[&str] = &["mem_limit", "memswap_limit", "mem_reservation", "shm_size"];
const LIST_KEYS: &[&str] = &[
    "dns",
    "dns_search",
    "tmpfs",
    "cap_add",
    "cap_drop",
    "security_opt",
    "expose",
    "external_links",
    "links",
    "volumes_from",
    "devices",
    "group_add",
    "device_cgroup_rules",
    "profiles",
    "dns_opt",
    "label_file",
];

fn normalize_service(
    mut svc: Map<String, Json>,
    ctx: &Context,
    path: &KeyPath,
) -> Result<Map<String, Json>> {
    if let Some(b) = svc.remove("build") {
        svc.insert("build".into(), normalize_build(b, ctx, &path.key("build"))?);
    }
    for key in ["command", "entrypoint"] {
        if let Some(Json::String(s)) = svc.get(key) {
            let words = units::split_shell_words(s).or_else(|e| err(&path.key(key), e))?;
            svc.insert(key.into(), json!(words));
        }
    }
    for key in LIST_KEYS {
        if let Some(v) = svc.remove(*key) {
            let list = match v {
                Json::Array(a) => a,
                Json::Null => continue,
                other => vec![other],
            };
            let list: Vec<Json> = list
                .into_iter()
                .map(|v| match v {
                    Json::Object(d) if *key == "devices" => Json::String(device_spec(&d)),
                    other => Json::String(scalar_string(&other)),
                })
                .collect();
            svc.insert(key.to_string(), Json::Array(list));
        }
    }
    if let Some(Json::Array(items)) = svc.remove("volumes_from") {
        let normalized = items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                normalize_volumes_from(&scalar_string(v), &path.key("volumes_from").index(i))
            })
            .collect::<Result<Vec<_>>>()?;
        svc.insert("volumes_from".into(), json!(normalized));
    }
    let mut file_labels = Map::new();
    if let Some(Json::Array(items)) = svc.remove("label_file") {
        let mut resolved = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let file = ctx.resolve_path(&scalar_string(item));
            if !Path::new(&file).is_file() {
                return err(
                    &path.key("label_file").index(i),
                    format!("label file {file} not found"),
                );
            }
            let no_lookup = |_: &str| None;
            let parsed = crate::dotenv::parse_file(Path::new(&file), &no_lookup)
                .or_else(|e| err(&path.key("label_file").index(i), format!("{file}: {e}")))?;
            for (k, v) in parsed {
                file_labels.insert(k, Json::String(v));
            }
            resolved.push(Json::String(file));
        }
        svc.insert("label_file".into(), Json::Array(resolved));
    }
    for key in BOOL_KEYS {
        if let Some(v) = svc.get(*key) {
            let b = to_bool(v, &path.key(key))?;
            svc.insert(key.to_string(), Json::Bool(b));
        }
    }
    for key in INT_KEYS {
        if let Some(v) = svc.get(*key) {
            let i = to_int(v, &path.key(key))?;
            svc.insert(key.to_string(), json!(i));
        }
    }
    for key in BYTE_KEYS {
        if let Some(v) = svc.get(*key) {
            let b = to_bytes(v, &path.key(key))?;
            svc.insert(key.to_string(), Json::String(b.to_string()));
        }
    }
    if let Some(v) = svc.get("stop_grace_period") {
        let d = to_duration(v, &path.key("stop_grace_period"))?;
        svc.insert("stop_grace_period".into(), Json::String(d));
    }
    for key in ["labels", "sysctls", "annotations"] {
        if let Some(v) = svc.remove(key) {
            svc.insert(key.into(), list_or_dict(v, &path.key(key), true)?);
        }
    }
    if !file_labels.is_empty() {
        // Labels written in the file win over those from label files.
        if let Some(Json::Object(labels)) = svc.remove("labels") {
            file_labels.extend(labels);
        }
        svc.insert("labels".into(), Json::Object(file_labels));
    }
    normalize_environment(&mut svc, ctx, path)?;
    if let Some(v) = svc.remove("extra_hosts") {
        svc.insert(
            "extra_hosts".into(),
            normalize_extra_hosts(v, &path.key("extra_hosts"))?,
        );
    }
    if let Some(v) = svc.remove("ports") {
        svc.insert("ports".into(), normalize_ports(v, &path.key("ports"))?);
    }
    if let Some(Json::Array(items)) = svc.remove("expose") {
        svc.insert("expose".into(), Json::Array(items));
    }
    if let Some(v) = svc.remove("volumes") {
        svc.insert(
            "volumes".into(),
            normalize_volumes(v, ctx, &path.key("volumes"))?,
        );
    }
    if let Some(v) = svc.remove("depends_on") {
        svc.insert(
            "depends_on".into(),
            normalize_depends_on(v, &path.key("depends_on"))?,
        );
    }
    if let Some(v) = svc.remove("healthcheck") {
        svc.insert(
            "healthcheck".into(),
            normalize_healthcheck(v, &path.key("healthcheck"))?,
        );
    }
    if let Some(v) = svc.remove("ulimits") {
        svc.insert(
            "ulimits".into(),
            normalize_ulimits(v, &path.key("ulimits"))?,
        );
    }
    for key in ["secrets", "configs"] {
        if let Some(Json::Array(items)) = svc.remove(key) {
            let items = items
                .into_iter()
                .map(|i| match i {
                    Json::String(s) => json!({ "source": s }),
                    Json::Object(m) => Json::Object(normalize_file_reference(m)),
                    other => other,
                })
                .collect();
            svc.insert(key.into(), Json::Array(items));
        }
    }
    if let Some(v) = svc.remove("deploy") {
        svc.insert("deploy".into(), normalize_deploy(v, &path.key("deploy"))?);
    }
    let networks = svc.remove("networks");
    match networks {
        Some(Json::Array(items)) => {
            let m: Map<String, Json> = items
                .iter()
                .map(|n| (scalar_string(n), Json::Null))
                .collect();
            svc.insert("networks".into(), Json::Object(m));
        }
        Some(Json::Object(m)) => {
            svc.insert("networks".into(), Json::Object(m));
        }
        _ => {
            if !ctx.legacy_v1 && !svc.contains_key("network_mode") {
                svc.insert("networks".into(), json!({ "default": null }));
            }
        }
    }
    Ok(svc)
}

/// A long-syntax device (`{source, target, permissions}`) as the short
/// `SOURCE:TARGET:PERMISSIONS` every later stage reads.
fn device_spec(d: &Map<String, Json>) -> String {
    let field = |k: &str| d.get(k).map(scalar_string).filter(|s| !s.is_empty());
    let source = field("source").unwrap_or_default();
    let target = field("target").unwrap_or_else(|| source.clone());
    let permissions = field("permissions").unwrap_or_else(|| "rwm".into());
    format!("{source}:{target}:{permissions}")
}

/// uid/gid are strings and mode an octal string (`"0440"`), as compose prints them.
fn normalize_file_reference(mut m: Map<String, Json>) -> Map<String, Json> {
    for key in ["uid", "gid"] {
        if let Some(v) = m.get(key) {
            let s = scalar_string(v);
            m.insert(key.into(), Json::String(s));
        }
    }
    if let Some(Json::Number(n)) = m.get("mode") {
        if let Some(i) = n.as_u64() {
            m.insert("mode".into(), Json::String(format!("0{i:o}")));
        }
    }
    m
}

fn normalize_build(b: Json, ctx: &Context, path: &KeyPath) -> Result<Json> {
    let mut m = match b {
        Json::String(s) => {
            let mut m = Map::new();
            m.insert("context".into(), Json::String(s));
            m
        }
        Json::Object(m) => m,
        _ => return err(path, "must be a string or a mapping"),
    };
    let context = match m.get("context") {
        Some(Json::String(s)) => s.clone(),
        _ => ".".into(),
    };
    let context = if is_remote_context(&context) {
        context
    } else {
        ctx.resolve_path(&context)
    };
    m.insert("context".into(), Json::String(context));
    if !m.contains_key("dockerfile") && !m.contains_key("dockerfile_inline") {
        m.insert("dockerfile".into(), Json::String("Dockerfile".into()));
    }
    for key in ["args", "labels"] {
        if let Some(v) = m.remove(key) {
            m.insert(key.into(), list_or_dict(v, &path.key(key), false)?);
        }
    }
    if matches!(
        m.get("additional_contexts"),
        Some(Json::Array(_) | Json::Object(_))
    ) {
        let extra = m.remove("additional_contexts").unwrap_or_default();
        // A list of `name=value` is the mapping written another way.
        let extra: Map<String, Json> = match extra {
            Json::Array(items) => items
                .iter()
                .filter_map(|i| {
                    let s = scalar_string(i);
                    s.split_once('=')
                        .map(|(k, v)| (k.to_string(), Json::String(v.to_string())))
                })
                .collect(),
            Json::Object(map) => map,
            _ => Map::new(),
        };
        let resolved: Map<String, Json> = extra
            .into_iter()
            .map(|(k, v)| {
                let s = scalar_string(&v);
                // `service:NAME` names another service's image, not a path.
                let s = if is_remote_context(&s) || s.contains("://") || s.starts_with("service:") {
                    s
                } else {
                    ctx.resolve_path(&s)
                };
                (k, Json::String(s))
            })
            .collect();
        m.insert("additional_contexts".into(), Json::Object(resolved));
    }
    for key in ["no_cache", "pull", "privileged"] {
        if let Some(v) = m.get(key) {
            let b = to_bool(v, &path.key(key))?;
            m.insert(key.into(), Json::Bool(b));
        }
    }
    if let Some(Json::Array(items)) = m.remove("secrets") {
        let items = items
            .into_iter()
            .map(|i| match i {
                Json::String(s) => json!({ "source": s }),
                Json::Object(o) => Json::Object(normalize_file_reference(o)),
                other => other,
            })
            .collect();
        m.insert("secrets".into(), Json::Array(items));
    }
    if let Some(v) = m.get("shm_size") {
        let b = to_bytes(v, &path.key("shm_size"))?;
        m.insert("shm_size".into(), Json::String(b.to_string()));
    }
    Ok(Json::Object(m))
}

fn is_remote_context(s: &str) -> bool {
    s.starts_with("http://")
        || s.starts_with("https://")
        || s.starts_with("git://")
        || s.starts_with("git@")
        || s.starts_with("github.com/")
        || s.starts_with("ssh://")
}

fn normalize_volumes_from(spec: &str, path: &KeyPath) -> Result<String> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (kind, name, mode) = match parts.as_slice() {
        [name] => ("service", *name, "rw"),
        ["container", name] => ("container", *name, "rw"),
        ["container", name, mode] => ("container", *name, *mode),
        ["service", name] => ("service", *name, "rw"),
        ["service", name, mode] => ("service", *name, *mode),
        [name, mode] => ("service", *name, *mode),
        _ => return err(path, format!("invalid volumes_from {spec:?}")),
    };
    if name.is_empty() || !matches!(mode, "ro" | "rw") {
        return err(
            path,
            format!(
                "invalid volumes_from {spec:?}: expected NAME[:ro|rw] or container:NAME[:ro|rw]"
            ),
        );
    }
    Ok(format!("{kind}:{name}:{mode}"))
}

fn normalize_environment(svc: &mut Map<String, Json>, ctx: &Context, path: &KeyPath) -> Result<()> {
    let mut env = Map::new();
    if let Some(v) = svc.remove("env_file") {
        let list = match v {
            Json::Array(a) => a,
            Json::Null => Vec::new(),
            other => vec![other],
        };
        let mut files = Vec::new();
        for (i, item) in list.into_iter().enumerate() {
            let ipath = path.key("env_file").index(i);
            let (file, required, format) = match item {
                Json::String(s) => (s, true, None),
                Json::Object(m) => {
                    let file = m.get("path").map(scalar_string).unwrap_or_default();
                    let required = match m.get("required") {
                        Some(v) => to_bool(v, &ipath.key("required"))?,
                        None => true,
                    };
                    (file, required, m.get("format").map(scalar_string))
                }
                _ => return err(&ipath, "must be a string or a mapping"),
            };
            let resolved = ctx.resolve_path(&file);
            let mut entry = Map::new();
            entry.insert("path".into(), Json::String(resolved.clone()));
            if !required {
                entry.insert("required".into(), Json::Bool(false));
            }
            if let Some(f) = &format {
                entry.insert("format".into(), Json::String(f.clone()));
            }
            files.push(Json::Object(entry));
            if !ctx.resolve_environment {
                continue;
            }
            let p = Path::new(&resolved);
            if !p.is_file() {
                if required {
                    let why = if p.exists() {
                        "is not a regular file"
                    } else {
                        "not found"
                    };
                    return err(&ipath, format!("env file {resolved} {why}"));
                }
                continue;
            }
            if format.as_deref() == Some("raw") {
                let text = std::fs::read_to_string(p)
                    .or_else(|e| err(&ipath, format!("reading {resolved}: {e}")))?;
                for line in text.lines() {
                    if let Some((k, v)) = line.split_once('=') {
                        env.insert(k.to_string(), Json::String(v.to_string()));
                    }
                }
                continue;
            }
            let lookup = |k: &str| -> Option<String> {
                env.get(k)
                    .and_then(Json::as_str)
                    .map(str::to_string)
                    .or_else(|| (ctx.lookup)(k))
            };
            let parsed = crate::dotenv::parse_file(p, &lookup)
                .or_else(|e| err(&ipath, format!("{resolved}: {e}")))?;
            for (k, v) in parsed {
                env.insert(k, Json::String(v));
            }
        }
        svc.insert("env_file".into(), Json::Array(files));
    }
    if let Some(v) = svc.remove("environment") {
        let Json::Object(m) = list_or_dict(v, &path.key("environment"), false)? else {
            return err(&path.key("environment"), "must be a list or a mapping");
        };
        for (k, v) in m {
            let value = match v {
                Json::Null if ctx.resolve_environment => {
                    (ctx.lookup)(&k).map(Json::String).unwrap_or(Json::Null)
                }
                other => other,
            };
            env.insert(k, value);
        }
    }
    if !env.is_empty() {
        svc.insert("environment".into(), Json::Object(env));
    }
    Ok(())
}

/// `[K=V, K2]` or `{K: V}` → `{K: "V", K2: null}`. With `empty_for_bare`, a
/// bare `K` maps to `""` (labels) instead of null (environment).
fn list_or_dict(v: Json, path: &KeyPath, empty_for_bare: bool) -> Result<Json> {
    let mut out = Map::new();
    match v {
        Json::Array(items) => {
            for item in items {
                let s = scalar_string(&item);
                match s.split_once('=') {
                    Some((k, v)) => out.insert(k.to_string(), Json::String(v.to_string())),
                    None if empty_for_bare => out.insert(s, Json::String(String::new())),
                    None => out.insert(s, Json::Null),
                };
            }
        }
        Json::Object(m) => {
            for (k, v) in m {
                let value = match v {
                    Json::Null if empty_for_bare => Json::String(String::new()),
                    Json::Null => Json::Null,
                    other => Json::String(scalar_string(&other)),
                };
                out.insert(k, value);
            }
        }
        Json::Null => {}
        _ => return err(path, "must be a list or a mapping"),
    }
    Ok(Json::Object(out))
}

fn normalize_extra_hosts(v: Json, path: &KeyPath) -> Result<Json> {
    let mut out = Vec::new();
    match v {
        Json::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let s = scalar_string(item);
                // `host:ip` (legacy) and `host=ip`; an IPv6 address holds colons.
                let entry = match s.split_once('=') {
                    Some((h, ip)) => format!("{h}={ip}"),
                    None => match s.split_once(':') {
                        Some((h, ip)) => format!("{h}={ip}"),
                        None => return err(&path.index(i), format!("invalid extra host {s:?}")),
                    },
                };
                out.push(Json::String(entry));
            }
        }
        Json::Object(m) => {
            for (host, ip) in m {
                match ip {
                    Json::Array(ips) => {
                        for ip in ips {
                            out.push(Json::String(format!("{host}={}", scalar_string(&ip))))
                        }
                    }
                    other => out.push(Json::String(format!("{host}={}", scalar_string(&other)))),
                }
            }
        }
        _ => return err(path, "must be a list or a mapping"),
    }
    Ok(Json::Array(out))
}

/// One port number, 1 to 65535. `role` ("published" or "target") names it in errors.
fn parse_port(s: &str, role: &str, path: &KeyPath) -> Result<u16> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return err(
            path,
            format!(
                "invalid {role} port {s:?}: not a port number (1-65535) or a range (8000-8010)"
            ),
        );
    }
    match s.parse::<u32>() {
        Ok(p) if (1..=65535).contains(&p) => Ok(p as u16),
        _ => err(path, format!("{role} port {s} is out of range 1-65535")),
    }
}

/// A port or a range of ports (`8000-8010`), each end 1 to 65535.
fn parse_range(s: &str, role: &str, path: &KeyPath) -> Result<(u16, u16)> {
    match s.split_once('-') {
        Some((a, b)) if !a.is_empty() => {
            let (a, b) = (parse_port(a, role, path)?, parse_port(b, role, path)?);
            if b < a {
                return err(
                    path,
                    format!("invalid {role} port range {s:?}: end is before start"),
                );
            }
            Ok((a, b))
        }
        _ => {
            let p = parse_port(s, role, path)?;
            Ok((p, p))
        }
    }
}

/// A host address to publish on: an IPv4 or IPv6 address, as docker takes it.
fn check_host_ip(ip: &str, path: &KeyPath) -> Result<()> {
    let bare = ip
        .strip_prefix('[')
        .and_then(|i| i.strip_suffix(']'))
        .unwrap_or(ip);
    match bare.parse::<std::net::IpAddr>() {
        Ok(_) => Ok(()),
        Err(_) => err(
            path,
            format!("invalid host IP {ip:?}: not an IPv4 or IPv6 address"),
        ),
    }
}

/// `tcp`, `udp` or `sctp`, in any case (docker lowercases it).
fn parse_protocol(p: &str, path: &KeyPath) -> Result<String> {
    let lower = p.to_ascii_lowercase();
    if matches!(lower.as_str(), "tcp" | "udp" | "sctp") {
        Ok(lower)
    } else {
        err(
            path,
            format!("invalid protocol {p:?}: must be tcp, udp or sctp"),
        )
    }
}

fn port_entry(
    host_ip: Option<&str>,
    target: u16,
    published: Option<String>,
    protocol: &str,
) -> Json {
    let mut m = Map::new();
    m.insert("mode".into(), json!("ingress"));
    if let Some(ip) = host_ip {
        m.insert("host_ip".into(), json!(ip));
    }
    m.insert("target".into(), json!(target));
    if let Some(p) = published {
        m.insert("published".into(), json!(p));
    }
    m.insert("protocol".into(), json!(protocol));
    Json::Object(m)
}

/// Parse one short-syntax port: `[[HOST_IP:]HOST[-HOST]:]CONTAINER[-CONTAINER][/PROTO]`,
/// as docker's `nat.ParsePortSpec` reads it (a host range may map to one
/// container port: docker picks one of the range).
pub fn parse_port_spec(spec: &str, path: &KeyPath) -> Result<Vec<Json>> {
    let (body, protocol) = match spec.rsplit_once('/') {
        Some((b, "")) => (b, "tcp".to_string()),
        Some((b, p)) => (b, parse_protocol(p, path)?),
        None => (spec, "tcp".to_string()),
    };
    let protocol = protocol.as_str();
    // A bracketed IPv6 host address may hold colons.
    let (host_ip, rest) = if let Some(stripped) = body.strip_prefix('[') {
        match stripped.split_once("]:") {
            Some((ip, rest)) => (Some(ip.to_string()), rest.to_string()),
            None => {
                return err(
                    path,
                    format!("invalid port {spec:?}: unclosed [ in the host IP"),
                )
            }
        }
    } else {
        let parts: Vec<&str> = body.split(':').collect();
        match parts.len() {
            1 | 2 => (None, body.to_string()),
            3 => (
                Some(parts[0].to_string()),
                format!("{}:{}", parts[1], parts[2]),
            ),
            _ => {
                // An unbracketed IPv6 address: the last two fields are ports.
                let n = parts.len();
                (
                    Some(parts[..n - 2].join(":")),
                    format!("{}:{}", parts[n - 2], parts[n - 1]),
                )
            }
        }
    };
    if let Some(ip) = host_ip.as_deref().filter(|ip| !ip.is_empty()) {
        check_host_ip(ip, path)?;
    }
    let host_ip = host_ip.filter(|ip| !ip.is_empty());
    let (published, container) = match rest.split_once(':') {
        Some((p, c)) => (
            if p.is_empty() {
                None
            } else {
                Some(p.to_string())
            },
            c.to_string(),
        ),
        None => (None, rest.clone()),
    };
    if container.is_empty() {
        return err(path, format!("invalid port {spec:?}: no container port"));
    }
    let (t0, t1) = parse_range(&container, "target", path)?;
    let mut out = Vec::new();
    match published {
        None => {
            for t in t0..=t1 {
                out.push(port_entry(host_ip.as_deref(), t, None, protocol));
            }
        }
        Some(p) => {
            let (p0, p1) = parse_range(&p, "published", path)?;
            if t0 == t1 {
                let published = if p0 == p1 {
                    p0.to_string()
                } else {
                    format!("{p0}-{p1}")
                };
                out.push(port_entry(
                    host_ip.as_deref(),
                    t0,
                    Some(published),
                    protocol,
                ));
            } else if (p1 - p0) == (t1 - t0) {
                for (i, t) in (t0..=t1).enumerate() {
                    let published = (p0 as usize + i).to_string();
                    out.push(port_entry(host_ip.as_deref(), t, Some(published), protocol));
                }
            } else {
                return err(
                    path,
                    format!(
                        "invalid port range {spec:?}: host and container ranges differ in size"
                    ),
                );
            }
        }
    }
    Ok(out)
}

fn normalize_ports(v: Json, path: &KeyPath) -> Result<Json> {
    let Json::Array(items) = v else {
        return err(path, "must be a list");
    };
    let mut out = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let ipath = path.index(i);
        match item {
            Json::Object(mut m) => {
                let target = match m.get("target") {
                    Some(t) => {
                        let (a, b) =
                            parse_range(&scalar_string(t), "target", &ipath.key("target"))?;
                        if a != b {
                            return err(&ipath.key("target"), "must be a single port");
                        }
                        a
                    }
                    None => return err(&ipath, "missing target port"),
                };
                let mut e = Map::new();
                if let Some(n) = m.remove("name") {
                    e.insert("name".into(), n);
                }
                e.insert(
                    "mode".into(),
                    m.remove("mode").unwrap_or_else(|| json!("ingress")),
                );
                if let Some(ip) = m.remove("host_ip") {
                    let text = scalar_string(&ip);
                    if !text.is_empty() && !text.contains('$') {
                        check_host_ip(&text, &ipath.key("host_ip"))?;
                    }
                    e.insert("host_ip".into(), ip);
                }
                e.insert("target".into(), json!(target));
                if let Some(p) = m.remove("published") {
                    let p = scalar_string(&p);
                    if !p.is_empty() && !p.contains('$') {
                        parse_range(&p, "published", &ipath.key("published"))?;
                        e.insert("published".into(), json!(p));
                    }
                }
                let protocol = match m.remove("protocol") {
                    Some(Json::String(p)) if !p.contains('$') => {
                        json!(parse_protocol(&p, &ipath.key("protocol"))?)
                    }
                    Some(p) => p,
                    None => json!("tcp"),
                };
                e.insert("protocol".into(), protocol);
                for (k, v) in m {
                    if k != "target" {
                        e.insert(k, v);
                    }
                }
                out.push(Json::Object(e));
            }
            Json::String(s) if s.contains('$') => out.push(Json::String(s)),
            other => out.extend(parse_port_spec(&scalar_string(&other), &ipath)?),
        }
    }
    Ok(Json::Array(out))
}

fn normalize_volumes(v: Json, ctx: &Context, path: &KeyPath) -> Result<Json> {
    let Json::Array(items) = v else {
        return err(path, "must be a list");
    };
    let mut out = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let ipath = path.index(i);
        let entry = match item {
            // Only left uninterpolated (`config --no-interpolate`) can this hold a variable.
            Json::String(s) if s.contains('$') => Json::String(s),
            Json::String(s) => parse_volume_spec(&s, ctx, &ipath)?,
            Json::Object(mut m) => {
                let kind = m.get("type").map(scalar_string).unwrap_or_default();
                if kind == "bind" {
                    if let Some(src) = m.get("source").map(scalar_string) {
                        m.insert("source".into(), Json::String(ctx.resolve_path(&src)));
                    }
                }
                if let Some(v) = m.get("read_only") {
                    let b = to_bool(v, &ipath.key("read_only"))?;
                    m.insert("read_only".into(), Json::Bool(b));
                }
                if let Some(Json::Object(t)) = m.get_mut("tmpfs") {
                    if let Some(size) = t.get("size") {
                        let b = to_bytes(size, &ipath.key("tmpfs").key("size"))?;
                        t.insert("size".into(), Json::String(b.to_string()));
                    }
                }
                Json::Object(m)
            }
            _ => return err(&ipath, "must be a string or a mapping"),
        };
        out.push(entry);
    }
    Ok(Json::Array(out))
}

fn parse_volume_spec(spec: &str, ctx: &Context, path: &KeyPath) -> Result<Json> {
    let parts = split_volume_spec(spec);
    let (source, target, mode) = match parts.as_slice() {
        [t] => (None, t.clone(), None),
        [s, t] => (Some(s.clone()), t.clone(), None),
        [s, t, m] => (Some(s.clone()), t.clone(), Some(m.clone())),
        _ => return err(path, format!("invalid volume {spec:?}: too many colons")),
    };
    if target.is_empty() {
        return err(path, format!("invalid volume {spec:?}: no container path"));
    }
    if !target.starts_with('/') {
        return err(
            path,
            format!("invalid volume {spec:?}: the container path {target:?} must be absolute"),
        );
    }
    let mut m = Map::new();
    let mut read_only = false;
    let mut bind_opts = Map::new();
    let mut volume_opts = Map::new();
    let mut consistency = None;
    for opt in mode.iter().flat_map(|m| m.split(',')) {
        match opt {
            "ro" => read_only = true,
            "rw" | "" => {}
            "z" | "Z" => {
                bind_opts.insert("selinux".into(), json!(opt));
            }
            "nocopy" => {
                volume_opts.insert("nocopy".into(), json!(true));
            }
            "cached" | "delegated" | "consistent" => consistency = Some(opt.to_string()),
            "shared" | "rshared" | "slave" | "rslave" | "private" | "rprivate" => {
                bind_opts.insert("propagation".into(), json!(opt));
            }
            other => {
                return err(
                    path,
                    format!("invalid volume {spec:?}: unknown mode {other:?}"),
                )
            }
        }
    }
    let is_path = |s: &str| s.starts_with('.') || s.starts_with('/') || s.starts_with('~');
    match &source {
        Some(s) if is_path(s) => {
            m.insert("type".into(), json!("bind"));
            m.insert("source".into(), json!(ctx.resolve_path(s)));
            m.insert("target".into(), json!(target));
            if read_only {
                m.insert("read_only".into(), json!(true));
            }
            bind_opts.insert("create_host_path".into(), json!(true));
            m.insert("bind".into(), Json::Object(bind_opts));
        }
        _ => {
            m.insert("type".into(), json!("volume"));
            if let Some(s) = source.filter(|s| !s.is_empty()) {
                m.insert("source".into(), json!(s));
            }
            m.insert("target".into(), json!(target));
            if read_only {
                m.insert("read_only".into(), json!(true));
            }
            m.insert("volume".into(), Json::Object(volume_opts));
        }
    }
    if let Some(c) = consistency {
        m.insert("consistency".into(), json!(c));
    }
    Ok(Json::Object(m))
}

fn normalize_depends_on(v: Json, path: &KeyPath) -> Result<Json> {
    let mut out = Map::new();
    match v {
        Json::Array(items) => {
            for item in items {
                out.insert(
                    scalar_string(&item),
                    json!({"condition": "service_started", "required": true}),
                );
            }
        }
        Json::Object(m) => {
            for (name, dep) in m {
                let dpath = path.key(&name);
                let mut d = match dep {
                    Json::Object(d) => d,
                    Json::Null => Map::new(),
                    _ => return err(&dpath, "must be a mapping"),
                };
                if !d.contains_key("condition") {
                    d.insert("condition".into(), json!("service_started"));
                }
                let required = match d.get("required") {
                    Some(v) => to_bool(v, &dpath.key("required"))?,
                    None => true,
                };
                d.insert("required".into(), json!(required));
                if let Some(v) = d.get("restart") {
                    let b = to_bool(v, &dpath.key("restart"))?;
                    d.insert("restart".into(), json!(b));
                }
                out.insert(name, Json::Object(d));
            }
        }
        _ => return err(path, "must be a list or a mapping"),
    }
    Ok(Json::Object(out))
}

fn normalize_healthcheck(v: Json, path: &KeyPath) -> Result<Json> {
    let Json::Object(mut m) = v else {
        return err(path, "must be a mapping");
    };
    if let Some(Json::String(s)) = m.get("test") {
        let s = s.clone();
        m.insert("test".into(), json!(["CMD-SHELL", s]));
    }
    for key in ["interval", "timeout", "start_period", "start_interval"] {
        if let Some(v) = m.get(key) {
            let d = to_duration(v, &path.key(key))?;
            m.insert(key.into(), Json::String(d));
        }
    }
    if let Some(v) = m.get("retries") {
        let r = to_int(v, &path.key("retries"))?;
        m.insert("retries".into(), json!(r));
    }
    if let Some(v) = m.get("disable") {
        let b = to_bool(v, &path.key("disable"))?;
        m.insert("disable".into(), json!(b));
    }
    Ok(Json::Object(m))
}

fn normalize_ulimits(v: Json, path: &KeyPath) -> Result<Json> {
    let Json::Object(m) = v else {
        return err(path, "must be a mapping");
    };
    let mut out = Map::new();
    for (name, limit) in m {
        let lpath = path.key(&name);
        let value = match limit {
            Json::Object(l) => {
                let soft = l
                    .get("soft")
                    .map(|v| to_int(v, &lpath.key("soft")))
                    .transpose()?;
                let hard = l
                    .get("hard")
                    .map(|v| to_int(v, &lpath.key("hard")))
                    .transpose()?;
                json!({"soft": soft, "hard": hard})
            }
            other => json!(to_int(&other, &lpath)?),
        };
        out.insert(name, value);
    }
    Ok(Json::Object(out))
}

fn normalize_deploy(v: Json, path: &KeyPath) -> Result<Json> {
    let Json::Object(mut m) = v else {
        return err(path, "must be a mapping");
    };
    if let Some(v) = m.remove("labels") {
        m.insert("labels".into(), list_or_dict(v, &path.key("labels"), true)?);
    }
    if let Some(r) = m.get("replicas") {
        let n = to_int(r, &path.key("replicas"))?;
        m.insert("replicas".into(), json!(n));
    }
    if let Some(Json::Object(res)) = m.get_mut("resources") {
        for kind in ["limits", "reservations"] {
            if let Some(Json::Object(l)) = res.get_mut(kind) {
                if let Some(mem) = l.get("memory") {
                    let b = to_bytes(mem, &path.key("resources").key(kind).key("memory"))?;
                    l.insert("memory".into(), Json::String(b.to_string()));
                }
                if let Some(cpus) = l.get("cpus") {
                    let s = scalar_string(cpus);
                    match s.parse::<f64>() {
                        Ok(f) => {
                            l.insert("cpus".into(), json!(f));
                        }
                        Err(_) => {
                            return err(
                                &path.key("resources").key(kind).key("cpus"),
                                format!("invalid number of CPUs {s:?}"),
                            )
                        }
                    }
                }
            }
        }
    }
    for key in ["update_config", "rollback_config"] {
        if let Some(Json::Object(c)) = m.get_mut(key) {
            for d in ["delay", "monitor"] {
                if let Some(v) = c.get(d) {
                    let s = to_duration(v, &path.key(key).key(d))?;
                    c.insert(d.into(), Json::String(s));
                }
            }
        }
    }
    if let Some(Json::Object(c)) = m.get_mut("restart_policy") {
        for d in ["delay", "window"] {
            if let Some(v) = c.get(d) {
                let s = to_duration(v, &path.key("restart_policy").key(d))?;
                c.insert(d.into(), Json::String(s));
            }
        }
    }
    Ok(Json::Object(m))
}

/// The document without the short-syntax entries left unparsed because they
/// name variables (only with interpolation skipped): the typed model needs
/// parsed entries.
pub fn without_unresolved(doc: &Json) -> Json {
    let mut doc = doc.clone();
    if let Some(Json::Object(svcs)) = doc.get_mut("services") {
        for svc in svcs.values_mut() {
            for key in ["ports", "volumes"] {
                if let Some(Json::Array(items)) = svc.get_mut(key) {
                    items.retain(|i| !i.is_string());
                }
            }
        }
    }
    doc
}

pub fn scalar_string(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        Json::Null => String::new(),
        Json::Bool(b) => b.to_string(),
        Json::Number(n) => n.to_string(),
        other => other.to_string(),
    }
}

fn to_bool(v: &Json, path: &KeyPath) -> Result<bool> {
    match v {
        Json::Bool(b) => Ok(*b),
        Json::String(s) => match s.to_ascii_lowercase().as_str() {
            "true" | "yes" | "y" | "on" | "1" => Ok(true),
            "false" | "no" | "n" | "off" | "0" | "" => Ok(false),
            _ => err(path, format!("{s:?} is not a boolean (true or false)")),
        },
        _ => err(path, "must be a boolean"),
    }
}

fn to_int(v: &Json, path: &KeyPath) -> Result<i64> {
    match v {
        Json::Number(n) => n
            .as_i64()
            .map_or_else(|| err(path, format!("{n} is not an integer")), Ok),
        Json::String(s) => s
            .trim()
            .parse::<i64>()
            .or_else(|_| err(path, format!("{s:?} is not an integer"))),
        _ => err(path, "must be an integer"),
    }
}

fn to_bytes(v: &Json, path: &KeyPath) -> Result<u64> {
    match v {
        Json::Number(n) => n
            .as_u64()
            .map_or_else(|| err(path, format!("{n} is not a size in bytes")), Ok),
        Json::String(s) => units::parse_bytes(s).map_or_else(
            || {
                err(
                    path,
                    format!("{s:?} is not a size (like 512, 64k, 50m, 2g)"),
                )
            },
            Ok,
        ),
        _ => err(path, "must be a size"),
    }
}

fn to_duration(v: &Json, path: &KeyPath) -> Result<String> {
    let s = scalar_string(v);
    match units::parse_duration(&s) {
        Some(d) => Ok(units::format_duration(d)),
        None => err(
            path,
            format!("{s:?} is not a duration (like 10s, 1m30s, 500ms)"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> KeyPath {
        KeyPath::root().key("ports").index(0)
    }

    #[test]
    fn ports_short_syntax() {
        let one = |s: &str| parse_port_spec(s, &p()).unwrap();
        assert_eq!(
            one("3000"),
            vec![json!({"mode":"ingress","target":3000,"protocol":"tcp"})]
        );
        assert_eq!(one("3000-3002").len(), 3);
        assert_eq!(
            one("127.0.0.1:8001:8001/udp"),
            vec![
                json!({"mode":"ingress","host_ip":"127.0.0.1","target":8001,"published":"8001","protocol":"udp"})
            ]
        );
        assert_eq!(one("9090-9091:8080-8081")[1]["published"], "9091");
        assert_eq!(one("127.0.0.1::5000")[0].get("published"), None);
        assert_eq!(one("[::1]:80:8080")[0]["host_ip"], "::1");
        assert!(parse_port_spec("70000:80", &p()).is_err());
        assert!(parse_port_spec("8000-8001:80-82", &p()).is_err());
        assert!(parse_port_spec("80/icmp", &p()).is_err());
        assert!(parse_port_spec("abc", &p()).is_err());
    }

    #[test]
    fn volumes_from_forms() {
        let f = |s: &str| normalize_volumes_from(s, &p());
        assert_eq!(f("code").unwrap(), "service:code:rw");
        assert_eq!(f("code:ro").unwrap(), "service:code:ro");
        assert_eq!(f("container:abc").unwrap(), "container:abc:rw");
        assert_eq!(f("service:code:rw").unwrap(), "service:code:rw");
        assert!(f("code:rx").is_err());
    }
}
