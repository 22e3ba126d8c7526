//! Healthchecks with docker's semantics: which command, how often, and the
//! state machine from `starting` to `healthy` or `unhealthy`.
//!
//! The supervisor owns the clock and runs the probes; this module only
//! decides (pure, unit-tested).

use berth_oci::spec::ContainerConfig;
use serde_json::Value as Json;
use std::time::{Duration, Instant};

/// What a probe runs inside the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// `["CMD", args…]`: exec'd directly.
    Exec(Vec<String>),
    /// `["CMD-SHELL", cmd]` or a string: run by `/bin/sh -c`.
    Shell(String),
}

impl Probe {
    pub fn args(&self) -> Vec<String> {
        match self {
            Probe::Exec(a) => a.clone(),
            Probe::Shell(c) => vec!["/bin/sh".into(), "-c".into(), c.clone()],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    pub probe: Probe,
    pub interval: Duration,
    pub timeout: Duration,
    pub retries: u32,
    pub start_period: Duration,
    pub start_interval: Duration,
}

const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_RETRIES: u32 = 3;
const DEFAULT_START_INTERVAL: Duration = Duration::from_secs(5);

impl HealthCheck {
    /// The service's `healthcheck:` over the image's `HEALTHCHECK` (compose
    /// fields override the image's one by one). `None`: no check at all
    /// (none defined, `disable: true`, or `test: ["NONE"]`).
    pub fn resolve(
        service: Option<&Json>,
        image: &ContainerConfig,
    ) -> Result<Option<HealthCheck>, String> {
        let image = image.healthcheck.as_ref();
        if service
            .and_then(|s| s.get("disable"))
            .and_then(Json::as_bool)
            == Some(true)
        {
            return Ok(None);
        }
        let test = service
            .and_then(|s| s.get("test"))
            .or_else(|| image.and_then(|i| i.get("Test")));
        let Some(test) = test else {
            return Ok(None);
        };
        let probe = match test {
            Json::String(s) => Probe::Shell(s.clone()),
            Json::Array(items) => {
                let words: Vec<String> = items
                    .iter()
                    .map(|v| v.as_str().map(str::to_string))
                    .collect::<Option<_>>()
                    .ok_or("healthcheck.test: every item must be a string")?;
                match words.split_first() {
                    Some((kind, rest)) if kind == "NONE" => {
                        let _ = rest;
                        return Ok(None);
                    }
                    Some((kind, rest)) if kind == "CMD" && !rest.is_empty() => {
                        Probe::Exec(rest.to_vec())
                    }
                    Some((kind, rest)) if kind == "CMD-SHELL" && rest.len() == 1 => {
                        Probe::Shell(rest[0].clone())
                    }
                    _ => {
                        return Err(format!(
                            "healthcheck.test: expected [\"CMD\", …], [\"CMD-SHELL\", \"…\"] or [\"NONE\"], not {test}"
                        ))
                    }
                }
            }
            other => return Err(format!("healthcheck.test: invalid value {other}")),
        };
        let duration =
            |key: &str, image_key: &str, default: Duration| -> Result<Duration, String> {
                match service.and_then(|s| s.get(key)) {
                    Some(v) => {
                        let text = v
                            .as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| v.to_string());
                        berth_compose::units::parse_duration(&text)
                            .ok_or_else(|| format!("healthcheck.{key}: invalid duration {text:?}"))
                    }
                    // The image stores nanoseconds; 0 means "the default".
                    None => Ok(image
                        .and_then(|i| i.get(image_key))
                        .and_then(Json::as_u64)
                        .filter(|n| *n > 0)
                        .map(Duration::from_nanos)
                        .unwrap_or(default)),
                }
            };
        let retries = match service.and_then(|s| s.get("retries")) {
            Some(v) => v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| format!("healthcheck.retries: invalid value {v}"))?,
            None => image
                .and_then(|i| i.get("Retries"))
                .and_then(Json::as_u64)
                .filter(|n| *n > 0)
                .map(|n| n as u32)
                .unwrap_or(DEFAULT_RETRIES),
        };
        Ok(Some(HealthCheck {
            probe,
            interval: duration("interval", "Interval", DEFAULT_INTERVAL)?,
            timeout: duration("timeout", "Timeout", DEFAULT_TIMEOUT)?,
            retries: retries.max(1),
            start_period: duration("start_period", "StartPeriod", Duration::ZERO)?,
            start_interval: duration("start_interval", "StartInterval", DEFAULT_START_INTERVAL)?,
        }))
    }
}

/// A healthcheck's verdict: the same type every backend reports.
pub use berth_engine::backend::Health;

/// One container's health over time.
#[derive(Debug, Clone)]
pub struct Tracker {
    pub check: HealthCheck,
    pub status: Health,
    started: Instant,
    next: Instant,
    failing_streak: u32,
}

impl Tracker {
    pub fn new(check: HealthCheck, started: Instant) -> Tracker {
        // In the start period probes come every start_interval, after it
        // every interval; the first one comes one period after the start.
        let first = if check.start_period > Duration::ZERO {
            check.start_interval.min(check.interval)
        } else {
            check.interval
        };
        Tracker {
            next: started + first,
            check,
            status: Health::Starting,
            started,
            failing_streak: 0,
        }
    }

    pub fn due(&self, now: Instant) -> bool {
        now >= self.next
    }

