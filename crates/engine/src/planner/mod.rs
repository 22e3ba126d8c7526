//! The planner: from the desired project and the observed containers to an
//! explained [`Plan`].
//!
//! It is a pure function on purpose: no I/O, no clock, no randomness. The
//! executor looks everything up first (image digests, container state) and
//! hands it in, so the same inputs always give the same plan. That is what
//! lets `berth up --dry-run` print exactly what `berth up` will do, and what
//! lets every rule below be unit-tested without a container in sight.
//!
//! The rules, in the order they are applied to a service:
//! 1. Targets: the services named on the command line (all when none) and,
//!    unless `--no-deps`, everything they need.
//! 2. Scale: `--scale`, else `scale`, else `deploy.replicas`, else 1. Excess
//!    containers go, the obsolete ones first, then the highest numbers.
//! 3. Per container, recreate when `--force-recreate` says so, when its
//!    config hash or image digest changed, when something it shares a volume
//!    or namespace with is replaced, when it mounts volumes from an image
//!    that is no longer its source's, when it misses a network or named
//!    volume, or when `--always-recreate-deps` reaches it. `--no-recreate`
//!    turns all of that off.
//! 4. Otherwise by state: start what is created or exited (except one-shot
//!    services that completed), restart what depends on a replaced service
//!    with `restart: true`, keep the rest.
//! 5. Missing containers are created; orphans are removed with
//!    `--remove-orphans` and reported otherwise. One-off containers are
//!    never touched.

mod display;
mod graph;
#[cfg(test)]
mod tests;

use berth_compose::hash::service_hash;
use berth_compose::model::{Project, Service};
use graph::{Graph, Tie};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

/// What berth wants running: the normalized project plus the facts the
/// executor resolved before planning.
#[derive(Debug, Clone)]
pub struct Desired<'p> {
    pub project: &'p Project,
    /// Service → digest of the image it would run now (pulled, or just
    /// built). A service left out was not resolved (say `--no-build` before
    /// the first build), and its digests are then not compared.
    ///
    /// The digests of the images whose volumes a service mounts are not a
    /// separate input: they are the digests of its `volumes_from` sources,
    /// read from this same map, so the two can never disagree.
    pub image_digests: BTreeMap<String, String>,
    /// Service → config hash, when the caller already has it; missing ones
    /// are computed with [`service_hash`].
    pub config_hashes: BTreeMap<String, String>,
}

impl<'p> Desired<'p> {
    pub fn new(project: &'p Project) -> Self {
        Desired {
            project,
            image_digests: BTreeMap::new(),
            config_hashes: BTreeMap::new(),
        }
    }

    /// Config hashes that count the services' secrets and configs (see
    /// [`crate::project_files::effective_hash`]).
    pub fn with_project_files(mut self, files: &crate::project_files::ProjectFiles) -> Self {
        for (service, f) in files {
            if let Some(svc) = self.project.services.get(service) {
                self.config_hashes.insert(
                    service.clone(),
                    crate::project_files::effective_hash(svc, Some(f)),
                );
            }
        }
        self
    }

    pub fn with_image_digest(mut self, service: &str, digest: &str) -> Self {
        self.image_digests
            .insert(service.to_string(), digest.to_string());
        self
    }
}

/// One container as the engine sees it: from its own state, or from the
/// `com.docker.compose.*` labels on the docker backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedContainer {
    pub name: String,
    pub service: String,
    pub number: u32,
    /// The config hash it was created from. Empty when unknown, which counts
    /// as changed, as it does for compose.
    pub config_hash: String,
    /// The digest of the image it runs; `None` when unknown (never compared).
    pub image_digest: Option<String>,
    /// Service → digest of that service's image whose volumes this
    /// container mounts through `volumes_from`.
    #[serde(default)]
    pub mounted_image_digests: BTreeMap<String, String>,
    /// Engine-level names of the networks it is attached to (`seed_default`).
    #[serde(default)]
    pub networks: Vec<String>,
    /// Engine-level names of the named volumes it mounts (`seed_data`).
    #[serde(default)]
    pub volumes: Vec<String>,
    pub state: ContainerState,
    /// Made by `berth run`: the planner leaves it alone.
    #[serde(default)]
    pub one_off: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContainerState {
    Running,
    Exited { code: i32 },
    Created,
    Paused,
    Restarting,
}

