//! Lifecycle hooks: `post_start` runs in the container once it has
//! started, `pre_stop` before it gets its stop signal. Each is a process
//! exec'd into the running container, as docker compose does, with the
//! hook's `user`, `privileged`, `working_dir` and `environment`; its output
//! goes where the container's does.

pub use berth_engine::hooks::{of, Hook};
use berth_sandbox::{ExecSpec, Sandbox, Stdio};
use std::path::Path;
use std::time::{Duration, Instant};

/// Run `hook` in the running container `id` and wait for it, appending its
/// output to `output`; past `limit` it is killed. Fails unless it exits 0.
pub fn run(
    sandbox: &Sandbox,
    id: &str,
    hook: &Hook,
    output: &Path,
    limit: Option<Duration>,
) -> Result<(), String> {
    let spec = ExecSpec {
        args: hook.command.clone(),
        env: hook.environment.clone(),
        cwd: hook.working_dir.clone(),
        user: hook.user.clone(),
        privileged: hook.privileged,
        stdout: Stdio::File(output.to_path_buf()),
        stderr: Stdio::File(output.to_path_buf()),
        ..ExecSpec::default()
    };
    let mut p = sandbox.exec(id, spec).map_err(|e| e.to_string())?;
    let deadline = limit.map(|l| Instant::now() + l);
    let status = loop {
        match p.try_wait().map_err(|e| e.to_string())? {
            Some(s) => break s,
            None if deadline.is_some_and(|d| Instant::now() >= d) => {
                let _ = p.kill(libc::SIGKILL);
                let _ = p.wait();
                return Err(format!(
                    "{:?} still ran after {}s and was killed",
                    hook.command[0],
                    limit.unwrap_or_default().as_secs_f64()
                ));
            }
            None => std::thread::sleep(Duration::from_millis(10)),
        }
    };
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "{:?} exited with code {}",
            hook.command[0],
            status.code()
        ))
    }
}
