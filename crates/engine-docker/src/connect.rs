//! Which Docker Engine to talk to: `DOCKER_HOST`, else the current Docker
//! context (`DOCKER_CONTEXT`, else `currentContext` in the CLI's
//! `config.json`), else the default socket — the order the `docker` CLI uses,
//! so berth reaches the daemon `docker ps` shows.

use serde_json::Value;
use std::path::{Path, PathBuf};

pub const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";

/// The daemon's address and where it came from (for messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `unix:///path` or `tcp://host:port`.
    pub host: String,
    /// The Docker context it was read from, when not `DOCKER_HOST`/default.
    pub context: Option<String>,
}

impl Endpoint {
    /// A daemon on this machine: bind mounts of berth's files and the
    /// containers' `/proc/<pid>` are reachable from here.
    pub fn is_local(&self) -> bool {
        self.host.starts_with("unix://")
    }
}

/// Resolve the endpoint from `env` (a variable lookup) and the Docker CLI's
/// configuration directory (`DOCKER_CONFIG`, else `~/.docker`).
pub fn resolve(env: &dyn Fn(&str) -> Option<String>) -> Result<Endpoint, String> {
    if let Some(host) = env("DOCKER_HOST").filter(|h| !h.is_empty()) {
        return check(Endpoint {
            host,
            context: None,
        });
    }
    let config_dir = match env("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => match env("HOME").filter(|h| !h.is_empty()) {
            Some(home) => Path::new(&home).join(".docker"),
            None => {
                return Ok(Endpoint {
                    host: DEFAULT_HOST.into(),
                    context: None,
                })
            }
        },
    };
    let context = match env("DOCKER_CONTEXT").filter(|c| !c.is_empty()) {
        Some(c) => Some(c),
        None => current_context(&config_dir.join("config.json"))?,
    };
    match context.filter(|c| c != "default") {
        None => Ok(Endpoint {
            host: DEFAULT_HOST.into(),
            context: None,
        }),
        Some(name) => {
            let host = context_host(&config_dir.join("contexts/meta"), &name)?;
            check(Endpoint {
                host,
                context: Some(name),
            })
        }
    }
}

fn check(endpoint: Endpoint) -> Result<Endpoint, String> {
    let h = &endpoint.host;
    if h.starts_with("unix://") || h.starts_with("tcp://") || h.starts_with("http://") {
        Ok(endpoint)
    } else {
        let from = match &endpoint.context {
            Some(c) => format!("Docker context {c:?}"),
            None => "DOCKER_HOST".into(),
        };
        Err(format!(
            "{from}: {h:?} is not supported (berth talks to unix:// and tcp:// Docker hosts)"
        ))
    }
}

fn current_context(config: &Path) -> Result<Option<String>, String> {
    let text = match std::fs::read_to_string(config) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", config.display())),
    };
    let json: Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", config.display()))?;
    Ok(json
        .get("currentContext")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string))
}

/// The docker endpoint of context `name`. The CLI stores each context under
/// a directory named by the digest of its name; matching the `Name` inside
/// every `meta.json` finds it without hashing.
fn context_host(meta_dir: &Path, name: &str) -> Result<String, String> {
    let entries = std::fs::read_dir(meta_dir).map_err(|e| {
        format!(
            "Docker context {name:?} not found ({}: {e})",
            meta_dir.display()
        )
    })?;
    for entry in entries.flatten() {
        let path = entry.path().join("meta.json");
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let Ok(json) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        if json.get("Name").and_then(Value::as_str) != Some(name) {
            continue;
        }
        return json
            .pointer("/Endpoints/docker/Host")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| format!("{}: no docker endpoint Host", path.display()));
    }
    Err(format!(
        "Docker context {name:?} not found in {}",
        meta_dir.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn docker_host_wins_and_bad_schemes_are_named() {
        let e = resolve(&env(&[("DOCKER_HOST", "tcp://10.0.0.1:2375")])).unwrap();
        assert_eq!(e.host, "tcp://10.0.0.1:2375");
        assert!(!e.is_local());
        let err = resolve(&env(&[("DOCKER_HOST", "ssh://me@box")])).unwrap_err();
        assert!(err.starts_with("DOCKER_HOST: \"ssh://me@box\""), "{err}");
        let e = resolve(&env(&[])).unwrap();
        assert_eq!(e.host, DEFAULT_HOST);
        assert!(e.is_local());
    }

    #[test]
    fn the_current_context_is_read_from_config_json() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path();
        let docker = home.join(".docker");
        let meta = docker.join("contexts/meta/0123abcd");
        std::fs::create_dir_all(&meta).unwrap();
        std::fs::write(
            meta.join("meta.json"),
            r#"{"Name":"other","Metadata":{},"Endpoints":{"docker":{"Host":"unix:///run/other.sock","SkipTLSVerify":false}}}"#,
        )
        .unwrap();
        std::fs::write(docker.join("config.json"), r#"{"currentContext":"other"}"#).unwrap();
        let home_s = home.to_str().unwrap();
        let e = resolve(&env(&[("HOME", home_s)])).unwrap();
        assert_eq!(e.host, "unix:///run/other.sock");
        assert_eq!(e.context.as_deref(), Some("other"));
        // DOCKER_CONTEXT overrides the file; `default` is the plain socket.
        let e = resolve(&env(&[("HOME", home_s), ("DOCKER_CONTEXT", "default")])).unwrap();
        assert_eq!(e.host, DEFAULT_HOST);
        let err = resolve(&env(&[("HOME", home_s), ("DOCKER_CONTEXT", "gone")])).unwrap_err();
        assert!(err.contains("\"gone\" not found"), "{err}");
    }
}