/// The `up` flags that shape a plan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanOptions {
    /// Services named on the command line; empty means all.
    pub services: Vec<String>,
    pub force_recreate: bool,
    pub no_recreate: bool,
    pub always_recreate_deps: bool,
    /// `-V`: every recreated container gets fresh anonymous volumes.
    pub renew_anon_volumes: bool,
    pub no_deps: bool,
    /// `--scale svc=n`.
    pub scale: BTreeMap<String, u32>,
    pub remove_orphans: bool,
}

/// How a running container is replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Stop and remove the old container, then create the new one.
    StopFirst,
    /// Start the new one beside the old, wait until it is ready, switch the
    /// port proxy, drain and remove the old: no request is refused.
    StartFirst,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Leave it. `container` is `None` when the service has none (scale 0).
    Nothing {
        container: Option<String>,
    },
    /// `name` is the container's name: `container_name`, else
    /// `<project>-<service>-<number>`.
    Create {
        number: u32,
        name: String,
    },
    Start {
        container: String,
    },
    /// Stop then start the same container (`depends_on` with `restart: true`).
    Restart {
        container: String,
    },
    /// Replace `container` by a new one with the same number and name.
    Recreate {
        container: String,
        number: u32,
        strategy: Strategy,
        /// Give the new container fresh anonymous volumes instead of the
        /// old container's: new code, or `-V`.
        renew_anonymous_volumes: bool,
    },
    ScaleDown {
        container: String,
    },
    RemoveOrphan {
        container: String,
    },
}

/// One decision, with the sentence `berth up --dry-run` prints for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub service: String,
    pub action: Action,
    /// A full sentence starting with the service: `app: runtime image changed …`.
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// Orphan removals first, then every service in dependency order.
    pub steps: Vec<Step>,
    /// Things the plan leaves alone but the user should know about
    /// (orphans without `--remove-orphans`, stale dependants under `--no-deps`).
    pub warnings: Vec<String>,
}

impl Plan {
    /// True when applying the plan would change nothing.
    pub fn is_noop(&self) -> bool {
        self.steps
            .iter()
            .all(|s| matches!(s.action, Action::Nothing { .. }))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("{0} and {1} are incompatible")]
    IncompatibleFlags(&'static str, &'static str),
    #[error("no such service: {0}")]
    NoSuchService(String),
    #[error(
        "service {service:?} sets container_name {container_name:?} and cannot be scaled to {scale}: \
         container names must be unique; remove container_name to scale it"
    )]
    ScaleWithContainerName {
        service: String,
        container_name: String,
        scale: u32,
    },
    #[error("service {service:?}: {key} must be a whole number of containers, not {value}")]
    InvalidScale {
        service: String,
        key: &'static str,
        value: String,
    },
    #[error("service {service:?}: {key} must be \"start-first\" or \"stop-first\", not {value}")]
    InvalidUpdateOrder {
        service: String,
        key: &'static str,
        value: String,
    },
    #[error("dependency cycle between services {}", .0.join(", "))]
    DependencyCycle(Vec<String>),
}

/// Decide, for every targeted service, what `up` must do to reach the
/// desired state from the observed one.
pub fn plan(
    desired: &Desired<'_>,
    observed: &[ObservedContainer],
    options: &PlanOptions,
) -> Result<Plan, PlanError> {
    Planner::new(desired, observed, options)?.run()
}

/// How far recreation may go for one service, from the flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Policy {
    /// Recreate what diverged (the default).
    Diverged,
    /// `--force-recreate` on a named service.
    Force,
    /// `--no-recreate`.
    Never,
}

/// How a service was replaced in this plan, for the services tied to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Replaced {
    Recreated,
    /// It had no container and gets one: new volumes, new namespaces.
    Created,
}

impl Replaced {
    fn describe(self) -> &'static str {
        match self {
            Replaced::Recreated => "which is recreated",
            Replaced::Created => "which gets a new container",
        }
    }
}

/// Why one container no longer matches what is wanted. Everything borrowed:
/// the up-to-date path, by far the most common, allocates nothing here.
#[derive(Debug, Default)]
struct Divergence<'s> {
    /// (was, now)
    config: Option<(&'s str, &'s str)>,
    image: Option<(&'s str, &'s str)>,
    /// The image changed and the service builds it: its content is code.
    code_changed: bool,
    /// (source service, was, now)
    mounted: Option<(&'s str, &'s str, &'s str)>,
    network: Option<&'s str>,
    volume: Option<&'s str>,
}

