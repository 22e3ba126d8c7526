//! `develop.watch` read typed from a normalized service.
//!
//! The compose loader keeps `develop` as raw JSON (schema-checked, not
//! normalized), so this module gives every entry its meaning and refuses,
//! with one line naming the key path, whatever berth could not act on.

use berth_compose::model::{Project, Service};
use berth_compose::normalize::resolve_path;
use berth_dockerignore::DockerIgnore;
use serde_json::{Map, Value as Json};
use std::path::{Path, PathBuf};

/// What a change under a rule's path calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Sync,
    Rebuild,
    Restart,
    SyncRestart,
    SyncExec,
}

impl Action {
    fn parse(text: &str) -> Option<Action> {
        Some(match text {
            "sync" => Action::Sync,
            "rebuild" => Action::Rebuild,
            "restart" => Action::Restart,
            "sync+restart" => Action::SyncRestart,
            "sync+exec" => Action::SyncExec,
            _ => return None,
        })
    }

    /// Whether files are copied into the container.
    pub fn syncs(self) -> bool {
        matches!(self, Action::Sync | Action::SyncRestart | Action::SyncExec)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Sync => "sync",
            Action::Rebuild => "rebuild",
            Action::Restart => "restart",
            Action::SyncRestart => "sync+restart",
            Action::SyncExec => "sync+exec",
        }
    }
}

/// The command a `sync+exec` rule runs in the service's container after
/// syncing (compose's `service_hook`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecHook {
    pub command: Vec<String>,
    pub user: Option<String>,
    pub privileged: bool,
    pub working_dir: Option<String>,
    /// `KEY=VALUE`, in the order written.
    pub environment: Vec<(String, String)>,
}

/// A malformed or unusable `develop.watch` entry: `key: message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct RuleError {
    /// The key path, `services.app.develop.watch[0].action`.
    pub key: String,
    pub message: String,
}

fn err(key: impl Into<String>, message: impl Into<String>) -> RuleError {
    RuleError {
        key: key.into(),
        message: message.into(),
    }
}

/// One `develop.watch` entry of one service, ready to match paths.
#[derive(Debug, Clone)]
pub struct WatchRule {
    pub service: String,
    /// Its position in the service's `develop.watch`, for messages.
    pub index: usize,
    pub action: Action,
    /// Absolute, lexically clean host path.
    pub path: PathBuf,
    /// Absolute, clean container path; set for the syncing actions.
    pub target: Option<String>,
    /// The rule's `ignore` patterns, relative to `path`.
    pub ignore: DockerIgnore,
    /// The rule's `include` patterns, relative to `path`; `None`: all.
    pub include: Option<DockerIgnore>,
    pub exec: Option<ExecHook>,
    pub initial_sync: bool,
    /// The service's build context and its `.dockerignore`: docker compose
    /// never syncs what the image build would leave out either.
    pub context_ignore: Option<(PathBuf, DockerIgnore)>,
    /// For a syncing rule, the source of a bind mount of the service that
    /// already holds `path`: the container sees every change through it,
    /// so docker compose drops the rule with a warning, and so should the
    /// caller.
    pub bind_mounted: Option<PathBuf>,
}

impl WatchRule {
    /// `services.app.develop.watch[0]`, for messages.
    pub fn key(&self) -> String {
        format!("services.{}.develop.watch[{}]", self.service, self.index)
    }
}

/// [`project_rules`] of a loaded project: paths from its project directory,
/// `~` from the environment it was loaded with.
pub fn loaded_rules(
    loaded: &berth_compose::Loaded,
    only: &[String],
) -> Result<Vec<WatchRule>, RuleError> {
    let env = |k: &str| loaded.environment.get(k).cloned();
    project_rules(&loaded.project, &loaded.project_dir, only, &env)
}

