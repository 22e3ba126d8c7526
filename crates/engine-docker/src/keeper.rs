//! Published ports held by berth instead of Docker, so a service can be
//! swapped start-first: the new container starts beside the old one, and
//! once it is ready the ports switch to it atomically, then the old one is
//! drained and removed. No request is refused.
//!
//! Docker binds a published port to one container; two cannot share it, so
//! Docker's own publishing forces stop-first. Instead, the service's
//! containers are created without host bindings and a small per-project
//! keeper process (outliving `berth up -d`) listens on the host ports with
//! berth's port proxy, forwarding to the active container's address on its
//! network. `up` talks to the keeper over a unix socket under berth's state
//! directory. Only a daemon on this machine allows this: a remote daemon's
//! container addresses are not reachable from here (the plan says so).

use crate::{DockerBackend, Result};
use berth_engine::BackendError;
use berth_proxy::{PortProxy, Proto, ProxyOptions, Target};
use bollard::query_parameters::InspectContainerOptions;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How long the keeper stays after every container it serves is gone.
const ORPHAN_GRACE: Duration = Duration::from_secs(30);

/// How the keeper is started when `up` needs it and none answers.
#[derive(Debug, Clone)]
pub enum KeeperLaunch {
    /// Run `program args… PROJECT`, detached in its own session so it
    /// outlives the command (the CLI: `berth __docker-ports PROJECT`).
    Exec {
        program: PathBuf,
        args: Vec<OsString>,
    },
    /// A thread of this process: for a process that lives as long as the
    /// project (tests, a long-running `up`).
    Thread,
}

impl KeeperLaunch {
    /// This very binary, re-executed as `<exe> __docker-ports PROJECT`.
    pub fn current_exe() -> Result<KeeperLaunch> {
        let program = std::env::current_exe()
            .map_err(|e| BackendError::engine(format!("finding berth's own binary: {e}")))?;
        Ok(KeeperLaunch::Exec {
            program,
            args: vec!["__docker-ports".into()],
        })
    }
}

/// One published port as the keeper serves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PortSpec {
    pub host_ip: IpAddr,
    pub host_port: u16,
    pub target_port: u16,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum Request {
    Ping,
    /// Point `service`'s ports at `container` (its address on `network`),
    /// binding the ports not held yet; then drain the previous container's
    /// connections for up to `drain_secs` before replying.
    Switch {
        service: String,
        container: String,
        network: String,
        ip: IpAddr,
        ports: Vec<PortSpec>,
        drain_secs: u64,
    },
    /// Free `service`'s ports.
    Release {
        service: String,
    },
    /// After `up` returned: stop (each within its timeout, in seconds) and
    /// remove the containers a swap replaced, then the volumes only they
    /// still held. Their ports moved already, so nobody waits for their
    /// grace periods.
    Retire {
        containers: Vec<(String, i32)>,
        volumes: Vec<String>,
    },
    /// Free every port and exit.
    Stop,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Reply {
    pub error: Option<String>,
}

pub fn socket_path(project: &str) -> PathBuf {
    berth_oci::store::state_dir()
        .join("docker")
        .join(format!("{project}.ports.sock"))
}

struct Held {
    container: String,
    network: String,
    ip: IpAddr,
    proxies: Vec<(PortSpec, PortProxy)>,
}

/// Run the port keeper of `project` until a `stop` request (from `down`).
/// Returns at once when another keeper already answers for the project.
pub fn keep_ports(project: &str) -> Result<()> {
    let path = socket_path(project);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| BackendError::engine(format!("{}: {e}", dir.display())))?;
    }
    // One keeper per project: two `up`s starting one at once would
    // otherwise each take the socket path, and the loser's ports would be
    // held by nobody reachable. The lock lives as long as this keeper.
    let lock_path = path.with_extension("lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| BackendError::engine(format!("{}: {e}", lock_path.display())))?;
    // SAFETY: flock on a descriptor this function owns for its lifetime.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Ok(());
    }
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)
        .map_err(|e| BackendError::engine(format!("{}: {e}", path.display())))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| BackendError::engine(format!("{}: {e}", path.display())))?;
    // Every relayed connection holds several fds.
    let _ = berth_proxy::raise_fd_limit();
    // The daemon is asked where an active container went after a restart
    // (its address may change); without it the keeper still serves.
    let docker = DockerBackend::connect().ok();
    let mut held: BTreeMap<String, Held> = BTreeMap::new();
    let mut last_check = Instant::now();
    let mut orphaned_since: Option<Instant> = None;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                let _ = stream.set_nonblocking(false);
                if let Some(stream) = serve(stream, &mut held) {
                    // `down` waits for this answer: once it has it, the
                    // ports are free and the keeper is gone.
                    release_all(&mut held);
                    let _ = std::fs::remove_file(&path);
                    // A keeper started right after this answer must not
                    // find the project still locked.
                    drop(listener);
                    drop(lock);
                    let mut w = &stream;
                    let _ = writeln!(w, "{{}}");
                    return Ok(());
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
        if last_check.elapsed() >= Duration::from_secs(1) {
            last_check = Instant::now();
            if let Some(d) = &docker {
                // Taken down by another tool (`docker compose down`): free
                // the ports rather than hold them for nobody. A replacement
                // takes seconds, so only a lasting absence counts.
                if follow_addresses(d, &mut held) {
                    let since = *orphaned_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= ORPHAN_GRACE {
                        break;
                    }
                } else {
                    orphaned_since = None;
                }
            }
        }
    }
    release_all(&mut held);
    let _ = std::fs::remove_file(&path);
    Ok(())
}

