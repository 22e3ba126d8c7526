//! The seam between the command line and an engine that runs containers.
//!
//! The CLI parses flags, loads the project, builds images, picks a
//! [`Backend`] and renders what it returns; everything that touches
//! containers goes through this trait. Two engines implement it: the
//! embedded one (berth's own sandbox, network and supervisor) and the
//! Docker Engine (through its API). The planner ([`crate::plan`]) is shared:
//! a backend observes what runs as [`ObservedContainer`]s, the planner
//! decides, and the backend applies the [`Plan`].
//!
//! Everything here is plain data so it can cross a socket (the embedded
//! engine's supervisor) or be rendered as JSON (`ps --format json`).

use crate::planner::{ObservedContainer, Plan, PlanOptions};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

pub type Result<T> = std::result::Result<T, BackendError>;

/// What went wrong, typed so a caller can react (exit code, message,
/// retry) without matching strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The project has no running engine state (nothing is up).
    NotRunning,
    /// A service, container, image or path that does not exist.
    NotFound,
    /// The request is malformed or contradicts the project.
    Invalid,
    /// This backend cannot do what was asked (named in the message).
    Unsupported,
    /// The user interrupted the operation (Ctrl-C); what it started is undone.
    Interrupted,
    /// The engine failed (a syscall, the daemon, a container).
    Engine,
}

/// One error from a backend: a kind and a one-line message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct BackendError {
    pub kind: ErrorKind,
    pub message: String,
}

impl From<std::io::Error> for BackendError {
    fn from(e: std::io::Error) -> Self {
        BackendError::engine(e)
    }
}

impl From<serde_json::Error> for BackendError {
    fn from(e: serde_json::Error) -> Self {
        BackendError::engine(e)
    }
}

impl From<crate::PlanError> for BackendError {
    fn from(e: crate::PlanError) -> Self {
        BackendError::invalid(e)
    }
}

impl From<berth_compose::LoadError> for BackendError {
    fn from(e: berth_compose::LoadError) -> Self {
        BackendError::invalid(e)
    }
}

impl From<crate::project_files::ProjectFileError> for BackendError {
    fn from(e: crate::project_files::ProjectFileError) -> Self {
        BackendError::invalid(e)
    }
}

impl From<berth_oci::StoreError> for BackendError {
    fn from(e: berth_oci::StoreError) -> Self {
        BackendError::engine(e)
    }
}

/// `.context("doing X")` for any error or a missing value: a one-line
/// [`BackendError`] that says what was being done, then why it failed.
pub trait Context<T> {
    fn context(self, doing: impl std::fmt::Display) -> Result<T>;
    fn with_context<D: std::fmt::Display>(self, doing: impl FnOnce() -> D) -> Result<T>;
}

impl<T, E: std::fmt::Display> Context<T> for std::result::Result<T, E> {
    fn context(self, doing: impl std::fmt::Display) -> Result<T> {
        self.map_err(|e| BackendError::engine(format!("{doing}: {e}")))
    }

    fn with_context<D: std::fmt::Display>(self, doing: impl FnOnce() -> D) -> Result<T> {
        self.map_err(|e| BackendError::engine(format!("{}: {e}", doing())))
    }
}

impl<T> Context<T> for Option<T> {
    fn context(self, what: impl std::fmt::Display) -> Result<T> {
        self.ok_or_else(|| BackendError::not_found(what))
    }

    fn with_context<D: std::fmt::Display>(self, what: impl FnOnce() -> D) -> Result<T> {
        self.ok_or_else(|| BackendError::not_found(what()))
    }
}

/// Return a [`BackendError`] of a kind: `bail!(Invalid, "no such service: {s}")`.
#[macro_export]
macro_rules! bail {
    ($kind:ident, $($arg:tt)*) => {
        return Err($crate::BackendError::new($crate::ErrorKind::$kind, format!($($arg)*)))
    };
}

