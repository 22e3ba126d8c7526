//! Secrets and configs: files a service receives from the project (compose's
//! top-level `secrets:` and `configs:`, referenced by a service's own
//! `secrets:`/`configs:` lists), resolved to their bytes once per `up`.
//!
//! docker compose bind-mounts a `file:` source as it is (ignoring `uid`,
//! `gid` and `mode` outside swarm); berth copies every source into the
//! container's own directory with the long syntax's owner and mode and
//! mounts that copy read-only, so what the service sees is exactly what the
//! compose file says, and a change to the content recreates the service
//! (its digest is part of the service's config hash).

use berth_compose::hash::service_hash;
use berth_compose::model::Service;
use berth_compose::Project;
use indexmap::IndexMap;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error)]
pub enum ProjectFileError {
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    #[error("{path}: cannot read {file}: {source}")]
    Read {
        path: String,
        file: String,
        #[source]
        source: std::io::Error,
    },
}

/// Secret or config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Secret,
    Config,
}

impl FileKind {
    fn key(self) -> &'static str {
        match self {
            FileKind::Secret => "secrets",
            FileKind::Config => "configs",
        }
    }
}

/// One file a container gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectFile {
    pub kind: FileKind,
    /// The top-level key it comes from.
    pub source: String,
    /// Absolute path inside the container.
    pub target: String,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    pub content: Vec<u8>,
}

/// Service → the files it gets, in the order its lists name them.
pub type ProjectFiles = BTreeMap<String, Vec<ProjectFile>>;

/// The secrets and configs of every service of `project`; `env` is the
/// environment the project was loaded with (for `environment:` sources).
pub fn resolve(
    project: &Project,
    env: &IndexMap<String, String>,
) -> Result<ProjectFiles, ProjectFileError> {
    let mut out = ProjectFiles::new();
    for (name, svc) in &project.services {
        let mut files = Vec::new();
        for kind in [FileKind::Secret, FileKind::Config] {
            let Some(list) = svc.extra.get(kind.key()) else {
                continue;
            };
            let defs = match kind {
                FileKind::Secret => &project.secrets,
                FileKind::Config => &project.configs,
            };
            let entries = list.as_array().cloned().unwrap_or_default();
            for (i, entry) in entries.iter().enumerate() {
                let path = format!("services.{name}.{}[{i}]", kind.key());
                files.push(one(kind, entry, defs, env, &path)?);
            }
        }
        if !files.is_empty() {
            out.insert(name.clone(), files);
        }
    }
    Ok(out)
}

fn invalid(path: &str, message: impl Into<String>) -> ProjectFileError {
    ProjectFileError::Invalid {
        path: path.to_string(),
        message: message.into(),
    }
}

fn one(
    kind: FileKind,
    entry: &Value,
    defs: &IndexMap<String, Value>,
    env: &IndexMap<String, String>,
    path: &str,
) -> Result<ProjectFile, ProjectFileError> {
    let (source, target, uid, gid, mode) = match entry {
        Value::String(s) => (s.clone(), None, None, None, None),
        Value::Object(m) => {
            let source = m
                .get("source")
                .and_then(Value::as_str)
                .ok_or_else(|| invalid(path, "source is required"))?
                .to_string();
            let number = |key: &str| -> Result<Option<u32>, ProjectFileError> {
                match m.get(key) {
                    None | Some(Value::Null) => Ok(None),
                    Some(Value::Number(n)) => n
                        .as_u64()
                        .and_then(|n| u32::try_from(n).ok())
                        .map(Some)
                        .ok_or_else(|| invalid(&format!("{path}.{key}"), "not a valid number")),
                    // compose allows uid/gid as strings ("1000").
                    Some(Value::String(s)) => {
                        let parsed = if key == "mode" {
                            u32::from_str_radix(s.trim_start_matches("0o"), 8).ok()
                        } else {
                            s.parse().ok()
                        };
                        parsed.map(Some).ok_or_else(|| {
                            invalid(&format!("{path}.{key}"), format!("{s:?} is not a number"))
                        })
                    }
                    Some(_) => Err(invalid(&format!("{path}.{key}"), "not a number")),
                }
            };
            let target = m.get("target").and_then(Value::as_str).map(str::to_string);
            (
                source,
                target,
                number("uid")?,
                number("gid")?,
                number("mode")?,
            )
        }
        _ => return Err(invalid(path, "expected a name or a mapping")),
    };
    let def = defs.get(&source).ok_or_else(|| {
        invalid(
            path,
            format!("{} {source:?} is not defined at the top level", kind.key()),
        )
    })?;
    let top = format!("{}.{source}", kind.key());
    if def.get("external").and_then(Value::as_bool) == Some(true) {
        return Err(invalid(
            &top,
            "external: an external secret or config lives in Docker Swarm, which the embedded engine is not",
        ));
    }
    let content = if let Some(file) = def.get("file").and_then(Value::as_str) {
        std::fs::read(file).map_err(|source| ProjectFileError::Read {
            path: format!("{top}.file"),
            file: file.to_string(),
            source,
        })?
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
    } else if let (FileKind::Config, Some(text)) =
        (kind, def.get("content").and_then(Value::as_str))
    {
        text.as_bytes().to_vec()
    } else {
        let what = match kind {
            FileKind::Secret => "file or environment",
            FileKind::Config => "file, environment or content",
        };
        return Err(invalid(&top, format!("needs a source: {what}")));
    };
    let target = match (kind, target) {
        (_, Some(t)) if t.starts_with('/') => t,
        (FileKind::Secret, Some(t)) => format!("/run/secrets/{t}"),
        (FileKind::Secret, None) => format!("/run/secrets/{source}"),
        (FileKind::Config, Some(t)) => format!("/{t}"),
        (FileKind::Config, None) => format!("/{source}"),
    };
    if target.split('/').any(|c| c == "..") || target.contains('\0') {
        return Err(invalid(
            &format!("{path}.target"),
            format!("{target:?} leaves its directory"),
        ));
    }
    Ok(ProjectFile {
        kind,
        source,
        target,
        uid: uid.unwrap_or(0),
        gid: gid.unwrap_or(0),
        mode: mode.unwrap_or(0o444),
        content,
    })
}

