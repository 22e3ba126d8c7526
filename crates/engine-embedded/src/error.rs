//! The embedded engine's errors; they cross the backend boundary as
//! [`berth_engine::BackendError`] (see `lib.rs`).

use berth_engine::planner;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("service {service:?}: {message}")]
    Service { service: String, message: String },
    #[cfg(feature = "runtime")]
    #[error("network: {0}")]
    Network(#[from] berth_network::Error),
    #[error("{0}")]
    Plan(#[from] planner::PlanError),
    #[error("image store: {0}")]
    Store(#[from] berth_oci::StoreError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("interrupted")]
    Interrupted,
    /// A key the engine cannot honour: `key.path: why`.
    #[error("{0}")]
    Unsupported(String),
}

pub(crate) type Result<T> = std::result::Result<T, EngineError>;

pub(crate) fn svc_err(service: &str, message: impl std::fmt::Display) -> EngineError {
    EngineError::Service {
        service: service.to_string(),
        message: message.to_string(),
    }
}

#[cfg_attr(not(feature = "runtime"), allow(dead_code))]
pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> EngineError + '_ {
    move |source| EngineError::Io {
        path: path.to_path_buf(),
        source,
    }
}
