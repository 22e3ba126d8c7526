//! Compose keys the embedded engine cannot honour. A valid compose file
//! may use them (`config -q` passes), but `up` refuses them before it makes
//! anything, with one line naming the key path, instead of running the
//! service without what the key asked for.

use berth_compose::model::Service;
use berth_compose::Project;
use serde_json::Value;

/// The first key of `project` the embedded engine cannot honour, as
/// `key.path: why`.
pub fn check(project: &Project) -> Result<(), String> {
    for (name, svc) in &project.services {
        check_service(project, name, svc)?;
    }
    for (key, v) in &project.volumes {
        if let Some(driver) = v.driver.as_deref().filter(|d| *d != "local") {
            return Err(format!(
                "volumes.{key}.driver: {driver:?} is not available (the embedded engine has the local driver only)"
            ));
        }
        if v.extra.get("driver_opts").is_some_and(non_empty) {
            return Err(format!(
                "volumes.{key}.driver_opts: the local driver's options (bind and tmpfs volumes) are not supported yet"
            ));
        }
    }
    for (key, n) in &project.networks {
        if n.external == Some(true) {
            continue;
        }
        if let Some(driver) = n.driver.as_deref().filter(|d| *d != "bridge") {
            return Err(format!(
                "networks.{key}.driver: {driver:?} is not available (the embedded engine has the bridge driver only)"
            ));
        }
        if n.extra.get("driver_opts").is_some_and(non_empty) {
            return Err(format!(
                "networks.{key}.driver_opts: bridge driver options are not supported yet"
            ));
        }
    }
    Ok(())
}

fn non_empty(v: &Value) -> bool {
    match v {
        Value::Object(m) => !m.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Null => false,
        _ => true,
    }
}

