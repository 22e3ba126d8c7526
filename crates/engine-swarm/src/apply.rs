//! `up` and `down` on a swarm: the plan (which services to create, update
//! or leave, with the reason), overlay networks, images shipped to the
//! cluster's registry, services created or updated, and a wait on every
//! task with per-task progress.

use crate::images::{ca_layer, compose_layers, manifest_of, runtime_layer};
use crate::observe::state_name;
use crate::spec::{self, service_name, ServiceInput};
use crate::{api_err, is_not_found, labels, open_store, Result, SwarmBackend};
use berth_compose::model::{Project, VolumesFrom};
use berth_engine::backend::{DownOptions, Progress, RuntimeMount, UpRequest};
use berth_engine::{Action, BackendError, Plan, Step, Strategy};
use berth_oci::Store;
use bollard::models::{
    NetworkCreateRequest, Service, ServiceSpecUpdateConfigOrderEnum, ServiceUpdateStatusStateEnum,
    TaskState,
};
use bollard::query_parameters::{InspectServiceOptions, ListNetworksOptions, UpdateServiceOptions};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

/// How long `up` waits for a service's tasks to converge.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(300);
const POLL: Duration = Duration::from_millis(250);
/// How long `up` waits, once every task runs the new template, for the
/// previous ones to stop.
const DRAIN_LIMIT: Duration = Duration::from_secs(30);

/// A task that has not ended: it runs, or may still come to.
fn is_live(state: TaskState) -> bool {
    use TaskState as T;
    matches!(
        state,
        T::NEW
            | T::ALLOCATED
            | T::PENDING
            | T::ASSIGNED
            | T::ACCEPTED
            | T::PREPARING
            | T::READY
            | T::STARTING
            | T::RUNNING
    )
}

/// What one compose service becomes.
struct Wanted {
    service: String,
    /// A code carrier: its layers ride in the images of the services that
    /// mount its volumes; it is not deployed.
    folded_into: Vec<String>,
    /// The service and its `volumes_from` sources, with their image
    /// references in berth's store.
    sources: Vec<(String, String)>,
    config_hash: String,
    replicas: Option<i64>,
    /// Its secrets and configs by swarm name ([`crate::files::Files::label`]).
    files: String,
    /// Its `x-runtime`, as a layer on its image; `Some(None)`: named but
    /// not installed (a dry run before the first install).
    runtime: Option<Option<RuntimeMount>>,
}

/// The key of an `x-runtime` in [`labels::SOURCES`] (no service is named
/// with parentheses).
const RUNTIME_SOURCE: &str = "(x-runtime)";

/// `svc=digest,…` of what the deployed image is made from, and its
/// `x-runtime`'s digest; a source not in the store yet reads `unbuilt`.
fn sources_label(
    store: Option<&Store>,
    sources: &[(String, String)],
    runtime: Option<&Option<RuntimeMount>>,
) -> String {
    let runtime = runtime.map(|r| {
        let digest = r.as_ref().map_or("uninstalled", |r| r.digest.as_str());
        format!("{RUNTIME_SOURCE}={digest}")
    });
    sources
        .iter()
        .map(|(svc, reference)| {
            let digest = store
                .and_then(|s| manifest_of(s, reference).ok())
                .map(|d| d.digest.to_string())
                .unwrap_or_else(|| "unbuilt".into());
            format!("{svc}={digest}")
        })
        .chain(runtime)
        .collect::<Vec<_>>()
        .join(",")
}

/// What changed between two sources labels, for the plan's reason.
fn changed_sources(old: &str, new: &str) -> Vec<String> {
    let parse = |s: &str| -> BTreeMap<String, String> {
        s.split(',')
            .filter_map(|p| {
                p.split_once('=')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
            })
            .collect()
    };
    let (old, new) = (parse(old), parse(new));
    new.iter()
        .filter(|(k, v)| old.get(*k) != Some(v))
        .map(|(k, _)| k.clone())
        .collect()
}

