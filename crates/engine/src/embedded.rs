//! The embedded backend, first cut: run a project in this process.
//!
//! `up` creates the project's default network, gives every container its
//! own network namespace on it, prepares volumes the way docker does
//! (anonymous volumes populated from the image's content at their path,
//! `volumes_from` sharing the same directories), starts containers in
//! dependency order, and publishes ports through the userspace proxy.
//! [`Running::down`] removes everything `up` made. What is still missing
//! for the full engine (a supervisor process for `-d`, restart policies,
//! state for `ps` from another process) builds on this.

use crate::planner::{self, Action, Desired, PlanOptions};
use berth_compose::model::{Mount, Service, VolumesFrom};
use berth_compose::Project;
use berth_network::{AttachOptions, NetworkOptions, Networks, PoolConfig, ResolvConf};
use berth_oci::{Platform, Store};
use berth_proxy::{Proto, ProxyOptions, ProxySet, Publish, Target};
use berth_sandbox::{
    Container, ContainerSpec, ExitStatus, MountKind, MountSpec, Network, Sandbox, Stdio,
};
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
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

/// Where container output goes (the CLI prefixes and colours it).
pub trait LogSink: Send + Sync {
    fn line(&self, container: &str, line: &str);
}

pub struct Embedded {
    state: PathBuf,
    store: Store,
    sandbox: Sandbox,
    networks: Networks,
}

/// One container `up` started.
struct Started {
    service: String,
    name: String,
    container: Container,
    netns: String,
    exited: Option<ExitStatus>,
}

/// A project `up` brought up, until [`Running::down`].
pub struct Running {
    project: String,
    network: String,
    containers: Vec<Started>,
    proxies: Vec<ProxySet>,
    /// Namespaces and volume directories made for containers.
    netns: Vec<String>,
    anonymous_volumes: Vec<PathBuf>,
    networks: Networks,
}

impl Embedded {
    pub fn open(state_dir: &Path, store: Store) -> Result<Embedded> {
        let sandbox = Sandbox::open(state_dir.join("sandbox"))
            .map_err(|e| svc_err("-", format!("cannot open the container runtime: {e}")))?;
        Ok(Embedded {
            state: state_dir.to_path_buf(),
            store,
            sandbox,
            networks: Networks::open(state_dir.join("network"), PoolConfig::default()),
        })
    }

    /// Bring `project` up. `images` maps each service to the store name of
    /// the image it runs (the caller built or pulled it). On error, what was
    /// made is removed again.
    pub fn up(
        &self,
        project: &Project,
        images: &BTreeMap<String, String>,
        logs: Arc<dyn LogSink>,
    ) -> Result<Running> {
        let network = format!("{}_default", project.name);
        self.networks.create(&network, &NetworkOptions::default())?;
        let mut running = Running {
            project: project.name.clone(),
            network: network.clone(),
            containers: Vec::new(),
            proxies: Vec::new(),
            netns: Vec::new(),
            anonymous_volumes: Vec::new(),
            networks: Networks::open(self.state.join("network"), PoolConfig::default()),
        };
        match self.bring_up(project, images, logs, &mut running) {
            Ok(()) => Ok(running),
            Err(e) => {
                let _ = running.down(Duration::from_secs(2));
                Err(e)
            }
        }
    }

