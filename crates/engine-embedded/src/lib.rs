//! berth's embedded engine: a project's containers run by berth itself,
//! with its own sandbox (libcontainer), bridge network and port proxy, kept
//! alive by a per-project supervisor process while services run.

mod backend;
mod fdpass;
mod health;
mod hooks;
pub mod logs;
mod output;
mod ports;
mod pty;
mod resources;
mod restart;
mod runtime;
mod signal;
pub mod supervisor;
mod unsupported;

pub use backend::EmbeddedBackend;
pub use health::{Health, HealthCheck, Probe};
pub use restart::RestartPolicy;
pub use runtime::*;
pub use signal::parse as parse_signal;

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
