//! `RUN` steps of the Dockerfile builder, each in a container on an overlay
//! of the stage's layers: [`BuildRunner`].
//!
//! The network of a step with the default network is the host's (as
//! `RUN --network=host`): outbound access the way the host has it, the
//! host's resolvers, and no bridge or firewall rule to set up or leak. The
//! step still gets its own `/etc/hosts` and `/etc/resolv.conf` (a copy of
//! the host's, with `options single-request`: glibc then does not send A and
//! AAAA queries together, which resolvers that drop one of a pair punish
//! with a 5 s timeout per lookup). `--network=none` gets only a loopback.
//!
//! What the step leaves in its upper directory becomes the layer, except
//! what only the runtime put there: the mount points of `/proc`, `/dev`,
//! `/sys`, `/etc/hosts`, `/etc/resolv.conf` and the step's `--mount`s, and
//! the directories made for them.

use crate::spec::{ContainerSpec, MountKind, MountSpec, Network, Stdio};
use crate::{Container, Sandbox, SandboxError};
use berth_image::builder::{RunError, RunMountKind, RunNetwork, RunOutcome, RunStep, RunSteps};
use berth_oci::{Digest, Store};
use std::fs;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Executes `RUN` steps in containers of a [`Sandbox`] opened on first use
/// (a build without `RUN` needs no root).
pub struct BuildRunner {
    state_dir: PathBuf,
    sandbox: Mutex<Option<Sandbox>>,
    interrupted: fn() -> bool,
}

/// The hostname of every step, as BuildKit's.
const HOSTNAME: &str = "buildkitsandbox";

impl BuildRunner {
    /// Containers live in the sandbox state at `state_dir` (see [`Sandbox::open`]).
    pub fn new(state_dir: impl Into<PathBuf>) -> BuildRunner {
        BuildRunner {
            state_dir: state_dir.into(),
            sandbox: Mutex::new(None),
            interrupted: || false,
        }
    }

    /// Stop a running step (killed, its container and mounts removed, an
    /// error returned) once `interrupted` says so, e.g. after Ctrl-C.
    pub fn with_interrupt(mut self, interrupted: fn() -> bool) -> BuildRunner {
        self.interrupted = interrupted;
        self
    }

    fn sandbox(&self) -> Result<Sandbox, SandboxError> {
        let mut slot = self.sandbox.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = &*slot {
            return Ok(s.clone());
        }
        let s = Sandbox::open(&self.state_dir)?;
        *slot = Some(s.clone());
        Ok(s)
    }
}

/// Removed on drop, however the step ends.
struct Private(PathBuf);

impl Drop for Private {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Deletes the container on drop unless it was deleted already.
struct Guard(Option<Container>);

impl Guard {
    fn get(&mut self) -> &mut Container {
        self.0
            .as_mut()
            .expect("the container is present until deleted")
    }

    fn delete(mut self) -> Result<(), SandboxError> {
        match self.0.take() {
            Some(c) => c.delete(),
            None => Ok(()),
        }
    }

