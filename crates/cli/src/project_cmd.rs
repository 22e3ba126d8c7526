//! `up -d`, `down`, `ps`, `logs`: a project kept running by a supervisor.
//!
//! `berth up -d` starts one supervisor process per project (berth itself,
//! re-executed with a hidden subcommand, in its own session). It brings the
//! project up on the embedded engine, holds the port proxies, reaps the
//! containers, writes each container's output to a log file and the
//! project's state to `state.json`, and answers on a unix socket under
//! `<state>/projects/<project>/`. `down` asks it to stop everything and exit.

use crate::options::load_options;
use crate::up_cmd::{ensure_images, install_signal_handlers, interrupted};
use crate::{GlobalArgs, ListFormat};
use anyhow::{bail, Context, Result};
use berth_engine::embedded::{Embedded, LogSink};
use berth_oci::store::state_dir;
use clap::Args;
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Args, Debug)]
pub struct DownArgs {
    /// Seconds to wait for containers to stop
    #[arg(short = 't', long, default_value_t = 10)]
    timeout: u64,
    /// Also remove the named volumes the project declares (external ones are kept)
    #[arg(short = 'v', long)]
    volumes: bool,
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

/// What `ps` shows: written by the supervisor whenever it changes.
#[derive(Debug, Serialize, Deserialize)]
struct ProjectState {
    project: String,
    supervisor_pid: u32,
    containers: Vec<ContainerState>,
    /// Per service: config hash and image digest it was started with.
    #[serde(default)]
    fingerprints: std::collections::BTreeMap<String, String>,
}

/// What a running service must match to be left alone by `up -d`.
fn fingerprints(
    loaded: &berth_compose::Loaded,
) -> Result<std::collections::BTreeMap<String, String>> {
    let store = crate::image_cmd::open_store()?;
    let images = crate::up_cmd::image_names(loaded)?;
    let mut out = std::collections::BTreeMap::new();
    for (name, svc) in &loaded.project.services {
        let digest = match images.get(name) {
            Some(image) => store
                .resolve(image)?
                .map(|d| d.digest.to_string())
                .unwrap_or_default(),
            None => String::new(),
        };
        out.insert(
            name.clone(),
            format!("{} {digest}", berth_compose::hash::service_hash(svc)),
        );
    }
    Ok(out)
}

/// Ask the project's supervisor to take everything down; wait until it has.
fn stop_supervisor(dir: &Path, timeout: u64, volumes: bool) -> Result<bool> {
    let Ok(mut stream) = UnixStream::connect(dir.join("supervisor.sock")) else {
        return Ok(false);
    };
    let volumes = if volumes { " volumes" } else { "" };
    writeln!(stream, "down {timeout}{volumes}")?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply)?;
    let reply = reply.trim();
    if reply != "ok" {
        bail!("{}", reply.trim_start_matches("error: "));
    }
    Ok(true)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ContainerState {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Service")]
    service: String,
    #[serde(rename = "State")]
    state: String,
    #[serde(rename = "ExitCode")]
    exit_code: Option<i32>,
    #[serde(rename = "Publishers")]
    ports: Vec<String>,
}

fn project_dir(project: &str) -> PathBuf {
    state_dir().join("projects").join(project)
}

fn project_name(global: &GlobalArgs) -> Result<String> {
    Ok(berth_compose::load(&load_options(global)?)?.project.name)
}

fn alive(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

fn read_state(dir: &Path) -> Option<ProjectState> {
    let s: ProjectState = serde_json::from_slice(&fs::read(dir.join("state.json")).ok()?).ok()?;
    alive(s.supervisor_pid).then_some(s)
}

fn write_state(dir: &Path, state: &ProjectState) -> Result<()> {
    let tmp = dir.join("state.json.tmp");
    fs::write(&tmp, serde_json::to_vec_pretty(state)?)?;
    fs::rename(&tmp, dir.join("state.json"))?;
    Ok(())
}

/// The global flags again, for the supervisor's command line.
fn global_args(global: &GlobalArgs) -> Vec<String> {
    let mut v = Vec::new();
    for f in &global.file {
        v.push("-f".into());
        v.push(f.display().to_string());
    }
    if let Some(p) = &global.project_name {
        v.push("-p".into());
        v.push(p.clone());
    }
    if let Some(d) = &global.project_directory {
        v.push("--project-directory".into());
        v.push(d.display().to_string());
    }
    for e in &global.env_file {
        v.push("--env-file".into());
        v.push(e.display().to_string());
    }
    for p in &global.profile {
        v.push("--profile".into());
        v.push(p.clone());
    }
    v
}

/// `up -d`: images first (here, with progress on the terminal), then the supervisor.
pub fn up_detached(
    global: &GlobalArgs,
    build: bool,
    no_build: bool,
    timeout: u64,
) -> Result<ExitCode> {
    let loaded = berth_compose::load(&load_options(global)?)?;
    let project = loaded.project.name.clone();
    let dir = project_dir(&project);
    let running = read_state(&dir);
    if running.is_some() && !build {
        // Fast path: nothing to build or pull when the images are there.
        if let Some(state) = &running {
            if fingerprints(&loaded).ok().as_ref() == Some(&state.fingerprints) {
                eprintln!("{project} is up (supervisor pid {})", state.supervisor_pid);
                return Ok(ExitCode::SUCCESS);
            }
        }
    }
    ensure_images(&loaded, build, no_build)?;
    if let Some(state) = running {
        let now = fingerprints(&loaded)?;
        if now == state.fingerprints {
            eprintln!("{project} is up (supervisor pid {})", state.supervisor_pid);
            return Ok(ExitCode::SUCCESS);
        }
        // Changed: recreate the project, stop-first. (Swapping without a
        // dropped request is the planner's start-first path, still to come.)
        let changed: Vec<&String> = now
            .iter()
            .filter(|(k, v)| state.fingerprints.get(*k) != Some(*v))
            .map(|(k, _)| k)
            .collect();
        let names: Vec<&str> = changed.iter().map(|s| s.as_str()).collect();
        eprintln!("{project}: recreating ({} changed)", names.join(", "));
        stop_supervisor(&dir, timeout, false)?;
    }
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.join("logs")).with_context(|| format!("creating {}", dir.display()))?;
    let log = fs::File::create(dir.join("supervisor.log"))?;
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args(global_args(global))
        .arg("__supervise")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // Its own session: the supervisor outlives this command and the terminal.
    // SAFETY: setsid is async-signal-safe and touches no memory.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd.spawn().context("starting the supervisor")?;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        if dir.join("ready").exists() {
            break;
        }
        if let Some(status) = child.try_wait()? {
            let log = fs::read_to_string(dir.join("supervisor.log")).unwrap_or_default();
            let reason = log
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("no output");
            let _ = fs::remove_dir_all(&dir);
            bail!(
                "{project} did not come up ({status}): {}",
                reason.trim_start_matches("error: ")
            );
        }
        if Instant::now() > deadline {
            bail!("{project}: the supervisor did not report ready within 10 minutes");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if let Some(state) = read_state(&dir) {
        for c in &state.containers {
            eprintln!(
                " ✔ Container {}  {}",
                c.name,
                if c.state == "running" {
                    "Started"
                } else {
                    "Exited"
                }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Container output to `<project>/logs/<container>.log`.
struct FileLogs {
    dir: PathBuf,
    files: Mutex<std::collections::HashMap<String, fs::File>>,
}

impl LogSink for FileLogs {
    fn line(&self, container: &str, line: &str) {
        let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        if !files.contains_key(container) {
            let path = self.dir.join(format!("{container}.log"));
            match fs::OpenOptions::new().create(true).append(true).open(path) {
                Ok(f) => {
                    files.insert(container.to_string(), f);
                }
                Err(_) => return,
            }
        }
        if let Some(f) = files.get_mut(container) {
            let _ = writeln!(f, "{line}");
        }
    }
}

/// The hidden `__supervise` command: run the project until `down`.
pub fn supervise(global: &GlobalArgs) -> Result<ExitCode> {
    install_signal_handlers();
    let loaded = berth_compose::load(&load_options(global)?)?;
    let project = &loaded.project;
    let dir = project_dir(&project.name);
    let images = crate::up_cmd::image_names(&loaded)?;
    let store = crate::image_cmd::open_store()?;
    let sink = std::sync::Arc::new(FileLogs {
        dir: dir.join("logs"),
        files: Mutex::new(Default::default()),
    });
    let engine = Embedded::open(&state_dir(), store)?;
    let mut running = engine.up(project, &images, sink)?;
    let socket_path = dir.join("supervisor.sock");
    let _ = fs::remove_file(&socket_path);
    let listener = UnixListener::bind(&socket_path).context("binding the supervisor socket")?;
    listener.set_nonblocking(true)?;
    let ports = |service: &str| -> Vec<String> {
        project.services[service]
            .ports
            .iter()
            .filter_map(|p| {
                let published = p.published.as_ref()?;
                let ip = p.host_ip.as_deref().unwrap_or("0.0.0.0");
                Some(format!("{ip}:{published}->{}/{}", p.target, p.protocol))
            })
            .collect()
    };
    let mut states: Vec<ContainerState> = running
        .containers()
        .into_iter()
        .map(|(service, name)| ContainerState {
            ports: ports(&service),
            name,
            service,
            state: "running".into(),
            exit_code: None,
        })
        .collect();
    let pid = std::process::id();
    let prints = fingerprints(&loaded)?;
    let save = |states: &Vec<ContainerState>| {
        write_state(
            &dir,
            &ProjectState {
                project: project.name.clone(),
                supervisor_pid: pid,
                containers: states.clone(),
                fingerprints: prints.clone(),
            },
        )
    };
    for (name, status) in running.poll() {
        mark_exited(&mut states, &name, status.code());
    }
    save(&states)?;
    fs::write(dir.join("ready"), b"")?;
    let mut timeout = Duration::from_secs(10);
    let mut remove_volumes = false;
    let mut reply_to: Option<UnixStream> = None;
    loop {
        let exited = running.poll();
        if !exited.is_empty() {
            for (name, status) in exited {
                mark_exited(&mut states, &name, status.code());
            }
            save(&states)?;
        }
        if interrupted() {
            break;
        }
        match listener.accept() {
            Ok((mut stream, _)) => {
                stream.set_nonblocking(false)?;
                let mut line = String::new();
                let _ = BufReader::new(stream.try_clone()?).read_line(&mut line);
                let mut words = line.split_whitespace();
                match words.next() {
                    Some("down") => {
                        if let Some(t) = words.next().and_then(|t| t.parse().ok()) {
                            timeout = Duration::from_secs(t);
                        }
                        remove_volumes = words.next() == Some("volumes");
                        reply_to = Some(stream);
                        break;
                    }
                    _ => {
                        let _ = writeln!(stream, "error: unknown request {:?}", line.trim());
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(e.into()),
        }
    }
    let result = running.down(timeout);
    if remove_volumes {
        for (key, v) in &project.volumes {
            if v.external == Some(true) {
                continue;
            }
            let name = v
                .name
                .clone()
                .unwrap_or_else(|| format!("{}_{key}", project.name));
            let _ = fs::remove_dir_all(state_dir().join("volumes").join(name));
        }
    }
    let _ = fs::remove_file(&socket_path);
    let _ = fs::remove_file(dir.join("state.json"));
    let _ = fs::remove_file(dir.join("ready"));
    if let Some(mut s) = reply_to {
        let _ = match &result {
            Ok(()) => writeln!(s, "ok"),
            Err(e) => writeln!(s, "error: {e}"),
        };
    }
    result?;
    Ok(ExitCode::SUCCESS)
}

fn mark_exited(states: &mut [ContainerState], name: &str, code: i32) {
    if let Some(c) = states.iter_mut().find(|c| c.name == name) {
        c.state = "exited".into();
        c.exit_code = Some(code);
    }
}

pub fn down(global: &GlobalArgs, args: DownArgs) -> Result<ExitCode> {
    let project = project_name(global)?;
    let dir = project_dir(&project);
    let stopped =
        stop_supervisor(&dir, args.timeout, args.volumes).with_context(|| project.clone())?;
    let _ = fs::remove_dir_all(&dir);
    if !stopped {
        eprintln!("{project} is not running");
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(" ✔ {project} removed");
    Ok(ExitCode::SUCCESS)
}

pub fn ps(global: &GlobalArgs, args: PsArgs) -> Result<ExitCode> {
    let project = project_name(global)?;
    let containers = read_state(&project_dir(&project))
        .map(|s| s.containers)
        .unwrap_or_default();
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
            let status = match c.exit_code {
                Some(code) => format!("exited ({code})"),
                None => c.state.clone(),
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

pub fn logs(global: &GlobalArgs, args: LogsArgs) -> Result<ExitCode> {
    use std::io::IsTerminal;
    let loaded = berth_compose::load(&load_options(global)?)?;
    let project = loaded.project.name.clone();
    let dir = project_dir(&project).join("logs");
    let colour = !args.no_color && std::io::stdout().is_terminal() && global.colour();
    let mut files: Vec<(String, fs::File)> = Vec::new();
    let mut entries: Vec<PathBuf> = fs::read_dir(&dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    entries.sort();
    for path in entries {
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let service = name
            .strip_prefix(&format!("{project}-"))
            .and_then(|r| r.rsplit_once('-').map(|(s, _)| s.to_string()))
            .unwrap_or_default();
        if !args.services.is_empty() && !args.services.contains(&service) {
            continue;
        }
        files.push((name, fs::File::open(&path)?));
    }
    let width = files.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    // False once stdout is closed (`berth logs | head`).
    let print = |name: &str, line: &str, i: usize| -> bool {
        let codes = ["36", "33", "32", "35", "34", "96"];
        let mut o = std::io::stdout().lock();
        if colour {
            writeln!(
                o,
                "\x1b[{}m{name:<width$} | \x1b[0m{line}",
                codes[i % codes.len()]
            )
            .is_ok()
        } else {
            writeln!(o, "{name:<width$} | {line}").is_ok()
        }
    };
    for (i, (name, f)) in files.iter_mut().enumerate() {
        let mut text = String::new();
        f.read_to_string(&mut text)?;
        let lines: Vec<&str> = text.lines().collect();
        let skip = args
            .tail
            .map(|t| lines.len().saturating_sub(t))
            .unwrap_or(0);
        for l in &lines[skip..] {
            if !print(name, l, i) {
                return Ok(ExitCode::SUCCESS);
            }
        }
    }
    if args.follow {
        let state_dir = project_dir(&project);
        while read_state(&state_dir).is_some() {
            for (i, (name, f)) in files.iter_mut().enumerate() {
                let pos = f.stream_position()?;
                let mut text = String::new();
                f.read_to_string(&mut text)?;
                // Only whole lines; a partial one is read again next time.
                match text.rfind('\n') {
                    Some(end) => {
                        for l in text[..end].lines() {
                            if !print(name, l, i) {
                                return Ok(ExitCode::SUCCESS);
                            }
                        }
                        f.seek(SeekFrom::Start(pos + end as u64 + 1))?;
                    }
                    None => {
                        f.seek(SeekFrom::Start(pos))?;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    Ok(ExitCode::SUCCESS)
}