impl BackendError {
    pub fn new(kind: ErrorKind, message: impl std::fmt::Display) -> Self {
        BackendError {
            kind,
            message: message.to_string(),
        }
    }

    pub fn engine(message: impl std::fmt::Display) -> Self {
        Self::new(ErrorKind::Engine, message)
    }

    pub fn not_found(message: impl std::fmt::Display) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    pub fn not_running(project: &str) -> Self {
        Self::new(
            ErrorKind::NotRunning,
            format!("project {project} is not running"),
        )
    }

    /// What this backend lacks, for a command or option it cannot honour.
    pub fn unsupported(backend: &str, what: impl std::fmt::Display) -> Self {
        Self::new(
            ErrorKind::Unsupported,
            format!("the {backend} engine does not support {what}"),
        )
    }

    pub fn invalid(message: impl std::fmt::Display) -> Self {
        Self::new(ErrorKind::Invalid, message)
    }
}

/// A container's lifecycle state, as `docker ps` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Created,
    Running,
    Paused,
    Restarting,
    Exited,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Restarting => "restarting",
            Status::Exited => "exited",
        }
    }

    pub fn parse(text: &str) -> Option<Status> {
        Some(match text {
            "created" => Status::Created,
            "running" => Status::Running,
            "paused" => Status::Paused,
            "restarting" => Status::Restarting,
            "exited" | "dead" | "removing" => Status::Exited,
            _ => return None,
        })
    }

    /// Has processes (running or frozen).
    pub fn is_alive(self) -> bool {
        matches!(self, Status::Running | Status::Paused | Status::Restarting)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A healthcheck's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Starting,
    Healthy,
    Unhealthy,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Starting => "starting",
            Health::Healthy => "healthy",
            Health::Unhealthy => "unhealthy",
        }
    }

    pub fn parse(text: &str) -> Option<Health> {
        Some(match text {
            "starting" => Health::Starting,
            "healthy" => Health::Healthy,
            "unhealthy" => Health::Unhealthy,
            _ => return None,
        })
    }
}

/// One container of the project, as `ps`, `inspect`, `exec` and `wait`
/// need it. The serde names are the ones `docker compose ps --format json`
/// uses, so scripts written for it read berth's output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Container {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Service")]
    pub service: String,
    #[serde(rename = "ID")]
    pub id: String,
    /// The container's number within its service (`web-2` is 2).
    #[serde(rename = "Number", default)]
    pub number: u32,
    /// Made by `run`.
    #[serde(rename = "OneOff", default)]
    pub one_off: bool,
    /// The main process on this host, when the engine runs here.
    #[serde(rename = "Pid")]
    pub pid: Option<i32>,
    #[serde(rename = "State")]
    pub status: Status,
    #[serde(rename = "ExitCode")]
    pub exit_code: Option<i32>,
    #[serde(rename = "RestartCount")]
    pub restarts: u32,
    /// Absent without a healthcheck.
    #[serde(rename = "Health", default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
    #[serde(rename = "IPAddress")]
    pub ip: Option<String>,
    /// Published ports as `HOST_IP:HOST_PORT->PORT/PROTO`.
    #[serde(rename = "Publishers")]
    pub ports: Vec<String>,
    #[serde(rename = "Labels", default)]
    pub labels: BTreeMap<String, String>,
    /// The service's `annotations` (OCI annotations, as `docker inspect`
    /// shows them under `HostConfig.Annotations`).
    #[serde(
        rename = "Annotations",
        default,
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub annotations: BTreeMap<String, String>,
    #[serde(rename = "Image", default)]
    pub image: String,
}

/// What runs for one project.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProjectStatus {
    pub project: String,
    /// Sorted by name.
    pub containers: Vec<Container>,
    /// What the planner compares on the next `up`.
    pub observed: Vec<ObservedContainer>,
    /// Who keeps it running, for messages (`supervisor pid 4242`, `dockerd`).
    pub keeper: String,
}

