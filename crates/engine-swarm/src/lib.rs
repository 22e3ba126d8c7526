//! berth on Docker Swarm: the [`Backend`] trait on a swarm manager, through
//! the Engine API (bollard), for projects larger than one machine.
//!
//! - `spec`: a compose service as a swarm service; every key is mapped,
//!   listed in the plan as not applied, or refused by its path.
//! - `images`: the nodes pull from the cluster's registry; `up` pushes each
//!   service's image there, composing a code service's layers onto the
//!   runtime image of the service that mounted its volumes.
//! - `apply`: plan, up (overlay networks, services created or updated,
//!   waiting on every task), down.
//! - `proxy`: published ports held by a global service of berth's, so
//!   tasks roll start-first (no routing mesh needed).
//! - `observe`: services and their tasks read back through docker stack's
//!   namespace label.
//! - `nodes`: the Engine of the node a task runs on, for exec, cp, top and
//!   attach.
//! - `logs`: every task's output through the manager, followed across rolls.
//!
//! Like the docker backend, this one owns a small current-thread tokio
//! runtime and blocks on each call.

mod adapt;
mod apply;
mod files;
mod images;
mod labels;
mod logs;
mod nodes;
mod observe;
mod probe;
pub mod proxy;
mod spec;

pub use images::{compose, ClusterRegistry, ProxyLaunch, Shipped};
pub use nodes::{NodeEndpoints, NODES_ENV};
pub use spec::{check_project, not_applied, service_name};

use berth_engine::backend::{
    AttachOutcome, AttachRequest, Container, Control, CopyRequest, DownOptions, Event, ExecRequest,
    LogLine, LogOptions, Process, Progress, ProjectStatus, ProjectSummary, RunOutcome, RunRequest,
    UpRequest,
};
use berth_engine::{Backend, BackendError, ErrorKind, Plan};
use berth_engine_docker::Endpoint;
use bollard::Docker;

type Result<T> = std::result::Result<T, BackendError>;

/// The variable naming the cluster's registry (`host:port`), which every
/// node pulls from and this machine pushes to.
pub const REGISTRY_ENV: &str = "BERTH_SWARM_REGISTRY";

const REQUEST_TIMEOUT_SECS: u64 = 600;

/// The compose-service label of berth's proxy service (a project's own
/// service of this name is refused).
pub(crate) const PROXY_SERVICE: &str = "berth-proxy";

/// The Docker Swarm backend: a manager's Engine API and the cluster's registry.
pub struct SwarmBackend {
    docker: Docker,
    rt: tokio::runtime::Runtime,
    endpoint: Endpoint,
    /// The manager's own node, whose containers its Engine reaches.
    node_id: String,
    node_endpoints: NodeEndpoints,
    registry: Option<ClusterRegistry>,
    /// Set: published ports are held by berth's proxy (a global service),
    /// so services with ports roll start-first.
    proxy: Option<ProxyLaunch>,
}

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

/// A client of the Docker Engine at `host` (`unix://…`, `tcp://…`), its
/// API version agreed.
pub(crate) async fn engine_client(host: &str) -> Result<Docker> {
    let version = bollard::API_DEFAULT_VERSION;
    let docker = if let Some(path) = host.strip_prefix("unix://") {
        Docker::connect_with_unix(path, REQUEST_TIMEOUT_SECS, version)
    } else {
        Docker::connect_with_http(host, REQUEST_TIMEOUT_SECS, version)
    }
    .map_err(|e| BackendError::engine(format!("Docker host {host}: {e}")))?;
    docker
        .negotiate_version()
        .await
        .map_err(|e| BackendError::engine(format!("cannot reach the Docker Engine at {host}: {e}")))
}

impl SwarmBackend {
    /// Connect to the manager `DOCKER_HOST` or the current Docker context
    /// names; the registry from [`REGISTRY_ENV`], the other nodes' Engines
    /// from [`NODES_ENV`].
    pub fn connect() -> Result<SwarmBackend> {
        let endpoint = berth_engine_docker::connect::resolve(&|k| std::env::var(k).ok())
            .map_err(BackendError::invalid)?;
        let registry = std::env::var(REGISTRY_ENV).ok().filter(|r| !r.is_empty());
        let nodes = NodeEndpoints::parse(&std::env::var(NODES_ENV).unwrap_or_default())?;
        Ok(Self::connect_to(endpoint, registry.as_deref())?.with_node_endpoints(nodes))
    }