fn wanted(
    project: &Project,
    images: &BTreeMap<String, String>,
    files: &crate::files::Files,
    runtimes: &BTreeMap<String, RuntimeMount>,
) -> Result<Vec<Wanted>> {
    if project.services.contains_key(crate::PROXY_SERVICE) {
        return Err(spec::refuse(
            format!("services.{}", crate::PROXY_SERVICE),
            "a service of this name (berth's proxy service has it)",
        ));
    }
    let mut folded: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, svc) in &project.services {
        for (i, v) in svc.volumes_from().into_iter().enumerate() {
            match v {
                VolumesFrom::Service { name: source, .. } => {
                    folded.entry(source).or_default().push(name.clone())
                }
                VolumesFrom::Container { .. } => return Err(spec::refuse(
                    format!("services.{name}.volumes_from[{i}]"),
                    "volumes from a container (only from a service, whose image is composed in)",
                )),
            }
        }
    }
    let image_of = |name: &str| -> String {
        images
            .get(name)
            .cloned()
            .or_else(|| project.services[name].image.clone())
            .unwrap_or_else(|| format!("{}-{name}", project.name))
    };
    let mut out = Vec::new();
    for (name, svc) in &project.services {
        if let Some(consumers) = folded.get(name) {
            if svc.runtime().is_some() {
                return Err(spec::refuse(
                    format!("services.{name}.x-runtime"),
                    "x-runtime on a service that lends its volumes (its layers ride in another image; give the x-runtime to that one)",
                ));
            }
            if !svc.ports.is_empty() || !svc.volumes_from.is_empty() {
                return Err(spec::refuse(
                    format!("services.{name}"),
                    "a service that both lends its volumes and publishes ports or mounts others'",
                ));
            }
            out.push(Wanted {
                service: name.clone(),
                folded_into: consumers.clone(),
                sources: Vec::new(),
                config_hash: String::new(),
                replicas: None,
                files: String::new(),
                runtime: None,
            });
            continue;
        }
        let mut sources = vec![(name.clone(), image_of(name))];
        for v in svc.volumes_from() {
            if let VolumesFrom::Service { name: s, .. } = v {
                sources.push((s.clone(), image_of(&s)));
            }
        }
        out.push(Wanted {
            service: name.clone(),
            folded_into: Vec::new(),
            sources,
            config_hash: berth_compose::hash::service_hash(svc),
            replicas: spec::replicas(svc),
            files: files.label(name),
            runtime: svc.runtime().map(|_| runtimes.get(name).cloned()),
        });
    }
    Ok(out)
}

/// The ports berth's readiness probe checks for `w`: its published TCP
/// targets, when neither the service nor its image has a healthcheck test
/// (a service's `healthcheck:` with timings only tunes the probe).
fn probed_ports(
    store: Option<&Store>,
    w: &Wanted,
    svc: &berth_compose::model::Service,
) -> Vec<u16> {
    if let Some(h) = &svc.healthcheck {
        if h.get("test").is_some() || h.get("disable").and_then(|d| d.as_bool()) == Some(true) {
            return Vec::new();
        }
    }
    let image_has_one = store.is_some_and(|s| {
        manifest_of(s, &w.sources[0].1)
            .and_then(|d| crate::images::has_healthcheck(s, &d))
            .unwrap_or(false)
    });
    if image_has_one {
        return Vec::new();
    }
    crate::probe::ports(svc)
}

fn label<'a>(s: &'a Service, key: &str) -> Option<&'a str> {
    s.spec
        .as_ref()?
        .labels
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

fn replicas_of(s: &Service) -> Option<i64> {
    s.spec
        .as_ref()?
        .mode
        .as_ref()?
        .replicated
        .as_ref()?
        .replicas
}

/// What `up` decided, and what it decided from.
struct Decided {
    /// The project as swarm deploys it ([`crate::adapt`]).
    project: Project,
    wanted: Vec<Wanted>,
    steps: Vec<Step>,
    plan: Plan,
    existing: HashMap<String, Service>,
    files: crate::files::Files,
}

