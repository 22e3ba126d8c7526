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
use berth_engine::planner::{self, Action, ContainerState, ObservedContainer, Plan, Strategy};
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

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("service {service:?}: {message}")]
    Service { service: String, message: String },
    #[error("network: {0}")]
    Network(#[from] berth_network::Error),
    #[error("{0}")]
    Plan(#[from] planner::PlanError),
    #[error("image store: {0}")]
    Store(#[from] berth_oci::StoreError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("interrupted")]
    Interrupted,
    /// A key the engine cannot honour: `key.path: why`.
    #[error("{0}")]
    Unsupported(String),
}

type Result<T> = std::result::Result<T, EngineError>;

fn svc_err(service: &str, message: impl std::fmt::Display) -> EngineError {
    EngineError::Service {
        service: service.to_string(),
        message: message.to_string(),
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> EngineError + '_ {
    move |source| EngineError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Where container output goes (the supervisor writes it to log files, an
/// attached `up` prefixes and colours it).
pub trait LogSink: Send + Sync {
    fn line(&self, container: &str, line: &str);
    /// Several lines of one container at once (what a poll read).
    fn lines(&self, container: &str, lines: &[String]) {
        for l in lines {
            self.line(container, l);
        }
    }
    /// The service's `logging:` settings for `container`, before its first
    /// line (checked already: the driver is json-file, local or none).
    fn configure(&self, _container: &str, _logging: Option<&serde_json::Value>) {}
}

/// The logging drivers the embedded engine writes: docker's file-based ones
/// and none.
const LOG_DRIVERS: &[&str] = &["json-file", "local", "none"];

/// What a service's container is made from: an image from the store, a
/// language runtime (`x-runtime`), or both. `digest` is what the planner
/// compares: the image's single-platform manifest digest, the runtime's
/// digest, or both joined by `+`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceImage {
    /// The image's name in the store; `None`: the container is rooted on
    /// the host's filesystem (a runtime without an image).
    pub name: Option<String>,
    pub runtime: Option<RuntimeMount>,
    pub digest: String,
}

pub use berth_engine::backend::RuntimeMount;

/// Where a runtime appears inside the container.
pub const RUNTIME_DIR: &str = "/opt/berth/runtime";
const NPM_CACHE_DIR: &str = "/opt/berth/npm-cache";
const CA_BUNDLE: &str = "/opt/berth/ca-certificates.crt";

/// Resolve each service's image name to its digest in `store`, and join
/// the runtimes given for services.
pub fn service_images(
    store: &Store,
    names: &BTreeMap<String, String>,
    runtimes: &BTreeMap<String, RuntimeMount>,
) -> Result<BTreeMap<String, ServiceImage>> {
    let mut out = BTreeMap::new();
    for (service, name) in names {
        let image = store
            .image(name, &Platform::host())
            .map_err(|e| svc_err(service, e))?;
        let runtime = runtimes.get(service).cloned();
        let mut digest = image.manifest_digest.to_string();
        if let Some(r) = &runtime {
            digest = format!("{digest}+{}", r.digest);
        }
        out.insert(
            service.clone(),
            ServiceImage {
                name: Some(name.clone()),
                runtime,
                digest,
            },
        );
    }
    for (service, r) in runtimes {
        out.entry(service.clone()).or_insert_with(|| ServiceImage {
            name: None,
            runtime: Some(r.clone()),
            digest: r.digest.clone(),
        });
    }
    Ok(out)
}

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

    /// Take over the project a supervisor that died left running: its
    /// containers (they kept running; how one that ended since then ended is
    /// lost), its networks, its published ports (bound again) and its output
    /// from where the last supervisor stopped reading. Returns what could not
    /// be taken over.
    pub fn adopt(
        self,
        name: &str,
        logs: Arc<dyn LogSink>,
        networks: Vec<String>,
        records: Vec<LiveRecord>,
    ) -> (ProjectRuntime, Vec<String>) {
        let mut rt = self.project(name, logs);
        rt.networks = networks;
        let mut problems = Vec::new();
        let now = Instant::now();
        for r in records {
            let (container, exited) = match rt.engine.sandbox.adopt(&r.id) {
                Ok(c) => (Some(c), None),
                Err(_) => {
                    // Gone or ended: clear what is left, so it can start again.
                    let _ = rt.engine.sandbox.remove(&r.id);
                    let status = match r.exit_code {
                        Some(code) => ExitStatus::Exited(code),
                        None => ExitStatus::Unknown,
                    };
                    (None, Some(status))
                }
            };
            let restart =
                RestartPolicy::of_service(r.svc.restart.as_deref(), r.svc.extra.get("deploy"))
                    .unwrap_or(RestartPolicy::No);
            let check = HealthCheck::resolve(r.svc.healthcheck.as_ref(), &r.config).unwrap_or(None);
            let dir = rt.engine.state.join("containers").join(&r.id);
            let mut live = Live {
                service: r.service,
                number: r.number,
                name: r.name,
                id: r.id,
                config_hash: r.config_hash,
                image_digest: r.image_digest,
                mounted: r.mounted,
                named_volumes: r.named_volumes,
                svc: r.svc,
                config: r.config,
                runtime: r.runtime,
                layers: r.layers,
                mounts: r.mounts,
                volume_mounts: r.volume_mounts,
                anonymous: r.anonymous,
                container,
                netns: r.netns,
                owns_netns: r.owns_netns,
                ip: r.ip,
                attachments: r.attachments,
                exited,
                proxy: None,
                restart,
                restarts: r.restarts,
                started_at: now,
                backoff: None,
                restart_at: None,
                user_stopped: r.user_stopped,
                check,
                health: None,
                one_off: r.one_off,
                paused: false,
                stdio: None,
                output: output::OutputTail::open(&dir).ok(),
            };
            rt.logs.configure(&live.name, live.svc.extra.get("logging"));
            if live.running() {
                live.health = live.check.clone().map(|c| HealthState {
                    tracker: health::Tracker::new(c, now),
                    inflight: None,
                });
            } else if let Some(s) = live.exited {
                // As after a docker daemon restart: `always` brings back even
                // a container stopped by hand, `unless-stopped` does not.
                if live.user_stopped && live.restart == RestartPolicy::Always {
                    live.user_stopped = false;
                }
                if !live.user_stopped && live.restart.restarts(s.code(), live.restarts) {
                    live.restart_at = Some(now);
                }
            }
            if r.retiring {
                if let Some(note) = signal_stop(&rt.engine, &live) {
                    rt.notes.borrow_mut().push(note);
                }
                rt.retiring.push(Retiring {
                    deadline: now + live.grace().unwrap_or(Duration::from_secs(10)),
                    live,
                    keep: Vec::new(),
                });
                continue;
            }
            match rt.bind_ports(&live) {
                Ok(p) => live.proxy = Some(p),
                Err(e) => problems.push(e.to_string()),
            }
            rt.live.push(live);
        }
        rt.refresh_hosts();
        (rt, problems)
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

/// The pool project networks take their subnets from: 172.31.0.0/16 cut
/// into /24s unless `BERTH_ADDRESS_POOL` (`base/bits[,size]`) says
/// otherwise, for hosts where that range is taken.
fn address_pool() -> Result<PoolConfig> {
    let Ok(text) = std::env::var("BERTH_ADDRESS_POOL") else {
        return Ok(PoolConfig::default());
    };
    let bad = |why: String| svc_err("-", format!("BERTH_ADDRESS_POOL={text:?}: {why}"));
    let (base, size) = match text.split_once(',') {
        Some((b, s)) => (b, s.trim().parse::<u8>().map_err(|e| bad(e.to_string()))?),
        None => (text.as_str(), 24),
    };
    let base = base.trim().parse().map_err(|e| bad(format!("{e}")))?;
    PoolConfig::new(base, size).map_err(|e| bad(e.to_string()))
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

/// How long a start-first swap waits for the new container by default.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

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

    fn note_killed(&self, name: &str, pid: i32, sig: i32, grace: Duration) {
        self.notes
            .borrow_mut()
            .push(killed_note(name, pid, sig, grace));
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

    /// Apply `plan` (made from [`observed`](Self::observed)) to reach
    /// `project`. `progress` hears one line per step. On error the step that
    /// failed is undone; the steps before it stay applied.
    pub fn apply(
        &mut self,
        project: &Project,
        images: &BTreeMap<String, ServiceImage>,
        plan: &Plan,
        progress: &dyn Fn(&str),
    ) -> Result<()> {
        unsupported::check(project).map_err(EngineError::Unsupported)?;
        self.ensure_networks(project)?;
        for step in &plan.steps {
            if self.cancel.load(Ordering::SeqCst) {
                return Err(EngineError::Interrupted);
            }
            let service = step.service.as_str();
            match &step.action {
                Action::Nothing { .. } => {}
                Action::Create { number, name } => {
                    progress(&format!("Container {name}  Creating"));
                    self.create(project, images, service, *number, name, None, None)?;
                    progress(&format!("Container {name}  Started"));
                }
                Action::Start { container } | Action::Restart { container } => {
                    let i = self.index(container)?;
                    self.stop(i, None);
                    self.respawn(i)?;
                    progress(&format!("Container {container}  Started"));
                }
                Action::Recreate {
                    container,
                    number,
                    strategy,
                    renew_anonymous_volumes,
                } => {
                    let i = self.index(container)?;
                    let inherit =
                        (!renew_anonymous_volumes).then(|| self.live[i].anonymous.clone());
                    let swap = *strategy == Strategy::StartFirst
                        && self.live[i].running()
                        && self.live[i].proxy.is_some();
                    if swap {
                        progress(&format!("Container {container}  Swapping (start-first)"));
                        self.swap(project, images, service, *number, i, inherit)?;
                        progress(&format!("Container {container}  Swapped"));
                    } else {
                        progress(&format!("Container {container}  Recreating"));
                        let grace = self.stop_timeout(i, None);
                        self.stop(i, Some(grace));
                        let mut old = self.live.remove(i);
                        let proxy = old.proxy.take();
                        let kept: Vec<PathBuf> = match &inherit {
                            Some(v) => v.iter().map(|a| a.dir.clone()).collect(),
                            None => Vec::new(),
                        };
                        self.discard(old, &kept);
                        self.create(project, images, service, *number, container, inherit, proxy)?;
                        progress(&format!("Container {container}  Started"));
                    }
                }
                Action::ScaleDown { container } | Action::RemoveOrphan { container } => {
                    progress(&format!("Container {container}  Removing"));
                    let i = self.index(container)?;
                    let grace = self.stop_timeout(i, None);
                    self.stop(i, Some(grace));
                    let old = self.live.remove(i);
                    self.discard(old, &[]);
                    progress(&format!("Container {container}  Removed"));
                }
            }
            self.release_volumes();
        }
        self.refresh_hosts();
        Ok(())
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

    /// Make, start and register one container. `inherit` carries the
    /// anonymous volumes of the container it replaces; `proxy` its bound
    /// ports, switched to the new one (else ports are bound here, so a port
    /// in use fails before anything runs).
    #[allow(clippy::too_many_arguments)]
    fn create(
        &mut self,
        project: &Project,
        images: &BTreeMap<String, ServiceImage>,
        service: &str,
        number: u32,
        name: &str,
        inherit: Option<Vec<AnonymousVolume>>,
        proxy: Option<ProxySet>,
    ) -> Result<usize> {
        self.wait_dependencies(project, service)?;
        let mut live = self.prepare(project, images, service, number, name, inherit)?;
        let bound = match proxy {
            Some(p) => match &live.netns {
                Some(ns) => p
                    .switch_netns(ns)
                    .map(|_| p)
                    .map_err(|e| svc_err(service, e)),
                None => Ok(p),
            },
            None => self.bind_ports(&live),
        };
        let proxy = match bound {
            Ok(p) => p,
            Err(e) => {
                self.discard(live, &[]);
                return Err(e);
            }
        };
        live.proxy = Some(proxy);
        if let Err(e) = self.spawn(&mut live) {
            self.discard(live, &[]);
            return Err(e);
        }
        self.live.push(live);
        let i = self.live.len() - 1;

        // A dependency others wait on to complete must exit 0 first.
        let awaited = project.services.values().any(|s| {
            s.depends_on
                .get(service)
                .is_some_and(|d| d.condition == "service_completed_successfully")
        });
        if awaited {
            let l = &mut self.live[i];
            let container = l.container.as_mut().expect("just spawned");
            let status = container.wait().map_err(|e| svc_err(service, e))?;
            l.exited = Some(status);
            if !status.success() {
                return Err(svc_err(
                    service,
                    format!(
                        "exited with code {} before its dependants could start",
                        status.code()
                    ),
                ));
            }
        }
        self.refresh_hosts();
        Ok(i)
    }

    fn bind_ports(&self, live: &Live) -> Result<ProxySet> {
        let publishes = ports::publishes(&live.svc.ports, live.netns.as_deref())
            .map_err(|e| svc_err(&live.service, e))?;
        if publishes.is_empty() {
            return Ok(ProxySet::default());
        }
        // `x-berth: {protocol: http|tcp|auto}`: how a swap drains the
        // port's connections (checked before anything is made).
        let protocol = unsupported::port_protocol(&live.svc);
        ProxySet::bind_each(
            publishes.into_iter().map(|p| (p, protocol)),
            &ProxyOptions::default(),
        )
        .map_err(|e| svc_err(&live.service, format!("{}: {e}", live.name)))
    }

    /// Everything but the process: namespace, address, files, volumes.
    fn prepare(
        &mut self,
        project: &Project,
        images: &BTreeMap<String, ServiceImage>,
        service: &str,
        number: u32,
        name: &str,
        inherit: Option<Vec<AnonymousVolume>>,
    ) -> Result<Live> {
        let svc = project
            .services
            .get(service)
            .ok_or_else(|| svc_err(service, "not in the project"))?
            .clone();
        let wanted = images
            .get(service)
            .ok_or_else(|| svc_err(service, "no image (build or pull it first)"))?;
        // Never the host's root: an x-runtime service gets a base image
        // (see the CLI's `runtime_base`), with the runtime mounted on top.
        let image_name = wanted.name.as_ref().ok_or_else(|| {
            svc_err(
                service,
                "no image to run on (an x-runtime needs a base image)",
            )
        })?;
        let image = self
            .engine
            .store
            .image(image_name, &Platform::host())
            .map_err(|e| svc_err(service, e))?;
        let layers = self
            .engine
            .sandbox
            .layers()
            .unpack_image(&self.engine.store, &image)
            .map_err(|e| svc_err(service, e))?;
        let config = image.config.config;
        let restart = RestartPolicy::of_service(svc.restart.as_deref(), svc.extra.get("deploy"))
            .map_err(|e| svc_err(service, e))?;
        let check = HealthCheck::resolve(svc.healthcheck.as_ref(), &config)
            .map_err(|e| svc_err(service, e))?;
        // Containers are not user-namespaced (docker's default), which is
        // what `userns_mode: host` asks for; other modes are not supported.
        if let Some(mode) = svc.extra.get("userns_mode").and_then(|v| v.as_str()) {
            if mode != "host" {
                return Err(svc_err(
                    service,
                    format!("userns_mode {mode:?}: the embedded engine supports only \"host\""),
                ));
            }
        }
        if let Some(driver) = svc
            .extra
            .get("logging")
            .and_then(|l| l.get("driver"))
            .and_then(|d| d.as_str())
        {
            if !LOG_DRIVERS.contains(&driver) {
                return Err(svc_err(
                    service,
                    format!(
                        "logging.driver {driver:?}: the embedded engine supports {}",
                        LOG_DRIVERS.join(", ")
                    ),
                ));
            }
        }
        let mounted = svc
            .volumes_from()
            .into_iter()
            .filter_map(|vf| match vf {
                VolumesFrom::Service { name, .. } => {
                    let digest = images.get(&name)?.digest.clone();
                    Some((name, digest))
                }
                _ => None,
            })
            .collect();
        let mut live = Live {
            service: service.to_string(),
            number,
            name: name.to_string(),
            id: incarnation_id(name),
            config_hash: effective_hash(&svc, self.files.get(service)),
            image_digest: wanted.digest.clone(),
            mounted,
            named_volumes: Vec::new(),
            svc,
            config,
            runtime: wanted.runtime.clone(),
            layers,
            mounts: Vec::new(),
            volume_mounts: Vec::new(),
            anonymous: Vec::new(),
            container: None,
            netns: None,
            owns_netns: false,
            ip: None,
            attachments: Vec::new(),
            exited: None,
            proxy: None,
            restart,
            restarts: 0,
            started_at: Instant::now(),
            backoff: None,
            restart_at: None,
            user_stopped: false,
            check,
            health: None,
            one_off: false,
            paused: false,
            stdio: None,
            output: None,
        };
        match self.prepare_in(project, &mut live, inherit) {
            Ok(()) => Ok(live),
            Err(e) => {
                self.discard(live, &[]);
                Err(e)
            }
        }
    }

    fn prepare_in(
        &mut self,
        project: &Project,
        live: &mut Live,
        inherit: Option<Vec<AnonymousVolume>>,
    ) -> Result<()> {
        let service = live.service.clone();
        match live.svc.network_mode.as_deref() {
            Some("host") | Some("none") => {}
            Some(mode) if mode.starts_with("service:") => {
                let other = &mode["service:".len()..];
                let theirs = self
                    .current(other)
                    .and_then(|l| l.netns.clone().map(|ns| (ns, l.ip)))
                    .ok_or_else(|| {
                        svc_err(
                            &service,
                            format!("network_mode {mode}: {other} has no network namespace"),
                        )
                    })?;
                live.netns = Some(theirs.0);
                live.ip = theirs.1;
            }
            Some(mode) if mode.starts_with("container:") => {
                let other = &mode["container:".len()..];
                let theirs = self
                    .live
                    .iter()
                    .rev()
                    .find(|l| l.name == other)
                    .and_then(|l| l.netns.clone().map(|ns| (ns, l.ip)))
                    .ok_or_else(|| {
                        svc_err(
                            &service,
                            format!("network_mode {mode}: no such container in this project"),
                        )
                    })?;
                live.netns = Some(theirs.0);
                live.ip = theirs.1;
            }
            _ => {
                let ns = format!("berth-{}", live.id);
                let path = berth_network::create_netns(&ns).map_err(|e| svc_err(&service, e))?;
                // Before any interface is up: no link-local address ever
                // appears, so glibc never sends AAAA queries.
                berth_network::disable_ipv6(&path).map_err(|e| svc_err(&service, e))?;
                live.netns = Some(path.clone());
                live.owns_netns = true;
                let wanted = service_networks(project, &live.svc, &service);
                // The default route goes out of the first network that has one;
                // a container only on internal networks has none.
                let first_routed = wanted.iter().position(|w| !w.internal);
                for (n, w) in wanted.iter().enumerate() {
                    let ip = match &w.ipv4_address {
                        Some(a) => Some(a.parse().map_err(|_| {
                            svc_err(
                                &service,
                                format!("networks.{}.ipv4_address: invalid address {a:?}", w.key),
                            )
                        })?),
                        None => None,
                    };
                    let ep = self.engine.networks.attach(
                        &w.network,
                        &live.id,
                        &path,
                        ip,
                        &AttachOptions {
                            ifname: format!("eth{n}"),
                            default_route: Some(n) == first_routed,
                        },
                    )?;
                    live.ip.get_or_insert(IpAddr::V4(ep.ip));
                    live.attachments.push(Attachment {
                        network: w.network.clone(),
                        ip: IpAddr::V4(ep.ip),
                        aliases: w.aliases.clone(),
                    });
                }
            }
        }

        let dir = live.files(&self.engine.state);
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let dns: Vec<IpAddr> = string_list(live.svc.extra.get("dns"))
            .iter()
            .map(|d| {
                d.parse()
                    .map_err(|_| svc_err(&service, format!("dns: invalid address {d:?}")))
            })
            .collect::<Result<_>>()?;
        let base = if dns.is_empty() {
            ResolvConf::for_containers()
                .map_err(|e| svc_err(&service, format!("cannot prepare resolv.conf: {e}")))?
        } else {
            // Explicit servers: the host's may all be unusable, and need not be read.
            ResolvConf::for_containers().unwrap_or_default()
        };
        let resolv = base
            .with_overrides(
                &dns,
                &string_list(live.svc.extra.get("dns_search")),
                &string_list(live.svc.extra.get("dns_opt")),
            )
            .map_err(|e| svc_err(&service, e))?
            .render(None);
        fs::write(dir.join("resolv.conf"), &resolv).map_err(io_err(&dir))?;
        fs::write(dir.join("hosts"), self.hosts_for(live)).map_err(io_err(&dir))?;
        live.mounts = vec![
            bind(dir.join("hosts"), "/etc/hosts", false),
            bind(dir.join("resolv.conf"), "/etc/resolv.conf", false),
        ];
        self.project_files(live, &dir)?;
        self.volumes(project, live, inherit)?;
        for t in string_list(live.svc.extra.get("tmpfs")) {
            let (target, size, mode) = unsupported::tmpfs_options(&t)
                .map_err(|e| svc_err(&service, format!("tmpfs: {e}")))?;
            live.mounts.push(MountSpec {
                target,
                kind: MountKind::Tmpfs { size, mode },
            });
        }
        Ok(())
    }

    /// Its secrets and configs: copies with their owner and mode in the
    /// container's own directory (gone with it), mounted read-only.
    fn project_files(&self, live: &mut Live, dir: &Path) -> Result<()> {
        use std::io::Write;
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let Some(files) = self.files.get(&live.service) else {
            return Ok(());
        };
        let store = dir.join("files");
        fs::create_dir_all(&store).map_err(io_err(&store))?;
        for (i, f) in files.iter().enumerate() {
            let path = store.join(format!("{i}"));
            let _ = fs::remove_file(&path);
            let mut out = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(io_err(&path))?;
            out.write_all(&f.content).map_err(io_err(&path))?;
            std::os::unix::fs::fchown(&out, Some(f.uid), Some(f.gid)).map_err(io_err(&path))?;
            out.set_permissions(fs::Permissions::from_mode(f.mode))
                .map_err(io_err(&path))?;
            live.mounts.push(bind(path, &f.target, true));
        }
        Ok(())
    }

    /// The hosts file of `live`: itself, then on every network it shares
    /// with others their container names, service names (the service's
    /// current container) and aliases, then `links` and `extra_hosts`.
    fn hosts_for(&self, live: &Live) -> String {
        let mut names: BTreeMap<String, IpAddr> = BTreeMap::new();
        // `network_mode: service:x` shares x's namespace and so its networks.
        let own: Vec<&Attachment> = match &live.netns {
            Some(ns) => self
                .live
                .iter()
                .filter(|l| l.netns.as_ref() == Some(ns))
                .flat_map(|l| &l.attachments)
                .chain(&live.attachments)
                .collect(),
            None => Vec::new(),
        };
        for mine in &own {
            for other in &self.live {
                for theirs in other
                    .attachments
                    .iter()
                    .filter(|a| a.network == mine.network)
                {
                    names.entry(other.name.clone()).or_insert(theirs.ip);
                    for alias in &theirs.aliases {
                        names.entry(alias.clone()).or_insert(theirs.ip);
                    }
                }
            }
            for s in self.live.iter().map(|l| &l.service) {
                let current = self.current(s).and_then(|l| {
                    l.attachments
                        .iter()
                        .find(|a| a.network == mine.network)
                        .map(|a| a.ip)
                });
                if let Some(ip) = current {
                    names.insert(s.clone(), ip);
                }
            }
        }
        // v1 `links: [db, "db:database"]`: the alias names db's container.
        for link in &live.svc.links {
            let (target, alias) = link.split_once(':').unwrap_or((link, link));
            if let Some(ip) = self.current(target).and_then(|l| l.ip) {
                names.insert(alias.to_string(), ip);
            }
        }
        let hostname = live
            .svc
            .hostname
            .clone()
            .unwrap_or_else(|| live.service.clone());
        names.remove(&hostname);
        let mut text =
            berth_network::render_hosts(&hostname, live.ip, &names).unwrap_or_else(|_| {
                // A name that is not a valid host name: leave the others
                // out rather than refuse to run.
                berth_network::render_hosts("localhost", live.ip, &BTreeMap::new())
                    .unwrap_or_default()
            });
        for entry in string_list(live.svc.extra.get("extra_hosts")) {
            if let Some((host, ip)) = entry.split_once('=') {
                text.push_str(&format!("{ip}\t{host}\n"));
            }
        }
        text
    }

    /// Create the networks the project's services use; external ones must
    /// exist already.
    fn ensure_networks(&mut self, project: &Project) -> Result<()> {
        let mut keys: Vec<&str> = Vec::new();
        for svc in project.services.values() {
            for (k, _) in effective_networks(svc) {
                if !keys.contains(&k) {
                    keys.push(k);
                }
            }
        }
        for key in keys {
            let decl = project.networks.get(key);
            let name = network_name(project, key);
            if self.networks.contains(&name) {
                continue;
            }
            if decl
                .and_then(|d| d.extra.get("enable_ipv6"))
                .and_then(|v| v.as_bool())
                == Some(true)
            {
                return Err(EngineError::Unsupported(format!(
                    "networks.{key}.enable_ipv6: IPv6 networks are not supported by the embedded engine yet"
                )));
            }
            if decl.and_then(|d| d.external) == Some(true) {
                if self.engine.networks.get(&name)?.is_none() {
                    return Err(svc_err(
                        "-",
                        format!("network {name} is declared as external, but could not be found"),
                    ));
                }
                continue;
            }
            // compose's `ipam: {config: [{subnet: …}]}`, the first entry.
            let subnet = decl
                .and_then(|d| d.extra.get("ipam"))
                .and_then(|i| i.get("config"))
                .and_then(|c| c.get(0))
                .and_then(|c| c.get("subnet"))
                .and_then(|s| s.as_str())
                .map(|s| {
                    s.parse::<berth_network::Subnet>().map_err(|e| {
                        svc_err("-", format!("networks.{key}.ipam.config[0].subnet: {e}"))
                    })
                })
                .transpose()?;
            let options = NetworkOptions {
                internal: decl.and_then(|d| d.internal) == Some(true),
                subnet,
            };
            self.engine.networks.create(&name, &options)?;
            self.networks.push(name);
        }
        Ok(())
    }

    /// Rewrite every container's hosts file in place (the same inode, so
    /// the bind mount sees it) where it changed.
    fn refresh_hosts(&self) {
        for l in &self.live {
            let path = l.files(&self.engine.state).join("hosts");
            let text = self.hosts_for(l);
            if fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
                let _ = fs::write(&path, text);
            }
        }
    }

    fn volumes(
        &self,
        project: &Project,
        live: &mut Live,
        inherit: Option<Vec<AnonymousVolume>>,
    ) -> Result<()> {
        let service = live.service.clone();
        let mut out: Vec<MountSpec> = Vec::new();
        for vf in live.svc.volumes_from() {
            let (theirs, read_only) = match vf {
                VolumesFrom::Service { name, read_only } => (
                    self.current(&name)
                        .ok_or_else(|| svc_err(&service, format!("volumes_from {name}: it has no container")))?,
                    read_only,
                ),
                VolumesFrom::Container { name, read_only } => (
                    self.live
                        .iter()
                        .rev()
                        .find(|l| l.name == name)
                        .ok_or_else(|| svc_err(&service, format!("volumes_from container:{name}: no such container in this project")))?,
                    read_only,
                ),
            };
            for m in &theirs.volume_mounts {
                if let MountKind::Bind {
                    source,
                    read_only: ro,
                } = &m.kind
                {
                    out.push(bind(source.clone(), &m.target, *ro || read_only));
                }
            }
        }
        let inherited = inherit.unwrap_or_default();
        let anonymous = |target: &str, live: &mut Live| -> PathBuf {
            let dir = inherited
                .iter()
                .find(|a| a.target == target)
                .map(|a| a.dir.clone())
                .unwrap_or_else(|| self.anonymous_dir(&live.id, target));
            live.anonymous.push(AnonymousVolume {
                target: target.to_string(),
                dir: dir.clone(),
            });
            dir.join("_data")
        };
        for m in &live.svc.volumes.clone() {
            match m.kind.as_str() {
                "bind" => {
                    let src = PathBuf::from(m.source.clone().unwrap_or_default());
                    if !src.exists() {
                        fs::create_dir_all(&src).map_err(io_err(&src))?;
                    }
                    out.push(bind(src, &m.target, m.read_only == Some(true)));
                }
                "tmpfs" => out.push(MountSpec {
                    target: m.target.clone(),
                    kind: MountKind::Tmpfs {
                        size: tmpfs_size(m),
                        mode: None,
                    },
                }),
                _ => {
                    let data = match &m.source {
                        Some(named) => {
                            let decl = project.volumes.get(named);
                            let full = decl
                                .and_then(|v| v.name.clone())
                                .unwrap_or_else(|| format!("{}_{named}", project.name));
                            let dir = volume_dir(&self.engine.state, &full)
                                .map_err(|e| svc_err(&service, format!("volumes.{named}: {e}")))?;
                            if decl.and_then(|v| v.external) == Some(true) && !dir.is_dir() {
                                return Err(svc_err(
                                    &service,
                                    format!("volume {full} is declared as external, but could not be found"),
                                ));
                            }
                            live.named_volumes.push(full.clone());
                            dir.join("_data")
                        }
                        None => anonymous(&m.target, live),
                    };
                    // `volume: {nocopy: true}`: a new volume starts empty
                    // instead of with the image's files at its target.
                    let nocopy = m
                        .extra
                        .get("volume")
                        .and_then(|v| v.get("nocopy"))
                        .and_then(|v| v.as_bool())
                        == Some(true);
                    if nocopy {
                        fs::create_dir_all(&data).map_err(io_err(&data))?;
                    } else {
                        self.prepare_volume(&data, &live.layers, &m.target, &service)?;
                    }
                    out.push(bind(data, &m.target, m.read_only == Some(true)));
                }
            }
        }
        // The image's VOLUMEs not covered above become anonymous volumes.
        let image_volumes: Vec<String> = live
            .config
            .volumes
            .iter()
            .flat_map(|v| v.keys().cloned())
            .collect();
        for target in image_volumes {
            if out.iter().any(|m| m.target == target) {
                continue;
            }
            let data = anonymous(&target, live);
            self.prepare_volume(&data, &live.layers, &target, &service)?;
            out.push(bind(data, &target, false));
        }
        live.volume_mounts = out
            .iter()
            .filter(|m| matches!(m.kind, MountKind::Bind { .. }))
            .cloned()
            .collect();
        live.mounts.extend(out);
        Ok(())
    }

    fn anonymous_dir(&self, id: &str, target: &str) -> PathBuf {
        let digest = berth_oci::Digest::of(format!("{id}\0{target}").as_bytes());
        self.engine
            .state
            .join("volumes")
            .join(format!("anon-{}", &digest.hex()[..24]))
    }

    /// A new volume is filled from the image's content at its mount point.
    fn prepare_volume(
        &self,
        dir: &Path,
        layers: &[PathBuf],
        target: &str,
        service: &str,
    ) -> Result<()> {
        if dir.is_dir() {
            return Ok(());
        }
        // Populate beside it and rename: a crash never leaves a half-filled
        // volume that the next start would take as complete.
        let parent = dir.parent().unwrap_or(dir);
        fs::create_dir_all(parent).map_err(io_err(parent))?;
        let tmp = parent.join("_data.tmp");
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
        berth_sandbox::populate(layers, target, &tmp)
            .map_err(|e| svc_err(service, format!("populating the volume at {target}: {e}")))?;
        fs::rename(&tmp, dir).map_err(io_err(dir))
    }

    /// Create and start the container process of `live`.
    fn spawn(&self, live: &mut Live) -> Result<()> {
        let mut spec = ContainerSpec {
            id: live.id.clone(),
            image: live.config.clone(),
            ..ContainerSpec::default()
        };
        spec.entrypoint = live.svc.entrypoint.clone();
        spec.cmd = live.svc.command.clone();
        spec.env = runtime_env(live.runtime.as_ref(), &live.config, &live.svc);
        spec.env.extend(
            live.svc
                .environment
                .iter()
                .filter(|(k, _)| !(live.runtime.is_some() && k.as_str() == "PATH"))
                .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}"))),
        );
        spec.working_dir = live.svc.working_dir.clone();
        spec.user = live.svc.user.clone();
        spec.hostname = Some(
            live.svc
                .hostname
                .clone()
                .unwrap_or_else(|| live.service.clone()),
        );
        self.shared_namespaces(live, &mut spec)
            .map_err(|e| svc_err(&live.service, e))?;
        spec.mounts = live.mounts.clone();
        if let Some(r) = &live.runtime {
            spec.mounts.push(bind(r.root.clone(), RUNTIME_DIR, true));
            if let Some(cache) = &r.npm_cache {
                spec.mounts.push(bind(cache.clone(), NPM_CACHE_DIR, false));
            }
            if let Some(ca) = &r.ca_bundle {
                spec.mounts.push(bind(ca.clone(), CA_BUNDLE, true));
            }
        }
        spec.read_only_rootfs = live.svc.read_only == Some(true);
        resources::apply(&live.svc, &mut spec).map_err(|e| svc_err(&live.service, e))?;
        spec.init = live.svc.extra.get("init").and_then(|v| v.as_bool()) == Some(true);
        spec.network = match live.svc.network_mode.as_deref() {
            Some("host") => Network::Host,
            Some("none") => Network::None,
            _ => match &live.netns {
                Some(p) => Network::Netns(p.clone()),
                None => Network::None,
            },
        };
        let dir = live.files(&self.engine.state);
        if let Some([i, o, e]) = live.stdio.take() {
            spec.stdin = Stdio::Fd(i);
            spec.stdout = Stdio::Fd(o);
            spec.stderr = Stdio::Fd(e);
        } else {
            if live.output.is_none() {
                live.output = Some(output::OutputTail::open(&dir).map_err(io_err(&dir))?);
                self.logs
                    .configure(&live.name, live.svc.extra.get("logging"));
            }
            let path = dir.join("output");
            if live.svc.extra.get("tty").and_then(|v| v.as_bool()) == Some(true) {
                // `tty: true`: a terminal for all three streams; what the
                // container writes to it goes to the same output file.
                let slave = pty::open(&path).map_err(io_err(&path))?;
                let dup = |fd: &OwnedFd| fd.try_clone().map_err(io_err(&path));
                spec.stdin = Stdio::Fd(dup(&slave)?);
                spec.stdout = Stdio::Fd(dup(&slave)?);
                spec.stderr = Stdio::Fd(slave);
            } else {
                spec.stdout = Stdio::File(path.clone());
                spec.stderr = Stdio::File(path);
                if live.svc.extra.get("stdin_open").and_then(|v| v.as_bool()) == Some(true) {
                    spec.stdin = Stdio::Fd(open_stdin_fifo(&dir)?);
                }
            }
        }
        // Errors name the container as users know it, not its incarnation.
        let named = |e: berth_sandbox::SandboxError| {
            svc_err(&live.service, e.to_string().replace(&live.id, &live.name))
        };
        let mut container = self
            .engine
            .sandbox
            .create(&live.layers, spec)
            .map_err(named)?;
        if let Err(e) = container.start() {
            let _ = container.delete();
            return Err(named(e));
        }
        // post_start: once it runs, before anyone is told it started. A
        // failed hook fails the start (docker compose fails `up` too).
        let hooks = hooks::of(&live.svc, "post_start").map_err(|e| svc_err(&live.service, e))?;
        for hook in &hooks {
            let ran = hooks::run(
                &self.engine.sandbox,
                &live.id,
                hook,
                &dir.join("output"),
                None,
            );
            if let Err(e) = ran {
                let _ = container.delete();
                return Err(svc_err(
                    &live.service,
                    format!("post_start hook: {}", e.replace(&live.id, &live.name)),
                ));
            }
        }
        live.container = Some(container);
        live.exited = None;
        live.started_at = Instant::now();
        live.health = live.check.clone().map(|c| HealthState {
            tracker: health::Tracker::new(c, live.started_at),
            inflight: None,
        });
        self.event(Event::Started {
            container: live.name.clone(),
        });
        Ok(())
    }

    /// `ipc`, `pid`, `uts` and `cgroup`: the namespaces `live` shares.
    /// `service:NAME` and `container:NAME` join the other container's; an
    /// IPC namespace is shareable unless the service says `private`, so
    /// that others can join it (docker's default before 20.10).
    fn shared_namespaces(
        &self,
        live: &Live,
        spec: &mut ContainerSpec,
    ) -> std::result::Result<(), String> {
        let mode = |k: &str| live.svc.extra.get(k).and_then(|v| v.as_str()).unwrap_or("");
        let other = |k: &str, m: &str| -> std::result::Result<Option<String>, String> {
            let found = if let Some(service) = m.strip_prefix("service:") {
                self.current(service).filter(|l| l.running())
            } else if let Some(name) = m.strip_prefix("container:") {
                self.live
                    .iter()
                    .rev()
                    .find(|l| l.name == name && l.running())
            } else {
                return Ok(None);
            };
            found
                .map(|l| Some(l.id.clone()))
                .ok_or_else(|| format!("{k} {m}: no running container to share it with"))
        };
        spec.ipc = match mode("ipc") {
            "private" => Ipc::Private,
            "host" => Ipc::Host,
            m => match other("ipc", m)? {
                Some(id) => Ipc::Container(id),
                None => Ipc::Shareable,
            },
        };
        spec.pid = match mode("pid") {
            "host" => Namespace::Host,
            m => other("pid", m)?.map_or(Namespace::Private, Namespace::Container),
        };
        if mode("uts") == "host" {
            spec.uts = Namespace::Host;
            // The host's name, as with docker: a hostname cannot be set.
            spec.hostname = None;
        }
        spec.cgroup_private = mode("cgroup") == "private";
        Ok(())
    }

    /// Start `live[i]` again in the same namespace, with the same volumes
    /// and ports (restart policies, `Start`, `Restart`).
    fn respawn(&mut self, i: usize) -> Result<()> {
        if let Some(c) = self.live[i].container.take() {
            c.delete().map_err(|e| svc_err(&self.live[i].service, e))?;
        }
        // Out of the list while `spawn` borrows the runtime.
        let mut live = self.live.remove(i);
        let result = self.spawn(&mut live);
        live.restart_at = None;
        live.user_stopped = false;
        live.paused = false;
        self.live.insert(i, live);
        result
    }

    /// A start-first swap of `live[old]`: the new container starts beside
    /// it; once it accepts connections on every published TCP port, the
    /// proxy switches to it, the old one's open connections drain and it is
    /// stopped. If the new one never gets ready, it goes and the old one
    /// keeps serving.
    fn swap(
        &mut self,
        project: &Project,
        images: &BTreeMap<String, ServiceImage>,
        service: &str,
        number: u32,
        old: usize,
        inherit: Option<Vec<AnonymousVolume>>,
    ) -> Result<()> {
        let name = self.live[old].name.clone();
        let inherited: Vec<PathBuf> = inherit
            .as_ref()
            .map(|v| v.iter().map(|a| a.dir.clone()).collect())
            .unwrap_or_default();
        let mut new = self.prepare(project, images, service, number, &name, inherit)?;
        new.proxy = None;
        if let Err(e) = self.spawn(&mut new) {
            self.discard(new, &inherited);
            return Err(e);
        }
        let timeout = ready_timeout(&new.svc);
        // Ready: healthy by its own healthcheck if it has one, else
        // accepting connections on its published ports.
        let ready = if new.check.is_some() {
            let mut events = Vec::new();
            let r = wait_healthy(
                &mut new,
                &self.engine.state.join("sandbox"),
                timeout,
                &self.cancel,
                &mut events,
            );
            for e in events {
                self.event(e);
            }
            r
        } else {
            wait_ready(&mut new, timeout, &self.cancel)
        };
        if let Err(why) = ready {
            self.stop_live(&mut new, Duration::ZERO);
            self.discard(new, &inherited);
            return Err(svc_err(
                service,
                format!("the new container never became ready ({why}); {name} keeps serving"),
            ));
        }
        let proxy = self.live[old].proxy.take();
        let mut old_targets: Vec<Target> = Vec::new();
        if let (Some(p), Some(ns)) = (&proxy, &new.netns) {
            match p.switch_netns(ns) {
                Ok(t) => old_targets = t,
                Err(e) => {
                    self.live[old].proxy = proxy;
                    self.stop_live(&mut new, Duration::ZERO);
                    self.discard(new, &inherited);
                    return Err(svc_err(service, format!("switching the ports: {e}")));
                }
            }
        }
        new.proxy = proxy;
        self.live.push(new);
        self.refresh_hosts();
        let grace = self.stop_timeout(old, None);
        if let Some(p) = &self.live.last().and_then(|l| l.proxy.as_ref()) {
            // HTTP connections leave at a request boundary (the proxy ends
            // each after its response in flight); what cannot (plain TCP,
            // websockets) is cut at the end of the grace period, and said.
            p.drain(&old_targets, grace);
            let cut = p.cut_connections(&old_targets);
            if cut.total() > 0 {
                self.notes.borrow_mut().push(format!(
                    "{name}: {cut} at the end of the {}s grace period, closed",
                    grace.as_secs_f64()
                ));
            }
        }
        let mut gone = self.live.remove(old);
        if let Some(note) = signal_stop(&self.engine, &gone) {
            self.notes.borrow_mut().push(note);
        }
        gone.restart_at = None;
        self.retiring.push(Retiring {
            live: gone,
            deadline: Instant::now() + grace,
            keep: inherited,
        });
        Ok(())
    }

    fn stop_timeout(&self, i: usize, override_: Option<Duration>) -> Duration {
        override_
            .or_else(|| self.live[i].grace())
            .unwrap_or(Duration::from_secs(10))
    }

    /// Stop `live[i]` (its stop signal, then SIGKILL after `timeout`; the
    /// service's `stop_grace_period` when `None`).
    fn stop(&mut self, i: usize, timeout: Option<Duration>) {
        let t = self.stop_timeout(i, timeout);
        let mut live = self.live.remove(i);
        self.stop_live(&mut live, t);
        self.live.insert(i, live);
    }

    fn stop_live(&self, live: &mut Live, timeout: Duration) {
        live.restart_at = None;
        let sig = live.stop_signal();
        if live.container.is_none() || live.exited.is_some() {
            return;
        }
        self.pre_stop(live);
        let Some(c) = live.container.as_mut() else {
            return;
        };
        // The kernel drops signals a namespace's PID 1 has no handler for,
        // so one it does not catch would only make us wait out the timeout
        // (docker does). Kill it at once instead.
        let sig = if signal::catches(c.pid(), sig) {
            sig
        } else {
            signal::SIGKILL
        };
        let _ = c.kill(sig);
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Ok(Some(s)) = c.try_wait() {
                break Some(s);
            }
            if Instant::now() >= deadline {
                self.note_killed(&live.name, c.pid(), sig, timeout);
                let _ = c.kill(signal::SIGKILL);
                break c.wait().ok();
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        if let Some(s) = status {
            live.exited = Some(s);
            self.event(Event::Exited {
                container: live.name.clone(),
                id: live.id.clone(),
                code: s.code(),
            });
        }
    }

    /// `live`'s `pre_stop` hooks, before its stop signal. A hook that fails
    /// or outlives the service's stop grace period (10 s by default) is
    /// noted; the stop goes on.
    fn pre_stop(&self, live: &Live) {
        if let Err(e) = run_pre_stop(&self.engine.sandbox, &self.engine.state, live) {
            self.notes
                .borrow_mut()
                .push(format!("{}: pre_stop hook: {e}", live.name));
        }
    }

    /// Remove what `live` made, except the anonymous volumes in `keep`
    /// (carried over to its successor); the rest are released.
    fn discard(&mut self, mut live: Live, keep: &[PathBuf]) {
        if let Some(out) = live.output.as_mut() {
            // All of it: read until nothing is left.
            loop {
                let lines = out.read_lines(true);
                if lines.is_empty() {
                    break;
                }
                self.logs.lines(&live.name, &lines);
            }
        }
        if live.container.is_some() {
            self.event(Event::Removed {
                container: live.name.clone(),
            });
        }
        if let Some(p) = live.proxy.take() {
            p.close(Duration::ZERO);
        }
        if let Some(c) = live.container.take() {
            let _ = c.delete();
        }
        if live.owns_netns {
            for a in &live.attachments {
                let _ = self.engine.networks.detach(&a.network, &live.id);
            }
            let _ = berth_network::delete_netns(&format!("berth-{}", live.id));
        }
        let _ = fs::remove_dir_all(live.files(&self.engine.state));
        for a in live.anonymous {
            if !keep.contains(&a.dir) {
                self.released.push(a.dir);
            }
        }
    }

    /// Remove released anonymous volumes that no container mounts any more.
    fn release_volumes(&mut self) {
        let live = &self.live;
        let retiring = self.retiring.iter().map(|r| &r.live);
        let all: Vec<&Live> = live.iter().chain(retiring).collect();
        self.released.retain(|dir| {
            let used = all.iter().any(|l| {
                l.mounts.iter().any(|m| match &m.kind {
                    MountKind::Bind { source, .. } => source.starts_with(dir),
                    _ => false,
                })
            });
            if !used {
                let _ = fs::remove_dir_all(dir);
            }
            used
        });
    }

    /// Collect a finished probe of `live[i]`, or start one when it is due.
    fn tick_health(&mut self, i: usize, now: Instant) -> Option<Event> {
        let sandbox_dir = self.engine.state.join("sandbox");
        tick_health(&mut self.live[i], &sandbox_dir, now)
    }

    /// `depends_on: {x: {condition: service_healthy}}`: wait for x's
    /// current container to be healthy before `service` is created.
    fn wait_dependencies(&mut self, project: &Project, service: &str) -> Result<()> {
        let Some(svc) = project.services.get(service) else {
            return Ok(());
        };
        let sandbox_dir = self.engine.state.join("sandbox");
        for (dep, d) in &svc.depends_on {
            if d.condition != "service_healthy" {
                continue;
            }
            let Some(i) = self
                .live
                .iter()
                .rposition(|l| &l.service == dep && l.running())
            else {
                if d.required {
                    return Err(svc_err(service, format!("dependency {dep} is not running")));
                }
                continue;
            };
            if self.live[i].check.is_none() {
                return Err(svc_err(
                    service,
                    format!("depends on {dep} being healthy, but {dep} has no healthcheck"),
                ));
            }
            let mut events = Vec::new();
            let result = wait_healthy(
                &mut self.live[i],
                &sandbox_dir,
                HEALTHY_TIMEOUT,
                &self.cancel,
                &mut events,
            );
            for e in events {
                self.event(e);
            }
            result.map_err(|why| svc_err(service, format!("dependency {dep} failed: {why}")))?;
        }
        Ok(())
    }

    /// `run`: a one-off container of `service`, started now. Returns its name.
    pub fn run_one_off(
        &mut self,
        project: &Project,
        images: &BTreeMap<String, ServiceImage>,
        service: &str,
        run: OneOff,
    ) -> Result<String> {
        unsupported::check(project).map_err(EngineError::Unsupported)?;
        self.ensure_networks(project)?;
        let mut project = project.clone();
        let svc = project
            .services
            .get_mut(service)
            .ok_or_else(|| svc_err(service, "no such service"))?;
        if run.entrypoint.is_some() {
            svc.entrypoint = run.entrypoint;
            svc.command = None;
        }
        if run.command.is_some() {
            svc.command = run.command;
        }
        for e in &run.env {
            let (k, v) = e.split_once('=').unwrap_or((e.as_str(), ""));
            svc.environment.insert(k.to_string(), Some(v.to_string()));
        }
        if run.user.is_some() {
            svc.user = run.user;
        }
        if run.workdir.is_some() {
            svc.working_dir = run.workdir;
        }
        if !run.service_ports {
            svc.ports.clear();
        }
        svc.ports.extend(run.ports);
        // One-offs run once: restart policies and healthchecks are the
        // service's long-running containers' business.
        svc.restart = None;
        svc.container_name = None;
        let name = run.name.unwrap_or_else(|| {
            format!(
                "{}-{service}-run-{}",
                project.name,
                &incarnation_id("run")[4..16]
            )
        });
        if self.live.iter().any(|l| l.name == name) {
            return Err(svc_err(
                service,
                format!("a container named {name} already exists"),
            ));
        }
        let mut live = self.prepare(&project, images, service, 0, &name, None)?;
        live.one_off = true;
        live.check = None;
        live.stdio = run.stdio;
        let proxy = match self.bind_ports(&live) {
            Ok(p) => p,
            Err(e) => {
                self.discard(live, &[]);
                return Err(e);
            }
        };
        live.proxy = Some(proxy);
        if let Err(e) = self.spawn(&mut live) {
            self.discard(live, &[]);
            return Err(e);
        }
        self.live.push(live);
        self.refresh_hosts();
        Ok(name)
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

    /// `stop`: the stop signal, SIGKILL after `timeout` (each container's
    /// `stop_grace_period` when `None`). Stopped containers stay, exited,
    /// and restart policies leave them alone until `start` or `up`.
    pub fn stop_containers(&mut self, names: &[String], timeout: Option<Duration>) {
        for name in names {
            if let Some(i) = self.live.iter().position(|l| &l.name == name) {
                self.live[i].user_stopped = true;
                self.stop(i, timeout);
            }
        }
    }

    /// `start`: start stopped containers again, in the same namespace, with
    /// the same volumes and ports. Running ones are left alone.
    pub fn start_containers(&mut self, names: &[String]) -> Result<Vec<String>> {
        let mut started = Vec::new();
        for name in names {
            if let Some(i) = self.live.iter().position(|l| &l.name == name) {
                if !self.live[i].running() {
                    self.respawn(i)?;
                    started.push(name.clone());
                }
            }
        }
        self.refresh_hosts();
        Ok(started)
    }

    /// `kill -s`: send `signal` to each running container's PID 1. SIGKILL
    /// and SIGTERM count as a stop for restart policies, as in docker.
    pub fn kill_containers(&mut self, names: &[String], signal: i32) -> Result<()> {
        for name in names {
            if let Some(l) = self.live.iter_mut().find(|l| &l.name == name) {
                if let (Some(c), true) = (&l.container, l.exited.is_none()) {
                    if signal == signal::SIGKILL || signal == signal::SIGTERM {
                        l.user_stopped = true;
                    }
                    c.kill(signal).map_err(|e| svc_err(&l.service, e))?;
                    self.pending.borrow_mut().push(Event::Killed {
                        container: name.clone(),
                        signal,
                    });
                }
            }
        }
        Ok(())
    }

    /// `pause` / `unpause`: freeze or thaw every process of the running
    /// containers (the freezer cgroup).
    pub fn pause_containers(&mut self, names: &[String], pause: bool) -> Result<()> {
        for name in names {
            let Some(l) = self.live.iter_mut().find(|l| &l.name == name) else {
                continue;
            };
            if !l.running() || l.paused == pause {
                continue;
            }
            let result = if pause {
                self.engine.sandbox.pause(&l.id)
            } else {
                self.engine.sandbox.resume(&l.id)
            };
            result.map_err(|e| svc_err(&l.service, e.to_string().replace(&l.id, &l.name)))?;
            l.paused = pause;
        }
        Ok(())
    }

    /// `rm`: remove stopped containers (running ones are an error unless
    /// `force`, which stops them first); their anonymous volumes go when
    /// nothing mounts them any more.
    pub fn remove_containers(&mut self, names: &[String], force: bool) -> Result<Vec<String>> {
        let mut removed = Vec::new();
        for name in names {
            let Some(i) = self.live.iter().position(|l| &l.name == name) else {
                continue;
            };
            if self.live[i].running() {
                if !force {
                    return Err(svc_err(
                        &self.live[i].service,
                        format!("container {name} is running: stop it first, or use -f"),
                    ));
                }
                self.live[i].user_stopped = true;
                self.stop(i, None);
            }
            let old = self.live.remove(i);
            self.discard(old, &[]);
            removed.push(name.clone());
        }
        self.release_volumes();
        self.refresh_hosts();
        Ok(removed)
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

    /// Reap exits and apply restart policies; returns what happened.
    pub fn poll(&mut self) -> Vec<Event> {
        self.pump_output();
        let mut events = std::mem::take(&mut *self.pending.borrow_mut());
        let now = Instant::now();
        let mut i = 0;
        while i < self.retiring.len() {
            let r = &mut self.retiring[i];
            let exited = match r.live.container.as_mut() {
                Some(c) => {
                    if now >= r.deadline {
                        let _ = c.kill(signal::SIGKILL);
                    }
                    matches!(c.try_wait(), Ok(Some(_)))
                }
                None => true,
            };
            if exited {
                let r = self.retiring.remove(i);
                self.discard(r.live, &r.keep);
                self.release_volumes();
            } else {
                i += 1;
            }
        }
        for i in 0..self.live.len() {
            let l = &mut self.live[i];
            if l.exited.is_none() {
                let Some(c) = l.container.as_mut() else {
                    continue;
                };
                if let Ok(Some(status)) = c.try_wait() {
                    l.exited = Some(status);
                    events.push(Event::Exited {
                        container: l.name.clone(),
                        id: l.id.clone(),
                        code: status.code(),
                    });
                    if !l.user_stopped && l.restart.restarts(status.code(), l.restarts) {
                        let wait = restart::backoff(l.backoff, now - l.started_at);
                        l.backoff = Some(wait);
                        l.restart_at = Some(now + wait);
                    }
                }
            }
            if let Some(e) = self.tick_health(i, now) {
                events.push(e);
            }
            if self.live[i].restart_at.is_some_and(|t| t <= now) {
                let result = self.respawn(i);
                let l = &mut self.live[i];
                match result {
                    Ok(()) => {
                        l.restarts += 1;
                        events.push(Event::Restarted {
                            container: l.name.clone(),
                            restarts: l.restarts,
                        });
                    }
                    Err(e) => events.push(Event::RestartFailed {
                        container: l.name.clone(),
                        message: e.to_string(),
                    }),
                }
            }
        }
        events
    }

    /// True while some container runs or waits to be restarted.
    pub fn any_running(&self) -> bool {
        self.live
            .iter()
            .any(|l| l.running() || l.restart_at.is_some())
    }

    /// Stop (each container's stop signal, then SIGKILL after `timeout`)
    /// and remove everything: containers, namespaces, anonymous volumes, the
    /// network. Named volumes stay.
    /// Stop and remove everything; `timeout` overrides each service's
    /// `stop_grace_period` (default 10 s), as `down -t` does.
    pub fn down(self, timeout: Option<Duration>) -> Result<()> {
        self.down_with_notes(timeout).0
    }

    /// [`down`](Self::down), and what the user should hear about it (see
    /// [`take_notes`](Self::take_notes)).
    pub fn down_with_notes(mut self, timeout: Option<Duration>) -> (Result<()>, Vec<String>) {
        let result = self.stop_and_remove(timeout);
        (result, self.take_notes())
    }

    fn stop_and_remove(&mut self, timeout: Option<Duration>) -> Result<()> {
        // Containers on their way out go with the rest.
        for r in std::mem::take(&mut self.retiring) {
            self.live.push(r.live);
        }
        for l in &mut self.live {
            l.restart_at = None;
            if let Some(p) = l.proxy.take() {
                p.close(Duration::ZERO);
            }
        }
        // Dependants stop before what they depend on, as with docker
        // compose; the containers of one wave stop in parallel, so a
        // project of independent services takes one grace period, not one
        // per service.
        for wave in stop_waves(&self.live) {
            for &i in &wave {
                if self.live[i].running() {
                    self.pre_stop(&self.live[i]);
                }
            }
            for &i in &wave {
                if let (Some(c), None) = (&self.live[i].container, &self.live[i].exited) {
                    let _ = c.kill(effective_stop_signal(c.pid(), self.live[i].stop_signal()));
                }
            }
            let started = Instant::now();
            loop {
                for &i in &wave {
                    let l = &mut self.live[i];
                    if let (Some(c), None) = (l.container.as_mut(), l.exited) {
                        if let Ok(Some(s)) = c.try_wait() {
                            l.exited = Some(s);
                        }
                    }
                }
                if !wave.iter().any(|&i| self.live[i].running()) {
                    break;
                }
                for &i in &wave {
                    let l = &mut self.live[i];
                    let grace = timeout
                        .or_else(|| l.grace())
                        .unwrap_or(Duration::from_secs(10));
                    if !l.running() || started.elapsed() < grace {
                        continue;
                    }
                    let sig = l.stop_signal();
                    if let Some(c) = l.container.as_mut() {
                        let note = killed_note(&l.name, c.pid(), sig, grace);
                        self.notes.borrow_mut().push(note);
                        let _ = c.kill(signal::SIGKILL);
                        if let Ok(s) = c.wait() {
                            l.exited = Some(s);
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let mut first_error = None;
        while let Some(mut l) = self.live.pop() {
            if let Some(c) = l.container.take() {
                if let Err(e) = c.delete() {
                    first_error.get_or_insert(svc_err(&l.service, e));
                }
            }
            self.discard(l, &[]);
        }
        self.release_volumes();
        for network in std::mem::take(&mut self.networks) {
            if let Err(e) = self.engine.networks.remove(&network) {
                first_error.get_or_insert(EngineError::Network(e));
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// What a project's runtime made on the host: sandbox ids (each with its
/// namespace `berth-<id>`), the networks it created, its anonymous volumes.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Footprint {
    pub containers: Vec<String>,
    pub networks: Vec<String>,
    pub volumes: Vec<PathBuf>,
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
    /// The digest of the image it runs (`+ runtime` for an `x-runtime`).
    pub image: String,
}

/// Raise this process's open-files limit to its hard limit (a supervisor's
/// port proxies hold 2 to 6 fds per relayed connection); the new soft limit.
pub fn raise_fd_limit() -> std::result::Result<u64, berth_proxy::ProxyError> {
    berth_proxy::raise_fd_limit().map(|l| l.soft)
}

/// `stdin_open: true`: the container's stdin stays open, as docker keeps a
/// pipe to it: a FIFO in the container's directory, handed over opened for
/// reading and writing, so the container holds a writer itself and a read
/// waits instead of seeing end of file, whatever happens to the supervisor.
fn open_stdin_fifo(dir: &Path) -> Result<OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join("stdin");
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|e| io_err(&path)(std::io::Error::other(e)))?;
    // SAFETY: mkfifo on a valid C string.
    if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::AlreadyExists {
            return Err(io_err(&path)(e));
        }
    }
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(&path)
        .map_err(io_err(&path))?;
    Ok(OwnedFd::from(f))
}

/// Where named volume `name` lives: `<state>/volumes/<name>`. The loader
/// already refuses names that are not docker object names; this is the
/// store's own guard, so no name can ever reach outside `volumes/` (a
/// `down -v` would delete whatever it names).
pub fn volume_dir(state: &Path, name: &str) -> std::result::Result<PathBuf, String> {
    let single = !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\0'])
        && Path::new(name).components().count() == 1;
    if !single {
        return Err(format!(
            "volume name {name:?} is not a single path component"
        ));
    }
    Ok(state.join("volumes").join(name))
}

/// The signal that stops PID 1 `pid`: `wanted`, or SIGKILL when it has no
/// handler for it (the kernel drops such signals to a namespace's PID 1, so
/// sending it would only wait out the grace period, as docker does).
fn effective_stop_signal(pid: i32, wanted: i32) -> i32 {
    if signal::catches(pid, wanted) {
        wanted
    } else {
        signal::SIGKILL
    }
}

/// One line for a container that outlived its grace period: it was
/// killed, and what berth can see of why.
fn killed_note(name: &str, pid: i32, sig: i32, grace: Duration) -> String {
    format!(
        "{name} was still running {}s after {} and was killed: {}",
        grace.as_secs_f64(),
        signal::name_of(sig),
        signal::why_still_running(pid, sig)
    )
}

/// The order `down` stops containers in: waves of indexes into `live`, each
/// wave holding the containers no remaining container depends on
/// (`depends_on`, `volumes_from`, `network_mode`, `ipc` and `pid: service:`).
fn stop_waves(live: &[Live]) -> Vec<Vec<usize>> {
    let deps = |l: &Live| -> Vec<String> {
        let mut d: Vec<String> = l.svc.depends_on.keys().cloned().collect();
        for vf in l.svc.volumes_from() {
            if let VolumesFrom::Service { name, .. } = vf {
                d.push(name);
            }
        }
        if let Some(other) = l
            .svc
            .network_mode
            .as_deref()
            .and_then(|m| m.strip_prefix("service:"))
        {
            d.push(other.to_string());
        }
        // A shared PID or IPC namespace: its guests stop first.
        for k in ["ipc", "pid"] {
            if let Some(other) = l
                .svc
                .extra
                .get(k)
                .and_then(|v| v.as_str())
                .and_then(|m| m.strip_prefix("service:"))
            {
                d.push(other.to_string());
            }
        }
        d
    };
    let mut left: Vec<usize> = (0..live.len()).collect();
    let mut waves = Vec::new();
    while !left.is_empty() {
        let needed: Vec<String> = left.iter().flat_map(|&i| deps(&live[i])).collect();
        let (wave, rest): (Vec<usize>, Vec<usize>) = left
            .iter()
            .partition(|&&i| !needed.contains(&live[i].service));
        // A cycle (refused at load, but never loop forever): stop the rest together.
        if wave.is_empty() {
            waves.push(rest);
            break;
        }
        waves.push(wave);
        left = rest;
    }
    waves
}

/// Send `live` its stop signal. The kernel drops signals a namespace's
/// PID 1 has no handler for, so one it does not catch would only make us
/// wait out the timeout (docker does): then it gets SIGKILL at once.
/// Its `pre_stop` hooks run first; what went wrong with them is returned
/// as a note.
fn signal_stop(engine: &Engine, live: &Live) -> Option<String> {
    let note = if live.running() {
        run_pre_stop(&engine.sandbox, &engine.state, live)
            .err()
            .map(|e| format!("{}: pre_stop hook: {e}", live.name))
    } else {
        None
    };
    if let Some(c) = &live.container {
        let sig = live.stop_signal();
        let sig = if signal::catches(c.pid(), sig) {
            sig
        } else {
            signal::SIGKILL
        };
        let _ = c.kill(sig);
    }
    note
}

/// Run `live`'s `pre_stop` hooks in order, each killed if it outlives the
/// service's stop grace period (10 s by default): a stop must end.
fn run_pre_stop(sandbox: &Sandbox, state: &Path, live: &Live) -> std::result::Result<(), String> {
    let hooks = hooks::of(&live.svc, "pre_stop")?;
    if hooks.is_empty() {
        return Ok(());
    }
    let limit = live.grace().unwrap_or(Duration::from_secs(10));
    let output = live.files(state).join("output");
    for hook in &hooks {
        hooks::run(sandbox, &live.id, hook, &output, Some(limit))
            .map_err(|e| e.replace(&live.id, &live.name))?;
    }
    Ok(())
}

/// The environment a runtime brings: its `bin` first on `PATH` (ahead of
/// the image's, or the user's own `PATH`), the shared npm cache and the CA
/// bundle. The service's own settings for the latter win.
fn runtime_env(
    runtime: Option<&RuntimeMount>,
    config: &ContainerConfig,
    svc: &Service,
) -> Vec<String> {
    let Some(r) = runtime else {
        return Vec::new();
    };
    let path = svc
        .environment
        .get("PATH")
        .cloned()
        .flatten()
        .or_else(|| {
            config
                .env
                .iter()
                .flatten()
                .find_map(|e| e.strip_prefix("PATH=").map(str::to_string))
        })
        .unwrap_or_else(|| berth_sandbox::DEFAULT_PATH.to_string());
    let mut env = vec![format!("PATH={RUNTIME_DIR}/bin:{path}")];
    if r.npm_cache.is_some() {
        env.push(format!("npm_config_cache={NPM_CACHE_DIR}"));
        // Take what the cache has without asking the registry again: npm ≥ 5
        // reads prefer-offline, older ones cache-min (seconds).
        env.push("npm_config_prefer_offline=true".to_string());
        env.push("npm_config_cache_min=86400".to_string());
    }
    if r.ca_bundle.is_some() {
        env.push(format!("NODE_EXTRA_CA_CERTS={CA_BUNDLE}"));
        env.push(format!("npm_config_cafile={CA_BUNDLE}"));
    }
    env
}

/// The networks a service joins: its `networks:`, or the project's default
/// one when it names none (v1 files say `network_mode: bridge`, docker's
/// default bridge, which for a project is its default network).
fn effective_networks(svc: &Service) -> Vec<(&str, Option<&serde_json::Value>)> {
    match (&svc.networks, svc.network_mode.as_deref()) {
        (Some(nets), _) => nets.iter().map(|(k, v)| (k.as_str(), v.as_ref())).collect(),
        (None, None | Some("bridge")) => vec![("default", None)],
        (None, _) => Vec::new(),
    }
}

/// One network a service asks for.
struct WantedNetwork {
    key: String,
    network: String,
    internal: bool,
    ipv4_address: Option<String>,
    aliases: Vec<String>,
}

/// The engine-level name of network `key`: its `name:`, else `<project>_<key>`.
fn network_name(project: &Project, key: &str) -> String {
    project
        .networks
        .get(key)
        .and_then(|n| n.name.clone())
        .unwrap_or_else(|| format!("{}_{key}", project.name))
}

/// A service's networks in compose's order (higher `priority` first, then
/// by name), each with its address and aliases.
fn service_networks(project: &Project, svc: &Service, service: &str) -> Vec<WantedNetwork> {
    let mut out: Vec<(i64, WantedNetwork)> = effective_networks(svc)
        .into_iter()
        .map(|(key, settings)| {
            let get = |k: &str| settings.as_ref().and_then(|s| s.get(k));
            let mut aliases = string_list(get("aliases"));
            aliases.retain(|a| a != service);
            (
                get("priority").and_then(|p| p.as_i64()).unwrap_or(0),
                WantedNetwork {
                    key: key.to_string(),
                    network: network_name(project, key),
                    internal: project.networks.get(key).and_then(|n| n.internal) == Some(true),
                    ipv4_address: get("ipv4_address")
                        .and_then(|v| v.as_str())
                        .map(str::to_string),
                    aliases,
                },
            )
        })
        .collect();
    out.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.key.cmp(&b.1.key)));
    out.into_iter().map(|(_, w)| w).collect()
}

/// How long `service_healthy` dependencies are waited for.
const HEALTHY_TIMEOUT: Duration = Duration::from_secs(300);

/// Collect a finished probe of `l`, or start one when it is due. Probes
/// run on their own threads: a slow one holds up nothing else.
fn tick_health(l: &mut Live, sandbox_dir: &Path, now: Instant) -> Option<Event> {
    if !l.running() || l.paused {
        return None;
    }
    let h = l.health.as_mut()?;
    if let Some((began, rx)) = &h.inflight {
        let passed = match rx.try_recv() {
            Ok(passed) => passed,
            Err(std::sync::mpsc::TryRecvError::Empty) => return None,
            Err(std::sync::mpsc::TryRecvError::Disconnected) => false,
        };
        let before = h.tracker.status;
        h.tracker.record(passed, *began, now);
        h.inflight = None;
        return (h.tracker.status != before).then(|| Event::Health {
            container: l.name.clone(),
            status: h.tracker.status,
        });
    }
    if h.tracker.due(now) {
        let (tx, rx) = std::sync::mpsc::channel();
        let (id, check, dir) = (
            l.id.clone(),
            h.tracker.check.clone(),
            sandbox_dir.to_path_buf(),
        );
        std::thread::spawn(move || {
            let _ = tx.send(probe(&dir, &id, &check));
        });
        h.inflight = Some((now, rx));
    }
    None
}

/// Run probes for `l` until it is healthy; an error when it turns
/// unhealthy, exits, or `timeout` passes. Health changes go to `events`.
fn wait_healthy(
    l: &mut Live,
    sandbox_dir: &Path,
    timeout: Duration,
    cancel: &AtomicBool,
    events: &mut Vec<Event>,
) -> std::result::Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        if cancel.load(Ordering::SeqCst) {
            return Err("interrupted".into());
        }
        let now = Instant::now();
        if let Some(e) = tick_health(l, sandbox_dir, now) {
            events.push(e);
        }
        if let Some(c) = l.container.as_mut() {
            if let Ok(Some(s)) = c.try_wait() {
                l.exited = Some(s);
                return Err(format!("it exited with code {}", s.code()));
            }
        }
        match l.health.as_ref().map(|h| h.tracker.status) {
            None | Some(Health::Healthy) => return Ok(()),
            Some(Health::Unhealthy) => return Err("its healthcheck failed".into()),
            Some(Health::Starting) => {}
        }
        if now >= deadline {
            return Err(format!(
                "not healthy within {}",
                berth_compose::units::format_duration(timeout)
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Run `check`'s probe once in container `id`: passed when it exits 0
/// within the check's timeout.
fn probe(sandbox_dir: &Path, id: &str, check: &HealthCheck) -> bool {
    let Ok(sandbox) = Sandbox::open(sandbox_dir) else {
        return false;
    };
    let spec = berth_sandbox::ExecSpec {
        args: check.probe.args(),
        ..Default::default()
    };
    let Ok(mut p) = sandbox.exec(id, spec) else {
        return false;
    };
    let deadline = Instant::now() + check.timeout;
    loop {
        match p.try_wait() {
            Ok(Some(status)) => return status.success(),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = p.kill(signal::SIGKILL);
                let _ = p.wait();
                return false;
            }
        }
    }
}

/// `x-berth: {ready_timeout: 30s}` on the service, else the default.
fn ready_timeout(svc: &Service) -> Duration {
    svc.berth().ready_timeout.unwrap_or(READY_TIMEOUT)
}

/// Wait until `live` accepts TCP connections on each published target
/// port inside its namespace; fails when it exits or `timeout` passes.
fn wait_ready(
    live: &mut Live,
    timeout: Duration,
    cancel: &AtomicBool,
) -> std::result::Result<(), String> {
    let deadline = Instant::now() + timeout;
    let targets = ports::tcp_targets(&live.svc.ports);
    let Some(netns) = live.netns.clone() else {
        return Ok(());
    };
    let mut pending = targets;
    loop {
        if cancel.load(Ordering::SeqCst) {
            return Err("interrupted".into());
        }
        if let Some(c) = live.container.as_mut() {
            if let Ok(Some(s)) = c.try_wait() {
                live.exited = Some(s);
                return Err(format!("it exited with code {}", s.code()));
            }
        }
        pending.retain(|&port| {
            let target = Target::InNetns {
                netns: netns.clone(),
                port,
            };
            berth_proxy::probe_tcp(&target, Duration::from_millis(500)).is_err()
        });
        if pending.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let list: Vec<String> = pending.iter().map(|p| p.to_string()).collect();
            return Err(format!(
                "nothing accepted connections on port {} within {}",
                list.join(", "),
                berth_compose::units::format_duration(timeout)
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
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

fn tmpfs_size(m: &Mount) -> Option<u64> {
    let size = m.extra.get("tmpfs")?.get("size")?;
    match size {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => berth_compose::units::parse_bytes(s),
        _ => None,
    }
}

fn bind(source: PathBuf, target: &str, read_only: bool) -> MountSpec {
    MountSpec {
        target: target.to_string(),
        kind: MountKind::Bind { source, read_only },
    }
}
