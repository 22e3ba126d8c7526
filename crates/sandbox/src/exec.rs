//! Running another process inside a running container, as `docker exec`.
//!
//! Only the sandbox's state dir and the container's id are needed, not its
//! [`Container`](crate::Container) handle: `berth exec` runs this in its own
//! process (so the terminal and stdio are its own), a supervisor runs it for
//! healthchecks.
//!
//! The process is made by libcontainer's tenant builder: it joins the
//! namespaces of the container's init (through `/proc/<pid>/ns`) and its
//! cgroup, and reports a failure inside (a missing command) back through a
//! pipe. Left to itself it would rebuild the process from oci-spec's
//! defaults (root, `/`, `nofile` 1024, `noNewPrivileges`), so berth hands it
//! a complete process spec instead, made from the container's saved
//! `config.json`: its environment, working dir, user, capabilities, rlimits
//! and `noNewPrivileges`, with the exec's own overrides on top. The tenant
//! builder also drops the container's seccomp profile: berth's executor
//! loads it just before exec, as in the container's init (see
//! `EnvExecutor::seccomp`).
//!
//! ```text
//! <state>/bundles/<id>/exec-<pid>-<n>.json   the process spec, while building
//! <state>/bundles/<id>/exec-<pid>-<n>.pid    the process's pid, while building
//! ```

use crate::container::{
    create_error, io_err, open_stdin, open_stdio, reap_failed_create, runtime_error, runtime_lock,
    validate_id,
};
use crate::executor::EnvExecutor;
use crate::seccomp::SeccompFilter;
use crate::spec::{self, SpecError, Stdio};
use crate::{sys, user, ExitStatus, Sandbox, SandboxError};
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::ContainerStatus;
use libcontainer::oci_spec::runtime::Spec;
use libcontainer::syscall::syscall::SyscallType;
use serde_json::json;
use std::fs;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

/// A process to run in a running container.
#[derive(Debug, Default)]
pub struct ExecSpec {
    /// The command and its arguments; the command is searched in the
    /// container's `PATH`.
    pub args: Vec<String>,
    /// `KEY=VALUE` entries over the container's own environment; a bare
    /// `KEY` unsets.
    pub env: Vec<String>,
    /// Absolute; defaults to the container's working dir.
    pub cwd: Option<String>,
    /// `user[:group]`, names resolved in the container's own files; defaults
    /// to the container's user. `HOME` then follows the new user unless
    /// `env` sets it.
    pub user: Option<String>,
    pub stdin: Stdio,
    pub stdout: Stdio,
    pub stderr: Stdio,
    /// Make stdin (a terminal, such as a pty's slave) the process's
    /// controlling terminal.
    pub tty: bool,
    /// Every capability (as `docker exec --privileged`), whatever the
    /// container's own set. As in docker, the container's seccomp profile
    /// and `noNewPrivileges` still apply, and its mounts, devices and
    /// cgroup stay what they are.
    pub privileged: bool,
}

/// A process started by [`Sandbox::exec`]. It is a child of the calling
/// process: [`ExecProcess::wait`] reaps it, and a handle dropped before
/// that leaves a zombie until the caller exits.
#[derive(Debug)]
pub struct ExecProcess {
    id: String,
    pid: i32,
    pidfd: OwnedFd,
    status: Option<ExitStatus>,
}

/// Tells apart the files of concurrent execs from one process.
static EXEC_SEQ: AtomicU64 = AtomicU64::new(0);