    fn delete_keeping_upper(mut self, keep: &mut dyn FnMut(&Path)) -> Result<(), SandboxError> {
        match self.0.take() {
            Some(c) => c.delete_keeping_upper(keep),
            None => Ok(()),
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            let _ = c.delete();
        }
    }
}

impl RunSteps for BuildRunner {
    fn run(
        &self,
        store: &Store,
        step: &RunStep,
        output: &mut dyn FnMut(&str),
        commit: &mut dyn FnMut(&Path) -> Result<Option<Digest>, RunError>,
    ) -> Result<RunOutcome, RunError> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let sandbox = self.sandbox()?;
        let layers: Vec<PathBuf> = step
            .layers
            .iter()
            .map(|(blob, diff_id)| sandbox.layers().ensure(store, blob, diff_id))
            .collect::<Result<_, _>>()?;
        let id = format!(
            "build-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let private = Private(sandbox.state_root().join("build").join(&id));
        fs::create_dir_all(&private.0)?;
        let hosts = private.0.join("hosts");
        fs::write(
            &hosts,
            format!("127.0.0.1\tlocalhost {HOSTNAME}\n::1\tlocalhost ip6-localhost ip6-loopback\n"),
        )?;
        let resolv = private.0.join("resolv.conf");
        fs::write(&resolv, resolv_conf(step.network))?;

        let mut mounts = vec![
            MountSpec {
                target: "/etc/hosts".into(),
                kind: MountKind::Bind {
                    source: hosts,
                    read_only: false,
                },
            },
            MountSpec {
                target: "/etc/resolv.conf".into(),
                kind: MountKind::Bind {
                    source: resolv,
                    read_only: false,
                },
            },
        ];
        for m in &step.mounts {
            mounts.push(MountSpec {
                target: m.target.clone(),
                kind: match &m.kind {
                    RunMountKind::Bind { source, read_only } => MountKind::Bind {
                        source: source.clone(),
                        read_only: *read_only,
                    },
                    RunMountKind::Tmpfs { size } => MountKind::Tmpfs {
                        size: *size,
                        mode: None,
                    },
                },
            });
        }
        // The runtime's own mounts (`/proc`, `/dev`, `/sys` and what is
        // under them) are mount points the runtime makes too.
        let targets: Vec<String> = ["/proc", "/dev", "/sys"]
            .into_iter()
            .map(String::from)
            .chain(mounts.iter().map(|m| m.target.clone()))
            .collect();

        let (reader, writer) = io::pipe()?;
        let writer = OwnedFd::from(writer);
        let spec = ContainerSpec {
            id: id.clone(),
            entrypoint: Some(Vec::new()),
            cmd: Some(step.argv.clone()),
            env: step.env.clone(),
            working_dir: Some(step.workdir.clone()),
            user: step.user.clone(),
            hostname: Some(HOSTNAME.into()),
            mounts,
            network: match step.network {
                RunNetwork::None => Network::None,
                RunNetwork::Host | RunNetwork::Default => Network::Host,
            },
            stdout: Stdio::Fd(writer.try_clone()?),
            stderr: Stdio::Fd(writer),
            ..ContainerSpec::default()
        };
        let mut guard = Guard(Some(sandbox.create(&layers, spec)?));
        // Where the runtime put them: an image's symlinks (an
        // `/etc/resolv.conf` linking elsewhere) lead mount points away.
        let rootfs = guard.get().rootfs();
        let resolved: Vec<String> = targets
            .iter()
            .filter_map(|t| crate::rootfs::resolve_in_root(&rootfs, t).ok())
            .collect();
        let targets: Vec<String> = targets.into_iter().chain(resolved).collect();
        guard.get().start()?;
        let status = pump(reader, guard.get(), output, self.interrupted)?;
        if !status.success() {
            guard.delete()?;
            return Ok(RunOutcome::Failed {
                code: status.code(),
            });
        }
        let upper = guard.get().upper_dir().map(Path::to_path_buf).ok_or(
            "RUN needs overlayfs: the step's rootfs is a copy, whose changes cannot be told apart",
        )?;
        forget_mount_points(&upper, &layers, &targets)?;
        match commit(&upper)? {
            // The upper directory is the new layer, in the layer cache's
            // format: the next step stacks it as it is instead of
            // unpacking the blob just written (BuildKit's snapshots work
            // so). A failed move only costs that unpacking.
            Some(diff_id) => {
                let cache = sandbox.layers();
                guard.delete_keeping_upper(&mut |upper| {
                    let _ = cache.adopt(&diff_id, upper);
                })?
            }
            None => guard.delete()?,
        }
        Ok(RunOutcome::Committed)
    }
}

fn is_opaque(dir: &Path) -> bool {
    matches!(
        crate::sys::get_xattr(dir, "trusted.overlay.opaque"),
        Ok(Some(v)) if v == b"y"
    )
}

/// The step's `/etc/resolv.conf`.
fn resolv_conf(network: RunNetwork) -> String {
    if network == RunNetwork::None {
        return String::new();
    }
    let host = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let mut out: String = host
        .lines()
        .filter(|l| !l.trim_start().starts_with("options single-request"))
        .map(|l| format!("{l}\n"))
        .collect();
    out.push_str("options single-request\n");
    out
}

/// Stream the container's output, line by line, until it exits.
fn pump(
    reader: io::PipeReader,
    container: &mut Container,
    output: &mut dyn FnMut(&str),
    interrupted: fn() -> bool,
) -> Result<crate::ExitStatus, RunError> {
    let fd = reader.as_raw_fd();
    // SAFETY: a valid fd we own; F_SETFL with O_NONBLOCK only.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
    }
    let mut reader = reader;
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut drain = |pending: &mut Vec<u8>, output: &mut dyn FnMut(&str)| -> io::Result<bool> {
        loop {
            match reader.read(&mut buf) {
                Ok(0) => return Ok(true),
                Ok(n) => {
                    pending.extend_from_slice(&buf[..n]);
                    while let Some(i) = pending.iter().position(|b| *b == b'\n') {
                        let line: Vec<u8> = pending.drain(..=i).collect();
                        let text = String::from_utf8_lossy(&line);
                        output(text.trim_end_matches(['\n', '\r']));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    };
    let status = loop {
        let mut pfd = [
            libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: container.pidfd().map_or(-1, |p| p.as_raw_fd()),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: two valid pollfd structs; a negative fd is ignored.
        unsafe { libc::poll(pfd.as_mut_ptr(), 2, 200) };
        let eof = drain(&mut pending, output)?;
        if let Some(status) = container.try_wait()? {
            break status;
        }
        if interrupted() {
            container.kill(libc::SIGKILL)?;
            container.wait()?;
            return Err("interrupted".into());
        }
        if eof {
            // Nobody writes any more; only the exit is left to wait for.
            break container.wait()?;
        }
    };
    // What was written just before the exit.
    drain(&mut pending, output)?;
    if !pending.is_empty() {
        output(&String::from_utf8_lossy(&pending));
    }
    Ok(status)
}

/// Remove from `upper` what the runtime made for mounts: each mount point
/// (whatever the step wrote there went to the mount, so anything under it
/// in `upper` is the runtime's), then the directories created to hold it,
/// as long as they are empty and no lower layer has them.
fn forget_mount_points(upper: &Path, lowers: &[PathBuf], targets: &[String]) -> io::Result<()> {
    for target in targets {
        let rel: PathBuf = Path::new(target)
            .components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n),
                _ => None,
            })
            .collect();
        if rel.as_os_str().is_empty() {
            continue;
        }
        let path = upper.join(&rel);
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => fs::remove_dir_all(&path)?,
            Ok(_) => fs::remove_file(&path)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let mut parent = rel.parent();
        while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
            let dir = upper.join(p);
            let Ok(meta) = fs::symlink_metadata(&dir) else {
                parent = p.parent();
                continue;
            };
            let empty = fs::read_dir(&dir).is_ok_and(|mut d| d.next().is_none());
            // The topmost lower layer that has it decides what it was.
            let lower = lowers
                .iter()
                .rev()
                .find_map(|l| fs::symlink_metadata(l.join(p)).ok());
            // A directory only copied up to hold a mount point is no change;
            // an opaque one replaced the lower's, which is.
            let unchanged = match &lower {
                None => true,
                Some(l) => {
                    l.is_dir()
                        && l.mode() == meta.mode()
                        && l.uid() == meta.uid()
                        && l.gid() == meta.gid()
                        && !is_opaque(&dir)
                }
            };
            if !empty || !unchanged || !meta.is_dir() {
                break;
            }
            fs::remove_dir(&dir)?;
            parent = p.parent();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points_leave_the_upper_dir() {
        let dir = tempfile::tempdir().unwrap();
        let upper = dir.path().join("upper");
        let lower = dir.path().join("lower");
        fs::create_dir_all(lower.join("etc")).unwrap();
        fs::create_dir_all(lower.join("root")).unwrap();
        fs::create_dir_all(upper.join("run/secrets/tok")).unwrap();
        fs::create_dir_all(upper.join("root/.npm")).unwrap();
        fs::set_permissions(
            upper.join("root"),
            fs::metadata(lower.join("root")).unwrap().permissions(),
        )
        .unwrap();
        fs::create_dir_all(upper.join("etc")).unwrap();
        fs::write(upper.join("etc/hosts"), "").unwrap();
        fs::write(upper.join("etc/kept"), "x").unwrap();
        let targets = ["/run/secrets/tok", "/root/.npm", "/etc/hosts"].map(String::from);
        forget_mount_points(&upper, &[lower], &targets).unwrap();
        assert!(!upper.join("run").exists());
        assert!(!upper.join("root/.npm").exists());
        assert!(!upper.join("root").exists(), "an unchanged copy-up goes");
        assert!(!upper.join("etc/hosts").exists());
        assert!(upper.join("etc/kept").exists());
    }
}