impl Divergence<'_> {
    fn obsolete(&self) -> bool {
        self.config.is_some()
            || self.image.is_some()
            || self.mounted.is_some()
            || self.network.is_some()
            || self.volume.is_some()
    }

    /// The container's own definition changed.
    fn primary(&self, built: bool) -> Option<String> {
        let config = self
            .config
            .map(|(was, now)| format!("config hash {} → {}", short(was), short(now)));
        match (self.image, config) {
            (Some((was, now)), config) => {
                let mut s = if built {
                    format!(
                        "built image changed (new code digest {} → {})",
                        short(was),
                        short(now)
                    )
                } else {
                    format!("runtime image changed {} → {}", short(was), short(now))
                };
                // A new tag changes the config hash too; say so without
                // pretending it is a second, separate change.
                if let Some(c) = config {
                    s.push_str(", ");
                    s.push_str(&c);
                }
                Some(s)
            }
            (None, Some(c)) => Some(format!("configuration changed ({c})")),
            (None, None) => None,
        }
    }

    /// What it is attached to drifted from what it should be attached to.
    fn secondary(&self) -> Option<String> {
        if let Some((src, was, now)) = self.mounted {
            return Some(format!(
                "mounts the volumes of {src} from image {}, but {src} now provides {}",
                short(was),
                short(now)
            ));
        }
        if let Some(net) = self.network {
            return Some(format!("is not connected to network {net}"));
        }
        self.volume
            .map(|vol| format!("does not mount named volume {vol}"))
    }
}

/// What planning one service produced.
#[derive(Debug, Default)]
struct Outcome {
    steps: Vec<Step>,
    replaced: Option<Replaced>,
    recreates: bool,
}

struct Planner<'a> {
    project: &'a Project,
    image_digests: &'a BTreeMap<String, String>,
    options: &'a PlanOptions,
    graph: Graph<'a>,
    /// Per position in the graph order from here on.
    targeted: Vec<bool>,
    named: Vec<bool>,
    containers: Vec<Vec<&'a ObservedContainer>>,
    one_shot: Vec<bool>,
    scale: Vec<u32>,
    update: Vec<Option<(Strategy, &'static str)>>,
    /// The desired config hash of every service that has containers.
    hashes: Vec<Option<Cow<'a, str>>>,
    orphans: Vec<&'a ObservedContainer>,
}

impl<'a> Planner<'a> {
    fn new(
        desired: &'a Desired<'_>,
        observed: &'a [ObservedContainer],
        options: &'a PlanOptions,
    ) -> Result<Self, PlanError> {
        let project: &'a Project = desired.project;
        if options.force_recreate && options.no_recreate {
            return Err(PlanError::IncompatibleFlags(
                "--force-recreate",
                "--no-recreate",
            ));
        }
        if options.always_recreate_deps && options.no_recreate {
            return Err(PlanError::IncompatibleFlags(
                "--always-recreate-deps",
                "--no-recreate",
            ));
        }
        for name in options.services.iter().chain(options.scale.keys()) {
            if !project.services.contains_key(name) {
                return Err(PlanError::NoSuchService(name.clone()));
            }
        }
        let graph = Graph::build(project)?;
        let n = graph.order.len();

        let named: Vec<bool> = graph
            .order
            .iter()
            .map(|name| options.services.is_empty() || options.services.iter().any(|s| s == name))
            .collect();
        let mut targeted = named.clone();
        if !options.no_deps {
            let mut stack: Vec<usize> = (0..n).filter(|&i| named[i]).collect();
            while let Some(i) = stack.pop() {
                for e in &graph.needs[i] {
                    if !targeted[e.to] {
                        targeted[e.to] = true;
                        stack.push(e.to);
                    }
                }
            }
        }

        let mut containers: Vec<Vec<&ObservedContainer>> = vec![Vec::new(); n];
        let mut orphans: Vec<&ObservedContainer> = Vec::new();
        for c in observed.iter().filter(|c| !c.one_off) {
            match project.services.get_index_of(c.service.as_str()) {
                Some(k) => containers[graph.by_index[k]].push(c),
                None => orphans.push(c),
            }
        }
        // Observed state arrives in whatever order the engine listed it.
        for list in &mut containers {
            list.sort_by(|a, b| (a.number, &a.name).cmp(&(b.number, &b.name)));
        }
        orphans
            .sort_by(|a, b| (&a.service, a.number, &a.name).cmp(&(&b.service, b.number, &b.name)));

        // A service some other one waits on to complete, or that only exists
        // to hand its volumes over (the seed's `code`), is done once it
        // exited 0: starting it again on every `up` would re-run it for
        // nothing.
        let mut awaited = vec![false; n];
        let mut lends_volumes = vec![false; n];
        for needs in &graph.needs {
            for e in needs {
                match e.tie {
                    Tie::DependsOn {
                        completion: true, ..
                    } => awaited[e.to] = true,
                    Tie::VolumesFrom => lends_volumes[e.to] = true,
                    _ => {}
                }
            }
        }
        let one_shot = (0..n)
            .map(|i| {
                let svc = graph.services[i];
                runs_once(svc) && (awaited[i] || (lends_volumes[i] && svc.ports.is_empty()))
            })
            .collect();

        let mut scale = Vec::with_capacity(n);
        let mut update = Vec::with_capacity(n);
        let mut hashes = Vec::with_capacity(n);
        for (i, name) in graph.order.iter().enumerate() {
            let svc = graph.services[i];
            let wanted = desired_scale(name, svc, options)?;
            if targeted[i] && wanted > 1 {
                if let Some(container_name) = &svc.container_name {
                    return Err(PlanError::ScaleWithContainerName {
                        service: name.to_string(),
                        container_name: container_name.clone(),
                        scale: wanted,
                    });
                }
            }
            scale.push(wanted);
            update.push(update_order(name, svc)?);
            // Only services with containers are compared, and the hash is
            // the one costly thing on the no-op path: skip the rest.
            hashes.push(if containers[i].is_empty() {
                None
            } else {
                Some(match desired.config_hashes.get(*name) {
                    Some(h) => Cow::Borrowed(h.as_str()),
                    None => Cow::Owned(service_hash(svc)),
                })
            });
        }

        Ok(Planner {
            project,
            image_digests: &desired.image_digests,
            options,
            graph,
            targeted,
            named,
            containers,
            one_shot,
            scale,
            update,
            hashes,
            orphans,
        })
    }

