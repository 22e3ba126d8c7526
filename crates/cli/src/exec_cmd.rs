//! `berth exec`: run a command in a running service container, from this
//! process (stdio and the terminal are ours), with a pseudo-terminal from
//! the container's own /dev/pts when attached to one.

use crate::options::load_options;
use crate::supervisor::{project_dir, read_state};
use crate::GlobalArgs;
use anyhow::{bail, Context, Result};
use berth_oci::store::state_dir;
use berth_sandbox::{ExecSpec, Sandbox, Stdio};
use clap::Args;
use std::io::{IsTerminal, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct ExecArgs {
    /// Run the command in the background
    #[arg(short = 'd', long)]
    detach: bool,
    /// Don't allocate a pseudo-terminal (the default when not on one)
    #[arg(short = 'T', long = "no-TTY")]
    no_tty: bool,
    /// Run as this user (name or uid[:gid])
    #[arg(short = 'u', long)]
    user: Option<String>,
    /// Working directory inside the container
    #[arg(short = 'w', long)]
    workdir: Option<String>,
    /// Set an environment variable (KEY=VALUE, or KEY to pass this one's)
    #[arg(short = 'e', long = "env", value_name = "KEY[=VALUE]")]
    env: Vec<String>,
    /// Which container of a scaled service (1-based)
    #[arg(long, default_value_t = 1)]
    index: usize,
    service: String,
    /// The command and its arguments
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// `-e KEY` takes the value from this process's environment, as docker does.
pub fn env_entries(entries: &[String]) -> Vec<String> {
    entries
        .iter()
        .filter_map(|e| match e.split_once('=') {
            Some(_) => Some(e.clone()),
            None => std::env::var(e).ok().map(|v| format!("{e}={v}")),
        })
        .collect()
}

pub fn exec(global: &GlobalArgs, args: ExecArgs) -> Result<ExitCode> {
    let loaded = berth_compose::load(&load_options(global)?)?;
    let project = loaded.project.name.clone();
    if !loaded.project.services.contains_key(&args.service) {
        bail!("no such service: {}", args.service);
    }
    crate::supervisor::take_over_if_orphaned(&project)?;
    let state = read_state(&project_dir(&project))
        .with_context(|| format!("project {project} is not running"))?;
    let mut candidates: Vec<_> = state
        .containers
        .iter()
        .filter(|c| c.service == args.service && c.state == "running")
        .collect();
    candidates.sort_by(|a, b| a.name.cmp(&b.name));
    let Some(container) = candidates.get(args.index.saturating_sub(1)) else {
        bail!(
            "service {:?} has no running container #{}",
            args.service,
            args.index
        );
    };
    // The runtime reports a missing working dir only as a failed syscall.
    if let (Some(dir), Some(pid)) = (&args.workdir, container.pid) {
        if !std::path::Path::new(&format!("/proc/{pid}/root{dir}")).is_dir() {
            bail!(
                "working directory {dir} does not exist in container {}",
                container.name
            );
        }
    }
    let sandbox = Sandbox::open(state_dir().join("sandbox"))?;
    let tty = !args.no_tty
        && !args.detach
        && std::io::stdin().is_terminal()
        && std::io::stdout().is_terminal();
    let mut spec = ExecSpec {
        args: args.command.clone(),
        env: env_entries(&args.env),
        cwd: args.workdir.clone(),
        user: args.user.clone(),
        ..ExecSpec::default()
    };
    let named = |e: berth_sandbox::SandboxError| {
        anyhow::anyhow!("{}", e.to_string().replace(&container.id, &container.name))
    };
    if args.detach {
        spec.stdin = Stdio::Null;
        sandbox.exec(&container.id, spec).map_err(named)?;
        return Ok(ExitCode::SUCCESS);
    }
    if !tty {
        spec.stdin = Stdio::Inherit;
        spec.stdout = Stdio::Inherit;
        spec.stderr = Stdio::Inherit;
        let mut p = sandbox.exec(&container.id, spec).map_err(named)?;
        let status = p.wait()?;
        return Ok(ExitCode::from(status.code().clamp(0, 255) as u8));
    }
    let (master, slave) = sandbox.open_pty(&container.id).map_err(named)?;
    copy_window_size(&master);
    spec.stdin = Stdio::Fd(slave.try_clone()?);
    spec.stdout = Stdio::Fd(slave.try_clone()?);
    spec.stderr = Stdio::Fd(slave);
    spec.tty = true;
    let mut p = sandbox.exec(&container.id, spec).map_err(named)?;
    let raw = RawMode::enter();
    pump(master);
    let status = p.wait()?;
    drop(raw);
    Ok(ExitCode::from(status.code().clamp(0, 255) as u8))
}

/// Terminal → pty on a thread, pty → terminal here until the pty closes
/// (the process and everything holding its slave ended).
pub fn pump(master: OwnedFd) {
    let mut to_pty = std::fs::File::from(master);
    let mut from_pty = match to_pty.try_clone() {
        Ok(f) => f,
        Err(_) => return,
    };
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let mut stdin = std::io::stdin();
        while let Ok(n) = stdin.read(&mut buf) {
            if n == 0 || to_pty.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    });
    let mut buf = [0u8; 4096];
    let mut out = std::io::stdout();
    // EIO once the slave side is gone: the normal end of a pty.
    while let Ok(n) = from_pty.read(&mut buf) {
        if n == 0 || out.write_all(&buf[..n]).is_err() {
            break;
        }
        let _ = out.flush();
    }
}

/// The pty gets the size of our terminal.
pub fn copy_window_size(master: &OwnedFd) {
    // SAFETY: winsize is plain data; ioctls on fds we own or stdin.
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        if libc::ioctl(libc::STDIN_FILENO, libc::TIOCGWINSZ, &mut ws) == 0 {
            libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws);
        }
    }
}

/// Our terminal in raw mode (keys go to the container as typed) until dropped.
pub struct RawMode(Option<libc::termios>);

impl RawMode {
    pub fn enter() -> RawMode {
        // SAFETY: termios is plain data; tcgetattr/tcsetattr on stdin.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(libc::STDIN_FILENO, &mut t) != 0 {
                return RawMode(None);
            }
            let saved = t;
            libc::cfmakeraw(&mut t);
            libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &t);
            RawMode(Some(saved))
        }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(t) = &self.0 {
            // SAFETY: restoring the settings read in `enter`.
            unsafe {
                libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, t);
            }
        }
    }
}