    fn in_start_period(&self, at: Instant) -> bool {
        at < self.started + self.check.start_period
    }

    /// A probe that began at `began` ended with `passed`.
    pub fn record(&mut self, passed: bool, began: Instant, now: Instant) {
        if passed {
            self.failing_streak = 0;
            self.status = Health::Healthy;
        } else if self.in_start_period(began) && self.status != Health::Healthy {
            // Failures while starting do not count, as in docker.
        } else {
            self.failing_streak += 1;
            if self.failing_streak >= self.check.retries {
                self.status = Health::Unhealthy;
            }
        }
        let gap = if self.in_start_period(now) && self.status == Health::Starting {
            self.check.start_interval
        } else {
            self.check.interval
        };
        self.next = now + gap;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(service: Json) -> Option<HealthCheck> {
        HealthCheck::resolve(Some(&service), &ContainerConfig::default()).unwrap()
    }

    #[test]
    fn tests_parse_like_docker() {
        let c = check(
            json!({"test": ["CMD-SHELL", "curl -f localhost"], "interval": "1m30s", "retries": 2}),
        )
        .unwrap();
        assert_eq!(c.probe.args(), ["/bin/sh", "-c", "curl -f localhost"]);
        assert_eq!(c.interval, Duration::from_secs(90));
        assert_eq!(c.timeout, DEFAULT_TIMEOUT);
        assert_eq!(c.retries, 2);
        let c = check(json!({"test": ["CMD", "true"]})).unwrap();
        assert_eq!(c.probe, Probe::Exec(vec!["true".into()]));
        assert!(check(json!({"test": ["NONE"]})).is_none());
        assert!(check(json!({"disable": true, "test": ["CMD", "x"]})).is_none());
        assert!(
            HealthCheck::resolve(Some(&json!({"test": ["CURL", "x"]})), &Default::default())
                .is_err()
        );
        assert!(HealthCheck::resolve(
            Some(&json!({"test": ["CMD"], "interval": "x"})),
            &Default::default()
        )
        .is_err());
    }

    #[test]
    fn image_healthcheck_is_inherited_and_overridden() {
        let image = ContainerConfig {
            healthcheck: Some(
                json!({"Test": ["CMD", "probe"], "Interval": 2_000_000_000u64, "Retries": 5}),
            ),
            ..Default::default()
        };
        let c = HealthCheck::resolve(None, &image).unwrap().unwrap();
        assert_eq!(c.probe, Probe::Exec(vec!["probe".into()]));
        assert_eq!(c.interval, Duration::from_secs(2));
        assert_eq!(c.retries, 5);
        let c = HealthCheck::resolve(Some(&json!({"interval": "1s"})), &image)
            .unwrap()
            .unwrap();
        assert_eq!(c.interval, Duration::from_secs(1));
        assert_eq!(c.probe, Probe::Exec(vec!["probe".into()]));
        assert!(
            HealthCheck::resolve(Some(&json!({"disable": true})), &image)
                .unwrap()
                .is_none()
        );
        assert!(HealthCheck::resolve(None, &ContainerConfig::default())
            .unwrap()
            .is_none());
    }

    fn hc(retries: u32, start_period: u64) -> HealthCheck {
        HealthCheck {
            probe: Probe::Exec(vec!["x".into()]),
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(1),
            retries,
            start_period: Duration::from_secs(start_period),
            start_interval: Duration::from_secs(1),
        }
    }

    #[test]
    fn retries_failures_make_it_unhealthy_and_a_pass_heals() {
        let t0 = Instant::now();
        let mut t = Tracker::new(hc(3, 0), t0);
        assert_eq!(t.status, Health::Starting);
        assert!(!t.due(t0 + Duration::from_secs(9)));
        assert!(t.due(t0 + Duration::from_secs(10)));
        for i in 1..=2 {
            let at = t0 + Duration::from_secs(10 * i);
            t.record(false, at, at);
            assert_eq!(t.status, Health::Starting, "after {i} failures");
        }
        let at = t0 + Duration::from_secs(30);
        t.record(false, at, at);
        assert_eq!(t.status, Health::Unhealthy);
        t.record(true, at, at);
        assert_eq!(t.status, Health::Healthy);
        assert!(t.due(at + Duration::from_secs(10)));
    }

    #[test]
    fn start_period_failures_do_not_count_and_probe_faster() {
        let t0 = Instant::now();
        let mut t = Tracker::new(hc(1, 5), t0);
        assert!(t.due(t0 + Duration::from_secs(1)), "start_interval applies");
        for s in 1..5 {
            let at = t0 + Duration::from_secs(s);
            t.record(false, at, at);
            assert_eq!(t.status, Health::Starting);
            assert!(t.due(at + Duration::from_secs(1)));
        }
        let at = t0 + Duration::from_secs(6);
        t.record(false, at, at);
        assert_eq!(
            t.status,
            Health::Unhealthy,
            "after the start period it counts"
        );
        let mut t = Tracker::new(hc(1, 5), t0);
        let at = t0 + Duration::from_secs(1);
        t.record(true, at, at);
        assert_eq!(
            t.status,
            Health::Healthy,
            "a pass in the start period counts"
        );
        assert!(
            !t.due(at + Duration::from_secs(9)),
            "then the normal interval"
        );
    }
}
