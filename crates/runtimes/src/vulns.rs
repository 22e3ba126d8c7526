//! Known vulnerabilities of Node.js itself, in berth's own format.
//!
//! The facts come from the Node.js security working group's core list
//! (`vuln/core/index.json`: per entry the CVEs, the `vulnerable` and
//! `patched` npm ranges, a severity). berth keeps only facts: ids, ranges,
//! severity, environments and the reference, plus its
//! own [`CORRECTIONS`] for gaps in that list. A snapshot ships inside the
//! binary (`data/node-vulns.json`) so audit works offline; `berth audit
//! --refresh` writes a newer one into the state dir, through the same
//! [`VulnDb::from_wg_core`] that produced the snapshot.

use crate::config::RuntimesConfig;
use crate::fetch::{scratch_path, Expected, FetchError, Http, ProgressFn};
use crate::semver_range::Range;
use crate::version::{Line, Version};
use serde_json::Value as Json;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The snapshot compiled into berth.
pub const SNAPSHOT: &str = include_str!("../data/node-vulns.json");
/// The npm package that carries the working group's list as `core.json`.
pub const WG_PACKAGE: &str = "is-my-node-vulnerable";
/// A URL serving the working group's `index.json` directly (a mirror of
/// `https://raw.githubusercontent.com/nodejs/security-wg/main/vuln/core/index.json`).
pub const WG_URL_ENV: &str = "BERTH_NODE_VULNS_URL";

#[derive(Debug, thiserror::Error)]
pub enum VulnError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("vulnerability data {what}: {reason}")]
    Invalid { what: String, reason: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn invalid(what: &str, reason: impl Into<String>) -> VulnError {
    VulnError::Invalid {
        what: what.into(),
        reason: reason.into(),
    }
}

/// Severity as the working group grades it; `Unknown` sorts lowest.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Unknown,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn parse(s: &str) -> Option<Severity> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "unknown" | "" => Severity::Unknown,
            "low" => Severity::Low,
            "medium" | "moderate" => Severity::Medium,
            "high" => Severity::High,
            "critical" => Severity::Critical,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Severity::Unknown => "unknown",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name())
    }
}

fn range_ser<S: serde::Serializer>(r: &Range, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(r)
}

