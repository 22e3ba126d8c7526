//! What ties services together, and the order that follows from it.
//!
//! The planner needs two things from the ties: an order in which every
//! service comes after what it needs (so a plan can be applied top to
//! bottom), and the kind of each tie (a shared volume or namespace forces a
//! recreate, `restart: true` a restart, a plain `depends_on` nothing).

use super::PlanError;
use berth_compose::model::{Extra, Project, Service};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// A namespace a service can take from another one (`network_mode`, `ipc`, `pid`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Namespace {
    Network,
    Ipc,
    Pid,
}

impl Namespace {
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Namespace::Network => "network",
            Namespace::Ipc => "IPC",
            Namespace::Pid => "PID",
        }
    }
}

/// Why a service needs another one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tie {
    /// It mounts the other's volumes: a new source means new volumes.
    VolumesFrom,
    /// It lives in the other's namespace: a new source means a new namespace.
    Namespace(Namespace),
    /// Plain ordering, plus a restart when `restart: true` is set.
    DependsOn { restart: bool, completion: bool },
    /// v1 `links`: compose-go turns them into `depends_on` with
    /// `restart: true`, since the link was resolved when the container started.
    Link,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Edge {
    /// Position of the needed service in [`Graph::order`].
    pub(crate) to: usize,
    pub(crate) tie: Tie,
}

/// The project's services in dependency order, with their ties by position.
#[derive(Debug)]
pub(crate) struct Graph<'p> {
    /// Every service after everything it needs; ties broken by name, so the
    /// order never depends on how the file was written or on a hash seed.
    pub(crate) order: Vec<&'p str>,
    /// `services[i]` is the definition of `order[i]`.
    pub(crate) services: Vec<&'p Service>,
    /// `needs[i]`: the ties of `order[i]`, in the order the file declares them.
    pub(crate) needs: Vec<Vec<Edge>>,
    /// The project's k-th service sits at `by_index[k]` in `order`.
    pub(crate) by_index: Vec<usize>,
}

impl<'p> Graph<'p> {
    pub(crate) fn build(project: &'p Project) -> Result<Self, PlanError> {
        // Entries sorted by name: the smallest index is the smallest name,
        // so "ties broken by name" is just "smallest ready index first".
        // `slot[k]` is where the project's k-th service sits among them.
        let mut entries: Vec<(usize, &'p str, &'p Service)> = project
            .services
            .iter()
            .enumerate()
            .map(|(k, (name, svc))| (k, name.as_str(), svc))
            .collect();
        entries.sort_by(|a, b| a.1.cmp(b.1));
        let mut slot = vec![0; entries.len()];
        for (e, (k, _, _)) in entries.iter().enumerate() {
            slot[*k] = e;
        }
        let ties: Vec<Vec<(usize, Tie)>> = entries
            .iter()
            .enumerate()
            .map(|(k, (_, _, svc))| {
                ties_of(svc)
                    .into_iter()
                    // An optional dependency on a service that is not in the
                    // project (`required: false`, or a profile left it out)
                    // orders nothing.
                    .filter_map(|(dep, tie)| {
                        project.services.get_index_of(dep).map(|i| (slot[i], tie))
                    })
                    .filter(|(d, _)| *d != k)
                    .collect()
            })
            .collect();

        // Kahn's algorithm with the ready set kept sorted (a min-heap of
        // entry indices, so the smallest ready name goes next).
        let n = entries.len();
        let mut waiting: Vec<usize> = Vec::with_capacity(n);
        let mut dependants: Vec<Vec<usize>> = vec![Vec::new(); n];
        let mut deps: Vec<usize> = Vec::new();
        for (k, list) in ties.iter().enumerate() {
            // Two ties to the same service (depends_on and volumes_from) are
            // one ordering constraint.
            deps.clear();
            deps.extend(list.iter().map(|(d, _)| *d));
            deps.sort_unstable();
            deps.dedup();
            for &d in &deps {
                dependants[d].push(k);
            }
            waiting.push(deps.len());
        }
        let mut ready: BinaryHeap<Reverse<usize>> =
            (0..n).filter(|&k| waiting[k] == 0).map(Reverse).collect();
        let mut order: Vec<usize> = Vec::with_capacity(n);
        while let Some(Reverse(next)) = ready.pop() {
            order.push(next);
            for &d in &dependants[next] {
                waiting[d] -= 1;
                if waiting[d] == 0 {
                    ready.push(Reverse(d));
                }
            }
        }
        if order.len() < n {
            // The loader rejects cycles; a Project built some other way may
            // still hold one, and the planner must not loop or panic on it.
            let stuck = (0..n)
                .filter(|&k| waiting[k] > 0)
                .map(|k| entries[k].1.to_string())
                .collect();
            return Err(PlanError::DependencyCycle(stuck));
        }

        let mut position = vec![0; n];
        for (pos, &k) in order.iter().enumerate() {
            position[k] = pos;
        }
        Ok(Graph {
            order: order.iter().map(|&k| entries[k].1).collect(),
            services: order.iter().map(|&k| entries[k].2).collect(),
            by_index: slot.iter().map(|&e| position[e]).collect(),
            needs: order
                .iter()
                .map(|&k| {
                    ties[k]
                        .iter()
                        .map(|&(d, tie)| Edge {
                            to: position[d],
                            tie,
                        })
                        .collect()
                })
                .collect(),
        })
    }
}

/// Every tie a service declares, by the name of the service it points at.
fn ties_of(svc: &Service) -> Vec<(&str, Tie)> {
    let mut list: Vec<(&str, Tie)> = Vec::new();
    for (dep, d) in &svc.depends_on {
        list.push((
            dep.as_str(),
            Tie::DependsOn {
                restart: d.restart == Some(true),
                completion: d.condition == "service_completed_successfully",
            },
        ));
    }
    for vf in &svc.volumes_from {
        // The parse of `Service::volumes_from`, borrowed rather than owned so
        // the graph can point into the project.
        let mut parts = vf.splitn(3, ':');
        if parts.next() == Some("service") {
            if let Some(src) = parts.next() {
                list.push((src, Tie::VolumesFrom));
            }
        }
    }
    let modes = [
        (svc.network_mode.as_deref(), Namespace::Network),
        (extra_str(&svc.extra, "ipc"), Namespace::Ipc),
        (extra_str(&svc.extra, "pid"), Namespace::Pid),
    ];
    for (mode, ns) in modes {
        if let Some(src) = mode.and_then(|m| m.strip_prefix("service:")) {
            list.push((src, Tie::Namespace(ns)));
        }
    }
    for link in &svc.links {
        let target = link.split(':').next().unwrap_or_default();
        list.push((target, Tie::Link));
    }
    list
}

pub(crate) fn extra_str<'a>(extra: &'a Extra, key: &str) -> Option<&'a str> {
    extra.get(key).and_then(|v| v.as_str())
}
