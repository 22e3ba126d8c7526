//! `down`, `ps`, `inspect`, `logs`: commands on a project an engine runs.

use crate::logs::{Printer, Seen};
use crate::options::load_options;
use crate::{GlobalArgs, ListFormat};
use anyhow::{Context, Result};
use berth_engine::backend::{Container, DownOptions, LogOptions};
use berth_engine::Status;
use clap::{Args, ValueEnum};
use std::io::{IsTerminal, Write};
use std::process::ExitCode;

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rmi {
    /// Images built for services without a custom `image:` name
    Local,
    /// Every image the services use
    All,
}

#[derive(Args, Debug)]
pub struct DownArgs {
    /// Seconds to wait for containers to stop (default: each service's
    /// `stop_grace_period`, else 10)
    #[arg(short = 't', long)]
    timeout: Option<u64>,
    /// Also remove the named volumes the project declares (external ones are kept)
    #[arg(short = 'v', long)]
    volumes: bool,
    /// Remove images used by services
    #[arg(long, value_enum, value_name = "TYPE")]
    rmi: Option<Rmi>,
    /// Remove containers of services no longer in the compose file (berth
    /// always removes every container of the project; accepted for compatibility)
    #[arg(long)]
    remove_orphans: bool,
}

#[derive(Args, Debug)]
pub struct PsArgs {
    /// Output format
    #[arg(long, value_enum, default_value_t = ListFormat::Table)]
    format: ListFormat,
    /// Only show container names
    #[arg(short, long)]
    quiet: bool,
    /// Show the services instead of containers
    #[arg(long)]
    services: bool,
    /// Show all containers, also those that exited
    #[arg(short, long)]
    all: bool,
    /// Only containers matching: `label=KEY`, `label=KEY=VALUE`,
    /// `status=running|exited|paused|restarting` (repeatable: all must match)
    #[arg(long = "filter", value_name = "FILTER")]
    filter: Vec<String>,
    /// Only these services
    service: Vec<String>,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Services or container names (default: every container of the project)
    targets: Vec<String>,
}

/// `ps --filter`: one condition on a container.
enum PsFilter {
    Label(String, Option<String>),
    Status(Status),
}

impl PsFilter {
    fn parse(text: &str) -> Result<PsFilter> {
        match text.split_once('=') {
            Some(("label", l)) => Ok(match l.split_once('=') {
                Some((k, v)) => PsFilter::Label(k.to_string(), Some(v.to_string())),
                None => PsFilter::Label(l.to_string(), None),
            }),
            Some(("status", s))
                if matches!(s, "running" | "exited" | "paused" | "restarting") =>
            {
                Ok(PsFilter::Status(Status::parse(s).unwrap_or(Status::Running)))
            }
            _ => anyhow::bail!(
                "--filter {text}: expected label=KEY[=VALUE] or status=running|exited|paused|restarting"
            ),
        }
    }

    fn matches(&self, c: &Container) -> bool {
        match self {
            PsFilter::Label(k, v) => c
                .labels
                .get(k)
                .is_some_and(|have| v.as_ref().is_none_or(|want| want == have)),
            PsFilter::Status(s) => c.status == *s,
        }
    }
}

#[derive(Args, Debug)]
pub struct LogsArgs {
    /// Services whose logs to show (default: all)
    services: Vec<String>,
    /// Follow the output until the project goes down
    #[arg(short, long)]
    follow: bool,
    /// Only the last N lines of each container
    #[arg(long, value_name = "N")]
    tail: Option<usize>,
    /// Show timestamps
    #[arg(short, long)]
    timestamps: bool,
    /// Only lines since this time (RFC 3339, a date, Unix seconds, or a duration like 10m)
    #[arg(long, value_name = "WHEN")]
    since: Option<String>,
    /// Only lines before this time (same forms as --since)
    #[arg(long, value_name = "WHEN")]
    until: Option<String>,
    /// Don't colour the prefixes
    #[arg(long)]
    no_color: bool,
}

/// A line on stdout; a closed pipe (`berth ps | head`) ends output quietly.
macro_rules! out {
    ($($arg:tt)*) => {{
        let mut o = std::io::stdout().lock();
        if writeln!(o, $($arg)*).is_err() {
            return Ok(ExitCode::SUCCESS);
        }
    }};
}

