//! Which version a service should move to.

use crate::index::ReleaseIndex;
use crate::version::Version;
use crate::vulns::{Coverage, VulnDb};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpgradeError {
    #[error("no release of node {line} fixes every known vulnerability (newest known: {newest})")]
    NoFix { line: String, newest: String },
    #[error("node {0} is not a published release")]
    Unpublished(Version),
    #[error("--latest-patch needs the release index, which could not be read: {0}")]
    NeedIndex(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Strategy {
    /// The lowest release of the same line that every fix the line got has
    /// reached (vulnerabilities the line never got a fix for, as after its
    /// end of life, cannot be fixed by a patch and are left to the report).
    Security,
    /// The highest published release of the same line.
    LatestPatch,
    /// This exact version.
    To(Version),
}

/// The version `current` should become. `published` is the release index's
/// list when it could be read; without it, the security choice still works
/// from the releases the vulnerability data names as fixes.
pub fn choose(
    current: &Version,
    strategy: &Strategy,
    db: &VulnDb,
    published: Result<&[Version], String>,
) -> Result<Version, UpgradeError> {
    let line = current.line();
    match strategy {
        Strategy::To(v) => match published {
            Ok(list) if !list.contains(v) => Err(UpgradeError::Unpublished(v.clone())),
            _ => Ok(v.clone()),
        },
        Strategy::LatestPatch => {
            let list = published.map_err(UpgradeError::NeedIndex)?;
            Ok(list
                .iter()
                .filter(|v| line.contains(v) && !v.is_prerelease() && *v >= current)
                .max()
                .cloned()
                .unwrap_or_else(|| current.clone()))
        }
        Strategy::Security => {
            let mut candidates: Vec<Version> = match published {
                Ok(list) => list
                    .iter()
                    .filter(|v| line.contains(v) && !v.is_prerelease())
                    .cloned()
                    .collect(),
                Err(_) => db.fix_releases(line),
            };
            candidates.push(current.clone());
            candidates.retain(|v| v >= current);
            candidates.sort();
            candidates.dedup();
            candidates
                .iter()
                .find(|v| {
                    db.affecting(v)
                        .iter()
                        .all(|x| !VulnDb::fixable_in_line(x, v))
                })
                .cloned()
                .ok_or_else(|| UpgradeError::NoFix {
                    line: line.to_string(),
                    newest: candidates.last().map(|v| v.to_string()).unwrap_or_default(),
                })
        }
    }
}

impl Strategy {
    pub fn name(&self) -> &'static str {
        match self {
            Strategy::Security => "security",
            Strategy::LatestPatch => "latest-patch",
            Strategy::To(_) => "to",
        }
    }
}

/// A release of the line newer than the vulnerability data: what it fixes
/// is not known to berth, so it may fix more than the security choice.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LatestPatch {
    pub version: Version,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub published: Option<String>,
    pub note: String,
}

/// The newest release of `from`'s line above `from` when the data does
/// not cover it (`None` when the data covers the whole line as far as the
/// index goes).
pub fn latest_patch_beyond_data(
    db: &VulnDb,
    index: &ReleaseIndex,
    from: &Version,
) -> Option<LatestPatch> {
    let line = from.line();
    let newest = index
        .releases
        .iter()
        .filter(|r| line.contains(&r.version) && !r.version.is_prerelease() && r.version > *from)
        .max_by(|a, b| a.version.cmp(&b.version))?;
    let published = newest.published.as_deref();
    if db.coverage(&newest.version, published).assessed {
        return None;
    }
    let when = published
        .map(|p| format!("published {p}"))
        .unwrap_or_else(|| "publish date unknown".into());
    Some(LatestPatch {
        version: newest.version.clone(),
        published: published.map(String::from),
        note: format!(
            "the newest release of {line} ({when}) is newer than the vulnerability data (as of {}) and may fix more",
            db.as_of
        ),
    })
}

/// One service's upgrade, explained.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Choice {
    pub service: String,
    pub from: Version,
    pub to: Version,
    pub strategy: &'static str,
    pub reason: String,
    /// What the data can say about the release moved to.
    pub coverage: Coverage,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latest_patch: Option<LatestPatch>,
}