impl ProjectStatus {
    /// The running containers of `service`, by number: `index` 1 is the first.
    pub fn running(&self, service: &str, index: usize) -> Option<&Container> {
        let mut of: Vec<&Container> = self
            .containers
            .iter()
            .filter(|c| c.service == service && c.status == Status::Running && !c.one_off)
            .collect();
        of.sort_by_key(|c| (c.number, c.name.clone()));
        of.get(index.saturating_sub(1)).copied()
    }
}

/// A project in `berth ls`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ProjectSummary {
    pub name: String,
    /// Containers with processes.
    pub running: usize,
    /// All its containers, exited ones included.
    pub total: usize,
}

/// The loader's inputs, as the CLI saw them: an engine that loads the
/// project itself (the embedded supervisor) loads it exactly as the
/// command that sent it would have.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LoadRequest {
    pub files: Vec<PathBuf>,
    pub project_directory: Option<PathBuf>,
    pub project_name: Option<String>,
    pub env_files: Vec<PathBuf>,
    pub profiles: Vec<String>,
    pub os_env: indexmap::IndexMap<String, String>,
    pub cwd: PathBuf,
    pub stdin: Option<String>,
}

impl From<&berth_compose::Options> for LoadRequest {
    fn from(o: &berth_compose::Options) -> Self {
        LoadRequest {
            files: o.files.clone(),
            project_directory: o.project_directory.clone(),
            project_name: o.project_name.clone(),
            env_files: o.env_files.clone(),
            profiles: o.profiles.clone(),
            os_env: o.os_env.clone(),
            cwd: o.cwd.clone(),
            stdin: o.stdin.clone(),
        }
    }
}

impl From<LoadRequest> for berth_compose::Options {
    fn from(r: LoadRequest) -> Self {
        berth_compose::Options {
            files: r.files,
            project_directory: r.project_directory,
            project_name: r.project_name,
            env_files: r.env_files,
            profiles: r.profiles,
            os_env: r.os_env,
            cwd: r.cwd,
            stdin: r.stdin,
            ..berth_compose::Options::default()
        }
    }
}

/// The `up` flags that shape a plan, on the wire.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PlanFlags {
    pub services: Vec<String>,
    pub force_recreate: bool,
    pub no_recreate: bool,
    pub always_recreate_deps: bool,
    pub renew_anon_volumes: bool,
    pub no_deps: bool,
    pub scale: BTreeMap<String, u32>,
    pub remove_orphans: bool,
}

impl From<&PlanFlags> for PlanOptions {
    fn from(f: &PlanFlags) -> Self {
        PlanOptions {
            services: f.services.clone(),
            force_recreate: f.force_recreate,
            no_recreate: f.no_recreate,
            always_recreate_deps: f.always_recreate_deps,
            renew_anon_volumes: f.renew_anon_volumes,
            no_deps: f.no_deps,
            scale: f.scale.clone(),
            remove_orphans: f.remove_orphans,
        }
    }
}

/// A verified language runtime (`x-runtime`) from berth's runtime store,
/// mounted read-only into the service's containers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeMount {
    /// The unpacked runtime (`bin/node`, …) on this host.
    pub root: PathBuf,
    /// Its content digest: a new runtime recreates the service.
    pub digest: String,
    /// A shared npm cache, unless the service opted out.
    pub npm_cache: Option<PathBuf>,
    /// The host's CA bundle, so HTTPS through this machine's proxy works.
    pub ca_bundle: Option<PathBuf>,
}

/// `up`: the project as loaded, the image each service runs and the plan
/// flags. Images are already built or pulled (see [`Backend::has_image`]).
pub struct UpRequest<'a> {
    pub load: &'a LoadRequest,
    pub loaded: &'a berth_compose::Loaded,
    /// Service → image reference (in berth's store, or the daemon's).
    pub images: &'a BTreeMap<String, String>,
    /// Service → its `x-runtime`, resolved and installed.
    pub runtimes: &'a BTreeMap<String, RuntimeMount>,
    pub flags: &'a PlanFlags,
}

