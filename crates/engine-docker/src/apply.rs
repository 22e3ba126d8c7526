//! `up` and `down` on the daemon: the planner's steps applied in order, the
//! project's networks and volumes, images pulled or loaded.

use crate::observe::{is_anonymous, labels_of, name_of, status_of};
use crate::spec::{self, Wanted};
use crate::{api_err, is_not_found, keeper, labels, DockerBackend, Result};
use berth_compose::model::{Project, Service};
use berth_engine::backend::{DownOptions, Health, Progress, RuntimeMount, Status, UpRequest};
use berth_engine::project_files::{self, ProjectFiles};
use berth_engine::{Action, BackendError, Desired, ObservedContainer, Plan, Step, Strategy};
use bollard::models::{
    ContainerInspectResponse, Ipam, IpamConfig, NetworkConnectRequest, NetworkCreateRequest,
    VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, ImportImageOptions, InspectContainerOptions,
    InspectNetworkOptions, ListNetworksOptions, ListVolumesOptions, RemoveContainerOptions,
    RemoveVolumeOptions, RenameContainerOptions, StartContainerOptions, StopContainerOptions,
    WaitContainerOptions,
};
use futures_util::StreamExt;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How long `up` waits for a dependency to become healthy or complete.
const DEPENDENCY_TIMEOUT: Duration = Duration::from_secs(600);
/// How long a new container of a swap may take to answer (`x-berth.ready_timeout`).
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The image a service runs: what the CLI resolved, else its `image:`,
/// else compose's name for a built one.
pub(crate) fn image_ref(request: &UpRequest, project: &Project, service: &str) -> String {
    request
        .images
        .get(service)
        .cloned()
        .or_else(|| project.services.get(service).and_then(|s| s.image.clone()))
        .unwrap_or_else(|| format!("{}-{service}", project.name))
}

/// What one `up` works from, resolved before the first step.
/// A container start running beside the steps after it.
type Starting = tokio::task::JoinHandle<std::result::Result<(), bollard::errors::Error>>;

/// Whether nothing needs `service`'s container *running* before the steps
/// after it: no service names it in `depends_on`, `links`, or
/// `network_mode`/`ipc`/`pid: service:…`, and it publishes no port.
/// Others may still take its volumes (`volumes_from`): those exist once
/// the container is created. The seed's code container is such a service:
/// its start (about 0.3 s of the daemon's time) overlaps the app's create
/// and start instead of preceding them.
fn start_may_overlap(project: &Project, service: &str) -> bool {
    let Some(svc) = project.services.get(service) else {
        return false;
    };
    if !svc.ports.is_empty() || svc.extra.contains_key("post_start") {
        return false;
    }
    let by_service = |v: Option<&str>| v.and_then(|v| v.strip_prefix("service:")) == Some(service);
    project.services.iter().all(|(name, other)| {
        name == service
            || !(other.depends_on.contains_key(service)
                || other
                    .links
                    .iter()
                    .any(|l| l.split(':').next() == Some(service))
                || by_service(other.network_mode.as_deref())
                || by_service(other.extra.get("ipc").and_then(Value::as_str))
                || by_service(other.extra.get("pid").and_then(Value::as_str)))
    })
}

pub(crate) struct Context<'a> {
    pub project: &'a Project,
    pub images: BTreeMap<String, String>,
    /// Service → the daemon's image ID.
    pub ids: BTreeMap<String, String>,
    /// Service → what the planner compares: the image ID, `+ runtime`
    /// digest for an `x-runtime` service.
    pub digests: BTreeMap<String, String>,
    /// Service → its image's `PATH`.
    pub image_paths: BTreeMap<String, String>,
    pub runtimes: BTreeMap<String, RuntimeMount>,
    pub hashes: BTreeMap<String, String>,
    pub files: ProjectFiles,
    pub working_dir: String,
    pub config_files: String,
    /// Services whose published ports berth's keeper holds.
    pub proxied: BTreeSet<String>,
    /// What the daemon said it discarded when creating containers
    /// (`Weight discarded`, …): shown once `up` is done, never dropped.
    pub warnings: std::sync::Mutex<Vec<String>>,
}

fn files_dir(project: &str) -> PathBuf {
    berth_oci::store::state_dir().join("docker").join(project)
}