    pub fn connect_to(endpoint: Endpoint, registry: Option<&str>) -> Result<SwarmBackend> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| BackendError::engine(format!("starting the Docker client: {e}")))?;
        let docker = rt.block_on(engine_client(&endpoint.host))?;
        let info = rt
            .block_on(docker.info())
            .map_err(|e| api_err(format!("Docker host {}", endpoint.host), e))?;
        let manager = info
            .swarm
            .as_ref()
            .and_then(|s| s.control_available)
            .unwrap_or(false);
        let node_id = info.swarm.and_then(|s| s.node_id).unwrap_or_default();
        if !manager {
            return Err(BackendError::invalid(format!(
                "the Docker Engine at {} is not a swarm manager (run `docker swarm init` there, or point DOCKER_HOST at a manager)",
                endpoint.host
            )));
        }
        Ok(SwarmBackend {
            docker,
            rt,
            endpoint,
            node_id,
            node_endpoints: NodeEndpoints::default(),
            registry: registry.map(ClusterRegistry::new),
            proxy: None,
        })
    }

    /// Publish ports through berth's proxy, run on every node from
    /// `launch` (see [`proxy`]). Without it ports are published by each
    /// task in host mode and services with ports roll stop-first.
    pub fn with_proxy(mut self, launch: ProxyLaunch) -> Self {
        self.proxy = Some(launch);
        self
    }

    /// How to reach the Engines of nodes other than the manager's.
    pub fn with_node_endpoints(mut self, nodes: NodeEndpoints) -> Self {
        self.node_endpoints = nodes;
        self
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    pub(crate) fn block<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    pub(crate) fn registry(&self) -> Result<&ClusterRegistry> {
        self.registry.as_ref().ok_or_else(|| {
            BackendError::invalid(format!(
                "the swarm engine needs a registry every node pulls from: set {REGISTRY_ENV}=host:port"
            ))
        })
    }

    fn lacks(&self, what: &str) -> BackendError {
        BackendError::unsupported("swarm", what)
    }
}

impl Backend for SwarmBackend {
    fn name(&self) -> &'static str {
        "swarm"
    }

    fn observe(&self, project: &str) -> Result<Option<ProjectStatus>> {
        self.block(self.observe_project(project))
    }

    fn projects(&self) -> Result<Vec<ProjectSummary>> {
        self.block(self.list_projects())
    }

    /// Images are pushed from berth's store by `up`, so berth's store is
    /// where they must be.
    fn has_image(&self, reference: &str) -> Result<bool> {
        let store = open_store()?;
        Ok(store
            .resolve(reference)
            .map_err(|e| BackendError::engine(format!("image store: {e}")))?
            .is_some())
    }

    /// The nodes pull only from the cluster's registry: berth pulls the
    /// image itself (the CLI falls back to its own client on this error)
    /// and `up` pushes it there.
    fn pull_image(&self, reference: &str, _progress: Progress) -> Result<()> {
        Err(self.lacks(&format!(
            "pulling {reference} on the nodes (berth pulls it and pushes it to the cluster's registry)"
        )))
    }

    /// Nothing to hand over yet: `up` pushes what it deploys (composed
    /// where a service mounts code), by digest.
    fn import_image(
        &self,
        _store: &berth_oci::Store,
        _reference: &str,
        _progress: Progress,
    ) -> Result<()> {
        Ok(())
    }

    fn plan(&self, request: &UpRequest) -> Result<Plan> {
        self.block(self.make_plan(request))
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
        self.block(self.tear_down(&project.name, options, progress))
    }

    fn control(&self, _project: &str, control: &Control, _progress: Progress) -> Result<()> {
        let what = match control {
            Control::Stop { .. } => "stop (scale the service to 0, or down)",
            Control::Start { .. } => "start (swarm keeps services running)",
            Control::Restart { .. } => "restart (up --force-recreate rolls the tasks)",
            Control::Kill { .. } => "kill",
            Control::Rm { .. } => "rm (down removes the services)",
            Control::Pause { .. } => "pause",
        };
        Err(self.lacks(what))
    }

    fn run(&self, _project: &str, _request: &RunRequest) -> Result<RunOutcome> {
        Err(self.lacks("run (one-off tasks)"))
    }

    /// On the task's own node, through that node's Engine.
    fn exec(&self, project: &str, request: &ExecRequest) -> Result<i32> {
        let (node, container) = self.on_node(&request.container, "exec")?;
        node.exec(
            project,
            &ExecRequest {
                container,
                ..request.clone()
            },
        )
    }

    fn attach(&self, project: &str, request: &AttachRequest) -> Result<AttachOutcome> {
        let (node, container) = self.on_node(&request.container, "attach")?;
        node.attach(
            project,
            &AttachRequest {
                container,
                ..request.clone()
            },
        )
    }

    fn copy(&self, project: &str, request: &CopyRequest) -> Result<()> {
        let (node, container) = self.on_node(&request.container, "cp")?;
        node.copy(
            project,
            &CopyRequest {
                container,
                ..request.clone()
            },
        )
    }

    fn top(&self, project: &str, container: &Container) -> Result<Vec<Process>> {
        let (node, target) = self.on_node(container, "top")?;
        node.top(project, &target)
    }

    fn logs(
        &self,
        project: &str,
        options: &LogOptions,
        sink: &mut dyn FnMut(LogLine),
        stop: &dyn Fn() -> bool,
    ) -> Result<()> {
        self.stream_logs(project, options, sink, stop)
    }

    fn events(
        &self,
        _project: &str,
        _sink: &mut dyn FnMut(Event),
        _stop: &dyn Fn() -> bool,
    ) -> Result<()> {
        Err(self.lacks("events"))
    }
}

pub(crate) fn open_store() -> Result<berth_oci::Store> {
    let root = berth_oci::store::state_dir().join("images");
    berth_oci::Store::open(&root).map_err(|e| {
        BackendError::engine(format!(
            "opening the image store at {}: {e}",
            root.display()
        ))
    })
}
