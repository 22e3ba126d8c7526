//! Language runtimes as verified inputs of a compose project.
//!
//! `x-runtime: node@4.2.3` on a service names a runtime; [`Runtimes`]
//! resolves it against a release index (the npm registry's `node-linux-*`
//! packages by default, or a Node.js dist mirror), fetches and verifies it
//! once into a store shared by every project, and hands back a directory
//! with `bin/node` and `bin/npm`. [`audit`] names the known vulnerabilities
//! of the runtime each service runs; [`upgrade`] picks the release that
//! fixes them and [`rewrite`] edits the compose file to say so.
//!
//! The engine's part, in full:
//! ```no_run
//! # fn main() -> Result<(), berth_runtimes::Error> {
//! use berth_runtimes::{Runtimes, RuntimeSpec};
//! let runtimes = Runtimes::open(&berth_oci::store::state_dir())?;
//! let spec: RuntimeSpec = "node@4.2".parse()?;
//! let resolved = runtimes.resolve(&spec)?;
//! let installed = runtimes.ensure(&resolved, &mut |p| eprintln!("{p:?}"))?;
//! // mount installed.root (bin/node, bin/npm) and runtimes.npm_cache_dir()
//! # let _ = installed; Ok(()) }
//! ```

pub mod audit;
pub mod config;
pub mod date;
pub mod fetch;
pub mod index;
pub mod rewrite;
pub mod semver_range;
pub mod spec;
pub mod store;
pub mod upgrade;
pub mod version;
pub mod vulns;

pub use config::{RuntimesConfig, SourceKind};
pub use fetch::{Progress, ProgressFn};
pub use spec::{RuntimeKind, RuntimeSpec, VersionReq};
pub use store::{InstalledRuntime, Resolved, Runtimes};
pub use version::Version;

/// Any failure of this crate, for callers that do not care which stage.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Spec(#[from] spec::SpecError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
}
