//! Secrets and configs as swarm secrets and configs.
//!
//! A swarm secret or config is immutable, so each one is named after its
//! content (`<project>_<key>-<12 hex digits of its sha256>`, or `<name>-…`
//! when the file gives `name:`): new content is a new object, the service
//! spec names it, and swarm rolls the service onto it like any other spec
//! change. Objects no longer named by any service of the stack are removed
//! after the roll; `down` removes the rest. `external: true` names an
//! object that already exists on the swarm, used as it is.
//!
//! Contents are resolved here from `file:`, `environment:` and (configs)
//! `content:`, as the other engines do, so what a task reads is what the
//! compose file says, whichever machine `up` runs on.

use crate::spec::refuse;
use crate::{api_err, is_not_found, labels};
use base64::Engine as _;
use berth_compose::model::Project;
use berth_engine::backend::Progress;
use berth_engine::BackendError;
use berth_oci::Digest;
use bollard::models::{
    ConfigSpec, SecretSpec, TaskSpecContainerSpecConfigs, TaskSpecContainerSpecFile,
    TaskSpecContainerSpecFile1, TaskSpecContainerSpecSecrets,
};
use bollard::query_parameters::{ListConfigsOptions, ListSecretsOptions};
use indexmap::IndexMap;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Secret or config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Secret,
    Config,
}

impl Kind {
    /// The compose key (`secrets`, `configs`).
    pub fn key(self) -> &'static str {
        match self {
            Kind::Secret => "secrets",
            Kind::Config => "configs",
        }
    }

    /// Docker's word for one (`Secret`, `Config`), for progress lines.
    pub fn noun(self) -> &'static str {
        match self {
            Kind::Secret => "Secret",
            Kind::Config => "Config",
        }
    }
}

/// One top-level secret or config as the swarm holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwarmObject {
    pub kind: Kind,
    /// Its top-level key.
    pub key: String,
    /// The name on the swarm.
    pub name: String,
    /// `None`: external, it exists already and berth neither makes nor
    /// removes it.
    pub content: Option<Vec<u8>>,
    pub labels: HashMap<String, String>,
}

/// One file a service's tasks get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRef {
    pub kind: Kind,
    pub key: String,
    /// The object's name on the swarm.
    pub name: String,
    /// Absolute path inside the task's container.
    pub target: String,
    pub uid: String,
    pub gid: String,
    pub mode: u32,
}

/// The secrets and configs of a project: the objects its services name and
/// what each service gets.
#[derive(Debug, Default)]
pub struct Files {
    pub objects: BTreeMap<(Kind, String), SwarmObject>,
    pub services: BTreeMap<String, Vec<FileRef>>,
}

impl Files {
    /// `secrets.db=p_db-0123456789ab,…` (sorted): what `up` compares to say
    /// which content changed.
    pub fn label(&self, service: &str) -> String {
        let mut parts: Vec<String> = self
            .services
            .get(service)
            .into_iter()
            .flatten()
            .map(|f| format!("{}.{}={}", f.kind.key(), f.key, f.name))
            .collect();
        parts.sort();
        parts.dedup();
        parts.join(",")
    }
}

