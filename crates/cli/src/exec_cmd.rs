//! `berth exec`: run a command in a running service container, with this
//! process's stdio, or a pseudo-terminal when attached to one.

use crate::options::load_options;
use crate::GlobalArgs;
use anyhow::{bail, Context, Result};
use berth_engine::backend::ExecRequest;
use clap::Args;
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
    /// Give the command extended privileges
    #[arg(long)]
    privileged: bool,
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
    let backend = crate::engine::backend(global)?;
    let state = backend
        .observe(&project)?
        .with_context(|| format!("project {project} is not running"))?;
    let Some(container) = state.running(&args.service, args.index) else {
        bail!(
            "service {:?} has no running container #{}",
            args.service,
            args.index
        );
    };
    let request = ExecRequest {
        container: container.clone(),
        command: args.command.clone(),
        user: args.user.clone(),
        workdir: args.workdir.clone(),
        env: env_entries(&args.env),
        tty: !args.no_tty && !args.detach && berth_engine::terminal::attached(),
        privileged: args.privileged,
        detach: args.detach,
    };
    let code = backend.exec(&project, &request)?;
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}
