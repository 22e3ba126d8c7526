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
//!
//! Every data set carries the date it is current as of ([`VulnDb::as_of`]):
//! a release the data cannot place before that date is "not assessed"
//! ([`VulnDb::coverage`]), never clean.

use crate::config::RuntimesConfig;
use crate::date;
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
/// Who publishes the facts, whichever copy berth read.
pub const PUBLISHER: &str = "nodejs/security-wg";
/// Where the end-of-life dates of [`eol_date`] come from, and when berth recorded them.
pub const EOL_SOURCE: &str = "Node.js release schedule (nodejs/Release), as recorded in berth";
pub const EOL_AS_OF: &str = "2026-11-28";

#[derive(Debug, thiserror::Error)]
pub enum VulnError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("vulnerability data {what}: {reason}")]
    Invalid { what: String, reason: String },
    #[error("vulnerability data from {what} is older than the data berth has ({theirs} < {ours}); refused")]
    Older {
        what: String,
        theirs: String,
        ours: String,
    },
    #[error("no source gave usable vulnerability data ({tried} tried); the data berth has is kept ({kept})")]
    NoRefresh { tried: usize, kept: String },
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
    /// The date (`YYYY-MM-DD`) the facts are current as of: a release
    /// published later is not assessed by them.
    #[serde(default)]
    pub as_of: String,
    /// How `as_of` is known.
    #[serde(default)]
    pub as_of_basis: String,
    /// The working group's highest entry number in the data (it numbers
    /// entries as it adds them, so a copy with a lower one is older).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newest_entry: Option<u64>,
    /// When berth stored this copy (`--refresh`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_at: Option<String>,
    pub vulnerabilities: Vec<Vuln>,
}

const SNAPSHOT_COMMENT: &str = "Node.js core vulnerabilities in berth's format: facts (ids, npm ranges, severity, reference) from the Node.js security working group's list (vuln/core), with berth's corrections applied. Written by berth's own code: `cargo run -p berth-runtimes --example write-vuln-snapshot` (the same path as `berth audit --refresh`). Do not edit by hand.";

/// What a data set is, for every output that uses it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DataInfo {
    pub publisher: &'static str,
    pub source: String,
    /// `YYYY-MM-DD`; releases published later are not assessed.
    pub as_of: String,
    pub as_of_basis: String,
    /// Days from `as_of` to today.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub age_days: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub newest_entry: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stored_at: Option<String>,
    pub entries: usize,
}

impl DataInfo {
    /// `vulnerability data: nodejs/security-wg as of 2024-07-01, from …; 2 years 5 months old (…)`
    pub fn summary(&self) -> String {
        let age = self
            .age_days
            .map(|d| format!("; {} old", date::age_words(d)))
            .unwrap_or_default();
        let as_of = if self.as_of.is_empty() {
            "an unknown date"
        } else {
            &self.as_of
        };
        format!(
            "vulnerability data: {} as of {as_of}, from {}{age} (date from {})",
            self.publisher, self.source, self.as_of_basis
        )
    }
}

/// Whether the data can say anything about one release.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Coverage {
    /// `false`: the release may be newer than the data, which then knows
    /// nothing of its vulnerabilities ("not assessed", never "clean").
    pub assessed: bool,
    pub reason: String,
    /// The publish date berth knows for the release, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub published: Option<String>,
}

/// Where a refresh looks, in order, and what it found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshSource {
    /// The working group's own files (`…/vuln/core`).
    Upstream(String),
    /// A configured copy of the same files.
    Mirror(String),
    /// The npm package that carries the list.
    NpmPackage,
}

impl std::fmt::Display for RefreshSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RefreshSource::Upstream(u) => write!(f, "the working group's files ({u})"),
            RefreshSource::Mirror(u) => write!(f, "the mirror {u}"),
            RefreshSource::NpmPackage => write!(f, "the npm package {WG_PACKAGE}"),
        }
    }
}

/// The newest date `texts` (references, publish dates) name, and which
/// one named it; `("", …)` when none does.
fn content_date<'a>(texts: impl Iterator<Item = &'a str>) -> (String, String) {
    let newest = texts
        .filter_map(|t| date::newest_date_named(t).map(|d| (d, t)))
        .max_by(|a, b| a.0.cmp(&b.0));
    match newest {
        Some((d, t)) => {
            let name = t.trim_end_matches('/').rsplit('/').next().unwrap_or(t);
            (d, format!("its newest dated entry, {name}"))
        }
        None => (String::new(), "no entry of it names a date".into()),
    }
}

