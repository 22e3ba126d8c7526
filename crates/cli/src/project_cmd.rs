//! `down`, `ps`, `logs`: commands on a project its supervisor keeps running
//! (see [`crate::supervisor`]).

use crate::logs::{Follower, Printer};
use crate::options::load_options;
use crate::supervisor::{project_dir, read_state, send, Request};
use crate::{GlobalArgs, ListFormat};
use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use std::fs;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

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
    Status(String),
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
                Ok(PsFilter::Status(s.to_string()))
            }
            _ => anyhow::bail!(
                "--filter {text}: expected label=KEY[=VALUE] or status=running|exited|paused|restarting"
            ),
        }
    }

    fn matches(&self, c: &crate::supervisor::ContainerState) -> bool {
        match self {
            PsFilter::Label(k, v) => c
                .labels
                .get(k)
                .is_some_and(|have| v.as_ref().is_none_or(|want| want == have)),
            PsFilter::Status(s) => &c.state == s,
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
    let dir = project_dir(&project.name);
    let recovered = crate::supervisor::recover(&project.name)?;
    let stopped = recovered
        || send(
            &project.name,
            &Request::Down {
                timeout_secs: args.timeout,
            },
            &|line| eprintln!("{line}"),
        )
        .with_context(|| project.name.clone())?;
    let _ = fs::remove_dir_all(&dir);
    if stopped {
        eprintln!(" ✔ {} removed", project.name);
    } else {
        eprintln!("{} is not running", project.name);
    }
    if args.volumes {
        for (key, v) in &project.volumes {
            if v.external == Some(true) {
                continue;
            }
            let name = v
                .name
                .clone()
                .unwrap_or_else(|| format!("{}_{key}", project.name));
            let path = berth_engine_embedded::volume_dir(&berth_oci::store::state_dir(), &name)
                .map_err(|e| anyhow::anyhow!("volumes.{key}: {e}"))?;
            if path.exists() {
                fs::remove_dir_all(&path).with_context(|| format!("removing volume {name}"))?;
                eprintln!(" ✔ Volume {name} removed");
            }
        }
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
    crate::supervisor::take_over_if_orphaned(&project)?;
    let filters = args
        .filter
        .iter()
        .map(|f| PsFilter::parse(f))
        .collect::<Result<Vec<_>>>()?;
    // A status filter asks for exited containers by itself, as docker's does.
    let all = args.all || !filters.is_empty();
    let containers: Vec<_> = read_state(&project_dir(&project))
        .map(|s| s.containers)
        .unwrap_or_default()
        .into_iter()
        .filter(|c| all || c.state != "exited")
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
            let status = match (c.state.as_str(), c.exit_code) {
                ("exited", Some(code)) => format!("exited ({code})"),
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
    crate::supervisor::take_over_if_orphaned(&project)?;
    let containers = read_state(&project_dir(&project))
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
                    "Status": c.state,
                    "Running": c.state == "running" || c.state == "paused",
                    "Paused": c.state == "paused",
                    "Restarting": c.state == "restarting",
                    "Pid": c.pid.unwrap_or(0),
                    "ExitCode": c.exit_code.unwrap_or(0),
                    "Health": c.health.as_ref().map(|h| serde_json::json!({"Status": h})),
                },
                "Config": {
                    "Labels": c.labels,
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
    crate::supervisor::take_over_if_orphaned(&project)?;
    let dir = project_dir(&project);
    let when = |flag: &str, v: &Option<String>| -> Result<Option<String>> {
        v.as_deref()
            .map(|t| {
                crate::logs::parse_when(t).with_context(|| {
                    format!("{flag} {t:?}: expected RFC 3339, a date, Unix seconds or a duration")
                })
            })
            .transpose()
    };
    let printer = Printer {
        colour: !args.no_color && std::io::stdout().is_terminal() && global.colour(),
        timestamps: args.timestamps,
        since: when("--since", &args.since)?,
        until: when("--until", &args.until)?,
    };
    let mut follower = Follower::new(&dir.join("logs"), &project, &args.services, false);
    if !follower.pump(&printer, args.tail) {
        return Ok(ExitCode::SUCCESS);
    }
    if args.follow {
        while read_state(&dir).is_some() {
            std::thread::sleep(Duration::from_millis(100));
            if !follower.pump(&printer, None) {
                break;
            }
        }
        follower.pump(&printer, None);
    }
    Ok(ExitCode::SUCCESS)
}
