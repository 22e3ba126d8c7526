//! A compose service as a swarm service: `ServiceSpec` with its task
//! template, mode, update and rollback policies, placement, resources,
//! host-mode ports and overlay networks.
//!
//! Every key of the normalized service is either mapped here, listed by
//! [`not_applied`] (the plan names it), or refused by [`check_project`]
//! with one line naming its key path: a key swarm never hears of would run
//! the service without what the file asked for.

use crate::labels;
use berth_compose::model::{Project, Service};
use berth_compose::units::{parse_bytes, parse_duration};
use berth_engine::{BackendError, ErrorKind};
use bollard::models::{
    EndpointPortConfig, EndpointPortConfigProtocolEnum, EndpointPortConfigPublishModeEnum,
    EndpointSpec, HealthConfig, Limit, NetworkAttachmentConfig, ResourceObject, ServiceSpec,
    ServiceSpecMode, ServiceSpecModeReplicated, ServiceSpecRollbackConfig,
    ServiceSpecRollbackConfigFailureActionEnum, ServiceSpecRollbackConfigOrderEnum,
    ServiceSpecUpdateConfig, ServiceSpecUpdateConfigFailureActionEnum,
    ServiceSpecUpdateConfigOrderEnum, TaskSpec, TaskSpecContainerSpec,
    TaskSpecContainerSpecConfigs, TaskSpecContainerSpecSecrets, TaskSpecPlacement,
    TaskSpecPlacementPreferences, TaskSpecPlacementSpread, TaskSpecResources,
    TaskSpecRestartPolicy, TaskSpecRestartPolicyConditionEnum,
};
use serde_json::Value;
use std::collections::HashMap;

/// Service keys mapped onto the swarm service (or only read by the CLI:
/// `build`, `pull_policy`, `profiles`).
const MAPPED: &[&str] = &[
    "build",
    "command",
    "configs",
    "deploy",
    "entrypoint",
    "environment",
    "healthcheck",
    "hostname",
    "image",
    "labels",
    "networks",
    "ports",
    "profiles",
    "pull_policy",
    "read_only",
    "restart",
    "scale",
    "secrets",
    "stop_grace_period",
    "stop_signal",
    "user",
    "volumes",
    "volumes_from",
    "working_dir",
];

/// Keys swarm has no equivalent for but whose absence changes nothing a
/// running service needs: listed in the plan as not applied.
const NOT_APPLIED: &[&str] = &["depends_on", "container_name", "links"];

pub fn refuse(path: impl std::fmt::Display, what: &str) -> BackendError {
    BackendError::new(
        ErrorKind::Unsupported,
        format!("{path}: the swarm engine does not support {what}"),
    )
}

/// The keys of `project` that are not applied on swarm, as key paths with
/// the reason, for the plan.
pub fn not_applied(project: &Project) -> Vec<String> {
    let mut out = Vec::new();
    for (name, svc) in &project.services {
        let json = serde_json::to_value(svc).unwrap_or(Value::Null);
        let Value::Object(map) = json else { continue };
        for key in map.keys() {
            if NOT_APPLIED.contains(&key.as_str()) {
                let why = match key.as_str() {
                    "depends_on" => "swarm starts services in no order",
                    "container_name" => "swarm names tasks service.N",
                    _ => "services reach each other by name on their overlay networks",
                };
                out.push(format!("services.{name}.{key} ({why})"));
            }
        }
    }
    out
}

/// The first key of `project` this backend cannot honour, as one line
/// naming its path. Checked before anything is created.
pub fn check_project(project: &Project) -> Result<(), BackendError> {
    for (name, svc) in &project.services {
        check_service(name, svc)?;
    }
    for (key, n) in &project.networks {
        if n.external == Some(true) {
            continue;
        }
        if let Some(d) = n.driver.as_deref().filter(|d| *d != "overlay") {
            return Err(refuse(
                format!("networks.{key}.driver"),
                &format!("the {d} driver (networks span nodes: overlay)"),
            ));
        }
        for k in n.extra.keys() {
            if !matches!(k.as_str(), "labels" | "attachable") && !k.starts_with("x-") {
                return Err(refuse(format!("networks.{key}.{k}"), k));
            }
        }
    }
    // Named volumes are per node (the plan says so: see
    // [`per_node_volumes`]); their driver, options and labels go to the
    // node's daemon with the mount.
    for (key, v) in &project.volumes {
        for k in v.extra.keys() {
            if !matches!(k.as_str(), "driver_opts" | "labels") && !k.starts_with("x-") {
                return Err(refuse(format!("volumes.{key}.{k}"), k));
            }
        }
    }
    crate::files::check(project)
}

