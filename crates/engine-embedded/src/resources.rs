//! A service's security and resource keys (`cap_add`, `security_opt`,
//! `mem_limit`, `ulimits`, `deploy.resources.limits`, …) as the sandbox's
//! [`ContainerSpec`] fields. Values arrive normalized by the loader (sizes
//! in bytes, `sysctls` and `ulimits` as maps).

use berth_compose::model::Service;
use berth_sandbox::{ContainerSpec, DeviceSpec, SeccompChoice};
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
    Ok(())
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
