//! What commands and the supervisor say over its unix socket: one JSON
//! request line from the command (with its stdio fds for an attached
//! `run`), then reply lines until `Ok` or `Error`.

use berth_engine::backend::{
    BackendError, Control, LoadRequest, PlanFlags, RunRequest, RuntimeMount,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Up {
        load: Box<LoadRequest>,
        flags: PlanFlags,
        /// Service → image in berth's store, as the command resolved them.
        images: BTreeMap<String, String>,
        runtimes: BTreeMap<String, RuntimeMount>,
    },
    Down {
        /// `down -t`; each service's `stop_grace_period` when absent.
        timeout_secs: Option<u64>,
    },
    Control {
        control: Control,
    },
    /// A one-off container; its stdin, stdout and stderr come with the
    /// request (`SCM_RIGHTS`) unless detached.
    Run {
        run: Box<RunRequest>,
    },
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    Progress(String),
    Ok,
    Error(BackendError),
    /// A one-off container's name, once it started.
    Started(String),
    /// An attached one-off exited with this code.
    Exited(i32),
}
