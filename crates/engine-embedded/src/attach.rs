//! `berth attach` on the embedded engine. A container's streams never pass
//! through the supervisor (see `output.rs`), so attaching needs no round
//! trip either: its output is followed in `<container dir>/output` from the
//! end, this process's stdin goes into the FIFO `<container dir>/stdin` that
//! a `stdin_open` container reads (directly, or through its terminal's pump
//! with `tty`), and a terminal's window size is set on the slave named in
//! `<container dir>/tty`. Attaching ends when the container exits, at the
//! detach keys, or (without `--sig-proxy`) at Ctrl-C.

use crate::supervisor::state::{project_dir, read_state};
use berth_engine::backend::{AttachOutcome, AttachRequest, Result, Status};
use berth_engine::{bail, terminal, Context};
use berth_oci::store::state_dir;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The signals an attached client passes on to the container (docker's
/// `--sig-proxy` forwards every signal it can catch; these are the ones a
/// user sends).
const PROXIED: &[libc::c_int] = &[
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

pub(crate) fn attach(project: &str, request: &AttachRequest) -> Result<AttachOutcome> {
    let c = &request.container;
    let (Some(pid), Status::Running) = (c.pid, c.status) else {
        bail!(NotRunning, "container {} is not running", c.name);
    };
    let dir = state_dir().join("containers").join(&c.id);
    let mut output = File::open(dir.join("output"))
        .with_context(|| format!("the output of container {}", c.name))?;
    let mut offset = output.metadata()?.len();
    let tty = std::fs::read_to_string(dir.join("tty")).ok();
    let stdin = if request.stdin {
        open_stdin(&dir.join("stdin"))
    } else {
        None
    };
    // A terminal's keys go to the container's terminal as typed, Ctrl-C
    // included; without one, Ctrl-C is a signal for the sig-proxy.
    let _raw =
        (tty.is_some() && stdin.is_some() && terminal::attached()).then(terminal::RawMode::enter);
    if let Some(pts) = &tty {
        copy_window_size(pts);
    }

    let detached = Arc::new(AtomicBool::new(false));
    watch_signals(
        pid,
        tty.clone(),
        request.sig_proxy && tty.is_none(),
        &detached,
    )?;
    if let Some(fifo) = stdin {
        let keys = request.detach_keys.clone();
        let detached = detached.clone();
        std::thread::spawn(move || forward_stdin(fifo, &keys, &detached));
    }

    let mut out = std::io::stdout();
    loop {
        if detached.load(Ordering::SeqCst) {
            return Ok(AttachOutcome::Detached);
        }
        let copied = copy_output(&mut output, &mut offset, &mut out);
        if copied {
            continue;
        }
        if let Some(code) = exited(project, &c.id) {
            // What the container wrote last (a terminal's pump may still be
            // copying it) before the code is returned.
            std::thread::sleep(Duration::from_millis(100));
            while copy_output(&mut output, &mut offset, &mut out) {}
            return Ok(AttachOutcome::Exited(code));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The container's stdin FIFO for writing, when it has one (`stdin_open`)
/// with a reader (the container, or its terminal's pump) on the other end.
fn open_stdin(path: &Path) -> Option<File> {
    // Non-blocking: with no reader the open fails at once (ENXIO) instead
    // of waiting for one.
    let f = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .ok()?;
    // SAFETY: fcntl on a descriptor `f` owns; writes block again from now.
    unsafe {
        let flags = libc::fcntl(f.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(f.as_raw_fd(), libc::F_SETFL, flags & !libc::O_NONBLOCK);
    }
    Some(f)
}

/// Output written since `offset`, copied to `out`; whether there was any.
fn copy_output(file: &mut File, offset: &mut u64, out: &mut impl Write) -> bool {
    // The supervisor frees output it logged (punches it out of the file);
    // a reader that fell that far behind skips to the data left.
    // SAFETY: lseek on a descriptor `file` owns.
    let data = unsafe { libc::lseek(file.as_raw_fd(), *offset as libc::off_t, libc::SEEK_DATA) };
    if data < 0 {
        return false;
    }
    *offset = (*offset).max(data as u64);
    let mut buf = [0u8; 16 * 1024];
    match file.read_at(&mut buf, *offset) {
        Ok(n) if n > 0 => {
            *offset += n as u64;
            let _ = out.write_all(&buf[..n]);
            let _ = out.flush();
            true
        }
        _ => false,
    }
}

/// The container's exit code once it no longer runs (0 when it is gone
/// without one, as when `down` removed it).
fn exited(project: &str, id: &str) -> Option<i32> {
    let Some(state) = read_state(&project_dir(project)) else {
        return Some(0);
    };
    match state.containers.iter().find(|c| c.id == id) {
        Some(c) if c.status == Status::Running => None,
        Some(c) => Some(c.exit_code.unwrap_or(0)),
        None => Some(0),
    }
}

/// This process's stdin into the container's, until end of input; the
/// detach keys, typed in sequence, detach instead of being sent. A partial
/// sequence followed by another key is sent as typed.
fn forward_stdin(mut fifo: File, keys: &[u8], detached: &AtomicBool) {
    let mut buf = [0u8; 4096];
    let mut matched = 0;
    let mut stdin = std::io::stdin();
    while let Ok(n) = stdin.read(&mut buf) {
        if n == 0 {
            return;
        }
        let mut send = Vec::with_capacity(n + matched);
        for &b in &buf[..n] {
            if !keys.is_empty() && b == keys[matched] {
                matched += 1;
                if matched == keys.len() {
                    let _ = fifo.write_all(&send);
                    detached.store(true, Ordering::SeqCst);
                    return;
                }
                continue;
            }
            send.extend_from_slice(&keys[..matched]);
            matched = 0;
            send.push(b);
        }
        if fifo.write_all(&send).is_err() {
            return;
        }
    }
}

/// The terminal's size (the slave at `pts`) set to this one's.
fn copy_window_size(pts: &str) {
    let Ok(slave) = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(pts)
    else {
        return;
    };
    // SAFETY: winsize is plain data; ioctls on stdout and an fd we own.
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        if libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) == 0 {
            libc::ioctl(slave.as_raw_fd(), libc::TIOCSWINSZ, &ws);
        }
    }
}

/// A thread that takes this process's signals: a window change resizes the
/// container's terminal; with `proxy` the others go to the container's main
/// process (`pid`), else SIGINT, SIGTERM and SIGHUP detach.
fn watch_signals(
    pid: i32,
    tty: Option<String>,
    proxy: bool,
    detached: &Arc<AtomicBool>,
) -> Result<()> {
    // SAFETY: sigset_t is plain data filled by sigemptyset/sigaddset; the
    // mask is set before the threads that must inherit it are spawned.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &s in PROXIED.iter().chain(&[libc::SIGWINCH]) {
            libc::sigaddset(&mut set, s);
        }
        let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if rc != 0 {
            return Err(std::io::Error::from_raw_os_error(rc).into());
        }
        set
    };
    let detached = detached.clone();
    std::thread::spawn(move || loop {
        let mut sig: libc::c_int = 0;
        // SAFETY: sigwait on a set blocked in every thread of the attach.
        if unsafe { libc::sigwait(&set, &mut sig) } != 0 {
            return;
        }
        if sig == libc::SIGWINCH {
            if let Some(pts) = &tty {
                copy_window_size(pts);
            }
        } else if proxy {
            // SAFETY: kill with a pid and signal number.
            unsafe { libc::kill(pid, sig) };
        } else if matches!(sig, libc::SIGINT | libc::SIGTERM | libc::SIGHUP) {
            detached.store(true, Ordering::SeqCst);
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_copied_from_the_offset_and_holes_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("output");
        std::fs::write(&path, vec![b'x'; 8192]).unwrap();
        let mut f = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b"new\n").unwrap();
        // The first block logged and freed, as the supervisor does.
        // SAFETY: fallocate on an fd we own.
        let rc = unsafe {
            libc::fallocate(
                f.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                0,
                4096,
            )
        };
        assert_eq!(rc, 0);
        let mut offset = 0;
        let mut out = Vec::new();
        while copy_output(&mut f, &mut offset, &mut out) {}
        assert_eq!(out.len(), 4096 + 4, "no zeros from the freed block");
        assert!(out.ends_with(b"new\n"));
        assert!(!copy_output(&mut f, &mut offset, &mut out));
    }
}
