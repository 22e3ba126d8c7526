//! A command's side of the supervisor: find (or start) it, send one
//! request, relay its progress, take over after a supervisor that died.

use super::protocol::{Reply, Request};
use super::state::{alive, orphaned_state, project_dir};
use berth_engine::backend::{BackendError, Context, ErrorKind, Result};
use berth_engine::interrupt::interrupted;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
#[cfg(feature = "runtime")]
use std::process::{Command, Stdio};
use std::time::Duration;
#[cfg(feature = "runtime")]
use std::time::Instant;

/// Any command on a project whose supervisor died starts a new one first,
/// which takes the containers over (ports, logs, restarts come back).
/// Without the runtime there is no supervisor to start: what is observed
/// is what a live supervisor reports, and nothing else.
pub fn take_over_if_orphaned(project: &str) -> Result<()> {
    if cfg!(feature = "runtime") && orphaned_state(project).is_some_and(|s| !s.records.is_empty()) {
        connect(project, true)?;
    }
    Ok(())
}

/// After a supervisor died without `down` (killed, a crash, a reboot):
/// remove what it left from its last recorded state. True when there was
/// something to clean.
pub fn recover(project: &str, warn: &dyn Fn(&str)) -> Result<bool> {
    let dir = project_dir(project);
    let Ok(bytes) = fs::read(dir.join("state.json")) else {
        return Ok(false);
    };
    let Ok(state) = serde_json::from_slice::<super::state::ProjectState>(&bytes) else {
        return Ok(false);
    };
    if alive(state.supervisor_pid) {
        return Ok(false);
    }
    #[cfg(feature = "runtime")]
    {
        for problem in state.footprint.remove(&berth_oci::store::state_dir()) {
            warn(&format!(
                "warning: cleaning up after the supervisor of {project}: {problem}"
            ));
        }
        super::state::cleanup(&dir);
        Ok(true)
    }
    #[cfg(not(feature = "runtime"))]
    {
        let _ = warn;
        Err(without_runtime(&format!(
            "cleaning up after the dead supervisor of {project}"
        )))
    }
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
/// (only for `up`). Progress lines go to `progress`. False when no
/// supervisor runs (and none was started).
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
                    progress("Gracefully stopping... (press Ctrl+C again to force)");
                    let _ = writer.shutdown(std::net::Shutdown::Write);
                }
                continue;
            }
            Err(e) => return Err(e).context("reading the supervisor's reply"),
        }
        if !line.ends_with('\n') {
            continue;
        }
        match serde_json::from_str::<Reply>(line.trim_end()) {
            Ok(Reply::Progress(p)) => progress(&p),
            Ok(Reply::Ok) => return Ok(true),
            Ok(Reply::Error(e)) if cancelled => {
                return Err(BackendError::new(ErrorKind::Interrupted, e.message))
            }
            Ok(Reply::Error(e)) => return Err(e),
            Ok(Reply::Started(_) | Reply::Exited(_)) => {}
            Err(_) => {
                return Err(BackendError::engine(format!(
                    "unexpected reply from the supervisor: {}",
                    line.trim_end()
                )))
            }
        }
        line.clear();
    }
    Err(BackendError::engine(format!(
        "the supervisor of {project} went away without an answer (see {})",
        dir.join("supervisor.log").display()
    )))
}

/// An exclusive `flock` on `path`, held until the file is dropped.
pub(crate) fn lock(path: &Path, wait: bool) -> Result<Option<fs::File>> {
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

/// Start the supervisor of `project` (this binary, `__supervise PROJECT`)
/// and connect to it. Two commands doing this at once serialize on a
/// lock: the second finds the first's supervisor and uses it.
#[cfg(not(feature = "runtime"))]
fn start(project: &str) -> Result<UnixStream> {
    Err(without_runtime(&format!(
        "starting the supervisor of {project}"
    )))
}

/// What a berth built without the embedded runtime says when asked to run
/// something.
#[cfg(not(feature = "runtime"))]
pub(crate) fn without_runtime(what: &str) -> BackendError {
    BackendError::new(
        ErrorKind::Unsupported,
        format!(
            "{what}: this berth was built without the embedded engine's runtime \
             (cargo feature `runtime`); use --engine docker, or a full build"
        ),
    )
}

#[cfg(feature = "runtime")]
fn start(project: &str) -> Result<UnixStream> {
    let dir = project_dir(project);
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let _guard = lock(&dir.join("start.lock"), true)?;
    if let Ok(s) = UnixStream::connect(dir.join("supervisor.sock")) {
        return Ok(s);
    }
    if orphaned_state(project).is_some() {
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
            return Err(BackendError::engine(format!(
                "the supervisor of {project} exited ({status}): {}",
                reason.trim_start_matches("error: ")
            )));
        }
        if Instant::now() > deadline {
            return Err(BackendError::engine(format!(
                "the supervisor of {project} did not start within 30 s"
            )));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
