//! The supervisor's server: it owns the project's [`ProjectRuntime`]
//! (containers, network, port proxies), reaps and restarts containers,
//! writes their logs and `state.json`, and serves commands over a unix
//! socket until `down`.

use super::{client, protocol, state};
use crate::{service_images, Engine, Event, OneOff, ProjectRuntime};
use berth_engine::backend::{
    BackendError, Context, Control, LoadRequest, PlanFlags, Result, RunRequest, RuntimeMount,
};
use berth_engine::bail;
use berth_engine::{plan, Desired, PlanOptions};
use berth_oci::store::state_dir;
use protocol::{Reply, Request};
use state::{cleanup, orphaned_state, project_dir, write_state};
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn reply(stream: &mut UnixStream, r: &Reply) {
    if let Ok(text) = serde_json::to_string(r) {
        let _ = writeln!(stream, "{text}");
    }
}

/// The hidden `__supervise PROJECT` command.
pub fn supervise(project: &str) -> Result<()> {
    // Containers inherit our signal mask through the runtime: whatever the
    // command that started us blocked must not stay blocked in them.
    // SAFETY: sigprocmask with a zeroed (empty) set.
    unsafe {
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
    }
    berth_engine::interrupt::install_signal_handlers();
    // Every relayed connection holds 2 to 6 fds: 1,000 kept-alive clients
    // need more than the usual soft limit of 1,024.
    match crate::raise_fd_limit() {
        Ok(soft) => eprintln!("open files limit: {soft}"),
        Err(e) => eprintln!("warning: {e}"),
    }
    let dir = project_dir(project);
    fs::create_dir_all(dir.join("logs"))?;
    // One supervisor per project, for as long as it lives.
    let Some(_lock) = client::lock(&dir.join("supervisor.lock"), false)? else {
        bail!(Invalid, "another supervisor already runs project {project}");
    };
    let store = crate::open_store()?;
    let engine = Engine::open(&state_dir(), store)?;
    let sink = Arc::new(crate::logs::FileLogs::new(dir.join("logs")));
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
        if berth_engine::interrupt::interrupted() {
            break;
        }
        match listener.accept() {
            Ok((mut stream, _)) => {
                stream.set_nonblocking(false)?;
                let (line, fds) = crate::fdpass::recv_line_with_fds(&stream).unwrap_or_default();
                match serde_json::from_str::<Request>(&line) {
                    Ok(Request::Up {
                        load,
                        flags,
                        images,
                        runtimes,
                    }) => {
                        let first = rt.containers().is_empty();
                        let watch = CancelWatch::start(&stream, rt.cancel_flag());
                        let result = up(
                            &mut rt,
                            *load,
                            &flags,
                            &images,
                            &runtimes,
                            &mut stream,
                            &dir,
                        );
                        watch.stop();
                        let _ = write_state(&dir, &rt);
                        match result {
                            Ok(()) => reply(&mut stream, &Reply::Ok),
                            Err(e) => {
                                eprintln!("up failed: {e}");
                                if first {
                                    // Nothing is left half-made: a first
                                    // `up` that failed takes down what it
                                    // started, and the supervisor goes.
                                    let _ = rt.down(Some(Duration::from_secs(2)));
                                    cleanup(&dir);
                                    reply(&mut stream, &Reply::Error(e.clone()));
                                    return Err(e);
                                }
                                reply(&mut stream, &Reply::Error(e));
                            }
                        }
                    }
                    Ok(Request::Down { timeout_secs }) => {
                        timeout = timeout_secs.map(Duration::from_secs);
                        reply_to = Some(stream);
                        break;
                    }
                    Ok(Request::Run { run }) => {
                        let stdio = <[OwnedFd; 3]>::try_from(fds).ok();
                        let (rm, detach) = (run.rm, run.detach);
                        let one_off = OneOff {
                            command: run.command.clone(),
                            entrypoint: run.entrypoint.clone(),
                            env: run.env.clone(),
                            user: run.user.clone(),
                            workdir: run.workdir.clone(),
                            service_ports: run.service_ports,
                            ports: Vec::new(),
                            name: run.name.clone(),
                            stdio: if detach { None } else { stdio },
                        };
                        let result = run_one_off(&mut rt, &run, one_off, &mut stream, &dir);
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
                            Err(e) => reply(&mut stream, &Reply::Error(e)),
                        }
                    }
                    Ok(Request::Control { control }) => {
                        let result = lifecycle(&mut rt, control, &mut stream);
                        for note in rt.take_notes() {
                            reply(&mut stream, &Reply::Progress(format!("warning: {note}")));
                        }
                        let events = rt.poll();
                        record(&dir, &events);
                        let _ = write_state(&dir, &rt);
                        match result {
                            Ok(()) => reply(&mut stream, &Reply::Ok),
                            Err(e) => reply(&mut stream, &Reply::Error(e)),
                        }
                    }
                    Err(e) => reply(
                        &mut stream,
                        &Reply::Error(BackendError::invalid(format!("bad request: {e}"))),
                    ),
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
            Err(e) => reply(&mut s, &Reply::Error(BackendError::engine(e))),
        }
    }
    result.map_err(BackendError::engine)
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
                    if hung_up || berth_engine::interrupt::interrupted() {
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
fn lifecycle(rt: &mut ProjectRuntime, control: Control, stream: &mut UnixStream) -> Result<()> {
    let secs = |t: Option<u64>| t.map(Duration::from_secs);
    let mut say = |verb: &str, names: &[String]| {
        for n in names {
            reply(stream, &Reply::Progress(format!("Container {n}  {verb}")));
        }
    };
    match control {
        Control::Stop {
            services,
            timeout_secs,
        } => {
            let names = rt.select(&services)?;
            rt.stop_containers(&names, secs(timeout_secs));
            say("Stopped", &names);
        }
        Control::Start { services } => {
            let names = rt.select(&services)?;
            let started = rt.start_containers(&names)?;
            say("Started", &started);
        }
        Control::Restart {
            services,
            timeout_secs,
        } => {
            let names = rt.select(&services)?;
            rt.stop_containers(&names, secs(timeout_secs));
            let started = rt.start_containers(&names)?;
            say("Restarted", &started);
        }
        Control::Kill { services, signal } => {
            let names = rt.select(&services)?;
            rt.kill_containers(&names, signal)?;
            say("Killed", &names);
        }
        Control::Pause { services, pause } => {
            let names = rt.select(&services)?;
            rt.pause_containers(&names, pause)?;
            say(if pause { "Paused" } else { "Unpaused" }, &names);
        }
        Control::Rm { services, force } => {
            let names = rt.select(&services)?;
            let removed = rt.remove_containers(&names, force)?;
            say("Removed", &removed);
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
            "time": berth_engine::time::timestamp_now(),
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

/// `run`: bring up what the service depends on (unless `--no-deps`), then
/// start the one-off container.
fn run_one_off(
    rt: &mut ProjectRuntime,
    run: &RunRequest,
    mut one_off: OneOff,
    stream: &mut UnixStream,
    dir: &Path,
) -> Result<String> {
    let loaded = berth_compose::load(&run.load.clone().into())?;
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
            .map_err(|e| BackendError::invalid(format!("--publish {spec}: {}", e.message)))?
        {
            one_off.ports.push(serde_json::from_value(p)?);
        }
    }
    let images = service_images(rt.store(), &run.images, &run.runtimes)?;
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
    Ok(rt.run_one_off(project, &images, &run.service, one_off)?)
}

/// Load, plan against what runs, apply; progress to the client.
fn up(
    rt: &mut ProjectRuntime,
    load: LoadRequest,
    flags: &PlanFlags,
    names: &BTreeMap<String, String>,
    runtimes: &BTreeMap<String, RuntimeMount>,
    stream: &mut UnixStream,
    dir: &Path,
) -> Result<()> {
    let loaded = berth_compose::load(&load.into())?;
    let images = service_images(rt.store(), names, runtimes)?;
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
