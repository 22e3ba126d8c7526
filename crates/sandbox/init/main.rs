//! berth-init: the minimal PID 1 of `init: true` containers.
//!
//! It starts the command as its child, forwards every signal it receives to
//! that child, reaps every process that ends up re-parented to it (the job
//! a namespace's PID 1 has), and exits with the child's status. Built by
//! `build.rs` as a static binary (no libc needed in the image) and
//! bind-mounted read-only at /sbin/berth-init. Only std and a few libc
//! calls: it is compiled by rustc directly, without crates.

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{exit, Command, ExitStatus};

/// glibc's sigset_t on Linux: 1024 bits.
#[repr(C)]
struct SigSet([u64; 16]);

extern "C" {
    fn sigfillset(set: *mut SigSet) -> i32;
    fn sigprocmask(how: i32, set: *const SigSet, old: *mut SigSet) -> i32;
    fn sigwait(set: *const SigSet, sig: *mut i32) -> i32;
    fn kill(pid: i32, sig: i32) -> i32;
    fn waitpid(pid: i32, status: *mut i32, options: i32) -> i32;
}

const SIG_BLOCK: i32 = 0;
const SIG_SETMASK: i32 = 2;
const WNOHANG: i32 = 1;
const SIGCHLD: i32 = 17;

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--") {
        args.remove(0);
    }
    if args.is_empty() {
        eprintln!("berth-init: no command given");
        exit(2);
    }
    // Every signal waits in the mask for sigwait below, so none is lost and
    // none kills us.
    let mut all = SigSet([0; 16]);
    let mut old = SigSet([0; 16]);
    // SAFETY: plain calls on sigset values we own.
    unsafe {
        sigfillset(&mut all);
        sigprocmask(SIG_BLOCK, &all, &mut old);
    }
    let mut cmd = Command::new(&args[0]);
    cmd.args(&args[1..]);
    // The mask is inherited across exec: the child gets the one we started with.
    let start_mask = old.0;
    // SAFETY: sigprocmask is async-signal-safe; it only touches the child.
    unsafe {
        cmd.pre_exec(move || {
            let mask = SigSet(start_mask);
            sigprocmask(SIG_SETMASK, &mask, std::ptr::null_mut());
            Ok(())
        });
    }
    // The child runs in its own process group, so a forwarded signal reaches
    // it even when it is a shell that runs children of its own.
    cmd.process_group(0);
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("berth-init: {}: {e}", args[0]);
            exit(if e.kind() == std::io::ErrorKind::NotFound { 127 } else { 126 });
        }
    };
    let pid = child.id() as i32;
    loop {
        let mut sig = 0;
        // SAFETY: waits on our own blocked set.
        if unsafe { sigwait(&all, &mut sig) } != 0 {
            continue;
        }
        if sig != SIGCHLD {
            // SAFETY: signalling our child's process group.
            unsafe { kill(-pid, sig) };
            continue;
        }
        loop {
            let mut status = 0;
            // SAFETY: reaping any child, without blocking.
            let reaped = unsafe { waitpid(-1, &mut status, WNOHANG) };
            if reaped <= 0 {
                break;
            }
            if reaped == pid {
                let s = ExitStatus::from_raw(status);
                exit(s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0)));
            }
        }
    }
}
