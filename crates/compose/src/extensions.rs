//! berth's own compose extensions, typed: `x-runtime` (a language runtime
//! such as `node@4.2.3`) and `x-berth` (per-service engine settings).
//!
//! They stay in the service's `extra` map (so `config` prints them back and
//! the config hash sees them), are checked once when the project loads (a
//! wrong key or value is a load error naming its path), and are read
//! everywhere through [`Service::runtime`] and [`Service::berth`].

use crate::error::KeyPath;
use crate::model::{Project, Service};
use crate::normalize::NormalizeError;
use serde_json::Value;
use std::time::Duration;

/// How a service's containers are replaced (`x-berth.update`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateOrder {
    StartFirst,
    StopFirst,
}

/// How published ports are relayed (`x-berth.protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PortProtocol {
    /// Detected per connection.
    #[default]
    Auto,
    Http,
    Tcp,
}

/// `x-berth` on a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BerthSettings {
    /// The base image an `x-runtime` service runs on.
    pub base: Option<String>,
    /// Share berth's npm cache with the service (default true).
    pub npm_cache: bool,
    /// How long a new container may take to get ready in a swap.
    pub ready_timeout: Option<Duration>,
    pub update: Option<UpdateOrder>,
    pub protocol: PortProtocol,
}

impl Default for BerthSettings {
    fn default() -> Self {
        BerthSettings {
            base: None,
            npm_cache: true,
            ready_timeout: None,
            update: None,
            protocol: PortProtocol::Auto,
        }
    }
}

/// The keys `x-berth` knows.
pub const BERTH_KEYS: &[&str] = &["base", "npm_cache", "ready_timeout", "update", "protocol"];

fn fail<T>(path: KeyPath, message: impl Into<String>) -> Result<T, NormalizeError> {
    Err(NormalizeError {
        path,
        message: message.into(),
    })
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `x-berth` of one service, checked. `path` is the service's key path.
pub fn parse_berth(value: Option<&Value>, path: &KeyPath) -> Result<BerthSettings, NormalizeError> {
    let mut out = BerthSettings::default();
    let path = path.key("x-berth");
    let map = match value {
        None | Some(Value::Null) => return Ok(out),
        Some(Value::Object(m)) => m,
        Some(_) => return fail(path, "must be a mapping"),
    };
    for (key, v) in map {
        let at = path.key(key);
        match key.as_str() {
            "base" => match v {
                Value::String(s) if !s.is_empty() => out.base = Some(s.clone()),
                _ => return fail(at, "must be an image reference"),
            },
            "npm_cache" => match v {
                Value::Bool(b) => out.npm_cache = *b,
                _ => return fail(at, "must be true or false"),
            },
            "ready_timeout" => {
                let t = text(v).and_then(|t| crate::units::parse_duration(&t));
                match t {
                    Some(d) => out.ready_timeout = Some(d),
                    None => return fail(at, "must be a duration such as 30s"),
                }
            }
            "update" => {
                out.update = Some(match v.as_str() {
                    Some("start-first") => UpdateOrder::StartFirst,
                    Some("stop-first") => UpdateOrder::StopFirst,
                    _ => return fail(at, "must be start-first or stop-first"),
                })
            }
            "protocol" => {
                out.protocol = match v.as_str() {
                    Some("auto") => PortProtocol::Auto,
                    Some("http") => PortProtocol::Http,
                    Some("tcp") => PortProtocol::Tcp,
                    _ => return fail(at, "expected http, tcp or auto"),
                }
            }
            other => {
                return fail(
                    at,
                    format!(
                        "unknown x-berth key {other:?} (known: {})",
                        BERTH_KEYS.join(", ")
                    ),
                )
            }
        }
    }
    Ok(out)
}

/// Every service's extensions are well-formed (checked at load).
pub fn check(project: &Project) -> Result<(), NormalizeError> {
    for (name, svc) in &project.services {
        let path = KeyPath::root().key("services").key(name);
        parse_berth(svc.extra.get("x-berth"), &path)?;
        match svc.extra.get("x-runtime") {
            None | Some(Value::String(_)) => {}
            Some(_) => return fail(path.key("x-runtime"), "must be a string like node@4.2.3"),
        }
    }
    Ok(())
}

impl Service {
    /// `x-runtime`, as written (`node@4.2.3`).
    pub fn runtime(&self) -> Option<&str> {
        self.extra.get("x-runtime").and_then(Value::as_str)
    }

    /// `x-berth`, with defaults for what is not set. The project's loader
    /// has checked it; a service built some other way with a bad value
    /// reads as the defaults.
    pub fn berth(&self) -> BerthSettings {
        parse_berth(self.extra.get("x-berth"), &KeyPath::root()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<BerthSettings, String> {
        parse_berth(Some(&v), &KeyPath::root().key("services").key("app"))
            .map_err(|e| format!("{}: {}", e.path, e.message))
    }

    #[test]
    fn every_key_reads_typed() {
        let s = parse(json!({
            "base": "debian:bookworm-slim",
            "npm_cache": false,
            "ready_timeout": "1m30s",
            "update": "stop-first",
            "protocol": "tcp",
        }))
        .unwrap();
        assert_eq!(s.base.as_deref(), Some("debian:bookworm-slim"));
        assert!(!s.npm_cache);
        assert_eq!(s.ready_timeout, Some(Duration::from_secs(90)));
        assert_eq!(s.update, Some(UpdateOrder::StopFirst));
        assert_eq!(s.protocol, PortProtocol::Tcp);
        assert_eq!(parse(json!({})).unwrap(), BerthSettings::default());
    }

    #[test]
    fn a_wrong_key_or_value_names_its_path() {
        assert_eq!(
            parse(json!({"updat": "stop-first"})).unwrap_err(),
            "services.app.x-berth.updat: unknown x-berth key \"updat\" (known: base, npm_cache, ready_timeout, update, protocol)"
        );
        assert_eq!(
            parse(json!({"protocol": "h2"})).unwrap_err(),
            "services.app.x-berth.protocol: expected http, tcp or auto"
        );
        assert_eq!(
            parse(json!({"ready_timeout": "soon"})).unwrap_err(),
            "services.app.x-berth.ready_timeout: must be a duration such as 30s"
        );
        assert_eq!(
            parse(json!("fast")).unwrap_err(),
            "services.app.x-berth: must be a mapping"
        );
    }
}
