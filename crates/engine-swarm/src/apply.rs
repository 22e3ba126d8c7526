//! `up` and `down` on a swarm: the plan (which services to create, update
//! or leave, with the reason), overlay networks, images shipped to the
//! cluster's registry, services created or updated, and a wait on every
//! task with per-task progress.

use crate::images::{compose, manifest_of};
use crate::observe::state_name;
use crate::spec::{self, service_name, ServiceInput};
use crate::{api_err, is_not_found, labels, open_store, Result, SwarmBackend};
use berth_compose::model::{Project, VolumesFrom};
use berth_engine::backend::{DownOptions, Progress, UpRequest};
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
}

/// `svc=digest,…` of what the deployed image is made from; a source not in
/// the store yet reads `unbuilt`.
fn sources_label(store: Option<&Store>, sources: &[(String, String)]) -> String {
    sources
        .iter()
        .map(|(svc, reference)| {
            let digest = store
                .and_then(|s| manifest_of(s, reference).ok())
                .map(|d| d.digest.to_string())
                .unwrap_or_else(|| "unbuilt".into());
            format!("{svc}={digest}")
        })
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
        });
    }
    Ok(out)
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
        let project = &request.loaded.project;
        spec::check_project(project)?;
        let files = crate::files::resolve(project, &request.loaded.environment)?;
        let wanted = wanted(project, request.images, &files)?;
        let existing: HashMap<String, Service> = self
            .stack_services(&project.name)
            .await?
            .into_iter()
            .filter_map(|s| Some((label(&s, labels::SERVICE)?.to_string(), s)))
            .collect();
        let mut plan = Plan::default();
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
            let sources = sources_label(store, &w.sources);
            let force = request.flags.force_recreate
                && (request.flags.services.is_empty()
                    || request.flags.services.contains(&w.service));
            let step = decide(w, &project.name, existing.get(&w.service), &sources, force);
            steps.push(step.clone());
            plan.steps.push(step);
        }
        for n in spec::not_applied(project) {
            plan.warnings.push(format!("not applied on swarm: {n}"));
        }
        Ok(Decided {
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
        let project = &request.loaded.project;
        let store = open_store()?;
        let Decided {
            wanted,
            steps,
            plan,
            existing,
            files,
        } = self.decide_all(request, Some(&store)).await?;
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
            let desc = if code.is_empty() {
                runtime
            } else {
                compose(&store, &runtime, &code)?
            };
            let repo = format!("berth/{}-{}", project.name, w.service);
            let shipped = registry.ship(&store, &desc, &repo)?;
            progress(&format!(
                "Image {} Pushed ({} blob{} uploaded, {} already there)",
                shipped.reference,
                shipped.blobs_uploaded,
                if shipped.blobs_uploaded == 1 { "" } else { "s" },
                shipped.blobs_existing
            ));
            let mut service_labels = HashMap::from([
                (labels::CONFIG_HASH.to_string(), w.config_hash.clone()),
                (
                    labels::SOURCES.to_string(),
                    sources_label(Some(&store), &w.sources),
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
            };
            let mut spec = spec::service_spec(&input)?;
            let name = service_name(&project.name, &w.service);
            match existing.get(&w.service) {
                None => {
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
                    self.docker
                        .update_service(
                            &name,
                            spec,
                            UpdateServiceOptions {
                                version: version as i32,
                                ..Default::default()
                            },
                            None,
                        )
                        .await
                        .map_err(|e| api_err(format!("updating service {name}"), e))?;
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
        let spec = spec::proxy_spec(
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
                self.docker
                    .update_service(
                        &name,
                        spec,
                        UpdateServiceOptions {
                            version: version as i32,
                            ..Default::default()
                        },
                        None,
                    )
                    .await
                    .map_err(|e| api_err(format!("updating service {name}"), e))?;
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
        loop {
            let svc = self
                .docker
                .inspect_service(&name, None::<InspectServiceOptions>)
                .await
                .map_err(|e| api_err(format!("inspecting service {name}"), e))?;
            let tasks = self.tasks(std::slice::from_ref(&svc), false).await?;
            for t in &tasks {
                let state = state_name(t.state);
                let line = match &t.error {
                    Some(e) if !e.is_empty() => format!("{state}: {e}"),
                    _ => state.clone(),
                };
                if seen.get(&t.id) != Some(&line) {
                    let old = t.spec_image != image;
                    progress(&format!(
                        "Task {}{} {line}",
                        t.name,
                        if old { " (previous image)" } else { "" }
                    ));
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
                .filter(|t| t.state == TaskState::RUNNING && t.spec_image == image)
                .count() as i64;
            let stale = current.iter().any(|t| t.spec_image != image);
            let enough = match replicas {
                Some(n) => ready >= n,
                None => ready >= 1,
            };
            if enough && !stale {
                progress(&format!("Service {name} Converged ({ready} running)"));
                return Ok(());
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

    pub(crate) async fn tear_down(
        &self,
        project: &str,
        _options: &DownOptions,
        progress: Progress<'_>,
    ) -> Result<bool> {
        let services = self.stack_services(project).await?;
        let had = !services.is_empty();
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
            if left.is_empty() && !tasks_left && files_left.is_empty() {
                return Ok(had);
            }
            if Instant::now() > deadline {
                for kept in &files_left {
                    progress(&format!("warning: not removed: {kept}"));
                }
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
