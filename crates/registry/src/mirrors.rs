//! Where an image is fetched from: registry mirrors, plain-HTTP policy.
//!
//! The configuration lives in berth's config file (TOML) under
//! `[registries."<registry>"]`, keyed by the registry as references name it
//! (`docker.io`, `quay.io`, `localhost:5000`):
//!
//! ```toml
//! [registries."docker.io"]
//! mirrors = ["http://127.0.0.1:5000", "https://mirror.example.com"]
//!
//! [registries."quay.io"]
//! mirrors = ["http://127.0.0.1:5000"]
//!
//! [registries."registry.lan:5000"]
//! insecure = true          # plain HTTP allowed (tried after HTTPS)
//! ```
//!
//! Other top-level tables of the file belong to other parts of berth and
//! are ignored here; unknown keys inside a registry table are errors, so a
//! typo (`mirror = …`) does not silently do nothing.
//!
//! `BERTH_REGISTRY_MIRRORS="quay.io=http://127.0.0.1:5000,docker.io=http://127.0.0.1:5000"`
//! overrides the file: each registry it names gets exactly the mirrors the
//! variable lists for it (in order; a registry may be named several times);
//! registries it does not name keep the file's mirrors.
//!
//! A mirror serves the same repository path as the upstream registry:
//! `quay.io/oddnetworks/alpine-nodejs:4.2.2` is fetched from the mirror as
//! `oddnetworks/alpine-nodejs:4.2.2`, and Docker Hub images keep their
//! `library/` prefix (`docker.io/library/node` → `library/node`), as with
//! docker's `registry-mirrors`. Mirrors are tried in order, then the
//! registry itself.
//!
//! Plain HTTP is accepted only for loopback hosts (127.0.0.0/8, ::1,
//! `localhost`), or for a registry (or mirror host) marked `insecure = true`:
//! anything else on the path could read or change the images.

use crate::reference::{Reference, DOCKER_HUB};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// The environment variable that overrides the mirrors of the config file.
pub const MIRRORS_ENV: &str = "BERTH_REGISTRY_MIRRORS";
/// The environment variable naming berth's config file.
pub const CONFIG_ENV: &str = "BERTH_CONFIG";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Toml {
        path: PathBuf,
        #[source]
        source: Box<toml::de::Error>,
    },
    #[error("invalid mirror URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error(
        "invalid {MIRRORS_ENV} entry {0:?}: expected REGISTRY=URL[,REGISTRY=URL…], \
         e.g. docker.io=http://127.0.0.1:5000"
    )]
    BadEnvEntry(String),
    #[error(
        "refusing plain HTTP to {url} ({what}): only loopback hosts may be used without TLS \
         unless the config marks the registry `insecure = true`"
    )]
    InsecureNotAllowed { url: String, what: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// A registry API endpoint: scheme and `host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    pub scheme: Scheme,
    pub authority: String,
}

impl Endpoint {
    /// Parse `http://host:port`, `https://host`, or a bare `host[:port]`
    /// (HTTPS). A trailing `/` or `/v2/` is accepted; other paths are not,
    /// since the registry API always lives at `/v2/`.
    pub fn parse(url: &str) -> Result<Endpoint, ConfigError> {
        let bad = |reason: &str| ConfigError::BadUrl {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let trimmed = url.trim();
        let (scheme, rest) = if let Some(r) = trimmed.strip_prefix("http://") {
            (Scheme::Http, r)
        } else if let Some(r) = trimmed.strip_prefix("https://") {
            (Scheme::Https, r)
        } else if trimmed.contains("://") {
            return Err(bad("only http:// and https:// are supported"));
        } else {
            (Scheme::Https, trimmed)
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if !matches!(path, "" | "/" | "/v2" | "/v2/") {
            return Err(bad(
                "a mirror is a host, not a path (the API is always at /v2/)",
            ));
        }
        if authority.is_empty() || authority.contains('@') {
            return Err(bad("expected scheme://host[:port]"));
        }
        let valid = authority
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b));
        if !valid {
            return Err(bad("invalid host"));
        }
        Ok(Endpoint {
            scheme,
            authority: authority.to_ascii_lowercase(),
        })
    }

    /// `scheme://authority`, the prefix of every API URL.
    pub fn base_url(&self) -> String {
        format!("{}://{}", self.scheme.as_str(), self.authority)
    }

    pub fn is_loopback(&self) -> bool {
        is_loopback(&self.authority)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.base_url())
    }
}