impl Sandbox {
    /// Run `spec` inside the running container `id`, in its namespaces and
    /// cgroup, with its capabilities and rlimits. Returns once the command
    /// was exec'd; a command missing from the container fails with
    /// [`SandboxError::CommandNotFound`], a container that does not exist
    /// with [`SandboxError::NoSuchContainer`], one that is not running with
    /// [`SandboxError::State`].
    pub fn exec(&self, id: &str, spec: ExecSpec) -> Result<ExecProcess, SandboxError> {
        validate_id(id)?;
        let command = match spec.args.first() {
            Some(c) if !c.is_empty() => c.clone(),
            _ => return Err(SpecError::NoExecCommand.into()),
        };
        for a in &spec.args {
            spec::no_nul("an argument", a)?;
        }
        let (init, bundle) = self.running(id)?;
        let not = |message| SandboxError::State {
            id: id.to_string(),
            message,
        };
        let config = bundle.join("config.json");
        let oci = Spec::load(&config).map_err(|e| SandboxError::Io {
            path: config.clone(),
            source: io::Error::other(e.to_string()),
        })?;
        let process = oci
            .process()
            .as_ref()
            .ok_or_else(|| not("its config.json has no process"))?;

        let mut env_entries = process.env().clone().unwrap_or_default();
        let (uid, gid, additional_gids) = match spec.user.as_deref().filter(|u| !u.is_empty()) {
            Some(u) => {
                // The init's root is the container's, from any mount namespace.
                let root = PathBuf::from(format!("/proc/{init}/root"));
                let user = user::resolve(&root, u)?;
                env_entries.push(format!("HOME={}", user.home));
                (user.uid, user.gid, user.additional_gids)
            }
            None => (
                process.user().uid(),
                process.user().gid(),
                process.user().additional_gids().clone().unwrap_or_default(),
            ),
        };
        env_entries.extend(spec.env.iter().cloned());
        let env = spec::merge_env(&env_entries)?;
        let cwd = match spec.cwd.filter(|c| !c.is_empty()) {
            Some(c) => {
                spec::no_nul("the working directory", &c)?;
                if !c.starts_with('/') {
                    return Err(SpecError::RelativeWorkingDir(c).into());
                }
                c
            }
            None => process.cwd().to_string_lossy().into_owned(),
        };
        // The same filter, loaded the same way as in the container's init:
        // with the capabilities the spec holds only for loading it dropped
        // right after (see `seccomp::SeccompFilter`).
        let mut seccomp = SeccompFilter::of_spec(&oci).map_err(|e| SpecError::Seccomp(e.into()))?;
        let capabilities = if spec.privileged {
            // A privileged process holds CAP_SYS_ADMIN already, so the
            // filter loads without dropping anything after.
            seccomp = seccomp.map(SeccompFilter::keeping_capabilities);
            let all = spec::available_capabilities();
            json!({"bounding": all, "effective": all, "permitted": all})
        } else {
            json!(process.capabilities())
        };
        let mut process_json = json!({
            "terminal": false,
            "user": {"uid": uid, "gid": gid, "additionalGids": additional_gids},
            "args": spec.args,
            "env": env,
            "cwd": cwd,
            "capabilities": capabilities,
            "rlimits": process.rlimits().clone().unwrap_or_default(),
            "noNewPrivileges": process.no_new_privileges(),
        });
        // The container's OOM score, not this process's (which the exec'd
        // process would otherwise inherit).
        if let Some(adj) = process.oom_score_adj() {
            process_json["oomScoreAdj"] = json!(adj);
        }

        let stdin = open_stdin(spec.stdin)?;
        let stdout = open_stdio(spec.stdout, io::stdout().as_fd())?;
        let stderr = open_stdio(spec.stderr, io::stderr().as_fd())?;

        let name = format!(
            "exec-{}-{}",
            std::process::id(),
            EXEC_SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let process_file = bundle.join(format!("{name}.json"));
        let pid_file = bundle.join(format!("{name}.pid"));
        let bytes = serde_json::to_vec(&process_json).map_err(|e| SandboxError::Io {
            path: process_file.clone(),
            source: io::Error::other(e),
        })?;
        fs::write(&process_file, bytes).map_err(io_err(&process_file))?;

        let built = {
            let _guard = runtime_lock();
            sweep_notify_sockets(&self.runtime_root().join(id));
            let dumpable = sys::dumpable().unwrap_or(true);
            // See `Sandbox::create`: libcontainer leaves the process's OOM
            // score in this one.
            let oom_score_adj = sys::oom_score_adj().ok();
            let result = ContainerBuilder::new(id.to_string(), SyscallType::default())
                .with_root_path(self.runtime_root())
                .and_then(|b| b.with_pid_file(Some(&pid_file)))
                .map(|b| {
                    b.with_executor(EnvExecutor {
                        controlling_tty: spec.tty,
                        seccomp,
                    })
                    .with_stdin(stdin)
                    .with_stdout(stdout)
                    .with_stderr(stderr)
                    .as_tenant()
                    .with_process(Some(&process_file))
                    .with_detach(true)
                })
                .and_then(|b| b.build());
            // See `Sandbox::create`: the flag is process-wide.
            let _ = sys::set_dumpable(dumpable);
            if let Some(adj) = oom_score_adj.filter(|_| process.oom_score_adj().is_some()) {
                let _ = sys::set_oom_score_adj(adj);
            }
            if result.is_err() {
                reap_failed_create(&pid_file);
            }
            result
        };
        let _ = fs::remove_file(&process_file);
        let _ = fs::remove_file(&pid_file);
        let pid = built
            .map_err(|e| create_error(id, "exec", &command, &e))?
            .as_raw();
        // Our unreaped child: the pid cannot have been reused yet.
        let pidfd = sys::pidfd_open(pid).map_err(|e| {
            let _ = sys::kill(pid, libc::SIGKILL);
            sys::reap_blocking(pid);
            io_err(Path::new("pidfd"))(e)
        })?;
        // It lives in the init's PID namespace (see `reaper`).
        crate::reaper::register(init, pid);
        Ok(ExecProcess {
            id: id.to_string(),
            pid,
            pidfd,
            status: None,
        })
    }
}

impl Sandbox {
    /// A pseudo-terminal from the running container's own `/dev/pts`, as
    /// `docker exec -t` allocates: `(master, slave)`. Give the slave to
    /// [`Sandbox::exec`] as stdio with [`ExecSpec::tty`]; the process then
    /// sees it as `/dev/pts/N` (a pty of the host's would work as a
    /// terminal too, but has no name inside, so `tty` says "not a tty").
    pub fn open_pty(&self, id: &str) -> Result<(OwnedFd, OwnedFd), SandboxError> {
        validate_id(id)?;
        let (init, _) = self.running(id)?;
        // The init's root leads into the container's mount namespace.
        let ptmx = PathBuf::from(format!("/proc/{init}/root/dev/pts/ptmx"));
        sys::open_pty(&ptmx).map_err(io_err(&ptmx))
    }

