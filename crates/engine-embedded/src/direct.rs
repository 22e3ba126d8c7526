//! `exec`, `cp` and `top` reach the container directly (its pid, its
//! sandbox id) from the command's own process: no round trip to the
//! supervisor, and the command keeps its terminal.

use berth_engine::backend::{
    BackendError, Container, Context, CopyRequest, ExecRequest, HostEnd, Process, Result,
};
use berth_engine::{bail, terminal};
use berth_oci::store::state_dir;
use berth_sandbox::{ExecSpec, Sandbox, Stdio};
use std::fs;
use std::path::Path;

pub(crate) fn exec(backend: &str, request: &ExecRequest) -> Result<i32> {
    let container = &request.container;
    // The runtime reports a missing working dir only as a failed syscall.
    if let (Some(dir), Some(pid)) = (&request.workdir, container.pid) {
        if !Path::new(&format!("/proc/{pid}/root{dir}")).is_dir() {
            bail!(
                NotFound,
                "working directory {dir} does not exist in container {}",
                container.name
            );
        }
    }
    if request.privileged {
        return Err(BackendError::unsupported(backend, "exec --privileged"));
    }
    let sandbox = Sandbox::open(state_dir().join("sandbox")).context("the sandbox")?;
    let mut spec = ExecSpec {
        args: request.command.clone(),
        env: request.env.clone(),
        cwd: request.workdir.clone(),
        user: request.user.clone(),
        ..ExecSpec::default()
    };
    let named = |e: berth_sandbox::SandboxError| {
        BackendError::engine(e.to_string().replace(&container.id, &container.name))
    };
    if request.detach {
        spec.stdin = Stdio::Null;
        sandbox.exec(&container.id, spec).map_err(named)?;
        return Ok(0);
    }
    if !request.tty {
        spec.stdin = Stdio::Inherit;
        spec.stdout = Stdio::Inherit;
        spec.stderr = Stdio::Inherit;
        let mut p = sandbox.exec(&container.id, spec).map_err(named)?;
        return Ok(p.wait().map_err(named)?.code());
    }
    let (master, slave) = sandbox.open_pty(&container.id).map_err(named)?;
    terminal::copy_window_size(&master);
    spec.stdin = Stdio::Fd(slave.try_clone()?);
    spec.stdout = Stdio::Fd(slave.try_clone()?);
    spec.stderr = Stdio::Fd(slave);
    spec.tty = true;
    let mut p = sandbox.exec(&container.id, spec).map_err(named)?;
    let raw = terminal::RawMode::enter();
    terminal::pump(master);
    let status = p.wait().map_err(named)?;
    drop(raw);
    Ok(status.code())
}

pub(crate) fn copy(request: &CopyRequest) -> Result<()> {
    let Some(pid) = request.container.pid else {
        bail!(
            NotRunning,
            "container {} is not running",
            request.container.name
        );
    };
    let inside = request.path.as_str();
    let result = match (&request.host, request.out) {
        (HostEnd::Stdio, true) => {
            berth_sandbox::cp::copy_out_tar(pid, inside, std::io::stdout().lock())
        }
        (HostEnd::Path(p), true) => berth_sandbox::cp::copy_out(pid, inside, p),
        (HostEnd::Stdio, false) => {
            berth_sandbox::cp::copy_in_tar(pid, std::io::stdin().lock(), inside)
        }
        (HostEnd::Path(p), false) => berth_sandbox::cp::copy_in(pid, p, inside),
    };
    match result {
        // A reader that stopped reading (`| head`) ends the copy quietly.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(BackendError::engine(e)),
        Ok(()) => Ok(()),
    }
}

pub(crate) fn top(container: &Container) -> Vec<Process> {
    let mut out = Vec::new();
    for pid in cgroup_pids(&container.id) {
        let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let field = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next())
                .unwrap_or("?")
                .to_string()
        };
        let command = fs::read(format!("/proc/{pid}/cmdline"))
            .map(|b| {
                String::from_utf8_lossy(&b)
                    .trim_end_matches('\0')
                    .replace('\0', " ")
            })
            .unwrap_or_default();
        out.push(Process {
            uid: field("Uid:"),
            pid,
            ppid: field("PPid:").parse().unwrap_or(0),
            command,
        });
    }
    out
}

/// Members of container `id`'s cgroup, wherever this host keeps it (v1:
/// one hierarchy per controller; v2: the unified tree) and wherever the
/// container's is (`/berth/<id>`, or under its `cgroup_parent`).
fn cgroup_pids(id: &str) -> Vec<u32> {
    let cgroup = Sandbox::open(state_dir().join("sandbox"))
        .and_then(|s| s.cgroup_path(id))
        .unwrap_or_else(|_| format!("/berth/{id}"));
    for base in [
        "/sys/fs/cgroup/pids",
        "/sys/fs/cgroup/memory",
        "/sys/fs/cgroup/unified",
        "/sys/fs/cgroup",
    ] {
        let path = format!("{base}{cgroup}/cgroup.procs");
        if let Ok(text) = fs::read_to_string(&path) {
            let mut pids: Vec<u32> = text.lines().filter_map(|l| l.trim().parse().ok()).collect();
            if !pids.is_empty() {
                pids.sort_unstable();
                return pids;
            }
        }
    }
    Vec::new()
}
