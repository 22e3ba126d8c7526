//! compose's `develop.watch` for berth, without knowing any engine.
//!
//! - [`rules`]: the `develop.watch` entries of a normalized service, typed
//!   and checked (one-line errors naming the key path).
//! - [`matching`]: whether a changed host path falls under a rule (path
//!   prefix, `ignore` with `.dockerignore` semantics, `include`, editors'
//!   scratch files), and where it lives in the container.
//! - [`debounce`]: bursts of events into batches.
//! - [`plan`]: a batch into [`WatchAction`]s per service.
//! - [`target`]: the [`WatchTarget`] trait an engine implements, and
//!   [`apply`].
//! - [`watcher`]: `notify` on the host, and [`run`], the whole loop.
//! - [`root_sync`]: writing synced files into a tree seen through a root fd
//!   (a container's `/proc/<pid>/root`) atomically and without escaping it.

pub mod debounce;
pub mod matching;
pub mod plan;
pub mod root_sync;
pub mod rules;
pub mod target;
pub mod watcher;

pub use debounce::Debouncer;
pub use plan::{initial_sync, plan, SyncFile, WatchAction};
pub use rules::{
    loaded_rules, project_rules, service_rules, Action, ExecHook, RuleError, WatchRule,
};
pub use target::{apply, Outcome, TargetError, WatchTarget};
pub use watcher::{run, FileWatcher, Progress, Timing, WatchError};