    fn run(&self) -> Result<Plan, PlanError> {
        let n = self.graph.order.len();
        // `--always-recreate-deps` pushes recreation upstream while shared
        // volumes and namespaces push it downstream; a pass handles the
        // downstream part in dependency order, and passes repeat until the
        // upstream set stops growing (at most once per service).
        let mut forced: Vec<Option<String>> = vec![None; n];
        loop {
            let (outcomes, warnings) = self.pass(&forced);
            let mut grew = false;
            if self.options.always_recreate_deps {
                for (i, outcome) in outcomes.iter().enumerate() {
                    if !outcome.recreates {
                        continue;
                    }
                    for e in &self.graph.needs[i] {
                        if self.targeted[e.to] && forced[e.to].is_none() {
                            forced[e.to] = Some(format!(
                                "dependency of {}, which is recreated (--always-recreate-deps)",
                                self.graph.order[i]
                            ));
                            grew = true;
                        }
                    }
                }
            }
            if !grew {
                return Ok(self.finish(outcomes, warnings));
            }
        }
    }

    fn finish(&self, outcomes: Vec<Outcome>, pass_warnings: Vec<String>) -> Plan {
        let mut plan = Plan::default();
        if !self.orphans.is_empty() {
            if self.options.remove_orphans {
                for c in &self.orphans {
                    plan.steps.push(Step {
                        service: c.service.clone(),
                        action: Action::RemoveOrphan {
                            container: c.name.clone(),
                        },
                        reason: format!(
                            "{}: orphan, the service is no longer in the project (or its profile is not enabled)",
                            c.service
                        ),
                    });
                }
            } else {
                let names: Vec<&str> = self.orphans.iter().map(|c| c.name.as_str()).collect();
                plan.warnings.push(format!(
                    "found orphan containers ({}) for this project: their services are no longer in it \
                     or their profiles are not enabled; run with --remove-orphans to remove them",
                    names.join(", ")
                ));
            }
        }
        for outcome in outcomes {
            plan.steps.extend(outcome.steps);
        }
        plan.warnings.extend(pass_warnings);
        plan
    }

    /// One walk over the services in dependency order.
    fn pass(&self, forced: &[Option<String>]) -> (Vec<Outcome>, Vec<String>) {
        let n = self.graph.order.len();
        let mut replaced: Vec<Option<Replaced>> = vec![None; n];
        let mut outcomes = Vec::with_capacity(n);
        let mut warnings = Vec::new();
        for i in 0..n {
            let outcome = if self.targeted[i] {
                self.plan_targeted(i, forced[i].as_deref(), &replaced)
            } else {
                self.plan_bystander(i, &replaced, &mut warnings)
            };
            replaced[i] = outcome.replaced;
            outcomes.push(outcome);
        }
        (outcomes, warnings)
    }

