//! The embedded backend: run a project's containers in this process.
//!
//! A [`ProjectRuntime`] is the live state of one project: its default
//! network, and every container with what it was made from. It applies a
//! [`Plan`] step by step: create, start, recreate (stop-first, or
//! start-first with the port proxy switched to the new container once it is
//! ready), remove. It reaps containers and restarts them by policy
//! ([`ProjectRuntime::poll`]), and [`ProjectRuntime::down`] removes
//! everything it made. The supervisor process of `berth up -d` owns one; an
//! attached `berth up` owns one too.
//!
//! Volumes follow docker: anonymous volumes are populated from the image's
//! content at their path when first created, carried over to a recreated
//! container unless it must get fresh ones (new code, `-V`), and removed
//! once no container mounts them any more.

use crate::{health, hooks, output, ports, pty, resources, restart, signal, unsupported};
use crate::{Health, HealthCheck, RestartPolicy};
use berth_compose::model::{Mount, Service, VolumesFrom};
use berth_compose::Project;
use berth_engine::planner::{Action, ContainerState, ObservedContainer, Plan, Strategy};
use berth_engine::project_files::{effective_hash, ProjectFiles};
use berth_network::{AttachOptions, NetworkOptions, Networks, PoolConfig, ResolvConf};
use berth_oci::spec::ContainerConfig;
use berth_oci::{Platform, Store};
use berth_proxy::{ProxyOptions, ProxySet, Target};
use berth_sandbox::{
    Container, ContainerSpec, ExitStatus, Ipc, MountKind, MountSpec, Namespace, Network, Sandbox,
    Stdio,
};
use std::collections::BTreeMap;
use std::fs;
use std::net::IpAddr;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{io_err, svc_err, EngineError, Result};
use crate::layout::volume_dir;
use crate::logs::LogSink;
use crate::service_image::{RuntimeMount, ServiceImage, RUNTIME_DIR};
use crate::supervisor::state::Footprint;

mod adopt;
mod apply;
mod lifecycle;
mod networks;
mod one_off;
mod swap;
mod volumes;

use lifecycle::*;
use networks::*;
pub(crate) use networks::{first_network, interface_names};
use volumes::*;

const NPM_CACHE_DIR: &str = "/opt/berth/npm-cache";
const CA_BUNDLE: &str = "/opt/berth/ca-certificates.crt";

/// The logging drivers the embedded engine writes: docker's file-based ones
/// and none.
pub(crate) const LOG_DRIVERS: &[&str] = &["json-file", "local", "none"];

/// The engine's handles on the host: state directory, image store, the
/// container runtime and the networks.
pub struct Engine {
    state: PathBuf,
    store: Store,
    sandbox: Sandbox,
    networks: Networks,
}

impl Engine {
    pub fn open(state_dir: &Path, store: Store) -> Result<Engine> {
        let sandbox = Sandbox::open(state_dir.join("sandbox"))
            .map_err(|e| svc_err("-", format!("cannot open the container runtime: {e}")))?;
        Ok(Engine {
            state: state_dir.to_path_buf(),
            store,
            sandbox,
            networks: Networks::open(state_dir.join("network"), address_pool()?),
        })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// An empty runtime for project `name`: nothing is made until a plan is applied.
    pub fn project(self, name: &str, logs: Arc<dyn LogSink>) -> ProjectRuntime {
        ProjectRuntime {
            engine: self,
            project: name.to_string(),
            networks: Vec::new(),
            live: Vec::new(),
            logs,
            released: Vec::new(),
            pending: Default::default(),
            notes: Default::default(),
            cancel: Default::default(),
            files: ProjectFiles::new(),
            retiring: Vec::new(),
        }
    }
}

/// One anonymous volume: where it is mounted and the directory holding it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct AnonymousVolume {
    target: String,
    dir: PathBuf,
}

