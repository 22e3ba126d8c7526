//! What runs, read back from the daemon through compose's labels: the
//! containers `ps` shows and the [`ObservedContainer`]s the planner compares.

use crate::{api_err, is_not_found, labels, DockerBackend, Result};
use berth_engine::backend::{Container, Health, ProjectStatus, ProjectSummary, Status};
use berth_engine::{ContainerState, ObservedContainer};
use bollard::models::ContainerInspectResponse;
use bollard::query_parameters::{InspectContainerOptions, ListContainersOptions};
use bollard::Docker;
use std::collections::{BTreeMap, HashMap};

/// The text serde gives one of bollard's enums (`running`, `healthy`).
pub(crate) fn enum_text<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

pub(crate) fn labels_of(c: &ContainerInspectResponse) -> HashMap<String, String> {
    c.config
        .as_ref()
        .and_then(|c| c.labels.clone())
        .unwrap_or_default()
}

pub(crate) fn name_of(c: &ContainerInspectResponse) -> String {
    c.name
        .as_deref()
        .unwrap_or_default()
        .trim_start_matches('/')
        .to_string()
}

pub(crate) fn status_of(c: &ContainerInspectResponse) -> Status {
    c.state
        .as_ref()
        .and_then(|s| s.status.as_ref())
        .and_then(|s| Status::parse(&enum_text(s)))
        .unwrap_or(Status::Exited)
}

pub(crate) fn health_of(c: &ContainerInspectResponse) -> Option<Health> {
    let h = c.state.as_ref()?.health.as_ref()?.status.as_ref()?;
    Health::parse(&enum_text(h))
}

fn exit_code(c: &ContainerInspectResponse) -> Option<i32> {
    c.state.as_ref().and_then(|s| s.exit_code).map(|n| n as i32)
}

/// Named volumes (not anonymous ones) a container mounts: Docker names an
/// anonymous volume by 64 hex digits.
pub(crate) fn is_anonymous(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Every container labelled with `project`, inspected, one-offs included.
pub(crate) async fn inspect_project(
    docker: &Docker,
    project: &str,
) -> Result<Vec<ContainerInspectResponse>> {
    let filters = HashMap::from([("label".to_string(), vec![labels::project_filter(project)])]);
    let list = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        }))
        .await
        .map_err(|e| api_err("listing containers", e))?;
    let mut out = Vec::with_capacity(list.len());
    for c in list {
        let Some(id) = c.id else { continue };
        match docker
            .inspect_container(&id, None::<InspectContainerOptions>)
            .await
        {
            Ok(i) => out.push(i),
            // Removed between the list and the inspect.
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(api_err(format!("inspecting container {id}"), e)),
        }
    }
    out.sort_by_key(name_of);
    Ok(out)
}

impl DockerBackend {
    /// Every container labelled with `project`, inspected, one-offs included.
    pub(crate) async fn inspect_project(
        &self,
        project: &str,
    ) -> Result<Vec<ContainerInspectResponse>> {
        inspect_project(&self.docker, project).await
    }

    pub(crate) fn to_container(&self, c: &ContainerInspectResponse) -> Container {
        let labels = labels_of(c);
        let status = status_of(c);
        let ports = c
            .network_settings
            .as_ref()
            .and_then(|n| n.ports.as_ref())
            .map(|ports| {
                let mut out: Vec<String> = ports
                    .iter()
                    .flat_map(|(port, bindings)| {
                        bindings.iter().flatten().map(move |b| {
                            format!(
                                "{}:{}->{port}",
                                b.host_ip
                                    .as_deref()
                                    .filter(|s| !s.is_empty())
                                    .unwrap_or("0.0.0.0"),
                                b.host_port.as_deref().unwrap_or_default()
                            )
                        })
                    })
                    .collect();
                out.sort();
                out
            })
            .unwrap_or_default();
        // Ports berth's keeper holds are published while the container
        // runs, as Docker shows its own.
        let ports = match labels.get(labels::PUBLISHED) {
            Some(held) if !held.is_empty() && status == Status::Running => {
                held.split(',').map(str::to_string).collect()
            }
            Some(_) => Vec::new(),
            None => ports,
        };
        let ip = c
            .network_settings
            .as_ref()
            .and_then(|n| n.networks.as_ref())
            .and_then(|n| {
                let mut ips: Vec<&String> = n
                    .values()
                    .filter_map(|e| e.ip_address.as_ref().filter(|s| !s.is_empty()))
                    .collect();
                ips.sort();
                ips.first().map(|s| s.to_string())
            });
        Container {
            name: name_of(c),
            service: labels.get(labels::SERVICE).cloned().unwrap_or_default(),
            id: c.id.clone().unwrap_or_default(),
            number: labels
                .get(labels::NUMBER)
                .and_then(|n| n.parse().ok())
                .unwrap_or(0),
            one_off: labels.get(labels::ONEOFF).is_some_and(|v| v == "True"),
            // A pid means something only in this machine's namespace.
            pid: if self.endpoint.is_local() && status.is_alive() {
                c.state
                    .as_ref()
                    .and_then(|s| s.pid)
                    .filter(|p| *p > 0)
                    .map(|p| p as i32)
            } else {
                None
            },
            status,
            exit_code: if status == Status::Exited {
                exit_code(c)
            } else {
                None
            },
            restarts: c.restart_count.unwrap_or(0).max(0) as u32,
            health: health_of(c),
            ip,
            ports,
            image: c
                .config
                .as_ref()
                .and_then(|c| c.image.clone())
                .unwrap_or_default(),
            labels: labels.into_iter().collect(),
            // Docker 20.10 keeps none (the backend refuses `annotations`).
            annotations: Default::default(),
        }
    }