    fn policy(&self, i: usize) -> Policy {
        if self.options.no_recreate {
            Policy::Never
        } else if self.options.force_recreate && self.named[i] {
            Policy::Force
        } else {
            Policy::Diverged
        }
    }

    /// The first tie to a replaced service that leaves this one attached to
    /// something gone: only a new container fixes that.
    fn hard_cause(&self, i: usize, replaced: &[Option<Replaced>]) -> Option<String> {
        self.graph.needs[i].iter().find_map(|e| {
            let how = replaced[e.to]?.describe();
            let src = self.graph.order[e.to];
            match e.tie {
                Tie::VolumesFrom => Some(format!("mounts volumes from {src}, {how}")),
                Tie::Namespace(ns) => Some(format!(
                    "shares the {} namespace of {src}, {how}",
                    ns.describe()
                )),
                Tie::DependsOn { .. } | Tie::Link => None,
            }
        })
    }

    /// The first `restart: true` (or link) tie to a replaced service.
    fn restart_cause(&self, i: usize, replaced: &[Option<Replaced>]) -> Option<String> {
        self.graph.needs[i].iter().find_map(|e| {
            let how = replaced[e.to]?.describe();
            let src = self.graph.order[e.to];
            match e.tie {
                Tie::DependsOn { restart: true, .. } => {
                    Some(format!("depends on {src} (restart: true), {how}"))
                }
                Tie::Link => Some(format!("links to {src}, {how}")),
                _ => None,
            }
        })
    }

    fn divergence<'s>(&'s self, i: usize, c: &'s ObservedContainer) -> Divergence<'s> {
        let name = self.graph.order[i];
        let svc = self.graph.services[i];
        let mut d = Divergence::default();
        if let Some(want) = self.hashes[i].as_deref() {
            if c.config_hash != want {
                d.config = Some((c.config_hash.as_str(), want));
            }
        }
        if let (Some(want), Some(have)) = (self.image_digests.get(name), c.image_digest.as_deref())
        {
            if want != have {
                d.image = Some((have, want.as_str()));
                d.code_changed = svc.build.is_some();
            }
        }
        for e in &self.graph.needs[i] {
            if e.tie != Tie::VolumesFrom {
                continue;
            }
            let src = self.graph.order[e.to];
            if let (Some(want), Some(have)) = (
                self.image_digests.get(src),
                c.mounted_image_digests.get(src),
            ) {
                if want != have {
                    d.mounted = Some((src, have.as_str(), want.as_str()));
                    break;
                }
            }
        }
        // A stopped container is attached when it starts, so only a live
        // one can be missing a network (compose checks the same way).
        let live = matches!(
            c.state,
            ContainerState::Running | ContainerState::Paused | ContainerState::Restarting
        );
        if live {
            if let Some(nets) = &self.graph.services[i].networks {
                d.network = nets
                    .keys()
                    .map(|key| self.network_name(key))
                    .find(|want| !c.networks.iter().any(|n| n == want));
            }
        }
        d.volume = svc
            .volumes
            .iter()
            .filter(|m| m.kind == "volume")
            .filter_map(|m| m.source.as_deref())
            .map(|src| self.volume_name(src))
            .find(|want| !c.volumes.iter().any(|v| v == want));
        d
    }

    fn network_name<'s>(&'s self, key: &'s str) -> &'s str {
        self.project
            .networks
            .get(key)
            .and_then(|n| n.name.as_deref())
            .unwrap_or(key)
    }

    fn volume_name<'s>(&'s self, key: &'s str) -> &'s str {
        self.project
            .volumes
            .get(key)
            .and_then(|v| v.name.as_deref())
            .unwrap_or(key)
    }

