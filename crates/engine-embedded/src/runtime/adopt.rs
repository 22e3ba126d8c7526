//! Taking over the containers of a supervisor that died.

use super::*;

impl Engine {
    /// Take over the project a supervisor that died left running: its
    /// containers (they kept running; how one that ended since then ended is
    /// lost), its networks, its published ports (bound again) and its output
    /// from where the last supervisor stopped reading. Returns what could not
    /// be taken over.
    pub fn adopt(
        self,
        name: &str,
        logs: Arc<dyn LogSink>,
        networks: Vec<String>,
        records: Vec<LiveRecord>,
    ) -> (ProjectRuntime, Vec<String>) {
        let mut rt = self.project(name, logs);
        rt.networks = networks;
        let mut problems = Vec::new();
        let now = Instant::now();
        for r in records {
            let (container, exited) = match rt.engine.sandbox.adopt(&r.id) {
                Ok(c) => (Some(c), None),
                Err(_) => {
                    // Gone or ended: clear what is left, so it can start again.
                    let _ = rt.engine.sandbox.remove(&r.id);
                    let status = match r.exit_code {
                        Some(code) => ExitStatus::Exited(code),
                        None => ExitStatus::Unknown,
                    };
                    (None, Some(status))
                }
            };
            let restart =
                RestartPolicy::of_service(r.svc.restart.as_deref(), r.svc.extra.get("deploy"))
                    .unwrap_or(RestartPolicy::No);
            let check = HealthCheck::resolve(r.svc.healthcheck.as_ref(), &r.config).unwrap_or(None);
            let dir = rt.engine.state.join("containers").join(&r.id);
            let mut live = Live {
                service: r.service,
                number: r.number,
                name: r.name,
                id: r.id,
                config_hash: r.config_hash,
                image_digest: r.image_digest,
                mounted: r.mounted,
                named_volumes: r.named_volumes,
                svc: r.svc,
                config: r.config,
                runtime: r.runtime,
                layers: r.layers,
                mounts: r.mounts,
                volume_mounts: r.volume_mounts,
                anonymous: r.anonymous,
                container,
                netns: r.netns,
                owns_netns: r.owns_netns,
                ip: r.ip,
                attachments: r.attachments,
                exited,
                proxy: None,
                restart,
                restarts: r.restarts,
                started_at: now,
                backoff: None,
                restart_at: None,
                user_stopped: r.user_stopped,
                check,
                health: None,
                one_off: r.one_off,
                paused: false,
                stdio: None,
                output: output::OutputTail::open(&dir).ok(),
            };
            rt.logs.configure(&live.name, live.svc.extra.get("logging"));
            if live.running() {
                live.health = live.check.clone().map(|c| HealthState {
                    tracker: health::Tracker::new(c, now),
                    inflight: None,
                });
            } else if let Some(s) = live.exited {
                // As after a docker daemon restart: `always` brings back even
                // a container stopped by hand, `unless-stopped` does not.
                if live.user_stopped && live.restart == RestartPolicy::Always {
                    live.user_stopped = false;
                }
                if !live.user_stopped && live.restart.restarts(s.code(), live.restarts) {
                    live.restart_at = Some(now);
                }
            }
            if r.retiring {
                if let Some(note) = signal_stop(&rt.engine, &live) {
                    rt.notes.borrow_mut().push(note);
                }
                rt.retiring.push(Retiring {
                    deadline: now + live.grace().unwrap_or(Duration::from_secs(10)),
                    live,
                    keep: Vec::new(),
                });
                continue;
            }
            match rt.bind_ports(&live) {
                Ok(p) => live.proxy = Some(p),
                Err(e) => problems.push(e.to_string()),
            }
            rt.live.push(live);
        }
        rt.refresh_hosts();
        (rt, problems)
    }
}
