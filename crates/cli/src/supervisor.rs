//! The per-project supervisor: one berth process per running project.
//!
//! `berth up` starts it on demand (berth itself, re-executed with a hidden
//! subcommand, in its own session) and sends it requests over a unix socket
//! under `<state>/projects/<project>/`. It owns the project's
//! [`ProjectRuntime`]: it applies plans, holds the port proxies, reaps
//! containers and restarts them by policy, writes each container's output to
//! `logs/<container>.log` and the project's state to `state.json` (which
//! `ps`, `logs` and a no-op `up` read without asking it). After `down`, or
//! once a first `up` failed and nothing runs, it removes its files and exits.
//!
//! The protocol is one JSON request line, answered by JSON lines: progress,
//! then one final `ok` or `error`.

use crate::up_cmd::{image_names, install_signal_handlers, interrupted};
use anyhow::{bail, Context, Result};
use berth_compose::Options;
use berth_engine::{plan, Desired, ObservedContainer, PlanOptions};
use berth_engine_embedded::{
    service_images, Engine, Event, Footprint, LiveRecord, LogSink, OneOff, ProjectRuntime,
};
use berth_oci::store::state_dir;
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub fn project_dir(project: &str) -> PathBuf {
    state_dir().join("projects").join(project)
}

/// The loader's inputs, as the CLI saw them: the supervisor loads the
/// project exactly as the command that sent it would have.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadRequest {
    pub files: Vec<PathBuf>,
    pub project_directory: Option<PathBuf>,
    pub project_name: Option<String>,
    pub env_files: Vec<PathBuf>,
    pub profiles: Vec<String>,
    pub os_env: IndexMap<String, String>,
    pub cwd: PathBuf,
    pub stdin: Option<String>,
}

impl From<&Options> for LoadRequest {
    fn from(o: &Options) -> Self {
        LoadRequest {
            files: o.files.clone(),
            project_directory: o.project_directory.clone(),
            project_name: o.project_name.clone(),
            env_files: o.env_files.clone(),
            profiles: o.profiles.clone(),
            os_env: o.os_env.clone(),
            cwd: o.cwd.clone(),
            stdin: o.stdin.clone(),
        }
    }
}

impl From<LoadRequest> for Options {
    fn from(r: LoadRequest) -> Self {
        Options {
            files: r.files,
            project_directory: r.project_directory,
            project_name: r.project_name,
            env_files: r.env_files,
            profiles: r.profiles,
            os_env: r.os_env,
            cwd: r.cwd,
            stdin: r.stdin,
            ..Options::default()
        }
    }
}

/// The `up` flags that shape a plan, on the wire.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PlanFlags {
    pub services: Vec<String>,
    pub force_recreate: bool,
    pub no_recreate: bool,
    pub always_recreate_deps: bool,
    pub renew_anon_volumes: bool,
    pub no_deps: bool,
    pub scale: BTreeMap<String, u32>,
    pub remove_orphans: bool,
}

