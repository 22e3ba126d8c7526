//! `run`: one-off containers of a service.

use super::*;

impl ProjectRuntime {
    /// `run`: a one-off container of `service`, started now. Returns its name.
    pub fn run_one_off(
        &mut self,
        project: &Project,
        images: &BTreeMap<String, ServiceImage>,
        service: &str,
        run: OneOff,
    ) -> Result<String> {
        unsupported::check(project).map_err(EngineError::Unsupported)?;
        self.ensure_networks(project)?;
        let mut project = project.clone();
        let svc = project
            .services
            .get_mut(service)
            .ok_or_else(|| svc_err(service, "no such service"))?;
        if run.entrypoint.is_some() {
            svc.entrypoint = run.entrypoint;
            svc.command = None;
        }
        if run.command.is_some() {
            svc.command = run.command;
        }
        for e in &run.env {
            let (k, v) = e.split_once('=').unwrap_or((e.as_str(), ""));
            svc.environment.insert(k.to_string(), Some(v.to_string()));
        }
        if run.user.is_some() {
            svc.user = run.user;
        }
        if run.workdir.is_some() {
            svc.working_dir = run.workdir;
        }
        if !run.service_ports {
            svc.ports.clear();
        }
        svc.ports.extend(run.ports);
        // One-offs run once: restart policies and healthchecks are the
        // service's long-running containers' business.
        svc.restart = None;
        svc.container_name = None;
        let name = run.name.unwrap_or_else(|| {
            format!(
                "{}-{service}-run-{}",
                project.name,
                &incarnation_id("run")[4..16]
            )
        });
        if self.live.iter().any(|l| l.name == name) {
            return Err(svc_err(
                service,
                format!("a container named {name} already exists"),
            ));
        }
        let mut live = self.prepare(&project, images, service, 0, &name, None)?;
        live.one_off = true;
        live.check = None;
        live.stdio = run.stdio;
        let proxy = match self.bind_ports(&live) {
            Ok(p) => p,
            Err(e) => {
                self.discard(live, &[]);
                return Err(e);
            }
        };
        live.proxy = Some(proxy);
        if let Err(e) = self.spawn(&mut live) {
            self.discard(live, &[]);
            return Err(e);
        }
        self.live.push(live);
        self.refresh_hosts();
        Ok(name)
    }
}
