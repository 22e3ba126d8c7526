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