/// Is the host of `authority` (`host[:port]`) on this machine's loopback?
pub fn is_loopback(authority: &str) -> bool {
    let host = if let Some(rest) = authority.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        match authority.rsplit_once(':') {
            // A bare IPv6 address has several colons and no port.
            Some((h, _)) if !h.contains(':') => h,
            _ => authority,
        }
    };
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// Settings of one registry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistrySettings {
    pub mirrors: Vec<Endpoint>,
    /// Plain HTTP allowed for this registry and its mirrors.
    pub insecure: bool,
}

#[derive(Deserialize)]
struct FileShape {
    #[serde(default)]
    registries: BTreeMap<String, FileRegistry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRegistry {
    #[serde(default)]
    mirrors: Vec<String>,
    #[serde(default)]
    insecure: bool,
}

/// Mirrors and transport policy per registry. Build one explicitly (tests,
/// embedders) or with [`RegistryConfig::from_env_and_file`] (the CLI).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistryConfig {
    registries: BTreeMap<String, RegistrySettings>,
}

/// One place an image can be fetched from, in the order to try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// `host[:port]` of the endpoint.
    pub authority: String,
    /// Schemes to try, in order (more than one only when the scheme is not
    /// known: an insecure or loopback registry named by a reference).
    pub schemes: Vec<Scheme>,
    /// The repository path on that endpoint.
    pub repository: String,
    /// `Some(registry)` when this is a mirror of that registry.
    pub mirror_of: Option<String>,
}

impl Source {
    pub fn is_mirror(&self) -> bool {
        self.mirror_of.is_some()
    }
}

/// Registry names are compared in the form references normalize to.
fn registry_key(name: &str) -> String {
    let lower = name.trim().to_ascii_lowercase();
    match lower.as_str() {
        "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB.to_string(),
        _ => lower,
    }
}

impl RegistryConfig {
    /// No mirrors, no insecure registries.
    pub fn new() -> RegistryConfig {
        RegistryConfig::default()
    }

    /// What the CLI uses: the config file ([`RegistryConfig::default_path`],
    /// missing is fine unless `BERTH_CONFIG` names it), then
    /// `BERTH_REGISTRY_MIRRORS` on top.
    pub fn from_env_and_file() -> Result<RegistryConfig, ConfigError> {
        let explicit = std::env::var_os(CONFIG_ENV).filter(|v| !v.is_empty());
        let path = Self::default_path();
        let mut config = match std::fs::read_to_string(&path) {
            Ok(text) => Self::from_toml(&text, &path)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && explicit.is_none() => {
                RegistryConfig::new()
            }
            Err(source) => return Err(ConfigError::Read { path, source }),
        };
        if let Ok(value) = std::env::var(MIRRORS_ENV) {
            config.apply_mirror_overrides(&value)?;
        }
        Ok(config)
    }