    fn plan_targeted(
        &self,
        i: usize,
        forced: Option<&str>,
        replaced: &[Option<Replaced>],
    ) -> Outcome {
        let name = self.graph.order[i];
        let policy = self.policy(i);
        let expected = self.scale[i];
        let hard = self.hard_cause(i, replaced);
        let soft = self.restart_cause(i, replaced);
        let obsolete = |d: &Divergence| match policy {
            Policy::Force => true,
            Policy::Never => false,
            Policy::Diverged => d.obsolete(),
        };

        // One container per number: a second one is left over from an
        // interrupted replacement. Keep the better (current, then running).
        let mut kept: Vec<(&ObservedContainer, Divergence)> = Vec::new();
        let mut removals: Vec<(&ObservedContainer, String)> = Vec::new();
        for &c in &self.containers[i] {
            let d = self.divergence(i, c);
            let rank = |c: &ObservedContainer, d: &Divergence| {
                (obsolete(d), c.state != ContainerState::Running)
            };
            match kept.last_mut() {
                Some(last) if last.0.number == c.number => {
                    let (loser, winner) = if rank(c, &d) < rank(last.0, &last.1) {
                        let old = std::mem::replace(last, (c, d));
                        (old.0, c)
                    } else {
                        (c, last.0)
                    };
                    removals.push((
                        loser,
                        format!(
                            "{name}: duplicate of {} (both number {}), left over from an interrupted replacement",
                            winner.name, loser.number
                        ),
                    ));
                }
                _ => kept.push((c, d)),
            }
        }

        let wanted = usize::try_from(expected).unwrap_or(usize::MAX);
        if kept.len() > wanted {
            // Like compose: drop what would need recreating anyway, then the
            // highest numbers, so the survivors keep the low numbers.
            let have = kept.len();
            let mut order: Vec<usize> = (0..have).collect();
            order.sort_by_key(|&k| (!obsolete(&kept[k].1), Reverse(kept[k].0.number)));
            let drop: BTreeSet<usize> = order.into_iter().take(have - wanted).collect();
            let mut k = 0;
            kept.retain(|(c, _)| {
                let keep = !drop.contains(&k);
                k += 1;
                if !keep {
                    removals.push((
                        *c,
                        format!("{name}: scaling down from {have} to {expected}"),
                    ));
                }
                keep
            });
        }
        removals.sort_by(|a, b| {
            (Reverse(a.0.number), &a.0.name).cmp(&(Reverse(b.0.number), &b.0.name))
        });

        let mut out = Outcome::default();
        for (c, reason) in removals {
            out.steps.push(Step {
                service: name.to_string(),
                action: Action::ScaleDown {
                    container: c.name.clone(),
                },
                reason,
            });
        }
        for (c, d) in &kept {
            let step = self.decide(i, c, d, policy, hard.as_deref(), forced, soft.as_deref());
            if matches!(step.action, Action::Recreate { .. }) {
                out.recreates = true;
            }
            out.steps.push(step);
        }

        let used: BTreeSet<u32> = kept.iter().map(|(c, _)| c.number).collect();
        let missing = wanted.saturating_sub(kept.len());
        let reason = if self.containers[i].is_empty() {
            if expected == 1 {
                format!("{name}: not created yet")
            } else {
                format!("{name}: not created yet (scale {expected})")
            }
        } else {
            format!("{name}: scaling up from {} to {expected}", kept.len())
        };
        // The lowest free numbers, so `--scale` names stay predictable.
        for number in (1..=u32::MAX).filter(|n| !used.contains(n)).take(missing) {
            out.steps.push(Step {
                service: name.to_string(),
                action: Action::Create {
                    number,
                    name: self.container_name(i, number),
                },
                reason: reason.clone(),
            });
        }

        if out.recreates {
            out.replaced = Some(Replaced::Recreated);
        } else if self.containers[i].is_empty() && missing > 0 {
            out.replaced = Some(Replaced::Created);
        }
        if out.steps.is_empty() {
            out.steps.push(Step {
                service: name.to_string(),
                action: Action::Nothing { container: None },
                reason: format!("{name}: scaled to 0, nothing to run"),
            });
        }
        out
    }

    /// A service outside the targets is only touched when a target it
    /// shares volumes or namespaces with (or restarts with) is replaced:
    /// otherwise it would keep pointing at something gone.
    fn plan_bystander(
        &self,
        i: usize,
        replaced: &[Option<Replaced>],
        warnings: &mut Vec<String>,
    ) -> Outcome {
        let mut out = Outcome::default();
        if self.containers[i].is_empty() || self.options.no_recreate {
            return out;
        }
        let name = self.graph.order[i];
        let hard = self.hard_cause(i, replaced);
        let soft = self.restart_cause(i, replaced);
        let Some(cause) = hard.as_deref().or(soft.as_deref()) else {
            return out;
        };
        if self.options.no_deps {
            warnings.push(format!(
                "{name} {cause}, but --no-deps leaves {name} as it is; `berth up {name}` brings it up to date"
            ));
            return out;
        }
        for c in &self.containers[i] {
            if let Some(h) = hard.as_deref() {
                let d = self.divergence(i, c);
                out.steps.push(self.recreate(i, c, h, d.code_changed));
                out.recreates = true;
            } else if matches!(
                c.state,
                ContainerState::Running | ContainerState::Restarting
            ) {
                out.steps.push(Step {
                    service: name.to_string(),
                    action: Action::Restart {
                        container: c.name.clone(),
                    },
                    reason: format!("{name}: {cause}"),
                });
            }
        }
        if out.recreates {
            out.replaced = Some(Replaced::Recreated);
        }
        out
    }