fn check_service(name: &str, svc: &Service) -> Result<(), BackendError> {
    let json = serde_json::to_value(svc).unwrap_or(Value::Null);
    let Value::Object(map) = json else {
        return Ok(());
    };
    let path = |k: &str| format!("services.{name}.{k}");
    for key in map.keys() {
        if key.starts_with("x-") {
            continue;
        }
        if !MAPPED.contains(&key.as_str()) && !NOT_APPLIED.contains(&key.as_str()) {
            return Err(refuse(path(key), key));
        }
    }
    if let Some(mode) = svc.network_mode.as_deref() {
        return Err(refuse(path("network_mode"), mode));
    }
    if let Some(deploy) = svc.extra.get("deploy").and_then(Value::as_object) {
        for (k, v) in deploy {
            let allowed: &[&str] = match k.as_str() {
                "replicas" | "mode" | "labels" | "endpoint_mode" => continue,
                "placement" => &["constraints", "preferences", "max_replicas_per_node"],
                "update_config" | "rollback_config" => &[
                    "parallelism",
                    "delay",
                    "failure_action",
                    "monitor",
                    "max_failure_ratio",
                    "order",
                ],
                "restart_policy" => &["condition", "delay", "max_attempts", "window"],
                "resources" => &["limits", "reservations"],
                _ => return Err(refuse(path(&format!("deploy.{k}")), &format!("deploy.{k}"))),
            };
            let Some(obj) = v.as_object() else { continue };
            for sub in obj.keys() {
                if !allowed.contains(&sub.as_str()) {
                    return Err(refuse(
                        path(&format!("deploy.{k}.{sub}")),
                        &format!("deploy.{k}.{sub}"),
                    ));
                }
            }
            if k == "resources" {
                for (which, r) in obj {
                    for sub in r.as_object().map(|o| o.keys()).into_iter().flatten() {
                        if !matches!(sub.as_str(), "cpus" | "memory" | "pids")
                            || which == "reservations" && sub == "pids"
                        {
                            return Err(refuse(
                                path(&format!("deploy.resources.{which}.{sub}")),
                                &format!("deploy.resources.{which}.{sub}"),
                            ));
                        }
                    }
                }
            }
        }
        if let Some(mode) = deploy.get("mode").and_then(Value::as_str) {
            if !matches!(mode, "replicated" | "global") {
                return Err(refuse(path("deploy.mode"), &format!("mode {mode}")));
            }
        }
        if let Some(e) = deploy.get("endpoint_mode").and_then(Value::as_str) {
            if e != "dnsrr" && e != "vip" {
                return Err(refuse(path("deploy.endpoint_mode"), e));
            }
        }
    }
    for (i, p) in svc.ports.iter().enumerate() {
        if p.published.as_deref().is_some_and(|p| p.contains('-')) {
            return Err(refuse(
                path(&format!("ports[{i}].published")),
                "port ranges",
            ));
        }
        if p.host_ip.is_some() {
            return Err(refuse(
                path(&format!("ports[{i}].host_ip")),
                "a host address (host-mode ports listen on every address of the node)",
            ));
        }
        if let Some(k) = p.extra.keys().find(|k| !k.starts_with("x-")) {
            return Err(refuse(path(&format!("ports[{i}].{k}")), k));
        }
    }
    for (i, m) in svc.volumes.iter().enumerate() {
        let at = |k: &str| path(&format!("volumes[{i}]{k}"));
        let allowed: &[&str] = match m.kind.as_str() {
            "volume" => &["nocopy", "subpath"],
            "tmpfs" => &["size", "mode"],
            // A path of this machine: the tasks run on other nodes, where
            // it would be whatever that node has there.
            "bind" => {
                return Err(refuse(
                    at(""),
                    "bind mounts (a path of this machine; tasks run on other nodes)",
                ))
            }
            other => return Err(refuse(at(".type"), &format!("{other} mounts"))),
        };
        for (k, v) in &m.extra {
            if k.starts_with("x-") {
                continue;
            }
            if k != &m.kind {
                return Err(refuse(at(&format!(".{k}")), k));
            }
            for sub in v.as_object().map(|o| o.keys()).into_iter().flatten() {
                if !allowed.contains(&sub.as_str()) {
                    return Err(refuse(at(&format!(".{k}.{sub}")), &format!("{k}.{sub}")));
                }
            }
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
    Ok(())
}

/// What the spec of one service is made from.
pub struct ServiceInput<'a> {
    pub project: &'a str,
    pub service: &'a str,
    pub svc: &'a Service,
    /// `registry/repo@sha256:…`, the image every node pulls.
    pub image: String,
    /// Labels berth compares on the next `up` (config hash, image).
    pub labels: HashMap<String, String>,
    /// Engine-level names of the overlay networks it joins.
    pub networks: Vec<String>,
    /// Its tasks publish its ports in host mode themselves (no berth proxy
    /// in front of them).
    pub publish: bool,
    /// Its secrets and configs, by the IDs of the swarm's objects.
    pub secrets: Vec<TaskSpecContainerSpecSecrets>,
    pub configs: Vec<TaskSpecContainerSpecConfigs>,
    /// Its volume and tmpfs mounts ([`mounts`]).
    pub mounts: Vec<bollard::models::Mount>,
    /// Its image carries an `x-runtime` layer, whose `bin` goes first on
    /// the `PATH` the service sets itself too.
    pub runtime: bool,
    /// The healthcheck berth adds when the service has none
    /// ([`crate::probe::readiness`]).
    pub readiness: Option<HealthConfig>,
}

/// The engine-level name of a compose volume (`<project>_<key>`, or its `name:`).
pub fn volume_name(project: &Project, key: &str) -> String {
    project
        .volumes
        .get(key)
        .and_then(|v| v.name.clone())
        .unwrap_or_else(|| format!("{}_{key}", project.name))
}

/// The mounts of a service's tasks. A volume is made by the daemon of the
/// node a task lands on, from the volume options of the mount (its driver,
/// `driver_opts` and labels, with docker stack's namespace so `down -v`
/// finds it); an external one is only named.
pub fn mounts(
    project: &Project,
    service: &str,
    svc: &Service,
) -> Result<Vec<bollard::models::Mount>, BackendError> {
    use bollard::models::{
        Mount, MountTmpfsOptions, MountType, MountVolumeOptions, MountVolumeOptionsDriverConfig,
    };
    let mut out = Vec::new();
    for (i, m) in svc.volumes.iter().enumerate() {
        let path = format!("services.{service}.volumes[{i}]");
        let sub = |k: &str| m.extra.get(&m.kind).and_then(|o| o.get(k));
        match m.kind.as_str() {
            "volume" => {
                let def = m.source.as_deref().and_then(|k| project.volumes.get(k));
                let mut volume_labels: HashMap<String, String> =
                    match def.and_then(|d| d.extra.get("labels")) {
                        Some(Value::Object(l)) => l
                            .iter()
                            .map(|(k, v)| {
                                let v = v
                                    .as_str()
                                    .map(str::to_string)
                                    .unwrap_or_else(|| v.to_string());
                                (k.clone(), v)
                            })
                            .collect(),
                        Some(Value::Array(a)) => a
                            .iter()
                            .filter_map(Value::as_str)
                            .map(|kv| {
                                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                                (k.to_string(), v.to_string())
                            })
                            .collect(),
                        _ => HashMap::new(),
                    };
                let external = def.and_then(|d| d.external) == Some(true);
                let options = if external {
                    // The node's own volume of that name, as it is.
                    None
                } else {
                    volume_labels.insert(labels::STACK.into(), project.name.clone());
                    volume_labels.insert(labels::PROJECT.into(), project.name.clone());
                    if let Some(k) = &m.source {
                        volume_labels.insert("com.docker.compose.volume".into(), k.clone());
                    }
                    let driver_opts: Option<HashMap<String, String>> = def
                        .and_then(|d| d.extra.get("driver_opts"))
                        .and_then(Value::as_object)
                        .map(|o| {
                            o.iter()
                                .map(|(k, v)| {
                                    let v = v
                                        .as_str()
                                        .map(str::to_string)
                                        .unwrap_or_else(|| v.to_string());
                                    (k.clone(), v)
                                })
                                .collect()
                        });
                    let driver = def.and_then(|d| d.driver.clone());
                    Some(MountVolumeOptions {
                        no_copy: sub("nocopy").and_then(Value::as_bool),
                        labels: Some(volume_labels),
                        driver_config: (driver.is_some() || driver_opts.is_some()).then(|| {
                            MountVolumeOptionsDriverConfig {
                                name: driver.or_else(|| Some("local".into())),
                                options: driver_opts,
                            }
                        }),
                        subpath: sub("subpath").and_then(Value::as_str).map(str::to_string),
                    })
                };
                out.push(Mount {
                    target: Some(m.target.clone()),
                    source: m.source.as_deref().map(|k| volume_name(project, k)),
                    typ: Some(MountType::VOLUME),
                    read_only: m.read_only,
                    volume_options: options,
                    ..Default::default()
                });
            }
            "tmpfs" => {
                let mode = match sub("mode") {
                    None => None,
                    Some(Value::Number(n)) => n.as_i64(),
                    Some(Value::String(s)) => Some(
                        i64::from_str_radix(s.trim_start_matches("0o"), 8).map_err(|_| {
                            BackendError::invalid(format!(
                                "{path}.tmpfs.mode: {s:?} is not a file mode"
                            ))
                        })?,
                    ),
                    Some(v) => {
                        return Err(BackendError::invalid(format!(
                            "{path}.tmpfs.mode: {v} is not a file mode"
                        )))
                    }
                };
                out.push(Mount {
                    target: Some(m.target.clone()),
                    typ: Some(MountType::TMPFS),
                    read_only: m.read_only,
                    tmpfs_options: Some(MountTmpfsOptions {
                        size_bytes: bytes(sub("size"), &format!("{path}.tmpfs.size"))?,
                        mode,
                        ..Default::default()
                    }),
                    ..Default::default()
                });
            }
            other => return Err(refuse(format!("{path}.type"), &format!("{other} mounts"))),
        }
    }
    Ok(out)
}

/// What the plan says of each named volume a deployed service mounts:
/// swarm keeps volumes on the node that made them.
pub fn per_node_volumes(project: &Project, services: &[&str]) -> Vec<String> {
    let mut users: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for s in services {
        for m in &project.services[*s].volumes {
            if let (Some(k), "volume") = (m.source.as_deref(), m.kind.as_str()) {
                users.entry(k).or_default().push(s);
            }
        }
    }
    users
        .into_iter()
        .map(|(key, by)| {
            let external = project.volumes.get(key).and_then(|v| v.external) == Some(true);
            format!(
                "volumes.{key}: volume data is per node: a task rescheduled to another node starts with an empty volume{} (mounted by {})",
                if external { " (external: a node without it makes an empty local one)" } else { "" },
                by.join(", ")
            )
        })
        .collect()
}

/// The swarm name of a compose service, as `docker stack deploy` names it.
pub fn service_name(project: &str, service: &str) -> String {
    format!("{project}_{service}")
}

/// The engine-level name of a compose network (`<project>_<key>`, or its `name:`).
pub fn network_name(project: &Project, key: &str) -> String {
    project
        .networks
        .get(key)
        .and_then(|n| n.name.clone())
        .unwrap_or_else(|| format!("{}_{key}", project.name))
}

/// The compose networks a service joins (`default` when it names none).
pub fn service_networks(svc: &Service) -> Vec<String> {
    match &svc.networks {
        Some(n) if !n.is_empty() => n.keys().cloned().collect(),
        _ => vec!["default".into()],
    }
}

fn nanos(v: Option<&Value>, path: &str) -> Result<Option<i64>, BackendError> {
    let Some(v) = v else { return Ok(None) };
    let text = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => format!("{n}s"),
        _ => {
            return Err(BackendError::invalid(format!(
                "{path}: {v} is not a duration"
            )))
        }
    };
    parse_duration(&text)
        .map(|d| Some(d.as_nanos() as i64))
        .ok_or_else(|| BackendError::invalid(format!("{path}: {text:?} is not a duration")))
}

