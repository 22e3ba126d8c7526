//! `stop`, `start`, `restart`, `kill`, `rm`, `wait`, `port`, `top`,
//! `events` and `ls`: the running project's containers, one command each,
//! shaped like docker compose's.

use crate::options::load_options;
use crate::{GlobalArgs, ListFormat};
use anyhow::{bail, Context, Result};
use berth_engine::backend::{Container, Control};
use berth_engine::{Backend, Status};
use clap::Args;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct StopArgs {
    /// Services (default: all)
    services: Vec<String>,
    /// Seconds to wait before SIGKILL (default: each service's stop_grace_period, else 10)
    #[arg(short = 't', long)]
    timeout: Option<u64>,
}

#[derive(Args, Debug)]
pub struct StartArgs {
    /// Services (default: all)
    services: Vec<String>,
}

#[derive(Args, Debug)]
pub struct KillArgs {
    /// Services (default: all)
    services: Vec<String>,
    /// Signal to send: a name (SIGHUP, HUP) or a number
    #[arg(short = 's', long, default_value = "SIGKILL")]
    signal: String,
}

#[derive(Args, Debug)]
pub struct RmArgs {
    /// Services (default: all)
    services: Vec<String>,
    /// Remove running containers too (they are stopped first)
    #[arg(short, long)]
    force: bool,
    /// Stop running containers first
    #[arg(short, long)]
    stop: bool,
    /// Also remove their anonymous volumes (berth always does once nothing mounts them)
    #[arg(short, long)]
    volumes: bool,
}

#[derive(Args, Debug)]
pub struct WaitArgs {
    /// Services whose containers to wait for
    #[arg(required = true)]
    services: Vec<String>,
}

#[derive(Args, Debug)]
pub struct PortArgs {
    service: String,
    /// The port inside the container
    private_port: u16,
    #[arg(long, default_value = "tcp")]
    protocol: String,
    /// Which container of a scaled service (1-based)
    #[arg(long, default_value_t = 1)]
    index: usize,
}

#[derive(Args, Debug)]
pub struct TopArgs {
    /// Services (default: all)
    services: Vec<String>,
}