impl From<&PlanFlags> for PlanOptions {
    fn from(f: &PlanFlags) -> Self {
        PlanOptions {
            services: f.services.clone(),
            force_recreate: f.force_recreate,
            no_recreate: f.no_recreate,
            always_recreate_deps: f.always_recreate_deps,
            renew_anon_volumes: f.renew_anon_volumes,
            no_deps: f.no_deps,
            scale: f.scale.clone(),
            remove_orphans: f.remove_orphans,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Up {
        load: Box<LoadRequest>,
        flags: PlanFlags,
    },
    Down {
        /// `down -t`; each service's `stop_grace_period` when absent.
        timeout_secs: Option<u64>,
    },
    Stop {
        services: Vec<String>,
        timeout_secs: Option<u64>,
    },
    Start {
        services: Vec<String>,
    },
    Restart {
        services: Vec<String>,
        timeout_secs: Option<u64>,
    },
    Kill {
        services: Vec<String>,
        signal: i32,
    },
    Rm {
        services: Vec<String>,
        force: bool,
    },
    Pause {
        services: Vec<String>,
        pause: bool,
    },
    /// A one-off container; its stdin, stdout and stderr come with the
    /// request (`SCM_RIGHTS`) unless detached.
    Run {
        load: Box<LoadRequest>,
        service: String,
        command: Option<Vec<String>>,
        entrypoint: Option<Vec<String>>,
        env: Vec<String>,
        user: Option<String>,
        workdir: Option<String>,
        service_ports: bool,
        ports: Vec<String>,
        name: Option<String>,
        no_deps: bool,
        rm: bool,
        detach: bool,
    },
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    Progress(String),
    Ok,
    Error(String),
    /// A one-off container's name, once it started.
    Started(String),
    /// An attached one-off exited with this code.
    Exited(i32),
}

/// What `ps` shows; written by the supervisor whenever it changes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProjectState {
    pub project: String,
    pub supervisor_pid: u32,
    pub containers: Vec<ContainerState>,
    /// What the planner compares on the next `up`.
    pub observed: Vec<ObservedContainer>,
    /// What to clean up if the supervisor dies without `down`.
    #[serde(default)]
    pub footprint: Footprint,
    /// What the next supervisor needs to take the containers over.
    #[serde(default)]
    pub records: Vec<LiveRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerState {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Service")]
    pub service: String,
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Pid")]
    pub pid: Option<i32>,
    /// running, exited or restarting
    #[serde(rename = "State")]
    pub state: String,
    #[serde(rename = "ExitCode")]
    pub exit_code: Option<i32>,
    #[serde(rename = "RestartCount")]
    pub restarts: u32,
    /// starting, healthy or unhealthy; absent without a healthcheck
    #[serde(rename = "Health", default, skip_serializing_if = "Option::is_none")]
    pub health: Option<String>,
    #[serde(rename = "IPAddress")]
    pub ip: Option<String>,
    #[serde(rename = "Publishers")]
    pub ports: Vec<String>,
    #[serde(rename = "Labels", default)]
    pub labels: std::collections::BTreeMap<String, String>,
    #[serde(rename = "Image", default)]
    pub image: String,
}

/// Whether `pid` is a live berth supervisor (not a process that reused
/// the pid of a dead one).
fn alive(pid: u32) -> bool {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).contains("__supervise"))
        .unwrap_or(false)
}

/// The state a supervisor that died left behind, if any.
fn orphaned_state(project: &str) -> Option<ProjectState> {
    let bytes = fs::read(project_dir(project).join("state.json")).ok()?;
    let state: ProjectState = serde_json::from_slice(&bytes).ok()?;
    (!alive(state.supervisor_pid)).then_some(state)
}

fn orphaned(project: &str) -> bool {
    orphaned_state(project).is_some()
}

/// Any command on a project whose supervisor died starts a new one first,
/// which takes the containers over (ports, logs, restarts come back).
pub fn take_over_if_orphaned(project: &str) -> Result<()> {
    if orphaned_state(project).is_some_and(|s| !s.records.is_empty()) {
        connect(project, true)?;
    }
    Ok(())
}

/// After a supervisor died without `down` (killed, a crash, a reboot):
/// remove what it left from its last recorded state. True when there was
/// something to clean.
pub fn recover(project: &str) -> Result<bool> {
    let dir = project_dir(project);
    let Ok(bytes) = fs::read(dir.join("state.json")) else {
        return Ok(false);
    };
    let Ok(state) = serde_json::from_slice::<ProjectState>(&bytes) else {
        return Ok(false);
    };
    if alive(state.supervisor_pid) {
        return Ok(false);
    }
    for problem in state.footprint.remove(&state_dir()) {
        eprintln!("warning: cleaning up after the supervisor of {project}: {problem}");
    }
    cleanup(&dir);
    Ok(true)
}

/// The state of a project whose supervisor is alive.
pub fn read_state(dir: &Path) -> Option<ProjectState> {
    let s: ProjectState = serde_json::from_slice(&fs::read(dir.join("state.json")).ok()?).ok()?;
    alive(s.supervisor_pid).then_some(s)
}

fn write_state(dir: &Path, rt: &ProjectRuntime) -> Result<()> {
    let state = ProjectState {
        project: rt.project().to_string(),
        supervisor_pid: std::process::id(),
        containers: rt
            .containers()
            .into_iter()
            .map(|c| ContainerState {
                state: if c.paused {
                    "paused".into()
                } else if c.restarting {
                    "restarting".into()
                } else if c.running {
                    "running".into()
                } else {
                    "exited".into()
                },
                name: c.name,
                service: c.service,
                id: c.id,
                pid: c.pid,
                exit_code: c.exit_code,
                restarts: c.restarts,
                health: c.health,
                ip: c.ip.map(|ip| ip.to_string()),
                ports: c.ports,
                labels: c.labels,
                image: c.image,
            })
            .collect(),
        observed: rt.observed(),
        footprint: rt.footprint(),
        records: rt.records(),
    };
    let tmp = dir.join("state.json.tmp");
    fs::write(&tmp, serde_json::to_vec_pretty(&state)?)?;
    fs::rename(&tmp, dir.join("state.json"))?;
    Ok(())
}

