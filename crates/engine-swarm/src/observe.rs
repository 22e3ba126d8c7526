//! What runs for a project, read from the manager: its services (docker
//! stack's namespace label) and their tasks, one [`Container`] per task
//! named `service.N@node` so `ps` and `logs` say where each one runs.

use crate::{api_err, labels, Result, SwarmBackend};
use berth_engine::backend::{Container, ProjectStatus, ProjectSummary, Status};
use bollard::models::{Service, Task, TaskState};
use bollard::query_parameters::{ListNodesOptions, ListServicesOptions, ListTasksOptions};
use std::collections::{BTreeMap, HashMap};

/// A node as `ps` names it.
#[derive(Debug, Clone, Default)]
pub(crate) struct NodeInfo {
    pub hostname: String,
    pub addr: String,
}

/// One task of a project's service, with where it runs.
#[derive(Debug, Clone)]
pub(crate) struct TaskView {
    pub id: String,
    /// `web.2@node-1` (a global service's tasks are numbered by node order).
    pub name: String,
    pub service: String,
    pub slot: i64,
    pub node: NodeInfo,
    pub state: TaskState,
    pub desired: TaskState,
    pub error: Option<String>,
    pub exit_code: Option<i64>,
    /// `ADDR:PUBLISHED->TARGET/tcp`, for host-mode ports.
    pub ports: Vec<String>,
    /// The image its spec names.
    pub spec_image: String,
    /// The digest of the task template it was made from
    /// ([`crate::spec::stamp`]).
    pub template: Option<String>,
}

fn task_state_str(s: TaskState) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

pub(crate) fn state_name(s: TaskState) -> String {
    task_state_str(s)
}

/// The compose service a swarm service was made from.
pub(crate) fn compose_service(s: &Service) -> Option<String> {
    s.spec
        .as_ref()?
        .labels
        .as_ref()?
        .get(labels::SERVICE)
        .cloned()
}

impl SwarmBackend {
    pub(crate) async fn stack_services(&self, project: &str) -> Result<Vec<Service>> {
        let filters = HashMap::from([("label".to_string(), vec![labels::stack_filter(project)])]);
        self.docker
            .list_services(Some(ListServicesOptions {
                filters: Some(filters),
                ..Default::default()
            }))
            .await
            .map_err(|e| api_err("listing swarm services", e))
    }

    pub(crate) async fn nodes(&self) -> Result<HashMap<String, NodeInfo>> {
        let nodes = self
            .docker
            .list_nodes(None::<ListNodesOptions>)
            .await
            .map_err(|e| api_err("listing swarm nodes", e))?;
        Ok(nodes
            .into_iter()
            .filter_map(|n| {
                let id = n.id?;
                Some((
                    id,
                    NodeInfo {
                        hostname: n.description.and_then(|d| d.hostname).unwrap_or_default(),
                        addr: n.status.and_then(|s| s.addr).unwrap_or_default(),
                    },
                ))
            })
            .collect())
    }