    fn bring_up(
        &self,
        project: &Project,
        images: &BTreeMap<String, String>,
        logs: Arc<dyn LogSink>,
        running: &mut Running,
    ) -> Result<()> {
        let plan = planner::plan(&Desired::new(project), &[], &PlanOptions::default())?;
        let creates: Vec<(String, String)> = plan
            .steps
            .iter()
            .filter_map(|s| match &s.action {
                Action::Create { name, .. } => Some((s.service.clone(), name.clone())),
                _ => None,
            })
            .collect();

        // Addresses first: every container's hosts file names all services.
        let mut addresses: BTreeMap<String, IpAddr> = BTreeMap::new();
        let mut netns_paths: HashMap<String, PathBuf> = HashMap::new();
        for (service, name) in &creates {
            let svc = &project.services[service];
            if matches!(svc.network_mode.as_deref(), Some("host") | Some("none")) {
                continue;
            }
            let ns = format!("berth-{name}");
            let path = berth_network::create_netns(&ns).map_err(|e| svc_err(service, e))?;
            running.netns.push(ns.clone());
            let ep = self.networks.attach(
                &running.network,
                name,
                &path,
                None,
                &AttachOptions::default(),
            )?;
            addresses
                .entry(service.clone())
                .or_insert(IpAddr::V4(ep.ip));
            netns_paths.insert(name.clone(), path);
        }

        let resolv = ResolvConf::for_containers()
            .map_err(|e| svc_err("-", format!("cannot prepare resolv.conf: {e}")))?
            .render(None);
        let mut mounts_of: HashMap<String, Vec<MountSpec>> = HashMap::new();
        for (service, name) in &creates {
            let svc = &project.services[service];
            let image_name = images
                .get(service)
                .ok_or_else(|| svc_err(service, "no image (build or pull it first)"))?;
            let image = self
                .store
                .image(image_name, &Platform::host())
                .map_err(|e| svc_err(service, e))?;
            let layers = self
                .sandbox
                .layers()
                .unpack_image(&self.store, &image)
                .map_err(|e| svc_err(service, e))?;

            let dir = self.state.join("containers").join(name);
            fs::create_dir_all(&dir).map_err(io_err(&dir))?;
            let own_ip = addresses.get(service).copied();
            let hosts = berth_network::render_hosts(service, own_ip, &addresses)
                .map_err(|e| svc_err(service, e))?;
            fs::write(dir.join("hosts"), hosts).map_err(io_err(&dir))?;
            fs::write(dir.join("resolv.conf"), &resolv).map_err(io_err(&dir))?;

            let mut mounts = vec![
                bind(dir.join("hosts"), "/etc/hosts", false),
                bind(dir.join("resolv.conf"), "/etc/resolv.conf", false),
            ];
            let volume_mounts = self.volumes(
                project, service, svc, name, &image, &layers, &mounts_of, running,
            )?;
            mounts_of.insert(service.clone(), volume_mounts.clone());
            mounts.extend(volume_mounts);

            let mut spec = ContainerSpec::new(name.clone(), &image);
            spec.entrypoint = svc.entrypoint.clone();
            spec.cmd = svc.command.clone();
            spec.env = svc
                .environment
                .iter()
                .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
                .collect();
            spec.working_dir = svc.working_dir.clone();
            spec.user = svc.user.clone();
            spec.hostname = Some(svc.hostname.clone().unwrap_or_else(|| service.clone()));
            spec.mounts = mounts;
            spec.read_only_rootfs = svc.read_only == Some(true);
            spec.network = match svc.network_mode.as_deref() {
                Some("host") => Network::Host,
                Some("none") => Network::None,
                _ => match netns_paths.get(name) {
                    Some(p) => Network::Netns(p.clone()),
                    None => Network::None,
                },
            };
            let (out_r, out_w) = pipe().map_err(io_err(&dir))?;
            spec.stdout = Stdio::Fd(out_w);
            let (err_r, err_w) = pipe().map_err(io_err(&dir))?;
            spec.stderr = Stdio::Fd(err_w);
            forward_lines(out_r, name.clone(), logs.clone());
            forward_lines(err_r, name.clone(), logs.clone());

            let mut container = self
                .sandbox
                .create(&layers, spec)
                .map_err(|e| svc_err(service, e))?;
            container.start().map_err(|e| svc_err(service, e))?;
            let ns = netns_paths
                .get(name)
                .map(|_| format!("berth-{name}"))
                .unwrap_or_default();
            running.containers.push(Started {
                service: service.clone(),
                name: name.clone(),
                container,
                netns: ns,
                exited: None,
            });

            // A dependency others wait on to complete must exit 0 first.
            let awaited = project.services.values().any(|s| {
                s.depends_on
                    .get(service)
                    .is_some_and(|d| d.condition == "service_completed_successfully")
            });
            if awaited {
                let started = running.containers.last_mut().expect("just pushed");
                let status = started.container.wait().map_err(|e| svc_err(service, e))?;
                started.exited = Some(status);
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

            self.publish(service, svc, name, netns_paths.get(name), running)?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn volumes(
        &self,
        project: &Project,
        service: &str,
        svc: &Service,
        name: &str,
        image: &berth_oci::store::Image,
        layers: &[PathBuf],
        mounts_of: &HashMap<String, Vec<MountSpec>>,
        running: &mut Running,
    ) -> Result<Vec<MountSpec>> {
        let mut out: Vec<MountSpec> = Vec::new();
        for vf in svc.volumes_from() {
            if let VolumesFrom::Service {
                name: source,
                read_only,
            } = vf
            {
                let theirs = mounts_of.get(&source).cloned().unwrap_or_default();
                for m in theirs {
                    if let MountKind::Bind {
                        source,
                        read_only: ro,
                    } = m.kind
                    {
                        out.push(bind(source, &m.target, ro || read_only));
                    }
                }
            }
        }
        let compose_targets: Vec<&Mount> = svc.volumes.iter().collect();
        for m in &compose_targets {
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
                        size: None,
                        mode: None,
                    },
                }),
                _ => {
                    let dir = match &m.source {
                        Some(named) => {
                            let full = project
                                .volumes
                                .get(named)
                                .and_then(|v| v.name.clone())
                                .unwrap_or_else(|| format!("{}_{named}", project.name));
                            self.state.join("volumes").join(full).join("_data")
                        }
                        None => {
                            let d = self.anonymous_dir(name, &m.target);
                            running.anonymous_volumes.push(d.clone());
                            d.join("_data")
                        }
                    };
                    self.prepare_volume(&dir, layers, &m.target, service)?;
                    out.push(bind(dir, &m.target, m.read_only == Some(true)));
                }
            }
        }
        // The image's VOLUMEs not covered above become anonymous volumes.
        for target in image.config.config.volumes.iter().flat_map(|v| v.keys()) {
            if out.iter().any(|m| m.target == *target) {
                continue;
            }
            let d = self.anonymous_dir(name, target);
            running.anonymous_volumes.push(d.clone());
            let data = d.join("_data");
            self.prepare_volume(&data, layers, target, service)?;
            out.push(bind(data, target, false));
        }
        Ok(out)
    }

    fn anonymous_dir(&self, container: &str, target: &str) -> PathBuf {
        let digest = berth_oci::Digest::of(format!("{container}\0{target}").as_bytes());
        self.state
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
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        berth_sandbox::populate(layers, target, dir)
            .map_err(|e| svc_err(service, format!("populating the volume at {target}: {e}")))
    }

    fn publish(
        &self,
        service: &str,
        svc: &Service,
        name: &str,
        netns: Option<&PathBuf>,
        running: &mut Running,
    ) -> Result<()> {
        let mut publishes = Vec::new();
        for p in &svc.ports {
            let Some(published) = &p.published else {
                continue;
            };
            let (a, b) = match published.split_once('-') {
                Some((a, b)) => (a.parse::<u16>().unwrap_or(0), b.parse::<u16>().unwrap_or(0)),
                None => {
                    let n = published.parse::<u16>().unwrap_or(0);
                    (n, n)
                }
            };
            let host_ip: IpAddr = p
                .host_ip
                .as_deref()
                .unwrap_or("0.0.0.0")
                .parse()
                .map_err(|_| svc_err(service, format!("invalid host_ip {:?}", p.host_ip)))?;
            let proto: Proto = p.protocol.parse().map_err(|e| svc_err(service, e))?;
            let target = match netns {
                Some(ns) => Target::InNetns {
                    netns: ns.clone(),
                    port: p.target,
                },
                None => Target::Addr((Ipv4Addr::LOCALHOST, p.target).into()),
            };
            for host_port in a..=b {
                publishes.push(Publish {
                    host_ip,
                    host_port,
                    proto,
                    target: target.clone(),
                });
            }
        }
        if publishes.is_empty() {
            return Ok(());
        }
        let set = ProxySet::bind(publishes, &ProxyOptions::default())
            .map_err(|e| svc_err(service, format!("{name}: {e}")))?;
        running.proxies.push(set);
        Ok(())
    }
}

