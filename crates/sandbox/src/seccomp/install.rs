//! Loading a compiled filter in a container's init (or an exec'd process),
//! the last thing before `execve`.
//!
//! libcontainer without its `libseccomp` feature ignores `linux.seccomp`,
//! so berth's executor loads the filter itself, after libcontainer has set
//! the capabilities. Under `noNewPrivileges` the kernel lets any process
//! load a filter. Without it (docker's default, so that setuid binaries keep
//! working) loading needs `CAP_SYS_ADMIN`: the spec handed to libcontainer
//! then holds `CAP_SYS_ADMIN` (and `CAP_SETPCAP`, to drop from the bounding
//! set) only for this, and [`SeccompFilter::install`] drops exactly those right
//! after loading, so the command starts with the spec's own sets. That drop
//! runs under the filter: a profile that denies `prctl` or `capset` fails
//! the start (docker's and berth's profiles allow both).

use super::bpf::{self, CompileError, Insn};
use libcontainer::oci_spec::runtime::{LinuxSeccomp, Spec};
use std::io;

/// The annotation naming the capabilities the spec holds only to load the
/// filter (`CAP_SYS_ADMIN,CAP_SETPCAP`), for exec to find them too.
pub const TRANSIENT_CAPS: &str = "org.berth.seccomp.transient-caps";

/// `CAP_SETPCAP` and `CAP_SYS_ADMIN` as named in specs.
const SETPCAP: &str = "CAP_SETPCAP";
const SYS_ADMIN: &str = "CAP_SYS_ADMIN";

/// The capabilities a process without `noNewPrivileges` must hold, in
/// addition to `caps`, to load a filter.
pub fn transient_caps(caps: &[String]) -> Vec<String> {
    [SYS_ADMIN, SETPCAP]
        .into_iter()
        .filter(|c| !caps.iter().any(|have| have == c))
        .map(str::to_string)
        .collect()
}

/// A compiled filter and the capabilities to drop once it is loaded.
#[derive(Clone)]
pub struct SeccompFilter {
    program: Vec<Insn>,
    /// Capability numbers.
    transient: Vec<u32>,
}

#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error(transparent)]
    Compile(#[from] CompileError),
    #[error("unknown capability {0} in the container's spec")]
    Capability(String),
}

impl SeccompFilter {
    /// The filter of `spec`'s `linux.seccomp`, if any: compiled here, before
    /// the container's init is cloned.
    pub fn of_spec(spec: &Spec) -> Result<Option<SeccompFilter>, FilterError> {
        let Some(seccomp) = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) else {
            return Ok(None);
        };
        let transient = transient_of(spec)
            .iter()
            .map(|name| cap_number(name).ok_or_else(|| FilterError::Capability(name.clone())))
            .collect::<Result<_, _>>()?;
        Ok(Some(SeccompFilter::new(seccomp, transient)?))
    }

    /// The same filter for a process that keeps every capability it holds
    /// (a privileged exec): nothing is dropped after loading.
    pub fn keeping_capabilities(mut self) -> SeccompFilter {
        self.transient.clear();
        self
    }

    fn new(seccomp: &LinuxSeccomp, transient: Vec<u32>) -> Result<SeccompFilter, CompileError> {
        Ok(SeccompFilter {
            program: bpf::compile(seccomp)?,
            transient,
        })
    }

    /// Load the filter into this process, then drop the transient
    /// capabilities from every set.
    pub fn install(&self) -> Result<(), String> {
        let prog = libc::sock_fprog {
            // `compile` keeps programs within BPF_MAXINSNS.
            len: self.program.len() as u16,
            filter: self.program.as_ptr().cast_mut(),
        };
        // SAFETY: `prog` points at `len` instructions that outlive the call;
        // the kernel copies them.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                0,
                &prog as *const libc::sock_fprog,
            )
        };
        if rc != 0 {
            return Err(format!(
                "load the seccomp filter: {}",
                io::Error::last_os_error()
            ));
        }
        if self.transient.is_empty() {
            return Ok(());
        }
        let denied = |what: &str, err: io::Error| {
            format!(
                "drop {what} after loading the seccomp filter: {err} (the profile must allow \
                 prctl and capset, or the container must set no_new_privileges)"
            )
        };
        for cap in &self.transient {
            // SAFETY: integer arguments only.
            if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, *cap as libc::c_ulong, 0, 0, 0) } != 0 {
                return Err(denied("the bounding set", io::Error::last_os_error()));
            }
        }
        let mut header = CapHeader {
            version: LINUX_CAPABILITY_VERSION_3,
            pid: 0,
        };
        let mut data = [CapData::default(); 2];
        // SAFETY: a v3 header and two data structs, as the kernel expects.
        if unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) } != 0 {
            return Err(denied("capabilities", io::Error::last_os_error()));
        }
        for cap in &self.transient {
            let (word, bit) = ((*cap / 32) as usize, 1u32 << (cap % 32));
            data[word].effective &= !bit;
            data[word].permitted &= !bit;
            data[word].inheritable &= !bit;
        }
        // SAFETY: as above.
        if unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) } != 0 {
            return Err(denied("capabilities", io::Error::last_os_error()));
        }
        Ok(())
    }
}

/// The transient capabilities `spec`'s annotation names.
fn transient_of(spec: &Spec) -> Vec<String> {
    spec.annotations()
        .as_ref()
        .and_then(|a| a.get(TRANSIENT_CAPS))
        .map(|v| {
            v.split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// The only capabilities ever transient, and their kernel numbers.
fn cap_number(name: &str) -> Option<u32> {
    match name {
        SETPCAP => Some(8),
        SYS_ADMIN => Some(21),
        _ => None,
    }
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}