    /// `$BERTH_CONFIG`, else `/etc/berth/config.toml` for root, else
    /// `$XDG_CONFIG_HOME/berth/config.toml` (`~/.config/berth/config.toml`).
    pub fn default_path() -> PathBuf {
        if let Some(p) = std::env::var_os(CONFIG_ENV).filter(|v| !v.is_empty()) {
            return PathBuf::from(p);
        }
        if running_as_root() {
            return PathBuf::from("/etc/berth/config.toml");
        }
        if let Some(d) = std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
            return PathBuf::from(d).join("berth/config.toml");
        }
        let home = std::env::var_os("HOME").unwrap_or_else(|| "/".into());
        PathBuf::from(home).join(".config/berth/config.toml")
    }

    pub fn load_file(path: &Path) -> Result<RegistryConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml(&text, path)
    }

    /// Parse the TOML text of a config file (`path` is only for messages).
    pub fn from_toml(text: &str, path: &Path) -> Result<RegistryConfig, ConfigError> {
        let shape: FileShape = toml::from_str(text).map_err(|e| ConfigError::Toml {
            path: path.to_path_buf(),
            source: Box::new(e),
        })?;
        let mut config = RegistryConfig::new();
        for (name, reg) in shape.registries {
            let mirrors = reg
                .mirrors
                .iter()
                .map(|m| Endpoint::parse(m))
                .collect::<Result<Vec<_>, _>>()?;
            let entry = config.entry(&name);
            entry.mirrors = mirrors;
            entry.insecure = reg.insecure;
        }
        Ok(config)
    }

    /// Apply a `BERTH_REGISTRY_MIRRORS` value: each registry it names gets
    /// exactly the mirrors listed for it there.
    pub fn apply_mirror_overrides(&mut self, value: &str) -> Result<(), ConfigError> {
        let mut overrides: BTreeMap<String, Vec<Endpoint>> = BTreeMap::new();
        for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (registry, url) = item
                .split_once('=')
                .filter(|(r, u)| !r.trim().is_empty() && !u.trim().is_empty())
                .ok_or_else(|| ConfigError::BadEnvEntry(item.to_string()))?;
            overrides
                .entry(registry_key(registry))
                .or_default()
                .push(Endpoint::parse(url)?);
        }
        for (registry, mirrors) in overrides {
            self.entry(&registry).mirrors = mirrors;
        }
        Ok(())
    }

    /// Append a mirror for `registry` (builder style, for callers that make
    /// the configuration themselves).
    pub fn add_mirror(&mut self, registry: &str, url: &str) -> Result<&mut Self, ConfigError> {
        let endpoint = Endpoint::parse(url)?;
        self.entry(registry).mirrors.push(endpoint);
        Ok(self)
    }

    /// Allow plain HTTP for `registry` and its mirrors.
    pub fn set_insecure(&mut self, registry: &str, insecure: bool) -> &mut Self {
        self.entry(registry).insecure = insecure;
        self
    }

    pub fn settings(&self, registry: &str) -> Option<&RegistrySettings> {
        self.registries.get(&registry_key(registry))
    }

    fn entry(&mut self, registry: &str) -> &mut RegistrySettings {
        self.registries.entry(registry_key(registry)).or_default()
    }

    fn insecure(&self, registry: &str) -> bool {
        self.settings(registry).is_some_and(|s| s.insecure)
    }

    /// The schemes to try for a registry named in a reference: HTTPS only,
    /// unless plain HTTP is allowed. Loopback registries are nearly always
    /// plain-HTTP development registries, so HTTP comes first there (and
    /// HTTPS second, for one that does have TLS); an `insecure` remote
    /// registry is tried with TLS first, as docker does.
    pub fn upstream_schemes(&self, registry: &str) -> Vec<Scheme> {
        if is_loopback(registry) {
            vec![Scheme::Http, Scheme::Https]
        } else if self.insecure(registry) {
            vec![Scheme::Https, Scheme::Http]
        } else {
            vec![Scheme::Https]
        }
    }

    /// Where to fetch `reference` from, in order: its registry's mirrors,
    /// then the registry itself.
    pub fn sources(&self, reference: &Reference) -> Result<Vec<Source>, ConfigError> {
        let mut out = Vec::new();
        if let Some(settings) = self.settings(reference.registry()) {
            for m in &settings.mirrors {
                if m.scheme == Scheme::Http
                    && !m.is_loopback()
                    && !settings.insecure
                    && !self.insecure(&m.authority)
                {
                    return Err(ConfigError::InsecureNotAllowed {
                        url: m.base_url(),
                        what: format!("mirror of {}", reference.registry()),
                    });
                }
                out.push(Source {
                    authority: m.authority.clone(),
                    schemes: vec![m.scheme],
                    repository: reference.repository().to_string(),
                    mirror_of: Some(reference.registry().to_string()),
                });
            }
        }
        out.push(self.upstream(reference));
        Ok(out)
    }

    /// The registry itself, never a mirror (pushes go here).
    pub fn upstream(&self, reference: &Reference) -> Source {
        Source {
            authority: reference.api_host().to_string(),
            schemes: self.upstream_schemes(reference.registry()),
            repository: reference.repository().to_string(),
            mirror_of: None,
        }
    }
}

