//! The semantic checks docker compose makes once a project is normalized:
//! references to services, networks, volumes, secrets and configs exist,
//! dependencies have no cycle, and no host port is published twice.

use crate::error::KeyPath;
use crate::model::{Project, VolumesFrom};
use crate::normalize::NormalizeError;
use std::collections::{BTreeMap, HashMap};

fn fail<T>(path: KeyPath, message: String) -> Result<T, NormalizeError> {
    Err(NormalizeError { path, message })
}

pub fn check(project: &Project) -> Result<(), NormalizeError> {
    let services = KeyPath::root().key("services");
    let known = |name: &str| project.services.contains_key(name);
    for (name, svc) in &project.services {
        let path = services.key(name);
        for (dep, d) in &svc.depends_on {
            if d.required && !known(dep) {
                return fail(
                    path.key("depends_on").key(dep),
                    format!("service {name:?} depends on undefined service {dep:?}"),
                );
            }
        }
        for (i, vf) in svc.volumes_from().iter().enumerate() {
            if let VolumesFrom::Service { name: other, .. } = vf {
                if !known(other) {
                    return fail(
                        path.key("volumes_from").index(i),
                        format!("service {name:?} mounts volumes from undefined service {other:?}"),
                    );
                }
            }
        }
        if let Some(other) = svc
            .network_mode
            .as_deref()
            .and_then(|m| m.strip_prefix("service:"))
        {
            if !known(other) {
                return fail(
                    path.key("network_mode"),
                    format!(
                        "service {name:?} uses the network stack of undefined service {other:?}"
                    ),
                );
            }
        }
        for (i, link) in svc.links.iter().enumerate() {
            let target = link.split(':').next().unwrap_or_default();
            if !known(target) {
                return fail(
                    path.key("links").index(i),
                    format!("service {name:?} links to undefined service {target:?}"),
                );
            }
        }
        if let Some(nets) = &svc.networks {
            for net in nets.keys() {
                if !project.networks.contains_key(net) {
                    return fail(
                        path.key("networks").key(net),
                        format!("service {name:?} refers to undefined network {net}"),
                    );
                }
            }
        }
        for (i, m) in svc.volumes.iter().enumerate() {
            if m.kind == "volume" {
                if let Some(src) = &m.source {
                    if !project.volumes.contains_key(src) {
                        return fail(
                            path.key("volumes").index(i),
                            format!("service {name:?} refers to undefined volume {src}"),
                        );
                    }
                }
            }
        }
        for kind in ["secrets", "configs"] {
            let defined = if kind == "secrets" {
                &project.secrets
            } else {
                &project.configs
            };
            if let Some(serde_json::Value::Array(items)) = svc.extra.get(kind) {
                for (i, item) in items.iter().enumerate() {
                    let source = item
                        .get("source")
                        .and_then(|s| s.as_str())
                        .unwrap_or_default();
                    if !defined.contains_key(source) {
                        let singular = &kind[..kind.len() - 1];
                        return fail(
                            path.key(kind).index(i),
                            format!("service {name:?} refers to undefined {singular} {source}"),
                        );
                    }
                }
            }
        }
    }
    check_cycles(project)?;
    check_published_ports(project)
}

/// Edges a service needs started first: depends_on, volumes_from, network_mode.
fn dependencies(project: &Project, name: &str) -> Vec<String> {
    let Some(svc) = project.services.get(name) else {
        return Vec::new();
    };
    let mut deps: Vec<String> = svc.depends_on.keys().cloned().collect();
    for vf in svc.volumes_from() {
        if let VolumesFrom::Service { name, .. } = vf {
            deps.push(name);
        }
    }
    if let Some(other) = svc
        .network_mode
        .as_deref()
        .and_then(|m| m.strip_prefix("service:"))
    {
        deps.push(other.to_string());
    }
    deps.retain(|d| project.services.contains_key(d));
    deps
}

/// Depth-first, with an explicit stack: a hostile file can chain thousands
/// of services, deeper than the call stack goes.
fn check_cycles(project: &Project) -> Result<(), NormalizeError> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    let mut marks: HashMap<String, Mark> = HashMap::new();
    for start in project.services.keys() {
        if marks.contains_key(start) {
            continue;
        }
        marks.insert(start.clone(), Mark::Visiting);
        // (service, its dependencies, how many of them were visited)
        let mut stack = vec![(start.clone(), dependencies(project, start), 0)];
        while let Some((name, deps, next)) = stack.last_mut() {
            let Some(dep) = deps.get(*next).cloned() else {
                marks.insert(name.clone(), Mark::Done);
                stack.pop();
                continue;
            };
            *next += 1;
            match marks.get(&dep) {
                Some(Mark::Done) => {}
                Some(Mark::Visiting) => {
                    let from = stack.iter().position(|(s, _, _)| *s == dep).unwrap_or(0);
                    let mut cycle: Vec<String> =
                        stack[from..].iter().map(|(s, _, _)| s.clone()).collect();
                    cycle.push(dep);
                    return fail(
                        KeyPath::root().key("services").key(&stack[from].0),
                        format!("dependency cycle detected: {}", cycle.join(" -> ")),
                    );
                }
                None => {
                    marks.insert(dep.clone(), Mark::Visiting);
                    let deps = dependencies(project, &dep);
                    stack.push((dep, deps, 0));
                }
            }
        }
    }
    Ok(())
}

fn check_published_ports(project: &Project) -> Result<(), NormalizeError> {
    // (host ip, protocol, port) → (service, index)
    let mut seen: BTreeMap<(String, String, u32), (String, usize)> = BTreeMap::new();
    for (name, svc) in &project.services {
        // Several replicas cannot all bind one host port, but one container can.
        for (i, port) in svc.ports.iter().enumerate() {
            let Some(published) = &port.published else {
                continue;
            };
            let (a, b) = match published.split_once('-') {
                Some((a, b)) => (a.parse().unwrap_or(0), b.parse().unwrap_or(0)),
                None => {
                    let p: u32 = published.parse().unwrap_or(0);
                    (p, p)
                }
            };
            if a == 0 || a != b {
                continue; // ephemeral or a range picked at run time
            }
            let ip = port.host_ip.clone().unwrap_or_else(|| "0.0.0.0".into());
            let overlaps = |other: &str| {
                other == ip || other == "0.0.0.0" || ip == "0.0.0.0" || other == "::" || ip == "::"
            };
            if let Some(((other_ip, _, _), (other_svc, other_idx))) = seen
                .iter()
                .find(|((oip, proto, p), _)| *p == a && *proto == port.protocol && overlaps(oip))
            {
                let _ = other_ip;
                return fail(
                    KeyPath::root().key("services").key(name).key("ports").index(i),
                    format!(
                        "host port {a}/{} is already published by services.{other_svc}.ports[{other_idx}]",
                        port.protocol
                    ),
                );
            }
            seen.insert((ip, port.protocol.clone(), a), (name.clone(), i));
        }
    }
    Ok(())
}