/// A connection to the project's supervisor; one is started when none
/// runs and `start_one` says so.
pub fn connect(project: &str, start_one: bool) -> Result<Option<UnixStream>> {
    match UnixStream::connect(project_dir(project).join("supervisor.sock")) {
        Ok(s) => Ok(Some(s)),
        Err(_) if start_one => Ok(Some(start(project)?)),
        Err(_) => Ok(None),
    }
}

/// Send `request` to the project's supervisor, starting one if none runs
/// (only for `up`). Progress lines go to `progress`.
pub fn send(project: &str, request: &Request, progress: &dyn Fn(&str)) -> Result<bool> {
    let dir = project_dir(project);
    let Some(stream) = connect(project, matches!(request, Request::Up { .. }))? else {
        return Ok(false);
    };
    let mut writer = stream.try_clone()?;
    writeln!(writer, "{}", serde_json::to_string(request)?)?;
    // Short reads so that a Ctrl-C is seen while the supervisor works
    // (a dependency that never gets healthy can take minutes): the first
    // one hangs up our half of the connection, which tells the supervisor
    // to give up and undo; a second one leaves at once (the handler exits).
    stream.set_read_timeout(Some(Duration::from_millis(100)))?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    let mut cancelled = false;
    loop {
        match reader.read_line(&mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                // Only an `up` or a `run` is given up; a `down` is let finish.
                let cancellable = matches!(request, Request::Up { .. } | Request::Run { .. });
                if cancellable && interrupted() && !cancelled {
                    cancelled = true;
                    eprintln!("Gracefully stopping... (press Ctrl+C again to force)");
                    let _ = writer.shutdown(std::net::Shutdown::Write);
                }
                continue;
            }
            Err(e) => return Err(anyhow::Error::new(e).context("reading the supervisor's reply")),
        }
        if !line.ends_with('\n') {
            continue;
        }
        let reply = serde_json::from_str::<Reply>(line.trim_end());
        match reply {
            Ok(Reply::Progress(p)) => progress(&p),
            Ok(Reply::Ok) => return Ok(true),
            Ok(Reply::Error(e)) => bail!("{e}"),
            Ok(Reply::Started(_) | Reply::Exited(_)) => {}
            Err(_) => bail!("unexpected reply from the supervisor: {}", line.trim_end()),
        }
        line.clear();
    }
    bail!(
        "the supervisor of {project} went away without an answer (see {})",
        dir.join("supervisor.log").display()
    )
}

/// An exclusive `flock` on `path`, held until the file is dropped.
fn lock(path: &Path, wait: bool) -> Result<Option<fs::File>> {
    use std::os::fd::AsRawFd;
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let op = if wait {
        libc::LOCK_EX
    } else {
        libc::LOCK_EX | libc::LOCK_NB
    };
    // SAFETY: flock on an fd this function owns.
    if unsafe { libc::flock(f.as_raw_fd(), op) } == 0 {
        Ok(Some(f))
    } else {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            Ok(None)
        } else {
            Err(e).with_context(|| format!("locking {}", path.display()))
        }
    }
}