/// The config hash a container of `svc` is made from: compose's hash of
/// the service, and, when it gets secrets or configs, their targets, owners,
/// modes and content digests, so that a changed secret recreates it.
pub fn effective_hash(svc: &Service, files: Option<&Vec<ProjectFile>>) -> String {
    let base = service_hash(svc);
    let Some(files) = files.filter(|f| !f.is_empty()) else {
        return base;
    };
    let mut h = Sha256::new();
    h.update(base.as_bytes());
    for f in files {
        h.update(
            format!(
                "\0{}\0{}\0{}\0{}\0{}\0{:o}\0",
                f.kind.key(),
                f.source,
                f.target,
                f.uid,
                f.gid,
                f.mode
            )
            .as_bytes(),
        );
        h.update(Sha256::digest(&f.content));
    }
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn project(doc: Value) -> Project {
        serde_json::from_value(doc).unwrap()
    }

    fn env(pairs: &[(&str, &str)]) -> IndexMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn short_and_long_syntax_with_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("pw.txt");
        std::fs::write(&pw, "s3cret").unwrap();
        let p = project(json!({
            "name": "p",
            "services": {"app": {
                "secrets": ["db", {"source": "token", "target": "tok", "uid": "1000", "gid": 1000, "mode": 0o400}],
                "configs": [{"source": "conf", "target": "/etc/app.conf", "mode": 0o440}, "motd"]
            }},
            "secrets": {"db": {"file": pw}, "token": {"environment": "TOKEN"}},
            "configs": {"conf": {"content": "port = 80"}, "motd": {"file": pw}}
        }));
        let files = resolve(&p, &env(&[("TOKEN", "t0k")])).unwrap();
        let app = &files["app"];
        assert_eq!(app.len(), 4);
        assert_eq!(
            (
                app[0].target.as_str(),
                app[0].mode,
                app[0].content.as_slice()
            ),
            ("/run/secrets/db", 0o444, &b"s3cret"[..])
        );
        assert_eq!(
            (app[1].target.as_str(), app[1].uid, app[1].gid, app[1].mode),
            ("/run/secrets/tok", 1000, 1000, 0o400)
        );
        assert_eq!(app[1].content, b"t0k");
        assert_eq!(
            (app[2].target.as_str(), app[2].mode),
            ("/etc/app.conf", 0o440)
        );
        assert_eq!(app[2].content, b"port = 80");
        assert_eq!(app[3].target, "/motd");
    }

    #[test]
    fn bad_references_name_the_key() {
        let err = |doc: Value| resolve(&project(doc), &env(&[])).unwrap_err().to_string();
        let e = err(json!({"name": "p", "services": {"app": {"secrets": ["nope"]}}}));
        assert!(e.starts_with("services.app.secrets[0]:"), "{e}");
        let e = err(json!({"name": "p", "services": {"app": {"secrets": ["x"]}},
                           "secrets": {"x": {"external": true}}}));
        assert!(e.starts_with("secrets.x: external"), "{e}");
        let e = err(json!({"name": "p", "services": {"app": {"secrets": ["x"]}},
                           "secrets": {"x": {"environment": "BERTH_TEST_UNSET_VAR"}}}));
        assert!(e.contains("BERTH_TEST_UNSET_VAR is not set"), "{e}");
        let e = err(json!({"name": "p",
                           "services": {"app": {"secrets": [{"source": "x", "target": "../../etc/passwd"}]}},
                           "secrets": {"x": {"content": "c"}}}));
        assert!(e.contains("needs a source"), "{e}");
        let e = err(json!({"name": "p",
                           "services": {"app": {"configs": [{"source": "x", "target": "../../etc/passwd"}]}},
                           "configs": {"x": {"content": "c"}}}));
        assert!(e.contains("leaves its directory"), "{e}");
    }

    #[test]
    fn a_changed_secret_changes_the_hash() {
        let p = project(json!({"name": "p", "services": {"app": {"secrets": ["x"]}},
                               "secrets": {"x": {"environment": "V"}}}));
        let with = |v: &str| {
            let files = resolve(&p, &env(&[("V", v)])).unwrap();
            effective_hash(&p.services["app"], files.get("app"))
        };
        assert_ne!(with("one"), with("two"));
        assert_eq!(with("one"), with("one"));
        let plain = project(json!({"name": "p", "services": {"app": {}}}));
        assert_eq!(
            effective_hash(&plain.services["app"], None),
            service_hash(&plain.services["app"])
        );
    }
}