    pub(crate) fn to_observed(c: &ContainerInspectResponse) -> ObservedContainer {
        let labels = labels_of(c);
        let state = match status_of(c) {
            Status::Running => ContainerState::Running,
            Status::Paused => ContainerState::Paused,
            Status::Restarting => ContainerState::Restarting,
            Status::Created => ContainerState::Created,
            Status::Exited => ContainerState::Exited {
                code: exit_code(c).unwrap_or(0),
            },
        };
        let mut networks: Vec<String> = c
            .network_settings
            .as_ref()
            .and_then(|n| n.networks.as_ref())
            .map(|n| n.keys().cloned().collect())
            .unwrap_or_default();
        networks.sort();
        let volumes = c
            .mounts
            .iter()
            .flatten()
            .filter(|m| m.typ.as_deref() == Some("volume"))
            .filter_map(|m| m.name.clone())
            .filter(|n| !is_anonymous(n))
            .collect();
        let mounted: BTreeMap<String, String> = labels
            .get(labels::MOUNTED_IMAGES)
            .and_then(|j| serde_json::from_str(j).ok())
            .unwrap_or_default();
        ObservedContainer {
            name: name_of(c),
            service: labels.get(labels::SERVICE).cloned().unwrap_or_default(),
            number: labels
                .get(labels::NUMBER)
                .and_then(|n| n.parse().ok())
                .unwrap_or(1),
            config_hash: labels.get(labels::CONFIG_HASH).cloned().unwrap_or_default(),
            // The image ID the container runs: what a re-pulled or rebuilt
            // image changes.
            image_digest: c.image.clone().filter(|i| !i.is_empty()).map(|id| {
                match labels.get(labels::RUNTIME) {
                    Some(rt) => format!("{id}+{rt}"),
                    None => id,
                }
            }),
            mounted_image_digests: mounted,
            networks,
            volumes,
            state,
            one_off: labels.get(labels::ONEOFF).is_some_and(|v| v == "True"),
        }
    }

    pub(crate) async fn observe_project(&self, project: &str) -> Result<Option<ProjectStatus>> {
        let raw: Vec<ContainerInspectResponse> = self
            .inspect_project(project)
            .await?
            .into_iter()
            .filter(|c| !crate::apply::is_retired(&name_of(c)))
            .collect();
        if raw.is_empty() {
            return Ok(None);
        }
        Ok(Some(ProjectStatus {
            project: project.to_string(),
            containers: raw.iter().map(|c| self.to_container(c)).collect(),
            observed: raw.iter().map(Self::to_observed).collect(),
            keeper: format!("dockerd at {}", self.endpoint.host),
        }))
    }

    pub(crate) async fn list_projects(&self) -> Result<Vec<ProjectSummary>> {
        let filters = HashMap::from([("label".to_string(), vec![labels::PROJECT.to_string()])]);
        let list = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filters),
                ..Default::default()
            }))
            .await
            .map_err(|e| api_err("listing containers", e))?;
        let mut by: BTreeMap<String, ProjectSummary> = BTreeMap::new();
        for c in list {
            let Some(project) = c.labels.as_ref().and_then(|l| l.get(labels::PROJECT)) else {
                continue;
            };
            let entry = by.entry(project.clone()).or_insert_with(|| ProjectSummary {
                name: project.clone(),
                running: 0,
                total: 0,
            });
            entry.total += 1;
            let state = c.state.as_ref().map(enum_text).unwrap_or_default();
            if matches!(state.as_str(), "running" | "paused" | "restarting") {
                entry.running += 1;
            }
        }
        Ok(by.into_values().collect())
    }

    /// The daemon's ID of `reference` and the `PATH` its config sets.
    pub(crate) async fn image_id_and_path(
        &self,
        reference: &str,
    ) -> Result<Option<(String, Option<String>)>> {
        match self.docker.inspect_image(reference).await {
            Ok(i) => Ok(i.id.clone().map(|id| {
                let path = i
                    .config
                    .and_then(|c| c.env)
                    .into_iter()
                    .flatten()
                    .find_map(|e| e.strip_prefix("PATH=").map(str::to_string));
                (id, path)
            })),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(api_err(format!("inspecting image {reference}"), e)),
        }
    }

    /// The daemon's ID of `reference`; `None` when it does not have it.
    pub(crate) async fn image_id(&self, reference: &str) -> Result<Option<String>> {
        match self.docker.inspect_image(reference).await {
            Ok(i) => Ok(i.id),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(api_err(format!("inspecting image {reference}"), e)),
        }
    }
}
