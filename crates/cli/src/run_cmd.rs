//! `berth run`: a one-off container of a service, made by the engine (so
//! `ps` lists it and `down` removes it), attached to this process's stdio
//! (or a pseudo-terminal) unless detached.

use crate::exec_cmd::env_entries;
use crate::options::load_options;
use crate::GlobalArgs;
use anyhow::{bail, Result};
use berth_engine::backend::{LoadRequest, RunOutcome, RunRequest};
use clap::Args;
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
    let backend = crate::engine::backend(global)?;
    let images = crate::up_cmd::ensure_images(backend.as_ref(), &loaded, args.build, false, None)?;
    let runtimes = crate::up_cmd::runtime_mounts(&loaded, true)?;
    let entrypoint = args
        .entrypoint
        .as_deref()
        .map(|e| {
            berth_compose::units::split_shell_words(e)
                .map_err(|m| anyhow::anyhow!("--entrypoint: {m}"))
        })
        .transpose()?;
    let request = RunRequest {
        load: LoadRequest::from(&options),
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
        tty: !args.no_tty && !args.detach && berth_engine::terminal::attached(),
        images,
        runtimes,
    };
    match backend.run(&project, &request)? {
        RunOutcome::Detached { name } => {
            println!("{name}");
            Ok(ExitCode::SUCCESS)
        }
        RunOutcome::Exited { code } => Ok(ExitCode::from(code.clamp(0, 255) as u8)),
    }
}