/// `<base>/index.json`, or the URL itself when it names a JSON file.
fn index_url(base: &str) -> String {
    let base = base.trim_end_matches('/');
    if base.ends_with(".json") {
        base.to_string()
    } else {
        format!("{base}/index.json")
    }
}

impl VulnDb {
    /// The snapshot compiled into berth.
    pub fn embedded() -> VulnDb {
        let mut db: VulnDb =
            serde_json::from_str(SNAPSHOT).expect("the embedded vulnerability snapshot is valid");
        db.date_from_content_if_missing();
        db
    }

    /// Where `--refresh` keeps its copy.
    pub fn refreshed_path(state_dir: &Path) -> PathBuf {
        state_dir.join("runtimes/vulns/node.json")
    }

    /// The newer of the refreshed copy in the state dir and the snapshot.
    pub fn load(state_dir: &Path) -> VulnDb {
        let embedded = VulnDb::embedded();
        std::fs::read(Self::refreshed_path(state_dir))
            .ok()
            .and_then(|b| serde_json::from_slice::<VulnDb>(&b).ok())
            .map(|mut db| {
                db.date_from_content_if_missing();
                db
            })
            .filter(|db| db.older_than(&embedded).is_none())
            .unwrap_or(embedded)
    }

    /// A copy written before berth dated its data: the newest date its
    /// references name.
    fn date_from_content_if_missing(&mut self) {
        if self.as_of.is_empty() {
            let (as_of, basis) = content_date(
                self.vulnerabilities
                    .iter()
                    .filter_map(|v| v.reference.as_deref()),
            );
            self.as_of = as_of;
            self.as_of_basis = basis;
        }
    }

    pub fn info(&self, today: &str) -> DataInfo {
        DataInfo {
            publisher: PUBLISHER,
            source: self.source.clone(),
            as_of: self.as_of.clone(),
            as_of_basis: self.as_of_basis.clone(),
            age_days: date::days_between(&self.as_of, today),
            newest_entry: self.newest_entry,
            stored_at: self.stored_at.clone(),
            entries: self.vulnerabilities.len(),
        }
    }

    /// `Some((self, other))` described, when `self` is older than `other`:
    /// an earlier date, or fewer of the working group's entries.
    pub fn older_than(&self, other: &VulnDb) -> Option<(String, String)> {
        let describe = |db: &VulnDb| match db.newest_entry {
            Some(n) => format!("as of {}, newest entry {n}", db.as_of),
            None => format!("as of {}", db.as_of),
        };
        let older_date = self.as_of < other.as_of;
        let fewer = matches!((self.newest_entry, other.newest_entry), (Some(a), Some(b)) if a < b);
        (older_date || fewer).then(|| (describe(self), describe(other)))
    }