fn int(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn str_list(v: Option<&Value>) -> Option<Vec<String>> {
    match v? {
        Value::Array(a) => Some(
            a.iter()
                .map(|x| {
                    x.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| x.to_string())
                })
                .collect(),
        ),
        Value::String(s) => Some(vec!["CMD-SHELL".into(), s.clone()]),
        _ => None,
    }
}

fn cpus(v: Option<&Value>, path: &str) -> Result<Option<i64>, BackendError> {
    let Some(v) = v else { return Ok(None) };
    let n = match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
    .filter(|n| *n >= 0.0)
    .ok_or_else(|| BackendError::invalid(format!("{path}: {v} is not a number of CPUs")))?;
    Ok(Some((n * 1e9) as i64))
}

fn bytes(v: Option<&Value>, path: &str) -> Result<Option<i64>, BackendError> {
    let Some(v) = v else { return Ok(None) };
    let n = match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => parse_bytes(s),
        _ => None,
    }
    .ok_or_else(|| BackendError::invalid(format!("{path}: {v} is not a size")))?;
    Ok(Some(n as i64))
}

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

/// The service's healthcheck with berth's readiness probe where it has no
/// test of its own: the probe's settings fill what the service leaves out,
/// so `healthcheck: {start_period: 30s}` tunes the probe.
fn with_readiness(own: Option<HealthConfig>, probe: Option<&HealthConfig>) -> Option<HealthConfig> {
    let Some(probe) = probe else { return own };
    let Some(own) = own else {
        return Some(probe.clone());
    };
    if own.test.is_some() {
        return Some(own);
    }
    Some(HealthConfig {
        test: probe.test.clone(),
        interval: own.interval.or(probe.interval),
        timeout: own.timeout.or(probe.timeout),
        start_period: own.start_period.or(probe.start_period),
        start_interval: own.start_interval.or(probe.start_interval),
        retries: own.retries.or(probe.retries),
    })
}

