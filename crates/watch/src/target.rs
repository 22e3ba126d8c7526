//! Where actions are carried out: an engine, behind a small trait so this
//! crate knows none.

use crate::plan::{SyncFile, WatchAction};
use crate::rules::ExecHook;
use std::time::{Duration, Instant};

/// Any error an engine reports; shown to the user, never matched on.
pub type TargetError = Box<dyn std::error::Error + Send + Sync>;

/// A running project whose services watch acts on.
pub trait WatchTarget {
    /// Copy `files` into the service's running container (replacing what
    /// is there) and remove `deletions` (files or directories).
    fn sync(
        &mut self,
        service: &str,
        files: &[SyncFile],
        deletions: &[String],
    ) -> Result<(), TargetError>;
    /// Build the service's image again and recreate its container.
    fn rebuild(&mut self, service: &str) -> Result<(), TargetError>;
    fn restart(&mut self, service: &str) -> Result<(), TargetError>;
    fn exec(&mut self, service: &str, hook: &ExecHook) -> Result<(), TargetError>;
}

/// How one action went.
#[derive(Debug)]
pub struct Outcome {
    pub action: WatchAction,
    pub elapsed: Duration,
    pub result: Result<(), TargetError>,
}

/// Carry out `actions` in order. A failed action does not stop the rest
/// (the next save retries it anyway), except that a service whose sync
/// failed is neither restarted nor exec'd: that would run stale code.
pub fn apply(
    target: &mut dyn WatchTarget,
    actions: Vec<WatchAction>,
    mut report: impl FnMut(&Outcome),
) -> Vec<Outcome> {
    let mut failed_sync: Vec<String> = Vec::new();
    let mut outcomes = Vec::new();
    for action in actions {
        if failed_sync.iter().any(|s| s == action.service()) {
            continue;
        }
        let start = Instant::now();
        let result = match &action {
            WatchAction::Sync {
                service,
                files,
                deletions,
            } => {
                let r = target.sync(service, files, deletions);
                if r.is_err() {
                    failed_sync.push(service.clone());
                }
                r
            }
            WatchAction::Rebuild { service } => target.rebuild(service),
            WatchAction::Restart { service } => target.restart(service),
            WatchAction::Exec { service, exec } => target.exec(service, exec),
        };
        let outcome = Outcome {
            action,
            elapsed: start.elapsed(),
            result,
        };
        report(&outcome);
        outcomes.push(outcome);
    }
    outcomes
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fails every sync of `broken`; records what it was asked.
    struct Recorder {
        broken: &'static str,
        calls: Vec<String>,
    }

    impl WatchTarget for Recorder {
        fn sync(&mut self, service: &str, _: &[SyncFile], _: &[String]) -> Result<(), TargetError> {
            self.calls.push(format!("sync {service}"));
            if service == self.broken {
                return Err("container is gone".into());
            }
            Ok(())
        }
        fn rebuild(&mut self, service: &str) -> Result<(), TargetError> {
            self.calls.push(format!("rebuild {service}"));
            Ok(())
        }
        fn restart(&mut self, service: &str) -> Result<(), TargetError> {
            self.calls.push(format!("restart {service}"));
            Ok(())
        }
        fn exec(&mut self, service: &str, _: &ExecHook) -> Result<(), TargetError> {
            self.calls.push(format!("exec {service}"));
            Ok(())
        }
    }

    fn sync(service: &str) -> WatchAction {
        WatchAction::Sync {
            service: service.into(),
            files: Vec::new(),
            deletions: vec!["/app/x".into()],
        }
    }

    #[test]
    fn a_service_whose_sync_failed_is_not_restarted_onto_stale_code() {
        let mut target = Recorder {
            broken: "api",
            calls: Vec::new(),
        };
        let actions = vec![
            sync("api"),
            WatchAction::Restart {
                service: "api".into(),
            },
            sync("web"),
            WatchAction::Restart {
                service: "web".into(),
            },
        ];
        let mut reported = 0;
        let outcomes = apply(&mut target, actions, |_| reported += 1);
        assert_eq!(target.calls, ["sync api", "sync web", "restart web"]);
        assert_eq!(reported, 3);
        assert_eq!(
            outcomes[0].result.as_ref().unwrap_err().to_string(),
            "container is gone"
        );
        assert!(outcomes[1..].iter().all(|o| o.result.is_ok()));
    }
}