/// Start the supervisor of `project` and connect to it. Two commands
/// doing this at once serialize on a lock: the second finds the first's
/// supervisor and uses it.
fn start(project: &str) -> Result<UnixStream> {
    let dir = project_dir(project);
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let _guard = lock(&dir.join("start.lock"), true)?;
    if let Ok(s) = UnixStream::connect(dir.join("supervisor.sock")) {
        return Ok(s);
    }
    if orphaned(project) {
        eprintln!("{project}: its supervisor had died; a new one takes over its containers");
    }
    // A dead supervisor's socket is stale; its state.json stays for the new
    // one to take its containers over, and logs are kept.
    for f in ["supervisor.sock", "ready"] {
        let _ = fs::remove_file(dir.join(f));
    }
    fs::create_dir_all(dir.join("logs")).with_context(|| format!("creating {}", dir.display()))?;
    let log = fs::File::create(dir.join("supervisor.log"))?;
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.arg("__supervise")
        .arg(project)
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
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(s) = UnixStream::connect(dir.join("supervisor.sock")) {
            // Reaped by nobody otherwise: the child is ours until we exit,
            // and a supervisor outliving us is re-parented to init.
            std::thread::spawn(move || child.wait());
            return Ok(s);
        }
        if let Some(status) = child.try_wait()? {
            let log = fs::read_to_string(dir.join("supervisor.log")).unwrap_or_default();
            let reason = log
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("no output");
            bail!(
                "the supervisor of {project} exited ({status}): {}",
                reason.trim_start_matches("error: ")
            );
        }
        if Instant::now() > deadline {
            bail!("the supervisor of {project} did not start within 30 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Container output to `logs/<container>.log`, one line per line,
/// prefixed with the time it was read (for `logs -t`), rotated to
/// `<container>.log.1`… by `logging.options` `max-size`/`max-file`.
struct FileLogs {
    dir: PathBuf,
    files: Mutex<std::collections::HashMap<String, LogFile>>,
    configs: Mutex<std::collections::HashMap<String, crate::logs::LogConfig>>,
    /// Lines that could not be written (a full disk), per container, and
    /// why: said in one marker line once writing works again.
    lost: Mutex<std::collections::HashMap<String, (u64, String)>>,
}

struct LogFile {
    file: fs::File,
    size: u64,
}

impl LogFile {
    /// Appends whole lines: a write cut short by a full disk is taken back
    /// to the last line it completed, so a reader never meets half a line.
    /// On failure, how many bytes of `text` stayed.
    fn append(&mut self, text: &str) -> Result<(), (std::io::Error, usize)> {
        let before = self.size;
        match self.file.write_all(text.as_bytes()) {
            Ok(()) => {
                self.size += text.len() as u64;
                Ok(())
            }
            Err(e) => {
                let now = self.file.metadata().map(|m| m.len()).unwrap_or(before);
                let written = (now.saturating_sub(before) as usize).min(text.len());
                let kept = text[..written].rfind('\n').map_or(0, |i| i + 1);
                let _ = self.file.set_len(before + kept as u64);
                self.size = before + kept as u64;
                Err((e, kept))
            }
        }
    }
}

impl FileLogs {
    /// Write `batch` to `file`, after a marker line for the lines lost
    /// before it; what does not fit (a full disk) is lost and counted, to
    /// be said by the next marker.
    fn write_batch(&self, container: &str, file: &mut LogFile, batch: &str) {
        let mut lost = self.lost.lock().unwrap_or_else(|e| e.into_inner());
        let mut text = String::new();
        let earlier = lost.get(container).map(|(n, _)| *n);
        if let Some(n) = earlier {
            let why = &lost[container].1;
            text.push_str(&format!(
                "{} [berth: {n} lines lost: {why}]\n",
                crate::logs::timestamp_now()
            ));
        }
        let marker = text.len();
        text.push_str(batch);
        match file.append(&text) {
            Ok(()) => {
                lost.remove(container);
            }
            Err((e, kept)) => {
                // Once the marker is written its count is said.
                let still = if kept >= marker {
                    0
                } else {
                    earlier.unwrap_or(0)
                };
                let dropped = text[kept.max(marker)..].matches('\n').count() as u64;
                lost.insert(container.to_string(), (still + dropped, e.to_string()));
            }
        }
    }
}

impl LogSink for FileLogs {
    fn configure(&self, container: &str, logging: Option<&serde_json::Value>) {
        let config = crate::logs::LogConfig::from_compose(logging);
        let mut configs = self.configs.lock().unwrap_or_else(|e| e.into_inner());
        configs.insert(container.to_string(), config);
    }

    fn line(&self, container: &str, line: &str) {
        self.lines(container, &[line.to_string()]);
    }

    /// One lock, one clock reading and one write per batch: a chatty
    /// container must not cost a syscall per line.
    fn lines(&self, container: &str, lines: &[String]) {
        let config = self
            .configs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(container)
            .cloned()
            .unwrap_or_default();
        if config.driver == "none" {
            return;
        }
        let path = self.dir.join(format!("{container}.log"));
        let stamp = crate::logs::timestamp_now();
        let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        let mut batch = String::new();
        for line in lines {
            let entry = format!("{stamp} {line}\n");
            let full = config.max_size.is_some_and(|max| {
                files
                    .get(container)
                    .is_some_and(|f| f.size + (batch.len() + entry.len()) as u64 > max)
            });
            if full {
                // Write what fits in this file, then rotate.
                if let Some(f) = files.get_mut(container) {
                    self.write_batch(container, f, &batch);
                }
                batch.clear();
                files.remove(container);
                crate::logs::rotate(&path, config.max_file);
            }
            if !files.contains_key(container) {
                match fs::OpenOptions::new().create(true).append(true).open(&path) {
                    Ok(f) => {
                        let size = f.metadata().map(|m| m.len()).unwrap_or(0);
                        files.insert(container.to_string(), LogFile { file: f, size });
                    }
                    Err(_) => return,
                }
            }
            batch.push_str(&entry);
        }
        if let Some(f) = files.get_mut(container) {
            // A full disk loses lines, never the container.
            self.write_batch(container, f, &batch);
        }
    }
}

fn reply(stream: &mut UnixStream, r: &Reply) {
    if let Ok(text) = serde_json::to_string(r) {
        let _ = writeln!(stream, "{text}");
    }
}

/// The hidden `__supervise PROJECT` command.
pub fn supervise(project: &str) -> Result<ExitCode> {
    // Containers inherit our signal mask through the runtime: whatever the
    // command that started us blocked must not stay blocked in them.
    // SAFETY: sigprocmask with a zeroed (empty) set.
    unsafe {
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
    }
    install_signal_handlers();
    // Every relayed connection holds 2 to 6 fds: 1,000 kept-alive clients
    // need more than the usual soft limit of 1,024.
    match berth_engine_embedded::raise_fd_limit() {
        Ok(soft) => eprintln!("open files limit: {soft}"),
        Err(e) => eprintln!("warning: {e}"),
    }
    let dir = project_dir(project);
    fs::create_dir_all(dir.join("logs"))?;
    // One supervisor per project, for as long as it lives.
    let Some(_lock) = lock(&dir.join("supervisor.lock"), false)? else {
        bail!("another supervisor already runs project {project}");
    };
    let store = crate::image_cmd::open_store()?;
    let engine = Engine::open(&state_dir(), store)?;
    let sink = Arc::new(FileLogs {
        dir: dir.join("logs"),
        files: Mutex::new(Default::default()),
        configs: Mutex::new(Default::default()),
        lost: Mutex::new(Default::default()),
    });
    // A supervisor that died left its containers running: take them over.
    let mut rt = match orphaned_state(project) {
        Some(old) if !old.records.is_empty() => {
            let (rt, problems) =
                engine.adopt(project, sink, old.footprint.networks.clone(), old.records);
            eprintln!(
                "took over {} containers from supervisor {}",
                rt.containers().len(),
                old.supervisor_pid
            );
            for p in problems {
                eprintln!("could not take over: {p}");
            }
            rt
        }
        _ => engine.project(project, sink),
    };
    // The state first: a command that finds the socket may read it at
    // once, and must not see the dead supervisor's.
    write_state(&dir, &rt)?;
    let socket_path = dir.join("supervisor.sock");
    let _ = fs::remove_file(&socket_path);
    let listener = UnixListener::bind(&socket_path).context("binding the supervisor socket")?;
    listener.set_nonblocking(true)?;
    let mut timeout: Option<Duration> = None;
    let mut reply_to: Option<UnixStream> = None;
    // Attached one-offs: (container, the client's stream, --rm).
    let mut attached_runs: Vec<(String, UnixStream, bool)> = Vec::new();
    loop {
        let events = rt.poll();
        record(&dir, &events);
        if !events.is_empty() {
            let mut i = 0;
            while i < attached_runs.len() {
                match rt.exit_code(&attached_runs[i].0) {
                    Some(code) => {
                        let (name, mut stream, rm) = attached_runs.remove(i);
                        if rm {
                            let _ = rt.remove_containers(&[name], false);
                            record(&dir, &rt.poll());
                        }
                        reply(&mut stream, &Reply::Exited(code));
                    }
                    None => i += 1,
                }
            }
            // A full disk must not take the project down: the old state
            // stays whole (writes go through a rename) and the next change
            // tries again.
            if let Err(e) = write_state(&dir, &rt) {
                eprintln!("cannot write state.json: {e:#}");
            }
        }
        if interrupted() {
            break;
        }
        match listener.accept() {
            Ok((mut stream, _)) => {
                stream.set_nonblocking(false)?;
                let (line, fds) = crate::fdpass::recv_line_with_fds(&stream).unwrap_or_default();
                match serde_json::from_str::<Request>(&line) {
                    Ok(Request::Up { load, flags }) => {
                        let first = rt.containers().is_empty();
                        let watch = CancelWatch::start(&stream, rt.cancel_flag());
                        let result = up(&mut rt, *load, &flags, &mut stream, &dir);
                        watch.stop();
                        let _ = write_state(&dir, &rt);
                        match result {
                            Ok(()) => reply(&mut stream, &Reply::Ok),
                            Err(e) => {
                                let text = crate::error_chain(&e);
                                eprintln!("up failed: {text}");
                                if first {
                                    // Nothing is left half-made: a first
                                    // `up` that failed takes down what it
                                    // started, and the supervisor goes.
                                    let _ = rt.down(Some(Duration::from_secs(2)));
                                    cleanup(&dir);
                                    reply(&mut stream, &Reply::Error(text));
                                    return Ok(ExitCode::FAILURE);
                                }
                                reply(&mut stream, &Reply::Error(text));
                            }
                        }
                    }
                    Ok(Request::Down { timeout_secs }) => {
                        timeout = timeout_secs.map(Duration::from_secs);
                        reply_to = Some(stream);
                        break;
                    }
                    Ok(Request::Run {
                        load,
                        service,
                        command,
                        entrypoint,
                        env,
                        user,
                        workdir,
                        service_ports,
                        ports,
                        name,
                        no_deps,
                        rm,
                        detach,
                    }) => {
                        let stdio = <[OwnedFd; 3]>::try_from(fds).ok();
                        let run = OneOffRequest {
                            service,
                            one_off: OneOff {
                                command,
                                entrypoint,
                                env,
                                user,
                                workdir,
                                service_ports,
                                ports: Vec::new(),
                                name,
                                stdio: if detach { None } else { stdio },
                            },
                            ports,
                            no_deps,
                        };
                        let result = run_one_off(&mut rt, *load, run, &mut stream, &dir);
                        let _ = write_state(&dir, &rt);
                        match result {
                            Ok(name) => {
                                reply(&mut stream, &Reply::Started(name.clone()));
                                if detach {
                                    reply(&mut stream, &Reply::Ok);
                                } else {
                                    attached_runs.push((name, stream, rm));
                                }
                            }
                            Err(e) => reply(&mut stream, &Reply::Error(crate::error_chain(&e))),
                        }
                    }
                    Ok(other) => {
                        let result = lifecycle(&mut rt, other, &mut stream);
                        for note in rt.take_notes() {
                            reply(&mut stream, &Reply::Progress(format!("warning: {note}")));
                        }
                        let events = rt.poll();
                        record(&dir, &events);
                        let _ = write_state(&dir, &rt);
                        match result {
                            Ok(()) => reply(&mut stream, &Reply::Ok),
                            Err(e) => reply(&mut stream, &Reply::Error(crate::error_chain(&e))),
                        }
                    }
                    Err(e) => reply(&mut stream, &Reply::Error(format!("bad request: {e}"))),
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e.into()),
        }
    }
    // The runtime goes with down; its notes are taken as it goes.
    let (result, notes) = rt.down_with_notes(timeout);
    cleanup(&dir);
    for note in &notes {
        eprintln!("{note}");
    }
    if let Some(mut s) = reply_to {
        for note in notes {
            reply(&mut s, &Reply::Progress(format!("warning: {note}")));
        }
        match &result {
            Ok(()) => reply(&mut s, &Reply::Ok),
            Err(e) => reply(&mut s, &Reply::Error(e.to_string())),
        }
    }
    result?;
    Ok(ExitCode::SUCCESS)
}

/// While an `up` is applied, watches for the reasons to give it up: the
/// client hung up (its Ctrl-C) or this supervisor was told to stop; either
/// sets the runtime's cancel flag, which ends its waits at once.
struct CancelWatch {
    done: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    flag: Arc<std::sync::atomic::AtomicBool>,
}

impl CancelWatch {
    fn start(stream: &UnixStream, flag: Arc<std::sync::atomic::AtomicBool>) -> CancelWatch {
        use std::os::fd::AsRawFd;
        use std::sync::atomic::Ordering;
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let client = stream.try_clone().ok();
        let thread = {
            let (done, flag) = (done.clone(), flag.clone());
            std::thread::spawn(move || {
                while !done.load(Ordering::SeqCst) {
                    let hung_up = client.as_ref().is_some_and(|c| {
                        let mut pfd = libc::pollfd {
                            fd: c.as_raw_fd(),
                            events: libc::POLLRDHUP,
                            revents: 0,
                        };
                        // SAFETY: one pollfd on a descriptor `c` keeps open.
                        let n = unsafe { libc::poll(&mut pfd, 1, 50) };
                        n > 0
                            && pfd.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0
                    });
                    if client.is_none() {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    if hung_up || interrupted() {
                        flag.store(true, Ordering::SeqCst);
                        return;
                    }
                }
            })
        };
        CancelWatch {
            done,
            thread: Some(thread),
            flag,
        }
    }

    fn stop(mut self) {
        use std::sync::atomic::Ordering;
        self.done.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        // The next request starts with a clean slate.
        self.flag.store(false, Ordering::SeqCst);
    }
}

/// `stop`, `start`, `restart`, `kill`, `rm` on the containers of some services.
fn lifecycle(rt: &mut ProjectRuntime, request: Request, stream: &mut UnixStream) -> Result<()> {
    let secs = |t: Option<u64>| t.map(Duration::from_secs);
    let mut say = |verb: &str, names: &[String]| {
        for n in names {
            reply(stream, &Reply::Progress(format!("Container {n}  {verb}")));
        }
    };
    match request {
        Request::Stop {
            services,
            timeout_secs,
        } => {
            let names = rt.select(&services)?;
            rt.stop_containers(&names, secs(timeout_secs));
            say("Stopped", &names);
        }
        Request::Start { services } => {
            let names = rt.select(&services)?;
            let started = rt.start_containers(&names)?;
            say("Started", &started);
        }
        Request::Restart {
            services,
            timeout_secs,
        } => {
            let names = rt.select(&services)?;
            rt.stop_containers(&names, secs(timeout_secs));
            let started = rt.start_containers(&names)?;
            say("Restarted", &started);
        }
        Request::Kill { services, signal } => {
            let names = rt.select(&services)?;
            rt.kill_containers(&names, signal)?;
            say("Killed", &names);
        }
        Request::Pause { services, pause } => {
            let names = rt.select(&services)?;
            rt.pause_containers(&names, pause)?;
            say(if pause { "Paused" } else { "Unpaused" }, &names);
        }
        Request::Rm { services, force } => {
            let names = rt.select(&services)?;
            let removed = rt.remove_containers(&names, force)?;
            say("Removed", &removed);
        }
        Request::Up { .. } | Request::Down { .. } | Request::Run { .. } => {
            bail!("not a lifecycle request")
        }
    }
    Ok(())
}

/// One line of `events.jsonl` per event (what `berth events` reads), and
/// the same in the supervisor's log.
fn record(dir: &Path, events: &[Event]) {
    if events.is_empty() {
        return;
    }
    let mut lines = String::new();
    for e in events {
        let (action, container, attrs) = match e {
            Event::Started { container } => ("start", container, serde_json::json!({})),
            Event::Exited {
                container, code, ..
            } => ("die", container, serde_json::json!({ "exitCode": code })),
            Event::Killed { container, signal } => {
                ("kill", container, serde_json::json!({ "signal": signal }))
            }
            Event::Removed { container } => ("destroy", container, serde_json::json!({})),
            Event::Health { container, status } => (
                "health_status",
                container,
                serde_json::json!({ "status": status.as_str() }),
            ),
            Event::Restarted {
                container,
                restarts,
            } => (
                "restart",
                container,
                serde_json::json!({ "restartCount": restarts }),
            ),
            Event::RestartFailed { container, message } => (
                "restart-failed",
                container,
                serde_json::json!({ "error": message }),
            ),
        };
        let line = serde_json::json!({
            "time": crate::logs::timestamp_now(),
            "type": "container",
            "action": action,
            "id": container,
            "attributes": attrs,
        });
        eprintln!("{line}");
        lines.push_str(&line.to_string());
        lines.push('\n');
    }
    if let Ok(mut f) = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("events.jsonl"))
    {
        let _ = f.write_all(lines.as_bytes());
    }
}

fn cleanup(dir: &Path) {
    for f in ["supervisor.sock", "state.json", "state.json.tmp"] {
        let _ = fs::remove_file(dir.join(f));
    }
}

struct OneOffRequest {
    service: String,
    one_off: OneOff,
    ports: Vec<String>,
    no_deps: bool,
}

/// `run`: bring up what the service depends on (unless `--no-deps`), then
/// start the one-off container.
fn run_one_off(
    rt: &mut ProjectRuntime,
    load: LoadRequest,
    mut run: OneOffRequest,
    stream: &mut UnixStream,
    dir: &Path,
) -> Result<String> {
    let loaded = berth_compose::load(&load.into())?;
    let project = &loaded.project;
    let svc = project
        .services
        .get(&run.service)
        .with_context(|| format!("no such service: {}", run.service))?;
    for (i, spec) in run.ports.iter().enumerate() {
        let path = berth_compose::error::KeyPath::root()
            .key("--publish")
            .index(i);
        for p in berth_compose::normalize::parse_port_spec(spec, &path)
            .map_err(|e| anyhow::anyhow!("--publish {spec}: {}", e.message))?
        {
            run.one_off.ports.push(serde_json::from_value(p)?);
        }
    }
    let names = image_names(&loaded)?;
    let runtimes = crate::up_cmd::runtime_mounts(&loaded, true)?;
    let images = service_images(rt.store(), &names, &runtimes)?;
    let files = berth_engine::project_files::resolve(project, &loaded.environment)?;
    rt.set_project_files(files.clone());
    let deps: Vec<String> = svc.depends_on.keys().cloned().collect();
    if !run.no_deps && !deps.is_empty() {
        let mut desired = Desired::new(project).with_project_files(&files);
        for (service, image) in &images {
            desired = desired.with_image_digest(service, &image.digest);
        }
        let options = PlanOptions {
            services: deps,
            ..PlanOptions::default()
        };
        let plan = plan(&desired, &rt.observed(), &options)?;
        let progress = |line: &str| {
            let mut s: &UnixStream = stream;
            if let Ok(text) = serde_json::to_string(&Reply::Progress(line.to_string())) {
                let _ = writeln!(s, "{text}");
            }
        };
        rt.apply(project, &images, &plan, &progress)?;
        record(dir, &rt.poll());
    }
    Ok(rt.run_one_off(project, &images, &run.service, run.one_off)?)
}

/// Load, plan against what runs, apply; progress to the client.
fn up(
    rt: &mut ProjectRuntime,
    load: LoadRequest,
    flags: &PlanFlags,
    stream: &mut UnixStream,
    dir: &Path,
) -> Result<()> {
    let loaded = berth_compose::load(&load.into())?;
    let names = image_names(&loaded)?;
    let runtimes = crate::up_cmd::runtime_mounts(&loaded, true)?;
    let images = service_images(rt.store(), &names, &runtimes)?;
    // Secrets and configs are read now, from the files and the environment
    // of the `up` that asked (its client's), before anything is planned.
    let files = berth_engine::project_files::resolve(&loaded.project, &loaded.environment)?;
    rt.set_project_files(files.clone());
    let mut desired = Desired::new(&loaded.project).with_project_files(&files);
    for (service, image) in &images {
        desired = desired.with_image_digest(service, &image.digest);
    }
    let plan = plan(&desired, &rt.observed(), &flags.into())?;
    for w in &plan.warnings {
        reply(stream, &Reply::Progress(format!("warning: {w}")));
    }
    let progress = |line: &str| {
        let mut s: &UnixStream = stream;
        if let Ok(text) = serde_json::to_string(&Reply::Progress(line.to_string())) {
            let _ = writeln!(s, "{text}");
        }
    };
    let applied = rt.apply(&loaded.project, &images, &plan, &progress);
    for note in rt.take_notes() {
        reply(stream, &Reply::Progress(format!("warning: {note}")));
    }
    applied?;
    // A container that dies right away (a typo in its command, a missing
    // file) is worth a word: docker compose says nothing and leaves the
    // user to find it in `ps -a`. It stays listed, exited with its code, and
    // `up` succeeds as docker compose's does (`--exit-code-from` and
    // `--abort-on-container-exit` read that code). Only this apply's
    // containers count: an old incarnation killed by a swap shares the name.
    let changed = !plan.is_noop();
    if changed {
        let settle = Instant::now() + Duration::from_millis(250);
        while Instant::now() < settle {
            let events = rt.poll();
            record(dir, &events);
            for e in events {
                if let Event::Exited {
                    container,
                    id,
                    code,
                } = e
                {
                    let current = rt.containers().into_iter().find(|c| c.id == id);
                    if code != 0 && current.is_some_and(|c| !c.restarting) {
                        reply(
                            stream,
                            &Reply::Progress(format!(
                                "warning: container {container} exited with code {code} right after it started (see `berth logs`)"
                            )),
                        );
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
    Ok(())
}