/// The effective uid from procfs, which keeps the crate free of libc.
fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> Reference {
        Reference::parse(s).unwrap()
    }

    #[test]
    fn env_syntax_maps_repositories_like_docker() {
        let mut c = RegistryConfig::new();
        c.apply_mirror_overrides("quay.io=http://127.0.0.1:5000,docker.io=http://127.0.0.1:5000")
            .unwrap();

        let s = c
            .sources(&r("quay.io/oddnetworks/alpine-nodejs:4.2.2"))
            .unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].authority, "127.0.0.1:5000");
        assert_eq!(s[0].schemes, vec![Scheme::Http]);
        assert_eq!(s[0].repository, "oddnetworks/alpine-nodejs");
        assert_eq!(s[0].mirror_of.as_deref(), Some("quay.io"));
        assert_eq!(s[1].authority, "quay.io");
        assert_eq!(s[1].schemes, vec![Scheme::Https]);
        assert!(!s[1].is_mirror());

        let s = c.sources(&r("node:4.2.2")).unwrap();
        assert_eq!(s[0].repository, "library/node");
        assert_eq!(s[1].authority, "registry-1.docker.io");
        let s = c.sources(&r("tianon/true")).unwrap();
        assert_eq!(s[0].repository, "tianon/true");

        // Registries without mirrors go straight upstream.
        let s = c.sources(&r("ghcr.io/a/b")).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].authority, "ghcr.io");
    }

    #[test]
    fn env_overrides_file_per_registry_and_keeps_order() {
        let text = r#"
            [engine]
            something = "owned by another crate"

            [registries."docker.io"]
            mirrors = ["https://m1.example", "http://localhost:5001/"]

            [registries."quay.io"]
            mirrors = ["https://q.example"]

            [registries."registry.lan:5000"]
            insecure = true
        "#;
        let mut c = RegistryConfig::from_toml(text, Path::new("config.toml")).unwrap();
        let hub = c.settings("index.docker.io").unwrap();
        assert_eq!(hub.mirrors.len(), 2);
        assert_eq!(hub.mirrors[1].base_url(), "http://localhost:5001");

        c.apply_mirror_overrides(" docker.io=http://127.0.0.1:1 , docker.io=http://127.0.0.1:2 ,")
            .unwrap();
        let s = c.sources(&r("nginx")).unwrap();
        let urls: Vec<_> = s.iter().map(|s| s.authority.as_str()).collect();
        assert_eq!(urls, ["127.0.0.1:1", "127.0.0.1:2", "registry-1.docker.io"]);
        // quay.io was not named by the variable: the file's mirror stays.
        assert_eq!(
            c.sources(&r("quay.io/a/b")).unwrap()[0].authority,
            "q.example"
        );
        // insecure: TLS first, then plain HTTP.
        assert_eq!(
            c.sources(&r("registry.lan:5000/a")).unwrap()[0].schemes,
            vec![Scheme::Https, Scheme::Http]
        );
        // Loopback registries: plain HTTP first.
        assert_eq!(
            c.sources(&r("127.0.0.1:5000/a")).unwrap()[0].schemes,
            vec![Scheme::Http, Scheme::Https]
        );
    }

    #[test]
    fn plain_http_only_for_loopback_or_insecure() {
        let mut c = RegistryConfig::new();
        c.add_mirror("docker.io", "http://10.1.2.3:5000").unwrap();
        let err = c.sources(&r("nginx")).unwrap_err();
        assert!(
            matches!(err, ConfigError::InsecureNotAllowed { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("http://10.1.2.3:5000"));
        c.set_insecure("docker.io", true);
        assert!(c.sources(&r("nginx")).is_ok());

        let mut c = RegistryConfig::new();
        c.add_mirror("docker.io", "http://mirror.lan").unwrap();
        c.set_insecure("mirror.lan", true);
        assert!(c.sources(&r("nginx")).is_ok());

        for host in [
            "127.0.0.1:5000",
            "127.9.8.7",
            "localhost:1",
            "[::1]:5000",
            "::1",
        ] {
            assert!(is_loopback(host), "{host}");
        }
        for host in [
            "10.0.0.1:5000",
            "example.com",
            "[::2]:5000",
            "localhost.example.com",
        ] {
            assert!(!is_loopback(host), "{host}");
        }
    }

    #[test]
    fn bad_input_is_reported() {
        let mut c = RegistryConfig::new();
        for bad in ["quay.io", "=http://x", "quay.io="] {
            let err = c.apply_mirror_overrides(bad).unwrap_err();
            assert!(matches!(err, ConfigError::BadEnvEntry(_)), "{bad}: {err}");
        }
        for bad in [
            "ftp://x",
            "http://x/some/path",
            "http://",
            "http://u:p@x",
            "http://a b",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Endpoint::parse("mirror.example").unwrap().scheme,
            Scheme::Https
        );

        let typo = "[registries.\"docker.io\"]\nmirror = [\"http://127.0.0.1:5000\"]\n";
        let err = RegistryConfig::from_toml(typo, Path::new("c.toml")).unwrap_err();
        assert!(err.to_string().contains("mirror"), "{err}");
        let bad_url = "[registries.\"docker.io\"]\nmirrors = [\"gopher://x\"]\n";
        assert!(RegistryConfig::from_toml(bad_url, Path::new("c.toml")).is_err());
    }
}
