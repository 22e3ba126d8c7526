//! A service's security and resource keys (`cap_add`, `security_opt`,
//! `mem_limit`, `ulimits`, `deploy.resources.limits`, …) as the sandbox's
//! [`ContainerSpec`] fields. Values arrive normalized by the loader (sizes
//! in bytes, `sysctls` and `ulimits` as maps).

use berth_compose::model::Service;
use berth_sandbox::{Blkio, ContainerSpec, DeviceSpec, SeccompChoice};
use serde_json::Value as Json;
use std::path::PathBuf;

/// Apply the service's keys to `spec`; an error names the key.
pub fn apply(svc: &Service, spec: &mut ContainerSpec) -> Result<(), String> {
    let get = |k: &str| svc.extra.get(k);
    let limits = get("deploy")
        .and_then(|d| d.get("resources"))
        .and_then(|r| r.get("limits"));
    let limit = |k: &str| limits.and_then(|l| l.get(k));

    spec.cap_add = strings(get("cap_add"));
    spec.cap_drop = strings(get("cap_drop"));
    spec.privileged = get("privileged").and_then(Json::as_bool) == Some(true);
    for opt in strings(get("security_opt")) {
        // docker accepts both `key=value` and the older `key:value`.
        let (key, value) = opt.split_once(['=', ':']).unwrap_or((opt.as_str(), "true"));
        match key {
            "no-new-privileges" => spec.no_new_privileges = value != "false",
            "seccomp" => {
                spec.seccomp = match value {
                    "unconfined" => SeccompChoice::Unconfined,
                    path => SeccompChoice::Profile(PathBuf::from(path)),
                }
            }
            // AppArmor and SELinux labels have no meaning here.
            "apparmor" | "label" => {}
            _ => return Err(format!("security_opt: unknown option {opt:?}")),
        }
    }
    spec.memory = bytes("mem_limit", get("mem_limit"))?
        .or(bytes("deploy.resources.limits.memory", limit("memory"))?);
    spec.memory_swap = match get("memswap_limit") {
        Some(v) if v.as_i64() == Some(-1) || v.as_str() == Some("-1") => Some(-1),
        other => bytes("memswap_limit", other)?.map(|b| b as i64),
    };
    spec.cpus =
        number("cpus", get("cpus"))?.or(number("deploy.resources.limits.cpus", limit("cpus"))?);
    spec.cpu_shares = number("cpu_shares", get("cpu_shares"))?.map(|n| n as u64);
    spec.pids_limit = number("pids_limit", get("pids_limit"))?
        .or(number("deploy.resources.limits.pids", limit("pids"))?)
        .map(|n| n as i64);
    spec.shm_size = bytes("shm_size", get("shm_size"))?;
    if let Some(Json::Object(map)) = get("ulimits") {
        for (name, v) in map {
            let (soft, hard) = match v {
                Json::Object(o) => (
                    o.get("soft").and_then(as_u64),
                    o.get("hard").and_then(as_u64),
                ),
                other => (as_u64(other), as_u64(other)),
            };
            match (soft, hard) {
                (Some(s), Some(h)) => spec.ulimits.push((name.clone(), s, h)),
                _ => return Err(format!("ulimits.{name}: expected a number or soft/hard")),
            }
        }
    }
    if let Some(Json::Object(map)) = get("sysctls") {
        for (k, v) in map {
            let value = v
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string());
            spec.sysctls.push((k.clone(), value));
        }
    }
    for d in strings(get("devices")) {
        let mut parts = d.splitn(3, ':');
        let host = parts.next().unwrap_or_default();
        let container = parts.next().filter(|c| !c.is_empty()).unwrap_or(host);
        let permissions = parts.next().unwrap_or("rwm");
        spec.devices.push(DeviceSpec {
            host_path: PathBuf::from(host),
            container_path: container.to_string(),
            permissions: permissions.to_string(),
        });
    }
    spec.group_add = strings(get("group_add"));

    // cgroup keys (issue 13). The sandbox checks ranges and what this
    // host's cgroup layout can do; these only carry the values over.
    let reservations = get("deploy")
        .and_then(|d| d.get("resources"))
        .and_then(|r| r.get("reservations"));
    // docker compose maps a memory reservation to the soft limit; a CPU
    // reservation is a swarm scheduling hint with no effect on one host.
    spec.memory_reservation = bytes("mem_reservation", get("mem_reservation"))?.or(bytes(
        "deploy.resources.reservations.memory",
        reservations.and_then(|r| r.get("memory")),
    )?);
    spec.cpuset_cpus = get("cpuset")
        .and_then(Json::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    spec.cpu_period = integer("cpu_period", get("cpu_period"))?
        .map(|n| u64::try_from(n).map_err(|_| format!("cpu_period: {n} is negative")))
        .transpose()?;
    spec.cpu_quota = integer("cpu_quota", get("cpu_quota"))?;
    spec.cpu_rt_runtime = integer("cpu_rt_runtime", get("cpu_rt_runtime"))?;
    spec.cpu_rt_period = integer("cpu_rt_period", get("cpu_rt_period"))?
        .map(|n| u64::try_from(n).map_err(|_| format!("cpu_rt_period: {n} is negative")))
        .transpose()?;
    // -1 is docker's "the kernel's default".
    spec.memory_swappiness = match integer("mem_swappiness", get("mem_swappiness"))? {
        None | Some(-1) => None,
        Some(n) => Some(
            u64::try_from(n)
                .map_err(|_| format!("mem_swappiness: {n}: the range is from 0 to 100"))?,
        ),
    };
    spec.oom_kill_disable = get("oom_kill_disable").and_then(Json::as_bool) == Some(true);
    spec.oom_score_adj = integer("oom_score_adj", get("oom_score_adj"))?
        .map(|n| i32::try_from(n).map_err(|_| format!("oom_score_adj: {n} is out of range")))
        .transpose()?;
    spec.cgroup_parent = get("cgroup_parent")
        .and_then(Json::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    spec.cgroup_private = get("cgroup").and_then(Json::as_str) == Some("private");
    spec.device_cgroup_rules = strings(get("device_cgroup_rules"));
    if let Some(b) = get("blkio_config") {
        spec.blkio = blkio(b)?;
    }
    Ok(())
}

/// `blkio_config`: `weight`, `weight_device: [{path, weight}]` and the
/// `device_{read,write}_{bps,iops}: [{path, rate}]` throttles (bps rates
/// may be sizes: `12mb`).
fn blkio(b: &Json) -> Result<Blkio, String> {
    let key = |k: &str| format!("blkio_config.{k}");
    let mut out = Blkio {
        weight: integer(&key("weight"), b.get("weight"))?
            .map(|w| {
                u16::try_from(w).map_err(|_| format!("{}: {w} is out of range", key("weight")))
            })
            .transpose()?,
        ..Blkio::default()
    };
    let entries = |k: &str| -> Result<Vec<(PathBuf, &Json)>, String> {
        let Some(list) = b.get(k) else {
            return Ok(Vec::new());
        };
        let Json::Array(items) = list else {
            return Err(format!("{}: expected a list of {{path, …}}", key(k)));
        };
        items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let path = item
                    .get("path")
                    .and_then(Json::as_str)
                    .ok_or_else(|| format!("{}[{i}].path: missing", key(k)))?;
                Ok((PathBuf::from(path), item))
            })
            .collect()
    };
    for (path, item) in entries("weight_device")? {
        let w = integer(&key("weight_device.weight"), item.get("weight"))?
            .ok_or_else(|| format!("{}: missing", key("weight_device.weight")))?;
        let w = u16::try_from(w)
            .map_err(|_| format!("{}: {w} is out of range", key("weight_device.weight")))?;
        out.weight_device.push((path, w));
    }
    for (k, sizes) in [
        ("device_read_bps", true),
        ("device_write_bps", true),
        ("device_read_iops", false),
        ("device_write_iops", false),
    ] {
        let mut list = Vec::new();
        for (path, item) in entries(k)? {
            let what = key(&format!("{k}.rate"));
            let rate = if sizes {
                bytes(&what, item.get("rate"))?
            } else {
                integer(&what, item.get("rate"))?
                    .map(|n| u64::try_from(n).map_err(|_| format!("{what}: {n} is negative")))
                    .transpose()?
            }
            .ok_or_else(|| format!("{what}: missing"))?;
            list.push((path, rate));
        }
        match k {
            "device_read_bps" => out.read_bps = list,
            "device_write_bps" => out.write_bps = list,
            "device_read_iops" => out.read_iops = list,
            _ => out.write_iops = list,
        }
    }
    Ok(out)
}