fn range_de<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Range, D::Error> {
    let s = <String as serde::Deserialize>::deserialize(d)?;
    s.parse().map_err(serde::de::Error::custom)
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Vuln {
    /// The first CVE, or `NSWG-CORE-<n>` for entries without one.
    pub id: String,
    #[serde(default)]
    pub cves: Vec<String>,
    pub severity: Severity,
    #[serde(serialize_with = "range_ser", deserialize_with = "range_de")]
    pub vulnerable: Range,
    #[serde(serialize_with = "range_ser", deserialize_with = "range_de")]
    pub patched: Range,
    /// `all`, `linux`, `win32`, ...
    #[serde(default)]
    pub environments: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// Why berth changed the working group's entry, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correction: Option<String>,
}

impl Vuln {
    /// Does it affect `v` on Linux?
    pub fn affects(&self, v: &Version) -> bool {
        let on_linux = self.environments.is_empty()
            || self.environments.iter().any(|e| e == "all" || e == "linux");
        on_linux && self.vulnerable.matches(v) && !self.patched.matches(v)
    }

    /// The first release of `v`'s line that has the fix, if the line got one.
    pub fn fixed_in_line(&self, v: &Version) -> Option<Version> {
        let line = v.line();
        self.patched
            .lower_bounds()
            .into_iter()
            .find(|b| line.contains(b) && b > v && self.patched.matches(b))
    }
}

/// A correction berth applies to the working group's list: more versions
/// affected, or more releases carrying the fix.
pub struct Correction {
    /// The entry: a CVE it lists, or berth's `NSWG-CORE-<n>` id for it.
    pub id: &'static str,
    pub also_vulnerable: Option<&'static str>,
    pub also_patched: &'static str,
    pub note: &'static str,
}

/// Known gaps in the working group's list, as facts from the release notes.
pub const CORRECTIONS: &[Correction] = &[
    Correction {
        id: "CVE-2015-8027",
        also_vulnerable: Some(">=0.12.0 <0.12.9"),
        also_patched: ">=0.12.9 <0.13.0",
        note: "0.12.x before 0.12.9 was affected too (fixed in 0.12.9, December 2015 security release); the working group's entry names only 4.x and 5.x",
    },
    Correction {
        id: "NSWG-CORE-26",
        also_vulnerable: None,
        also_patched: "^4.4.2",
        note: "the entry's patched range names 4.4.2 alone; every later 4.x release carries the fix too",
    },
];

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VulnDb {
    #[serde(rename = "_comment", default, skip_serializing_if = "String::is_empty")]
    pub comment: String,
    pub format: u32,
    /// Where the facts came from (package and version, or URL).
    pub source: String,
    pub vulnerabilities: Vec<Vuln>,
}

const SNAPSHOT_COMMENT: &str = "Node.js core vulnerabilities in berth's format: facts (ids, npm ranges, severity, reference) from the Node.js security working group's list (vuln/core), with berth's corrections applied. Written by berth's own code: `cargo run -p berth-runtimes --example write-vuln-snapshot` (the same path as `berth audit --refresh`). Do not edit by hand.";

impl VulnDb {
    /// The snapshot compiled into berth.
    pub fn embedded() -> VulnDb {
        serde_json::from_str(SNAPSHOT).expect("the embedded vulnerability snapshot is valid")
    }

    /// Where `--refresh` keeps its copy.
    pub fn refreshed_path(state_dir: &Path) -> PathBuf {
        state_dir.join("runtimes/vulns/node.json")
    }

    /// The refreshed copy in the state dir if there is a valid one, else the snapshot.
    pub fn load(state_dir: &Path) -> VulnDb {
        std::fs::read(Self::refreshed_path(state_dir))
            .ok()
            .and_then(|b| serde_json::from_slice::<VulnDb>(&b).ok())
            .unwrap_or_else(VulnDb::embedded)
    }

    /// The working group's core list (an object keyed by entry number) to
    /// berth's format, corrections applied.
    pub fn from_wg_core(bytes: &[u8], source: &str) -> Result<VulnDb, VulnError> {
        let json: Json =
            serde_json::from_slice(bytes).map_err(|e| invalid(source, e.to_string()))?;
        let obj = json
            .as_object()
            .ok_or_else(|| invalid(source, "expected a JSON object"))?;
        let mut keyed: Vec<(u64, &Json)> = obj
            .iter()
            .map(|(k, v)| {
                Ok((
                    k.parse::<u64>()
                        .map_err(|_| invalid(source, format!("entry key {k:?}")))?,
                    v,
                ))
            })
            .collect::<Result<_, VulnError>>()?;
        keyed.sort_by_key(|(k, _)| *k);
        let mut out = Vec::new();
        for (key, entry) in keyed {
            let what = format!("{source} entry {key}");
            let text = |k: &str| entry.get(k).and_then(Json::as_str).map(str::to_string);
            let cves: Vec<String> = entry
                .get("cve")
                .and_then(Json::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Json::as_str)
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default();
            let parse_range = |k: &str| -> Result<Range, VulnError> {
                text(k)
                    .unwrap_or_default()
                    .parse::<Range>()
                    .map_err(|e| invalid(&what, e.to_string()))
            };
            let vulnerable = parse_range("vulnerable")?;
            // An empty `patched` means no fix: it must match nothing.
            let patched = match text("patched").filter(|p| !p.trim().is_empty()) {
                Some(p) => p
                    .parse::<Range>()
                    .map_err(|e| invalid(&what, e.to_string()))?,
                None => "<0.0.0-0".parse::<Range>().expect("valid range"),
            };
            let severity =
                Severity::parse(&text("severity").unwrap_or_default()).unwrap_or(Severity::Unknown);
            out.push(Vuln {
                id: cves
                    .first()
                    .cloned()
                    .unwrap_or_else(|| format!("NSWG-CORE-{key}")),
                cves,
                severity,
                vulnerable,
                patched,
                environments: entry
                    .get("affectedEnvironments")
                    .and_then(Json::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(Json::as_str)
                            .map(String::from)
                            .collect()
                    })
                    .unwrap_or_default(),
                reference: text("ref").filter(|r| !r.is_empty()),
                correction: None,
            });
        }
        let mut db = VulnDb {
            comment: SNAPSHOT_COMMENT.into(),
            format: 1,
            source: source.to_string(),
            vulnerabilities: out,
        };
        db.apply_corrections();
        Ok(db)
    }

    fn apply_corrections(&mut self) {
        for c in CORRECTIONS {
            let entries = self
                .vulnerabilities
                .iter_mut()
                .filter(|v| v.id == c.id || v.cves.iter().any(|x| x == c.id));
            for v in entries {
                if v.patched.as_str().contains(c.also_patched) {
                    continue; // applied already (or the list has caught up)
                }
                if let Some(more) = c.also_vulnerable {
                    v.vulnerable = format!("{} || {more}", v.vulnerable)
                        .parse()
                        .expect("valid range");
                }
                v.patched = format!("{} || {}", v.patched, c.also_patched)
                    .parse()
                    .expect("valid range");
                v.correction = Some(c.note.to_string());
            }
        }
    }

    /// Does `v`'s release line have a release that fixes `vuln`? (An
    /// end-of-life line may not: those vulnerabilities stay whatever the patch.)
    pub fn fixable_in_line(vuln: &Vuln, v: &Version) -> bool {
        let line = v.line();
        vuln.patched.lower_bounds().iter().any(|b| line.contains(b))
    }

    /// What affects `v` on Linux, most severe first.
    pub fn affecting(&self, v: &Version) -> Vec<&Vuln> {
        let mut out: Vec<&Vuln> = self
            .vulnerabilities
            .iter()
            .filter(|x| x.affects(v))
            .collect();
        out.sort_by(|a, b| b.severity.cmp(&a.severity).then_with(|| a.id.cmp(&b.id)));
        out
    }

    /// Releases of `line` that shipped a fix, by the patched ranges.
    pub fn fix_releases(&self, line: Line) -> Vec<Version> {
        let mut out: Vec<Version> = self
            .vulnerabilities
            .iter()
            .flat_map(|v| v.patched.lower_bounds())
            .filter(|b| line.contains(b))
            .collect();
        out.sort();
        out.dedup();
        out
    }

    pub fn to_json_pretty(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("serializable");
        s.push('\n');
        s
    }

    /// Fetch the working group's list: from `BERTH_NODE_VULNS_URL` when set,
    /// else from the npm registry's `is-my-node-vulnerable` package (its
    /// `core.json`, integrity-checked).
    pub fn fetch(
        http: &Http,
        config: &RuntimesConfig,
        scratch_dir: &Path,
        progress: ProgressFn<'_>,
    ) -> Result<VulnDb, VulnError> {
        if let Some(url) = std::env::var(WG_URL_ENV)
            .ok()
            .filter(|u| !u.trim().is_empty())
        {
            let bytes = http.get(&url, None, 64 << 20)?;
            return VulnDb::from_wg_core(&bytes, &url);
        }
        let doc_url = format!("{}/{WG_PACKAGE}/latest", config.npm_registry);
        let doc: Json =
            serde_json::from_slice(&http.get(&doc_url, Some("application/json"), 16 << 20)?)
                .map_err(|e| invalid(&doc_url, e.to_string()))?;
        let field = |k: &str| doc.pointer(k).and_then(Json::as_str).map(String::from);
        let (Some(version), Some(tarball), Some(integrity)) = (
            field("/version"),
            field("/dist/tarball"),
            field("/dist/integrity"),
        ) else {
            return Err(invalid(
                &doc_url,
                "no version, dist.tarball or dist.integrity",
            ));
        };
        std::fs::create_dir_all(scratch_dir).map_err(|source| VulnError::Io {
            path: scratch_dir.to_path_buf(),
            source,
        })?;
        let file = http.download(
            &tarball,
            scratch_dir,
            &Expected::Integrity(integrity),
            progress,
        )?;
        let f = std::fs::File::open(&file.path).map_err(|source| VulnError::Io {
            path: file.path.clone(),
            source,
        })?;
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(f));
        let entries = archive
            .entries()
            .map_err(|e| invalid(&tarball, e.to_string()))?;
        for entry in entries {
            let entry = entry.map_err(|e| invalid(&tarball, e.to_string()))?;
            let is_core = entry
                .path()
                .map(|p| p.as_os_str() == "package/core.json")
                .unwrap_or(false);
            if is_core {
                let mut bytes = Vec::new();
                entry
                    .take(64 << 20)
                    .read_to_end(&mut bytes)
                    .map_err(|e| invalid(&tarball, e.to_string()))?;
                return VulnDb::from_wg_core(
                    &bytes,
                    &format!("npm:{WG_PACKAGE}@{version} core.json"),
                );
            }
        }
        Err(invalid(&tarball, "no package/core.json inside"))
    }

    /// Write to the state dir for later audits.
    pub fn save_refreshed(&self, state_dir: &Path) -> Result<PathBuf, VulnError> {
        let path = Self::refreshed_path(state_dir);
        let dir = path.parent().unwrap_or(state_dir);
        std::fs::create_dir_all(dir).map_err(|source| VulnError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let tmp = scratch_path(dir, "vulns");
        std::fs::write(&tmp, self.to_json_pretty())
            .and_then(|_| std::fs::rename(&tmp, &path))
            .map_err(|source| VulnError::Io {
                path: path.clone(),
                source,
            })?;
        Ok(path)
    }
}

