//! `restart:` policies and docker's back-off between restarts.

use std::time::Duration;

/// A service's `restart:` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    No,
    Always,
    UnlessStopped,
    /// `on-failure[:max-retries]`; `None` retries forever.
    OnFailure(Option<u32>),
}

impl RestartPolicy {
    /// Parses compose's `restart:`; an unknown value is an error naming it.
    pub fn parse(value: Option<&str>) -> Result<RestartPolicy, String> {
        let Some(v) = value else {
            return Ok(RestartPolicy::No);
        };
        match v {
            "" | "no" => Ok(RestartPolicy::No),
            "always" => Ok(RestartPolicy::Always),
            "unless-stopped" => Ok(RestartPolicy::UnlessStopped),
            "on-failure" => Ok(RestartPolicy::OnFailure(None)),
            _ => match v.strip_prefix("on-failure:").map(str::parse::<u32>) {
                Some(Ok(n)) => Ok(RestartPolicy::OnFailure(Some(n))),
                _ => Err(format!(
                    "restart {v:?} is not one of no, always, unless-stopped, on-failure[:N]"
                )),
            },
        }
    }

    /// The policy of a service: `restart:`, else `deploy.restart_policy`
    /// as docker compose maps it outside swarm (`condition: any` → always,
    /// `on-failure` with `max_attempts`, `none` → no). `delay` and `window`
    /// have no meaning outside swarm and are refused by name.
    pub fn of_service(
        restart: Option<&str>,
        deploy: Option<&serde_json::Value>,
    ) -> Result<RestartPolicy, String> {
        let policy = deploy.and_then(|d| d.get("restart_policy"));
        let (Some(policy), None) = (policy, restart) else {
            return RestartPolicy::parse(restart);
        };
        for key in ["delay", "window"] {
            if policy.get(key).is_some_and(|v| !v.is_null()) {
                return Err(format!(
                    "deploy.restart_policy.{key}: only Docker Swarm spaces restarts this way (berth backs off as docker does)"
                ));
            }
        }
        let max = match policy.get("max_attempts") {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => Some(
                v.as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or("deploy.restart_policy.max_attempts: not a number")?,
            ),
        };
        match policy.get("condition").and_then(|c| c.as_str()).unwrap_or("any") {
            "none" => Ok(RestartPolicy::No),
            "on-failure" => Ok(RestartPolicy::OnFailure(max)),
            // Outside swarm `any` restarts for ever, as `always` does;
            // docker compose drops max_attempts here too, so refuse it.
            "any" if max.is_some() => Err(
                "deploy.restart_policy.max_attempts: with condition any it has no meaning outside Docker Swarm"
                    .to_string(),
            ),
            "any" => Ok(RestartPolicy::Always),
            other => Err(format!(
                "deploy.restart_policy.condition {other:?} is not one of none, on-failure, any"
            )),
        }
    }

    /// Whether a container that exited with `code` after `restarts` restarts
    /// is started again. An explicit stop never gets here: the engine only
    /// asks about containers that exited on their own.
    pub fn restarts(self, code: i32, restarts: u32) -> bool {
        match self {
            RestartPolicy::No => false,
            RestartPolicy::Always | RestartPolicy::UnlessStopped => true,
            RestartPolicy::OnFailure(max) => code != 0 && max.is_none_or(|m| restarts < m),
        }
    }
}

/// Docker's back-off: 100 ms doubling up to a minute; a container that ran
/// for 10 s or more counts as healthy again and starts over at 100 ms.
pub fn backoff(previous: Option<Duration>, ran_for: Duration) -> Duration {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(60);
    match previous {
        Some(p) if ran_for < Duration::from_secs(10) => (p * 2).min(MAX),
        _ => FIRST,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse_like_compose() {
        assert_eq!(RestartPolicy::parse(None), Ok(RestartPolicy::No));
        assert_eq!(RestartPolicy::parse(Some("no")), Ok(RestartPolicy::No));
        assert_eq!(
            RestartPolicy::parse(Some("on-failure:3")),
            Ok(RestartPolicy::OnFailure(Some(3)))
        );
        assert!(RestartPolicy::parse(Some("sometimes"))
            .unwrap_err()
            .contains("\"sometimes\""));
        assert!(RestartPolicy::parse(Some("on-failure:x")).is_err());
    }

    #[test]
    fn deploy_restart_policy_maps_as_compose_does() {
        use serde_json::json;
        let of = |d: serde_json::Value| RestartPolicy::of_service(None, Some(&d));
        assert_eq!(
            of(json!({"restart_policy": {"condition": "on-failure", "max_attempts": 3}})),
            Ok(RestartPolicy::OnFailure(Some(3)))
        );
        assert_eq!(of(json!({"restart_policy": {}})), Ok(RestartPolicy::Always));
        assert_eq!(
            of(json!({"restart_policy": {"condition": "none"}})),
            Ok(RestartPolicy::No)
        );
        assert!(of(json!({"restart_policy": {"delay": "5s"}}))
            .unwrap_err()
            .starts_with("deploy.restart_policy.delay"));
        // `restart:` wins, as in compose.
        assert_eq!(
            RestartPolicy::of_service(
                Some("no"),
                Some(&json!({"restart_policy": {"condition": "any"}}))
            ),
            Ok(RestartPolicy::No)
        );
    }

    #[test]
    fn which_exits_restart() {
        assert!(!RestartPolicy::No.restarts(1, 0));
        assert!(RestartPolicy::Always.restarts(0, 100));
        assert!(RestartPolicy::UnlessStopped.restarts(0, 0));
        assert!(!RestartPolicy::OnFailure(None).restarts(0, 0));
        assert!(RestartPolicy::OnFailure(None).restarts(2, 50));
        assert!(RestartPolicy::OnFailure(Some(2)).restarts(1, 1));
        assert!(!RestartPolicy::OnFailure(Some(2)).restarts(1, 2));
    }

    #[test]
    fn backoff_doubles_caps_and_resets() {
        let short = Duration::from_secs(1);
        assert_eq!(backoff(None, short), Duration::from_millis(100));
        assert_eq!(
            backoff(Some(Duration::from_millis(100)), short),
            Duration::from_millis(200)
        );
        assert_eq!(
            backoff(Some(Duration::from_secs(50)), short),
            Duration::from_secs(60)
        );
        assert_eq!(
            backoff(Some(Duration::from_secs(50)), Duration::from_secs(11)),
            Duration::from_millis(100)
        );
    }
}