/// Stop and remove replaced containers, then their volumes, on a thread
/// with its own client: the keeper keeps relaying meanwhile.
fn retire(containers: &[(String, i32)], volumes: &[String]) {
    let Ok(d) = DockerBackend::connect() else {
        return;
    };
    d.block(async {
        for (name, timeout) in containers {
            let _ = d.stop(name, *timeout).await;
            let _ = d.remove(name).await;
        }
        d.remove_volumes(volumes).await;
    });
}

fn release_all(held: &mut BTreeMap<String, Held>) {
    for (_, h) in std::mem::take(held) {
        for (_, p) in h.proxies {
            p.close(Duration::from_secs(1));
        }
    }
}

/// A restarted container may get another address: follow it. Returns
/// whether every container the ports point at is gone.
fn follow_addresses(d: &DockerBackend, held: &mut BTreeMap<String, Held>) -> bool {
    let mut gone = 0;
    for h in held.values_mut() {
        let c = match d.block(
            d.docker
                .inspect_container(&h.container, None::<InspectContainerOptions>),
        ) {
            Ok(c) => c,
            Err(e) => {
                if crate::is_not_found(&e) {
                    gone += 1;
                }
                continue;
            }
        };
        let ip = c
            .network_settings
            .and_then(|n| n.networks)
            .and_then(|mut n| n.remove(&h.network))
            .and_then(|e| e.ip_address)
            .and_then(|ip| ip.parse::<IpAddr>().ok());
        if let Some(ip) = ip.filter(|ip| *ip != h.ip) {
            h.ip = ip;
            for (spec, proxy) in &h.proxies {
                let _ = proxy.switch(Target::Addr(SocketAddr::new(ip, spec.target_port)));
            }
        }
    }
    !held.is_empty() && gone == held.len()
}

/// Answer one request; a `stop` is not answered but handed back, to be
/// answered once everything is released.
fn serve(stream: UnixStream, held: &mut BTreeMap<String, Held>) -> Option<UnixStream> {
    let mut reader = BufReader::new(&stream);
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return None;
    }
    let (reply, stop) = match serde_json::from_str::<Request>(&line) {
        Err(e) => (
            Reply {
                error: Some(format!("bad request: {e}")),
            },
            false,
        ),
        Ok(Request::Ping) => (Reply::default(), false),
        Ok(Request::Retire {
            containers,
            volumes,
        }) => {
            std::thread::spawn(move || retire(&containers, &volumes));
            (Reply::default(), false)
        }
        Ok(Request::Stop) => (Reply::default(), true),
        Ok(Request::Release { service }) => {
            if let Some(h) = held.remove(&service) {
                for (_, p) in h.proxies {
                    p.close(Duration::from_secs(1));
                }
            }
            (Reply::default(), false)
        }
        Ok(Request::Switch {
            service,
            container,
            network,
            ip,
            ports,
            drain_secs,
        }) => (
            Reply {
                error: switch(held, service, container, network, ip, ports, drain_secs).err(),
            },
            false,
        ),
    };
    drop(reader);
    if stop {
        return Some(stream);
    }
    let mut w = &stream;
    let text = serde_json::to_string(&reply).unwrap_or_else(|_| "{}".into());
    let _ = writeln!(w, "{text}");
    None
}

