//! Which engine runs the project: `--engine`, else `BERTH_ENGINE`, else
//! `engine = "…"` in berth's config file, else the embedded engine.

use crate::GlobalArgs;
use anyhow::{bail, Context, Result};
use berth_engine::Backend;
use clap::ValueEnum;
use std::collections::BTreeMap;

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineKind {
    /// berth runs containers itself (no daemon)
    Embedded,
    /// The Docker Engine (or Podman's Docker API): `DOCKER_HOST`, Docker contexts
    Docker,
    /// A Docker Swarm manager (`DOCKER_HOST`), images through `BERTH_SWARM_REGISTRY`
    Swarm,
}

/// The engine named in berth's config file (`engine = "docker"`), if any.
fn from_config() -> Result<Option<EngineKind>> {
    let path = berth_registry::RegistryConfig::default_path();
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(None);
    };
    let table: toml::Table = text
        .parse()
        .with_context(|| format!("{}: not valid TOML", path.display()))?;
    match table.get("engine") {
        None => Ok(None),
        Some(toml::Value::String(name)) => {
            EngineKind::from_str(name, true).map(Some).map_err(|_| {
                anyhow::anyhow!(
                    "{}: engine: unknown engine {name:?} (embedded, docker or swarm)",
                    path.display()
                )
            })
        }
        Some(_) => bail!("{}: engine: must be a string", path.display()),
    }
}

pub fn kind(global: &GlobalArgs) -> Result<EngineKind> {
    if let Some(k) = global.engine {
        return Ok(k);
    }
    Ok(from_config()?.unwrap_or(EngineKind::Embedded))
}

/// The backend the command talks to.
pub fn backend(global: &GlobalArgs) -> Result<Box<dyn Backend>> {
    Ok(match kind(global)? {
        EngineKind::Embedded => Box::new(berth_engine_embedded::EmbeddedBackend::new()),
        // Published ports are held by a keeper process (this binary, as
        // `__docker-ports`), so swaps are start-first and drop nothing.
        EngineKind::Docker => Box::new(
            berth_engine_docker::DockerBackend::connect()
                .context("connecting to the Docker Engine")?
                .with_port_keeper(berth_engine_docker::KeeperLaunch::current_exe()?),
        ),
        EngineKind::Swarm => Box::new(
            berth_engine_swarm::SwarmBackend::connect()
                .context("connecting to the swarm manager")?
                // Ports are published by berth's proxy on every node (this
                // binary, shipped as an image), so updates roll start-first.
                .with_proxy(berth_engine_swarm::ProxyLaunch {
                    exe: std::env::current_exe().context("finding berth's own binary")?,
                    args: vec!["__swarm-proxy".into()],
                }),
        ),
    })
}

/// What the swarm backend does not take from the command line or from a
/// legacy file yet, applied to the project before it is planned: `--scale`
/// becomes the service's `scale` (its replicas; the backend reads only the
/// file), and `network_mode: bridge` (what every service of a legacy v1 file
/// gets: Docker's per-node bridge, which a swarm service cannot join) is
/// left out, so the services join the project's overlay network as docker
/// stack's would. Returns a note for the user when something was left out.
pub fn adapt_for_swarm(
    project: &mut berth_compose::Project,
    scale: &BTreeMap<String, u32>,
) -> Result<Option<String>> {
    for (name, n) in scale {
        let svc = project
            .services
            .get_mut(name)
            .with_context(|| format!("--scale {name}={n}: no such service"))?;
        svc.extra.insert("scale".into(), (*n).into());
    }
    let mut bridged = Vec::new();
    for (name, svc) in &mut project.services {
        if svc.network_mode.as_deref() == Some("bridge") {
            svc.network_mode = None;
            bridged.push(format!("services.{name}.network_mode"));
        }
    }
    Ok((!bridged.is_empty()).then(|| {
        format!(
            "note: {}: bridge is Docker's network on one node; on swarm the services join the project's overlay network",
            bridged.join(", ")
        )
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swarm_gets_the_scale_flag_and_no_per_node_bridge() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("docker-compose.yml"),
            "code:\n  image: c\napp:\n  image: a\n  volumes_from: [code]\n",
        )
        .unwrap();
        let options = berth_compose::Options {
            cwd: dir.path().to_path_buf(),
            ..Default::default()
        };
        let mut project = berth_compose::load(&options).unwrap().project;
        let scale = BTreeMap::from([("app".to_string(), 3)]);
        let note = adapt_for_swarm(&mut project, &scale).unwrap().unwrap();
        assert_eq!(
            note,
            "note: services.code.network_mode, services.app.network_mode: bridge is Docker's network on one node; on swarm the services join the project's overlay network"
        );
        assert_eq!(project.services["app"].extra["scale"], 3);
        assert!(project.services.values().all(|s| s.network_mode.is_none()));
        let err = adapt_for_swarm(&mut project, &BTreeMap::from([("web".into(), 2)]));
        assert_eq!(
            err.unwrap_err().to_string(),
            "--scale web=2: no such service"
        );
    }
}
