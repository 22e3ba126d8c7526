//! berth on the Docker Engine: the [`Backend`] trait through the Engine API
//! (bollard), with docker compose's labels and names, so the same planner
//! converges projects on a Docker host and Docker's own tools (`docker
//! compose ps`, `docker-compose ps`, Docker Desktop) list what berth runs.
//!
//! - `connect`: which daemon (`DOCKER_HOST`, the current Docker context).
//! - `spec`: a compose service as an Engine API container; every key is
//!   mapped or refused by its path before anything is made.
//! - `observe`: containers read back through their labels, for `ps` and as
//!   the planner's observed state (config hash label, image ID).
//! - `apply`: `up` (the plan's steps in order, networks, volumes, waits on
//!   dependencies, anonymous volumes carried over or renewed), `down`,
//!   image pull and load.
//! - `keeper`: published ports held by berth's proxy in a per-project
//!   process, so replacements are start-first swaps with no refused request.
//! - `ops`: control, run, exec, cp, top, logs, events.
//!
//! bollard is async; berth's backends are not. The backend owns a small
//! current-thread tokio runtime and blocks on each call: one command talks
//! to one daemon at a time, so a multi-threaded runtime would buy nothing.
//! Callbacks that may call the backend again (`logs`/`events` sinks and
//! stops) run outside that runtime; `progress` runs inside it and must not.

mod apply;
mod attach;
pub mod connect;
mod hooks;
mod keeper;
mod labels;
mod observe;
mod ops;
mod spec;

use berth_engine::backend::{
    AttachOutcome, AttachRequest, Container, Control, CopyRequest, DownOptions, Event, ExecRequest,
    LogLine, LogOptions, Process, Progress, ProjectStatus, ProjectSummary, RunOutcome, RunRequest,
    UpRequest,
};
use berth_engine::{Backend, BackendError, ErrorKind, Plan};
use bollard::Docker;
pub use connect::Endpoint;
pub use keeper::{keep_ports, socket_path as keeper_socket, KeeperLaunch};
/// Docker's log times, for backends that read Docker logs another way.
pub use ops::{parse_rfc3339, parse_rfc3339_nanos};

type Result<T> = std::result::Result<T, BackendError>;

/// How long one Engine API request may take before berth gives up on the
/// daemon (pulls and loads stream progress, so they are not cut short).
const REQUEST_TIMEOUT_SECS: u64 = 600;

/// The Docker Engine backend.
pub struct DockerBackend {
    docker: Docker,
    rt: tokio::runtime::Runtime,
    endpoint: Endpoint,
    /// Set: published ports of a local daemon are held by berth's keeper,
    /// which makes start-first swaps possible.
    keeper: Option<KeeperLaunch>,
}

/// One line for an Engine API error; 404 is [`ErrorKind::NotFound`].
pub(crate) fn api_err(context: impl std::fmt::Display, e: bollard::errors::Error) -> BackendError {
    use bollard::errors::Error as E;
    match e {
        E::DockerResponseServerError {
            status_code,
            message,
        } => {
            let kind = match status_code {
                404 => ErrorKind::NotFound,
                400 | 409 => ErrorKind::Invalid,
                _ => ErrorKind::Engine,
            };
            BackendError::new(kind, format!("{context}: {}", message.trim()))
        }
        other => BackendError::engine(format!("{context}: {other}")),
    }
}

pub(crate) fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

impl DockerBackend {
    /// Connect to the daemon `DOCKER_HOST` or the current Docker context
    /// names (else the default socket) and agree on an API version.
    pub fn connect() -> Result<DockerBackend> {
        let endpoint =
            connect::resolve(&|k| std::env::var(k).ok()).map_err(BackendError::invalid)?;
        Self::connect_to(endpoint)
    }