/// A container of the project and everything it was made from: enough to
/// start it again (restart policies) and to answer the planner.
struct Live {
    service: String,
    number: u32,
    /// The name users see: `seed-app-1`.
    name: String,
    /// Unique per incarnation (a swap runs two `seed-app-1` side by side):
    /// names the sandbox container, its namespace and its files.
    id: String,
    config_hash: String,
    image_digest: String,
    mounted: BTreeMap<String, String>,
    named_volumes: Vec<String>,
    svc: Service,
    /// The image's runtime defaults.
    config: ContainerConfig,
    runtime: Option<RuntimeMount>,
    layers: Vec<PathBuf>,
    /// Every mount, the hosts file and volumes included.
    mounts: Vec<MountSpec>,
    /// The volumes `volumes_from` consumers mount.
    volume_mounts: Vec<MountSpec>,
    anonymous: Vec<AnonymousVolume>,
    container: Option<Container>,
    /// A namespace of its own (`berth-<id>`), or one it joined.
    netns: Option<PathBuf>,
    owns_netns: bool,
    /// Its first network's address (what `ps` shows).
    ip: Option<IpAddr>,
    /// Every network it is attached to, with its address and aliases there.
    attachments: Vec<Attachment>,
    exited: Option<ExitStatus>,
    proxy: Option<ProxySet>,
    restart: RestartPolicy,
    restarts: u32,
    started_at: Instant,
    backoff: Option<Duration>,
    restart_at: Option<Instant>,
    /// Stopped or killed on request: restart policies leave it alone.
    user_stopped: bool,
    check: Option<HealthCheck>,
    health: Option<HealthState>,
    /// Made by `run`: the planner leaves it alone.
    one_off: bool,
    /// Frozen by `pause`.
    paused: bool,
    /// A one-off's stdin, stdout and stderr (the caller's terminal or
    /// pipes), used by its first start instead of the output file.
    stdio: Option<[OwnedFd; 3]>,
    /// Its output file, read into the log sink on every poll.
    output: Option<output::OutputTail>,
}

/// A one-off container (`berth run`): a service's container with its
/// command, environment or ports changed, attached to the caller's stdio.
#[derive(Debug, Default)]
pub struct OneOff {
    pub command: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    /// `KEY=VALUE` over the service's environment.
    pub env: Vec<String>,
    pub user: Option<String>,
    pub workdir: Option<String>,
    /// Publish the service's own ports (`--service-ports`).
    pub service_ports: bool,
    /// Extra `-p` ports, compose's short syntax.
    pub ports: Vec<berth_compose::model::Port>,
    pub name: Option<String>,
    /// stdin, stdout, stderr; `None`: output goes to the log like any container.
    pub stdio: Option<[OwnedFd; 3]>,
}

/// A container's health and the probe running for it, if one is.
struct HealthState {
    tracker: health::Tracker,
    inflight: Option<(Instant, std::sync::mpsc::Receiver<bool>)>,
}

impl Live {
    fn files(&self, state: &Path) -> PathBuf {
        state.join("containers").join(&self.id)
    }

    fn stop_signal(&self) -> i32 {
        self.svc
            .stop_signal
            .as_deref()
            .or(self.config.stop_signal.as_deref())
            .and_then(signal::parse)
            .unwrap_or(signal::SIGTERM)
    }

    fn grace(&self) -> Option<Duration> {
        self.svc
            .stop_grace_period
            .as_deref()
            .and_then(berth_compose::units::parse_duration)
    }

    fn running(&self) -> bool {
        self.container.is_some() && self.exited.is_none()
    }
}

/// A container on one network.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Attachment {
    /// The engine-level network name (`seed_default`).
    network: String,
    ip: IpAddr,
    /// Other names it answers to on this network (`aliases`, the service).
    aliases: Vec<String>,
}

/// What a supervisor writes down about each container so that the next
/// one can take it over if it dies (see [`Engine::adopt`]).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LiveRecord {
    service: String,
    number: u32,
    name: String,
    id: String,
    config_hash: String,
    image_digest: String,
    mounted: BTreeMap<String, String>,
    named_volumes: Vec<String>,
    svc: Service,
    config: ContainerConfig,
    runtime: Option<RuntimeMount>,
    layers: Vec<PathBuf>,
    mounts: Vec<MountSpec>,
    volume_mounts: Vec<MountSpec>,
    anonymous: Vec<AnonymousVolume>,
    netns: Option<PathBuf>,
    owns_netns: bool,
    ip: Option<IpAddr>,
    attachments: Vec<Attachment>,
    restarts: u32,
    one_off: bool,
    user_stopped: bool,
    exit_code: Option<i32>,
    /// Replaced by a swap and on its way out.
    retiring: bool,
}