/// Replicas: `scale`, else `deploy.replicas`, else 1. `None` for global.
pub fn replicas(svc: &Service) -> Option<i64> {
    let deploy = svc.extra.get("deploy");
    if deploy.and_then(|d| d.get("mode")).and_then(Value::as_str) == Some("global") {
        return None;
    }
    Some(
        int(svc.extra.get("scale"))
            .or_else(|| int(deploy.and_then(|d| d.get("replicas"))))
            .unwrap_or(1),
    )
}

fn restart_policy(
    svc: &Service,
    service: &str,
) -> Result<Option<TaskSpecRestartPolicy>, BackendError> {
    use TaskSpecRestartPolicyConditionEnum as C;
    let path = |k: &str| format!("services.{service}.deploy.restart_policy.{k}");
    if let Some(p) = svc
        .extra
        .get("deploy")
        .and_then(|d| d.get("restart_policy"))
    {
        let condition = match p.get("condition").and_then(Value::as_str) {
            None | Some("any") => C::ANY,
            Some("on-failure") => C::ON_FAILURE,
            Some("none") => C::NONE,
            Some(other) => {
                return Err(BackendError::invalid(format!(
                    "{}: {other:?} is not any, on-failure or none",
                    path("condition")
                )))
            }
        };
        return Ok(Some(TaskSpecRestartPolicy {
            condition: Some(condition),
            delay: nanos(p.get("delay"), &path("delay"))?,
            max_attempts: int(p.get("max_attempts")),
            window: nanos(p.get("window"), &path("window"))?,
        }));
    }
    // `restart:` as docker stack deploy reads it.
    Ok(svc.restart.as_deref().map(|r| {
        let (condition, attempts) = match r.split_once(':') {
            Some(("on-failure", n)) => (C::ON_FAILURE, n.parse().ok()),
            _ => match r {
                "no" => (C::NONE, None),
                "on-failure" => (C::ON_FAILURE, None),
                _ => (C::ANY, None),
            },
        };
        TaskSpecRestartPolicy {
            condition: Some(condition),
            max_attempts: attempts,
            ..Default::default()
        }
    }))
}