    /// Every task of `services` (all of them when `current_only` is false,
    /// else those swarm wants running), sorted by service and slot.
    pub(crate) async fn tasks(
        &self,
        services: &[Service],
        current_only: bool,
    ) -> Result<Vec<TaskView>> {
        if services.is_empty() {
            return Ok(Vec::new());
        }
        let nodes = self.nodes().await?;
        let by_id: HashMap<String, String> = services
            .iter()
            .filter_map(|s| {
                let id = s.id.clone()?;
                let svc = s
                    .spec
                    .as_ref()
                    .and_then(|sp| sp.labels.as_ref())
                    .and_then(|l| l.get(labels::SERVICE).cloned())
                    .or_else(|| s.spec.as_ref().and_then(|sp| sp.name.clone()))?;
                Some((id, svc))
            })
            .collect();
        let mut filters = HashMap::from([(
            "service".to_string(),
            by_id.keys().cloned().collect::<Vec<_>>(),
        )]);
        if current_only {
            filters.insert("desired-state".into(), vec!["running".into()]);
        }
        let tasks: Vec<Task> = self
            .docker
            .list_tasks(Some(ListTasksOptions {
                filters: Some(filters),
            }))
            .await
            .map_err(|e| api_err("listing swarm tasks", e))?;
        // Global services have no slots: number their tasks by node name.
        let mut node_order: Vec<&NodeInfo> = nodes.values().collect();
        node_order.sort_by(|a, b| a.hostname.cmp(&b.hostname));
        let mut out: Vec<TaskView> = tasks
            .into_iter()
            .filter_map(|t| {
                let service = by_id.get(t.service_id.as_deref()?)?.clone();
                let node = t
                    .node_id
                    .as_deref()
                    .and_then(|n| nodes.get(n))
                    .cloned()
                    .unwrap_or_default();
                let slot = t.slot.unwrap_or_else(|| {
                    node_order
                        .iter()
                        .position(|n| n.hostname == node.hostname)
                        .map_or(0, |i| i as i64 + 1)
                });
                let status = t.status.clone().unwrap_or_default();
                let ports = status
                    .port_status
                    .as_ref()
                    .and_then(|p| p.ports.as_ref())
                    .map(|ports| {
                        ports
                            .iter()
                            .map(|p| {
                                format!(
                                    "{}:{}->{}/{}",
                                    node.addr,
                                    p.published_port.unwrap_or(0),
                                    p.target_port.unwrap_or(0),
                                    p.protocol
                                        .map(|x| x.to_string())
                                        .unwrap_or_else(|| "tcp".into())
                                )
                            })
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default();
                // Docker 20.10 binds a host-mode port on 0.0.0.0 and on ::
                // and swarm reports each binding: one line per port here.
                let mut seen = std::collections::HashSet::new();
                let ports: Vec<String> = ports
                    .into_iter()
                    .filter(|p| seen.insert(p.clone()))
                    .collect();
                let container = status.container_status.clone();
                Some(TaskView {
                    id: t.id.clone().unwrap_or_default(),
                    // A task not yet placed has no node to name.
                    name: if node.hostname.is_empty() {
                        format!("{service}.{slot}")
                    } else {
                        format!("{service}.{slot}@{}", node.hostname)
                    },
                    service,
                    slot,
                    node,
                    state: status.state.unwrap_or(TaskState::NEW),
                    desired: t.desired_state.unwrap_or(TaskState::NEW),
                    error: status.err,
                    exit_code: container.and_then(|c| c.exit_code),
                    ports,
                    spec_image: t
                        .spec
                        .as_ref()
                        .and_then(|s| s.container_spec.as_ref())
                        .and_then(|c| c.image.clone())
                        .unwrap_or_default(),
                    template: t
                        .spec
                        .and_then(|s| s.container_spec)
                        .and_then(|c| c.labels)
                        .and_then(|mut l| l.remove(labels::TASK_TEMPLATE)),
                })
            })
            .collect();
        out.sort_by(|a, b| (&a.service, a.slot, &a.name).cmp(&(&b.service, b.slot, &b.name)));
        Ok(out)
    }

    pub(crate) async fn observe_project(&self, project: &str) -> Result<Option<ProjectStatus>> {
        let services = self.stack_services(project).await?;
        if services.is_empty() {
            return Ok(None);
        }
        let labels_of: HashMap<String, BTreeMap<String, String>> = services
            .iter()
            .filter_map(|s| {
                let spec = s.spec.as_ref()?;
                let l = spec.labels.clone().unwrap_or_default();
                Some((l.get(labels::SERVICE)?.clone(), l.into_iter().collect()))
            })
            .collect();
        let containers = self
            .tasks(&services, true)
            .await?
            .into_iter()
            .map(|t| {
                let status = match t.state {
                    TaskState::RUNNING => Status::Running,
                    TaskState::COMPLETE
                    | TaskState::FAILED
                    | TaskState::SHUTDOWN
                    | TaskState::REJECTED
                    | TaskState::ORPHANED
                    | TaskState::REMOVE => Status::Exited,
                    _ => Status::Created,
                };
                Container {
                    name: t.name.clone(),
                    service: t.service.clone(),
                    id: t.id.clone(),
                    number: t.slot.max(0) as u32,
                    status,
                    exit_code: t.exit_code.map(|c| c as i32),
                    ip: Some(t.node.addr.clone()).filter(|a| !a.is_empty()),
                    ports: t.ports.clone(),
                    labels: labels_of.get(&t.service).cloned().unwrap_or_default(),
                    image: t.spec_image.clone(),
                    ..Default::default()
                }
            })
            .collect();
        Ok(Some(ProjectStatus {
            project: project.to_string(),
            containers,
            observed: Vec::new(),
            keeper: format!("swarm manager {}", self.endpoint.host),
        }))
    }

    pub(crate) async fn list_projects(&self) -> Result<Vec<ProjectSummary>> {
        let all = self
            .docker
            .list_services(None::<ListServicesOptions>)
            .await
            .map_err(|e| api_err("listing swarm services", e))?;
        let mut by_project: BTreeMap<String, Vec<Service>> = BTreeMap::new();
        for s in all {
            let stack = s
                .spec
                .as_ref()
                .and_then(|sp| sp.labels.as_ref())
                .and_then(|l| l.get(labels::STACK).cloned());
            if let Some(stack) = stack {
                by_project.entry(stack).or_default().push(s);
            }
        }
        let mut out = Vec::new();
        for (name, services) in by_project {
            let tasks = self.tasks(&services, true).await?;
            out.push(ProjectSummary {
                name,
                running: tasks
                    .iter()
                    .filter(|t| t.state == TaskState::RUNNING)
                    .count(),
                total: tasks.len(),
            });
        }
        Ok(out)
    }
}