/// What [`ProjectRuntime::poll`] saw happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Started {
        container: String,
    },
    /// `id` is the incarnation's: during a swap two containers share a
    /// name, and the old one's exit must not be taken for the new one's.
    Exited {
        container: String,
        id: String,
        code: i32,
    },
    Killed {
        container: String,
        signal: i32,
    },
    Removed {
        container: String,
    },
    Health {
        container: String,
        status: Health,
    },
    Restarted {
        container: String,
        restarts: u32,
    },
    RestartFailed {
        container: String,
        message: String,
    },
}

/// The live state of one project on the embedded engine.
pub struct ProjectRuntime {
    engine: Engine,
    project: String,
    /// Engine names of the networks this runtime created (external ones
    /// are used, never created or removed).
    networks: Vec<String>,
    live: Vec<Live>,
    logs: Arc<dyn LogSink>,
    /// Anonymous volumes whose container is gone, removed once nothing
    /// mounts them (an old app still serving from the old code volume).
    released: Vec<PathBuf>,
    /// What happened outside `poll`, handed out by the next `poll`.
    pending: std::cell::RefCell<Vec<Event>>,
    /// Things the user should hear about (a container killed after its
    /// grace period, and why), handed out by [`take_notes`](Self::take_notes).
    notes: std::cell::RefCell<Vec<String>>,
    /// Set (by the supervisor, on Ctrl-C or a client that hung up) to end
    /// the waits of an apply at once: for a dependency's health, for a new
    /// container to get ready.
    cancel: Arc<AtomicBool>,
    /// Each service's secrets and configs, resolved by the caller for the
    /// project being applied (see [`set_project_files`](Self::set_project_files)).
    files: ProjectFiles,
    /// Containers a swap replaced, sent their stop signal and waited for
    /// by [`poll`](Self::poll): `up` returns once traffic moved, not after
    /// the old one's grace period.
    retiring: Vec<Retiring>,
}

struct Retiring {
    live: Live,
    /// SIGKILL after this.
    deadline: Instant,
    /// Anonymous volumes its successor carried over.
    keep: Vec<PathBuf>,
}

impl ProjectRuntime {
    pub fn project(&self) -> &str {
        &self.project
    }

    /// What the user should be told since the last call (containers killed
    /// after their grace period, and why).
    pub fn take_notes(&self) -> Vec<String> {
        std::mem::take(&mut *self.notes.borrow_mut())
    }

    /// The secrets and configs of the project the next apply or one-off
    /// is for (see `project_files::resolve`).
    pub fn set_project_files(&mut self, files: ProjectFiles) {
        self.files = files;
    }

    /// The flag that interrupts this runtime's waits (see `cancel`).
    pub fn cancel_flag(&self) -> Arc<AtomicBool> {
        self.cancel.clone()
    }

    pub fn store(&self) -> &Store {
        &self.engine.store
    }

    /// The containers as the planner sees them.
    pub fn observed(&self) -> Vec<ObservedContainer> {
        self.live
            .iter()
            .map(|l| ObservedContainer {
                name: l.name.clone(),
                service: l.service.clone(),
                number: l.number,
                config_hash: l.config_hash.clone(),
                image_digest: Some(l.image_digest.clone()),
                mounted_image_digests: l.mounted.clone(),
                networks: l.attachments.iter().map(|a| a.network.clone()).collect(),
                volumes: l.named_volumes.clone(),
                state: match (&l.exited, l.restart_at) {
                    (None, _) if l.paused => ContainerState::Paused,
                    (Some(_), Some(_)) => ContainerState::Restarting,
                    (Some(s), None) => ContainerState::Exited { code: s.code() },
                    (None, _) => ContainerState::Running,
                },
                one_off: l.one_off,
            })
            .collect()
    }