/// `deploy.update_config`, with berth's defaults where the file is silent:
/// one task at a time, start-first, rolled back on failure, watched for
/// 5 s. Services whose tasks publish ports themselves go stop-first: a
/// host-mode port is held by the old task on its node, so a new one cannot
/// start beside it (with berth's proxy in front, they publish nothing).
fn update_config(
    svc: &Service,
    service: &str,
    publish: bool,
) -> Result<(ServiceSpecUpdateConfig, ServiceSpecRollbackConfig), BackendError> {
    let deploy = svc.extra.get("deploy");
    let default_start_first = !publish || svc.ports.is_empty();
    let path = |k: &str| format!("services.{service}.deploy.{k}");
    let read = |key: &str| -> Result<_, BackendError> {
        let c = deploy.and_then(|d| d.get(key));
        let get = |k: &str| c.and_then(|c| c.get(k));
        let order = match get("order").and_then(Value::as_str) {
            None => default_start_first,
            Some("start-first") => true,
            Some("stop-first") => false,
            Some(o) => {
                return Err(BackendError::invalid(format!(
                    "{}: {o:?} is not start-first or stop-first",
                    path(&format!("{key}.order"))
                )))
            }
        };
        let failure =
            get("failure_action")
                .and_then(Value::as_str)
                .unwrap_or(if key == "update_config" {
                    "rollback"
                } else {
                    "pause"
                });
        if !matches!(failure, "continue" | "pause" | "rollback")
            || key == "rollback_config" && failure == "rollback"
        {
            return Err(BackendError::invalid(format!(
                "{}: {failure:?} is not a failure action here",
                path(&format!("{key}.failure_action"))
            )));
        }
        Ok((
            int(get("parallelism")).unwrap_or(1),
            nanos(get("delay"), &path(&format!("{key}.delay")))?,
            failure,
            nanos(get("monitor"), &path(&format!("{key}.monitor")))?.or(Some(5_000_000_000)),
            get("max_failure_ratio").and_then(Value::as_f64),
            order,
        ))
    };
    let (parallelism, delay, failure, monitor, ratio, start_first) = read("update_config")?;
    let update = ServiceSpecUpdateConfig {
        parallelism: Some(parallelism),
        delay,
        failure_action: Some(match failure {
            "continue" => ServiceSpecUpdateConfigFailureActionEnum::CONTINUE,
            "pause" => ServiceSpecUpdateConfigFailureActionEnum::PAUSE,
            _ => ServiceSpecUpdateConfigFailureActionEnum::ROLLBACK,
        }),
        monitor,
        max_failure_ratio: ratio,
        order: Some(if start_first {
            ServiceSpecUpdateConfigOrderEnum::START_FIRST
        } else {
            ServiceSpecUpdateConfigOrderEnum::STOP_FIRST
        }),
    };
    let (parallelism, delay, failure, monitor, ratio, start_first) = read("rollback_config")?;
    let rollback = ServiceSpecRollbackConfig {
        parallelism: Some(parallelism),
        delay,
        failure_action: Some(match failure {
            "continue" => ServiceSpecRollbackConfigFailureActionEnum::CONTINUE,
            _ => ServiceSpecRollbackConfigFailureActionEnum::PAUSE,
        }),
        monitor,
        max_failure_ratio: ratio,
        order: Some(if start_first {
            ServiceSpecRollbackConfigOrderEnum::START_FIRST
        } else {
            ServiceSpecRollbackConfigOrderEnum::STOP_FIRST
        }),
    };
    Ok((update, rollback))
}

fn placement(svc: &Service) -> Option<TaskSpecPlacement> {
    let p = svc.extra.get("deploy")?.get("placement")?;
    let preferences = p.get("preferences").and_then(Value::as_array).map(|a| {
        a.iter()
            .filter_map(|x| x.get("spread").and_then(Value::as_str))
            .map(|s| TaskSpecPlacementPreferences {
                spread: Some(TaskSpecPlacementSpread {
                    spread_descriptor: Some(s.to_string()),
                }),
            })
            .collect()
    });
    Some(TaskSpecPlacement {
        constraints: str_list(p.get("constraints"))
            .filter(|_| p.get("constraints").is_some_and(Value::is_array)),
        preferences,
        max_replicas: int(p.get("max_replicas_per_node")),
        ..Default::default()
    })
}

fn resources(svc: &Service, service: &str) -> Result<Option<TaskSpecResources>, BackendError> {
    let Some(r) = svc.extra.get("deploy").and_then(|d| d.get("resources")) else {
        return Ok(None);
    };
    let path = |k: &str| format!("services.{service}.deploy.resources.{k}");
    let limits = match r.get("limits") {
        None => None,
        Some(l) => Some(Limit {
            nano_cpus: cpus(l.get("cpus"), &path("limits.cpus"))?,
            memory_bytes: bytes(l.get("memory"), &path("limits.memory"))?,
            pids: int(l.get("pids")),
        }),
    };
    let reservations = match r.get("reservations") {
        None => None,
        Some(l) => Some(ResourceObject {
            nano_cpus: cpus(l.get("cpus"), &path("reservations.cpus"))?,
            memory_bytes: bytes(l.get("memory"), &path("reservations.memory"))?,
            ..Default::default()
        }),
    };
    Ok(Some(TaskSpecResources {
        limits,
        reservations,
        ..Default::default()
    }))
}