/// An integer key (the loader has normalized most to numbers; a string of
/// digits still counts).
fn integer(key: &str, v: Option<&Json>) -> Result<Option<i64>, String> {
    match v {
        None | Some(Json::Null) => Ok(None),
        Some(Json::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| format!("{key}: {n} is not an integer")),
        Some(Json::String(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| format!("{key}: {s:?} is not an integer")),
        Some(other) => Err(format!("{key}: {other} is not an integer")),
    }
}

fn strings(v: Option<&Json>) -> Vec<String> {
    match v {
        Some(Json::Array(items)) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| i.to_string())
            })
            .collect(),
        Some(Json::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    }
}

fn as_u64(v: &Json) -> Option<u64> {
    v.as_u64().or_else(|| v.as_str()?.parse().ok())
}

fn bytes(key: &str, v: Option<&Json>) -> Result<Option<u64>, String> {
    match v {
        None => Ok(None),
        Some(Json::Number(n)) => n
            .as_u64()
            .map(Some)
            .ok_or_else(|| format!("{key}: invalid size {n}")),
        Some(Json::String(s)) => berth_compose::units::parse_bytes(s)
            .map(Some)
            .ok_or_else(|| format!("{key}: invalid size {s:?}")),
        Some(other) => Err(format!("{key}: invalid size {other}")),
    }
}

