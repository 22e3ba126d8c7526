//! A compose service as an Engine API container: `ContainerCreateBody` with
//! its host config, mounts, ports and networks.
//!
//! Every key of the normalized service is either mapped here or refused by
//! [`check_project`] with one line naming its key path: a key the daemon
//! never hears of would run the service without what the file asked for.

use crate::labels;
use berth_compose::model::{Mount, Port, Project, Service};
use berth_compose::units::{parse_bytes, parse_duration};
use berth_engine::backend::RuntimeMount;
use berth_engine::BackendError;
use bollard::models::{
    ContainerCreateBody, DeviceMapping, EndpointIpamConfig, EndpointSettings, HealthConfig,
    HostConfig, HostConfigLogConfig, Mount as DockerMount, MountBindOptions,
    MountBindOptionsPropagationEnum, MountTmpfsOptions, MountType, MountVolumeOptions,
    NetworkingConfig, PortBinding, ResourcesBlkioWeightDevice, ResourcesUlimits, RestartPolicy,
    RestartPolicyNameEnum, ThrottleDevice,
};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

/// Service keys this backend maps onto the Engine API (or that only the CLI
/// reads: `build`, `pull_policy`, `profiles`, `scale`, `attach`, `develop`).
const HANDLED: &[&str] = &[
    "build",
    "cap_add",
    "cap_drop",
    "cgroup",
    "command",
    "configs",
    "container_name",
    "cpu_shares",
    "cpus",
    "depends_on",
    "deploy",
    "devices",
    "dns",
    "dns_opt",
    "dns_search",
    "entrypoint",
    "env_file",
    "environment",
    "expose",
    "extra_hosts",
    "group_add",
    "healthcheck",
    "hostname",
    "image",
    "init",
    "ipc",
    "labels",
    "links",
    "logging",
    "mem_limit",
    "memswap_limit",
    "network_mode",
    "networks",
    "pid",
    "pids_limit",
    "platform",
    "ports",
    "privileged",
    "profiles",
    "pull_policy",
    "read_only",
    "restart",
    "scale",
    "secrets",
    "security_opt",
    "shm_size",
    "stdin_open",
    "stop_grace_period",
    "stop_signal",
    "sysctls",
    "tmpfs",
    "tty",
    "ulimits",
    "user",
    "userns_mode",
    "volumes",
    "volumes_from",
    "working_dir",
    "attach",
    "develop",
    "x-berth",
    "blkio_config",
    "cgroup_parent",
    "cpu_period",
    "cpu_quota",
    "cpu_rt_period",
    "cpu_rt_runtime",
    "cpuset",
    "device_cgroup_rules",
    "domainname",
    "external_links",
    "mem_reservation",
    "mem_swappiness",
    "oom_kill_disable",
    "oom_score_adj",
    "runtime",
    "storage_opt",
    "uts",
    "post_start",
    "pre_stop",
];

fn refuse(path: impl std::fmt::Display, what: &str) -> BackendError {
    BackendError::new(
        berth_engine::ErrorKind::Unsupported,
        format!("{path}: the docker engine does not support {what}"),
    )
}

/// The first key of `project` this backend cannot honour, as one line
/// naming its path. Checked before anything is created.
/// `local`: the daemon runs on this machine (an `x-runtime` is a directory
/// here, bind-mounted into the container).
pub fn check_project(project: &Project, local: bool) -> Result<(), BackendError> {
    for (name, svc) in &project.services {
        check_service(name, svc, local)?;
    }
    for (key, v) in &project.volumes {
        for k in v.extra.keys() {
            if !matches!(k.as_str(), "driver_opts" | "labels") && !k.starts_with("x-") {
                return Err(refuse(format!("volumes.{key}.{k}"), k));
            }
        }
    }
    for (key, n) in &project.networks {
        for k in n.extra.keys() {
            if !matches!(
                k.as_str(),
                "driver_opts" | "labels" | "attachable" | "enable_ipv6" | "ipam"
            ) && !k.starts_with("x-")
            {
                return Err(refuse(format!("networks.{key}.{k}"), k));
            }
        }
    }
    Ok(())
}