/// End of life of Node.js release lines (the release schedule's facts; the
/// lines from 25 on are as scheduled).
const EOL: &[(u64, Option<u64>, &str)] = &[
    (0, Some(10), "2016-10-31"),
    (0, Some(12), "2016-12-31"),
    (4, None, "2018-04-30"),
    (5, None, "2016-06-30"),
    (6, None, "2019-04-30"),
    (7, None, "2017-06-30"),
    (8, None, "2019-12-31"),
    (9, None, "2018-06-30"),
    (10, None, "2021-04-30"),
    (11, None, "2019-06-01"),
    (12, None, "2022-04-30"),
    (13, None, "2020-06-01"),
    (14, None, "2023-04-30"),
    (15, None, "2021-06-01"),
    (16, None, "2023-09-11"),
    (17, None, "2022-06-01"),
    (18, None, "2025-04-30"),
    (19, None, "2023-06-01"),
    (20, None, "2026-04-30"),
    (21, None, "2024-06-01"),
    (22, None, "2027-04-30"),
    (23, None, "2025-06-01"),
    (24, None, "2028-04-30"),
    (25, None, "2026-06-01"),
    (26, None, "2029-04-30"),
];

/// A line's end-of-life date (`YYYY-MM-DD`); 0.x lines before 0.10 ended
/// long before any date berth records (`Some("")`).
pub fn eol_date(line: Line) -> Option<&'static str> {
    if line.major == 0 && line.minor.is_some_and(|m| m < 10) {
        return Some("");
    }
    EOL.iter()
        .find(|(maj, min, _)| *maj == line.major && *min == line.minor)
        .map(|(_, _, d)| *d)
}

