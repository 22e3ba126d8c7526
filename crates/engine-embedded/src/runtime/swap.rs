//! Start-first swaps: the new container beside the old one, ready before
//! the ports switch, the old one drained.

use super::*;

/// How long a start-first swap waits for the new container by default.
pub(super) const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// `x-berth: {ready_timeout: 30s}` on the service, else the default.
pub(super) fn ready_timeout(svc: &Service) -> Duration {
    svc.berth().ready_timeout.unwrap_or(READY_TIMEOUT)
}

/// Wait until `live` accepts TCP connections on each published target
/// port inside its namespace; fails when it exits or `timeout` passes.
pub(super) fn wait_ready(
    live: &mut Live,
    timeout: Duration,
    cancel: &AtomicBool,
) -> std::result::Result<(), String> {
    let deadline = Instant::now() + timeout;
    let targets = ports::tcp_targets(&live.svc.ports);
    let Some(netns) = live.netns.clone() else {
        return Ok(());
    };
    let mut pending = targets;
    loop {
        if cancel.load(Ordering::SeqCst) {
            return Err("interrupted".into());
        }
        if let Some(c) = live.container.as_mut() {
            if let Ok(Some(s)) = c.try_wait() {
                live.exited = Some(s);
                return Err(format!("it exited with code {}", s.code()));
            }
        }
        pending.retain(|&port| {
            let target = Target::InNetns {
                netns: netns.clone(),
                port,
            };
            berth_proxy::probe_tcp(&target, Duration::from_millis(500)).is_err()
        });
        if pending.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let list: Vec<String> = pending.iter().map(|p| p.to_string()).collect();
            return Err(format!(
                "nothing accepted connections on port {} within {}",
                list.join(", "),
                berth_compose::units::format_duration(timeout)
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl ProjectRuntime {
    /// A start-first swap of `live[old]`: the new container starts beside
    /// it; once it accepts connections on every published TCP port, the
    /// proxy switches to it, the old one's open connections drain and it is
    /// stopped. If the new one never gets ready, it goes and the old one
    /// keeps serving.
    pub(super) fn swap(
        &mut self,
        project: &Project,
        images: &BTreeMap<String, ServiceImage>,
        service: &str,
        number: u32,
        old: usize,
        inherit: Option<Vec<AnonymousVolume>>,
    ) -> Result<()> {
        let name = self.live[old].name.clone();
        let inherited: Vec<PathBuf> = inherit
            .as_ref()
            .map(|v| v.iter().map(|a| a.dir.clone()).collect())
            .unwrap_or_default();
        let mut new = self.prepare(project, images, service, number, &name, inherit)?;
        new.proxy = None;
        if let Err(e) = self.spawn(&mut new) {
            self.discard(new, &inherited);
            return Err(e);
        }
        let timeout = ready_timeout(&new.svc);
        // Ready: healthy by its own healthcheck if it has one, else
        // accepting connections on its published ports.
        let ready = if new.check.is_some() {
            let mut events = Vec::new();
            let r = wait_healthy(
                &mut new,
                &self.engine.state.join("sandbox"),
                timeout,
                &self.cancel,
                &mut events,
            );
            for e in events {
                self.event(e);
            }
            r
        } else {
            wait_ready(&mut new, timeout, &self.cancel)
        };
        if let Err(why) = ready {
            self.stop_live(&mut new, Duration::ZERO);
            self.discard(new, &inherited);
            return Err(svc_err(
                service,
                format!("the new container never became ready ({why}); {name} keeps serving"),
            ));
        }
        let proxy = self.live[old].proxy.take();
        let mut old_targets: Vec<Target> = Vec::new();
        if let (Some(p), Some(ns)) = (&proxy, &new.netns) {
            match p.switch_netns(ns) {
                Ok(t) => old_targets = t,
                Err(e) => {
                    self.live[old].proxy = proxy;
                    self.stop_live(&mut new, Duration::ZERO);
                    self.discard(new, &inherited);
                    return Err(svc_err(service, format!("switching the ports: {e}")));
                }
            }
        }
        new.proxy = proxy;
        self.live.push(new);
        self.refresh_hosts();
        let grace = self.stop_timeout(old, None);
        if let Some(p) = &self.live.last().and_then(|l| l.proxy.as_ref()) {
            // HTTP connections leave at a request boundary (the proxy ends
            // each after its response in flight); what cannot (plain TCP,
            // websockets) is cut at the end of the grace period, and said.
            p.drain(&old_targets, grace);
            let cut = p.cut_connections(&old_targets);
            if cut.total() > 0 {
                self.notes.borrow_mut().push(format!(
                    "{name}: {cut} at the end of the {}s grace period, closed",
                    grace.as_secs_f64()
                ));
            }
        }
        let mut gone = self.live.remove(old);
        if let Some(note) = signal_stop(&self.engine, &gone) {
            self.notes.borrow_mut().push(note);
        }
        gone.restart_at = None;
        self.retiring.push(Retiring {
            live: gone,
            deadline: Instant::now() + grace,
            keep: inherited,
        });
        Ok(())
    }
}
