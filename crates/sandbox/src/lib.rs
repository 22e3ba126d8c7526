//! One container, run by youki's `libcontainer` on a root filesystem made
//! from berth's image store.
//!
//! - [`LayerCache`]: each image layer unpacked once (verified against its
//!   diff ID) into overlayfs format, shared by every container;
//! - [`Sandbox::create`]: an overlay (or copy) rootfs per container, the
//!   image config and overrides turned into an OCI runtime spec with
//!   docker's defaults, and the container's init created, waiting;
//! - [`Container`]: `start`, `wait`/`try_wait` (this process reaps the init),
//!   `kill`, `delete` (cgroup, state, mount and files gone);
//! - [`Sandbox::exec`]: another process in a running container, from any
//!   process that knows the state dir and the container's id;
//!   [`Sandbox::pause`] and [`Sandbox::resume`] likewise.
//!
//! What the calling process must allow (libcontainer runs in it, see
//! `container.rs`): it runs as root; it does not reap children it did not
//! start (no `waitpid(-1)`, SIGCHLD not set to `SIG_IGN`); no thread holds
//! a lock the cloned init needs, so no `std::env::set_var` while containers
//! are created and no global `tracing` subscriber that locks (libcontainer
//! logs from inside the clone); rootfs overlays are mounted in its mount
//! namespace. Containers' cgroups are `/berth/<id>` in every hierarchy, or
//! `<cgroup_parent>/<id>` ([`Sandbox::cgroup_path`] tells which).
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use berth_sandbox::{ContainerSpec, Sandbox};
//! let store = berth_oci::Store::open("/var/lib/berth/images")?;
//! let image = store.image("busybox:latest", &berth_oci::Platform::host())?;
//! let sandbox = Sandbox::open("/var/lib/berth")?;
//! let layers = sandbox.layers().unpack_image(&store, &image)?;
//! let mut spec = ContainerSpec::new("demo-1", &image);
//! spec.cmd = Some(vec!["echo".into(), "hello".into()]);
//! let mut container = sandbox.create(&layers, spec)?;
//! container.start()?;
//! let status = container.wait()?;
//! container.delete()?;
//! assert!(status.success());
//! # Ok(()) }
//! ```

mod build;
mod cgroups;
mod container;
pub mod cp;
mod exec;
mod executor;
mod flatten;
mod layers;
mod reaper;
mod rootfs;
mod seccomp;
mod spec;
mod sys;
mod unpack;
mod user;

pub use build::BuildRunner;
pub use container::{Container, ExitStatus, Sandbox};
pub use exec::{ExecProcess, ExecSpec};
pub use flatten::populate;
pub use layers::{LayerCache, LayerError};
pub use rootfs::{RootfsError, RootfsMode};
pub use seccomp::SeccompError;
/// See [`spec::validate`].
pub use spec::validate as validate_spec;
pub use spec::{
    Blkio, ContainerSpec, DeviceSpec, Ipc, MountKind, MountSpec, Namespace, Network, SeccompChoice,
    SpecError, Stdio, DEFAULT_PATH,
};
pub use unpack::UnpackError;
pub use user::UserError;

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("invalid container id {0:?}: use 1-128 of [A-Za-z0-9_.+-]")]
    InvalidId(String),
    #[error("container {0} already exists")]
    Exists(String),
    #[error("no such container: {0}")]
    NoSuchContainer(String),
    #[error("container {id}: {command:?}: executable file not found in $PATH (or not executable)")]
    CommandNotFound { id: String, command: String },
    #[error("container {id}: cannot {op}: {message}")]
    Runtime {
        id: String,
        op: &'static str,
        message: String,
    },
    #[error("cannot join the {kind} namespace of container {id}: {message}")]
    Join {
        kind: &'static str,
        id: String,
        message: String,
    },
    #[error("container {id}: {message}")]
    State { id: String, message: &'static str },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Layer(#[from] LayerError),
    #[error(transparent)]
    Rootfs(#[from] RootfsError),
    #[error(transparent)]
    User(#[from] UserError),
    #[error(transparent)]
    Spec(#[from] SpecError),
}

#[cfg(test)]
mod tests {
    /// A supervisor moves containers between threads.
    #[test]
    fn handles_are_send() {
        fn send<T: Send>() {}
        fn sync<T: Sync>() {}
        send::<super::Container>();
        send::<super::Sandbox>();
        send::<super::ExecProcess>();
        sync::<super::Sandbox>();
        send::<super::SandboxError>();
        sync::<super::SandboxError>();
    }
}
