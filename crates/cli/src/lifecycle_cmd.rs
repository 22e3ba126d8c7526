//! `stop`, `start`, `restart`, `kill`, `rm`, `wait`, `port`, `top`,
//! `events` and `ls`: the running project's containers, one command each,
//! shaped like docker compose's.

use crate::options::load_options;
use crate::supervisor::{project_dir, read_state, send, ContainerState, Request};
use crate::{GlobalArgs, ListFormat};
use anyhow::{bail, Context, Result};
use berth_oci::store::state_dir;
use clap::Args;
use std::fs;
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
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

/// Send a lifecycle request; progress lines to stderr; "not running" is an error.
fn ask(name: &str, request: Request) -> Result<ExitCode> {
    crate::supervisor::take_over_if_orphaned(name)?;
    let running = send(name, &request, &|line| eprintln!(" {line}"))?;
    if !running {
        bail!("project {name} is not running (berth up starts it)");
    }
    Ok(ExitCode::SUCCESS)
}

pub fn stop(global: &GlobalArgs, args: StopArgs) -> Result<ExitCode> {
    let name = project(global)?.project.name;
    ask(
        &name,
        Request::Stop {
            services: args.services,
            timeout_secs: args.timeout,
        },
    )
}

pub fn start(global: &GlobalArgs, args: StartArgs) -> Result<ExitCode> {
    let name = project(global)?.project.name;
    ask(
        &name,
        Request::Start {
            services: args.services,
        },
    )
}

pub fn restart(global: &GlobalArgs, args: StopArgs) -> Result<ExitCode> {
    let name = project(global)?.project.name;
    ask(
        &name,
        Request::Restart {
            services: args.services,
            timeout_secs: args.timeout,
        },
    )
}

pub fn kill(global: &GlobalArgs, args: KillArgs) -> Result<ExitCode> {
    let name = project(global)?.project.name;
    let signal = berth_engine_embedded::parse_signal(&args.signal)
        .with_context(|| format!("--signal {:?}: not a signal name or number", args.signal))?;
    ask(
        &name,
        Request::Kill {
            services: args.services,
            signal,
        },
    )
}

/// `pause` (`pause: true`) and `unpause`.
pub fn pause(global: &GlobalArgs, args: StartArgs, pause: bool) -> Result<ExitCode> {
    let name = project(global)?.project.name;
    ask(
        &name,
        Request::Pause {
            services: args.services,
            pause,
        },
    )
}

pub fn rm(global: &GlobalArgs, args: RmArgs) -> Result<ExitCode> {
    let name = project(global)?.project.name;
    let _ = args.volumes;
    ask(
        &name,
        Request::Rm {
            services: args.services,
            force: args.force || args.stop,
        },
    )
}

fn containers(name: &str) -> Vec<ContainerState> {
    let _ = crate::supervisor::take_over_if_orphaned(name);
    read_state(&project_dir(name))
        .map(|s| s.containers)
        .unwrap_or_default()
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
    loop {
        let list: Vec<ContainerState> = containers(&name)
            .into_iter()
            .filter(|c| args.services.contains(&c.service))
            .collect();
        if list.is_empty() {
            bail!("no containers of {} are running", args.services.join(", "));
        }
        if list.iter().all(|c| c.state == "exited") {
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
    let running: Vec<ContainerState> = containers(&name)
        .into_iter()
        .filter(|c| c.service == args.service && c.state != "exited")
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

/// The processes of each running container: its cgroup's members.
pub fn top(global: &GlobalArgs, args: TopArgs) -> Result<ExitCode> {
    let name = project(global)?.project.name;
    for c in containers(&name) {
        if c.state == "exited" || !(args.services.is_empty() || args.services.contains(&c.service))
        {
            continue;
        }
        println!("{}", c.name);
        println!("{:<8} {:<8} {:<8} CMD", "UID", "PID", "PPID");
        for pid in cgroup_pids(&c.id) {
            let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            let field = |key: &str| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(key))
                    .and_then(|v| v.split_whitespace().next())
                    .unwrap_or("?")
                    .to_string()
            };
            let cmd = fs::read(format!("/proc/{pid}/cmdline"))
                .map(|b| {
                    String::from_utf8_lossy(&b)
                        .trim_end_matches('\0')
                        .replace('\0', " ")
                })
                .unwrap_or_default();
            println!(
                "{:<8} {:<8} {:<8} {cmd}",
                field("Uid:"),
                pid,
                field("PPid:")
            );
        }
        println!();
    }
    Ok(ExitCode::SUCCESS)
}

/// Members of container `id`'s cgroup, wherever this host keeps it (v1:
/// one hierarchy per controller; v2: the unified tree).
fn cgroup_pids(id: &str) -> Vec<u32> {
    for base in [
        "/sys/fs/cgroup/pids",
        "/sys/fs/cgroup/memory",
        "/sys/fs/cgroup/unified",
        "/sys/fs/cgroup",
    ] {
        let path = format!("{base}/berth/{id}/cgroup.procs");
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

/// Follow the project's container events until Ctrl-C.
pub fn events(global: &GlobalArgs, args: EventsArgs) -> Result<ExitCode> {
    let name = project(global)?.project.name;
    let path = project_dir(&name).join("events.jsonl");
    crate::up_cmd::install_signal_handlers();
    let mut offset = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    while !crate::up_cmd::interrupted() {
        if let Ok(mut f) = fs::File::open(&path) {
            let len = f.metadata().map(|m| m.len()).unwrap_or(0);
            if len < offset {
                offset = 0; // a new run of the project started the file again
            }
            f.seek(SeekFrom::Start(offset))?;
            let mut reader = BufReader::new(f);
            let mut line = String::new();
            while reader.read_line(&mut line)? > 0 {
                if !line.ends_with('\n') {
                    break;
                }
                offset += line.len() as u64;
                if let Ok(e) = serde_json::from_str::<serde_json::Value>(&line) {
                    let container = e["id"].as_str().unwrap_or_default();
                    let service = container
                        .strip_prefix(&format!("{name}-"))
                        .and_then(|r| r.rsplit_once('-').map(|(s, _)| s))
                        .unwrap_or_default();
                    if args.services.is_empty() || args.services.iter().any(|s| s == service) {
                        let mut o = std::io::stdout().lock();
                        let written = if args.json {
                            writeln!(o, "{}", line.trim_end())
                        } else {
                            writeln!(
                                o,
                                "{} container {} {} {}",
                                e["time"].as_str().unwrap_or_default(),
                                e["action"].as_str().unwrap_or_default(),
                                container,
                                e["attributes"]
                            )
                        };
                        if written.is_err() {
                            return Ok(ExitCode::SUCCESS);
                        }
                    }
                }
                line.clear();
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(ExitCode::SUCCESS)
}

/// Projects with a live supervisor on this host.
pub fn ls(args: LsArgs) -> Result<ExitCode> {
    let mut rows = Vec::new();
    let dirs = fs::read_dir(state_dir().join("projects"))
        .map(|d| d.flatten().map(|e| e.path()).collect::<Vec<_>>())
        .unwrap_or_default();
    for dir in dirs {
        if let Some(state) = read_state(&dir) {
            let running = state
                .containers
                .iter()
                .filter(|c| c.state != "exited")
                .count();
            rows.push((state.project, running, state.containers.len()));
        }
    }
    rows.sort();
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