fn bind(source: PathBuf, target: &str, read_only: bool) -> MountSpec {
    MountSpec {
        target: target.to_string(),
        kind: MountKind::Bind { source, read_only },
    }
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let (r, w) = std::io::pipe()?;
    Ok((OwnedFd::from(r), OwnedFd::from(w)))
}

/// A thread per stream: lines to the sink until the container closes it.
fn forward_lines(fd: OwnedFd, container: String, sink: Arc<dyn LogSink>) {
    let file = fs::File::from(fd);
    std::thread::spawn(move || {
        for line in BufReader::new(file).lines() {
            match line {
                Ok(l) => sink.line(&container, &l),
                Err(_) => break,
            }
        }
    });
}

impl Running {
    pub fn project(&self) -> &str {
        &self.project
    }

    /// Container names with their services, in start order.
    pub fn containers(&self) -> Vec<(String, String)> {
        self.containers
            .iter()
            .map(|c| (c.service.clone(), c.name.clone()))
            .collect()
    }

    /// Collect exits; true while some container still runs.
    pub fn poll(&mut self) -> Vec<(String, ExitStatus)> {
        let mut exited = Vec::new();
        for c in &mut self.containers {
            if c.exited.is_none() {
                if let Ok(Some(status)) = c.container.try_wait() {
                    c.exited = Some(status);
                    exited.push((c.name.clone(), status));
                }
            }
        }
        exited
    }