fn number(key: &str, v: Option<&Json>) -> Result<Option<f64>, String> {
    match v {
        None => Ok(None),
        Some(Json::Number(n)) => Ok(n.as_f64()),
        Some(Json::String(s)) => s
            .parse()
            .map(Some)
            .map_err(|_| format!("{key}: invalid number {s:?}")),
        Some(other) => Err(format!("{key}: invalid number {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(yaml: serde_json::Value) -> Service {
        serde_json::from_value(yaml).unwrap()
    }

    #[test]
    fn keys_reach_the_spec() {
        let svc = service(serde_json::json!({
            "cap_add": ["NET_ADMIN"], "cap_drop": ["MKNOD"],
            "security_opt": ["no-new-privileges:true", "seccomp=unconfined"],
            "mem_limit": "67108864", "memswap_limit": -1, "cpus": 0.5, "cpu_shares": 512,
            "pids_limit": 50, "shm_size": "33554432",
            "ulimits": {"nofile": {"soft": 1024, "hard": 2048}, "nproc": 65535},
            "sysctls": {"net.core.somaxconn": "1024"},
            "devices": ["/dev/null:/dev/mynull:r"], "group_add": ["audio"]
        }));
        let mut spec = ContainerSpec::default();
        apply(&svc, &mut spec).unwrap();
        assert_eq!(spec.cap_add, ["NET_ADMIN"]);
        assert!(spec.no_new_privileges);
        assert_eq!(spec.seccomp, SeccompChoice::Unconfined);
        assert_eq!(spec.memory, Some(64 << 20));
        assert_eq!(spec.memory_swap, Some(-1));
        assert_eq!(spec.cpus, Some(0.5));
        assert_eq!(spec.cpu_shares, Some(512));
        assert_eq!(spec.pids_limit, Some(50));
        assert_eq!(spec.shm_size, Some(32 << 20));
        assert!(spec.ulimits.contains(&("nofile".into(), 1024, 2048)));
        assert!(spec.ulimits.contains(&("nproc".into(), 65535, 65535)));
        assert_eq!(
            spec.sysctls,
            [("net.core.somaxconn".to_string(), "1024".to_string())]
        );
        assert_eq!(spec.devices[0].container_path, "/dev/mynull");
        assert_eq!(spec.devices[0].permissions, "r");
        assert_eq!(spec.group_add, ["audio"]);
    }

    #[test]
    fn cgroup_keys_reach_the_spec() {
        let svc = service(serde_json::json!({
            "cpuset": "0-1", "cpu_period": 50000, "cpu_quota": "25000",
            "cpu_rt_runtime": 10000, "cpu_rt_period": 500000,
            "mem_swappiness": 10, "oom_kill_disable": true, "oom_score_adj": -500,
            "cgroup_parent": "apps", "cgroup": "private",
            "device_cgroup_rules": ["c 1:3 mr"],
            "deploy": {"resources": {"reservations": {"memory": "33554432", "cpus": "0.5"}}},
            "blkio_config": {
                "weight": 300,
                "weight_device": [{"path": "/dev/sda", "weight": 400}],
                "device_read_bps": [{"path": "/dev/sda", "rate": "12mb"}],
                "device_write_iops": [{"path": "/dev/sda", "rate": 120}]
            }
        }));
        let mut spec = ContainerSpec::default();
        apply(&svc, &mut spec).unwrap();
        assert_eq!(spec.cpuset_cpus.as_deref(), Some("0-1"));
        assert_eq!(
            (spec.cpu_period, spec.cpu_quota),
            (Some(50000), Some(25000))
        );
        assert_eq!(
            (spec.cpu_rt_runtime, spec.cpu_rt_period),
            (Some(10000), Some(500000))
        );
        assert_eq!(spec.memory_reservation, Some(32 << 20));
        assert_eq!(spec.memory_swappiness, Some(10));
        assert!(spec.oom_kill_disable && spec.cgroup_private);
        assert_eq!(spec.oom_score_adj, Some(-500));
        assert_eq!(spec.cgroup_parent.as_deref(), Some("apps"));
        assert_eq!(spec.device_cgroup_rules, ["c 1:3 mr"]);
        assert_eq!(spec.blkio.weight, Some(300));
        assert_eq!(spec.blkio.weight_device, [("/dev/sda".into(), 400)]);
        assert_eq!(spec.blkio.read_bps, [("/dev/sda".into(), 12 << 20)]);
        assert_eq!(spec.blkio.write_iops, [("/dev/sda".into(), 120)]);
        // mem_reservation wins over the deploy reservation; -1 swappiness is
        // the kernel's default.
        let svc = service(serde_json::json!({
            "mem_reservation": "16777216", "mem_swappiness": -1,
            "deploy": {"resources": {"reservations": {"memory": "33554432"}}}
        }));
        let mut spec = ContainerSpec::default();
        apply(&svc, &mut spec).unwrap();
        assert_eq!(
            (spec.memory_reservation, spec.memory_swappiness),
            (Some(16 << 20), None)
        );
        for (bad, key) in [
            (serde_json::json!({"cpu_period": -5}), "cpu_period"),
            (serde_json::json!({"oom_score_adj": 1e12}), "oom_score_adj"),
            (
                serde_json::json!({"blkio_config": {"device_read_bps": [{"rate": 1}]}}),
                "blkio_config.device_read_bps[0].path",
            ),
            (
                serde_json::json!({"blkio_config": {"device_read_iops": [{"path": "/dev/sda"}]}}),
                "blkio_config.device_read_iops.rate",
            ),
        ] {
            let e = apply(&service(bad), &mut ContainerSpec::default()).unwrap_err();
            assert!(e.starts_with(key), "{key}: {e}");
        }
    }

    #[test]
    fn deploy_limits_fill_in_and_bad_values_are_errors() {
        let svc = service(serde_json::json!({
            "deploy": {"resources": {"limits": {"memory": "52428800", "cpus": 0.25, "pids": 10}}}
        }));
        let mut spec = ContainerSpec::default();
        apply(&svc, &mut spec).unwrap();
        assert_eq!(
            (spec.memory, spec.cpus, spec.pids_limit),
            (Some(50 << 20), Some(0.25), Some(10))
        );
        let bad = service(serde_json::json!({"security_opt": ["bogus=1"]}));
        assert!(apply(&bad, &mut ContainerSpec::default())
            .unwrap_err()
            .contains("bogus"));
        let bad = service(serde_json::json!({"cpus": "lots"}));
        assert!(apply(&bad, &mut ContainerSpec::default())
            .unwrap_err()
            .contains("cpus"));
    }
}