    /// The working group's core list (an object keyed by entry number) to
    /// berth's format, corrections applied, dated by its content: the
    /// newest date its entries name (a publish date, or the month of the
    /// security release a reference points to).
    pub fn from_wg_core(bytes: &[u8], source: &str) -> Result<VulnDb, VulnError> {
        let json: Json =
            serde_json::from_slice(bytes).map_err(|e| invalid(source, e.to_string()))?;
        let obj = json
            .as_object()
            .ok_or_else(|| invalid(source, "expected a JSON object"))?;
        if obj.is_empty() {
            return Err(invalid(source, "no entries"));
        }
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
        let mut dated: Vec<String> = Vec::new();
        for (key, entry) in &keyed {
            let what = format!("{source} entry {key}");
            if !entry.is_object() {
                return Err(invalid(&what, "expected a JSON object"));
            }
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
            dated.extend(text("ref"));
            dated.extend(text("publish_date"));
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
        let (as_of, as_of_basis) = content_date(dated.iter().map(String::as_str));
        let mut db = VulnDb {
            comment: SNAPSHOT_COMMENT.into(),
            format: 1,
            source: source.to_string(),
            as_of,
            as_of_basis,
            newest_entry: keyed.last().map(|(k, _)| *k),
            stored_at: None,
            vulnerabilities: out,
        };
        db.apply_corrections();
        Ok(db)
    }

    /// A later date the source itself vouches for (the fetch date of the
    /// working group's own files, a mirror's `Last-Modified`).
    fn dated_by_source(mut self, day: Option<String>, basis: &str) -> VulnDb {
        if let Some(day) = day.filter(|d| *d > self.as_of) {
            self.as_of = day;
            self.as_of_basis = basis.to_string();
        }
        self
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

    /// The newest release of `line` the data names (a bound of a
    /// vulnerable or patched range): it existed when the data was written.
    pub fn newest_named(&self, line: Line) -> Option<Version> {
        self.vulnerabilities
            .iter()
            .flat_map(|v| {
                let mut b = v.patched.lower_bounds();
                b.extend(v.vulnerable.lower_bounds());
                b
            })
            .filter(|b| line.contains(b))
            .max()
    }

    /// Can the data speak for `v`? Yes when it names a release of `v`'s
    /// line at or above `v`, when `v` was published on or before the data's
    /// date (`published`: from the release index; npm's publish times are
    /// those of the repackaging, never earlier than the release), or when
    /// the line ended before that date. Otherwise `v` may be newer than
    /// the data: not assessed.
    pub fn coverage(&self, v: &Version, published: Option<&str>) -> Coverage {
        let line = v.line();
        let published = published.and_then(date::parse_ymd);
        let yes = |reason: String| Coverage {
            assessed: true,
            reason,
            published: published.clone(),
        };
        if let Some(named) = self.newest_named(line).filter(|n| n >= v) {
            return yes(format!(
                "the data (as of {}) names node {named} of line {line}",
                self.as_of
            ));
        }
        if let Some(p) = published.as_ref().filter(|p| **p <= self.as_of) {
            return yes(format!(
                "published {p}, before the data's date ({})",
                self.as_of
            ));
        }
        if let Some(end) = eol_date(line).filter(|d| *d <= self.as_of.as_str()) {
            return yes(if end.is_empty() {
                format!("line {line} ended before any date berth records")
            } else {
                format!(
                    "line {line} ended {end}, before the data's date ({})",
                    self.as_of
                )
            });
        }
        let reason = match &published {
            Some(p) => format!(
                "node {v} was published {p}, after the vulnerability data (as of {}): its vulnerabilities are not known to berth",
                self.as_of
            ),
            None => format!(
                "node {v} may be newer than the vulnerability data (as of {}): the data names no release of {line} this new, and no publish date is known (release index not readable)",
                self.as_of
            ),
        };
        Coverage {
            assessed: false,
            reason,
            published,
        }
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

    /// Fresh data, trying in order the working group's own files, the
    /// configured mirror, then the npm package; each candidate must parse
    /// and be no older than `current`. The first that passes is stored in
    /// the state dir (with its date) and returned; `note` hears about each
    /// one that did not.
    pub fn refresh(
        http: &Http,
        config: &RuntimesConfig,
        state_dir: &Path,
        current: &VulnDb,
        note: &mut dyn FnMut(&str),
        progress: ProgressFn<'_>,
    ) -> Result<(VulnDb, RefreshSource, PathBuf), VulnError> {
        let mut sources = Vec::new();
        sources.extend(config.vulns_upstream.clone().map(RefreshSource::Upstream));
        sources.extend(config.vulns_mirror.clone().map(RefreshSource::Mirror));
        sources.push(RefreshSource::NpmPackage);
        let mut tried = 0;
        let scratch = state_dir.join("runtimes/vulns");
        for source in sources {
            let got = match &source {
                RefreshSource::Upstream(base) | RefreshSource::Mirror(base) => {
                    Self::fetch_files(http, base, matches!(source, RefreshSource::Upstream(_)))
                }
                RefreshSource::NpmPackage => {
                    Self::fetch_package(http, config, &scratch, &mut *progress)
                }
            };
            let checked = got.and_then(|db| match db.older_than(current) {
                Some((theirs, ours)) => Err(VulnError::Older {
                    what: db.source.clone(),
                    theirs,
                    ours,
                }),
                None => Ok(db),
            });
            match checked {
                Ok(mut db) => {
                    db.stored_at = Some(date::today());
                    let path = db.save_refreshed(state_dir)?;
                    return Ok((db, source, path));
                }
                Err(e) => {
                    note(&format!("{source}: {e}"));
                    tried += 1;
                }
            }
        }
        Err(VulnError::NoRefresh {
            tried,
            kept: format!("{} as of {}", current.source, current.as_of),
        })
    }

    /// The working group's `index.json` from `base` (its `vuln/core`
    /// directory, or a copy of it). The working group's own repository is
    /// current when read; a copy is dated by its `Last-Modified`, and
    /// either way never earlier than its content says.
    fn fetch_files(http: &Http, base: &str, upstream: bool) -> Result<VulnDb, VulnError> {
        let url = index_url(base);
        let doc = http.get_dated(&url, Some("application/json"), 64 << 20)?;
        let db = VulnDb::from_wg_core(&doc.body, &url)?;
        Ok(if upstream {
            let day = doc
                .date
                .as_deref()
                .and_then(date::from_http_date)
                .unwrap_or_else(date::today);
            db.dated_by_source(Some(day), "the working group's repository, read that day")
        } else {
            db.dated_by_source(
                doc.last_modified.as_deref().and_then(date::from_http_date),
                "the mirror's Last-Modified",
            )
        })
    }

    /// The list inside the npm package (its `core.json`, integrity-checked),
    /// dated by its content only: the package's publish date says when it
    /// was published, not when its copy of the list was taken.
    fn fetch_package(
        http: &Http,
        config: &RuntimesConfig,
        scratch_dir: &Path,
        progress: ProgressFn<'_>,
    ) -> Result<VulnDb, VulnError> {
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
                    &format!("npm package {WG_PACKAGE} {version} (core.json)"),
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
    fn releases_newer_than_the_data_are_not_assessed() {
        let db = VulnDb::embedded();
        assert_eq!(
            db.as_of, "2024-07-01",
            "dated by its newest entry (July 2024)"
        );
        let assessed =
            |ver: &str, published: Option<&str>| db.coverage(&v(ver), published).assessed;
        // Named by the data (22.4.1 is the July 2024 fix), whatever npm's repackaging date.
        assert!(assessed("22.3.0", Some("2024-12-12T23:49:11.345Z")));
        assert!(assessed("22.4.1", None));
        assert!(assessed("4.2.2", None));
        // Published before the data's date.
        assert!(assessed("22.5.0", Some("2024-06-30")));
        // A line that ended before the data's date.
        assert!(assessed("21.7.3", None));
        // Newer than anything the data names, and published later or when unknown.
        let c = db.coverage(&v("22.13.1"), Some("2025-01-21T00:00:00Z"));
        assert!(!c.assessed);
        assert_eq!(c.published.as_deref(), Some("2025-01-21"));
        assert!(
            c.reason
                .contains("published 2025-01-21, after the vulnerability data (as of 2024-07-01)"),
            "{}",
            c.reason
        );
        assert!(!assessed("22.5.0", None));
        assert!(!assessed("24.0.0", Some("2025-05-06")));
        assert!(!db.coverage(&v("24.0.0"), None).reason.is_empty());
    }

    #[test]
    fn content_dates_and_age() {
        let db = VulnDb::from_wg_core(WG_SAMPLE.as_bytes(), "sample").unwrap();
        assert_eq!(db.newest_entry, Some(35));
        // No reference names a date: unknown, so older than any dated set.
        assert_eq!(db.as_of, "");
        assert!(db.older_than(&VulnDb::embedded()).is_some());
        let dated = r#"{"7": {"vulnerable":"4.x","patched":"^4.2.3","ref":"http://openssl.org/news/secadv/20151203.txt"},
                        "8": {"vulnerable":"4.x","patched":"^4.2.4","publish_date":"2016-01-20"}}"#;
        let db = VulnDb::from_wg_core(dated.as_bytes(), "d").unwrap();
        assert_eq!(db.as_of, "2016-01-20");
        let info = db.info("2016-02-19");
        assert_eq!(info.age_days, Some(30));
        assert!(info.summary().starts_with(
            "vulnerability data: nodejs/security-wg as of 2016-01-20, from d; 30 days old"
        ));
        assert!(VulnDb::from_wg_core(b"{}", "empty").is_err());
        assert!(VulnDb::from_wg_core(b"{\"1\": 3}", "odd").is_err());
    }

    #[test]
    fn end_of_life() {
        assert_eq!(is_eol(v("4.2.2").line(), "2026-11-28"), Some(true));
        assert_eq!(is_eol(v("24.1.0").line(), "2026-11-28"), Some(false));
        assert_eq!(is_eol(v("0.8.28").line(), "2012-01-01"), Some(true));
        assert_eq!(is_eol(v("99.0.0").line(), "2026-11-28"), None);
    }
}