    /// Connect to `endpoint`.
    pub fn connect_to(endpoint: Endpoint) -> Result<DockerBackend> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| BackendError::engine(format!("starting the Docker client: {e}")))?;
        let version = bollard::API_DEFAULT_VERSION;
        let docker = if let Some(path) = endpoint.host.strip_prefix("unix://") {
            Docker::connect_with_unix(path, REQUEST_TIMEOUT_SECS, version)
        } else {
            Docker::connect_with_http(&endpoint.host, REQUEST_TIMEOUT_SECS, version)
        }
        .map_err(|e| BackendError::engine(format!("Docker host {}: {e}", endpoint.host)))?;
        // Docker 20.10 speaks API 1.41 and refuses newer clients outright.
        let docker = rt.block_on(docker.negotiate_version()).map_err(|e| {
            BackendError::engine(format!(
                "cannot reach the Docker Engine at {}: {e}",
                endpoint.host
            ))
        })?;
        Ok(DockerBackend {
            docker,
            rt,
            endpoint,
            keeper: None,
        })
    }

    /// Hold published ports with berth's port keeper (started with
    /// `launch` when needed) so services with ports are swapped start-first
    /// with no refused request. Ignored for a remote daemon, whose
    /// containers this machine cannot reach: there Docker publishes the
    /// ports and swaps are stop-first.
    pub fn with_port_keeper(mut self, launch: KeeperLaunch) -> Self {
        self.keeper = Some(launch);
        self
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    pub(crate) fn block<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// Hand what a watching task sends to `sink` until `stop` says so or
    /// the task ends. `sink` and `stop` run outside the runtime (between
    /// short waits on it), so they may call the backend themselves (an
    /// attached `up` asks `observe` whether a container exited).
    fn relay<T>(
        &self,
        mut rx: tokio::sync::mpsc::Receiver<Result<T>>,
        sink: &mut dyn FnMut(T),
        stop: &dyn Fn() -> bool,
    ) -> Result<()> {
        loop {
            if stop() {
                return Ok(());
            }
            let next = self.block(async { tokio::time::timeout(ops::STOP_POLL, rx.recv()).await });
            match next {
                Err(_) => continue,
                Ok(None) => return Ok(()),
                Ok(Some(Ok(item))) => sink(item),
                Ok(Some(Err(e))) => return Err(e),
            }
        }
    }
}

impl Backend for DockerBackend {
    fn name(&self) -> &'static str {
        "docker"
    }

    fn observe(&self, project: &str) -> Result<Option<ProjectStatus>> {
        self.block(self.observe_project(project))
    }

    fn projects(&self) -> Result<Vec<ProjectSummary>> {
        self.block(self.list_projects())
    }

    fn has_image(&self, reference: &str) -> Result<bool> {
        self.block(self.image_id(reference)).map(|id| id.is_some())
    }

    fn pull_image(&self, reference: &str, progress: Progress) -> Result<()> {
        self.block(self.pull(reference, progress))
    }

    fn import_image(
        &self,
        store: &berth_oci::Store,
        reference: &str,
        progress: Progress,
    ) -> Result<()> {
        self.block(self.load(store, reference, progress))
    }

    fn plan(&self, request: &UpRequest) -> Result<Plan> {
        self.block(self.make_plan(request, false))
            .map(|(plan, _)| plan)
    }

    fn up(&self, request: &UpRequest, progress: Progress) -> Result<()> {
        self.block(self.converge(request, progress))
    }

    fn down(
        &self,
        project: &berth_compose::Project,
        options: &DownOptions,
        progress: Progress,
    ) -> Result<bool> {
        self.block(self.tear_down(project, options, progress))
    }

    fn control(&self, project: &str, control: &Control, progress: Progress) -> Result<()> {
        self.block(self.control_project(project, control, progress))
    }

    fn run(&self, project: &str, request: &RunRequest) -> Result<RunOutcome> {
        self.block(self.run_one_off(project, request))
    }

    fn exec(&self, project: &str, request: &ExecRequest) -> Result<i32> {
        self.block(self.exec_in(project, request))
    }

    fn attach(&self, _project: &str, request: &AttachRequest) -> Result<AttachOutcome> {
        self.block(self.attach_to(request))
    }

    fn copy(&self, project: &str, request: &CopyRequest) -> Result<()> {
        self.block(self.copy_files(project, request))
    }

    fn top(&self, project: &str, container: &Container) -> Result<Vec<Process>> {
        self.block(self.top_of(project, container))
    }

    fn logs(
        &self,
        project: &str,
        options: &LogOptions,
        sink: &mut dyn FnMut(LogLine),
        stop: &dyn Fn() -> bool,
    ) -> Result<()> {
        if !options.follow {
            for line in self.block(self.collect_logs(project, options))? {
                sink(line);
            }
            return Ok(());
        }
        if self.block(self.inspect_project(project))?.is_empty() {
            return Err(BackendError::not_running(project));
        }
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let task = self.rt.spawn(ops::follow_logs(
            self.docker.clone(),
            project.to_string(),
            options.clone(),
            tx,
        ));
        let result = self.relay(rx, sink, stop);
        task.abort();
        result
    }

    fn events(
        &self,
        project: &str,
        sink: &mut dyn FnMut(Event),
        stop: &dyn Fn() -> bool,
    ) -> Result<()> {
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let task = self.rt.spawn(ops::watch_events(
            self.docker.clone(),
            project.to_string(),
            tx,
        ));
        let result = self.relay(rx, sink, stop);
        task.abort();
        result
    }
}
