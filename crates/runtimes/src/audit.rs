//! Which runtime each service runs, and what is known against it.

use crate::date;
use crate::index::ReleaseIndex;
use crate::rewrite::image_version;
use crate::spec::{RuntimeSpec, VersionReq};
use crate::upgrade::{choose, latest_patch_beyond_data, LatestPatch, Strategy};
use crate::version::Version;
use crate::vulns::{self, Coverage, Severity, VulnDb};
use berth_compose::model::{Project, Service};

/// Where berth learnt the runtime of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    /// `x-runtime: node@…`
    XRuntime,
    /// The `NODE_VERSION` of the image in berth's image store.
    ImageEnv,
    /// A recognised image tag (`node:4.2.2`, `…/alpine-nodejs:4.2.2`).
    ImageTag,
}

/// A service's runtime as written, before resolution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detected {
    pub origin: Origin,
    /// The `x-runtime` value or the image reference.
    pub declared: String,
    /// For `x-runtime`, the parsed spec (`Err`: why it does not parse).
    pub spec: Option<Result<RuntimeSpec, String>>,
    /// Known without resolution: exact specs, image tags and env.
    pub version: Option<Version>,
}

/// The runtime a service runs, if berth recognises one.
pub fn detect(service: &Service, images: Option<&berth_oci::Store>) -> Option<Detected> {
    if let Some(declared) = service.runtime() {
        let declared = declared.to_string();
        let spec = declared.parse::<RuntimeSpec>().map_err(|e| e.to_string());
        let version = spec.as_ref().ok().and_then(|s| s.exact().cloned());
        return Some(Detected {
            origin: Origin::XRuntime,
            declared,
            spec: Some(spec),
            version,
        });
    }
    let image = service.image.as_deref()?;
    let from_env = images.and_then(|store| image_node_version(store, image));
    let from_tag = image_version(image).map(|(_, v)| v);
    match (from_env, from_tag) {
        (Some(v), _) => Some(Detected {
            origin: Origin::ImageEnv,
            declared: image.to_string(),
            spec: None,
            version: Some(v),
        }),
        (None, Some(v)) => Some(Detected {
            origin: Origin::ImageTag,
            declared: image.to_string(),
            spec: None,
            version: Some(v),
        }),
        (None, None) => None,
    }
}