    pub fn any_running(&self) -> bool {
        self.containers.iter().any(|c| c.exited.is_none())
    }

    /// Stop (SIGTERM, then SIGKILL after `timeout`) and remove everything.
    pub fn down(mut self, timeout: Duration) -> Result<()> {
        for p in self.proxies.drain(..) {
            p.close(Duration::ZERO);
        }
        for c in &self.containers {
            if c.exited.is_none() {
                // The kernel drops signals a namespace's PID 1 has no handler
                // for, so a SIGTERM it does not catch would only make us wait
                // out the whole timeout (docker does). Kill it at once instead.
                let signal = if catches_sigterm(c.container.pid()) {
                    SIGTERM
                } else {
                    SIGKILL
                };
                let _ = c.container.kill(signal);
            }
        }
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline && self.any_running() {
            self.poll();
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut first_error = None;
        for c in self.containers.drain(..).rev() {
            if let Err(e) = c.container.delete() {
                first_error.get_or_insert(svc_err(&c.service, e));
            }
            let _ = self.networks.detach(&self.network, &c.name);
            let _ = &c.netns;
        }
        for ns in self.netns.drain(..) {
            let _ = berth_network::delete_netns(&ns);
        }
        if let Err(e) = self.networks.remove(&self.network) {
            first_error.get_or_insert(EngineError::Network(e));
        }
        for v in self.anonymous_volumes.drain(..) {
            let _ = fs::remove_dir_all(&v);
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

const SIGTERM: i32 = 15;
const SIGKILL: i32 = 9;

/// Does process `pid` have a handler for SIGTERM (`SigCgt` in its status)?
/// When unsure, say yes: then the normal stop path with its timeout runs.
fn catches_sigterm(pid: i32) -> bool {
    let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) else {
        return true;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_none_or(|mask| mask & (1 << (SIGTERM - 1)) != 0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_process_is_read() {
        // The test harness installs no SIGTERM handler.
        assert!(!super::catches_sigterm(std::process::id() as i32));
        // An unknown process is assumed to handle it (the safe default).
        assert!(super::catches_sigterm(i32::MAX));
    }
}