/// The keys (`secrets.db`) whose object changed between two
/// [`Files::label`]s.
pub fn changed(old: &str, new: &str) -> Vec<String> {
    let parse = |s: &str| -> BTreeMap<String, String> {
        s.split(',')
            .filter_map(|p| p.split_once('='))
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    let (old, new) = (parse(old), parse(new));
    new.iter()
        .filter(|(k, v)| old.get(*k).is_some_and(|o| o != *v))
        .map(|(k, _)| k.clone())
        .collect()
}

/// Top-level keys of a secret or config swarm honours here; the rest are
/// refused by path (`secrets.x.driver`: swarm's secret drivers are
/// plugins berth cannot vouch for; `template_driver` would make the content
/// depend on the task, which the content-addressed name cannot say).
fn allowed_top(kind: Kind, key: &str) -> bool {
    key.starts_with("x-")
        || matches!(key, "file" | "environment" | "external" | "name" | "labels")
        || kind == Kind::Config && key == "content"
}

/// The first key of a secret or config (top-level, or a service's entry)
/// that swarm cannot honour, by path.
pub fn check(project: &Project) -> Result<(), BackendError> {
    for kind in [Kind::Secret, Kind::Config] {
        let defs = match kind {
            Kind::Secret => &project.secrets,
            Kind::Config => &project.configs,
        };
        for (key, def) in defs {
            let Some(map) = def.as_object() else { continue };
            for k in map.keys() {
                if !allowed_top(kind, k) {
                    return Err(refuse(format!("{}.{key}.{k}", kind.key()), k));
                }
            }
        }
        for (name, svc) in &project.services {
            let Some(list) = svc.extra.get(kind.key()).and_then(Value::as_array) else {
                continue;
            };
            for (i, entry) in list.iter().enumerate() {
                let Some(m) = entry.as_object() else { continue };
                for k in m.keys() {
                    if !k.starts_with("x-")
                        && !matches!(k.as_str(), "source" | "target" | "uid" | "gid" | "mode")
                    {
                        return Err(refuse(
                            format!("services.{name}.{}[{i}].{k}", kind.key()),
                            k,
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

/// A swarm name for `content`: the base, a dash, 12 hex digits of its
/// sha256. Swarm names are at most 64 characters: a long base is cut.
pub fn content_name(base: &str, content: &[u8]) -> String {
    let digest = Digest::of(content);
    let short = &digest.hex()[..12];
    let keep = base
        .char_indices()
        .take_while(|(i, c)| i + c.len_utf8() <= 64 - 13)
        .last()
        .map_or(0, |(i, c)| i + c.len_utf8());
    format!("{}-{short}", &base[..keep])
}

fn invalid(path: &str, message: impl std::fmt::Display) -> BackendError {
    BackendError::invalid(format!("{path}: {message}"))
}

/// Resolve the secrets and configs of every service of `project`; `env` is
/// the environment it was loaded with (for `environment:` sources). Only
/// what a service names is read.
pub fn resolve(project: &Project, env: &IndexMap<String, String>) -> Result<Files, BackendError> {
    let mut files = Files::default();
    for (service, svc) in &project.services {
        for kind in [Kind::Secret, Kind::Config] {
            let Some(list) = svc.extra.get(kind.key()) else {
                continue;
            };
            let path = format!("services.{service}.{}", kind.key());
            let entries = list
                .as_array()
                .ok_or_else(|| invalid(&path, "expected a list"))?;
            for (i, entry) in entries.iter().enumerate() {
                let path = format!("{path}[{i}]");
                let r = entry_ref(project, env, kind, entry, &path, &mut files.objects)?;
                files.services.entry(service.clone()).or_default().push(r);
            }
        }
    }
    Ok(files)
}

fn entry_ref(
    project: &Project,
    env: &IndexMap<String, String>,
    kind: Kind,
    entry: &Value,
    path: &str,
    objects: &mut BTreeMap<(Kind, String), SwarmObject>,
) -> Result<FileRef, BackendError> {
    let (source, target, uid, gid, mode) = match entry {
        Value::String(s) => (s.clone(), None, None, None, None),
        Value::Object(m) => {
            let source = m
                .get("source")
                .and_then(Value::as_str)
                .ok_or_else(|| invalid(path, "source is required"))?
                .to_string();
            let id = |key: &str| -> Result<Option<String>, BackendError> {
                match m.get(key) {
                    None | Some(Value::Null) => Ok(None),
                    Some(Value::Number(n)) if n.as_u64().is_some_and(|n| n <= u32::MAX as u64) => {
                        Ok(Some(n.to_string()))
                    }
                    // compose allows ids as strings ("1000").
                    Some(Value::String(s)) if s.parse::<u32>().is_ok() => Ok(Some(s.clone())),
                    Some(v) => Err(invalid(
                        &format!("{path}.{key}"),
                        format!("{v} is not an id"),
                    )),
                }
            };
            let mode = match m.get("mode") {
                None | Some(Value::Null) => None,
                Some(Value::Number(n)) => Some(
                    n.as_u64()
                        .filter(|n| *n <= 0o7777)
                        .ok_or_else(|| invalid(&format!("{path}.mode"), "not a file mode"))?
                        as u32,
                ),
                Some(Value::String(s)) => Some(
                    u32::from_str_radix(s.trim_start_matches("0o"), 8)
                        .ok()
                        .filter(|n| *n <= 0o7777)
                        .ok_or_else(|| {
                            invalid(&format!("{path}.mode"), format!("{s:?} is not a file mode"))
                        })?,
                ),
                Some(v) => {
                    return Err(invalid(
                        &format!("{path}.mode"),
                        format!("{v} is not a file mode"),
                    ))
                }
            };
            let target = m.get("target").and_then(Value::as_str).map(str::to_string);
            (source, target, id("uid")?, id("gid")?, mode)
        }
        _ => return Err(invalid(path, "expected a name or a mapping")),
    };
    let defs = match kind {
        Kind::Secret => &project.secrets,
        Kind::Config => &project.configs,
    };
    let def = defs.get(&source).ok_or_else(|| {
        invalid(
            path,
            format!("{} {source:?} is not defined at the top level", kind.key()),
        )
    })?;
    let object = match objects.get(&(kind, source.clone())) {
        Some(o) => o.clone(),
        None => {
            let o = object(project, env, kind, &source, def)?;
            objects.insert((kind, source.clone()), o.clone());
            o
        }
    };
    // Where docker stack puts them: secrets under /run/secrets, configs at
    // the root, an absolute target as it is.
    let target = match (kind, target) {
        (_, Some(t)) if t.starts_with('/') => t,
        (Kind::Secret, Some(t)) => format!("/run/secrets/{t}"),
        (Kind::Secret, None) => format!("/run/secrets/{source}"),
        (Kind::Config, Some(t)) => format!("/{t}"),
        (Kind::Config, None) => format!("/{source}"),
    };
    if target.split('/').any(|c| c == "..") || target.contains('\0') {
        return Err(invalid(
            &format!("{path}.target"),
            format!("{target:?} leaves its directory"),
        ));
    }
    Ok(FileRef {
        kind,
        key: source,
        name: object.name,
        target,
        uid: uid.unwrap_or_else(|| "0".into()),
        gid: gid.unwrap_or_else(|| "0".into()),
        mode: mode.unwrap_or(0o444),
    })
}

fn object(
    project: &Project,
    env: &IndexMap<String, String>,
    kind: Kind,
    key: &str,
    def: &Value,
) -> Result<SwarmObject, BackendError> {
    let top = format!("{}.{key}", kind.key());
    let given_name = def.get("name").and_then(Value::as_str);
    if def.get("external").and_then(Value::as_bool) == Some(true) {
        return Ok(SwarmObject {
            kind,
            key: key.to_string(),
            name: given_name.unwrap_or(key).to_string(),
            content: None,
            labels: HashMap::new(),
        });
    }
    let content = if let Some(file) = def.get("file").and_then(Value::as_str) {
        std::fs::read(file)
            .map_err(|e| invalid(&format!("{top}.file"), format!("cannot read {file}: {e}")))?
    } else if let Some(var) = def.get("environment").and_then(Value::as_str) {
        env.get(var)
            .cloned()
            .or_else(|| std::env::var(var).ok())
            .ok_or_else(|| {
                invalid(
                    &format!("{top}.environment"),
                    format!("variable {var} is not set"),
                )
            })?
            .into_bytes()
    } else if let (Kind::Config, Some(text)) = (kind, def.get("content").and_then(Value::as_str)) {
        text.as_bytes().to_vec()
    } else {
        let what = match kind {
            Kind::Secret => "file or environment",
            Kind::Config => "file, environment or content",
        };
        return Err(invalid(&top, format!("needs a source: {what}")));
    };
    let base = match given_name {
        Some(n) => n.to_string(),
        None => format!("{}_{key}", project.name),
    };
    let mut object_labels: HashMap<String, String> = match def.get("labels") {
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| {
                let v = v
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string());
                (k.clone(), v)
            })
            .collect(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (kv.to_string(), String::new()),
            })
            .collect(),
        _ => HashMap::new(),
    };
    object_labels.insert(labels::STACK.into(), project.name.clone());
    object_labels.insert(labels::PROJECT.into(), project.name.clone());
    object_labels.insert(labels::FILE_KEY.into(), top);
    Ok(SwarmObject {
        kind,
        key: key.to_string(),
        name: content_name(&base, &content),
        content: Some(content),
        labels: object_labels,
    })
}

/// The service spec's references to its secrets and configs; `ids` maps a
/// swarm name to the object's ID (swarm wants both).
pub fn task_refs(
    refs: &[FileRef],
    ids: &HashMap<(Kind, String), String>,
) -> Result<
    (
        Vec<TaskSpecContainerSpecSecrets>,
        Vec<TaskSpecContainerSpecConfigs>,
    ),
    BackendError,
> {
    let mut secrets = Vec::new();
    let mut configs = Vec::new();
    for r in refs {
        let id = ids.get(&(r.kind, r.name.clone())).cloned().ok_or_else(|| {
            BackendError::not_found(format!(
                "{}.{}: {} {} is not on the swarm",
                r.kind.key(),
                r.key,
                r.kind.noun().to_lowercase(),
                r.name
            ))
        })?;
        match r.kind {
            Kind::Secret => secrets.push(TaskSpecContainerSpecSecrets {
                file: Some(TaskSpecContainerSpecFile {
                    name: Some(r.target.clone()),
                    uid: Some(r.uid.clone()),
                    gid: Some(r.gid.clone()),
                    mode: Some(r.mode),
                }),
                secret_id: Some(id),
                secret_name: Some(r.name.clone()),
            }),
            Kind::Config => configs.push(TaskSpecContainerSpecConfigs {
                file: Some(TaskSpecContainerSpecFile1 {
                    name: Some(r.target.clone()),
                    uid: Some(r.uid.clone()),
                    gid: Some(r.gid.clone()),
                    mode: Some(r.mode),
                }),
                config_id: Some(id),
                config_name: Some(r.name.clone()),
                ..Default::default()
            }),
        }
    }
    Ok((secrets, configs))
}

/// A secret or config as listed: ID, name, labels.
type Listed = (
    Option<String>,
    Option<String>,
    Option<HashMap<String, String>>,
);

impl crate::SwarmBackend {
    /// The swarm's secrets or configs, name → (ID, labels).
    async fn swarm_objects(
        &self,
        kind: Kind,
        filters: HashMap<String, Vec<String>>,
    ) -> Result<BTreeMap<String, (String, HashMap<String, String>)>, BackendError> {
        let filters = (!filters.is_empty()).then_some(filters);
        let list: Vec<Listed> = match kind {
            Kind::Secret => self
                .docker
                .list_secrets(Some(ListSecretsOptions { filters }))
                .await
                .map_err(|e| api_err("listing secrets", e))?
                .into_iter()
                .map(|s| {
                    let spec = s.spec.unwrap_or_default();
                    (s.id, spec.name, spec.labels)
                })
                .collect(),
            Kind::Config => self
                .docker
                .list_configs(Some(ListConfigsOptions { filters }))
                .await
                .map_err(|e| api_err("listing configs", e))?
                .into_iter()
                .map(|s| {
                    let spec = s.spec.unwrap_or_default();
                    (s.id, spec.name, spec.labels)
                })
                .collect(),
        };
        Ok(list
            .into_iter()
            .filter_map(|(id, name, l)| Some((name?, (id?, l.unwrap_or_default()))))
            .collect())
    }

    /// An external secret or config must exist before anything is made
    /// for the project: the first missing one, by its key path.
    pub(crate) async fn check_external(&self, files: &Files) -> Result<(), BackendError> {
        for kind in [Kind::Secret, Kind::Config] {
            let wanted: Vec<&SwarmObject> = files
                .objects
                .values()
                .filter(|o| o.kind == kind && o.content.is_none())
                .collect();
            if wanted.is_empty() {
                continue;
            }
            let there = self.swarm_objects(kind, HashMap::new()).await?;
            if let Some(o) = wanted.iter().find(|o| !there.contains_key(&o.name)) {
                return Err(BackendError::not_found(format!(
                    "{}.{}: external {} {} does not exist on the swarm",
                    kind.key(),
                    o.key,
                    kind.noun().to_lowercase(),
                    o.name
                )));
            }
        }
        Ok(())
    }

    /// Every object `refs` names, made when missing (an external one must
    /// exist); their IDs by (kind, name).
    pub(crate) async fn ensure_files(
        &self,
        files: &Files,
        refs: &[FileRef],
        progress: Progress<'_>,
    ) -> Result<HashMap<(Kind, String), String>, BackendError> {
        let mut ids = HashMap::new();
        let mut known: HashMap<Kind, BTreeMap<String, String>> = HashMap::new();
        for r in refs {
            if ids.contains_key(&(r.kind, r.name.clone())) {
                continue;
            }
            if let std::collections::hash_map::Entry::Vacant(e) = known.entry(r.kind) {
                let all = self.swarm_objects(r.kind, HashMap::new()).await?;
                e.insert(all.into_iter().map(|(n, (id, _))| (n, id)).collect());
            }
            let existing = known.get(&r.kind).and_then(|m| m.get(&r.name));
            let object = files.objects.get(&(r.kind, r.key.clone()));
            let id = match (existing, object.and_then(|o| o.content.as_ref())) {
                (Some(id), _) => id.clone(),
                (None, None) => {
                    return Err(BackendError::not_found(format!(
                        "{}.{}: external {} {} does not exist on the swarm",
                        r.kind.key(),
                        r.key,
                        r.kind.noun().to_lowercase(),
                        r.name
                    )))
                }
                (None, Some(content)) => {
                    let labels = object.map(|o| o.labels.clone());
                    let data = Some(base64::engine::general_purpose::STANDARD.encode(content));
                    let what = || format!("creating {} {}", r.kind.noun().to_lowercase(), r.name);
                    let id = match r.kind {
                        Kind::Secret => {
                            self.docker
                                .create_secret(SecretSpec {
                                    name: Some(r.name.clone()),
                                    labels,
                                    data,
                                    ..Default::default()
                                })
                                .await
                                .map_err(|e| api_err(what(), e))?
                                .id
                        }
                        Kind::Config => {
                            self.docker
                                .create_config(ConfigSpec {
                                    name: Some(r.name.clone()),
                                    labels,
                                    data,
                                    ..Default::default()
                                })
                                .await
                                .map_err(|e| api_err(what(), e))?
                                .id
                        }
                    };
                    progress(&format!("{} {} Created", r.kind.noun(), r.name));
                    id
                }
            };
            ids.insert((r.kind, r.name.clone()), id);
        }
        Ok(ids)
    }

    /// Remove the stack's secrets and configs that no service of it names
    /// (all of them once its services are gone); what swarm refused to
    /// remove (still in use), as `Secret NAME: why`, left for the next `up`
    /// or `down`.
    pub(crate) async fn prune_files(
        &self,
        project: &str,
        progress: Progress<'_>,
    ) -> Result<Vec<String>, BackendError> {
        let mut used: BTreeSet<(Kind, String)> = BTreeSet::new();
        for s in self.stack_services(project).await? {
            let Some(c) = s
                .spec
                .and_then(|sp| sp.task_template)
                .and_then(|t| t.container_spec)
            else {
                continue;
            };
            for x in c.secrets.into_iter().flatten() {
                used.extend(x.secret_name.map(|n| (Kind::Secret, n)));
            }
            for x in c.configs.into_iter().flatten() {
                used.extend(x.config_name.map(|n| (Kind::Config, n)));
            }
        }
        let filters = HashMap::from([("label".to_string(), vec![labels::stack_filter(project)])]);
        let mut left = Vec::new();
        for kind in [Kind::Secret, Kind::Config] {
            for (name, (id, _)) in self.swarm_objects(kind, filters.clone()).await? {
                if used.contains(&(kind, name.clone())) {
                    continue;
                }
                let result = match kind {
                    Kind::Secret => self.docker.delete_secret(&id).await,
                    Kind::Config => self.docker.delete_config(&id).await,
                };
                match result {
                    Ok(()) => progress(&format!("{} {name} Removed", kind.noun())),
                    Err(e) if is_not_found(&e) => {}
                    Err(e) => left.push(format!(
                        "{} {name}: {}",
                        kind.noun(),
                        api_err("", e).message.trim_start_matches(": ")
                    )),
                }
            }
        }
        Ok(left)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(yaml: &str, files: &[(&str, &str)]) -> (Project, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("compose.yaml"), yaml).unwrap();
        for (name, content) in files {
            std::fs::write(dir.path().join(name), content).unwrap();
        }
        let options = berth_compose::Options {
            cwd: dir.path().to_path_buf(),
            project_name: Some("p".into()),
            ..Default::default()
        };
        (berth_compose::load(&options).expect("loads").project, dir)
    }

    const YAML: &str = "services:\n  app:\n    image: x\n    secrets:\n      - db\n      - {source: token, target: tok, uid: '1000', gid: '1000', mode: 0400}\n    configs:\n      - {source: conf, target: /etc/app.conf, mode: 0440}\n      - motd\nsecrets:\n  db: {file: ./db.txt, labels: {team: a}}\n  token: {environment: TOKEN}\nconfigs:\n  conf: {content: 'port = 80'}\n  motd: {external: true, name: shared-motd}\n";

    #[test]
    fn long_and_short_syntax_become_swarm_references_named_by_content() {
        let (p, _dir) = project(YAML, &[("db.txt", "s3cret")]);
        check(&p).unwrap();
        let env = IndexMap::from([("TOKEN".to_string(), "t0k".to_string())]);
        let files = resolve(&p, &env).unwrap();
        let refs = &files.services["app"];
        let db = &refs[0];
        assert_eq!(
            db.name,
            format!("p_db-{}", &Digest::of(b"s3cret").hex()[..12])
        );
        assert_eq!(
            (db.target.as_str(), db.uid.as_str(), db.mode),
            ("/run/secrets/db", "0", 0o444)
        );
        let tok = &refs[1];
        assert_eq!(
            (
                tok.target.as_str(),
                tok.uid.as_str(),
                tok.gid.as_str(),
                tok.mode
            ),
            ("/run/secrets/tok", "1000", "1000", 0o400)
        );
        let conf = &refs[2];
        assert_eq!((conf.target.as_str(), conf.mode), ("/etc/app.conf", 0o440));
        let motd = &refs[3];
        assert_eq!(
            (motd.name.as_str(), motd.target.as_str()),
            ("shared-motd", "/motd")
        );
        let o = &files.objects[&(Kind::Secret, "db".to_string())];
        assert_eq!(o.content.as_deref(), Some(&b"s3cret"[..]));
        assert_eq!(o.labels[labels::STACK], "p");
        assert_eq!(o.labels["team"], "a");
        assert!(files.objects[&(Kind::Config, "motd".to_string())]
            .content
            .is_none());

        let ids: HashMap<(Kind, String), String> = refs
            .iter()
            .map(|r| ((r.kind, r.name.clone()), format!("id-{}", r.key)))
            .collect();
        let (secrets, configs) = task_refs(refs, &ids).unwrap();
        assert_eq!(secrets.len(), 2);
        assert_eq!(
            secrets[1].file.as_ref().unwrap().uid.as_deref(),
            Some("1000")
        );
        assert_eq!(configs[1].config_id.as_deref(), Some("id-motd"));

        // New content: a new name, named as the change.
        std::fs::write(_dir.path().join("db.txt"), "other").unwrap();
        let again = resolve(&p, &env).unwrap();
        assert_ne!(again.services["app"][0].name, db.name);
        assert_eq!(
            changed(&files.label("app"), &again.label("app")),
            ["secrets.db"]
        );
    }

    #[test]
    fn what_swarm_cannot_do_is_refused_by_path() {
        for (yaml, want) in [
            (
                "services:\n  a:\n    image: x\nsecrets:\n  s: {file: ./f, driver: vault}\n",
                "secrets.s.driver:",
            ),
            (
                "services:\n  a:\n    image: x\nconfigs:\n  c: {content: x, template_driver: golang}\n",
                "configs.c.template_driver:",
            ),
        ] {
            let (p, _d) = project(yaml, &[("f", "x")]);
            let e = check(&p).unwrap_err();
            assert!(e.message.starts_with(want), "{e}");
            assert!(!e.message.contains('\n'));
        }
        let (p, _d) = project(
            "services:\n  a:\n    image: x\n    secrets: [s]\nsecrets:\n  s: {environment: BERTH_TEST_UNSET_SWARM}\n",
            &[],
        );
        let e = resolve(&p, &IndexMap::new()).unwrap_err();
        assert!(e.message.starts_with("secrets.s.environment: "), "{e}");
    }

    #[test]
    fn long_names_stay_within_swarm_s_limit() {
        let n = content_name(&"x".repeat(100), b"c");
        assert_eq!(n.len(), 64);
        assert!(n.ends_with(&Digest::of(b"c").hex()[..12]));
    }
}