fn check_service(name: &str, svc: &Service, local: bool) -> Result<(), BackendError> {
    let json = serde_json::to_value(svc).unwrap_or(Value::Null);
    let Value::Object(map) = json else {
        return Ok(());
    };
    let path = |k: &str| format!("services.{name}.{k}");
    for key in map.keys() {
        if key == "x-runtime" && !local {
            return Err(refuse(
                path(key),
                "x-runtime on a remote daemon (the runtime is a directory of this machine)",
            ));
        }
        if key.starts_with("x-") && key != "x-berth" {
            // Extensions are the file author's own; compose ignores them too.
            continue;
        }
        if !HANDLED.contains(&key.as_str()) {
            return Err(refuse(path(key), key));
        }
    }
    for key in ["post_start", "pre_stop"] {
        berth_engine::hooks::of(svc, key).map_err(|e| BackendError::invalid(path(&e)))?;
    }
    if let Some(platform) = svc.extra.get("platform").and_then(Value::as_str) {
        let host = match std::env::consts::ARCH {
            "x86_64" => "linux/amd64",
            "aarch64" => "linux/arm64",
            other => other,
        };
        if platform.trim_end_matches("/v1").to_ascii_lowercase() != host {
            return Err(refuse(
                path("platform"),
                &format!("{platform} on this {host} daemon"),
            ));
        }
    }
    if let Some(deploy) = svc.extra.get("deploy").and_then(Value::as_object) {
        for (k, v) in deploy {
            let ok = match k.as_str() {
                "replicas" | "mode" | "labels" | "endpoint_mode" => true,
                "update_config" => v
                    .as_object()
                    .is_some_and(|m| m.keys().all(|k| k == "order")),
                "restart_policy" => v
                    .as_object()
                    .is_some_and(|m| m.keys().all(|k| k == "condition" || k == "max_attempts")),
                "resources" => v.as_object().is_some_and(|m| {
                    m.iter().all(|(k, v)| match k.as_str() {
                        "limits" => v.as_object().is_some_and(|l| {
                            l.keys()
                                .all(|k| matches!(k.as_str(), "cpus" | "memory" | "pids"))
                        }),
                        // A memory reservation is a soft limit to the
                        // daemon; reserved CPUs or devices mean a scheduler.
                        "reservations" => v
                            .as_object()
                            .is_some_and(|r| r.keys().all(|k| k == "memory")),
                        _ => false,
                    })
                }),
                _ => false,
            };
            if !ok {
                return Err(refuse(
                    path(&format!("deploy.{k}")),
                    &format!("deploy.{k} as written"),
                ));
            }
        }
    }
    for (i, m) in svc.volumes.iter().enumerate() {
        let here = path(&format!("volumes[{i}]"));
        match m.kind.as_str() {
            "bind" | "volume" | "tmpfs" => {}
            other => return Err(refuse(format!("{here}.type"), &format!("{other} mounts"))),
        }
        for (k, v) in &m.extra {
            let ok = match k.as_str() {
                "consistency" => true,
                "bind" => v.as_object().is_some_and(|o| {
                    o.keys().all(|k| {
                        matches!(k.as_str(), "propagation" | "create_host_path" | "selinux")
                    })
                }),
                "volume" => v
                    .as_object()
                    .is_some_and(|o| o.keys().all(|k| k == "nocopy")),
                "tmpfs" => v
                    .as_object()
                    .is_some_and(|o| o.keys().all(|k| k == "size" || k == "mode")),
                _ => false,
            };
            if !ok {
                return Err(refuse(format!("{here}.{k}"), &format!("{k} as written")));
            }
        }
    }
    for (net, settings) in svc.networks.iter().flatten() {
        if let Some(Value::Object(s)) = settings {
            for k in s.keys() {
                if !matches!(
                    k.as_str(),
                    "aliases" | "ipv4_address" | "ipv6_address" | "priority"
                ) {
                    return Err(refuse(path(&format!("networks.{net}.{k}")), k));
                }
            }
        }
    }
    for (i, p) in svc.ports.iter().enumerate() {
        if let Some(k) = p.extra.keys().next() {
            return Err(refuse(path(&format!("ports[{i}].{k}")), k));
        }
        if p.mode.as_deref() == Some("host") && p.published.is_none() {
            return Err(refuse(
                path(&format!("ports[{i}].mode")),
                "host mode without a published port",
            ));
        }
    }
    if let Some(Value::Object(h)) = &svc.healthcheck {
        for k in h.keys() {
            if !matches!(
                k.as_str(),
                "test"
                    | "interval"
                    | "timeout"
                    | "retries"
                    | "start_period"
                    | "start_interval"
                    | "disable"
            ) {
                return Err(refuse(path(&format!("healthcheck.{k}")), k));
            }
        }
    }
    if let Some(Value::Object(x)) = svc.extra.get("x-berth") {
        for k in x.keys() {
            if !matches!(
                k.as_str(),
                "update" | "protocol" | "ready_timeout" | "base" | "npm_cache"
            ) {
                return Err(refuse(
                    path(&format!("x-berth.{k}")),
                    &format!("x-berth.{k}"),
                ));
            }
        }
    }
    Ok(())
}

/// Everything one container is made from.
pub struct Wanted<'a> {
    pub project: &'a Project,
    pub service: &'a str,
    pub svc: &'a Service,
    pub number: u32,
    pub name: &'a str,
    /// The reference as the daemon knows it.
    pub image: &'a str,
    /// The daemon's image ID: `com.docker.compose.image`.
    pub image_id: Option<&'a str>,
    pub config_hash: &'a str,
    pub working_dir: &'a str,
    pub config_files: &'a str,
    /// Container names (with `:ro`/`:rw`) for `volumes_from`.
    pub volumes_from: Vec<String>,
    /// Source service → image ID whose volumes it mounts.
    pub mounted: BTreeMap<String, String>,
    /// Anonymous volumes of the replaced container kept: (volume, target).
    pub carried: Vec<(String, String)>,
    /// Secret and config files on this host: (file, target).
    pub files: Vec<(PathBuf, String)>,
    /// Service → its container's name, for `network_mode: service:` and links.
    pub container_of: &'a dyn Fn(&str) -> Option<String>,
    pub one_off: bool,
    /// `run` without `--service-ports` publishes nothing.
    pub ports: &'a [Port],
    /// Docker binds the published ports (false: berth's keeper holds them).
    pub publish: bool,
    /// The service's `x-runtime`, mounted read-only at [`RUNTIME_DIR`].
    pub runtime: Option<&'a RuntimeMount>,
    /// The image's own `PATH`, which the runtime's `bin` goes in front of.
    pub image_path: Option<String>,
}