impl DockerBackend {
    pub(crate) async fn make_plan<'a>(
        &self,
        request: &'a UpRequest<'a>,
        require_images: bool,
    ) -> Result<(Plan, Context<'a>)> {
        let project = &request.loaded.project;
        spec::check_project(project, self.endpoint.is_local())?;
        let files = project_files::resolve(project, &request.loaded.environment)
            .map_err(BackendError::invalid)?;
        if !files.is_empty() && !self.endpoint.is_local() {
            let service = files.keys().next().cloned().unwrap_or_default();
            return Err(BackendError::unsupported(
                "docker",
                format!(
                    "services.{service}.secrets/configs on a remote daemon ({}): they are bind-mounted files of this machine",
                    self.endpoint.host
                ),
            ));
        }
        let mut images = BTreeMap::new();
        let mut ids = BTreeMap::new();
        let mut digests = BTreeMap::new();
        let mut image_paths = BTreeMap::new();
        for (service, svc) in &project.services {
            let reference = image_ref(request, project, service);
            if let Some((id, path)) = self.image_id_and_path(&reference).await? {
                // An x-runtime service runs image + runtime: a new runtime
                // recreates it as a new image would.
                let runtime = svc
                    .extra
                    .get("x-runtime")
                    .and(request.runtimes.get(service));
                let digest = match runtime {
                    Some(r) => format!("{id}+{}", r.digest),
                    None => id.clone(),
                };
                digests.insert(service.clone(), digest);
                ids.insert(service.clone(), id);
                if let Some(p) = path {
                    image_paths.insert(service.clone(), p);
                }
            }
            images.insert(service.clone(), reference);
        }
        let mut desired = Desired::new(project);
        let mut hashes = BTreeMap::new();
        for (service, svc) in &project.services {
            let h = project_files::effective_hash(svc, files.get(service));
            hashes.insert(service.clone(), h.clone());
            desired.config_hashes.insert(service.clone(), h);
        }
        desired.image_digests = digests.clone();
        let raw = self.inspect_project(&project.name).await?;
        let observed: Vec<ObservedContainer> = raw
            .iter()
            .filter(|c| !is_retired(&name_of(c)))
            .map(Self::to_observed)
            .collect();
        let mut plan = berth_engine::plan(&desired, &observed, &request.flags.into())
            .map_err(BackendError::invalid)?;
        let proxied: BTreeSet<String> = project
            .services
            .iter()
            .filter(|(name, svc)| self.proxied(name, svc, request))
            .map(|(name, _)| name.clone())
            .collect();
        // Containers Docker publishes ports for (made before the keeper, or
        // by docker compose) hold the host ports: they must stop first.
        let docker_published: BTreeSet<String> = raw
            .iter()
            .filter(|c| {
                c.host_config
                    .as_ref()
                    .and_then(|h| h.port_bindings.as_ref())
                    .is_some_and(|b| b.values().flatten().any(|v| !v.is_empty()))
            })
            .map(name_of)
            .collect();
        if require_images {
            // Only what gets a new container needs its image now.
            for step in &plan.steps {
                if matches!(step.action, Action::Create { .. } | Action::Recreate { .. })
                    && !ids.contains_key(&step.service)
                {
                    return Err(BackendError::not_found(format!(
                        "service {}: image {} is not in the Docker Engine (pull or build it first)",
                        step.service, images[&step.service]
                    )));
                }
            }
        }
        // Containers with anonymous volumes of their own (an image's
        // `VOLUME`, say a database's data): a replacement keeps them unless
        // they are renewed, and two copies must not share them.
        let keeps_volumes: BTreeMap<String, Vec<String>> = raw
            .iter()
            .filter_map(|c| {
                let svc = labels_of(c)
                    .get(labels::SERVICE)
                    .and_then(|s| project.services.get(s));
                let own: Vec<String> = own_anonymous(c, svc).into_iter().map(|(_, t)| t).collect();
                (!own.is_empty()).then(|| (name_of(c), own))
            })
            .collect();
        let remote = (!self.endpoint.is_local()).then_some(self.endpoint.host.as_str());
        adjust(
            &mut plan,
            remote,
            &proxied,
            &docker_published,
            &keeps_volumes,
        );
        let ctx = Context {
            project,
            images,
            ids,
            digests,
            image_paths,
            runtimes: request.runtimes.clone(),
            hashes,
            files,
            working_dir: request.loaded.project_dir.display().to_string(),
            config_files: request
                .loaded
                .files
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
                .join(","),
            proxied,
            warnings: Default::default(),
        };
        Ok((plan, ctx))
    }

    /// Whether berth's keeper holds `service`'s published ports: a local
    /// daemon, a keeper configured, one container, TCP ports each with one
    /// fixed host port, on the service's own networks.
    fn proxied(&self, name: &str, svc: &Service, request: &UpRequest) -> bool {
        let scale = request
            .flags
            .scale
            .get(name)
            .copied()
            .map(u64::from)
            .or_else(|| svc.extra.get("scale").and_then(Value::as_u64))
            .or_else(|| {
                svc.extra
                    .get("deploy")
                    .and_then(|d| d.get("replicas"))
                    .and_then(Value::as_u64)
            })
            .unwrap_or(1);
        // An internal network has no way in from the host.
        let internal = svc.networks.iter().flatten().any(|(key, _)| {
            request
                .loaded
                .project
                .networks
                .get(key)
                .is_some_and(|n| n.internal == Some(true))
        });
        self.keeper.is_some()
            && self.endpoint.is_local()
            && !internal
            && scale == 1
            // On its own networks, or Docker's default bridge (v1 files).
            && matches!(svc.network_mode.as_deref(), None | Some("bridge"))
            && !svc.ports.is_empty()
            && port_specs(svc).is_some()
    }

    pub(crate) async fn converge(
        &self,
        request: &UpRequest<'_>,
        progress: Progress<'_>,
    ) -> Result<()> {
        let (plan, ctx) = self.make_plan(request, true).await?;
        for w in &plan.warnings {
            progress(&format!("warning: {w}"));
        }
        self.ensure_networks(ctx.project, progress).await?;
        self.ensure_volumes(ctx.project, progress).await?;
        let mut dead_volumes: Vec<String> = Vec::new();
        let mut retiring: Vec<(String, i32)> = Vec::new();
        let mut starting = Vec::new();
        let mut result = Ok(());
        for step in &plan.steps {
            result = self
                .apply_step(
                    &ctx,
                    step,
                    progress,
                    &mut dead_volumes,
                    &mut retiring,
                    &mut starting,
                )
                .await;
            if result.is_err() {
                break;
            }
        }
        if let Ok(warnings) = ctx.warnings.lock() {
            for w in warnings.iter() {
                progress(&format!("warning: {w}"));
            }
        }
        for (name, start) in starting {
            let started = start
                .await
                .map_err(|e| BackendError::engine(format!("starting container {name}: {e}")))
                .and_then(|r| r.map_err(|e| api_err(format!("starting container {name}"), e)));
            match started {
                Ok(()) => progress(&format!(" ✔ Container {name} Started")),
                Err(e) if result.is_ok() => result = Err(e),
                Err(_) => {}
            }
        }
        // Replaced containers (and the volumes only they hold) go in the
        // keeper, after `up` returns; even a failed `up` hands over those
        // it replaced.
        let handed = !retiring.is_empty()
            && keeper::request(
                &ctx.project.name,
                None,
                &keeper::Request::Retire {
                    containers: retiring.clone(),
                    volumes: dead_volumes.clone(),
                },
            )
            .is_ok();
        if !handed {
            for (name, timeout) in &retiring {
                self.stop(name, *timeout).await?;
                self.remove(name).await?;
            }
            self.remove_volumes(&dead_volumes).await;
        }
        result
    }

    async fn apply_step(
        &self,
        ctx: &Context<'_>,
        step: &Step,
        progress: Progress<'_>,
        dead_volumes: &mut Vec<String>,
        retiring: &mut Vec<(String, i32)>,
        starting: &mut Vec<(String, Starting)>,
    ) -> Result<()> {
        let service = step.service.as_str();
        // A container nothing needs running (see `start_may_overlap`)
        // starts while the next steps go on; `converge` waits for it.
        let overlap = start_may_overlap(ctx.project, service);
        let mut start_later = |id: &str, name: &str| {
            let docker = self.docker.clone();
            let id = id.to_string();
            let start = tokio::spawn(async move {
                docker
                    .start_container(&id, None::<StartContainerOptions>)
                    .await
            });
            starting.push((name.to_string(), start));
        };
        match &step.action {
            Action::Nothing { container } => {
                if let Some(c) = container {
                    // The keeper does not survive a reboot while Docker
                    // restarts the container: `up` publishes it again
                    // (a no-op when the keeper already points there).
                    if ctx.proxied.contains(service) {
                        self.republish(ctx, service, c).await?;
                    }
                    progress(&format!(" ✔ Container {c} Running"));
                }
            }
            Action::Create { number, name } => {
                self.wait_dependencies(ctx, service, progress).await?;
                progress(&format!(" ⠿ Container {name} Creating"));
                let id = self.create(ctx, service, *number, name, Vec::new()).await?;
                if overlap {
                    start_later(&id, name);
                    return Ok(());
                }
                self.start(&id, name).await?;
                self.post_start(ctx, service, &id).await?;
                self.point_ports(ctx, service, &id, 0, false).await?;
                progress(&format!(" ✔ Container {name} Started"));
            }
            Action::Start { container } => {
                self.wait_dependencies(ctx, service, progress).await?;
                self.start(container, container).await?;
                self.post_start(ctx, service, container).await?;
                self.point_ports(ctx, service, container, 0, false).await?;
                progress(&format!(" ✔ Container {container} Started"));
            }
            Action::Restart { container } => {
                let t = ctx
                    .project
                    .services
                    .get(service)
                    .map(spec::stop_timeout)
                    .unwrap_or(10);
                self.docker
                    .restart_container(
                        container,
                        Some(bollard::query_parameters::RestartContainerOptions {
                            t: Some(t),
                            ..Default::default()
                        }),
                    )
                    .await
                    .map_err(|e| api_err(format!("restarting {container}"), e))?;
                self.point_ports(ctx, service, container, 0, false).await?;
                progress(&format!(" ✔ Container {container} Restarted"));
            }
            Action::Recreate {
                container,
                number,
                renew_anonymous_volumes,
                strategy,
            } => {
                self.wait_dependencies(ctx, service, progress).await?;
                progress(&format!(" ⠿ Container {container} Recreate"));
                let old = self
                    .docker
                    .inspect_container(container, None::<InspectContainerOptions>)
                    .await
                    .map_err(|e| api_err(format!("inspecting {container}"), e))?;
                let own = own_anonymous(&old, ctx.project.services.get(service));
                let carried = if *renew_anonymous_volumes {
                    dead_volumes.extend(own.iter().map(|(n, _)| n.clone()));
                    Vec::new()
                } else {
                    own
                };
                let old_id = old.id.clone().unwrap_or_default();
                let tmp = format!("{}_{container}", &old_id[..old_id.len().min(12)]);
                let id = self.create(ctx, service, *number, &tmp, carried).await?;
                let svc = &ctx.project.services[service];
                if *strategy == Strategy::StartFirst {
                    // Beside the old one until it answers; only then do
                    // the ports move, and the old one drains and goes.
                    self.start(&id, &tmp).await?;
                    let started = match self.post_start(ctx, service, &id).await {
                        Ok(()) => self.publish(ctx, service, &id, drain_secs(svc)).await,
                        Err(e) => Err(e),
                    };
                    if let Err(e) = started {
                        let _ = self.stop(&id, 0).await;
                        let _ = self.remove(&id).await;
                        return Err(BackendError::new(
                            e.kind,
                            format!("{container} kept: its replacement did not take over: {e}"),
                        ));
                    }
                    // The ports have moved: the old container steps
                    // aside under another name, and the keeper stops and
                    // removes it after `up` (the seed's npm ignores
                    // SIGTERM: nobody waits its 10 s). Its `pre_stop`
                    // runs now, before it is handed over.
                    self.pre_stop(
                        Some(svc),
                        service,
                        container,
                        spec::stop_timeout(svc),
                        progress,
                    )
                    .await;
                    let retired = retired_name(container, &old_id);
                    let keeper_up = std::os::unix::net::UnixStream::connect(keeper::socket_path(
                        &ctx.project.name,
                    ))
                    .is_ok();
                    if keeper_up && self.rename(container, container, &retired).await.is_ok() {
                        retiring.push((retired, spec::stop_timeout(svc)));
                    } else {
                        self.stop(container, spec::stop_timeout(svc)).await?;
                        self.remove(container).await?;
                    }
                    self.rename(&id, &tmp, container).await?;
                } else {
                    let t = spec::stop_timeout(svc);
                    self.pre_stop(Some(svc), service, container, t, progress)
                        .await;
                    self.stop(container, t).await?;
                    self.remove(container).await?;
                    self.rename(&id, &tmp, container).await?;
                    if overlap {
                        start_later(&id, container);
                    } else {
                        self.start(&id, container).await?;
                        self.post_start(ctx, service, &id).await?;
                        self.point_ports(ctx, service, &id, 0, false).await?;
                    }
                }
                progress(&format!(" ✔ Container {container} Recreated"));
            }
            Action::ScaleDown { container } | Action::RemoveOrphan { container } => {
                let t = ctx
                    .project
                    .services
                    .get(service)
                    .map(spec::stop_timeout)
                    .unwrap_or(10);
                dead_volumes.extend(
                    self.own_anonymous(container, ctx.project.services.get(service))
                        .await,
                );
                self.pre_stop(
                    ctx.project.services.get(service),
                    service,
                    container,
                    t,
                    progress,
                )
                .await;
                self.stop(container, t).await?;
                self.remove(container).await?;
                if !ctx.project.services.contains_key(service) {
                    keeper::request(
                        &ctx.project.name,
                        None,
                        &keeper::Request::Release {
                            service: service.to_string(),
                        },
                    )?;
                }
                progress(&format!(" ✔ Container {container} Removed"));
            }
        }
        Ok(())
    }

    /// The service's `post_start` hooks in the container just started.
    async fn post_start(&self, ctx: &Context<'_>, service: &str, container: &str) -> Result<()> {
        match ctx.project.services.get(service) {
            Some(svc) => {
                self.run_hooks(svc, service, "post_start", container, None)
                    .await
            }
            None => Ok(()),
        }
    }

    async fn rename(&self, id: &str, from: &str, to: &str) -> Result<()> {
        self.docker
            .rename_container(
                id,
                RenameContainerOptions {
                    name: to.to_string(),
                },
            )
            .await
            .map_err(|e| api_err(format!("renaming {from} to {to}"), e))
    }

    /// Point the ports of a running container's service at it again,
    /// without waiting for readiness (it was serving already).
    async fn republish(&self, ctx: &Context<'_>, service: &str, container: &str) -> Result<()> {
        let c = self
            .docker
            .inspect_container(container, None::<InspectContainerOptions>)
            .await
            .map_err(|e| api_err(format!("inspecting {container}"), e))?;
        if status_of(&c) != Status::Running {
            return Ok(());
        }
        self.point_ports(ctx, service, container, 0, false).await
    }

    /// For a service whose ports berth's keeper holds: wait until
    /// `container` is ready, then point the ports at it (draining the
    /// previous container's connections for up to `drain` seconds). Only a
    /// swap waits: with nothing else serving, the ports point at a new
    /// container at once, as Docker's would (a slow start is not a failure).
    async fn publish(
        &self,
        ctx: &Context<'_>,
        service: &str,
        container: &str,
        drain: u64,
    ) -> Result<()> {
        self.point_ports(ctx, service, container, drain, true).await
    }

    /// Send the keeper `service`'s ports and `container`'s address on its
    /// first network; `probe`: wait until the container is ready first.
    async fn point_ports(
        &self,
        ctx: &Context<'_>,
        service: &str,
        container: &str,
        drain: u64,
        probe: bool,
    ) -> Result<()> {
        if !ctx.proxied.contains(service) {
            return Ok(());
        }
        let svc = &ctx.project.services[service];
        let Some(ports) = port_specs(svc) else {
            return Ok(());
        };
        let c = self
            .docker
            .inspect_container(container, None::<InspectContainerOptions>)
            .await
            .map_err(|e| api_err(format!("inspecting {container}"), e))?;
        let networks = c
            .network_settings
            .as_ref()
            .and_then(|n| n.networks.clone())
            .unwrap_or_default();
        // The service's first network, as it was created on.
        let mut wanted: Vec<String> = svc
            .networks
            .iter()
            .flatten()
            .map(|(key, _)| {
                ctx.project
                    .networks
                    .get(key)
                    .and_then(|n| n.name.clone())
                    .unwrap_or_else(|| key.clone())
            })
            .collect();
        if svc.network_mode.as_deref() == Some("bridge") {
            wanted.push("bridge".into());
        }
        let (network, ip) = wanted
            .iter()
            .find_map(|n| {
                let ip = networks
                    .get(n)?
                    .ip_address
                    .as_deref()?
                    .parse::<IpAddr>()
                    .ok()?;
                Some((n.clone(), ip))
            })
            .ok_or_else(|| {
                BackendError::engine(format!("{container} has no address on its network"))
            })?;
        if probe {
            self.wait_ready(&c, svc, service, ip, &ports).await?;
        }
        keeper::request(
            &ctx.project.name,
            self.keeper.as_ref(),
            &keeper::Request::Switch {
                service: service.to_string(),
                container: c.id.clone().unwrap_or_else(|| container.to_string()),
                network,
                ip,
                ports,
                drain_secs: drain,
            },
        )
    }

    /// Ready: healthy when it has a healthcheck, else accepting on every
    /// published port.
    async fn wait_ready(
        &self,
        c: &ContainerInspectResponse,
        svc: &Service,
        service: &str,
        ip: IpAddr,
        ports: &[keeper::PortSpec],
    ) -> Result<()> {
        let name = name_of(c);
        let timeout = svc
            .extra
            .get("x-berth")
            .and_then(|x| x.get("ready_timeout"))
            .and_then(Value::as_str)
            .and_then(berth_compose::units::parse_duration)
            .unwrap_or(READY_TIMEOUT);
        if crate::observe::health_of(c).is_some() {
            return tokio::time::timeout(timeout, self.wait_healthy(&name))
                .await
                .unwrap_or_else(|_| {
                    Err(BackendError::engine(format!(
                        "{name} did not become healthy within {} s",
                        timeout.as_secs()
                    )))
                });
        }
        let deadline = Instant::now() + timeout;
        for p in ports {
            let addr = std::net::SocketAddr::new(ip, p.target_port);
            loop {
                let attempt = tokio::time::timeout(
                    Duration::from_secs(1),
                    tokio::net::TcpStream::connect(addr),
                )
                .await;
                if let Ok(Ok(_)) = attempt {
                    break;
                }
                let now = self
                    .docker
                    .inspect_container(&name, None::<InspectContainerOptions>)
                    .await
                    .map_err(|e| api_err(format!("inspecting {name}"), e))?;
                if !status_of(&now).is_alive() {
                    return Err(BackendError::engine(format!(
                        "services.{service}: {name} exited before it accepted on port {}",
                        p.target_port
                    )));
                }
                if Instant::now() > deadline {
                    return Err(BackendError::engine(format!(
                        "services.{service}: {name} did not accept on port {} within {} s",
                        p.target_port,
                        timeout.as_secs()
                    )));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }

    async fn own_anonymous(&self, container: &str, svc: Option<&Service>) -> Vec<String> {
        match self
            .docker
            .inspect_container(container, None::<InspectContainerOptions>)
            .await
        {
            Ok(c) => own_anonymous(&c, svc).into_iter().map(|(n, _)| n).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Volumes left by removed containers; one still in use (by a
    /// container outside this plan) stays.
    pub(crate) async fn remove_volumes(&self, names: &[String]) {
        for n in names {
            let _ = self
                .docker
                .remove_volume(n, None::<RemoveVolumeOptions>)
                .await;
        }
    }

    /// The names of the project's containers of `service`, by number.
    async fn containers_of(
        &self,
        project: &str,
        service: &str,
    ) -> Result<Vec<ContainerInspectResponse>> {
        let mut out: Vec<ContainerInspectResponse> = self
            .inspect_project(project)
            .await?
            .into_iter()
            .filter(|c| {
                let l = labels_of(c);
                l.get(labels::SERVICE).map(String::as_str) == Some(service)
                    && l.get(labels::ONEOFF).map(String::as_str) != Some("True")
                    && !is_retired(&name_of(c))
            })
            .collect();
        out.sort_by_key(|c| {
            labels_of(c)
                .get(labels::NUMBER)
                .and_then(|n| n.parse::<u32>().ok())
                .unwrap_or(0)
        });
        Ok(out)
    }

    pub(crate) async fn create(
        &self,
        ctx: &Context<'_>,
        service: &str,
        number: u32,
        name: &str,
        carried: Vec<(String, String)>,
    ) -> Result<String> {
        self.create_with(ctx, service, number, name, carried, false, None)
            .await
    }

    /// Create one container of `service` (a one-off with `one_off`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn create_with(
        &self,
        ctx: &Context<'_>,
        service: &str,
        number: u32,
        name: &str,
        carried: Vec<(String, String)>,
        one_off: bool,
        tweak: Option<&dyn Fn(&mut bollard::models::ContainerCreateBody)>,
    ) -> Result<String> {
        let project = ctx.project;
        let svc: &Service = project
            .services
            .get(service)
            .ok_or_else(|| BackendError::not_found(format!("no such service: {service}")))?;
        // `volumes_from`, `network_mode: service:` and links name the first
        // container of the other service, as compose does.
        let mut first: BTreeMap<String, String> = BTreeMap::new();
        let mut mounted = BTreeMap::new();
        let mut volumes_from = Vec::new();
        for other in project.services.keys() {
            if let Some(c) = self.containers_of(&project.name, other).await?.first() {
                first.insert(other.clone(), name_of(c));
            }
        }
        for vf in svc.volumes_from() {
            match vf {
                berth_compose::model::VolumesFrom::Service {
                    name: src,
                    read_only,
                } => {
                    let c = first.get(&src).ok_or_else(|| {
                        BackendError::invalid(format!(
                            "services.{service}.volumes_from: service {src} has no container"
                        ))
                    })?;
                    volumes_from.push(format!("{c}:{}", if read_only { "ro" } else { "rw" }));
                    if let Some(digest) = ctx.digests.get(&src) {
                        mounted.insert(src.clone(), digest.clone());
                    }
                }
                berth_compose::model::VolumesFrom::Container { name: c, read_only } => {
                    volumes_from.push(format!("{c}:{}", if read_only { "ro" } else { "rw" }))
                }
            }
        }
        let files = self.write_files(ctx, service, name)?;
        let container_of = |s: &str| first.get(s).cloned();
        let image = ctx.images.get(service).cloned().unwrap_or_default();
        let hash = ctx.hashes.get(service).cloned().unwrap_or_default();
        let wanted = Wanted {
            project,
            service,
            svc,
            number,
            name,
            image: &image,
            image_id: ctx.ids.get(service).map(String::as_str),
            config_hash: &hash,
            working_dir: &ctx.working_dir,
            config_files: &ctx.config_files,
            volumes_from,
            mounted,
            carried,
            files,
            container_of: &container_of,
            one_off,
            ports: if one_off { &[] } else { &svc.ports },
            publish: !ctx.proxied.contains(service),
            runtime: match svc.extra.get("x-runtime") {
                None => None,
                Some(_) => Some(ctx.runtimes.get(service).ok_or_else(|| {
                    BackendError::invalid(format!(
                        "services.{service}.x-runtime: the runtime is not installed"
                    ))
                })?),
            },
            image_path: ctx.image_paths.get(service).cloned(),
        };
        let mut spec = spec::container_spec(&wanted)?;
        if let Some(t) = tweak {
            t(&mut spec.body);
        }
        let created = self
            .docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(name.to_string()),
                    ..Default::default()
                }),
                spec.body,
            )
            .await
            .map_err(|e| api_err(format!("creating container {name}"), e))?;
        if let Ok(mut w) = ctx.warnings.lock() {
            w.extend(
                created
                    .warnings
                    .iter()
                    .filter(|t| !t.trim().is_empty())
                    .map(|t| format!("container {name}: the Docker Engine says: {}", t.trim())),
            );
        }
        for (network, endpoint) in spec.more_networks {
            self.docker
                .connect_network(
                    &network,
                    NetworkConnectRequest {
                        container: created.id.clone(),
                        endpoint_config: Some(endpoint),
                    },
                )
                .await
                .map_err(|e| api_err(format!("connecting {name} to network {network}"), e))?;
        }
        Ok(created.id)
    }

    /// Write the service's secrets and configs for container `name` and
    /// return them as (file, target) for read-only bind mounts.
    fn write_files(
        &self,
        ctx: &Context,
        service: &str,
        name: &str,
    ) -> Result<Vec<(PathBuf, String)>> {
        let Some(list) = ctx.files.get(service) else {
            return Ok(Vec::new());
        };
        // A fresh directory per container: a container being replaced keeps
        // reading its own copies until it is gone.
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir = files_dir(&ctx.project.name).join(format!("{name}-{stamp}"));
        let mut out = Vec::new();
        for (i, f) in list.iter().enumerate() {
            use std::os::unix::fs::PermissionsExt;
            let io = |e: std::io::Error| {
                BackendError::engine(format!("writing {} for {name}: {e}", f.target))
            };
            std::fs::create_dir_all(&dir).map_err(io)?;
            // Secrets: only root on the host reads them (a bind-mounted file
            // needs no access to its host directory inside the container).
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
            let path = dir.join(format!("{i}-{}", f.source));
            std::fs::write(&path, &f.content).map_err(io)?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(f.mode)).map_err(io)?;
            // Only root may hand a file to another owner; as anyone else the
            // file stays the caller's (docker compose ignores uid/gid too).
            let _ = std::os::unix::fs::chown(&path, Some(f.uid), Some(f.gid));
            out.push((path, f.target.clone()));
        }
        Ok(out)
    }

    pub(crate) async fn start(&self, id: &str, name: &str) -> Result<()> {
        self.docker
            .start_container(id, None::<StartContainerOptions>)
            .await
            .map_err(|e| api_err(format!("starting container {name}"), e))
    }

    pub(crate) async fn stop(&self, name: &str, timeout: i32) -> Result<()> {
        match self
            .docker
            .stop_container(
                name,
                Some(StopContainerOptions {
                    t: Some(timeout),
                    ..Default::default()
                }),
            )
            .await
        {
            Ok(()) => Ok(()),
            // 304: already stopped.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(api_err(format!("stopping {name}"), e)),
        }
    }

    pub(crate) async fn remove(&self, name: &str) -> Result<()> {
        match self
            .docker
            .remove_container(
                name,
                Some(RemoveContainerOptions {
                    force: true,
                    ..Default::default()
                }),
            )
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(api_err(format!("removing {name}"), e)),
        }
    }

    /// Wait until what `service` depends on satisfies each condition.
    async fn wait_dependencies(
        &self,
        ctx: &Context<'_>,
        service: &str,
        progress: Progress<'_>,
    ) -> Result<()> {
        let Some(svc) = ctx.project.services.get(service) else {
            return Ok(());
        };
        for (dep, d) in &svc.depends_on {
            let containers = self.containers_of(&ctx.project.name, dep).await?;
            if containers.is_empty() {
                if d.required && ctx.project.services.contains_key(dep) {
                    return Err(BackendError::invalid(format!(
                        "service {service} depends on {dep}, which has no container"
                    )));
                }
                continue;
            }
            for c in containers {
                let name = name_of(&c);
                match d.condition.as_str() {
                    "service_healthy" => {
                        progress(&format!(" ⠿ Container {name} Waiting"));
                        self.wait_healthy(&name).await?;
                        progress(&format!(" ✔ Container {name} Healthy"));
                    }
                    "service_completed_successfully" => {
                        progress(&format!(" ⠿ Container {name} Waiting"));
                        let code = self.wait_exit(&name).await?;
                        if code != 0 {
                            return Err(BackendError::engine(format!(
                                "service {dep} didn't complete successfully: container {name} exited with code {code}"
                            )));
                        }
                        progress(&format!(" ✔ Container {name} Exited"));
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    async fn wait_healthy(&self, name: &str) -> Result<()> {
        let deadline = Instant::now() + DEPENDENCY_TIMEOUT;
        loop {
            let c = self
                .docker
                .inspect_container(name, None::<InspectContainerOptions>)
                .await
                .map_err(|e| api_err(format!("inspecting {name}"), e))?;
            match crate::observe::health_of(&c) {
                Some(Health::Healthy) => return Ok(()),
                Some(Health::Unhealthy) => {
                    return Err(BackendError::engine(format!(
                        "dependency failed to start: container {name} is unhealthy"
                    )))
                }
                None => {
                    return Err(BackendError::invalid(format!(
                        "container {name} has no healthcheck, so service_healthy cannot be met"
                    )))
                }
                Some(Health::Starting) => {}
            }
            if !status_of(&c).is_alive() {
                return Err(BackendError::engine(format!(
                    "dependency failed to start: container {name} exited"
                )));
            }
            if Instant::now() > deadline {
                return Err(BackendError::engine(format!(
                    "container {name} did not become healthy within {} s",
                    DEPENDENCY_TIMEOUT.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub(crate) async fn wait_exit(&self, name: &str) -> Result<i64> {
        let c = self
            .docker
            .inspect_container(name, None::<InspectContainerOptions>)
            .await
            .map_err(|e| api_err(format!("inspecting {name}"), e))?;
        if status_of(&c) == Status::Exited {
            return Ok(c.state.and_then(|s| s.exit_code).unwrap_or(0));
        }
        let mut s = self.docker.wait_container(
            name,
            Some(WaitContainerOptions {
                condition: "not-running".into(),
            }),
        );
        match s.next().await {
            Some(Ok(r)) => Ok(r.status_code),
            // bollard reports a non-zero exit as an error carrying the code.
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Ok(code),
            Some(Err(e)) => Err(api_err(format!("waiting for {name}"), e)),
            None => Ok(0),
        }
    }

    async fn ensure_networks(&self, project: &Project, progress: Progress<'_>) -> Result<()> {
        for (key, n) in &project.networks {
            let name = n.name.clone().unwrap_or_else(|| key.clone());
            let exists = match self
                .docker
                .inspect_network(&name, None::<InspectNetworkOptions>)
                .await
            {
                Ok(_) => true,
                Err(e) if is_not_found(&e) => false,
                Err(e) => return Err(api_err(format!("inspecting network {name}"), e)),
            };
            if exists {
                continue;
            }
            if n.external == Some(true) {
                return Err(BackendError::not_found(format!(
                    "network {name} declared as external, but could not be found"
                )));
            }
            let extra = |k: &str| n.extra.get(k);
            let mut label_map: HashMap<String, String> = extra("labels")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                        .collect()
                })
                .unwrap_or_default();
            label_map.insert(labels::PROJECT.into(), project.name.clone());
            label_map.insert(labels::NETWORK.into(), key.clone());
            label_map.insert(labels::VERSION.into(), labels::COMPOSE_VERSION.into());
            let ipam = extra("ipam").map(|i| Ipam {
                driver: i.get("driver").and_then(Value::as_str).map(str::to_string),
                config: i.get("config").and_then(Value::as_array).map(|cs| {
                    cs.iter()
                        .map(|c| IpamConfig {
                            subnet: c.get("subnet").and_then(Value::as_str).map(str::to_string),
                            ip_range: c
                                .get("ip_range")
                                .and_then(Value::as_str)
                                .map(str::to_string),
                            gateway: c.get("gateway").and_then(Value::as_str).map(str::to_string),
                            ..Default::default()
                        })
                        .collect()
                }),
                ..Default::default()
            });
            self.docker
                .create_network(NetworkCreateRequest {
                    name: name.clone(),
                    driver: Some(n.driver.clone().unwrap_or_else(|| "bridge".into())),
                    internal: n.internal,
                    attachable: extra("attachable").and_then(Value::as_bool),
                    enable_ipv6: extra("enable_ipv6").and_then(Value::as_bool),
                    options: extra("driver_opts").and_then(|o| {
                        o.as_object().map(|m| {
                            m.iter()
                                .map(|(k, v)| {
                                    (
                                        k.clone(),
                                        v.as_str()
                                            .map(str::to_string)
                                            .unwrap_or_else(|| v.to_string()),
                                    )
                                })
                                .collect()
                        })
                    }),
                    labels: Some(label_map),
                    ipam,
                    ..Default::default()
                })
                .await
                .map_err(|e| api_err(format!("creating network {name}"), e))?;
            progress(&format!(" ✔ Network {name} Created"));
        }
        Ok(())
    }

    async fn ensure_volumes(&self, project: &Project, progress: Progress<'_>) -> Result<()> {
        for (key, v) in &project.volumes {
            let name = v.name.clone().unwrap_or_else(|| key.clone());
            let exists = match self.docker.inspect_volume(&name).await {
                Ok(_) => true,
                Err(e) if is_not_found(&e) => false,
                Err(e) => return Err(api_err(format!("inspecting volume {name}"), e)),
            };
            if exists {
                continue;
            }
            if v.external == Some(true) {
                return Err(BackendError::not_found(format!(
                    "volume {name} declared as external, but could not be found"
                )));
            }
            let mut label_map: HashMap<String, String> = v
                .extra
                .get("labels")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                        .collect()
                })
                .unwrap_or_default();
            label_map.insert(labels::PROJECT.into(), project.name.clone());
            label_map.insert(labels::VOLUME.into(), key.clone());
            label_map.insert(labels::VERSION.into(), labels::COMPOSE_VERSION.into());
            self.docker
                .create_volume(VolumeCreateRequest {
                    name: Some(name.clone()),
                    driver: v.driver.clone(),
                    driver_opts: v.extra.get("driver_opts").and_then(|o| {
                        o.as_object().map(|m| {
                            m.iter()
                                .map(|(k, v)| {
                                    (
                                        k.clone(),
                                        v.as_str()
                                            .map(str::to_string)
                                            .unwrap_or_else(|| v.to_string()),
                                    )
                                })
                                .collect()
                        })
                    }),
                    labels: Some(label_map),
                    ..Default::default()
                })
                .await
                .map_err(|e| api_err(format!("creating volume {name}"), e))?;
            progress(&format!(" ✔ Volume {name} Created"));
        }
        Ok(())
    }

    pub(crate) async fn tear_down(
        &self,
        project: &Project,
        options: &DownOptions,
        progress: Progress<'_>,
    ) -> Result<bool> {
        let containers = self.inspect_project(&project.name).await?;
        let mut found = !containers.is_empty();
        // Dependants first: a reversed dependency order stops a consumer
        // before what it needs.
        let order = stop_order(project);
        let mut sorted = containers;
        sorted.sort_by_key(|c| {
            let svc = labels_of(c)
                .get(labels::SERVICE)
                .cloned()
                .unwrap_or_default();
            order.iter().position(|s| *s == svc).unwrap_or(0)
        });
        let mut dead = Vec::new();
        for c in &sorted {
            let name = name_of(c);
            let svc = labels_of(c)
                .get(labels::SERVICE)
                .cloned()
                .unwrap_or_default();
            let t = options
                .timeout_secs
                .map(|t| t.min(i32::MAX as u64) as i32)
                .unwrap_or_else(|| {
                    project
                        .services
                        .get(&svc)
                        .map(spec::stop_timeout)
                        .unwrap_or(10)
                });
            if status_of(c).is_alive() {
                progress(&format!(" ⠿ Container {name} Stopping"));
                self.pre_stop(project.services.get(&svc), &svc, &name, t, progress)
                    .await;
                self.stop(&name, t).await?;
            }
            // Anonymous volumes live and die with their container (compose
            // leaves them behind unless -v; nothing else can reuse them).
            dead.extend(
                c.mounts
                    .iter()
                    .flatten()
                    .filter_map(|m| m.name.clone())
                    .filter(|n| is_anonymous(n)),
            );
            self.remove(&name).await?;
            progress(&format!(" ✔ Container {name} Removed"));
        }
        self.remove_volumes(&dead).await;
        let filters = HashMap::from([(
            "label".to_string(),
            vec![labels::project_filter(&project.name)],
        )]);
        let networks = self
            .docker
            .list_networks(Some(ListNetworksOptions {
                filters: Some(filters.clone()),
            }))
            .await
            .map_err(|e| api_err("listing networks", e))?;
        for n in networks {
            let Some(name) = n.name else { continue };
            match self.docker.remove_network(&name).await {
                Ok(()) => {
                    found = true;
                    progress(&format!(" ✔ Network {name} Removed"));
                }
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(api_err(format!("removing network {name}"), e)),
            }
        }
        if options.volumes {
            let volumes = self
                .docker
                .list_volumes(Some(ListVolumesOptions {
                    filters: Some(filters),
                }))
                .await
                .map_err(|e| api_err("listing volumes", e))?;
            for v in volumes.volumes.into_iter().flatten() {
                let external = v
                    .labels
                    .get(labels::VOLUME)
                    .and_then(|key| project.volumes.get(key))
                    .is_some_and(|d| d.external == Some(true));
                if external {
                    continue;
                }
                match self
                    .docker
                    .remove_volume(&v.name, None::<RemoveVolumeOptions>)
                    .await
                {
                    Ok(()) => {
                        found = true;
                        progress(&format!(" ✔ Volume {} Removed", v.name));
                    }
                    Err(e) if is_not_found(&e) => {}
                    Err(e) => return Err(api_err(format!("removing volume {}", v.name), e)),
                }
            }
        }
        let _ = std::fs::remove_dir_all(files_dir(&project.name));
        // The keeper frees the ports it held and exits (none: nothing to do).
        keeper::request(&project.name, None, &keeper::Request::Stop)?;
        Ok(found)
    }

    pub(crate) async fn pull(&self, reference: &str, progress: Progress<'_>) -> Result<()> {
        let mut stream = self.docker.create_image(
            Some(CreateImageOptions {
                from_image: Some(reference.to_string()),
                ..Default::default()
            }),
            None,
            None,
        );
        let mut last = String::new();
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| api_err(format!("pulling {reference}"), e))?;
            if let Some(err) = info.error_detail.and_then(|d| d.message) {
                return Err(BackendError::engine(format!("pulling {reference}: {err}")));
            }
            // One line per layer state change, not per progress tick.
            if let Some(status) = info.status {
                let line = match info.id {
                    Some(id) => format!(" {id} {status}"),
                    None => format!(" {status}"),
                };
                if line != last
                    && info
                        .progress_detail
                        .as_ref()
                        .and_then(|p| p.current)
                        .is_none()
                {
                    progress(&line);
                    last = line;
                }
            }
        }
        Ok(())
    }

    /// Hand an image from berth's store to the daemon: the archive `berth
    /// save` writes, which `docker load` (the Engine API's image load) reads.
    pub(crate) async fn load(
        &self,
        store: &berth_oci::Store,
        reference: &str,
        progress: Progress<'_>,
    ) -> Result<()> {
        progress(&format!(" ⠿ Image {reference} Loading"));
        // The archive streams to the daemon as `berth save` writes it (from
        // a thread: the writer blocks), never whole in memory.
        let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(4);
        let saver = {
            let store = store.clone();
            let reference = reference.to_string();
            std::thread::spawn(move || {
                let mut w = std::io::BufWriter::with_capacity(1 << 20, ChunkWriter(tx));
                berth_image::archive::save(&store, &[reference], &mut w)
                    .map_err(|e| e.to_string())
                    .and_then(|()| std::io::Write::flush(&mut w).map_err(|e| e.to_string()))
            })
        };
        let body = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        let mut stream = self.docker.import_image_stream(
            ImportImageOptions {
                quiet: true,
                ..Default::default()
            },
            body,
            None,
        );
        let mut loaded = Ok(());
        while let Some(item) = stream.next().await {
            if let Err(e) = item {
                loaded = Err(api_err(
                    format!("loading {reference} into the Docker Engine"),
                    e,
                ));
                break;
            }
        }
        drop(stream);
        // What berth could not export explains a failed load best.
        match saver.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(BackendError::engine(format!("exporting {reference}: {e}"))),
            Err(_) => {
                return Err(BackendError::engine(format!(
                    "exporting {reference} failed"
                )))
            }
        }
        loaded?;
        if self.image_id(reference).await?.is_none() {
            return Err(BackendError::engine(format!(
                "the Docker Engine loaded the archive of {reference} but does not list it"
            )));
        }
        progress(&format!(" ✔ Image {reference} Loaded"));
        Ok(())
    }
}

/// A start-first swap needs the ports held by berth's keeper; where Docker
/// publishes them (a `remote` daemon, a service the keeper does not serve,
/// an old container Docker published) the old container must go first:
/// the plan says so.
pub(crate) fn adjust(
    plan: &mut Plan,
    remote: Option<&str>,
    proxied: &BTreeSet<String>,
    docker_published: &BTreeSet<String>,
    keeps_volumes: &BTreeMap<String, Vec<String>>,
) {
    for step in &mut plan.steps {
        if let Action::Recreate {
            strategy,
            container,
            renew_anonymous_volumes,
            ..
        } = &mut step.action
        {
            if *strategy != Strategy::StartFirst {
                continue;
            }
            let kept = keeps_volumes
                .get(container.as_str())
                .filter(|_| !*renew_anonymous_volumes);
            let why = if let Some(targets) = kept {
                Some(format!(
                    "it keeps its anonymous volumes ({}), which two copies must not share",
                    targets.join(", ")
                ))
            } else if let Some(host) = remote {
                Some(format!(
                    "the daemon at {host} is remote, so Docker publishes the ports and the old container must go first"
                ))
            } else if !proxied.contains(&step.service) {
                Some(
                    "Docker publishes the ports itself, so the old container must go first"
                        .to_string(),
                )
            } else if docker_published.contains(container.as_str()) {
                Some(format!(
                    "{container} holds the ports through Docker; berth's port keeper takes them over"
                ))
            } else {
                None
            };
            if let Some(why) = why {
                *strategy = Strategy::StopFirst;
                step.reason
                    .push_str(&format!("; stop-first on the docker engine: {why}"));
            }
        }
    }
}

/// A service's published ports as the keeper holds them; `None` when one
/// is not a single fixed TCP port (Docker publishes those).
fn port_specs(svc: &Service) -> Option<Vec<keeper::PortSpec>> {
    svc.ports
        .iter()
        .map(|p| {
            if p.protocol != "tcp" || p.mode.as_deref() == Some("host") {
                return None;
            }
            Some(keeper::PortSpec {
                host_ip: p.host_ip.as_deref().unwrap_or("0.0.0.0").parse().ok()?,
                host_port: p.published.as_deref()?.parse().ok().filter(|n| *n > 0)?,
                target_port: p.target,
            })
        })
        .collect()
}

/// How long the old container's open connections may finish after a swap:
/// its stop grace period (compose's default 10 s).
fn drain_secs(svc: &Service) -> u64 {
    spec::stop_timeout(svc).max(0) as u64
}

/// The anonymous volumes that are a container's own, as (volume, target):
/// those at its image's `VOLUME` paths and its compose anonymous mounts.
/// What it has through `volumes_from` is its source's and is not among them
/// (its source may already be a new container, so asking it would not tell).
fn own_anonymous(c: &ContainerInspectResponse, svc: Option<&Service>) -> Vec<(String, String)> {
    let mut targets: Vec<String> = c
        .config
        .as_ref()
        .and_then(|c| c.volumes.clone())
        .unwrap_or_default();
    if let Some(svc) = svc {
        targets.extend(
            svc.volumes
                .iter()
                .filter(|m| m.kind == "volume" && m.source.is_none())
                .map(|m| m.target.clone()),
        );
    }
    c.mounts
        .iter()
        .flatten()
        .filter(|m| m.typ.as_deref() == Some("volume"))
        .filter_map(|m| Some((m.name.clone()?, m.destination.clone()?)))
        .filter(|(n, d)| is_anonymous(n) && targets.contains(d))
        .collect()
}

/// A `Write` that hands its bytes to the Engine API request body.
struct ChunkWriter(tokio::sync::mpsc::Sender<std::io::Result<bytes::Bytes>>);

impl std::io::Write for ChunkWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .blocking_send(Ok(bytes::Bytes::copy_from_slice(buf)))
            .map_err(|_| std::io::Error::other("the Docker Engine stopped reading the image"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Services ordered so that each comes before what it depends on (or
/// mounts volumes from, or shares a namespace with).
fn stop_order(project: &Project) -> Vec<String> {
    fn visit(project: &Project, s: &str, seen: &mut Vec<String>, out: &mut Vec<String>) {
        if seen.iter().any(|x| x == s) {
            return;
        }
        seen.push(s.to_string());
        if let Some(svc) = project.services.get(s) {
            let mut deps: Vec<String> = svc.depends_on.keys().cloned().collect();
            for vf in svc.volumes_from() {
                if let berth_compose::model::VolumesFrom::Service { name, .. } = vf {
                    deps.push(name);
                }
            }
            for d in deps {
                visit(project, &d, seen, out);
            }
        }
        out.push(s.to_string());
    }
    let mut seen = Vec::new();
    let mut out = Vec::new();
    for s in project.services.keys() {
        visit(project, s, &mut seen, &mut out);
    }
    out.reverse();
    out
}

/// The name a swapped-out container carries while the keeper retires it.
fn retired_name(container: &str, old_id: &str) -> String {
    format!("{container}_retired_{}", &old_id[..old_id.len().min(12)])
}

/// A container a swap replaced, on its way out: no longer part of the
/// project's state (`ps`, plans), still removed by `down`.
pub(crate) fn is_retired(name: &str) -> bool {
    name.contains("_retired_")
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_engine::Step;
    use serde_json::json;

    fn swap() -> Plan {
        Plan {
            steps: vec![Step {
                service: "app".into(),
                action: Action::Recreate {
                    container: "p-app-1".into(),
                    number: 1,
                    strategy: Strategy::StartFirst,
                    renew_anonymous_volumes: false,
                },
                reason: "app: runtime image changed; start-first swap (published ports)".into(),
            }],
            warnings: vec![],
        }
    }

    fn strategy(plan: &Plan) -> (Strategy, &str) {
        match &plan.steps[0].action {
            Action::Recreate { strategy, .. } => (*strategy, plan.steps[0].reason.as_str()),
            _ => unreachable!(),
        }
    }

    #[test]
    fn start_first_only_where_the_keeper_holds_the_ports() {
        let app = BTreeSet::from(["app".to_string()]);
        let none = BTreeSet::new();
        let mut p = swap();
        adjust(&mut p, None, &app, &none, &BTreeMap::new());
        assert_eq!(strategy(&p).0, Strategy::StartFirst);

        let mut p = swap();
        adjust(
            &mut p,
            Some("tcp://10.1.2.3:2375"),
            &app,
            &none,
            &BTreeMap::new(),
        );
        let (s, why) = strategy(&p);
        assert_eq!(s, Strategy::StopFirst);
        assert!(why.ends_with("stop-first on the docker engine: the daemon at tcp://10.1.2.3:2375 is remote, so Docker publishes the ports and the old container must go first"), "{why}");

        let mut p = swap();
        adjust(&mut p, None, &none, &none, &BTreeMap::new());
        assert!(strategy(&p).1.contains("Docker publishes the ports itself"));

        let mut p = swap();
        adjust(
            &mut p,
            None,
            &app,
            &BTreeSet::from(["p-app-1".to_string()]),
            &BTreeMap::new(),
        );
        let (s, why) = strategy(&p);
        assert_eq!(s, Strategy::StopFirst);
        assert!(
            why.contains("p-app-1 holds the ports through Docker"),
            "{why}"
        );
    }

    fn project(doc: Value) -> Project {
        serde_json::from_value(doc).unwrap()
    }

    #[test]
    fn only_a_volumes_from_source_starts_beside_the_next_steps() {
        // The seed: app takes code's volumes, nothing else of code.
        let seed = project(json!({"name": "p", "services": {
            "code": {"image": "c"},
            "app": {"image": "a", "volumes_from": ["service:code:rw"], "ports": [{"target": 3000, "published": "8080"}]}}}));
        assert!(start_may_overlap(&seed, "code"));
        assert!(!start_may_overlap(&seed, "app"), "it publishes a port");

        for needs_it_running in [
            json!({"depends_on": {"code": {"condition": "service_started"}}}),
            json!({"links": ["code:c"]}),
            json!({"network_mode": "service:code"}),
            json!({"ipc": "service:code"}),
            json!({"pid": "service:code"}),
        ] {
            let mut web = json!({"image": "w", "volumes_from": ["service:code:rw"]});
            web.as_object_mut()
                .unwrap()
                .extend(needs_it_running.as_object().unwrap().clone());
            let p = project(json!({"name": "p", "services": {"code": {"image": "c"}, "web": web}}));
            assert!(!start_may_overlap(&p, "code"), "{needs_it_running}");
        }
    }
}
