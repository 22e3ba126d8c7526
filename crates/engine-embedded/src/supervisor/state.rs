//! `state.json`: what the supervisor writes whenever its project changes,
//! and what commands read to show it (`ps`, `exec`, `wait`) without a
//! round trip to the supervisor.

#[cfg(feature = "runtime")]
use crate::ProjectRuntime;
use berth_engine::backend::Container;
#[cfg(feature = "runtime")]
use berth_engine::backend::{Health, Status};
use berth_engine::ObservedContainer;
use berth_oci::store::state_dir;
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::{Path, PathBuf};

/// Where a project's supervisor keeps its socket, state, logs and events.
pub fn project_dir(project: &str) -> PathBuf {
    state_dir().join("projects").join(project)
}

/// What a supervisor writes down about each container so the next one can
/// take it over; only the runtime reads it (elsewhere it is opaque).
#[cfg(feature = "runtime")]
pub type Record = crate::LiveRecord;
#[cfg(not(feature = "runtime"))]
pub type Record = serde_json::Value;

/// What a project's runtime made on the host: sandbox ids (each with its
/// namespace `berth-<id>`), the networks it created, its anonymous volumes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Footprint {
    pub containers: Vec<String>,
    pub networks: Vec<String>,
    pub volumes: Vec<PathBuf>,
}

/// What `ps` shows; written by the supervisor whenever it changes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProjectState {
    pub project: String,
    pub supervisor_pid: u32,
    pub containers: Vec<Container>,
    /// What the planner compares on the next `up`.
    pub observed: Vec<ObservedContainer>,
    /// What to clean up if the supervisor dies without `down`.
    #[serde(default)]
    pub footprint: Footprint,
    /// What the next supervisor needs to take the containers over.
    #[serde(default)]
    pub records: Vec<Record>,
}

/// Whether `pid` is a live berth supervisor (not a process that reused
/// the pid of a dead one).
pub(crate) fn alive(pid: u32) -> bool {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).contains("__supervise"))
        .unwrap_or(false)
}

/// The state a supervisor that died left behind, if any.
pub(crate) fn orphaned_state(project: &str) -> Option<ProjectState> {
    let bytes = fs::read(project_dir(project).join("state.json")).ok()?;
    let state: ProjectState = serde_json::from_slice(&bytes).ok()?;
    (!alive(state.supervisor_pid)).then_some(state)
}

/// The state of a project whose supervisor is alive.
pub fn read_state(dir: &Path) -> Option<ProjectState> {
    let s: ProjectState = serde_json::from_slice(&fs::read(dir.join("state.json")).ok()?).ok()?;
    alive(s.supervisor_pid).then_some(s)
}

#[cfg(feature = "runtime")]
pub(crate) fn write_state(dir: &Path, rt: &ProjectRuntime) -> std::io::Result<()> {
    let state = ProjectState {
        project: rt.project().to_string(),
        supervisor_pid: std::process::id(),
        containers: rt
            .containers()
            .into_iter()
            .map(|c| Container {
                status: if c.paused {
                    Status::Paused
                } else if c.restarting {
                    Status::Restarting
                } else if c.running {
                    Status::Running
                } else {
                    Status::Exited
                },
                number: c
                    .labels
                    .get("com.docker.compose.container-number")
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0),
                one_off: c
                    .labels
                    .get("com.docker.compose.oneoff")
                    .is_some_and(|v| v == "True"),
                name: c.name,
                service: c.service,
                id: c.id,
                pid: c.pid,
                exit_code: c.exit_code,
                restarts: c.restarts,
                health: c.health.as_deref().and_then(Health::parse),
                ip: c.ip.map(|ip| ip.to_string()),
                ports: c.ports,
                labels: c.labels,
                annotations: c.annotations,
                image: c.image,
            })
            .collect(),
        observed: rt.observed(),
        footprint: rt.footprint(),
        records: rt.records(),
    };
    let tmp = dir.join("state.json.tmp");
    fs::write(&tmp, serde_json::to_vec_pretty(&state)?)?;
    fs::rename(&tmp, dir.join("state.json"))
}

/// What a supervisor leaves behind once it is gone.
pub(crate) fn cleanup(dir: &Path) {
    for f in ["supervisor.sock", "state.json", "state.json.tmp"] {
        let _ = fs::remove_file(dir.join(f));
    }
}
