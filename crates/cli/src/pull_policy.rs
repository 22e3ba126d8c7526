//! compose's `pull_policy` per service, and `up --pull` over it: when an
//! image is pulled (or built) before `up` runs it.

use anyhow::{bail, Context, Result};
use berth_compose::model::Service;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What to do about one service's image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Pull (or build) it every time.
    Always,
    /// Only when it is not in the store (compose's default).
    Missing,
    /// Never: a missing image is an error.
    Never,
    /// Build it every time (a service with a `build:` section).
    Build,
    /// Pull it when the last pull is older than this (`daily`, `weekly`,
    /// `every_12h`).
    Every(Duration),
}

/// The service's own `pull_policy`, as docker compose reads it.
pub fn of_service(name: &str, svc: &Service) -> Result<Policy> {
    let Some(v) = svc.extra.get("pull_policy") else {
        return Ok(Policy::Missing);
    };
    let key = format!("services.{name}.pull_policy");
    let text = v
        .as_str()
        .with_context(|| format!("{key}: must be a string"))?;
    Ok(match text {
        "always" => Policy::Always,
        "missing" | "if_not_present" => Policy::Missing,
        "never" => Policy::Never,
        "build" if svc.build.is_some() => Policy::Build,
        "build" => bail!("{key}: build, but the service has no build section"),
        "daily" => Policy::Every(Duration::from_secs(24 * 3600)),
        "weekly" => Policy::Every(Duration::from_secs(7 * 24 * 3600)),
        other => match other
            .strip_prefix("every_")
            .and_then(berth_compose::units::parse_duration)
        {
            Some(d) if !d.is_zero() => Policy::Every(d),
            _ => bail!(
                "{key}: {other:?} is not one of always, missing, never, build, daily, weekly, every_<duration>"
            ),
        },
    })
}

/// When each image was last pulled, kept in the state directory so that
/// `daily`/`weekly`/`every_*` survive between runs.
pub struct PullTimes {
    path: PathBuf,
    times: BTreeMap<String, u64>,
}

impl PullTimes {
    pub fn open(state: &Path) -> PullTimes {
        let path = state.join("pull-times.json");
        let times = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        PullTimes { path, times }
    }

    /// Whether `image`, pulled last at the recorded time, is due under `every`.
    pub fn due(&self, image: &str, every: Duration) -> bool {
        let now = now_secs();
        self.times
            .get(image)
            .is_none_or(|&t| now.saturating_sub(t) >= every.as_secs())
    }

    pub fn record(&mut self, image: &str) -> Result<()> {
        self.times.insert(image.to_string(), now_secs());
        let tmp = self.path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&self.times)?)
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &self.path)
            .with_context(|| format!("writing {}", self.path.display()))?;
        Ok(())
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(json: serde_json::Value) -> Service {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn policies_read_as_compose_names_them() {
        let p = |v: &str| of_service("web", &svc(serde_json::json!({"pull_policy": v})));
        assert_eq!(p("always").unwrap(), Policy::Always);
        assert_eq!(p("if_not_present").unwrap(), Policy::Missing);
        assert_eq!(p("never").unwrap(), Policy::Never);
        assert_eq!(
            p("daily").unwrap(),
            Policy::Every(Duration::from_secs(86400))
        );
        assert_eq!(
            p("every_12h").unwrap(),
            Policy::Every(Duration::from_secs(12 * 3600))
        );
        let e = p("sometimes").unwrap_err().to_string();
        assert!(e.starts_with("services.web.pull_policy:"), "{e}");
        let e = p("build").unwrap_err().to_string();
        assert!(e.contains("no build section"), "{e}");
        assert_eq!(
            of_service("web", &svc(serde_json::json!({}))).unwrap(),
            Policy::Missing
        );
    }

    #[test]
    fn pull_times_say_when_a_pull_is_due() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = PullTimes::open(dir.path());
        assert!(t.due("a:1", Duration::from_secs(60)));
        t.record("a:1").unwrap();
        let t = PullTimes::open(dir.path());
        assert!(!t.due("a:1", Duration::from_secs(60)));
        assert!(t.due("a:1", Duration::ZERO));
    }
}