/// Where an `x-runtime` appears in the container (as on the embedded engine).
pub const RUNTIME_DIR: &str = "/opt/berth/runtime";
pub const NPM_CACHE_DIR: &str = "/opt/berth/npm-cache";
pub const CA_BUNDLE: &str = "/opt/berth/ca-certificates.crt";
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The environment a runtime brings: its `bin` first on `PATH`, the shared
/// npm cache, the host's CA bundle (HTTPS through this machine's proxy).
fn runtime_env(r: &RuntimeMount, svc: &Service, image_path: Option<&str>) -> Vec<String> {
    let path = svc
        .environment
        .get("PATH")
        .cloned()
        .flatten()
        .or_else(|| image_path.map(str::to_string))
        .unwrap_or_else(|| DEFAULT_PATH.to_string());
    let mut env = vec![format!("PATH={RUNTIME_DIR}/bin:{path}")];
    if r.npm_cache.is_some() {
        env.push(format!("npm_config_cache={NPM_CACHE_DIR}"));
        env.push("npm_config_prefer_offline=true".to_string());
        env.push("npm_config_cache_min=86400".to_string());
    }
    if r.ca_bundle.is_some() {
        env.push(format!("NODE_EXTRA_CA_CERTS={CA_BUNDLE}"));
        env.push(format!("npm_config_cafile={CA_BUNDLE}"));
    }
    env
}

/// The create body, and the networks to connect before the start (the
/// Engine API before 1.44 takes one network at create).
pub struct Spec {
    pub body: ContainerCreateBody,
    pub more_networks: Vec<(String, EndpointSettings)>,
}

