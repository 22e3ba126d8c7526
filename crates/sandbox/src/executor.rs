//! The last step of a container's init (or of a process exec'd into it):
//! exec its command.
//!
//! libcontainer's default executor first rewrites the process environment
//! with `std::env::{remove_var, set_var}`, which take std's global
//! environment lock. The init is cloned (without exec) from the caller,
//! which may be multi-threaded: if another thread held that lock at the
//! moment of the clone, the init waits for it forever and the create hangs
//! (seen in this crate's tests with 16 threads). This executor never touches
//! the process environment: it hands the spec's env straight to `execve`,
//! searching the command in the spec's `PATH`, as runc does.

use crate::seccomp::SeccompFilter;
use libcontainer::oci_spec::runtime::Spec;
use libcontainer::workload::default::DefaultExecutor;
use libcontainer::workload::{
    Executor, ExecutorError, ExecutorSetEnvsError, ExecutorValidationError,
};
use std::collections::HashMap;
use std::ffi::CString;

/// Every signal back to its default action. The init is a clone of its
/// caller, and an ignored signal stays ignored across execve: a Rust caller
/// ignores SIGPIPE (`yes | head -1` in a container would then see EPIPE
/// errors instead of ending quietly), and whatever started berth may ignore
/// more (`nohup`: SIGHUP). Docker's containers start with every default.
/// The raw syscall, because glibc's wrapper refuses its own signals 32, 33.
fn reset_signal_dispositions() {
    // The kernel's `struct sigaction` on x86-64 and arm64.
    #[repr(C)]
    struct KernelSigaction {
        handler: usize,
        flags: u64,
        restorer: usize,
        mask: u64,
    }
    let default = KernelSigaction {
        handler: 0, // SIG_DFL
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    for signal in 1..=64 {
        if signal == libc::SIGKILL || signal == libc::SIGSTOP {
            continue;
        }
        // SAFETY: rt_sigaction with a valid struct and no old action; the
        // size is the kernel's sigset_t (8 bytes).
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                signal,
                &default as *const KernelSigaction,
                std::ptr::null_mut::<KernelSigaction>(),
                8usize,
            )
        };
    }
}

#[derive(Clone, Default)]
pub struct EnvExecutor {
    /// Make stdin, a terminal, the controlling terminal. libcontainer has
    /// already made the process a session leader (`setsid`), and only a
    /// session leader without a terminal may acquire one.
    pub controlling_tty: bool,
    /// The seccomp filter to load last (libcontainer without libseccomp
    /// ignores `linux.seccomp`), compiled before the init was cloned.
    pub seccomp: Option<SeccompFilter>,
}

impl Executor for EnvExecutor {
    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        reset_signal_dispositions();
        if self.controlling_tty {
            // SAFETY: fd 0 and an integer argument; no memory is passed.
            if unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) } < 0 {
                let err = std::io::Error::last_os_error();
                return Err(ExecutorError::Execution(
                    format!("make stdin the controlling terminal: {err}").into(),
                ));
            }
        }
        if let Some(filter) = &self.seccomp {
            if let Err(e) = filter.install() {
                // The start has already been reported to the caller: the
                // container's stderr is where this can still be seen.
                // Written raw, as std's stderr lock may be held forever in
                // this clone (see the module docs).
                let line = format!("berth: cannot start the command: {e}\n");
                // SAFETY: a valid buffer of that length.
                unsafe { libc::write(2, line.as_ptr().cast(), line.len()) };
                return Err(ExecutorError::Execution(e.into()));
            }
        }
        let process = spec.process().as_ref().ok_or(ExecutorError::InvalidArg)?;
        let args = process.args().as_ref().ok_or(ExecutorError::InvalidArg)?;
        let env = process.env().clone().unwrap_or_default();
        let cstrings = |v: &[String]| -> Result<Vec<CString>, ExecutorError> {
            v.iter()
                .map(|s| CString::new(s.as_bytes()).map_err(|_| ExecutorError::InvalidArg))
                .collect()
        };
        let argv = cstrings(args)?;
        let envp = cstrings(&env)?;
        let program = args.first().ok_or(ExecutorError::InvalidArg)?;
        let path = env
            .iter()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or(crate::spec::DEFAULT_PATH);
        let candidates: Vec<String> = if program.contains('/') {
            vec![program.clone()]
        } else {
            path.split(':')
                .map(|dir| {
                    let dir = if dir.is_empty() { "." } else { dir };
                    format!("{}/{program}", dir.trim_end_matches('/'))
                })
                .collect()
        };
        let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|c| c.as_ptr()).collect();
        argv_ptrs.push(std::ptr::null());
        let mut envp_ptrs: Vec<*const libc::c_char> = envp.iter().map(|c| c.as_ptr()).collect();
        envp_ptrs.push(std::ptr::null());
        let mut last = std::io::Error::from_raw_os_error(libc::ENOENT);
        for candidate in candidates {
            let Ok(file) = CString::new(candidate) else {
                continue;
            };
            // SAFETY: null-terminated arrays of valid C strings that outlive
            // the call; execve only returns on failure.
            unsafe { libc::execve(file.as_ptr(), argv_ptrs.as_ptr(), envp_ptrs.as_ptr()) };
            let err = std::io::Error::last_os_error();
            // Like execvp: keep searching past missing or inaccessible entries.
            match err.raw_os_error() {
                Some(libc::ENOENT) | Some(libc::ENOTDIR) => {}
                Some(libc::EACCES) => last = err,
                _ => {
                    last = err;
                    break;
                }
            }
        }
        Err(ExecutorError::Execution(
            format!("exec {program:?}: {last}").into(),
        ))
    }

    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        // Reads only the spec and the filesystem: no locks involved.
        DefaultExecutor {}.validate(spec)
    }

    fn setup_envs(&self, _envs: HashMap<String, String>) -> Result<(), ExecutorSetEnvsError> {
        // The environment goes to execve directly; see the module docs.
        Ok(())
    }
}
