//! The Docker Engine of the node a task runs on, for what a manager cannot
//! do for its workers: exec, cp, top and attach act on a container, and a
//! container is reachable only through its own node's daemon.
//!
//! The manager says which node runs a task and which container it is; how
//! to reach that node's Engine is the user's to say, in `BERTH_SWARM_NODES`
//! (`hostname=endpoint,…`, endpoints as in `DOCKER_HOST`). The manager's
//! own node needs no entry. berth never guesses an address: a daemon on an
//! unauthenticated TCP port is not something to go looking for.

use crate::{api_err, Result, SwarmBackend};
use berth_engine::backend::Container;
use berth_engine::BackendError;
use berth_engine_docker::{DockerBackend, Endpoint};
use bollard::models::TaskState;
use std::collections::BTreeMap;

/// The variable mapping node hostnames (or node IDs) to their Engines.
pub const NODES_ENV: &str = "BERTH_SWARM_NODES";

/// `hostname=endpoint` pairs from [`NODES_ENV`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeEndpoints(BTreeMap<String, String>);

impl NodeEndpoints {
    /// Parse `a=unix:///run/a.sock,b=tcp://10.0.0.2:2375`; an entry that
    /// is not `name=scheme://…` is refused, naming the variable.
    pub fn parse(value: &str) -> std::result::Result<NodeEndpoints, BackendError> {
        let mut map = BTreeMap::new();
        for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let bad = |why: &str| {
                BackendError::invalid(format!(
                    "{NODES_ENV}: {entry:?}: {why} (want hostname=unix:///path or hostname=tcp://host:port)"
                ))
            };
            let (name, endpoint) = entry.split_once('=').ok_or_else(|| bad("no '='"))?;
            let (name, endpoint) = (name.trim(), endpoint.trim());
            if name.is_empty() {
                return Err(bad("no node name"));
            }
            let supported = ["unix://", "tcp://", "http://"];
            if !supported.iter().any(|s| endpoint.starts_with(s)) || endpoint.len() < 8 {
                return Err(bad("not a Docker endpoint berth can speak to"));
            }
            if map.insert(name.to_string(), endpoint.to_string()).is_some() {
                return Err(bad("node named twice"));
            }
        }
        Ok(NodeEndpoints(map))
    }

    pub(crate) fn get(&self, hostname: &str, id: &str) -> Option<&String> {
        self.0.get(hostname).or_else(|| self.0.get(id))
    }
}

/// Where one task's container lives.
pub(crate) struct Located {
    pub container_id: String,
    pub node: String,
    pub endpoint: String,
}

impl SwarmBackend {
    /// The node and container of the task `target` names (its `id` is the
    /// task's, as `observe` reports it).
    pub(crate) async fn locate(&self, target: &Container, what: &str) -> Result<Located> {
        let task = self
            .docker
            .inspect_task(&target.id)
            .await
            .map_err(|e| api_err(format!("{what}: task {}", target.name), e))?;
        let status = task.status.unwrap_or_default();
        let container_id = status
            .container_status
            .and_then(|c| c.container_id)
            .filter(|id| !id.is_empty());
        let state = status.state.unwrap_or(TaskState::NEW);
        let Some(container_id) = container_id.filter(|_| state == TaskState::RUNNING) else {
            return Err(BackendError::invalid(format!(
                "{what}: task {} is {} and has no running container",
                target.name,
                crate::observe::state_name(state)
            )));
        };
        let node_id = task.node_id.unwrap_or_default();
        let nodes = self.nodes().await?;
        let hostname = nodes
            .get(&node_id)
            .map(|n| n.hostname.clone())
            .unwrap_or_else(|| node_id.clone());
        let endpoint = if node_id == self.node_id {
            self.endpoint.host.clone()
        } else if let Some(e) = self.node_endpoints.get(&hostname, &node_id) {
            e.clone()
        } else {
            return Err(BackendError::invalid(format!(
                "{what}: {} runs on node {hostname}, whose Docker Engine berth does not know: add {hostname}=unix:///…|tcp://… to {NODES_ENV}",
                target.name
            )));
        };
        Ok(Located {
            container_id,
            node: hostname,
            endpoint,
        })
    }

    /// A Docker backend on the node running `target`, and the container as
    /// that daemon names it.
    pub(crate) fn on_node(
        &self,
        target: &Container,
        what: &str,
    ) -> Result<(DockerBackend, Container)> {
        let at = self.block(self.locate(target, what))?;
        let backend = DockerBackend::connect_to(Endpoint {
            host: at.endpoint.clone(),
            context: None,
        })
        .map_err(|e| {
            BackendError::new(
                e.kind,
                format!("{what}: node {} ({}): {}", at.node, at.endpoint, e.message),
            )
        })?;
        let container = Container {
            id: at.container_id,
            ..target.clone()
        };
        Ok((backend, container))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_by_hostname() {
        let e = NodeEndpoints::parse(" w1=unix:///run/w1.sock, w2=tcp://10.0.0.2:2375 ,").unwrap();
        assert_eq!(e.get("w1", "x").unwrap(), "unix:///run/w1.sock");
        assert_eq!(e.get("nope", "w2").unwrap(), "tcp://10.0.0.2:2375");
        assert!(e.get("w3", "id3").is_none());
        assert_eq!(NodeEndpoints::parse("").unwrap(), NodeEndpoints::default());
    }

    #[test]
    fn bad_endpoints_are_refused_naming_the_variable() {
        for bad in [
            "w1",
            "=unix:///x",
            "w1=ssh://host",
            "w1=/run/x.sock",
            "a=tcp://x:1,a=tcp://y:1",
        ] {
            let err = NodeEndpoints::parse(bad).unwrap_err();
            assert!(
                err.message.starts_with("BERTH_SWARM_NODES: "),
                "{bad}: {}",
                err.message
            );
        }
    }
}
