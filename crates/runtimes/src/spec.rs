//! `x-runtime: node@4.2.3` and its relatives: what a service asks for.

use crate::semver_range::Range;
use crate::version::Version;
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("invalid runtime {0:?} (expected NAME@VERSION, e.g. node@20 or node@lts)")]
    Syntax(String),
    #[error("unknown runtime {0:?} (berth knows: node)")]
    UnknownRuntime(String),
    #[error("unknown LTS codename {0:?} (e.g. argon, boron, ..., iron, jod)")]
    UnknownCodename(String),
    #[error("invalid version in runtime {spec:?}: {reason}")]
    Version { spec: String, reason: String },
}

/// The runtimes berth can fetch. One today; the enum keeps room for more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeKind {
    Node,
}

impl RuntimeKind {
    pub fn name(self) -> &'static str {
        match self {
            RuntimeKind::Node => "node",
        }
    }
}

impl fmt::Display for RuntimeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which versions a spec accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionReq {
    /// `4.2.3`: exactly this one.
    Exact(Version),
    /// `4.2`, `^20`, `>=18 <20`: the highest published release in range.
    Range(Range),
    /// `lts` (newest LTS line) or `lts/argon` (lowercase codename).
    Lts(Option<String>),
    /// `latest`: the highest published release.
    Latest,
}

/// A parsed `x-runtime` value. `Display` prints it back in canonical form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeSpec {
    pub kind: RuntimeKind,
    pub req: VersionReq,
}

/// Node.js LTS codenames and their major: facts of the release schedule.
pub const LTS_CODENAMES: &[(&str, u64)] = &[
    ("argon", 4),
    ("boron", 6),
    ("carbon", 8),
    ("dubnium", 10),
    ("erbium", 12),
    ("fermium", 14),
    ("gallium", 16),
    ("hydrogen", 18),
    ("iron", 20),
    ("jod", 22),
    ("krypton", 24),
];

pub fn codename_major(name: &str) -> Option<u64> {
    let lower = name.to_ascii_lowercase();
    LTS_CODENAMES
        .iter()
        .find(|(n, _)| *n == lower)
        .map(|(_, m)| *m)
}

pub fn major_codename(major: u64) -> Option<&'static str> {
    LTS_CODENAMES
        .iter()
        .find(|(_, m)| *m == major)
        .map(|(n, _)| *n)
}

impl RuntimeSpec {
    pub fn node(req: VersionReq) -> RuntimeSpec {
        RuntimeSpec {
            kind: RuntimeKind::Node,
            req,
        }
    }

    pub fn exact(&self) -> Option<&Version> {
        match &self.req {
            VersionReq::Exact(v) => Some(v),
            _ => None,
        }
    }
}

impl FromStr for RuntimeSpec {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<RuntimeSpec, SpecError> {
        let t = s.trim();
        let (name, version) = t
            .split_once('@')
            .filter(|(n, v)| !n.is_empty() && !v.trim().is_empty())
            .ok_or_else(|| SpecError::Syntax(s.to_string()))?;
        let kind = match name.to_ascii_lowercase().as_str() {
            "node" | "nodejs" => RuntimeKind::Node,
            other => return Err(SpecError::UnknownRuntime(other.to_string())),
        };
        let version = version.trim();
        let lower = version.to_ascii_lowercase();
        let req = if lower == "latest" || lower == "current" {
            VersionReq::Latest
        } else if lower == "lts" || lower == "lts/*" {
            VersionReq::Lts(None)
        } else if let Some(code) = lower.strip_prefix("lts/") {
            if codename_major(code).is_none() {
                return Err(SpecError::UnknownCodename(code.to_string()));
            }
            VersionReq::Lts(Some(code.to_string()))
        } else if let Ok(v) = version.parse::<Version>() {
            VersionReq::Exact(v)
        } else {
            VersionReq::Range(version.parse::<Range>().map_err(|e| SpecError::Version {
                spec: s.to_string(),
                reason: e.reason,
            })?)
        };
        Ok(RuntimeSpec { kind, req })
    }
}

impl fmt::Display for RuntimeSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@", self.kind)?;
        match &self.req {
            VersionReq::Exact(v) => write!(f, "{v}"),
            VersionReq::Range(r) => write!(f, "{r}"),
            VersionReq::Lts(None) => f.write_str("lts"),
            VersionReq::Lts(Some(c)) => write!(f, "lts/{c}"),
            VersionReq::Latest => f.write_str("latest"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> RuntimeSpec {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_every_documented_form() {
        assert_eq!(
            p("node@4.2.3").req,
            VersionReq::Exact(Version::new(4, 2, 3))
        );
        assert_eq!(p("node@v4.2.3").to_string(), "node@4.2.3");
        assert!(matches!(p("node@4.2").req, VersionReq::Range(_)));
        assert!(matches!(p("node@^20").req, VersionReq::Range(_)));
        assert!(matches!(p("node@>=18 <20").req, VersionReq::Range(_)));
        assert_eq!(p("node@lts").req, VersionReq::Lts(None));
        assert_eq!(
            p("node@lts/Argon").req,
            VersionReq::Lts(Some("argon".into()))
        );
        assert_eq!(p("node@latest").req, VersionReq::Latest);
        assert_eq!(p(" node@4.2 ").to_string(), "node@4.2");
        assert_eq!(p("node@lts/argon").to_string(), "node@lts/argon");
    }

    #[test]
    fn refuses_bad_specs_with_a_reason() {
        assert_eq!(
            "node".parse::<RuntimeSpec>(),
            Err(SpecError::Syntax("node".into()))
        );
        assert_eq!(
            "node@".parse::<RuntimeSpec>(),
            Err(SpecError::Syntax("node@".into()))
        );
        assert_eq!(
            "@4".parse::<RuntimeSpec>(),
            Err(SpecError::Syntax("@4".into()))
        );
        assert_eq!(
            "python@3.12".parse::<RuntimeSpec>(),
            Err(SpecError::UnknownRuntime("python".into()))
        );
        assert_eq!(
            "node@lts/bogus".parse::<RuntimeSpec>(),
            Err(SpecError::UnknownCodename("bogus".into()))
        );
        assert!(matches!(
            "node@four".parse::<RuntimeSpec>(),
            Err(SpecError::Version { .. })
        ));
    }

    #[test]
    fn codenames() {
        assert_eq!(codename_major("argon"), Some(4));
        assert_eq!(codename_major("Krypton"), Some(24));
        assert_eq!(major_codename(20), Some("iron"));
        assert_eq!(major_codename(5), None);
    }
}
