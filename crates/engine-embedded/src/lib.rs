//! berth's embedded engine: a project's containers run by berth itself,
//! with its own sandbox (libcontainer), bridge network and port proxy, kept
//! alive by a per-project supervisor process while services run.

mod health;
mod hooks;
mod output;
mod ports;
mod pty;
mod resources;
mod restart;
mod runtime;
mod signal;
mod unsupported;

pub use health::{Health, HealthCheck, Probe};
pub use restart::RestartPolicy;
pub use runtime::*;
pub use signal::parse as parse_signal;
