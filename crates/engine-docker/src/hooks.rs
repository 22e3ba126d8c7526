//! `post_start` and `pre_stop` on the Docker Engine: each hook is an exec
//! in the container, with its `user`, `privileged`, `working_dir` and
//! `environment`, as docker compose runs them. A hook that fails fails the
//! command (`up`, `start`) for `post_start`; a `pre_stop` that fails or
//! overruns the stop grace period is reported and the stop goes on.

use crate::observe::labels_of;
use crate::{api_err, labels, DockerBackend};
use berth_compose::model::Service;
use berth_engine::hooks::{self, Hook};
use berth_engine::BackendError;
use bollard::exec::StartExecResults;
use bollard::models::{ContainerInspectResponse, ExecConfig};
use futures_util::StreamExt;
use std::time::Duration;

/// The last bytes of a failed hook's output kept for its error line.
const TAIL: usize = 400;

/// The hooks a container carries in its [`labels::HOOKS`] label, as a
/// service with only those keys.
pub(crate) fn of_container(c: &ContainerInspectResponse) -> Option<Service> {
    let text = labels_of(c).get(labels::HOOKS)?.clone();
    serde_json::from_str(&text).ok()
}

impl DockerBackend {
    /// Run `svc`'s `key` hooks in `container`, in order; the first that
    /// fails ends the run with a line naming it (`services.app.post_start[0]: …`).
    pub(crate) async fn run_hooks(
        &self,
        svc: &Service,
        service: &str,
        key: &str,
        container: &str,
        limit: Option<Duration>,
    ) -> crate::Result<()> {
        let list = hooks::of(svc, key)
            .map_err(|e| BackendError::invalid(format!("services.{service}.{e}")))?;
        for (i, hook) in list.iter().enumerate() {
            let ran = match limit {
                Some(l) => tokio::time::timeout(l, self.run_hook(container, hook))
                    .await
                    .unwrap_or_else(|_| {
                        Err(format!(
                            "{:?} still ran after {}s",
                            hook.command[0],
                            l.as_secs_f64()
                        ))
                    }),
                None => self.run_hook(container, hook).await,
            };
            ran.map_err(|e| BackendError::engine(format!("services.{service}.{key}[{i}]: {e}")))?;
        }
        Ok(())
    }

    async fn run_hook(&self, container: &str, hook: &Hook) -> Result<(), String> {
        let exec = self
            .docker
            .create_exec(
                container,
                ExecConfig {
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    cmd: Some(hook.command.clone()),
                    env: (!hook.environment.is_empty()).then(|| hook.environment.clone()),
                    privileged: Some(hook.privileged),
                    user: hook.user.clone(),
                    working_dir: hook.working_dir.clone(),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| api_err("creating the hook's exec", e).message)?;
        let mut tail = Vec::new();
        if let StartExecResults::Attached { mut output, .. } = self
            .docker
            .start_exec(&exec.id, None)
            .await
            .map_err(|e| api_err("starting the hook", e).message)?
        {
            while let Some(chunk) = output.next().await {
                let chunk = chunk.map_err(|e| api_err("reading the hook's output", e).message)?;
                tail.extend_from_slice(&chunk.into_bytes());
                if tail.len() > TAIL {
                    tail.drain(..tail.len() - TAIL);
                }
            }
        }
        let code = self
            .docker
            .inspect_exec(&exec.id)
            .await
            .map_err(|e| api_err("reading the hook's exit code", e).message)?
            .exit_code
            .unwrap_or(0);
        if code == 0 {
            return Ok(());
        }
        let said = String::from_utf8_lossy(&tail);
        let said = said.trim();
        Err(if said.is_empty() {
            format!("{:?} exited with code {code}", hook.command[0])
        } else {
            format!(
                "{:?} exited with code {code}: {}",
                hook.command[0],
                said.lines().last().unwrap_or_default()
            )
        })
    }

    /// `pre_stop` before a stop: bounded by the grace period, and a failure
    /// does not keep the container from stopping (it is reported).
    pub(crate) async fn pre_stop(
        &self,
        svc: Option<&Service>,
        service: &str,
        container: &str,
        timeout: i32,
        progress: berth_engine::backend::Progress<'_>,
    ) {
        let Some(svc) = svc else { return };
        let limit = Duration::from_secs(u64::try_from(timeout.max(1)).unwrap_or(1));
        if let Err(e) = self
            .run_hooks(svc, service, "pre_stop", container, Some(limit))
            .await
        {
            progress(&format!("warning: {e}"));
        }
    }
}