fn check_service(project: &Project, name: &str, svc: &Service) -> Result<(), String> {
    let key = |k: &str| format!("services.{name}.{k}");
    if let Some(platform) = svc.extra.get("platform").and_then(Value::as_str) {
        let host = host_platform();
        let wanted = platform.trim_end_matches("/v1").to_ascii_lowercase();
        if wanted != host && !host.starts_with(&format!("{wanted}/")) {
            return Err(format!(
                "{}: {platform} cannot run on this {host} host",
                key("platform")
            ));
        }
    }
    // Windows-only, or hardware and storage this engine has no way to give.
    for (k, why) in [
        (
            "gpus",
            "GPU devices are not supported by the embedded engine",
        ),
        ("isolation", "isolation modes are a Windows feature"),
        ("credential_spec", "credential specs are a Windows feature"),
        (
            "storage_opt",
            "per-container storage options are not supported by the embedded engine's overlay",
        ),
        (
            "device_cgroup_rules",
            "device cgroup rules are not supported yet (use devices)",
        ),
        ("cgroup_parent", "a cgroup parent is not supported yet"),
        ("blkio_config", "block I/O limits are not supported yet"),
        ("post_start", "lifecycle hooks are not supported yet"),
        ("pre_stop", "lifecycle hooks are not supported yet"),
        ("cpuset", "CPU pinning is not supported yet"),
        (
            "cpu_period",
            "CFS period settings are not supported yet (use cpus)",
        ),
        (
            "cpu_quota",
            "CFS quota settings are not supported yet (use cpus)",
        ),
        ("cpu_rt_runtime", "real-time scheduling is not supported"),
        ("cpu_rt_period", "real-time scheduling is not supported"),
        ("cpu_count", "cpu_count is a Windows setting"),
        ("cpu_percent", "cpu_percent is a Windows setting"),
        (
            "mem_reservation",
            "memory reservations are not supported yet (use mem_limit)",
        ),
        ("mem_swappiness", "swappiness is not supported yet"),
        (
            "oom_kill_disable",
            "disabling the OOM killer is not supported",
        ),
        ("oom_score_adj", "OOM score adjustment is not supported yet"),
        ("domainname", "a domain name is not supported yet"),
        ("mac_address", "a fixed MAC address is not supported yet"),
        (
            "external_links",
            "links to containers outside the project are not supported",
        ),
        (
            "use_api_socket",
            "the embedded engine has no Docker API socket to give",
        ),
    ] {
        if svc.extra.get(k).is_some_and(non_empty) {
            return Err(format!("{}: {why}", key(k)));
        }
    }
    if let Some(reservations) = svc
        .extra
        .get("deploy")
        .and_then(|d| d.get("resources"))
        .and_then(|r| r.get("reservations"))
        .filter(|r| non_empty(r))
    {
        let what = if reservations.get("devices").is_some() {
            "device (GPU) reservations are not supported by the embedded engine"
        } else {
            "reservations are not supported yet (use limits)"
        };
        return Err(format!("{}: {what}", key("deploy.resources.reservations")));
    }
    for (i, m) in svc.volumes.iter().enumerate() {
        if m.extra
            .get("volume")
            .and_then(|v| v.get("subpath"))
            .is_some_and(non_empty)
        {
            return Err(format!(
                "{}[{i}].volume.subpath: mounting part of a volume is not supported yet",
                key("volumes")
            ));
        }
    }
    if let Some(runtime) = svc.extra.get("runtime").and_then(Value::as_str) {
        if !matches!(runtime, "runc" | "io.containerd.runc.v2") {
            return Err(format!(
                "{}: {runtime:?} is not available (containers run through youki's libcontainer, runc-compatible)",
                key("runtime")
            ));
        }
    }
    if let Some(mode) = svc.network_mode.as_deref() {
        let known = matches!(mode, "host" | "none" | "bridge" | "default")
            || mode.starts_with("container:")
            || mode
                .strip_prefix("service:")
                .is_some_and(|s| project.services.contains_key(s));
        if !known {
            return Err(format!(
                "{}: {mode:?} is not supported (host, none, bridge, service:NAME of this project, container:NAME)",
                key("network_mode")
            ));
        }
    }
    port_protocol(name, svc)?;
    super::restart::RestartPolicy::of_service(svc.restart.as_deref(), svc.extra.get("deploy"))
        .map_err(|e| format!("services.{name}.{e}"))?;
    if let Some(list) = svc.extra.get("tmpfs") {
        let entries: Vec<&str> = match list {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        for (i, t) in entries.iter().enumerate() {
            tmpfs_options(t).map_err(|e| format!("{}[{i}]: {e}", key("tmpfs")))?;
        }
    }
    // Namespace sharing: only the default (a namespace of its own) is there.
    for k in ["ipc", "pid", "uts", "cgroup"] {
        if let Some(mode) = svc.extra.get(k).and_then(Value::as_str) {
            if !matches!(mode, "private" | "") {
                return Err(format!(
                    "{}: {mode:?} is not supported yet (each container has its own {k} namespace)",
                    key(k)
                ));
            }
        }
    }
    Ok(())
}

/// How the port proxy treats the service's published ports:
/// `x-berth: {protocol: http|tcp|auto}`, auto (detected per connection) by
/// default.
pub fn port_protocol(name: &str, svc: &Service) -> Result<berth_proxy::Protocol, String> {
    let key = format!("services.{name}.x-berth.protocol");
    match svc.extra.get("x-berth").and_then(|x| x.get("protocol")) {
        None | Some(Value::Null) => Ok(berth_proxy::Protocol::Auto),
        Some(Value::String(p)) => p.parse().map_err(|e| format!("{key}: {e}")),
        Some(_) => Err(format!("{key}: expected http, tcp or auto")),
    }
}

/// A service-level `tmpfs` entry, `TARGET[:OPTIONS]`: its target, size
/// and mode. Mounts are always `nosuid,nodev,noexec`, as docker's are by
/// default; options that would change that are refused.
pub fn tmpfs_options(entry: &str) -> Result<(String, Option<u64>, Option<u32>), String> {
    let (target, opts) = entry.split_once(':').unwrap_or((entry, ""));
    let (mut size, mut mode) = (None, None);
    for opt in opts.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        match opt.split_once('=') {
            Some(("size", v)) => {
                size = Some(
                    berth_compose::units::parse_bytes(v)
                        .ok_or_else(|| format!("size {v:?} is not a size"))?,
                )
            }
            Some(("mode", v)) => {
                mode = Some(
                    u32::from_str_radix(v, 8)
                        .ok()
                        .filter(|m| *m <= 0o7777)
                        .ok_or_else(|| format!("mode {v:?} is not an octal mode"))?,
                )
            }
            None if matches!(opt, "rw" | "noexec" | "nosuid" | "nodev") => {}
            _ => {
                return Err(format!(
                    "tmpfs option {opt:?} is not supported (size=, mode=, rw)"
                ))
            }
        }
    }
    Ok((target.to_string(), size, mode))
}