pub fn down(global: &GlobalArgs, args: DownArgs) -> Result<ExitCode> {
    let loaded = berth_compose::load(&load_options(global)?)?;
    let project = &loaded.project;
    let backend = crate::engine::backend(global)?;
    let options = DownOptions {
        timeout_secs: args.timeout,
        volumes: args.volumes,
    };
    let stopped = backend
        .down(project, &options, &|line| eprintln!(" {line}"))
        .with_context(|| project.name.clone())?;
    if stopped {
        eprintln!(" ✔ {} removed", project.name);
    } else {
        eprintln!("{} is not running", project.name);
    }
    if let Some(which) = args.rmi {
        let store = crate::image_cmd::open_store()?;
        for (name, svc) in &project.services {
            let local = svc.image.is_none() && svc.build.is_some();
            if which == Rmi::Local && !local {
                continue;
            }
            let image = crate::build_cmd::service_image(project, name, svc)?.to_string();
            if store.untag(&image)? {
                eprintln!(" ✔ Image {image} removed");
            }
        }
        store.gc()?;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn ps(global: &GlobalArgs, args: PsArgs) -> Result<ExitCode> {
    let project = berth_compose::load(&load_options(global)?)?.project.name;
    let backend = crate::engine::backend(global)?;
    let filters = args
        .filter
        .iter()
        .map(|f| PsFilter::parse(f))
        .collect::<Result<Vec<_>>>()?;
    // A status filter asks for exited containers by itself, as docker's does.
    let all = args.all || !filters.is_empty();
    let containers: Vec<_> = backend
        .observe(&project)?
        .map(|s| s.containers)
        .unwrap_or_default()
        .into_iter()
        .filter(|c| all || c.status != Status::Exited)
        .filter(|c| args.service.is_empty() || args.service.contains(&c.service))
        .filter(|c| filters.iter().all(|f| f.matches(c)))
        .collect();
    if args.services {
        let mut services: Vec<&str> = containers.iter().map(|c| c.service.as_str()).collect();
        services.dedup();
        for s in services {
            out!("{s}");
        }
    } else if args.quiet {
        for c in &containers {
            out!("{}", c.name);
        }
    } else if args.format == ListFormat::Json {
        out!("{}", serde_json::to_string_pretty(&containers)?);
    } else {
        out!("{:<28} {:<12} {:<16} PORTS", "NAME", "SERVICE", "STATUS");
        for c in &containers {
            let status = match (c.status, c.exit_code) {
                (Status::Exited, Some(code)) => format!("exited ({code})"),
                (state, _) => state.to_string(),
            };
            out!(
                "{:<28} {:<12} {:<16} {}",
                c.name,
                c.service,
                status,
                c.ports.join(", ")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `berth inspect`: the project's containers as `docker inspect` shapes
/// them (the fields berth knows), for tools and people who read those.
pub fn inspect(global: &GlobalArgs, args: InspectArgs) -> Result<ExitCode> {
    let project = berth_compose::load(&load_options(global)?)?.project.name;
    let backend = crate::engine::backend(global)?;
    let containers = backend
        .observe(&project)?
        .map(|s| s.containers)
        .unwrap_or_default();
    for t in &args.targets {
        if !containers.iter().any(|c| &c.service == t || &c.name == t) {
            anyhow::bail!("no such service or container: {t}");
        }
    }
    let shown: Vec<serde_json::Value> = containers
        .iter()
        .filter(|c| {
            args.targets.is_empty() || args.targets.iter().any(|t| t == &c.service || t == &c.name)
        })
        .map(|c| {
            serde_json::json!({
                "Id": c.id,
                "Name": format!("/{}", c.name),
                "Image": c.image,
                "RestartCount": c.restarts,
                "State": {
                    "Status": c.status,
                    "Running": matches!(c.status, Status::Running | Status::Paused),
                    "Paused": c.status == Status::Paused,
                    "Restarting": c.status == Status::Restarting,
                    "Pid": c.pid.unwrap_or(0),
                    "ExitCode": c.exit_code.unwrap_or(0),
                    "Health": c.health.map(|h| serde_json::json!({"Status": h.as_str()})),
                },
                "Config": {
                    "Labels": c.labels,
                },
                "HostConfig": {
                    "Annotations": c.annotations,
                },
                "NetworkSettings": {
                    "IPAddress": c.ip.clone().unwrap_or_default(),
                    "Ports": c.ports,
                },
            })
        })
        .collect();
    out!("{}", serde_json::to_string_pretty(&shown)?);
    Ok(ExitCode::SUCCESS)
}

pub fn logs(global: &GlobalArgs, args: LogsArgs) -> Result<ExitCode> {
    let loaded = berth_compose::load(&load_options(global)?)?;
    let project = loaded.project.name.clone();
    for s in &args.services {
        if !loaded.project.services.contains_key(s) {
            anyhow::bail!("no such service: {s}");
        }
    }
    let backend = crate::engine::backend(global)?;
    let when = |flag: &str, v: &Option<String>| -> Result<Option<String>> {
        v.as_deref()
            .map(|t| {
                berth_engine::time::parse_when(t).with_context(|| {
                    format!("{flag} {t:?}: expected RFC 3339, a date, Unix seconds or a duration")
                })
            })
            .transpose()
    };
    let printer = Printer {
        colour: !args.no_color && std::io::stdout().is_terminal() && global.colour(),
        timestamps: args.timestamps,
    };
    let options = LogOptions {
        services: args.services.clone(),
        follow: args.follow,
        tail: args.tail,
        since: when("--since", &args.since)?,
        until: when("--until", &args.until)?,
        from_now: false,
    };
    // Prefixes line up over the containers shown.
    let names: Vec<String> = backend
        .observe(&project)?
        .map(|s| s.containers)
        .unwrap_or_default()
        .into_iter()
        .filter(|c| args.services.is_empty() || args.services.contains(&c.service))
        .map(|c| c.name)
        .collect();
    let mut seen = Seen::with_names(names.iter().map(String::as_str));
    let closed = std::cell::Cell::new(false);
    backend.logs(
        &project,
        &options,
        &mut |line| {
            if !closed.get() && !printer.print(&mut seen, &line) {
                closed.set(true);
            }
        },
        &|| closed.get(),
    )?;
    Ok(ExitCode::SUCCESS)
}