/// The rules of the services named (all services when `only` is empty),
/// in the project's service order. Relative `path`s are resolved against
/// `project_dir`; `env` answers `~`'s `HOME`.
pub fn project_rules(
    project: &Project,
    project_dir: &Path,
    only: &[String],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<WatchRule>, RuleError> {
    if let Some(unknown) = only.iter().find(|s| !project.services.contains_key(*s)) {
        return Err(err(
            format!("services.{unknown}"),
            "no such service in this project",
        ));
    }
    let mut rules = Vec::new();
    for (name, service) in &project.services {
        if only.is_empty() || only.contains(name) {
            rules.extend(service_rules(name, service, project_dir, env)?);
        }
    }
    Ok(rules)
}

/// The rules of one service; none when it has no `develop.watch`.
pub fn service_rules(
    name: &str,
    service: &Service,
    project_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<WatchRule>, RuleError> {
    let develop_key = format!("services.{name}.develop");
    let develop = match service.extra.get("develop") {
        None | Some(Json::Null) => return Ok(Vec::new()),
        Some(Json::Object(m)) => m,
        Some(_) => return Err(err(develop_key, "must be a mapping")),
    };
    for key in develop.keys() {
        if key != "watch" && !key.starts_with("x-") {
            return Err(err(format!("{develop_key}.{key}"), "unknown key"));
        }
    }
    let watch = match develop.get("watch") {
        None | Some(Json::Null) => return Ok(Vec::new()),
        Some(Json::Array(items)) => items,
        Some(_) => return Err(err(format!("{develop_key}.watch"), "must be a list")),
    };
    let context_ignore = match &service.build {
        Some(build) if !build.context.contains("://") => {
            let context = PathBuf::from(&build.context);
            let ignore = match &build.dockerfile {
                Some(dockerfile) => {
                    DockerIgnore::for_dockerfile(&context, &context.join(dockerfile))
                }
                None => DockerIgnore::from_context_dir(&context),
            }
            .map_err(|e| err(format!("services.{name}.build"), e.to_string()))?;
            Some((context, ignore))
        }
        _ => None,
    };
    let mut rules = Vec::new();
    for (index, item) in watch.iter().enumerate() {
        let key = format!("{develop_key}.watch[{index}]");
        let Json::Object(entry) = item else {
            return Err(err(key, "must be a mapping"));
        };
        let mut rule = parse_entry(name, index, &key, entry, service, project_dir, env)?;
        rule.context_ignore = context_ignore.clone();
        rules.push(rule);
    }
    Ok(rules)
}

fn parse_entry(
    service_name: &str,
    index: usize,
    key: &str,
    entry: &Map<String, Json>,
    service: &Service,
    project_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<WatchRule, RuleError> {
    const KNOWN: &[&str] = &[
        "action",
        "path",
        "target",
        "ignore",
        "include",
        "exec",
        "initial_sync",
    ];
    for k in entry.keys() {
        if !KNOWN.contains(&k.as_str()) && !k.starts_with("x-") {
            return Err(err(format!("{key}.{k}"), "unknown key"));
        }
    }
    let action_text = match entry.get("action") {
        Some(Json::String(s)) => s,
        Some(_) => return Err(err(format!("{key}.action"), "must be a string")),
        None => return Err(err(format!("{key}.action"), "is required")),
    };
    let action = Action::parse(action_text).ok_or_else(|| {
        err(
            format!("{key}.action"),
            format!(
                "unknown action {action_text:?} (sync, rebuild, restart, sync+restart or sync+exec)"
            ),
        )
    })?;
    let path_text = match entry.get("path") {
        Some(Json::String(s)) if !s.is_empty() => s,
        Some(Json::String(_)) => return Err(err(format!("{key}.path"), "must not be empty")),
        Some(_) => return Err(err(format!("{key}.path"), "must be a string")),
        None => return Err(err(format!("{key}.path"), "is required")),
    };
    let path = PathBuf::from(resolve_path(project_dir, path_text, env));

    let target = match entry.get("target") {
        None | Some(Json::Null) => None,
        Some(Json::String(t)) => Some(container_path(t, service, &format!("{key}.target"))?),
        Some(_) => return Err(err(format!("{key}.target"), "must be a string")),
    };
    if action.syncs() && target.is_none() {
        return Err(err(
            format!("{key}.target"),
            format!("is required for action {}", action.as_str()),
        ));
    }
    if action == Action::Rebuild && service.build.is_none() {
        return Err(err(
            format!("{key}.action"),
            format!("rebuild needs a build section on service {service_name}"),
        ));
    }

    let ignore = patterns(entry.get("ignore"), &format!("{key}.ignore"))?.unwrap_or_default();
    let include = patterns(entry.get("include"), &format!("{key}.include"))?;

    let exec = match entry.get("exec") {
        None | Some(Json::Null) => None,
        Some(Json::Object(m)) => Some(parse_hook(m, &format!("{key}.exec"))?),
        Some(_) => return Err(err(format!("{key}.exec"), "must be a mapping")),
    };
    match (action, &exec) {
        (Action::SyncExec, None) => {
            return Err(err(
                format!("{key}.exec"),
                "is required for action sync+exec",
            ))
        }
        (a, Some(_)) if a != Action::SyncExec => {
            return Err(err(
                format!("{key}.exec"),
                format!("only applies to action sync+exec, not {}", a.as_str()),
            ))
        }
        _ => {}
    }

    let initial_sync = match entry.get("initial_sync") {
        None | Some(Json::Null) => false,
        Some(Json::Bool(b)) => *b,
        Some(_) => return Err(err(format!("{key}.initial_sync"), "must be true or false")),
    };
    if initial_sync && !action.syncs() {
        return Err(err(
            format!("{key}.initial_sync"),
            format!("only applies to syncing actions, not {}", action.as_str()),
        ));
    }

    let bind_mounted = if action.syncs() {
        service
            .volumes
            .iter()
            .filter(|m| m.kind == "bind")
            .filter_map(|m| m.source.as_deref().map(PathBuf::from))
            .find(|source| source.is_absolute() && path.starts_with(source))
    } else {
        None
    };

    Ok(WatchRule {
        service: service_name.to_string(),
        index,
        action,
        path,
        target,
        ignore,
        include,
        exec,
        initial_sync,
        context_ignore: None,
        bind_mounted,
    })
}

/// An absolute, clean container path; a relative one is taken from the
/// service's `working_dir`, where a process in the container would find it.
fn container_path(text: &str, service: &Service, key: &str) -> Result<String, RuleError> {
    if text.is_empty() {
        return Err(err(key, "must not be empty"));
    }
    let joined = if text.starts_with('/') {
        text.to_string()
    } else {
        match &service.working_dir {
            Some(dir) if dir.starts_with('/') => format!("{dir}/{text}"),
            _ => {
                return Err(err(
                    key,
                    format!("{text:?} is relative and the service has no absolute working_dir"),
                ))
            }
        }
    };
    let mut parts: Vec<&str> = Vec::new();
    for part in joined.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    Ok(format!("/{}", parts.join("/")))
}

fn string_list(value: &Json, key: &str) -> Result<Vec<String>, RuleError> {
    match value {
        Json::String(s) => Ok(vec![s.clone()]),
        Json::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Json::String(s) => Ok(s.clone()),
                _ => Err(err(format!("{key}[{i}]"), "must be a string")),
            })
            .collect(),
        _ => Err(err(key, "must be a string or a list of strings")),
    }
}

fn patterns(value: Option<&Json>, key: &str) -> Result<Option<DockerIgnore>, RuleError> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let list = string_list(value, key)?;
    DockerIgnore::from_patterns(&list)
        .map(Some)
        .map_err(|e| err(key, e.to_string()))
}