/// `down`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DownOptions {
    /// `-t`; each service's `stop_grace_period` when absent.
    pub timeout_secs: Option<u64>,
    /// `-v`: also remove the project's named (non-external) and anonymous volumes.
    pub volumes: bool,
}

/// The container lifecycle commands. An empty service list means all.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Control {
    Stop {
        services: Vec<String>,
        timeout_secs: Option<u64>,
    },
    Start {
        services: Vec<String>,
    },
    Restart {
        services: Vec<String>,
        timeout_secs: Option<u64>,
    },
    Kill {
        services: Vec<String>,
        signal: i32,
    },
    Rm {
        services: Vec<String>,
        force: bool,
    },
    Pause {
        services: Vec<String>,
        pause: bool,
    },
}

/// `run`: a one-off container of a service. Its stdio is this process's
/// (or a pseudo-terminal on it) unless detached.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunRequest {
    pub load: LoadRequest,
    pub service: String,
    pub command: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub env: Vec<String>,
    pub user: Option<String>,
    pub workdir: Option<String>,
    pub service_ports: bool,
    pub ports: Vec<String>,
    pub name: Option<String>,
    pub no_deps: bool,
    pub rm: bool,
    pub detach: bool,
    pub tty: bool,
    /// Service → image reference, as for `up` (the one-off's and its dependencies').
    pub images: BTreeMap<String, String>,
    /// Service → its `x-runtime`, resolved and installed.
    pub runtimes: BTreeMap<String, RuntimeMount>,
}

/// How a one-off ended (or that it runs on, detached).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    Detached { name: String },
    Exited { code: i32 },
}

/// `attach`: a running container's streams, as `docker compose attach`.
#[derive(Debug, Clone, Default)]
pub struct AttachRequest {
    pub container: Container,
    /// Forward this process's stdin (`--no-stdin` turns it off); only a
    /// container with `stdin_open` takes it.
    pub stdin: bool,
    /// Forward the signals this process gets to the container's main
    /// process (`--sig-proxy`; not for a terminal, where Ctrl-C is a key).
    pub sig_proxy: bool,
    /// The key sequence that detaches (`--detach-keys`, parsed).
    pub detach_keys: Vec<u8>,
}

/// How an attach ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachOutcome {
    /// The container exited with this code.
    Exited(i32),
    /// The user detached; the container runs on.
    Detached,
}

/// `exec`: a command in a running container, with this process's stdio.
#[derive(Debug, Clone, Default)]
pub struct ExecRequest {
    pub container: Container,
    pub command: Vec<String>,
    pub user: Option<String>,
    pub workdir: Option<String>,
    pub env: Vec<String>,
    pub tty: bool,
    pub privileged: bool,
    pub detach: bool,
}

impl Default for Container {
    fn default() -> Self {
        Container {
            name: String::new(),
            service: String::new(),
            id: String::new(),
            number: 0,
            one_off: false,
            pid: None,
            status: Status::Created,
            exit_code: None,
            restarts: 0,
            health: None,
            ip: None,
            ports: Vec::new(),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            image: String::new(),
        }
    }
}

/// The host side of `cp`: a path, or a tar stream on stdin/stdout (`-`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostEnd {
    Path(PathBuf),
    Stdio,
}

/// `cp`, one direction.
#[derive(Debug, Clone)]
pub struct CopyRequest {
    pub container: Container,
    /// Absolute path inside the container.
    pub path: String,
    pub host: HostEnd,
    /// From the container to the host.
    pub out: bool,
}

/// One process in `top`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Process {
    pub uid: String,
    pub pid: u32,
    pub ppid: u32,
    pub command: String,
}