    #[allow(clippy::too_many_arguments)] // every input is one of the rule's facts
    fn decide(
        &self,
        i: usize,
        c: &ObservedContainer,
        d: &Divergence,
        policy: Policy,
        hard: Option<&str>,
        forced: Option<&str>,
        soft: Option<&str>,
    ) -> Step {
        let name = self.graph.order[i];
        let built = self.graph.services[i].build.is_some();
        let why: Option<Cow<str>> = match policy {
            Policy::Never => None,
            Policy::Force => Some(Cow::Borrowed("recreate forced (--force-recreate)")),
            // Its own change explains best; then a replaced source it is
            // tied to; then drift in what it mounts or joins; last the flag.
            Policy::Diverged => d
                .primary(built)
                .map(Cow::Owned)
                .or_else(|| hard.map(Cow::Borrowed))
                .or_else(|| d.secondary().map(Cow::Owned))
                .or_else(|| forced.map(Cow::Borrowed)),
        };
        if let Some(why) = why {
            return self.recreate(i, c, &why, d.code_changed);
        }

        let note = match policy {
            Policy::Never => d
                .primary(built)
                .or_else(|| d.secondary())
                .map(|w| format!("; not recreated (--no-recreate) although {w}")),
            _ => None,
        };
        let keep = |text: &str| {
            (
                Action::Nothing {
                    container: Some(c.name.clone()),
                },
                text.to_string(),
            )
        };
        let start = |text: String| {
            (
                Action::Start {
                    container: c.name.clone(),
                },
                text,
            )
        };
        let (action, text) = match (c.state, soft) {
            (ContainerState::Running | ContainerState::Restarting, Some(s)) => (
                Action::Restart {
                    container: c.name.clone(),
                },
                s.to_string(),
            ),
            (ContainerState::Running, None) if note.is_some() => keep("running"),
            (ContainerState::Running, None) => keep("up to date"),
            (ContainerState::Restarting, None) => keep("restarting under its restart policy"),
            (ContainerState::Paused, _) => keep("paused; `berth unpause` resumes it"),
            (ContainerState::Created, _) => start("created but never started".to_string()),
            (ContainerState::Exited { code: 0 }, None) if self.one_shot[i] => {
                keep("completed successfully (exit 0); a one-shot service, left as is")
            }
            (ContainerState::Exited { code }, Some(s)) => {
                start(format!("exited with code {code}; {s}"))
            }
            (ContainerState::Exited { code }, None) => start(format!("exited with code {code}")),
        };
        Step {
            service: name.to_string(),
            action,
            reason: format!("{name}: {text}{}", note.unwrap_or_default()),
        }
    }

    fn recreate(&self, i: usize, c: &ObservedContainer, why: &str, code_changed: bool) -> Step {
        let name = self.graph.order[i];
        let (strategy, how) = self.strategy(i, c);
        let mut reason = format!("{name}: {why}; {how}");
        // docker-compose carries anonymous volumes over to the new container,
        // which keeps serving the old code after a rebuild; new code gets
        // fresh volumes. A pulled image's volumes may hold data, so only
        // `-V` renews those.
        let renew = code_changed || self.options.renew_anon_volumes;
        if code_changed {
            reason.push_str("; anonymous volumes renewed (new code)");
        } else if renew {
            reason.push_str("; anonymous volumes renewed (-V)");
        }
        Step {
            service: name.to_string(),
            action: Action::Recreate {
                container: c.name.clone(),
                number: c.number,
                strategy,
                renew_anonymous_volumes: renew,
            },
            reason,
        }
    }

    /// The replacement strategy and the words that explain it.
    fn strategy(&self, i: usize, c: &ObservedContainer) -> (Strategy, String) {
        let svc = self.graph.services[i];
        let why = match self.update[i] {
            Some((Strategy::StopFirst, key)) => {
                return (Strategy::StopFirst, format!("stop-first ({key})"))
            }
            Some((Strategy::StartFirst, key)) => key,
            None if svc.ports.is_empty() => return (Strategy::StopFirst, "stop-first".into()),
            None => {
                // Two copies of a database on one data directory corrupt it
                // (or the second refuses to start and the swap fails):
                // publishing ports alone does not make a swap safe.
                if let Some(vol) = writable_named_volume(svc) {
                    return (
                        Strategy::StopFirst,
                        format!(
                            "stop-first: it writes named volume {vol}, which two copies must not share \
                             (x-berth.update: start-first swaps anyway)"
                        ),
                    );
                }
                "published ports"
            }
        };
        if let Some(blocker) = single_instance(svc) {
            return (Strategy::StopFirst, format!("stop-first: {blocker}"));
        }
        if c.state != ContainerState::Running {
            return (
                Strategy::StopFirst,
                "stop-first: the old container is not running, so there is nothing to keep serving"
                    .into(),
            );
        }
        (Strategy::StartFirst, format!("start-first swap ({why})"))
    }

