//! Named network namespaces and running code inside one.
//!
//! Namespaces are made with `ip netns add`, so they live exactly where
//! iproute2 and every other tool expect them (a bind mount at
//! `/run/netns/<name>`, with `/run/netns` made a shared mount so the bind
//! propagates into mount namespaces created later, e.g. a container's), and
//! `ip netns list`/`exec` work on them for debugging. The container runtime
//! then joins the namespace by path.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::cmd::{self, CommandError, Tool};

/// Where iproute2 keeps named network namespaces.
pub const NETNS_RUN_DIR: &str = "/run/netns";

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("invalid network namespace name `{0}`: use 1-200 characters from [A-Za-z0-9_.-], not starting with `.`")]
    InvalidName(String),
    #[error("network namespace `{0}` already exists")]
    Exists(String),
    #[error("cannot open network namespace {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot enter network namespace {path}: {source}")]
    Enter {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot set {setting} in network namespace {path}: {source}")]
    Sysctl {
        path: PathBuf,
        setting: &'static str,
        source: std::io::Error,
    },
    #[error("a thread working inside network namespace {0} panicked")]
    ThreadPanicked(PathBuf),
    #[error(transparent)]
    Command(#[from] CommandError),
}

/// The path a named namespace is (or would be) mounted at.
pub fn netns_path(name: &str) -> PathBuf {
    Path::new(NETNS_RUN_DIR).join(name)
}

fn validate_name(name: &str) -> Result<(), NetnsError> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(NetnsError::InvalidName(name.to_string()))
    }
}

/// Creates a new, empty network namespace bound at `/run/netns/<name>` and
/// returns that path. Refuses a name already in use rather than reusing a
/// namespace that may still hold another container's interfaces.
pub fn create_netns(name: &str) -> Result<PathBuf, NetnsError> {
    validate_name(name)?;
    let path = netns_path(name);
    if path.exists() {
        return Err(NetnsError::Exists(name.to_string()));
    }
    match cmd::run(Tool::Ip, &["netns", "add", name], None) {
        Ok(_) => Ok(path),
        Err(e) if e.stderr().contains("File exists") => Err(NetnsError::Exists(name.to_string())),
        Err(e) => Err(e.into()),
    }
}

/// Turns IPv6 off inside the namespace at `path`, as Docker does for a
/// container whose networks do not enable it. With IPv6 on, the kernel gives
/// every interface a link-local address, glibc then sends A and AAAA queries
/// together, and a resolver that drops the AAAA ones (this machine's does)
/// costs a 5 s timeout per lookup: `npm install` measured 6x slower.
/// A kernel without IPv6 has nothing to turn off.
pub fn disable_ipv6(path: &Path) -> Result<(), NetnsError> {
    let outcome = run_in_netns(path, || -> std::io::Result<()> {
        // /proc/sys/net answers for the network namespace of the thread
        // that opens it: this one, inside the container's.
        // `all` reaches the interfaces that exist (lo), `default` the
        // veths moved in later.
        for conf in ["all", "default"] {
            let file = format!("/proc/sys/net/ipv6/conf/{conf}/disable_ipv6");
            match std::fs::write(&file, "1") {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    })?;
    outcome.map_err(|source| NetnsError::Sysctl {
        path: path.to_path_buf(),
        setting: "net.ipv6.conf.all.disable_ipv6=1",
        source,
    })
}

/// Unbinds and removes `/run/netns/<name>`. Succeeds when it is already gone,
/// so cleanup can be repeated after a crash. The namespace itself (and any
/// veth end still in it) disappears once no process holds it any more.
pub fn delete_netns(name: &str) -> Result<(), NetnsError> {
    validate_name(name)?;
    if !netns_path(name).exists() {
        return Ok(());
    }
    match cmd::run(Tool::Ip, &["netns", "delete", name], None) {
        Ok(_) => Ok(()),
        // Lost a race with another deleter: the goal is reached.
        Err(_) if !netns_path(name).exists() => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Runs `f` on a fresh thread that has joined the network namespace at `path`.
///
/// Only that thread switches namespace, so the caller's threads are never
/// affected; sockets `f` opens stay in the namespace after it returns (the
/// technique the port proxy relies on), and processes `f` spawns are born in
/// it, which is how `ip` is run inside a container without `ip netns exec`
/// (that needs a name under /run/netns, not an arbitrary path).
pub fn run_in_netns<T, F>(path: &Path, f: F) -> Result<T, NetnsError>
where
    T: Send,
    F: FnOnce() -> T + Send,
{
    // Opened on the caller's thread so a bad path is reported before spawning.
    let ns = File::open(path).map_err(|source| NetnsError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    std::thread::scope(|scope| {
        let handle = scope.spawn(|| -> Result<T, NetnsError> {
            // SAFETY: setns on a file descriptor we own; CLONE_NEWNET makes the
            // kernel refuse anything that is not a network namespace.
            let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            if rc != 0 {
                return Err(NetnsError::Enter {
                    path: path.to_path_buf(),
                    source: std::io::Error::last_os_error(),
                });
            }
            Ok(f())
        });
        handle
            .join()
            .unwrap_or_else(|_| Err(NetnsError::ThreadPanicked(path.to_path_buf())))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for bad in ["", ".", "..", "a/b", ".hidden", "sp ace", &"x".repeat(201)] {
            assert!(
                matches!(validate_name(bad), Err(NetnsError::InvalidName(_))),
                "{bad}"
            );
        }
        validate_name("berth-0123abcd_x.y").unwrap();
    }

    #[test]
    fn entering_a_missing_namespace_is_an_error() {
        let err = run_in_netns(Path::new("/nonexistent/netns"), || 1).unwrap_err();
        assert!(matches!(err, NetnsError::Open { .. }), "{err}");
    }

    #[test]
    fn entering_a_non_namespace_file_is_an_error() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let err = run_in_netns(file.path(), || 1).unwrap_err();
        assert!(matches!(err, NetnsError::Enter { .. }), "{err}");
    }
}