#[derive(Args, Debug)]
pub struct EventsArgs {
    /// Services (default: all)
    services: Vec<String>,
    /// One JSON object per line
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub struct LsArgs {
    #[arg(long, value_enum, default_value_t = ListFormat::Table)]
    format: ListFormat,
    /// Only project names
    #[arg(short, long)]
    quiet: bool,
}

fn project(global: &GlobalArgs) -> Result<berth_compose::Loaded> {
    Ok(berth_compose::load(&load_options(global)?)?)
}

/// A lifecycle request; progress lines to stderr; "not running" is an error.
fn ask(global: &GlobalArgs, control: Control) -> Result<ExitCode> {
    let name = project(global)?.project.name;
    let backend = crate::engine::backend(global)?;
    backend.control(&name, &control, &|line| eprintln!(" {line}"))?;
    Ok(ExitCode::SUCCESS)
}

pub fn stop(global: &GlobalArgs, args: StopArgs) -> Result<ExitCode> {
    let control = Control::Stop {
        services: args.services,
        timeout_secs: args.timeout,
    };
    ask(global, control)
}

pub fn start(global: &GlobalArgs, args: StartArgs) -> Result<ExitCode> {
    let control = Control::Start {
        services: args.services,
    };
    ask(global, control)
}

pub fn restart(global: &GlobalArgs, args: StopArgs) -> Result<ExitCode> {
    let control = Control::Restart {
        services: args.services,
        timeout_secs: args.timeout,
    };
    ask(global, control)
}

pub fn kill(global: &GlobalArgs, args: KillArgs) -> Result<ExitCode> {
    let signal = berth_engine_embedded::parse_signal(&args.signal)
        .with_context(|| format!("--signal {:?}: not a signal name or number", args.signal))?;
    let control = Control::Kill {
        services: args.services,
        signal,
    };
    ask(global, control)
}

/// `pause` (`pause: true`) and `unpause`.
pub fn pause(global: &GlobalArgs, args: StartArgs, pause: bool) -> Result<ExitCode> {
    let control = Control::Pause {
        services: args.services,
        pause,
    };
    ask(global, control)
}

pub fn rm(global: &GlobalArgs, args: RmArgs) -> Result<ExitCode> {
    // Anonymous volumes go once nothing mounts them, with or without -v.
    let _ = args.volumes;
    let control = Control::Rm {
        services: args.services,
        force: args.force || args.stop,
    };
    ask(global, control)
}

fn containers(backend: &dyn Backend, name: &str) -> Result<Vec<Container>> {
    Ok(backend
        .observe(name)?
        .map(|s| s.containers)
        .unwrap_or_default())
}

/// Block until every container of `services` has exited; print each exit
/// code and exit with the first one's, as `docker compose wait` does.
pub fn wait(global: &GlobalArgs, args: WaitArgs) -> Result<ExitCode> {
    let loaded = project(global)?;
    for s in &args.services {
        if !loaded.project.services.contains_key(s) {
            bail!("no such service: {s}");
        }
    }
    let name = loaded.project.name;
    let backend = crate::engine::backend(global)?;
    loop {
        let list: Vec<Container> = containers(backend.as_ref(), &name)?
            .into_iter()
            .filter(|c| args.services.contains(&c.service))
            .collect();
        if list.is_empty() {
            bail!("no containers of {} are running", args.services.join(", "));
        }
        if list.iter().all(|c| c.status == Status::Exited) {
            let mut first = None;
            for c in &list {
                let code = c.exit_code.unwrap_or(0);
                println!("{code}");
                first.get_or_insert(code);
            }
            let code = first.unwrap_or(0);
            return Ok(ExitCode::from(code.clamp(0, 255) as u8));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The host address a container port is published on.
pub fn port(global: &GlobalArgs, args: PortArgs) -> Result<ExitCode> {
    let loaded = project(global)?;
    let name = loaded.project.name.clone();
    let svc = loaded
        .project
        .services
        .get(&args.service)
        .with_context(|| format!("no such service: {}", args.service))?;
    let backend = crate::engine::backend(global)?;
    let running: Vec<Container> = containers(backend.as_ref(), &name)?
        .into_iter()
        .filter(|c| c.service == args.service && c.status != Status::Exited)
        .collect();
    if running.len() < args.index || args.index == 0 {
        bail!(
            "service {} has no running container #{}",
            args.service,
            args.index
        );
    }
    let binding = svc
        .ports
        .iter()
        .find(|p| p.target == args.private_port && p.protocol == args.protocol)
        .and_then(|p| {
            let published = p.published.as_ref()?;
            let first = published.split('-').next()?;
            Some(format!(
                "{}:{first}",
                p.host_ip.as_deref().unwrap_or("0.0.0.0")
            ))
        });
    match binding {
        Some(b) => {
            println!("{b}");
            Ok(ExitCode::SUCCESS)
        }
        None => bail!(
            "no port {}/{} published for {}",
            args.private_port,
            args.protocol,
            args.service
        ),
    }
}

/// The processes of each running container.
pub fn top(global: &GlobalArgs, args: TopArgs) -> Result<ExitCode> {
    let name = project(global)?.project.name;
    let backend = crate::engine::backend(global)?;
    for c in containers(backend.as_ref(), &name)? {
        if c.status == Status::Exited
            || !(args.services.is_empty() || args.services.contains(&c.service))
        {
            continue;
        }
        println!("{}", c.name);
        println!("{:<8} {:<8} {:<8} CMD", "UID", "PID", "PPID");
        for p in backend.top(&name, &c)? {
            println!("{:<8} {:<8} {:<8} {}", p.uid, p.pid, p.ppid, p.command);
        }
        println!();
    }
    Ok(ExitCode::SUCCESS)
}

/// Follow the project's container events until Ctrl-C.
pub fn events(global: &GlobalArgs, args: EventsArgs) -> Result<ExitCode> {
    let name = project(global)?.project.name;
    let backend = crate::engine::backend(global)?;
    berth_engine::interrupt::install_signal_handlers();
    let closed = std::cell::Cell::new(false);
    backend.events(
        &name,
        &mut |e| {
            if !(args.services.is_empty() || args.services.contains(&e.service)) {
                return;
            }
            let mut o = std::io::stdout().lock();
            let written = if args.json {
                let line = serde_json::json!({
                    "time": e.time,
                    "type": "container",
                    "action": e.action,
                    "id": e.container,
                    "attributes": e.attributes,
                });
                writeln!(o, "{line}")
            } else {
                writeln!(
                    o,
                    "{} container {} {} {}",
                    e.time,
                    e.action,
                    e.container,
                    serde_json::to_string(&e.attributes).unwrap_or_default()
                )
            };
            if written.is_err() {
                closed.set(true);
            }
        },
        &|| closed.get() || berth_engine::interrupt::interrupted(),
    )?;
    Ok(ExitCode::SUCCESS)
}

/// Projects the engine runs.
pub fn ls(global: &GlobalArgs, args: LsArgs) -> Result<ExitCode> {
    let backend = crate::engine::backend(global)?;
    let rows: Vec<(String, usize, usize)> = backend
        .projects()?
        .into_iter()
        .map(|p| (p.name, p.running, p.total))
        .collect();
    if args.quiet {
        for (name, _, _) in &rows {
            println!("{name}");
        }
    } else if args.format == ListFormat::Json {
        let list: Vec<serde_json::Value> = rows
            .iter()
            .map(|(name, running, total)| {
                serde_json::json!({"Name": name, "Status": format!("running({running})"), "Containers": total})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
    } else {
        println!("{:<32} STATUS", "NAME");
        for (name, running, _) in &rows {
            println!("{name:<32} running({running})");
        }
    }
    Ok(ExitCode::SUCCESS)
}