fn switch(
    held: &mut BTreeMap<String, Held>,
    service: String,
    container: String,
    network: String,
    ip: IpAddr,
    ports: Vec<PortSpec>,
    drain_secs: u64,
) -> std::result::Result<(), String> {
    let previous = held.remove(&service);
    let mut kept: Vec<(PortSpec, PortProxy)> = Vec::new();
    let mut olds: Vec<(usize, Target)> = Vec::new();
    let mut leftover: Vec<(PortSpec, PortProxy)> = previous.map(|h| h.proxies).unwrap_or_default();
    for spec in ports {
        let target = Target::Addr(SocketAddr::new(ip, spec.target_port));
        let at = leftover
            .iter()
            .position(|(s, _)| s.host_ip == spec.host_ip && s.host_port == spec.host_port);
        match at {
            Some(i) => {
                let (_, proxy) = leftover.remove(i);
                match proxy.switch(target) {
                    Ok(old) => olds.push((kept.len(), old)),
                    Err(e) => return Err(format!("switching port {}: {e}", spec.host_port)),
                }
                kept.push((spec, proxy));
            }
            None => {
                let proxy = PortProxy::bind_with(
                    spec.host_ip,
                    spec.host_port,
                    Proto::Tcp,
                    target,
                    &ProxyOptions::default(),
                )
                .map_err(|e| e.to_string())?;
                kept.push((spec, proxy));
            }
        }
    }
    // Ports the service no longer publishes.
    for (_, p) in leftover {
        p.close(Duration::from_secs(1));
    }
    let deadline = Instant::now() + Duration::from_secs(drain_secs);
    for (i, old) in &olds {
        let proxy = &kept[*i].1;
        if proxy.target() == *old {
            continue;
        }
        proxy.drain(old, deadline.saturating_duration_since(Instant::now()));
        proxy.close_connections(old);
    }
    held.insert(
        service,
        Held {
            container,
            network,
            ip,
            proxies: kept,
        },
    );
    Ok(())
}

/// Send one request to the project's keeper, starting it with `launch`
/// when none answers (a stop needs none).
pub(crate) fn request(project: &str, launch: Option<&KeeperLaunch>, req: &Request) -> Result<()> {
    let path = socket_path(project);
    let stream = match UnixStream::connect(&path) {
        Ok(s) => s,
        Err(_) => {
            let Some(launch) = launch else {
                return Ok(());
            };
            start(project, launch)?;
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match UnixStream::connect(&path) {
                    Ok(s) => break s,
                    Err(e) if Instant::now() > deadline => {
                        return Err(BackendError::engine(format!(
                            "the port keeper of {project} did not start ({}: {e})",
                            path.display()
                        )))
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        }
    };
    let text = serde_json::to_string(req).unwrap_or_default();
    let mut w = &stream;
    writeln!(w, "{text}")
        .map_err(|e| BackendError::engine(format!("the port keeper of {project}: {e}")))?;
    let mut line = String::new();
    BufReader::new(&stream)
        .read_line(&mut line)
        .map_err(|e| BackendError::engine(format!("the port keeper of {project}: {e}")))?;
    let reply: Reply = serde_json::from_str(&line).map_err(|e| {
        BackendError::engine(format!(
            "the port keeper of {project} answered {line:?}: {e}"
        ))
    })?;
    match reply.error {
        None => Ok(()),
        Some(e) => Err(BackendError::engine(format!("publishing ports: {e}"))),
    }
}

fn start(project: &str, launch: &KeeperLaunch) -> Result<()> {
    match launch {
        KeeperLaunch::Thread => {
            let project = project.to_string();
            std::thread::spawn(move || keep_ports(&project));
            Ok(())
        }
        KeeperLaunch::Exec { program, args } => {
            use std::os::unix::process::CommandExt;
            let mut cmd = std::process::Command::new(program);
            cmd.args(args)
                .arg(project)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
            // SAFETY: setsid is async-signal-safe; in its own session the
            // keeper outlives the command and ignores its Ctrl-C.
            unsafe {
                cmd.pre_exec(|| {
                    libc::setsid();
                    Ok(())
                });
            }
            cmd.spawn().map(drop).map_err(|e| {
                BackendError::engine(format!(
                    "starting the port keeper ({}): {e}",
                    program.display()
                ))
            })
        }
    }
}