/// Is the line past its end of life on `today` (`YYYY-MM-DD`)? `None`: berth does not know.
pub fn is_eol(line: Line, today: &str) -> Option<bool> {
    eol_date(line).map(|d| d.is_empty() || d < today)
}

/// Today's date in UTC, `YYYY-MM-DD`.
pub fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    civil_date((secs / 86_400) as i64)
}

/// Days since 1970-01-01 to a proleptic Gregorian date.
fn civil_date(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        s.parse().unwrap()
    }

    fn ids(db: &VulnDb, version: &str) -> Vec<String> {
        let mut out: Vec<String> = db
            .affecting(&v(version))
            .iter()
            .map(|x| x.id.clone())
            .collect();
        out.sort();
        out
    }

    const WG_SAMPLE: &str = r#"{
      "34": {"cve":["CVE-2015-8027"],"vulnerable":"5.x || 4.x","patched":"^5.1.1 || ^4.2.3","overview":"A bug whereby an HTTP socket may no longer have a parser.\n\n","affectedEnvironments":["all"],"severity":"unknown"},
      "35": {"cve":["CVE-2015-6764"],"vulnerable":"5.x || 4.x","patched":"^5.1.1 || ^4.2.3","overview":"Backport fix for CVE-2015-6764.\n","affectedEnvironments":["all"],"severity":"unknown"},
      "2": {"cve":[],"vulnerable":"4.x || 5.x","patched":"^4.8.4","description":"DoS possible in V8 object lookup","affectedEnvironments":["all"],"severity":"high","ref":"https://example.org/r"},
      "3": {"cve":["CVE-2099-1"],"vulnerable":"4.x","patched":"^4.9.0","description":"windows only","affectedEnvironments":["win32"],"severity":"critical"}
    }"#;

    #[test]
    fn converts_the_working_group_list_and_corrects_it() {
        let db = VulnDb::from_wg_core(WG_SAMPLE.as_bytes(), "sample").unwrap();
        assert_eq!(db.vulnerabilities.len(), 4);
        assert_eq!(db.vulnerabilities[0].id, "NSWG-CORE-2");
        assert_eq!(
            ids(&db, "4.2.2"),
            ["CVE-2015-6764", "CVE-2015-8027", "NSWG-CORE-2"],
            "win32-only left out"
        );
        assert_eq!(ids(&db, "4.2.3"), ["NSWG-CORE-2"]);
        assert_eq!(ids(&db, "0.12.7"), ["CVE-2015-8027"], "berth's correction");
        assert!(ids(&db, "0.12.9").is_empty());
        assert!(ids(&db, "0.10.40").is_empty());
        let c = db
            .vulnerabilities
            .iter()
            .find(|x| x.id == "CVE-2015-8027")
            .unwrap();
        assert!(c.correction.is_some());
        assert_eq!(c.fixed_in_line(&v("0.12.7")), Some(v("0.12.9")));
        assert_eq!(c.fixed_in_line(&v("4.2.2")), Some(v("4.2.3")));
        // Round trip through berth's format; applying corrections twice changes nothing.
        let mut again: VulnDb = serde_json::from_str(&db.to_json_pretty()).unwrap();
        assert_eq!(again, db);
        again.apply_corrections();
        assert_eq!(again, db);
        assert_eq!(
            db.fix_releases(v("4.0.0").line()),
            [v("4.2.3"), v("4.8.4"), v("4.9.0")]
        );
    }

    #[test]
    fn snapshot_has_the_december_2015_facts() {
        let db = VulnDb::embedded();
        let found = ids(&db, "4.2.2");
        for cve in ["CVE-2015-8027", "CVE-2015-6764"] {
            assert!(found.iter().any(|f| f == cve), "{cve} in {found:?}");
        }
        let sev: Vec<Severity> = db
            .affecting(&v("4.2.2"))
            .iter()
            .filter(|x| x.id.starts_with("CVE-2015-"))
            .map(|x| x.severity)
            .collect();
        assert!(sev.contains(&Severity::Unknown));
        assert!(ids(&db, "0.12.7").iter().any(|f| f == "CVE-2015-8027"));
        assert!(!ids(&db, "4.2.3")
            .iter()
            .any(|f| f == "CVE-2015-8027" || f == "CVE-2015-6764"));
    }

    #[test]
    fn end_of_life() {
        assert_eq!(is_eol(v("4.2.2").line(), "2026-11-28"), Some(true));
        assert_eq!(is_eol(v("24.1.0").line(), "2026-11-28"), Some(false));
        assert_eq!(is_eol(v("0.8.28").line(), "2012-01-01"), Some(true));
        assert_eq!(is_eol(v("99.0.0").line(), "2026-11-28"), None);
        assert_eq!(civil_date(0), "1970-01-01");
        assert_eq!(civil_date(20_785), "2026-11-28");
        assert_eq!(civil_date(11_016), "2000-02-29");
    }
}