/// Which lines `logs` shows.
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    /// Empty: all services.
    pub services: Vec<String>,
    pub follow: bool,
    /// The last N lines of each container.
    pub tail: Option<usize>,
    /// RFC 3339 bounds (already parsed from the user's forms).
    pub since: Option<String>,
    pub until: Option<String>,
    /// Start at the end: only what is written from now on (attached `up`).
    pub from_now: bool,
}

/// One line of a container's output.
#[derive(Debug, Clone)]
pub struct LogLine {
    pub container: String,
    pub service: String,
    pub stderr: bool,
    /// RFC 3339 with nanoseconds, when the engine keeps it.
    pub time: Option<String>,
    pub text: String,
}

/// A container event (`berth events`), docker's vocabulary.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    pub time: String,
    pub action: String,
    /// The container's name.
    #[serde(rename = "id")]
    pub container: String,
    #[serde(default)]
    pub service: String,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

/// Progress lines for long operations (` ✔ Container web-1 Started`).
pub type Progress<'a> = &'a (dyn Fn(&str) + Sync);

/// A container engine. Object-safe: the CLI holds a `Box<dyn Backend>`.
///
/// Methods that watch something (`logs` with follow, `events`) call
/// `stop` between batches and return once it says true.
pub trait Backend {
    /// `embedded`, `docker`: for messages.
    fn name(&self) -> &'static str;

    /// What runs for `project`; `None` when nothing does.
    fn observe(&self, project: &str) -> Result<Option<ProjectStatus>>;

    /// Every project this engine runs (`ls`).
    fn projects(&self) -> Result<Vec<ProjectSummary>>;

    /// Whether the engine has `reference` (a berth store name such as
    /// `docker.io/library/redis:7`).
    fn has_image(&self, reference: &str) -> Result<bool>;

    /// Pull `reference` from its registry into the engine.
    fn pull_image(&self, reference: &str, progress: Progress) -> Result<()>;

    /// Hand an image berth built (in berth's store) to the engine; a no-op
    /// for an engine that runs from berth's store.
    fn import_image(
        &self,
        store: &berth_oci::Store,
        reference: &str,
        progress: Progress,
    ) -> Result<()>;

    /// The plan `up` would apply now, with the reason for every step.
    fn plan(&self, request: &UpRequest) -> Result<Plan>;

    /// Converge the project onto the plan.
    fn up(&self, request: &UpRequest, progress: Progress) -> Result<()>;

    /// Stop and remove every container, network (and with `volumes`,
    /// volume) of the project. False when nothing was there.
    fn down(
        &self,
        project: &berth_compose::Project,
        options: &DownOptions,
        progress: Progress,
    ) -> Result<bool>;

    /// stop/start/restart/kill/rm/pause.
    fn control(&self, project: &str, control: &Control, progress: Progress) -> Result<()>;

    /// A one-off container.
    fn run(&self, project: &str, request: &RunRequest) -> Result<RunOutcome>;

    /// A command in a running container; its exit code (0 when detached).
    fn exec(&self, project: &str, request: &ExecRequest) -> Result<i32>;

    /// `attach`: this process's stdin, stdout and stderr joined to a
    /// running container's until it exits (`Exited`) or the user detaches.
    fn attach(&self, _project: &str, _request: &AttachRequest) -> Result<AttachOutcome> {
        Err(BackendError::unsupported(self.name(), "attach"))
    }

    /// Copy between the host and a running container.
    fn copy(&self, project: &str, request: &CopyRequest) -> Result<()>;

    /// The processes of a running container.
    fn top(&self, project: &str, container: &Container) -> Result<Vec<Process>>;

    /// Containers' output, oldest first.
    fn logs(
        &self,
        project: &str,
        options: &LogOptions,
        sink: &mut dyn FnMut(LogLine),
        stop: &dyn Fn() -> bool,
    ) -> Result<()>;

    /// Container events as they happen.
    fn events(
        &self,
        project: &str,
        sink: &mut dyn FnMut(Event),
        stop: &dyn Fn() -> bool,
    ) -> Result<()>;
}