/// The step for one service, from what runs and what is wanted.
fn decide(
    w: &Wanted,
    project: &str,
    existing: Option<&Service>,
    sources: &str,
    force: bool,
) -> Step {
    let name = service_name(project, &w.service);
    let s = &w.service;
    if !w.folded_into.is_empty() {
        return Step {
            service: s.clone(),
            action: Action::Nothing { container: None },
            reason: format!(
                "{s}: not deployed: its image's layers ride in the image of {} (swarm has no volumes_from)",
                w.folded_into.join(", ")
            ),
        };
    }
    let count = match w.replicas {
        Some(n) => format!("{n} replica{}", if n == 1 { "" } else { "s" }),
        None => "one task per node".into(),
    };
    let Some(existing) = existing else {
        return Step {
            service: s.clone(),
            action: Action::Create {
                number: w.replicas.unwrap_or(0).max(0) as u32,
                name,
            },
            reason: format!("{s}: new swarm service, {count}"),
        };
    };
    let start_first = existing
        .spec
        .as_ref()
        .and_then(|sp| sp.update_config.as_ref())
        .and_then(|u| u.order)
        != Some(ServiceSpecUpdateConfigOrderEnum::STOP_FIRST);
    let strategy = if start_first {
        Strategy::StartFirst
    } else {
        Strategy::StopFirst
    };
    let rolling = if start_first {
        "rolling update, start-first, one task at a time"
    } else {
        "rolling update, stop-first (host-mode ports)"
    };
    let mut why = Vec::new();
    if force {
        why.push("--force-recreate".to_string());
    }
    if label(existing, labels::CONFIG_HASH) != Some(w.config_hash.as_str()) {
        why.push("configuration changed".into());
    }
    let old_sources = label(existing, labels::SOURCES).unwrap_or_default();
    if old_sources != sources {
        for changed in changed_sources(old_sources, sources) {
            if changed == *s {
                why.push("image changed".into());
            } else if changed == RUNTIME_SOURCE {
                why.push("runtime changed (x-runtime, a new runtime layer)".into());
            } else {
                why.push(format!("code image of {changed} changed"));
            }
        }
    }
    // A secret or config with new content has a new name: the tasks must
    // be replaced to see it.
    for key in crate::files::changed(label(existing, labels::FILES).unwrap_or_default(), &w.files) {
        why.push(format!("{key} changed"));
    }
    if !why.is_empty() {
        return Step {
            service: s.clone(),
            action: Action::Recreate {
                container: name,
                number: 0,
                strategy,
                renew_anonymous_volumes: false,
            },
            reason: format!("{s}: {}: {rolling}", why.join(", ")),
        };
    }
    if replicas_of(existing) != w.replicas {
        let from = replicas_of(existing).map_or("global".into(), |n| n.to_string());
        return Step {
            service: s.clone(),
            action: Action::Recreate {
                container: name,
                number: 0,
                strategy: Strategy::StartFirst,
                renew_anonymous_volumes: false,
            },
            reason: format!("{s}: scaled from {from} to {count}: no task replaced"),
        };
    }
    Step {
        service: s.clone(),
        action: Action::Nothing {
            container: Some(name),
        },
        reason: format!("{s}: up to date ({count})"),
    }
}

impl SwarmBackend {
    async fn decide_all(&self, request: &UpRequest<'_>, store: Option<&Store>) -> Result<Decided> {
        let (adapted, notes) = crate::adapt::for_swarm(&request.loaded.project, request.flags)?;
        let project = &adapted;
        spec::check_project(project)?;
        let files = crate::files::resolve(project, &request.loaded.environment)?;
        let wanted = wanted(project, request.images, &files, request.runtimes)?;
        let existing: HashMap<String, Service> = self
            .stack_services(&project.name)
            .await?
            .into_iter()
            .filter_map(|s| Some((label(&s, labels::SERVICE)?.to_string(), s)))
            .collect();
        let mut plan = Plan {
            warnings: notes,
            ..Plan::default()
        };
        let mut steps = Vec::new();
        for svc in existing.keys() {
            if svc != crate::PROXY_SERVICE && !project.services.contains_key(svc) {
                let name = service_name(&project.name, svc);
                if request.flags.remove_orphans {
                    plan.steps.push(Step {
                        service: svc.clone(),
                        action: Action::RemoveOrphan { container: name },
                        reason: format!("{svc}: no longer in the project (--remove-orphans)"),
                    });
                } else {
                    plan.warnings.push(format!(
                        "service {name} is not in the project (up --remove-orphans removes it)"
                    ));
                }
            }
        }
        for w in &wanted {
            let sources = sources_label(store, &w.sources, w.runtime.as_ref());
            let force = request.flags.force_recreate
                && (request.flags.services.is_empty()
                    || request.flags.services.contains(&w.service));
            let step = decide(w, &project.name, existing.get(&w.service), &sources, force);
            steps.push(step.clone());
            plan.steps.push(step);
        }
        for (w, step) in wanted.iter().zip(&steps) {
            if matches!(step.action, Action::Nothing { .. }) || !cfg!(target_arch = "x86_64") {
                continue;
            }
            let ports = probed_ports(store, w, &project.services[&w.service]);
            if !ports.is_empty() {
                plan.warnings.push(format!(
                    "services.{}: no healthcheck: berth adds a TCP readiness probe on port {} (a new task counts as running once it accepts; updates wait for it)",
                    w.service,
                    crate::probe::list(&ports)
                ));
            }
        }
        for n in spec::not_applied(project) {
            plan.warnings.push(format!("not applied on swarm: {n}"));
        }
        let deployed: Vec<&str> = wanted
            .iter()
            .filter(|w| w.folded_into.is_empty())
            .map(|w| w.service.as_str())
            .collect();
        plan.warnings
            .extend(spec::per_node_volumes(project, &deployed));
        for w in &wanted {
            if let Some(Some(r)) = &w.runtime {
                if r.npm_cache.is_some() {
                    // The shared cache is a directory of this machine; the
                    // tasks run on other nodes.
                    plan.warnings.push(format!(
                        "not applied on swarm: services.{}.x-runtime's shared npm cache (tasks on other nodes fill their own)",
                        w.service
                    ));
                }
            }
        }
        Ok(Decided {
            project: adapted,
            wanted,
            steps,
            plan,
            existing,
            files,
        })
    }