/// `NODE_VERSION` from the config of `image` in berth's image store.
fn image_node_version(store: &berth_oci::Store, image: &str) -> Option<Version> {
    let platform = berth_oci::Platform::host();
    let img = store.image(image, &platform).ok().or_else(|| {
        let familiar = berth_registry::Reference::parse(image).ok()?.familiar();
        store.image(&familiar, &platform).ok()
    })?;
    img.config
        .config
        .env
        .as_ref()?
        .iter()
        .find_map(|e| e.strip_prefix("NODE_VERSION="))
        .and_then(|v| v.parse().ok())
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    pub id: String,
    pub cves: Vec<String>,
    pub severity: Severity,
    /// The first release of the same line with the fix (`None`: the line never got one).
    pub fixed_in_line: Option<Version>,
    pub vulnerable: String,
    pub patched: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ServiceAudit {
    pub service: String,
    pub runtime: String,
    pub origin: Origin,
    pub declared: String,
    /// `None` when the version could not be told (see `error`).
    pub version: Option<Version>,
    pub line: Option<String>,
    /// `None`: berth does not know the line's end of life.
    pub end_of_life: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_of_life_date: Option<String>,
    /// Whether the vulnerability data covers this release at all: when it
    /// does not, an empty `vulnerabilities` means "not assessed", not clean.
    pub coverage: Coverage,
    pub vulnerabilities: Vec<Finding>,
    /// The lowest release of the line with every fix the line got.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upgrade_to: Option<Version>,
    /// A newer release of the line than the data knows, which may fix more.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latest_patch: Option<LatestPatch>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl ServiceAudit {
    pub fn worst(&self) -> Option<Severity> {
        self.vulnerabilities.iter().map(|f| f.severity).max()
    }
}

/// The findings for one version.
pub fn findings(db: &VulnDb, v: &Version) -> Vec<Finding> {
    db.affecting(v)
        .into_iter()
        .map(|x| Finding {
            id: x.id.clone(),
            cves: x.cves.clone(),
            severity: x.severity,
            fixed_in_line: x.fixed_in_line(v),
            vulnerable: x.vulnerable.to_string(),
            patched: x.patched.to_string(),
            reference: x.reference.clone(),
        })
        .collect()
}

/// Audit every service of `project` that runs a recognised runtime, in
/// service order. `resolve` turns a non-exact `x-runtime` (`node@4.2`,
/// `node@lts`) into a version (the CLI passes [`crate::Runtimes::resolve`]).
/// Add what the dist index says: a later release of a service's line that
/// the index flags `security` is a fix that version lacks. A flagged
/// release the working group's list already names as a fix adds nothing;
/// one it does not name becomes a finding of unknown severity, so a gap in
/// the list does not hide a security release. Only a dist index carries
/// the flags (the npm registry's packages do not).
pub fn add_security_releases(audits: &mut [ServiceAudit], index: &crate::index::ReleaseIndex) {
    for a in audits {
        let Some(v) = a.version.clone() else {
            continue;
        };
        let line = v.line();
        let mut flagged: Vec<&Version> = index
            .releases
            .iter()
            .filter(|r| r.security && r.version > v && line.contains(&r.version))
            .map(|r| &r.version)
            .collect();
        flagged.sort();
        flagged.dedup();
        for r in flagged {
            let named = a
                .vulnerabilities
                .iter()
                .any(|f| f.fixed_in_line.as_ref() == Some(r));
            if named {
                continue;
            }
            a.vulnerabilities.push(Finding {
                id: format!("security-release-{r}"),
                cves: Vec::new(),
                severity: Severity::Unknown,
                fixed_in_line: Some(r.clone()),
                vulnerable: format!("<{r}"),
                patched: format!(">={r}"),
                reference: Some("the Node.js dist index flags it as a security release".into()),
            });
        }
    }
}

/// `index` (when it could be read) gives publish dates and the published
/// releases: without it, only what the data itself names is assessed.
pub fn audit_project(
    project: &Project,
    db: &VulnDb,
    images: Option<&berth_oci::Store>,
    index: Option<&ReleaseIndex>,
    resolve: &mut dyn FnMut(&RuntimeSpec) -> Result<Version, String>,
) -> Vec<ServiceAudit> {
    let today = date::today();
    let published = index.map(|i| i.versions());
    let mut out = Vec::new();
    for (name, service) in &project.services {
        let Some(d) = detect(service, images) else {
            continue;
        };
        let mut error = None;
        let version = match (&d.version, &d.spec) {
            (Some(v), _) => Some(v.clone()),
            (None, Some(Ok(spec))) if !matches!(spec.req, VersionReq::Exact(_)) => {
                match resolve(spec) {
                    Ok(v) => Some(v),
                    Err(e) => {
                        error = Some(e);
                        None
                    }
                }
            }
            (None, Some(Err(e))) => {
                error = Some(e.clone());
                None
            }
            _ => None,
        };
        let line = version.as_ref().map(|v| v.line());
        let coverage = match &version {
            Some(v) => db.coverage(v, index.and_then(|i| i.published(v))),
            None => Coverage {
                assessed: false,
                reason: "the version could not be told".into(),
                published: None,
            },
        };
        let upgrade_to = version
            .as_ref()
            .and_then(|v| {
                let list = published.as_deref().ok_or_else(String::new);
                choose(v, &Strategy::Security, db, list).ok()
            })
            .filter(|to| Some(to) != version.as_ref());
        let latest_patch = index
            .zip(version.as_ref())
            .and_then(|(i, v)| latest_patch_beyond_data(db, i, upgrade_to.as_ref().unwrap_or(v)));
        out.push(ServiceAudit {
            service: name.clone(),
            runtime: "node".into(),
            origin: d.origin,
            declared: d.declared,
            line: line.map(|l| l.to_string()),
            end_of_life: line.and_then(|l| vulns::is_eol(l, &today)),
            end_of_life_date: line
                .and_then(vulns::eol_date)
                .filter(|d| !d.is_empty())
                .map(String::from),
            coverage,
            vulnerabilities: version
                .as_ref()
                .map(|v| findings(db, v))
                .unwrap_or_default(),
            upgrade_to,
            latest_patch,
            version,
            error,
        });
    }
    out
}

/// Should a CI gate fail? `threshold` `Unknown` means any finding at all,
/// and any release the data does not assess; otherwise findings graded at
/// or above it (ungraded ones do not count).
pub fn fails(audits: &[ServiceAudit], threshold: Severity) -> bool {
    if threshold == Severity::Unknown && audits.iter().any(|a| !a.coverage.assessed) {
        return true;
    }
    audits.iter().flat_map(|a| &a.vulnerabilities).any(|f| {
        threshold == Severity::Unknown
            || (f.severity != Severity::Unknown && f.severity >= threshold)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(yaml: &str) -> Project {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("compose.yaml"), yaml).unwrap();
        let opts = berth_compose::Options {
            cwd: dir.path().to_path_buf(),
            ..Default::default()
        };
        berth_compose::load(&opts).unwrap().project
    }

    #[test]
    fn dist_index_security_flags_add_unnamed_fixes() {
        use crate::index::{Release, ReleaseIndex};
        let rel = |v: &str, security: bool| Release {
            version: v.parse().unwrap(),
            lts: None,
            security,
            npm: None,
            npm_dist: None,
            published: None,
        };
        let index = ReleaseIndex {
            source: crate::SourceKind::Dist,
            arch: "x64".into(),
            releases: vec![
                rel("4.2.3", true),
                rel("4.2.9", true),
                rel("4.2.5", false),
                rel("5.1.1", true),
            ],
        };
        let p = project("services:\n  app:\n    x-runtime: node@4.2.2\n");
        let mut audits = audit_project(&p, &VulnDb::embedded(), None, None, &mut |_| {
            Err("offline".into())
        });
        let before = audits[0].vulnerabilities.len();
        add_security_releases(&mut audits, &index);
        let added: Vec<&str> = audits[0].vulnerabilities[before..]
            .iter()
            .map(|f| f.id.as_str())
            .collect();
        // 4.2.3 is named by the list already; 4.2.9 is not; 5.1.1 is another line.
        assert_eq!(added, ["security-release-4.2.9"]);
    }

    #[test]
    fn december_2015() {
        let p = project("services:\n  app:\n    x-runtime: node@4.2.2\n  web:\n    image: quay.io/oddnetworks/alpine-nodejs:4.2.3\n  db:\n    image: postgres:16\n  range:\n    x-runtime: node@4.2\n");
        let db = VulnDb::embedded();
        let audits = audit_project(&p, &db, None, None, &mut |s| {
            assert_eq!(s.to_string(), "node@4.2");
            Ok("4.2.6".parse().unwrap())
        });
        let names: Vec<&str> = audits.iter().map(|a| a.service.as_str()).collect();
        assert_eq!(names, ["app", "web", "range"]);
        let app = &audits[0];
        assert_eq!(app.origin, Origin::XRuntime);
        assert_eq!(app.end_of_life, Some(true));
        for cve in ["CVE-2015-8027", "CVE-2015-6764"] {
            let f = app.vulnerabilities.iter().find(|f| f.id == cve).unwrap();
            assert_eq!(f.fixed_in_line, Some("4.2.3".parse().unwrap()));
            assert_eq!(f.severity, Severity::Unknown);
        }
        assert!(app.upgrade_to.as_ref().unwrap() > &"4.2.3".parse::<Version>().unwrap());
        let web = &audits[1];
        assert_eq!(web.origin, Origin::ImageTag);
        assert!(!web.vulnerabilities.iter().any(|f| f.id == "CVE-2015-8027"));
        assert_eq!(audits[2].version, Some("4.2.6".parse().unwrap()));
        assert!(fails(&audits, Severity::Unknown));
    }

    #[test]
    fn thresholds() {
        let p = project("services:\n  app:\n    x-runtime: node@4.2.2\n");
        let audits = audit_project(&p, &VulnDb::embedded(), None, None, &mut |_| {
            Err("offline".into())
        });
        let worst = audits[0].worst().unwrap();
        assert!(fails(&audits, Severity::Unknown));
        assert!(fails(&audits, worst));
        if worst < Severity::Critical {
            assert!(!fails(&audits, Severity::Critical));
        }
        // A release the data cannot place: no findings, yet not clean.
        let unknown = audit_project(
            &project("services:\n  app:\n    x-runtime: node@99.1.0\n"),
            &VulnDb::embedded(),
            None,
            None,
            &mut |_| Err("offline".into()),
        );
        assert!(unknown[0].vulnerabilities.is_empty());
        assert!(!unknown[0].coverage.assessed);
        assert!(fails(&unknown, Severity::Unknown));
        assert!(!fails(&unknown, Severity::Low));
        let clean = project("services:\n  db:\n    image: postgres\n");
        assert!(!fails(
            &audit_project(&clean, &VulnDb::embedded(), None, None, &mut |_| Err(
                "x".into()
            )),
            Severity::Unknown
        ));
    }
}