    /// The init pid and bundle dir of the running container `id`.
    fn running(&self, id: &str) -> Result<(i32, PathBuf), SandboxError> {
        let state_dir = self.runtime_root().join(id);
        if !state_dir.is_dir() {
            return Err(SandboxError::NoSuchContainer(id.to_string()));
        }
        let container = libcontainer::container::Container::load(state_dir)
            .map_err(|e| runtime_error(id, "load the state of", &e))?;
        let not = |message| SandboxError::State {
            id: id.to_string(),
            message,
        };
        match container.status() {
            ContainerStatus::Running => {}
            ContainerStatus::Paused => return Err(not("it is paused")),
            _ => return Err(not("it is not running")),
        }
        let init = container.pid().ok_or_else(|| not("it is not running"))?;
        Ok((init.as_raw(), container.bundle().to_path_buf()))
    }
}

/// libcontainer leaves the unix socket of every exec in the container's
/// state dir. A socket is only used while its exec starts, which takes
/// milliseconds; one a minute old is left over (from this process or
/// another one), and removing it bounds what a healthcheck every few
/// seconds would pile up.
fn sweep_notify_sockets(state_dir: &Path) {
    let Ok(entries) = fs::read_dir(state_dir) else {
        return;
    };
    let cutoff = SystemTime::now() - Duration::from_secs(60);
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if !(name.starts_with("tenant-notify-") && name.ends_with(".sock")) {
            continue;
        }
        if e.metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| t < cutoff)
        {
            let _ = fs::remove_file(e.path());
        }
    }
}

impl ExecProcess {
    /// Its pid in the host's pid namespace. Stays valid (never reused) until
    /// [`ExecProcess::wait`] has reaped it.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// A pidfd of the process: readable (in `poll`/`epoll`) once it exited.
    pub fn pidfd(&self) -> BorrowedFd<'_> {
        self.pidfd.as_fd()
    }

    /// Block until it exits; reaps it. Once reaped, returns the same status.
    pub fn wait(&mut self) -> Result<ExitStatus, SandboxError> {
        self.reap(true)?.ok_or_else(|| SandboxError::State {
            id: self.id.clone(),
            message: "the exec'd process still runs after a blocking wait",
        })
    }

    /// The exit status if it has exited (reaping it), else `None`.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>, SandboxError> {
        self.reap(false)
    }

    fn reap(&mut self, block: bool) -> Result<Option<ExitStatus>, SandboxError> {
        if let Some(s) = self.status {
            return Ok(Some(s));
        }
        if let Some(s) = crate::reaper::take(self.pid) {
            self.status = Some(s);
            return Ok(self.status);
        }
        let reaped = match sys::wait_pidfd(&self.pidfd, block) {
            Ok(r) => r.map(ExitStatus::from),
            // Reaped meanwhile on its behalf, by a wait on its container.
            Err(e) if e.raw_os_error() == Some(libc::ECHILD) => crate::reaper::take(self.pid)
                .map(Some)
                .ok_or_else(|| exec_wait_error(&self.id, e))?,
            Err(e) => return Err(exec_wait_error(&self.id, e)),
        };
        self.status = reaped;
        if self.status.is_some() {
            crate::reaper::forget(self.pid);
        }
        Ok(self.status)
    }

    /// Send `signal` to the process. A no-op once it exited.
    pub fn kill(&self, signal: i32) -> Result<(), SandboxError> {
        if self.status.is_some() {
            return Ok(());
        }
        match sys::pidfd_send_signal(&self.pidfd, signal) {
            Ok(()) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
            Err(e) => Err(SandboxError::Runtime {
                id: self.id.clone(),
                op: "kill an exec'd process",
                message: e.to_string(),
            }),
        }
    }
}

fn exec_wait_error(id: &str, e: io::Error) -> SandboxError {
    SandboxError::Runtime {
        id: id.to_string(),
        op: "wait for an exec'd process",
        message: e.to_string(),
    }
}
