//! berth's embedded engine: a project's containers run by berth itself,
//! with its own sandbox (libcontainer), bridge network and port proxy, kept
//! alive by a per-project supervisor process while services run.
//!
//! The `runtime` feature (on by default) is what runs containers: the
//! apply loop, the supervisor's server, `exec`/`cp`/`top`. Without it the
//! crate still observes and plans (`ps`, `logs`, `up --dry-run`), and links
//! neither libcontainer nor berth's network and proxy.

// Health tracking, restart backoff and signal delivery are the runtime's;
// a build without it keeps them compiled (they are small and pure) unused.
#![cfg_attr(not(feature = "runtime"), allow(dead_code))]

mod attach;
mod backend;
#[cfg(feature = "runtime")]
mod direct;
mod error;
mod fdpass;
mod health;
#[cfg(feature = "runtime")]
mod hooks;
mod layout;
pub mod logs;
#[cfg(feature = "runtime")]
mod output;
#[cfg(feature = "runtime")]
mod ports;
#[cfg(feature = "runtime")]
mod pty;
#[cfg(feature = "runtime")]
mod resources;
mod restart;
#[cfg(feature = "runtime")]
mod runtime;
mod service_image;
mod signal;
pub mod supervisor;
#[cfg(feature = "runtime")]
mod unsupported;

pub use backend::EmbeddedBackend;
pub use error::EngineError;
pub use health::{Health, HealthCheck, Probe};
pub use layout::volume_dir;
pub use logs::LogSink;
pub use restart::RestartPolicy;
#[cfg(feature = "runtime")]
pub use runtime::*;
pub use service_image::{service_images, RuntimeMount, ServiceImage, RUNTIME_DIR};
pub use signal::parse as parse_signal;
pub use supervisor::state::Footprint;

/// berth's image store, where the embedded engine runs images from.
pub fn open_store() -> berth_engine::backend::Result<berth_oci::Store> {
    use berth_engine::Context;
    let root = berth_oci::store::state_dir().join("images");
    berth_oci::Store::open(&root)
        .with_context(|| format!("opening the image store at {}", root.display()))
}

impl From<EngineError> for berth_engine::BackendError {
    fn from(e: EngineError) -> Self {
        use berth_engine::ErrorKind;
        let kind = match &e {
            EngineError::Interrupted => ErrorKind::Interrupted,
            EngineError::Unsupported(_) => ErrorKind::Unsupported,
            EngineError::Plan(_) => ErrorKind::Invalid,
            _ => ErrorKind::Engine,
        };
        berth_engine::BackendError::new(kind, e)
    }
}