fn str_list(v: Option<&Value>) -> Option<Vec<String>> {
    match v? {
        Value::Array(a) => Some(
            a.iter()
                .map(|x| match x {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect(),
        ),
        Value::String(s) => Some(vec![s.clone()]),
        _ => None,
    }
}

fn str_map(v: Option<&Value>) -> Option<HashMap<String, String>> {
    match v? {
        Value::Object(m) => Some(
            m.iter()
                .map(|(k, v)| {
                    let v = match v {
                        Value::String(s) => s.clone(),
                        Value::Null => String::new(),
                        other => other.to_string(),
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        _ => None,
    }
}

fn int(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn bytes(v: Option<&Value>, path: &str) -> Result<Option<i64>, BackendError> {
    let Some(v) = v else { return Ok(None) };
    let parsed = match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => parse_bytes(s).and_then(|n| i64::try_from(n).ok()),
        _ => None,
    };
    parsed
        .map(Some)
        .ok_or_else(|| BackendError::invalid(format!("{path}: {v} is not a size")))
}

fn nanos(v: Option<&Value>, path: &str) -> Result<Option<i64>, BackendError> {
    let Some(v) = v else { return Ok(None) };
    let d = v
        .as_str()
        .and_then(parse_duration)
        .ok_or_else(|| BackendError::invalid(format!("{path}: {v} is not a duration")))?;
    Ok(Some(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)))
}

/// A duration in microseconds: compose writes `cpu_rt_*` as a number
/// (µs) or a duration (`1400us`, `10ms`).
fn micros(v: Option<&Value>, path: &str) -> Result<Option<i64>, BackendError> {
    match v {
        None => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_i64()),
        Some(v) => v
            .as_str()
            .and_then(parse_duration)
            .map(|d| Some(i64::try_from(d.as_micros()).unwrap_or(i64::MAX)))
            .ok_or_else(|| BackendError::invalid(format!("{path}: {v} is not a duration"))),
    }
}

/// `blkio_config` as the daemon's fields.
#[derive(Default)]
struct Blkio {
    weight: Option<u16>,
    weight_device: Option<Vec<ResourcesBlkioWeightDevice>>,
    read_bps: Option<Vec<ThrottleDevice>>,
    write_bps: Option<Vec<ThrottleDevice>>,
    read_iops: Option<Vec<ThrottleDevice>>,
    write_iops: Option<Vec<ThrottleDevice>>,
}

fn blkio(v: Option<&Value>, path: &str) -> Result<Blkio, BackendError> {
    let Some(v) = v else {
        return Ok(Blkio::default());
    };
    let bad = |what: &str| BackendError::invalid(format!("{path}.{what}: not a valid value"));
    let weight = |v: Option<&Value>, what: &str| -> Result<Option<u16>, BackendError> {
        v.map(|w| {
            int(Some(w))
                .and_then(|w| u16::try_from(w).ok())
                .ok_or_else(|| bad(what))
        })
        .transpose()
    };
    let throttle =
        |key: &str, rate_is_size: bool| -> Result<Option<Vec<ThrottleDevice>>, BackendError> {
            let Some(items) = v.get(key) else {
                return Ok(None);
            };
            let items = items.as_array().ok_or_else(|| bad(key))?;
            items
                .iter()
                .enumerate()
                .map(|(i, d)| {
                    let here = format!("{key}[{i}]");
                    let rate = if rate_is_size {
                        bytes(d.get("rate"), &format!("{path}.{here}.rate"))?
                    } else {
                        int(d.get("rate"))
                    };
                    Ok(ThrottleDevice {
                        path: Some(
                            d.get("path")
                                .and_then(Value::as_str)
                                .ok_or_else(|| bad(&format!("{here}.path")))?
                                .to_string(),
                        ),
                        rate: Some(rate.ok_or_else(|| bad(&format!("{here}.rate")))?),
                    })
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some)
        };
    let weight_device = match v.get("weight_device") {
        None => None,
        Some(items) => Some(
            items
                .as_array()
                .ok_or_else(|| bad("weight_device"))?
                .iter()
                .enumerate()
                .map(|(i, d)| {
                    let here = format!("weight_device[{i}]");
                    Ok(ResourcesBlkioWeightDevice {
                        path: Some(
                            d.get("path")
                                .and_then(Value::as_str)
                                .ok_or_else(|| bad(&format!("{here}.path")))?
                                .to_string(),
                        ),
                        weight: weight(d.get("weight"), &format!("{here}.weight"))?
                            .map(usize::from),
                    })
                })
                .collect::<Result<Vec<_>, BackendError>>()?,
        ),
    };
    Ok(Blkio {
        weight: weight(v.get("weight"), "weight")?,
        weight_device,
        read_bps: throttle("device_read_bps", true)?,
        write_bps: throttle("device_write_bps", true)?,
        read_iops: throttle("device_read_iops", false)?,
        write_iops: throttle("device_write_iops", false)?,
    })
}

fn cpus(v: Option<&Value>, path: &str) -> Result<Option<i64>, BackendError> {
    let Some(v) = v else { return Ok(None) };
    let n = match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse::<f64>().ok(),
        _ => None,
    }
    .filter(|n| *n >= 0.0)
    .ok_or_else(|| BackendError::invalid(format!("{path}: {v} is not a number of CPUs")))?;
    Ok(Some((n * 1e9) as i64))
}

/// The healthcheck as the Engine API wants it (durations in nanoseconds).
fn healthcheck(svc: &Service, service: &str) -> Result<Option<HealthConfig>, BackendError> {
    let Some(Value::Object(h)) = &svc.healthcheck else {
        return Ok(None);
    };
    let path = |k: &str| format!("services.{service}.healthcheck.{k}");
    if h.get("disable").and_then(Value::as_bool) == Some(true) {
        return Ok(Some(HealthConfig {
            test: Some(vec!["NONE".into()]),
            ..Default::default()
        }));
    }
    Ok(Some(HealthConfig {
        test: str_list(h.get("test")),
        interval: nanos(h.get("interval"), &path("interval"))?,
        timeout: nanos(h.get("timeout"), &path("timeout"))?,
        start_period: nanos(h.get("start_period"), &path("start_period"))?,
        start_interval: nanos(h.get("start_interval"), &path("start_interval"))?,
        retries: int(h.get("retries")),
    }))
}

/// `restart:` (or `deploy.restart_policy`, as compose maps it outside swarm).
fn restart_policy(svc: &Service) -> Option<RestartPolicy> {
    let (name, retries) = if let Some(r) = svc.restart.as_deref() {
        match r.split_once(':') {
            Some(("on-failure", n)) => ("on-failure", n.parse().ok()),
            _ => (r, None),
        }
    } else {
        let p = svc
            .extra
            .get("deploy")
            .and_then(|d| d.get("restart_policy"))?;
        let name = match p.get("condition").and_then(Value::as_str) {
            Some("none") => "no",
            Some("on-failure") => "on-failure",
            _ => "always",
        };
        (name, int(p.get("max_attempts")))
    };
    let name = match name {
        "always" => RestartPolicyNameEnum::ALWAYS,
        "unless-stopped" => RestartPolicyNameEnum::UNLESS_STOPPED,
        "on-failure" => RestartPolicyNameEnum::ON_FAILURE,
        _ => RestartPolicyNameEnum::NO,
    };
    Some(RestartPolicy {
        name: Some(name),
        maximum_retry_count: retries,
    })
}

/// Published ports: exposed ports and their host bindings.
#[allow(clippy::type_complexity)]
fn ports(
    ports: &[Port],
    expose: Option<&Value>,
) -> (Vec<String>, HashMap<String, Option<Vec<PortBinding>>>) {
    let mut exposed = Vec::new();
    let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    for p in ports {
        let key = format!("{}/{}", p.target, p.protocol);
        if !exposed.contains(&key) {
            exposed.push(key.clone());
        }
        bindings
            .entry(key)
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(PortBinding {
                host_ip: p.host_ip.clone(),
                host_port: Some(p.published.clone().unwrap_or_default()),
            });
    }
    for e in str_list(expose).unwrap_or_default() {
        let (port, proto) = e.split_once('/').unwrap_or((&e, "tcp"));
        let (first, last) = match port.split_once('-') {
            Some((a, b)) => (a.parse::<u16>().ok(), b.parse::<u16>().ok()),
            None => (port.parse().ok(), port.parse().ok()),
        };
        if let (Some(a), Some(b)) = (first, last) {
            for n in a..=b {
                let key = format!("{n}/{proto}");
                if !exposed.contains(&key) {
                    exposed.push(key);
                }
            }
        }
    }
    (exposed, bindings)
}

fn mount(
    project: &Project,
    m: &Mount,
    path: &str,
) -> Result<(Option<DockerMount>, Option<String>), BackendError> {
    let sub = |k: &str| m.extra.get(k);
    match m.kind.as_str() {
        "bind" => {
            let source = m
                .source
                .clone()
                .ok_or_else(|| BackendError::invalid(format!("{path}.source: required")))?;
            let propagation = sub("bind")
                .and_then(|b| b.get("propagation"))
                .and_then(Value::as_str);
            let create = sub("bind")
                .and_then(|b| b.get("create_host_path"))
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let selinux = sub("bind")
                .and_then(|b| b.get("selinux"))
                .and_then(Value::as_str);
            if create {
                // Only the `Binds` form creates a missing host directory,
                // as docker compose's short syntax does.
                let mut opts = vec![if m.read_only == Some(true) {
                    "ro"
                } else {
                    "rw"
                }
                .to_string()];
                opts.extend(propagation.map(str::to_string));
                opts.extend(selinux.map(str::to_string));
                return Ok((
                    None,
                    Some(format!("{source}:{}:{}", m.target, opts.join(","))),
                ));
            }
            if selinux.is_some() {
                return Err(refuse(
                    format!("{path}.bind.selinux"),
                    "selinux relabelling without create_host_path",
                ));
            }
            let propagation = match propagation {
                None => None,
                Some(p) => Some(match p {
                    "private" => MountBindOptionsPropagationEnum::PRIVATE,
                    "rprivate" => MountBindOptionsPropagationEnum::RPRIVATE,
                    "shared" => MountBindOptionsPropagationEnum::SHARED,
                    "rshared" => MountBindOptionsPropagationEnum::RSHARED,
                    "slave" => MountBindOptionsPropagationEnum::SLAVE,
                    "rslave" => MountBindOptionsPropagationEnum::RSLAVE,
                    other => {
                        return Err(BackendError::invalid(format!(
                            "{path}.bind.propagation: unknown mode {other:?}"
                        )))
                    }
                }),
            };
            Ok((
                Some(DockerMount {
                    target: Some(m.target.clone()),
                    source: Some(source),
                    typ: Some(MountType::BIND),
                    read_only: m.read_only,
                    bind_options: propagation.map(|p| MountBindOptions {
                        propagation: Some(p),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                None,
            ))
        }
        "volume" => {
            let source = m.source.as_deref().map(|key| {
                project
                    .volumes
                    .get(key)
                    .and_then(|v| v.name.clone())
                    .unwrap_or_else(|| key.to_string())
            });
            let nocopy = sub("volume")
                .and_then(|v| v.get("nocopy"))
                .and_then(Value::as_bool);
            Ok((
                Some(DockerMount {
                    target: Some(m.target.clone()),
                    source,
                    typ: Some(MountType::VOLUME),
                    read_only: m.read_only,
                    volume_options: nocopy.map(|n| MountVolumeOptions {
                        no_copy: Some(n),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                None,
            ))
        }
        "tmpfs" => {
            let t = sub("tmpfs");
            let size = bytes(t.and_then(|t| t.get("size")), &format!("{path}.tmpfs.size"))?;
            let mode = match t.and_then(|t| t.get("mode")) {
                None => None,
                Some(Value::Number(n)) => n.as_i64(),
                Some(Value::String(s)) => i64::from_str_radix(s.trim_start_matches("0o"), 8).ok(),
                Some(_) => None,
            };
            Ok((
                Some(DockerMount {
                    target: Some(m.target.clone()),
                    typ: Some(MountType::TMPFS),
                    read_only: m.read_only,
                    tmpfs_options: Some(MountTmpfsOptions {
                        size_bytes: size,
                        mode,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                None,
            ))
        }
        other => Err(refuse(format!("{path}.type"), &format!("{other} mounts"))),
    }
}

/// The Engine API container for `w`.
pub fn container_spec(w: &Wanted) -> Result<Spec, BackendError> {
    let svc = w.svc;
    let extra = |k: &str| svc.extra.get(k);
    let path = |k: &str| format!("services.{}.{k}", w.service);

    let mut label_map: HashMap<String, String> = svc
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let depends: Vec<String> = svc
        .depends_on
        .iter()
        .map(|(name, d)| format!("{name}:{}:{}", d.condition, d.restart.unwrap_or(false)))
        .collect();
    for (k, v) in [
        (labels::PROJECT, w.project.name.clone()),
        (labels::SERVICE, w.service.to_string()),
        (labels::NUMBER, w.number.to_string()),
        (
            labels::ONEOFF,
            if w.one_off { "True" } else { "False" }.to_string(),
        ),
        (labels::CONFIG_HASH, w.config_hash.to_string()),
        (labels::WORKING_DIR, w.working_dir.to_string()),
        (labels::CONFIG_FILES, w.config_files.to_string()),
        (labels::VERSION, labels::COMPOSE_VERSION.to_string()),
        (labels::DEPENDS_ON, depends.join(",")),
        (labels::BERTH_VERSION, env!("CARGO_PKG_VERSION").to_string()),
    ] {
        label_map.insert(k.to_string(), v);
    }
    if let Some(id) = w.image_id {
        label_map.insert(labels::IMAGE.into(), id.to_string());
    }
    if !w.mounted.is_empty() {
        label_map.insert(
            labels::MOUNTED_IMAGES.into(),
            serde_json::to_string(&w.mounted).unwrap_or_default(),
        );
    }

    let mut env: Vec<String> = match w.runtime {
        Some(r) => runtime_env(r, svc, w.image_path.as_deref()),
        None => Vec::new(),
    };
    env.extend(
        svc.environment
            .iter()
            .filter(|(k, _)| !(w.runtime.is_some() && k.as_str() == "PATH"))
            .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}"))),
    );
    if let Some(r) = w.runtime {
        label_map.insert(labels::RUNTIME.into(), r.digest.clone());
    }
    let hooks: serde_json::Map<String, Value> = ["post_start", "pre_stop"]
        .into_iter()
        .filter_map(|k| extra(k).map(|v| (k.to_string(), v.clone())))
        .collect();
    if !hooks.is_empty() && !w.one_off {
        label_map.insert(labels::HOOKS.into(), Value::Object(hooks).to_string());
    }

    let (exposed, mut bindings) = ports(w.ports, extra("expose"));
    if !w.publish && !w.ports.is_empty() {
        let held: Vec<String> = w
            .ports
            .iter()
            .map(|p| {
                format!(
                    "{}:{}->{}/{}",
                    p.host_ip.as_deref().unwrap_or("0.0.0.0"),
                    p.published.as_deref().unwrap_or_default(),
                    p.target,
                    p.protocol
                )
            })
            .collect();
        label_map.insert(labels::PUBLISHED.into(), held.join(","));
        bindings.clear();
    }

    let mut mounts = Vec::new();
    let mut binds = Vec::new();
    let mut targets: Vec<&str> = Vec::new();
    for (i, m) in svc.volumes.iter().enumerate() {
        let (mnt, bind) = mount(w.project, m, &path(&format!("volumes[{i}]")))?;
        mounts.extend(mnt);
        binds.extend(bind);
        targets.push(&m.target);
    }
    for (volume, target) in &w.carried {
        if targets.contains(&target.as_str()) {
            continue;
        }
        mounts.push(DockerMount {
            target: Some(target.clone()),
            source: Some(volume.clone()),
            typ: Some(MountType::VOLUME),
            ..Default::default()
        });
    }
    if let Some(r) = w.runtime {
        let mut bind = |source: &std::path::Path, target: &str, read_only: bool| {
            mounts.push(DockerMount {
                target: Some(target.to_string()),
                source: Some(source.to_string_lossy().into_owned()),
                typ: Some(MountType::BIND),
                read_only: Some(read_only),
                ..Default::default()
            })
        };
        bind(&r.root, RUNTIME_DIR, true);
        if let Some(cache) = &r.npm_cache {
            bind(cache, NPM_CACHE_DIR, false);
        }
        if let Some(ca) = &r.ca_bundle {
            bind(ca, CA_BUNDLE, true);
        }
    }
    for (file, target) in &w.files {
        mounts.push(DockerMount {
            target: Some(target.clone()),
            source: Some(file.to_string_lossy().into_owned()),
            typ: Some(MountType::BIND),
            read_only: Some(true),
            ..Default::default()
        });
    }

    let mut tmpfs: HashMap<String, String> = HashMap::new();
    for t in str_list(extra("tmpfs")).unwrap_or_default() {
        let (target, opts) = t.split_once(':').unwrap_or((&t, ""));
        tmpfs.insert(target.to_string(), opts.to_string());
    }

    // Networks: `network_mode` or the service's networks, first at create.
    let mut network_mode = svc.network_mode.clone();
    if let Some(mode) = &network_mode {
        if let Some(other) = mode.strip_prefix("service:") {
            let c = (w.container_of)(other).ok_or_else(|| {
                BackendError::invalid(format!(
                    "{}: service {other} has no container to share the network of",
                    path("network_mode")
                ))
            })?;
            network_mode = Some(format!("container:{c}"));
        }
    }
    let mut endpoints: Vec<(i64, String, EndpointSettings)> = Vec::new();
    if network_mode.is_none() {
        for (key, settings) in svc.networks.iter().flatten() {
            let engine_name = w
                .project
                .networks
                .get(key)
                .and_then(|n| n.name.clone())
                .unwrap_or_else(|| key.clone());
            let s = settings.as_ref();
            // Compose makes every container reachable by its service name
            // (and its container name) on each of its networks.
            let mut aliases = vec![w.service.to_string()];
            if !w.one_off {
                aliases.push(w.name.to_string());
            }
            aliases.extend(str_list(s.and_then(|s| s.get("aliases"))).unwrap_or_default());
            let ipv4 = s
                .and_then(|s| s.get("ipv4_address"))
                .and_then(Value::as_str);
            let ipv6 = s
                .and_then(|s| s.get("ipv6_address"))
                .and_then(Value::as_str);
            let priority = int(s.and_then(|s| s.get("priority"))).unwrap_or(0);
            endpoints.push((
                priority,
                engine_name,
                EndpointSettings {
                    aliases: Some(aliases),
                    ipam_config: (ipv4.is_some() || ipv6.is_some()).then(|| EndpointIpamConfig {
                        ipv4_address: ipv4.map(str::to_string),
                        ipv6_address: ipv6.map(str::to_string),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            ));
        }
        // Highest priority first, as compose orders them.
        endpoints.sort_by_key(|(p, _, _)| std::cmp::Reverse(*p));
        if let Some((_, first, _)) = endpoints.first() {
            network_mode = Some(first.clone());
        }
    }
    let mut endpoints = endpoints.into_iter().map(|(_, n, e)| (n, e));
    let first = endpoints.next();
    let more_networks: Vec<(String, EndpointSettings)> = endpoints.collect();

    let links: Vec<String> = svc
        .links
        .iter()
        .map(|l| {
            let (target, alias) = l.split_once(':').unwrap_or((l, l));
            let container = (w.container_of)(target).unwrap_or_else(|| target.to_string());
            format!("{container}:{alias}")
        })
        .chain(
            str_list(extra("external_links"))
                .unwrap_or_default()
                .into_iter()
                .map(|l| match l.split_once(':') {
                    Some(_) => l,
                    None => format!("{l}:{l}"),
                }),
        )
        .collect();

    let deploy_limits = extra("deploy")
        .and_then(|d| d.get("resources"))
        .and_then(|r| r.get("limits"));
    let memory = match bytes(extra("mem_limit"), &path("mem_limit"))? {
        Some(m) => Some(m),
        None => bytes(
            deploy_limits.and_then(|l| l.get("memory")),
            &path("deploy.resources.limits.memory"),
        )?,
    };
    let nano_cpus = match cpus(extra("cpus"), &path("cpus"))? {
        Some(c) => Some(c),
        None => cpus(
            deploy_limits.and_then(|l| l.get("cpus")),
            &path("deploy.resources.limits.cpus"),
        )?,
    };
    let pids = int(extra("pids_limit")).or_else(|| int(deploy_limits.and_then(|l| l.get("pids"))));

    let memory_reservation = match bytes(extra("mem_reservation"), &path("mem_reservation"))? {
        Some(m) => Some(m),
        None => bytes(
            extra("deploy")
                .and_then(|d| d.get("resources"))
                .and_then(|r| r.get("reservations"))
                .and_then(|r| r.get("memory")),
            &path("deploy.resources.reservations.memory"),
        )?,
    };
    let blkio = blkio(extra("blkio_config"), &path("blkio_config"))?;

    let ulimits = match extra("ulimits") {
        Some(Value::Object(m)) => Some(
            m.iter()
                .map(|(name, v)| {
                    let (soft, hard) = match v {
                        Value::Object(o) => (int(o.get("soft")), int(o.get("hard"))),
                        other => (int(Some(other)), int(Some(other))),
                    };
                    ResourcesUlimits {
                        name: Some(name.clone()),
                        soft,
                        hard,
                    }
                })
                .collect(),
        ),
        _ => None,
    };

    let devices = match extra("devices") {
        Some(Value::Array(items)) => Some(
            items
                .iter()
                .map(|d| match d {
                    Value::String(s) => {
                        let mut parts = s.splitn(3, ':');
                        let host = parts.next().unwrap_or_default().to_string();
                        let inside = parts.next().map(str::to_string).unwrap_or(host.clone());
                        DeviceMapping {
                            path_on_host: Some(host),
                            path_in_container: Some(inside),
                            cgroup_permissions: Some(parts.next().unwrap_or("rwm").to_string()),
                        }
                    }
                    other => DeviceMapping {
                        path_on_host: other
                            .get("source")
                            .and_then(Value::as_str)
                            .map(str::to_string),
                        path_in_container: other
                            .get("target")
                            .or_else(|| other.get("source"))
                            .and_then(Value::as_str)
                            .map(str::to_string),
                        cgroup_permissions: Some(
                            other
                                .get("permissions")
                                .and_then(Value::as_str)
                                .unwrap_or("rwm")
                                .to_string(),
                        ),
                    },
                })
                .collect(),
        ),
        _ => None,
    };

    let log_config = extra("logging").map(|l| HostConfigLogConfig {
        typ: l.get("driver").and_then(Value::as_str).map(str::to_string),
        config: str_map(l.get("options")),
    });

    let stop_timeout = match &svc.stop_grace_period {
        Some(g) => Some(
            parse_duration(g)
                .ok_or_else(|| {
                    BackendError::invalid(format!(
                        "{}: {g:?} is not a duration",
                        path("stop_grace_period")
                    ))
                })?
                .as_secs() as i64,
        ),
        None => None,
    };

    let host_config = HostConfig {
        binds: (!binds.is_empty()).then_some(binds),
        mounts: (!mounts.is_empty()).then_some(mounts),
        port_bindings: (!bindings.is_empty()).then_some(bindings),
        volumes_from: (!w.volumes_from.is_empty()).then(|| w.volumes_from.clone()),
        restart_policy: if w.one_off { None } else { restart_policy(svc) },
        network_mode,
        links: (!links.is_empty()).then_some(links),
        cap_add: str_list(extra("cap_add")),
        cap_drop: str_list(extra("cap_drop")),
        dns: str_list(extra("dns")),
        dns_search: str_list(extra("dns_search")),
        dns_options: str_list(extra("dns_opt")),
        // Normalized as `host=ip`; the Engine API wants `host:ip`.
        extra_hosts: str_list(extra("extra_hosts"))
            .map(|l| l.into_iter().map(|h| h.replacen('=', ":", 1)).collect()),
        group_add: str_list(extra("group_add")),
        init: extra("init").and_then(Value::as_bool),
        privileged: extra("privileged").and_then(Value::as_bool),
        readonly_rootfs: svc.read_only,
        security_opt: str_list(extra("security_opt")),
        sysctls: str_map(extra("sysctls")),
        tmpfs: (!tmpfs.is_empty()).then_some(tmpfs),
        shm_size: bytes(extra("shm_size"), &path("shm_size"))?,
        memory,
        memory_swap: bytes(extra("memswap_limit"), &path("memswap_limit"))?,
        nano_cpus,
        cpu_shares: int(extra("cpu_shares")),
        pids_limit: pids,
        ulimits,
        devices,
        ipc_mode: extra("ipc").and_then(Value::as_str).map(str::to_string),
        pid_mode: extra("pid").and_then(Value::as_str).map(str::to_string),
        userns_mode: extra("userns_mode")
            .and_then(Value::as_str)
            .map(str::to_string),
        cgroup: extra("cgroup").and_then(Value::as_str).map(str::to_string),
        cgroup_parent: extra("cgroup_parent")
            .and_then(Value::as_str)
            .map(str::to_string),
        cpu_period: int(extra("cpu_period")),
        cpu_quota: int(extra("cpu_quota")),
        cpu_realtime_period: micros(extra("cpu_rt_period"), &path("cpu_rt_period"))?,
        cpu_realtime_runtime: micros(extra("cpu_rt_runtime"), &path("cpu_rt_runtime"))?,
        cpuset_cpus: extra("cpuset").and_then(Value::as_str).map(str::to_string),
        device_cgroup_rules: str_list(extra("device_cgroup_rules")),
        memory_reservation,
        memory_swappiness: int(extra("mem_swappiness")),
        oom_kill_disable: extra("oom_kill_disable").and_then(Value::as_bool),
        oom_score_adj: int(extra("oom_score_adj")),
        uts_mode: extra("uts").and_then(Value::as_str).map(str::to_string),
        runtime: extra("runtime").and_then(Value::as_str).map(str::to_string),
        storage_opt: str_map(extra("storage_opt")),
        blkio_weight: blkio.weight,
        blkio_weight_device: blkio.weight_device,
        blkio_device_read_bps: blkio.read_bps,
        blkio_device_write_bps: blkio.write_bps,
        blkio_device_read_iops: blkio.read_iops,
        blkio_device_write_iops: blkio.write_iops,
        log_config,
        ..Default::default()
    };

    let body = ContainerCreateBody {
        image: Some(w.image.to_string()),
        cmd: svc.command.clone(),
        entrypoint: svc.entrypoint.clone(),
        env: Some(env),
        user: svc.user.clone(),
        working_dir: svc.working_dir.clone(),
        hostname: svc.hostname.clone(),
        domainname: extra("domainname")
            .and_then(Value::as_str)
            .map(str::to_string),
        labels: Some(label_map),
        tty: extra("tty").and_then(Value::as_bool),
        open_stdin: extra("stdin_open").and_then(Value::as_bool),
        stop_signal: svc.stop_signal.clone(),
        stop_timeout,
        healthcheck: healthcheck(svc, w.service)?,
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        host_config: Some(host_config),
        networking_config: first.map(|(name, e)| NetworkingConfig {
            endpoints_config: Some(HashMap::from([(name, e)])),
        }),
        ..Default::default()
    };
    Ok(Spec {
        body,
        more_networks,
    })
}

/// The grace period `stop` waits before SIGKILL (compose's default 10 s).
pub fn stop_timeout(svc: &Service) -> i32 {
    svc.stop_grace_period
        .as_deref()
        .and_then(parse_duration)
        .map(|d| d.as_secs().min(i32::MAX as u64) as i32)
        .unwrap_or(10)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn project(doc: Value) -> Project {
        serde_json::from_value(doc).unwrap()
    }

    #[test]
    fn unknown_keys_are_refused_by_path() {
        let p = project(
            json!({"name": "p", "services": {"app": {"image": "x", "x-runtime": "node@4.2.3"}}}),
        );
        let e = check_project(&p, false).unwrap_err();
        assert_eq!(
            e.message,
            "services.app.x-runtime: the docker engine does not support x-runtime on a remote daemon (the runtime is a directory of this machine)"
        );
        let p = project(json!({"name": "p", "services": {"app": {"image": "x", "gpus": "all"}}}));
        assert!(check_project(&p, false)
            .unwrap_err()
            .message
            .starts_with("services.app.gpus:"));
        // A memory reservation is the daemon's soft limit; reserved CPUs
        // need a scheduler.
        let p = project(json!({"name": "p", "services": {"app": {"image": "x",
            "deploy": {"resources": {"reservations": {"memory": "1g"}}}}}}));
        check_project(&p, false).unwrap();
        let p = project(json!({"name": "p", "services": {"app": {"image": "x",
            "deploy": {"resources": {"reservations": {"cpus": "1"}}}}}}));
        assert!(check_project(&p, false)
            .unwrap_err()
            .message
            .starts_with("services.app.deploy.resources:"));
        let p = project(
            json!({"name": "p", "services": {"app": {"image": "x", "x-other": 1,
            "deploy": {"replicas": 2, "update_config": {"order": "start-first"}}}}}),
        );
        check_project(&p, false).unwrap();
    }

    #[test]
    fn a_service_maps_onto_the_engine_api() {
        let p = project(json!({
            "name": "p",
            "services": {"app": {
                "image": "busybox",
                "ports": [{"target": 3000, "published": "8080", "protocol": "tcp"}],
                "volumes": [
                    {"type": "volume", "source": "data", "target": "/data"},
                    {"type": "bind", "source": "/src", "target": "/src", "read_only": true,
                     "bind": {"create_host_path": true}},
                ],
                "extra_hosts": ["a=127.0.0.1"],
                "healthcheck": {"test": ["CMD", "true"], "interval": "5s"},
                "networks": {"default": {"aliases": ["web"]}},
                "stop_grace_period": "3s",
                "restart": "on-failure:3"
            }},
            "networks": {"default": {"name": "p_default"}},
            "volumes": {"data": {"name": "p_data"}}
        }));
        let none = |_: &str| None;
        let w = Wanted {
            project: &p,
            service: "app",
            svc: &p.services["app"],
            number: 1,
            name: "p-app-1",
            image: "busybox",
            image_id: Some("sha256:abc"),
            config_hash: "h",
            working_dir: "/w",
            config_files: "/w/compose.yml",
            volumes_from: vec!["p-code-1:rw".into()],
            mounted: BTreeMap::from([("code".into(), "sha256:c".into())]),
            carried: vec![],
            files: vec![],
            container_of: &none,
            one_off: false,
            ports: &p.services["app"].ports,
            publish: true,
            runtime: None,
            image_path: None,
        };
        let spec = container_spec(&w).unwrap();
        let hc = spec.body.host_config.unwrap();
        assert_eq!(hc.network_mode.as_deref(), Some("p_default"));
        assert_eq!(hc.extra_hosts.unwrap(), vec!["a:127.0.0.1"]);
        assert_eq!(hc.binds.unwrap(), vec!["/src:/src:ro"]);
        let m = &hc.mounts.unwrap()[0];
        assert_eq!(m.source.as_deref(), Some("p_data"));
        let b = &hc.port_bindings.unwrap()["3000/tcp"];
        assert_eq!(b.as_ref().unwrap()[0].host_port.as_deref(), Some("8080"));
        assert_eq!(hc.restart_policy.unwrap().maximum_retry_count, Some(3));
        assert_eq!(spec.body.stop_timeout, Some(3));
        assert_eq!(spec.body.healthcheck.unwrap().interval, Some(5_000_000_000));
        let labels = spec.body.labels.unwrap();
        assert_eq!(labels[labels::PROJECT], "p");
        assert_eq!(labels[labels::ONEOFF], "False");
        assert_eq!(labels[labels::MOUNTED_IMAGES], r#"{"code":"sha256:c"}"#);
        let eps = spec
            .body
            .networking_config
            .unwrap()
            .endpoints_config
            .unwrap();
        assert_eq!(
            eps["p_default"].aliases.as_ref().unwrap(),
            &vec!["app".to_string(), "p-app-1".into(), "web".into()]
        );
    }
}
