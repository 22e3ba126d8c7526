//! Which engine runs the project: `--engine`, else `BERTH_ENGINE`, else
//! `engine = "…"` in berth's config file, else the embedded engine.

use crate::GlobalArgs;
use anyhow::{bail, Context, Result};
use berth_engine::Backend;
use clap::ValueEnum;

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