/// `linux/amd64`, `linux/arm64`, … for the machine berth runs on.
fn host_platform() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    };
    format!("linux/{arch}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err(doc: Value) -> String {
        let p: Project = serde_json::from_value(doc).unwrap();
        check(&p).unwrap_err()
    }

    #[test]
    fn refusals_name_the_key_path() {
        let other = if host_platform() == "linux/amd64" {
            "linux/arm64"
        } else {
            "linux/amd64"
        };
        let e = err(json!({"name": "p", "services": {"app": {"platform": other}}}));
        assert!(
            e.starts_with(&format!(
                "services.app.platform: {other} cannot run on this"
            )),
            "{e}"
        );
        let e =
            err(json!({"name": "p", "services": {"app": {"network_mode": "ns:/proc/1/ns/net"}}}));
        assert!(e.starts_with("services.app.network_mode:"), "{e}");
        let e = err(json!({"name": "p", "services": {"app": {"network_mode": "service:ghost"}}}));
        assert!(e.starts_with("services.app.network_mode:"), "{e}");
        let e = err(json!({"name": "p", "services": {"app": {"pid": "host"}}}));
        assert!(e.starts_with("services.app.pid:"), "{e}");
        let e = err(json!({"name": "p", "services": {"app": {"x-berth": {"protocol": "h2"}}}}));
        assert!(e.starts_with("services.app.x-berth.protocol:"), "{e}");
        let e = err(json!({"name": "p", "services": {"app": {"tmpfs": ["/a:size=1m,exec"]}}}));
        assert!(
            e.starts_with("services.app.tmpfs[0]: tmpfs option \"exec\""),
            "{e}"
        );
        assert_eq!(
            tmpfs_options("/scratch:size=1m,mode=700"),
            Ok(("/scratch".to_string(), Some(1 << 20), Some(0o700)))
        );
        let e = err(json!({"name": "p", "services": {"app": {"runtime": "nvidia"}}}));
        assert!(e.starts_with("services.app.runtime:"), "{e}");
        let e =
            err(json!({"name": "p", "services": {"app": {}}, "volumes": {"v": {"driver": "nfs"}}}));
        assert!(e.starts_with("volumes.v.driver:"), "{e}");
        let e = err(
            json!({"name": "p", "services": {"app": {}}, "networks": {"n": {"driver": "overlay"}}}),
        );
        assert!(e.starts_with("networks.n.driver:"), "{e}");
    }

    #[test]
    fn what_it_honours_passes() {
        let p: Project = serde_json::from_value(json!({
            "name": "p",
            "services": {
                "db": {"platform": host_platform(), "runtime": "runc", "ipc": "private"},
                "app": {"network_mode": "service:db"}
            },
            "volumes": {"v": {"driver": "local"}},
            "networks": {"n": {"driver": "bridge"}, "ext": {"external": true, "driver": "overlay"}}
        }))
        .unwrap();
        assert_eq!(check(&p), Ok(()));
    }
}