    pub(crate) async fn make_plan(&self, request: &UpRequest<'_>) -> Result<Plan> {
        let store = open_store().ok();
        Ok(self.decide_all(request, store.as_ref()).await?.plan)
    }

    async fn ensure_networks(
        &self,
        project: &Project,
        keys: &BTreeSet<String>,
        progress: Progress<'_>,
    ) -> Result<()> {
        let existing: BTreeSet<String> = self
            .docker
            .list_networks(None::<ListNetworksOptions>)
            .await
            .map_err(|e| api_err("listing networks", e))?
            .into_iter()
            .filter_map(|n| n.name)
            .collect();
        for key in keys {
            let name = spec::network_name(project, key);
            let def = project.networks.get(key);
            if def.and_then(|n| n.external) == Some(true) {
                if !existing.contains(&name) {
                    return Err(BackendError::not_found(format!(
                        "networks.{key}: external network {name} does not exist on the swarm"
                    )));
                }
                continue;
            }
            if existing.contains(&name) {
                continue;
            }
            let mut net_labels: HashMap<String, String> = def
                .and_then(|n| n.extra.get("labels"))
                .and_then(|l| l.as_object())
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                        .collect()
                })
                .unwrap_or_default();
            net_labels.insert(labels::STACK.into(), project.name.clone());
            net_labels.insert(labels::PROJECT.into(), project.name.clone());
            net_labels.insert("com.docker.compose.network".into(), key.clone());
            self.docker
                .create_network(NetworkCreateRequest {
                    name: name.clone(),
                    driver: Some("overlay".into()),
                    // Attachable: `docker run --network` (and berth's
                    // proxy) can join it from any node.
                    attachable: Some(true),
                    internal: def.and_then(|n| n.internal),
                    labels: Some(net_labels),
                    ..Default::default()
                })
                .await
                .map_err(|e| api_err(format!("creating overlay network {name}"), e))?;
            progress(&format!("Network {name} Created (overlay)"));
        }
        Ok(())
    }

    pub(crate) async fn converge(
        &self,
        request: &UpRequest<'_>,
        progress: Progress<'_>,
    ) -> Result<()> {
        let store = open_store()?;
        let Decided {
            project,
            wanted,
            steps,
            plan,
            existing,
            files,
        } = self.decide_all(request, Some(&store)).await?;
        let project = &project;
        self.check_external(&files).await?;
        for w in &plan.warnings {
            progress(&format!("warning: {w}"));
        }
        let mut networks = BTreeSet::new();
        for w in wanted.iter().filter(|w| w.folded_into.is_empty()) {
            networks.extend(spec::service_networks(&project.services[&w.service]));
        }
        self.ensure_networks(project, &networks, progress).await?;
        let mut changed: Vec<(String, String, Option<i64>)> = Vec::new();
        for (w, step) in wanted.iter().zip(&steps) {
            if matches!(step.action, Action::Nothing { .. }) {
                continue;
            }
            let registry = self.registry()?;
            let svc = &project.services[&w.service];
            let runtime = manifest_of(&store, &w.sources[0].1)?;
            let code: Vec<(String, berth_oci::Descriptor)> = w.sources[1..]
                .iter()
                .map(|(s, r)| Ok((s.clone(), manifest_of(&store, r)?)))
                .collect::<Result<_>>()?;
            // An x-runtime rides on the base image as its own layer (and
            // the CA bundle as another), below the code: a runtime bump
            // ships that layer, a code change only the code's.
            let mut extra = Vec::new();
            match &w.runtime {
                None => {}
                Some(None) => {
                    return Err(BackendError::invalid(format!(
                    "services.{}.x-runtime: the runtime is not installed (berth up installs it)",
                    w.service
                )))
                }
                Some(Some(r)) => {
                    extra.push(runtime_layer(&store, r)?);
                    if let Some(ca) = &r.ca_bundle {
                        extra.push(ca_layer(&store, ca)?);
                    }
                }
            }
            // Without a healthcheck swarm would retire an old task as soon
            // as its replacement starts: berth's probe gates the roll.
            let (mut top, mut readiness) = (Vec::new(), None);
            let ports = probed_ports(Some(&store), w, svc);
            if let Some((layer, check)) = crate::probe::readiness(&store, &ports)? {
                top.push(layer);
                readiness = Some(check);
            }
            let desc = if code.is_empty() && extra.is_empty() && top.is_empty() {
                runtime
            } else {
                compose_layers(&store, &runtime, &extra, &code, &top)?
            };
            let repo = format!("berth/{}-{}", project.name, w.service);
            let shipped = registry.ship(&store, &desc, &repo)?;
            progress(&format!(
                "Image {} Pushed ({} blob{} uploaded, {} mounted from other repositories, {} already there)",
                shipped.reference,
                shipped.blobs_uploaded,
                if shipped.blobs_uploaded == 1 { "" } else { "s" },
                shipped.blobs_mounted,
                shipped.blobs_existing
            ));
            let mut service_labels = HashMap::from([
                (labels::CONFIG_HASH.to_string(), w.config_hash.clone()),
                (
                    labels::SOURCES.to_string(),
                    sources_label(Some(&store), &w.sources, w.runtime.as_ref()),
                ),
                (
                    labels::BERTH_VERSION.to_string(),
                    env!("CARGO_PKG_VERSION").to_string(),
                ),
            ]);
            if let Some(i) = &svc.image {
                service_labels.insert(labels::STACK_IMAGE.into(), i.clone());
            }
            service_labels.insert(labels::FILES.into(), w.files.clone());
            let refs = files.services.get(&w.service).cloned().unwrap_or_default();
            let ids = self.ensure_files(&files, &refs, progress).await?;
            let (secrets, configs) = crate::files::task_refs(&refs, &ids)?;
            let input = ServiceInput {
                project: &project.name,
                service: &w.service,
                svc,
                image: shipped.reference.clone(),
                labels: service_labels,
                networks: spec::service_networks(svc)
                    .iter()
                    .map(|k| spec::network_name(project, k))
                    .collect(),
                publish: self.proxy.is_none(),
                secrets,
                configs,
                runtime: w.runtime.is_some(),
                mounts: spec::mounts(project, &w.service, svc)?,
                readiness,
            };
            let mut spec = spec::service_spec(&input)?;
            let name = service_name(&project.name, &w.service);
            match existing.get(&w.service) {
                None => {
                    spec::stamp(&mut spec);
                    self.docker
                        .create_service(spec, None)
                        .await
                        .map_err(|e| api_err(format!("creating service {name}"), e))?;
                    progress(&format!("Service {name} Created"));
                }
                Some(old) => {
                    let version = old
                        .version
                        .as_ref()
                        .and_then(|v| v.index)
                        .unwrap_or_default();
                    if request.flags.force_recreate {
                        let prev = old
                            .spec
                            .as_ref()
                            .and_then(|s| s.task_template.as_ref())
                            .and_then(|t| t.force_update)
                            .unwrap_or(0);
                        if let Some(t) = spec.task_template.as_mut() {
                            t.force_update = Some(prev + 1);
                        }
                    }
                    spec::stamp(&mut spec);
                    self.update_service(&name, spec, version).await?;
                    progress(&format!("Service {name} Updating ({})", step.reason));
                }
            }
            changed.push((w.service.clone(), shipped.reference, w.replicas));
        }
        for step in &plan.steps {
            if let Action::RemoveOrphan { container } = &step.action {
                self.docker
                    .delete_service(container)
                    .await
                    .map_err(|e| api_err(format!("removing service {container}"), e))?;
                progress(&format!("Service {container} Removed"));
            }
        }
        if let Some(launch) = &self.proxy {
            if let Some(proxy) = self
                .ensure_proxy(project, &wanted, &store, launch, &existing, progress)
                .await?
            {
                changed.push(proxy);
            }
        }
        for (service, image, replicas) in changed {
            self.wait_converged(&project.name, &service, &image, replicas, progress)
                .await?;
        }
        // Rolled: what no task is given any more goes.
        for kept in self.prune_files(&project.name, progress).await? {
            progress(&format!("warning: not removed yet: {kept}"));
        }
        Ok(())
    }

    /// The project's proxy service, made or updated to publish the ports of
    /// every deployed service; `(service, image, tasks)` to wait for when it
    /// changed.
    async fn ensure_proxy(
        &self,
        project: &Project,
        wanted: &[Wanted],
        store: &Store,
        launch: &crate::ProxyLaunch,
        existing: &HashMap<String, Service>,
        progress: Progress<'_>,
    ) -> Result<Option<(String, String, Option<i64>)>> {
        let mut routes = Vec::new();
        let mut networks = BTreeSet::new();
        for w in wanted.iter().filter(|w| w.folded_into.is_empty()) {
            let svc = &project.services[&w.service];
            for (i, p) in svc.ports.iter().enumerate() {
                let listen = p
                    .published
                    .as_deref()
                    .and_then(|p| p.parse().ok())
                    .ok_or_else(|| {
                        spec::refuse(
                            format!("services.{}.ports[{i}].published", w.service),
                            "a port without a published number (berth's proxy listens on it on every node)",
                        )
                    })?;
                routes.push(crate::proxy::Route {
                    listen,
                    host: format!("tasks.{}", service_name(&project.name, &w.service)),
                    port: p.target,
                });
                networks.extend(
                    spec::service_networks(svc)
                        .iter()
                        .map(|k| spec::network_name(project, k)),
                );
            }
        }
        let name = spec::proxy_name(&project.name);
        if routes.is_empty() {
            return Ok(None);
        }
        let desc = crate::images::proxy_image(store, launch)?;
        let routes_label = routes
            .iter()
            .map(|r| r.to_string())
            .collect::<Vec<_>>()
            .join(",");
        let old = existing.get(crate::PROXY_SERVICE);
        let same = old.is_some_and(|o| {
            label(o, labels::PROXY_ROUTES) == Some(routes_label.as_str())
                && label(o, labels::SOURCES) == Some(desc.digest.as_str())
        });
        if same {
            return Ok(None);
        }
        let shipped = self.registry()?.ship(store, &desc, "berth/proxy")?;
        let mut spec = spec::proxy_spec(
            &project.name,
            &shipped.reference,
            &routes,
            &networks.into_iter().collect::<Vec<_>>(),
            HashMap::from([
                (
                    labels::SERVICE.to_string(),
                    crate::PROXY_SERVICE.to_string(),
                ),
                (labels::PROXY_ROUTES.to_string(), routes_label.clone()),
                (labels::SOURCES.to_string(), desc.digest.to_string()),
            ]),
        );
        spec::stamp(&mut spec);
        match old {
            None => {
                self.docker
                    .create_service(spec, None)
                    .await
                    .map_err(|e| api_err(format!("creating service {name}"), e))?;
                progress(&format!(
                    "Service {name} Created (berth's proxy: {routes_label})"
                ));
            }
            Some(o) => {
                let version = o.version.as_ref().and_then(|v| v.index).unwrap_or_default();
                self.update_service(&name, spec, version).await?;
                progress(&format!(
                    "Service {name} Updating (berth's proxy: {routes_label})"
                ));
            }
        }
        let nodes = self.nodes().await?.len() as i64;
        Ok(Some((
            crate::PROXY_SERVICE.to_string(),
            shipped.reference,
            Some(nodes),
        )))
    }

    /// Replace `name`'s spec with `spec`, given the version it was read at.
    /// Swarm itself bumps a service's version when it records how an
    /// update went (after the update's monitor period, so often just after
    /// the previous `up` returned): an update refused as out of sequence is
    /// sent again at the version the service has now. `spec` is what the
    /// compose file asks for, never a merge with what was read, so it
    /// stays right at any version.
    async fn update_service(
        &self,
        name: &str,
        spec: bollard::models::ServiceSpec,
        mut version: u64,
    ) -> Result<()> {
        let mut tries = 0;
        loop {
            let sent = self
                .docker
                .update_service(
                    name,
                    spec.clone(),
                    UpdateServiceOptions {
                        version: version as i32,
                        ..Default::default()
                    },
                    None,
                )
                .await;
            match sent {
                Ok(_) => return Ok(()),
                Err(e) if tries < 5 && e.to_string().contains("update out of sequence") => {
                    tries += 1;
                    let now = self
                        .docker
                        .inspect_service(name, None::<InspectServiceOptions>)
                        .await
                        .map_err(|e| api_err(format!("inspecting service {name}"), e))?;
                    version = now.version.and_then(|v| v.index).unwrap_or_default();
                }
                Err(e) => return Err(api_err(format!("updating service {name}"), e)),
            }
        }
    }

    /// Until every task swarm wants for `service` runs `image` (healthy,
    /// when it has a healthcheck: swarm counts a task running only then),
    /// reporting each task's state as it changes; an update swarm rolled
    /// back or paused is an error naming why.
    async fn wait_converged(
        &self,
        project: &str,
        service: &str,
        image: &str,
        replicas: Option<i64>,
        progress: Progress<'_>,
    ) -> Result<()> {
        let name = service_name(project, service);
        let deadline = Instant::now() + CONVERGE_TIMEOUT;
        let mut seen: HashMap<String, String> = HashMap::new();
        let mut settled: Option<Instant> = None;
        loop {
            let svc = self
                .docker
                .inspect_service(&name, None::<InspectServiceOptions>)
                .await
                .map_err(|e| api_err(format!("inspecting service {name}"), e))?;
            let tasks = self.tasks(std::slice::from_ref(&svc), false).await?;
            // A task is current when swarm made it from the template the
            // service has now: an update that keeps the image (a new
            // command, environment, healthcheck) is not done until the
            // tasks made before it are replaced.
            let want = svc
                .spec
                .as_ref()
                .and_then(|s| s.task_template.as_ref())
                .and_then(|t| t.container_spec.as_ref())
                .and_then(|c| c.labels.as_ref())
                .and_then(|l| l.get(labels::TASK_TEMPLATE))
                .cloned();
            for t in &tasks {
                let state = state_name(t.state);
                let line = match &t.error {
                    Some(e) if !e.is_empty() => format!("{state}: {e}"),
                    _ => state.clone(),
                };
                if seen.get(&t.id) != Some(&line) {
                    let old = if t.spec_image != image {
                        " (previous image)"
                    } else if t.template != want {
                        " (previous configuration)"
                    } else {
                        ""
                    };
                    progress(&format!("Task {}{old} {line}", t.name));
                    seen.insert(t.id.clone(), line);
                }
            }
            if let Some(u) = svc.update_status.as_ref() {
                use ServiceUpdateStatusStateEnum as U;
                if matches!(
                    u.state,
                    Some(
                        U::ROLLBACK_STARTED
                            | U::ROLLBACK_COMPLETED
                            | U::ROLLBACK_PAUSED
                            | U::PAUSED
                    )
                ) {
                    return Err(BackendError::engine(format!(
                        "service {name}: the update failed and swarm {}: {}",
                        match u.state {
                            Some(U::PAUSED) => "paused it",
                            _ => "rolled it back",
                        },
                        u.message.as_deref().unwrap_or("no reason given")
                    )));
                }
            }
            let current: Vec<_> = tasks
                .iter()
                .filter(|t| t.desired == TaskState::RUNNING)
                .collect();
            let ready = current
                .iter()
                .filter(|t| t.state == TaskState::RUNNING && t.template == want)
                .count() as i64;
            let stale = current.iter().any(|t| t.template != want);
            let enough = match replicas {
                Some(n) => ready >= n,
                None => ready >= 1,
            };
            // Tasks of the previous template swarm is stopping still answer
            // (and may still be in `tasks.<service>`) until they stop: the
            // roll is done when they have, or after DRAIN_LIMIT (a task on
            // a node that is down never reports that it stopped).
            let stopping = tasks
                .iter()
                .filter(|t| t.template != want && is_live(t.state))
                .count();
            if enough && !stale {
                let since = *settled.get_or_insert_with(Instant::now);
                if stopping == 0 || since.elapsed() > DRAIN_LIMIT {
                    progress(&format!("Service {name} Converged ({ready} running)"));
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(BackendError::engine(format!(
                    "service {name}: {ready} of {} tasks running after {} s",
                    replicas.map_or("its".into(), |n| n.to_string()),
                    CONVERGE_TIMEOUT.as_secs()
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The hostnames of the nodes where a task of `services` that mounts
    /// a volume berth asked for (named or anonymous) ever ran.
    async fn volume_nodes(&self, services: &[Service]) -> Result<BTreeSet<String>> {
        let with_volumes: Vec<Service> = services
            .iter()
            .filter(|s| {
                s.spec
                    .as_ref()
                    .and_then(|sp| sp.task_template.as_ref())
                    .and_then(|t| t.container_spec.as_ref())
                    .and_then(|c| c.mounts.as_ref())
                    .is_some_and(|m| {
                        m.iter().any(|m| {
                            m.typ == Some(bollard::models::MountType::VOLUME)
                                && m.volume_options
                                    .as_ref()
                                    .is_some_and(|o| o.labels.is_some())
                        })
                    })
            })
            .cloned()
            .collect();
        Ok(self
            .tasks(&with_volumes, false)
            .await?
            .into_iter()
            .map(|t| t.node.hostname)
            .filter(|h| !h.is_empty())
            .collect())
    }

    /// Remove the project's volumes on the manager's own node (those its
    /// tasks made); the names swarm refused to remove (still in use).
    async fn remove_manager_volumes(
        &self,
        project: &str,
        progress: Progress<'_>,
    ) -> Result<Vec<String>> {
        remove_volumes(&self.docker, project, progress).await
    }

    /// Remove the project's volumes on the nodes other than the manager's
    /// that `BERTH_SWARM_NODES` names, and say which nodes may still hold
    /// some: swarm has no call to remove a volume on another node.
    async fn name_volumes_left(
        &self,
        project: &str,
        nodes: &BTreeSet<String>,
        progress: Progress<'_>,
    ) -> Result<()> {
        let all = self.nodes().await?;
        let manager = all.get(&self.node_id).map(|n| n.hostname.as_str());
        for node in nodes.iter().filter(|n| Some(n.as_str()) != manager) {
            let id = all
                .iter()
                .find(|(_, n)| &n.hostname == node)
                .map(|(id, _)| id.as_str())
                .unwrap_or_default();
            let Some(endpoint) = self.node_endpoints.get(node, id) else {
                progress(&format!(
                    "warning: volumes of {project} on node {node} not removed: swarm removes a volume only through its own node's Engine (add {node}=unix:///…|tcp://… to {}, or there: docker volume rm $(docker volume ls -q --filter label={}))",
                    crate::nodes::NODES_ENV,
                    labels::stack_filter(project)
                ));
                continue;
            };
            let left = match crate::engine_client(endpoint).await {
                Ok(docker) => {
                    // The node may still be removing the tasks' containers.
                    let deadline = Instant::now() + Duration::from_secs(20);
                    loop {
                        let left = remove_volumes(&docker, project, progress).await?;
                        if left.is_empty() || Instant::now() > deadline {
                            break left;
                        }
                        tokio::time::sleep(POLL).await;
                    }
                }
                Err(e) => vec![format!("node {node}: {}", e.message)],
            };
            for l in left {
                progress(&format!("warning: not removed on node {node}: {l}"));
            }
        }
        Ok(())
    }
}

/// Remove the project's volumes that `docker`'s node holds; what it
/// refused to remove (still in use), named.
async fn remove_volumes(
    docker: &bollard::Docker,
    project: &str,
    progress: Progress<'_>,
) -> Result<Vec<String>> {
    let filters = HashMap::from([("label".to_string(), vec![labels::stack_filter(project)])]);
    let volumes = docker
        .list_volumes(Some(bollard::query_parameters::ListVolumesOptions {
            filters: Some(filters),
        }))
        .await
        .map_err(|e| api_err("listing volumes", e))?
        .volumes
        .unwrap_or_default();
    let mut left = Vec::new();
    for v in volumes {
        match docker
            .remove_volume(
                &v.name,
                None::<bollard::query_parameters::RemoveVolumeOptions>,
            )
            .await
        {
            Ok(()) => progress(&format!("Volume {} Removed", v.name)),
            Err(e) if is_not_found(&e) => {}
            Err(e) => left.push(format!(
                "volume {}: {}",
                v.name,
                api_err("", e).message.trim_start_matches(": ")
            )),
        }
    }
    Ok(left)
}

impl SwarmBackend {
    pub(crate) async fn tear_down(
        &self,
        project: &str,
        options: &DownOptions,
        progress: Progress<'_>,
    ) -> Result<bool> {
        let services = self.stack_services(project).await?;
        let had = !services.is_empty();
        // Volumes live on the nodes whose tasks made them; the manager's
        // Engine reaches only its own node's, so the others are named.
        let volume_nodes = if options.volumes {
            self.volume_nodes(&services).await?
        } else {
            BTreeSet::new()
        };
        for s in &services {
            let name = s
                .spec
                .as_ref()
                .and_then(|sp| sp.name.clone())
                .unwrap_or_default();
            match self.docker.delete_service(&name).await {
                Ok(()) => progress(&format!("Service {name} Removed")),
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(api_err(format!("removing service {name}"), e)),
            }
        }
        // Networks go once the nodes let go of them (their tasks' containers
        // are removed asynchronously, node by node).
        let filters = HashMap::from([("label".to_string(), vec![labels::stack_filter(project)])]);
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let nets = self
                .docker
                .list_networks(Some(ListNetworksOptions {
                    filters: Some(filters.clone()),
                }))
                .await
                .map_err(|e| api_err("listing networks", e))?;
            let mut left = Vec::new();
            for n in nets {
                let name = n.name.unwrap_or_default();
                match self.docker.remove_network(&name).await {
                    Ok(()) => progress(&format!("Network {name} Removed")),
                    Err(e) if is_not_found(&e) => {}
                    Err(e) => left.push((name, e)),
                }
            }
            let tasks_left = !self
                .tasks(&services, false)
                .await
                .unwrap_or_default()
                .is_empty();
            // No service names them any more: every secret and config
            // berth made for the stack goes (external ones carry no label).
            let files_left = match self.prune_files(project, progress).await {
                Ok(kept) => kept,
                Err(e) => vec![e.message],
            };
            let volumes_left = if options.volumes && !tasks_left {
                self.remove_manager_volumes(project, progress).await?
            } else {
                Vec::new()
            };
            if left.is_empty() && !tasks_left && files_left.is_empty() && volumes_left.is_empty() {
                self.name_volumes_left(project, &volume_nodes, progress)
                    .await?;
                return Ok(had);
            }
            if Instant::now() > deadline {
                for kept in files_left.iter().chain(&volumes_left) {
                    progress(&format!("warning: not removed: {kept}"));
                }
                self.name_volumes_left(project, &volume_nodes, progress)
                    .await?;
                if let Some((name, e)) = left.pop() {
                    return Err(api_err(format!("removing network {name}"), e));
                }
                return Ok(had);
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reason_names_which_image_changed() {
        assert_eq!(
            changed_sources("app=sha256:a,code=sha256:b", "app=sha256:a,code=sha256:c"),
            ["code"]
        );
        assert_eq!(changed_sources("app=sha256:a", "app=sha256:b"), ["app"]);
        assert!(changed_sources("app=x", "app=x").is_empty());
    }
}