/// Why `to` was chosen for `from`, and what the data cannot vouch for.
pub fn explain(
    service: &str,
    from: &Version,
    to: &Version,
    strategy: &Strategy,
    db: &VulnDb,
    index: Option<&ReleaseIndex>,
) -> Choice {
    let line = from.line();
    let fixable = db
        .affecting(from)
        .into_iter()
        .filter(|x| VulnDb::fixable_in_line(x, from))
        .count();
    let plural = if fixable == 1 { "y" } else { "ies" };
    let reason = match strategy {
        Strategy::Security if to == from && fixable == 0 => format!(
            "no vulnerability known as of {} has a fix in {line} that {from} lacks",
            db.as_of
        ),
        Strategy::Security => format!(
            "the lowest release of {line} that fixes the {fixable} vulnerabilit{plural} of {from} known as of {} with a fix in the line",
            db.as_of
        ),
        Strategy::LatestPatch => format!("the newest published release of {line}"),
        Strategy::To(_) => "as asked (--to)".into(),
    };
    let published = index.and_then(|i| i.published(to));
    Choice {
        service: service.to_string(),
        from: from.clone(),
        to: to.clone(),
        strategy: strategy.name(),
        reason,
        coverage: db.coverage(to, published),
        latest_patch: index
            .and_then(|i| latest_patch_beyond_data(db, i, to))
            .filter(|_| *strategy != Strategy::LatestPatch),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        s.parse().unwrap()
    }

    fn db() -> VulnDb {
        let wg = r#"{
          "1": {"cve":["CVE-2015-8027"],"vulnerable":"5.x || 4.x","patched":"^5.1.1 || ^4.2.3","affectedEnvironments":["all"],"severity":"unknown"},
          "2": {"cve":["CVE-2015-6764"],"vulnerable":"5.x || 4.x","patched":"^5.1.1 || ^4.2.3","affectedEnvironments":["all"],"severity":"unknown"},
          "3": {"cve":["CVE-2016-0001"],"vulnerable":"4.x","patched":"^4.3.0","affectedEnvironments":["all"],"severity":"high"},
          "4": {"cve":["CVE-2016-0002"],"vulnerable":"0.10.x","patched":"","affectedEnvironments":["all"],"severity":"low"}
        }"#;
        VulnDb::from_wg_core(wg.as_bytes(), "t").unwrap()
    }

    #[test]
    fn security_picks_the_lowest_release_fixing_everything() {
        let published = [
            v("4.2.2"),
            v("4.2.3"),
            v("4.2.4"),
            v("4.3.0"),
            v("4.3.1"),
            v("5.0.0"),
        ];
        let got = choose(&v("4.2.2"), &Strategy::Security, &db(), Ok(&published)).unwrap();
        assert_eq!(
            got,
            v("4.3.0"),
            "4.2.3 fixes the December ones but not CVE-2016-0001"
        );
        // Offline: the fix releases the data names.
        let got = choose(
            &v("4.2.2"),
            &Strategy::Security,
            &db(),
            Err("offline".into()),
        )
        .unwrap();
        assert_eq!(got, v("4.3.0"));
        // Already clean: stays.
        assert_eq!(
            choose(&v("4.3.1"), &Strategy::Security, &db(), Ok(&published)).unwrap(),
            v("4.3.1")
        );
        // 0.12.x before 0.12.9: the correction makes 0.12.9 the answer.
        let got = choose(&v("0.12.7"), &Strategy::Security, &VulnDb::from_wg_core(b"{\"1\":{\"cve\":[\"CVE-2015-8027\"],\"vulnerable\":\"4.x\",\"patched\":\"^4.2.3\",\"severity\":\"unknown\"}}", "t").unwrap(), Ok(&[v("0.12.7"), v("0.12.8"), v("0.12.9"), v("0.12.10")])).unwrap();
        assert_eq!(got, v("0.12.9"));
        // A line that never got the fix: nothing a patch release can do.
        assert_eq!(
            choose(
                &v("0.10.1"),
                &Strategy::Security,
                &db(),
                Ok(&[v("0.10.1"), v("0.10.2")])
            )
            .unwrap(),
            v("0.10.1")
        );
        let err = choose(
            &v("4.2.2"),
            &Strategy::Security,
            &db(),
            Ok(&[v("4.2.2"), v("4.2.3")]),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "no release of node 4.x fixes every known vulnerability (newest known: 4.2.3)"
        );
    }

    #[test]
    fn the_real_data_moves_4_2_2_past_4_2_3() {
        let got = choose(
            &v("4.2.2"),
            &Strategy::Security,
            &VulnDb::embedded(),
            Err("offline".into()),
        )
        .unwrap();
        assert!(got > v("4.2.3"), "{got}");
        assert_eq!(got.major, 4);
        let db = VulnDb::embedded();
        assert!(db
            .affecting(&got)
            .iter()
            .all(|x| !VulnDb::fixable_in_line(x, &got)));
        // Every release of 4.x before it misses a fix that 4.x got.
        let before: Version = format!(
            "{}.{}.{}",
            got.major,
            got.minor,
            got.patch.saturating_sub(1)
        )
        .parse()
        .unwrap();
        if before != got {
            assert!(db
                .affecting(&before)
                .iter()
                .any(|x| VulnDb::fixable_in_line(x, &before)));
        }
    }

    #[test]
    fn names_the_latest_patch_the_data_does_not_cover() {
        use crate::index::Release;
        let rel = |ver: &str, published: &str| Release {
            version: v(ver),
            lts: None,
            security: false,
            npm: None,
            npm_dist: None,
            published: Some(published.into()),
        };
        let db = VulnDb::embedded();
        let mut index = ReleaseIndex {
            source: crate::SourceKind::Npm,
            arch: "x64".into(),
            releases: vec![
                rel("22.3.0", "2024-06-11"),
                rel("22.4.1", "2024-07-08"),
                rel("22.23.5", "2026-11-12"),
                rel("24.1.0", "2025-05-21"),
            ],
        };
        let to = choose(
            &v("22.3.0"),
            &Strategy::Security,
            &db,
            Ok(&index.versions()),
        )
        .unwrap();
        assert_eq!(to, v("22.4.1"));
        let c = explain(
            "b",
            &v("22.3.0"),
            &to,
            &Strategy::Security,
            &db,
            Some(&index),
        );
        assert!(c.coverage.assessed);
        assert!(
            c.reason
                .contains("fixes the 4 vulnerabilities of 22.3.0 known as of 2024-07-01"),
            "{}",
            c.reason
        );
        let p = c.latest_patch.unwrap();
        assert_eq!(
            (p.version, p.published.as_deref()),
            (v("22.23.5"), Some("2026-11-12"))
        );
        assert!(p.note.contains("may fix more"));
        // --latest-patch itself names nothing further.
        let c = explain(
            "b",
            &v("22.3.0"),
            &v("22.23.5"),
            &Strategy::LatestPatch,
            &db,
            Some(&index),
        );
        assert!(c.latest_patch.is_none());
        assert!(!c.coverage.assessed);
        // A newest release the data covers (published before its date) is not named.
        index.releases[2] = rel("22.23.5", "2024-06-30");
        assert!(latest_patch_beyond_data(&db, &index, &v("22.4.1")).is_none());
    }

    #[test]
    fn latest_patch_and_to() {
        let published = [v("4.2.2"), v("4.2.3"), v("4.9.1"), v("5.0.0")];
        assert_eq!(
            choose(&v("4.2.2"), &Strategy::LatestPatch, &db(), Ok(&published)).unwrap(),
            v("4.9.1")
        );
        assert!(matches!(
            choose(&v("4.2.2"), &Strategy::LatestPatch, &db(), Err("x".into())),
            Err(UpgradeError::NeedIndex(_))
        ));
        assert_eq!(
            choose(
                &v("4.2.2"),
                &Strategy::To(v("4.2.3")),
                &db(),
                Ok(&published)
            )
            .unwrap(),
            v("4.2.3")
        );
        assert_eq!(
            choose(
                &v("4.2.2"),
                &Strategy::To(v("4.2.9")),
                &db(),
                Ok(&published)
            ),
            Err(UpgradeError::Unpublished(v("4.2.9")))
        );
        assert_eq!(
            choose(
                &v("4.2.2"),
                &Strategy::To(v("4.2.9")),
                &db(),
                Err("offline".into())
            )
            .unwrap(),
            v("4.2.9")
        );
    }
}
