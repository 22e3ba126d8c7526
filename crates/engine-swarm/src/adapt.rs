//! What `up` asks of a project that swarm reads differently from the other
//! engines, settled before it is planned: the command line's `--scale`
//! becomes the service's `scale` (its replicas), and `network_mode: bridge`
//! (what every service of a legacy v1 file gets: Docker's per-node bridge,
//! which a swarm service cannot join) is left out, so the services join the
//! project's overlay network as docker stack's would. The plan says so.

use berth_compose::Project;
use berth_engine::backend::PlanFlags;
use berth_engine::BackendError;

/// `project` as swarm deploys it, and the notes for the plan.
pub fn for_swarm(
    project: &Project,
    flags: &PlanFlags,
) -> Result<(Project, Vec<String>), BackendError> {
    let mut project = project.clone();
    for (name, n) in &flags.scale {
        let svc = project
            .services
            .get_mut(name)
            .ok_or_else(|| BackendError::invalid(format!("--scale {name}={n}: no such service")))?;
        svc.extra.insert("scale".into(), (*n).into());
    }
    let mut bridged = Vec::new();
    for (name, svc) in &mut project.services {
        if svc.network_mode.as_deref() == Some("bridge") {
            svc.network_mode = None;
            bridged.push(format!("services.{name}.network_mode"));
        }
    }
    let mut notes = Vec::new();
    if !bridged.is_empty() {
        notes.push(format!(
            "{}: bridge is Docker's network on one node; on swarm the services join the project's overlay network",
            bridged.join(", ")
        ));
    }
    Ok((project, notes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn the_scale_flag_counts_and_the_per_node_bridge_is_left_out() {
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
        let project = berth_compose::load(&options).unwrap().project;
        let flags = PlanFlags {
            scale: BTreeMap::from([("app".to_string(), 3)]),
            ..Default::default()
        };
        let (adapted, notes) = for_swarm(&project, &flags).unwrap();
        assert_eq!(
            notes,
            ["services.code.network_mode, services.app.network_mode: bridge is Docker's network on one node; on swarm the services join the project's overlay network"]
        );
        assert_eq!(crate::spec::replicas(&adapted.services["app"]), Some(3));
        assert!(adapted.services.values().all(|s| s.network_mode.is_none()));
        let flags = PlanFlags {
            scale: BTreeMap::from([("web".to_string(), 2)]),
            ..Default::default()
        };
        assert_eq!(
            for_swarm(&project, &flags).unwrap_err().message,
            "--scale web=2: no such service"
        );
    }
}