    fn container_name(&self, i: usize, number: u32) -> String {
        match &self.graph.services[i].container_name {
            Some(n) => n.clone(),
            None => format!("{}-{}-{number}", self.project.name, self.graph.order[i]),
        }
    }
}

/// Whether an exit 0 means the service is done, going by its restart policy.
fn runs_once(svc: &Service) -> bool {
    match svc.restart.as_deref() {
        None | Some("no") => true,
        Some(policy) => policy.starts_with("on-failure"),
    }
}

/// Why two containers of this service cannot run at the same time, if so.
fn single_instance(svc: &Service) -> Option<String> {
    if let Some(name) = &svc.container_name {
        return Some(format!(
            "container_name {name:?} allows one container at a time"
        ));
    }
    if svc.network_mode.as_deref() == Some("host") {
        return Some("on the host's network two copies would fight over its ports".into());
    }
    for (net, settings) in svc.networks.iter().flatten() {
        for key in ["ipv4_address", "ipv6_address"] {
            if let Some(addr) = settings
                .as_ref()
                .and_then(|s| s.get(key))
                .and_then(Json::as_str)
            {
                return Some(format!(
                    "fixed {key} {addr} on network {net} allows one container at a time"
                ));
            }
        }
    }
    None
}

fn writable_named_volume(svc: &Service) -> Option<&str> {
    svc.volumes
        .iter()
        .filter(|m| m.kind == "volume" && m.read_only != Some(true))
        .find_map(|m| m.source.as_deref())
}

/// `--scale`, else `scale`, else `deploy.replicas`, else 1.
fn desired_scale(name: &str, svc: &Service, options: &PlanOptions) -> Result<u32, PlanError> {
    if let Some(&n) = options.scale.get(name) {
        return Ok(n);
    }
    let from_file = [
        ("scale", svc.extra.get("scale")),
        (
            "deploy.replicas",
            svc.extra.get("deploy").and_then(|d| d.get("replicas")),
        ),
    ];
    for (key, value) in from_file {
        let Some(value) = value else { continue };
        return value
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| PlanError::InvalidScale {
                service: name.to_string(),
                key,
                value: value.to_string(),
            });
    }
    Ok(1)
}

/// An explicit update order: `x-berth.update` wins over compose's
/// `deploy.update_config.order`.
fn update_order(name: &str, svc: &Service) -> Result<Option<(Strategy, &'static str)>, PlanError> {
    use berth_compose::extensions::UpdateOrder;
    match svc.berth().update {
        Some(UpdateOrder::StopFirst) => return Ok(Some((Strategy::StopFirst, "x-berth.update"))),
        Some(UpdateOrder::StartFirst) => return Ok(Some((Strategy::StartFirst, "x-berth.update"))),
        None => {}
    }
    let candidates = [(
        "deploy.update_config.order",
        svc.extra
            .get("deploy")
            .and_then(|d| d.get("update_config"))
            .and_then(|u| u.get("order")),
    )];
    for (key, value) in candidates {
        let Some(value) = value else { continue };
        return match value.as_str() {
            Some("stop-first") => Ok(Some((Strategy::StopFirst, key))),
            Some("start-first") => Ok(Some((Strategy::StartFirst, key))),
            _ => Err(PlanError::InvalidUpdateOrder {
                service: name.to_string(),
                key,
                value: value.to_string(),
            }),
        };
    }
    Ok(None)
}

/// `sha256:0123456789ab…`: enough to tell digests apart in a sentence.
fn short(digest: &str) -> String {
    const KEEP: usize = 12;
    let (prefix, hex) = match digest.split_once(':') {
        Some((algo, hex)) => (Some(algo), hex),
        None => (None, digest),
    };
    let cut: String = hex.chars().take(KEEP).collect();
    let ellipsis = if hex.chars().count() > KEEP {
        "…"
    } else {
        ""
    };
    match prefix {
        Some(algo) => format!("{algo}:{cut}{ellipsis}"),
        None if cut.is_empty() => "(none)".to_string(),
        None => format!("{cut}{ellipsis}"),
    }
}