/// The service spec `up` creates or updates.
pub fn service_spec(input: &ServiceInput) -> Result<ServiceSpec, BackendError> {
    let svc = input.svc;
    let name = input.service;
    let deploy = svc.extra.get("deploy");
    let env = svc
        .environment
        .iter()
        .filter_map(|(k, v)| {
            let v = v.as_ref()?;
            Some(if input.runtime && k == "PATH" {
                format!("PATH={}/bin:{v}", crate::images::RUNTIME_DIR)
            } else {
                format!("{k}={v}")
            })
        })
        .collect::<Vec<_>>();
    let mut container_labels: HashMap<String, String> = svc.labels.clone().into_iter().collect();
    container_labels.insert(labels::STACK.into(), input.project.into());
    let mut service_labels: HashMap<String, String> = deploy
        .and_then(|d| d.get("labels"))
        .and_then(Value::as_object)
        .map(|m| {
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
        .unwrap_or_default();
    service_labels.extend(input.labels.clone());
    service_labels.insert(labels::STACK.into(), input.project.into());
    service_labels.insert(labels::PROJECT.into(), input.project.into());
    service_labels.insert(labels::SERVICE.into(), name.into());
    service_labels.insert(labels::IMAGE.into(), svc.image.clone().unwrap_or_default());

    let stop_grace = nanos(
        svc.stop_grace_period
            .as_ref()
            .map(|s| Value::String(s.clone()))
            .as_ref(),
        &format!("services.{name}.stop_grace_period"),
    )?;
    let container = TaskSpecContainerSpec {
        image: Some(input.image.clone()),
        labels: Some(container_labels),
        command: svc.entrypoint.clone(),
        args: svc.command.clone(),
        hostname: svc.hostname.clone(),
        env: (!env.is_empty()).then_some(env),
        dir: svc.working_dir.clone(),
        user: svc.user.clone(),
        read_only: svc.read_only,
        stop_signal: svc.stop_signal.clone(),
        stop_grace_period: stop_grace,
        health_check: with_readiness(healthcheck(svc, name)?, input.readiness.as_ref()),
        mounts: (!input.mounts.is_empty()).then(|| input.mounts.clone()),
        secrets: (!input.secrets.is_empty()).then(|| input.secrets.clone()),
        configs: (!input.configs.is_empty()).then(|| input.configs.clone()),
        ..Default::default()
    };
    let networks = input
        .networks
        .iter()
        .map(|n| NetworkAttachmentConfig {
            target: Some(n.clone()),
            aliases: Some(vec![name.to_string()]),
            ..Default::default()
        })
        .collect();
    let mode = match replicas(svc) {
        None => ServiceSpecMode {
            global: Some(HashMap::new()),
            ..Default::default()
        },
        Some(n) => ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated { replicas: Some(n) }),
            ..Default::default()
        },
    };
    let mut ports = Vec::new();
    for (i, p) in svc.ports.iter().enumerate().filter(|_| input.publish) {
        let published = match p.published.as_deref() {
            None => None,
            Some(s) => Some(s.parse::<i64>().map_err(|_| {
                BackendError::invalid(format!(
                    "services.{name}.ports[{i}].published: {s:?} is not a port"
                ))
            })?),
        };
        ports.push(EndpointPortConfig {
            name: p.name.clone(),
            protocol: Some(match p.protocol.as_str() {
                "udp" => EndpointPortConfigProtocolEnum::UDP,
                "sctp" => EndpointPortConfigProtocolEnum::SCTP,
                _ => EndpointPortConfigProtocolEnum::TCP,
            }),
            target_port: Some(p.target as i64),
            published_port: published,
            // The routing mesh needs IPVS, which this kind of kernel may
            // lack; host mode works everywhere.
            publish_mode: Some(EndpointPortConfigPublishModeEnum::HOST),
        });
    }
    let endpoint_mode = deploy
        .and_then(|d| d.get("endpoint_mode"))
        .and_then(Value::as_str);
    let (update, rollback) = update_config(svc, name, input.publish)?;
    Ok(ServiceSpec {
        name: Some(service_name(input.project, name)),
        labels: Some(service_labels),
        task_template: Some(TaskSpec {
            container_spec: Some(container),
            resources: resources(svc, name)?,
            restart_policy: restart_policy(svc, name)?,
            placement: placement(svc),
            networks: Some(networks),
            ..Default::default()
        }),
        mode: Some(mode),
        update_config: Some(update),
        rollback_config: Some(rollback),
        endpoint_spec: Some(EndpointSpec {
            mode: Some(if endpoint_mode == Some("dnsrr") {
                bollard::models::EndpointSpecModeEnum::DNSRR
            } else {
                bollard::models::EndpointSpecModeEnum::VIP
            }),
            ports: (!ports.is_empty()).then_some(ports),
        }),
        ..Default::default()
    })
}

/// Label `spec`'s containers with a digest of its task template (the
/// label aside), just before it is sent: see [`labels::TASK_TEMPLATE`].
pub fn stamp(spec: &mut ServiceSpec) {
    let Some(template) = spec.task_template.as_mut() else {
        return;
    };
    let container = template.container_spec.get_or_insert_with(Default::default);
    if let Some(l) = container.labels.as_mut() {
        l.remove(labels::TASK_TEMPLATE);
    }
    let json = serde_json::to_vec(template).unwrap_or_default();
    let digest = berth_oci::Digest::of(&json).to_string();
    template
        .container_spec
        .get_or_insert_with(Default::default)
        .labels
        .get_or_insert_with(Default::default)
        .insert(labels::TASK_TEMPLATE.into(), digest);
}

/// The name of a project's proxy service.
pub fn proxy_name(project: &str) -> String {
    format!("{project}_berth-proxy")
}