fn parse_hook(m: &Map<String, Json>, key: &str) -> Result<ExecHook, RuleError> {
    const KNOWN: &[&str] = &[
        "command",
        "user",
        "privileged",
        "working_dir",
        "environment",
    ];
    for k in m.keys() {
        if !KNOWN.contains(&k.as_str()) && !k.starts_with("x-") {
            return Err(err(format!("{key}.{k}"), "unknown key"));
        }
    }
    let command = match m.get("command") {
        Some(Json::String(s)) => berth_compose::units::split_shell_words(s)
            .map_err(|e| err(format!("{key}.command"), e))?,
        Some(v @ Json::Array(_)) => string_list(v, &format!("{key}.command"))?,
        None | Some(Json::Null) => Vec::new(),
        Some(_) => {
            return Err(err(
                format!("{key}.command"),
                "must be a string or a list of strings",
            ))
        }
    };
    if command.is_empty() {
        return Err(err(
            format!("{key}.command"),
            "is required and must not be empty",
        ));
    }
    let text = |k: &str| -> Result<Option<String>, RuleError> {
        match m.get(k) {
            None | Some(Json::Null) => Ok(None),
            Some(Json::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(err(format!("{key}.{k}"), "must be a string")),
        }
    };
    let privileged = match m.get("privileged") {
        None | Some(Json::Null) => false,
        Some(Json::Bool(b)) => *b,
        // The schema allows a string so that interpolation can produce it.
        Some(Json::String(s)) if s == "true" => true,
        Some(Json::String(s)) if s == "false" => false,
        Some(_) => return Err(err(format!("{key}.privileged"), "must be true or false")),
    };
    let environment = match m.get("environment") {
        None | Some(Json::Null) => Vec::new(),
        Some(Json::Object(vars)) => vars
            .iter()
            .map(|(k, v)| {
                let value = match v {
                    Json::Null => String::new(),
                    Json::String(s) => s.clone(),
                    Json::Number(n) => n.to_string(),
                    Json::Bool(b) => b.to_string(),
                    _ => return Err(err(format!("{key}.environment.{k}"), "must be a scalar")),
                };
                Ok((k.clone(), value))
            })
            .collect::<Result<_, _>>()?,
        Some(list @ Json::Array(_)) => string_list(list, &format!("{key}.environment"))?
            .into_iter()
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (kv, String::new()),
            })
            .collect(),
        Some(_) => {
            return Err(err(
                format!("{key}.environment"),
                "must be a mapping or a list",
            ))
        }
    };
    Ok(ExecHook {
        command,
        user: text("user")?,
        privileged,
        working_dir: text("working_dir")?,
        environment,
    })
}