    /// `(service, container, state, exit code, published ports)` of every
    /// container, in creation order.
    pub fn containers(&self) -> Vec<ContainerInfo> {
        self.live
            .iter()
            .map(|l| ContainerInfo {
                service: l.service.clone(),
                name: l.name.clone(),
                id: l.id.clone(),
                pid: l
                    .container
                    .as_ref()
                    .filter(|_| l.exited.is_none())
                    .map(|c| c.pid()),
                running: l.running(),
                exit_code: l.exited.map(|s| s.code()),
                restarting: l.restart_at.is_some(),
                paused: l.paused && l.running(),
                restarts: l.restarts,
                health: l
                    .health
                    .as_ref()
                    .filter(|_| l.running())
                    .map(|h| h.tracker.status.as_str().to_string()),
                ip: l.ip,
                ports: l
                    .svc
                    .ports
                    .iter()
                    .filter_map(|p| {
                        let published = p.published.as_ref()?;
                        let ip = p.host_ip.as_deref().unwrap_or("0.0.0.0");
                        Some(format!("{ip}:{published}->{}/{}", p.target, p.protocol))
                    })
                    .collect(),
                labels: self.labels_of(l),
                annotations: l
                    .svc
                    .extra
                    .get("annotations")
                    .and_then(|a| a.as_object())
                    .map(|a| {
                        a.iter()
                            .map(|(k, v)| {
                                let v = v
                                    .as_str()
                                    .map(str::to_string)
                                    .unwrap_or_else(|| v.to_string());
                                (k.clone(), v)
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                image: l.image_digest.clone(),
            })
            .collect()
    }

    /// `labels` of `l`'s service and compose's own, which a user's label
    /// cannot override (compose refuses them).
    fn labels_of(&self, l: &Live) -> BTreeMap<String, String> {
        let mut labels: BTreeMap<String, String> = l
            .svc
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let compose = [
            ("project", self.project.clone()),
            ("service", l.service.clone()),
            ("container-number", l.number.to_string()),
            (
                "oneoff",
                if l.one_off { "True" } else { "False" }.to_string(),
            ),
            ("config-hash", l.config_hash.clone()),
        ];
        for (k, v) in compose {
            labels.insert(format!("com.docker.compose.{k}"), v);
        }
        labels
    }

    fn index(&self, container: &str) -> Result<usize> {
        // The newest incarnation: during a swap the old one is listed first.
        self.live
            .iter()
            .rposition(|l| l.name == container)
            .ok_or_else(|| svc_err(container, "no such container"))
    }

    /// The current container of `service`: the newest one still running,
    /// else the newest.
    fn current(&self, service: &str) -> Option<&Live> {
        // One-offs (`run`) do not answer to the service's name.
        let of = || {
            self.live
                .iter()
                .filter(|l| l.service == service && !l.one_off)
        };
        of().rev()
            .find(|l| l.running())
            .or_else(|| of().next_back())
    }

    /// The exit code of container `name` once it exited.
    pub fn exit_code(&self, name: &str) -> Option<i32> {
        self.live
            .iter()
            .find(|l| l.name == name)
            .and_then(|l| l.exited.map(|s| s.code()))
    }

    /// New output of every container to the log sink; all of it once a
    /// container has exited.
    fn pump_output(&mut self) {
        let logs = self.logs.clone();
        let lives = self
            .live
            .iter_mut()
            .chain(self.retiring.iter_mut().map(|r| &mut r.live));
        for l in lives {
            let ended = l.exited.is_some();
            if let Some(out) = l.output.as_mut() {
                let lines = out.read_lines(ended);
                if !lines.is_empty() {
                    logs.lines(&l.name, &lines);
                }
            }
        }
    }

    fn event(&self, e: Event) {
        self.pending.borrow_mut().push(e);
    }

    /// Names of the containers of `services` (all when empty), in creation
    /// order; an unknown service is an error.
    pub fn select(&self, services: &[String]) -> Result<Vec<String>> {
        for s in services {
            if !self.live.iter().any(|l| &l.service == s) {
                return Err(svc_err(s, "no such service, or it has no container"));
            }
        }
        Ok(self
            .live
            .iter()
            .filter(|l| services.is_empty() || services.contains(&l.service))
            .map(|l| l.name.clone())
            .collect())
    }

    /// Every container as the next supervisor needs it to take over.
    pub fn records(&self) -> Vec<LiveRecord> {
        let record = |l: &Live, retiring: bool| LiveRecord {
            service: l.service.clone(),
            number: l.number,
            name: l.name.clone(),
            id: l.id.clone(),
            config_hash: l.config_hash.clone(),
            image_digest: l.image_digest.clone(),
            mounted: l.mounted.clone(),
            named_volumes: l.named_volumes.clone(),
            svc: l.svc.clone(),
            config: l.config.clone(),
            runtime: l.runtime.clone(),
            layers: l.layers.clone(),
            mounts: l.mounts.clone(),
            volume_mounts: l.volume_mounts.clone(),
            anonymous: l.anonymous.clone(),
            netns: l.netns.clone(),
            owns_netns: l.owns_netns,
            ip: l.ip,
            attachments: l.attachments.clone(),
            restarts: l.restarts,
            one_off: l.one_off,
            user_stopped: l.user_stopped,
            exit_code: l.exited.map(|s| s.code()),
            retiring,
        };
        self.live
            .iter()
            .map(|l| record(l, false))
            .chain(self.retiring.iter().map(|r| record(&r.live, true)))
            .collect()
    }

    /// Everything this runtime made on the host, for a later command to
    /// clean up should this process die without `down`.
    pub fn footprint(&self) -> Footprint {
        let lives = self
            .live
            .iter()
            .chain(self.retiring.iter().map(|r| &r.live));
        let mut f = Footprint {
            networks: self.networks.clone(),
            ..Footprint::default()
        };
        for l in lives {
            f.containers.push(l.id.clone());
            f.volumes.extend(l.anonymous.iter().map(|a| a.dir.clone()));
        }
        f.volumes.extend(self.released.iter().cloned());
        f
    }

    /// True while some container runs or waits to be restarted.
    pub fn any_running(&self) -> bool {
        self.live
            .iter()
            .any(|l| l.running() || l.restart_at.is_some())
    }
}

impl Footprint {
    /// Remove it all (after the runtime that made it died): kill and delete
    /// the containers, their namespaces and network attachments, the
    /// networks and the anonymous volumes. Best effort; what cannot be
    /// removed is reported.
    pub fn remove(&self, state_dir: &Path) -> Vec<String> {
        let mut problems = Vec::new();
        let networks = Networks::open(state_dir.join("network"), PoolConfig::default());
        match Sandbox::open(state_dir.join("sandbox")) {
            Ok(sandbox) => {
                for id in &self.containers {
                    if let Err(e) = sandbox.remove(id) {
                        problems.push(format!("container {id}: {e}"));
                    }
                    for n in &self.networks {
                        let _ = networks.detach(n, id);
                    }
                    let _ = berth_network::delete_netns(&format!("berth-{id}"));
                    volumes::unmount_subpaths(state_dir, id);
                    // Its hosts, resolv.conf and output file (see `Live::files`).
                    let files = state_dir.join("containers").join(id);
                    let is_id = Path::new(id).components().count() == 1 && !id.starts_with('.');
                    if is_id && files.exists() {
                        if let Err(e) = fs::remove_dir_all(&files) {
                            problems.push(format!("{}: {e}", files.display()));
                        }
                    }
                }
            }
            Err(e) => problems.push(format!("container runtime: {e}")),
        }
        for n in &self.networks {
            if let Err(e) = networks.remove(n) {
                problems.push(format!("network {n}: {e}"));
            }
        }
        for v in &self.volumes {
            let _ = fs::remove_dir_all(v);
        }
        problems
    }
}

/// What `ps` shows of one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInfo {
    pub service: String,
    pub name: String,
    /// The sandbox id of this incarnation (for `exec`, `top`).
    pub id: String,
    pub pid: Option<i32>,
    pub running: bool,
    pub exit_code: Option<i32>,
    pub restarting: bool,
    pub paused: bool,
    pub restarts: u32,
    /// starting, healthy or unhealthy; `None` without a healthcheck.
    pub health: Option<String>,
    pub ip: Option<IpAddr>,
    pub ports: Vec<String>,
    /// The service's `labels` (and `label_file`), with docker compose's own
    /// `com.docker.compose.*` labels, as `docker inspect` shows them.
    pub labels: BTreeMap<String, String>,
    /// The service's `annotations`.
    pub annotations: BTreeMap<String, String>,
    /// The digest of the image it runs (`+ runtime` for an `x-runtime`).
    pub image: String,
}

/// Raise this process's open-files limit to its hard limit (a supervisor's
/// port proxies hold 2 to 6 fds per relayed connection); the new soft limit.
pub fn raise_fd_limit() -> std::result::Result<u64, berth_proxy::ProxyError> {
    berth_proxy::raise_fd_limit().map(|l| l.soft)
}

/// `name.<12 hex>`: unique per incarnation, stable for its lifetime.
fn incarnation_id(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let seed = format!("{name}\0{nanos}\0{}", std::process::id());
    let digest = berth_oci::Digest::of(seed.as_bytes());
    format!("{name}.{}", &digest.hex()[..12])
}

fn string_list(v: Option<&serde_json::Value>) -> Vec<String> {
    match v {
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .filter_map(|i| i.as_str().map(str::to_string))
            .collect(),
        Some(serde_json::Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    }
}