/// The global service that publishes `routes` on every node (host mode)
/// and forwards to the tasks behind them.
pub fn proxy_spec(
    project: &str,
    image: &str,
    routes: &[crate::proxy::Route],
    networks: &[String],
    service_labels: HashMap<String, String>,
) -> ServiceSpec {
    let mut l = service_labels;
    l.insert(labels::STACK.into(), project.into());
    l.insert(labels::PROJECT.into(), project.into());
    let ports = routes
        .iter()
        .map(|r| EndpointPortConfig {
            protocol: Some(EndpointPortConfigProtocolEnum::TCP),
            target_port: Some(r.listen as i64),
            published_port: Some(r.listen as i64),
            publish_mode: Some(EndpointPortConfigPublishModeEnum::HOST),
            ..Default::default()
        })
        .collect();
    ServiceSpec {
        name: Some(proxy_name(project)),
        labels: Some(l),
        task_template: Some(TaskSpec {
            container_spec: Some(TaskSpecContainerSpec {
                image: Some(image.into()),
                args: Some(routes.iter().map(|r| r.to_string()).collect()),
                labels: Some(HashMap::from([(labels::STACK.into(), project.into())])),
                ..Default::default()
            }),
            restart_policy: Some(TaskSpecRestartPolicy {
                condition: Some(TaskSpecRestartPolicyConditionEnum::ANY),
                ..Default::default()
            }),
            networks: Some(
                networks
                    .iter()
                    .map(|n| NetworkAttachmentConfig {
                        target: Some(n.clone()),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        mode: Some(ServiceSpecMode {
            global: Some(HashMap::new()),
            ..Default::default()
        }),
        // Its ports are host-mode: a node's new proxy can only start once
        // the old one let go of them.
        update_config: Some(ServiceSpecUpdateConfig {
            parallelism: Some(1),
            order: Some(ServiceSpecUpdateConfigOrderEnum::STOP_FIRST),
            failure_action: Some(ServiceSpecUpdateConfigFailureActionEnum::ROLLBACK),
            ..Default::default()
        }),
        endpoint_spec: Some(EndpointSpec {
            mode: Some(bollard::models::EndpointSpecModeEnum::VIP),
            ports: Some(ports),
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(yaml: &str) -> Project {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("compose.yaml"), yaml).unwrap();
        let options = berth_compose::Options {
            cwd: dir.path().to_path_buf(),
            project_name: Some("p".into()),
            ..Default::default()
        };
        berth_compose::load(&options).expect("loads").project
    }

    fn spec_of(p: &Project, service: &str) -> ServiceSpec {
        service_spec(&ServiceInput {
            project: &p.name,
            service,
            svc: &p.services[service],
            image: "r:5000/x@sha256:00".into(),
            labels: HashMap::new(),
            networks: vec!["p_default".into()],
            publish: true,
            secrets: Vec::new(),
            configs: Vec::new(),
            runtime: false,
            mounts: mounts(p, service, &p.services[service]).unwrap(),
            readiness: None,
        })
        .unwrap()
    }

    #[test]
    fn deploy_keys_become_the_swarm_service() {
        let p = project(
            "services:\n  web:\n    image: x\n    ports: [\"8080:3000\"]\n    deploy:\n      replicas: 3\n      placement:\n        constraints: [node.role==worker]\n        preferences: [{spread: node.id}]\n      resources:\n        limits: {cpus: '0.5', memory: 64M}\n      restart_policy: {condition: on-failure, max_attempts: 3}\n      update_config: {order: start-first, parallelism: 2}\n    healthcheck:\n      test: [CMD, 'true']\n      interval: 2s\n",
        );
        let s = spec_of(&p, "web");
        assert_eq!(s.name.as_deref(), Some("p_web"));
        assert_eq!(s.labels.as_ref().unwrap()[labels::STACK], "p");
        assert_eq!(s.mode.unwrap().replicated.unwrap().replicas, Some(3));
        let t = s.task_template.unwrap();
        let pl = t.placement.unwrap();
        assert_eq!(pl.constraints.unwrap(), ["node.role==worker"]);
        assert_eq!(pl.preferences.unwrap().len(), 1);
        let lim = t.resources.unwrap().limits.unwrap();
        assert_eq!(
            (lim.nano_cpus, lim.memory_bytes),
            (Some(500_000_000), Some(64 << 20))
        );
        let rp = t.restart_policy.unwrap();
        assert_eq!(
            rp.condition,
            Some(TaskSpecRestartPolicyConditionEnum::ON_FAILURE)
        );
        assert_eq!(rp.max_attempts, Some(3));
        assert_eq!(
            t.container_spec.unwrap().health_check.unwrap().interval,
            Some(2_000_000_000)
        );
        let u = s.update_config.unwrap();
        assert_eq!(
            (u.parallelism, u.order),
            (Some(2), Some(ServiceSpecUpdateConfigOrderEnum::START_FIRST))
        );
        assert_eq!(
            u.failure_action,
            Some(ServiceSpecUpdateConfigFailureActionEnum::ROLLBACK)
        );
        let port = &s.endpoint_spec.unwrap().ports.unwrap()[0];
        assert_eq!(
            port.publish_mode,
            Some(EndpointPortConfigPublishModeEnum::HOST)
        );
        assert_eq!(
            (port.published_port, port.target_port),
            (Some(8080), Some(3000))
        );
    }

    #[test]
    fn the_readiness_probe_fills_only_what_the_service_leaves_out() {
        let probe = HealthConfig {
            test: Some(vec!["CMD".into(), "/.berth/tcp-ready".into()]),
            interval: Some(1),
            retries: Some(3),
            start_period: Some(300),
            ..Default::default()
        };
        let input_of = |yaml: &str| {
            let p = project(yaml);
            let svc = &p.services["web"];
            service_spec(&ServiceInput {
                project: &p.name,
                service: "web",
                svc,
                image: "r:5000/x@sha256:00".into(),
                labels: HashMap::new(),
                networks: vec!["p_default".into()],
                publish: false,
                secrets: Vec::new(),
                configs: Vec::new(),
                runtime: false,
                mounts: Vec::new(),
                readiness: Some(probe.clone()),
            })
            .unwrap()
            .task_template
            .unwrap()
            .container_spec
            .unwrap()
            .health_check
            .unwrap()
        };
        let none = input_of("services:\n  web:\n    image: x\n");
        assert_eq!(none, probe);
        let tuned = input_of(
            "services:\n  web:\n    image: x\n    healthcheck:\n      start_period: 20s\n",
        );
        assert_eq!(tuned.test, probe.test);
        assert_eq!(tuned.start_period, Some(20_000_000_000));
        assert_eq!(tuned.interval, Some(1));
        let own = input_of(
            "services:\n  web:\n    image: x\n    healthcheck:\n      test: [CMD, 'true']\n",
        );
        assert_eq!(own.test, Some(vec!["CMD".to_string(), "true".to_string()]));
        assert_eq!(own.start_period, None);
    }

    #[test]
    fn the_template_stamp_follows_what_the_tasks_get() {
        let p = project("services:\n  web:\n    image: x\n    command: [a]\n");
        let stamped = |spec: &mut ServiceSpec| {
            stamp(spec);
            let labels = spec
                .task_template
                .as_ref()
                .unwrap()
                .container_spec
                .as_ref()
                .unwrap()
                .labels
                .clone()
                .unwrap();
            labels[labels::TASK_TEMPLATE].clone()
        };
        let mut a = spec_of(&p, "web");
        let first = stamped(&mut a);
        assert_eq!(stamped(&mut a), first, "stamping again changes nothing");
        let other = project("services:\n  web:\n    image: x\n    command: [b]\n");
        assert_ne!(stamped(&mut spec_of(&other, "web")), first);
    }

    #[test]
    fn global_mode_and_the_default_update_order() {
        let p = project(
            "services:\n  a:\n    image: x\n    deploy: {mode: global}\n  b:\n    image: x\n",
        );
        assert!(spec_of(&p, "a").mode.unwrap().global.is_some());
        // No published port: start-first by default.
        let u = spec_of(&p, "b").update_config.unwrap();
        assert_eq!(u.order, Some(ServiceSpecUpdateConfigOrderEnum::START_FIRST));
        assert_eq!(u.parallelism, Some(1));
    }

    #[test]
    fn keys_swarm_cannot_honour_are_refused_by_path() {
        for (yaml, path) in [
            ("services:\n  a:\n    image: x\n    privileged: true\n", "services.a.privileged"),
            ("services:\n  a:\n    image: x\n    deploy: {resources: {reservations: {devices: [{capabilities: [gpu]}]}}}\n", "services.a.deploy.resources.reservations.devices"),
            ("services:\n  a:\n    image: x\n    ports: [\"127.0.0.1:80:80\"]\n", "services.a.ports[0].host_ip"),
            ("services:\n  a:\n    image: x\n    network_mode: host\n", "services.a.network_mode"),
            ("services:\n  a:\n    image: x\n    volumes: [./d:/d]\n", "services.a.volumes[0]"),
            ("services:\n  a:\n    image: x\n    volumes: [{type: npipe, source: p, target: /p}]\n", "services.a.volumes[0].type"),
            ("services:\n  a:\n    image: x\nnetworks:\n  n: {driver: bridge}\n", "networks.n.driver"),
        ] {
            let err = check_project(&project(yaml)).unwrap_err();
            assert!(err.message.starts_with(&format!("{path}:")), "{yaml}: {err}");
            assert_eq!(err.kind, ErrorKind::Unsupported);
            assert!(!err.message.contains('\n'));
        }
    }

    #[test]
    fn keys_without_a_swarm_meaning_are_listed_not_dropped() {
        let p = project("services:\n  a:\n    image: x\n    depends_on: [b]\n  b:\n    image: x\n    container_name: bee\n");
        check_project(&p).unwrap();
        let listed = not_applied(&p);
        assert!(
            listed
                .iter()
                .any(|l| l.starts_with("services.a.depends_on ")),
            "{listed:?}"
        );
        assert!(
            listed
                .iter()
                .any(|l| l.starts_with("services.b.container_name ")),
            "{listed:?}"
        );
    }

    #[test]
    fn named_volumes_are_made_per_node_with_their_driver_and_labels() {
        let p = project(
            "services:\n  db:\n    image: x\n    volumes:\n      - data:/var/lib/db\n      - type: volume\n        source: shared\n        target: /shared\n        read_only: true\n      - type: tmpfs\n        target: /tmp\n        tmpfs: {size: 1M}\n      - /anon\nvolumes:\n  data:\n    driver: local\n    driver_opts: {type: tmpfs, device: tmpfs}\n    labels: {tier: db}\n  shared: {external: true, name: team-shared}\n",
        );
        check_project(&p).unwrap();
        let m = mounts(&p, "db", &p.services["db"]).unwrap();
        assert_eq!(m.len(), 4);
        assert_eq!(m[0].source.as_deref(), Some("p_data"));
        let o = m[0].volume_options.as_ref().unwrap();
        let d = o.driver_config.as_ref().unwrap();
        assert_eq!(d.name.as_deref(), Some("local"));
        assert_eq!(d.options.as_ref().unwrap()["device"], "tmpfs");
        let l = o.labels.as_ref().unwrap();
        assert_eq!((l["tier"].as_str(), l[labels::STACK].as_str()), ("db", "p"));
        // External: the node's own volume of that name, nothing asked of it.
        assert_eq!(m[1].source.as_deref(), Some("team-shared"));
        assert!(m[1].volume_options.is_none());
        assert_eq!(m[1].read_only, Some(true));
        assert_eq!(
            m[2].tmpfs_options.as_ref().unwrap().size_bytes,
            Some(1 << 20)
        );
        // Anonymous: made per task, labelled for down -v.
        assert!(m[3].source.is_none());
        assert!(m[3].volume_options.as_ref().unwrap().labels.is_some());
        let notes = per_node_volumes(&p, &["db"]);
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(notes[0].starts_with("volumes.data: volume data is per node: a task rescheduled to another node starts with an empty volume (mounted by db)"), "{notes:?}");
        assert!(notes[1].contains("external"), "{notes:?}");
        assert!(spec_of(&p, "db")
            .task_template
            .unwrap()
            .container_spec
            .unwrap()
            .mounts
            .is_some());
    }
}
