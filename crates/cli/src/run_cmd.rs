//! `berth run`: a one-off container of a service. The supervisor creates
//! it (so `ps` lists it and `down` removes it); this process hands over its
//! stdin, stdout and stderr (or a pseudo-terminal) through the socket and
//! waits for the exit code.

use crate::exec_cmd::{copy_window_size, env_entries, pump, RawMode};
use crate::options::load_options;
use crate::supervisor::{connect, LoadRequest, Reply, Request};
use crate::GlobalArgs;
use anyhow::{bail, Context, Result};
use clap::Args;
use std::io::{BufRead, BufReader, IsTerminal};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Run in the background and print the container's name
    #[arg(short = 'd', long)]
    detach: bool,
    /// Remove the container when it exits
    #[arg(long)]
    rm: bool,
    /// Set an environment variable (KEY=VALUE, or KEY to pass this one's)
    #[arg(short = 'e', long = "env", value_name = "KEY[=VALUE]")]
    env: Vec<String>,
    /// Override the image's entrypoint (a command line, split like a shell would)
    #[arg(long)]
    entrypoint: Option<String>,
    /// Publish a port (compose short syntax: [IP:]HOST:CONTAINER[/PROTO])
    #[arg(short = 'p', long = "publish")]
    publish: Vec<String>,
    /// Publish the service's own ports too
    #[arg(long)]
    service_ports: bool,
    /// Don't start the services it depends on
    #[arg(long)]
    no_deps: bool,
    /// Don't allocate a pseudo-terminal (the default when not on one)
    #[arg(short = 'T', long = "no-TTY")]
    no_tty: bool,
    /// Name the container
    #[arg(long)]
    name: Option<String>,
    /// Run as this user
    #[arg(short = 'u', long)]
    user: Option<String>,
    /// Working directory inside the container
    #[arg(short = 'w', long)]
    workdir: Option<String>,
    /// Build the image first
    #[arg(long)]
    build: bool,
    service: String,
    /// Command and arguments (default: the service's)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

pub fn run(global: &GlobalArgs, args: RunArgs) -> Result<ExitCode> {
    let options = load_options(global)?;
    let loaded = berth_compose::load(&options)?;
    let project = loaded.project.name.clone();
    if !loaded.project.services.contains_key(&args.service) {
        bail!("no such service: {}", args.service);
    }
    crate::up_cmd::ensure_images(&loaded, args.build, false, None)?;
    crate::up_cmd::runtime_mounts(&loaded, true)?;
    let entrypoint = args
        .entrypoint
        .as_deref()
        .map(|e| {
            berth_compose::units::split_shell_words(e)
                .map_err(|m| anyhow::anyhow!("--entrypoint: {m}"))
        })
        .transpose()?;
    let request = Request::Run {
        load: Box::new(LoadRequest::from(&options)),
        service: args.service.clone(),
        command: (!args.command.is_empty()).then(|| args.command.clone()),
        entrypoint,
        env: env_entries(&args.env),
        user: args.user.clone(),
        workdir: args.workdir.clone(),
        service_ports: args.service_ports,
        ports: args.publish.clone(),
        name: args.name.clone(),
        no_deps: args.no_deps,
        rm: args.rm,
        detach: args.detach,
    };
    let stream = connect(&project, true)?.context("no supervisor")?;
    let tty = !args.no_tty
        && !args.detach
        && std::io::stdin().is_terminal()
        && std::io::stdout().is_terminal();
    let mut line = serde_json::to_string(&request)?;
    line.push('\n');
    let mut master = None;
    if args.detach {
        crate::fdpass::send_with_fds(&stream, line.as_bytes(), &[])?;
    } else if tty {
        let (m, slave) = open_pty()?;
        copy_window_size(&m);
        let fd = slave.as_raw_fd();
        crate::fdpass::send_with_fds(&stream, line.as_bytes(), &[fd, fd, fd])?;
        master = Some(m);
    } else {
        crate::fdpass::send_with_fds(&stream, line.as_bytes(), &[0, 1, 2])?;
    }
    let mut raw = None;
    for reply in BufReader::new(stream).lines() {
        let reply = reply.context("reading the supervisor's reply")?;
        match serde_json::from_str::<Reply>(&reply) {
            Ok(Reply::Progress(p)) => eprintln!(" {p}"),
            Ok(Reply::Started(name)) => {
                if args.detach {
                    println!("{name}");
                } else if let Some(m) = master.take() {
                    raw = Some(RawMode::enter());
                    std::thread::spawn(move || pump(m));
                }
            }
            Ok(Reply::Exited(code)) => {
                drop(raw);
                return Ok(ExitCode::from(code.clamp(0, 255) as u8));
            }
            Ok(Reply::Ok) => return Ok(ExitCode::SUCCESS),
            Ok(Reply::Error(e)) => bail!("{e}"),
            Err(_) => bail!("unexpected reply from the supervisor: {reply}"),
        }
    }
    bail!("the supervisor of {project} went away without an answer")
}

/// A pseudo-terminal of the host's: (master, slave).
fn open_pty() -> Result<(OwnedFd, OwnedFd)> {
    let (mut m, mut s) = (-1, -1);
    // SAFETY: openpty writes two fds; null name/termios/winsize are allowed.
    let rc = unsafe {
        libc::openpty(
            &mut m,
            &mut s,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("allocating a pseudo-terminal");
    }
    // SAFETY: openpty succeeded, so both fds are open and ours.
    Ok(unsafe { (OwnedFd::from_raw_fd(m), OwnedFd::from_raw_fd(s)) })
}
