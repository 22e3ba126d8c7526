//! Stopping, starting, killing, pausing and removing containers; reaping,
//! restarts by policy, health, and taking the whole project down.

use super::*;

/// The signal that stops PID 1 `pid`: `wanted`, or SIGKILL when it has no
/// handler for it (the kernel drops such signals to a namespace's PID 1, so
/// sending it would only wait out the grace period, as docker does).
pub(super) fn effective_stop_signal(pid: i32, wanted: i32) -> i32 {
    if signal::catches(pid, wanted) {
        wanted
    } else {
        signal::SIGKILL
    }
}

/// One line for a container that outlived its grace period: it was
/// killed, and what berth can see of why.
pub(super) fn killed_note(name: &str, pid: i32, sig: i32, grace: Duration) -> String {
    format!(
        "{name} was still running {}s after {} and was killed: {}",
        grace.as_secs_f64(),
        signal::name_of(sig),
        signal::why_still_running(pid, sig)
    )
}

/// The order `down` stops containers in: waves of indexes into `live`, each
/// wave holding the containers no remaining container depends on
/// (`depends_on`, `volumes_from`, `network_mode`, `ipc` and `pid: service:`).
pub(super) fn stop_waves(live: &[Live]) -> Vec<Vec<usize>> {
    let deps = |l: &Live| -> Vec<String> {
        let mut d: Vec<String> = l.svc.depends_on.keys().cloned().collect();
        for vf in l.svc.volumes_from() {
            if let VolumesFrom::Service { name, .. } = vf {
                d.push(name);
            }
        }
        if let Some(other) = l
            .svc
            .network_mode
            .as_deref()
            .and_then(|m| m.strip_prefix("service:"))
        {
            d.push(other.to_string());
        }
        // A shared PID or IPC namespace: its guests stop first.
        for k in ["ipc", "pid"] {
            if let Some(other) = l
                .svc
                .extra
                .get(k)
                .and_then(|v| v.as_str())
                .and_then(|m| m.strip_prefix("service:"))
            {
                d.push(other.to_string());
            }
        }
        d
    };
    let mut left: Vec<usize> = (0..live.len()).collect();
    let mut waves = Vec::new();
    while !left.is_empty() {
        let needed: Vec<String> = left.iter().flat_map(|&i| deps(&live[i])).collect();
        let (wave, rest): (Vec<usize>, Vec<usize>) = left
            .iter()
            .partition(|&&i| !needed.contains(&live[i].service));
        // A cycle (refused at load, but never loop forever): stop the rest together.
        if wave.is_empty() {
            waves.push(rest);
            break;
        }
        waves.push(wave);
        left = rest;
    }
    waves
}

/// Send `live` its stop signal. The kernel drops signals a namespace's
/// PID 1 has no handler for, so one it does not catch would only make us
/// wait out the timeout (docker does): then it gets SIGKILL at once.
/// Its `pre_stop` hooks run first; what went wrong with them is returned
/// as a note.
pub(super) fn signal_stop(engine: &Engine, live: &Live) -> Option<String> {
    let note = if live.running() {
        run_pre_stop(&engine.sandbox, &engine.state, live)
            .err()
            .map(|e| format!("{}: pre_stop hook: {e}", live.name))
    } else {
        None
    };
    if let Some(c) = &live.container {
        let sig = live.stop_signal();
        let sig = if signal::catches(c.pid(), sig) {
            sig
        } else {
            signal::SIGKILL
        };
        let _ = c.kill(sig);
    }
    note
}

/// Run `live`'s `pre_stop` hooks in order, each killed if it outlives the
/// service's stop grace period (10 s by default): a stop must end.
pub(super) fn run_pre_stop(
    sandbox: &Sandbox,
    state: &Path,
    live: &Live,
) -> std::result::Result<(), String> {
    let hooks = hooks::of(&live.svc, "pre_stop")?;
    if hooks.is_empty() {
        return Ok(());
    }
    let limit = live.grace().unwrap_or(Duration::from_secs(10));
    let output = live.files(state).join("output");
    for hook in &hooks {
        hooks::run(sandbox, &live.id, hook, &output, Some(limit))
            .map_err(|e| e.replace(&live.id, &live.name))?;
    }
    Ok(())
}

/// How long `service_healthy` dependencies are waited for.
pub(super) const HEALTHY_TIMEOUT: Duration = Duration::from_secs(300);

/// Collect a finished probe of `l`, or start one when it is due. Probes
/// run on their own threads: a slow one holds up nothing else.
pub(super) fn tick_health(l: &mut Live, sandbox_dir: &Path, now: Instant) -> Option<Event> {
    if !l.running() || l.paused {
        return None;
    }
    let h = l.health.as_mut()?;
    if let Some((began, rx)) = &h.inflight {
        let passed = match rx.try_recv() {
            Ok(passed) => passed,
            Err(std::sync::mpsc::TryRecvError::Empty) => return None,
            Err(std::sync::mpsc::TryRecvError::Disconnected) => false,
        };
        let before = h.tracker.status;
        h.tracker.record(passed, *began, now);
        h.inflight = None;
        return (h.tracker.status != before).then(|| Event::Health {
            container: l.name.clone(),
            status: h.tracker.status,
        });
    }
    if h.tracker.due(now) {
        let (tx, rx) = std::sync::mpsc::channel();
        let (id, check, dir) = (
            l.id.clone(),
            h.tracker.check.clone(),
            sandbox_dir.to_path_buf(),
        );
        std::thread::spawn(move || {
            let _ = tx.send(probe(&dir, &id, &check));
        });
        h.inflight = Some((now, rx));
    }
    None
}

/// Run probes for `l` until it is healthy; an error when it turns
/// unhealthy, exits, or `timeout` passes. Health changes go to `events`.
pub(super) fn wait_healthy(
    l: &mut Live,
    sandbox_dir: &Path,
    timeout: Duration,
    cancel: &AtomicBool,
    events: &mut Vec<Event>,
) -> std::result::Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        if cancel.load(Ordering::SeqCst) {
            return Err("interrupted".into());
        }
        let now = Instant::now();
        if let Some(e) = tick_health(l, sandbox_dir, now) {
            events.push(e);
        }
        if let Some(c) = l.container.as_mut() {
            if let Ok(Some(s)) = c.try_wait() {
                l.exited = Some(s);
                return Err(format!("it exited with code {}", s.code()));
            }
        }
        match l.health.as_ref().map(|h| h.tracker.status) {
            None | Some(Health::Healthy) => return Ok(()),
            Some(Health::Unhealthy) => return Err("its healthcheck failed".into()),
            Some(Health::Starting) => {}
        }
        if now >= deadline {
            return Err(format!(
                "not healthy within {}",
                berth_compose::units::format_duration(timeout)
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Run `check`'s probe once in container `id`: passed when it exits 0
/// within the check's timeout.
pub(super) fn probe(sandbox_dir: &Path, id: &str, check: &HealthCheck) -> bool {
    let Ok(sandbox) = Sandbox::open(sandbox_dir) else {
        return false;
    };
    let spec = berth_sandbox::ExecSpec {
        args: check.probe.args(),
        ..Default::default()
    };
    let Ok(mut p) = sandbox.exec(id, spec) else {
        return false;
    };
    let deadline = Instant::now() + check.timeout;
    loop {
        match p.try_wait() {
            Ok(Some(status)) => return status.success(),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = p.kill(signal::SIGKILL);
                let _ = p.wait();
                return false;
            }
        }
    }
}

impl ProjectRuntime {
    pub(super) fn note_killed(&self, name: &str, pid: i32, sig: i32, grace: Duration) {
        self.notes
            .borrow_mut()
            .push(killed_note(name, pid, sig, grace));
    }

    /// Start `live[i]` again in the same namespace, with the same volumes
    /// and ports (restart policies, `Start`, `Restart`).
    pub(super) fn respawn(&mut self, i: usize) -> Result<()> {
        if let Some(c) = self.live[i].container.take() {
            c.delete().map_err(|e| svc_err(&self.live[i].service, e))?;
        }
        // Out of the list while `spawn` borrows the runtime.
        let mut live = self.live.remove(i);
        let result = self.spawn(&mut live);
        live.restart_at = None;
        live.user_stopped = false;
        live.paused = false;
        self.live.insert(i, live);
        result
    }

    pub(super) fn stop_timeout(&self, i: usize, override_: Option<Duration>) -> Duration {
        override_
            .or_else(|| self.live[i].grace())
            .unwrap_or(Duration::from_secs(10))
    }

    /// Stop `live[i]` (its stop signal, then SIGKILL after `timeout`; the
    /// service's `stop_grace_period` when `None`).
    pub(super) fn stop(&mut self, i: usize, timeout: Option<Duration>) {
        let t = self.stop_timeout(i, timeout);
        let mut live = self.live.remove(i);
        self.stop_live(&mut live, t);
        self.live.insert(i, live);
    }

    pub(super) fn stop_live(&self, live: &mut Live, timeout: Duration) {
        live.restart_at = None;
        let sig = live.stop_signal();
        if live.container.is_none() || live.exited.is_some() {
            return;
        }
        self.pre_stop(live);
        let Some(c) = live.container.as_mut() else {
            return;
        };
        // The kernel drops signals a namespace's PID 1 has no handler for,
        // so one it does not catch would only make us wait out the timeout
        // (docker does). Kill it at once instead.
        let sig = if signal::catches(c.pid(), sig) {
            sig
        } else {
            signal::SIGKILL
        };
        let _ = c.kill(sig);
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Ok(Some(s)) = c.try_wait() {
                break Some(s);
            }
            if Instant::now() >= deadline {
                self.note_killed(&live.name, c.pid(), sig, timeout);
                let _ = c.kill(signal::SIGKILL);
                break c.wait().ok();
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        if let Some(s) = status {
            live.exited = Some(s);
            self.event(Event::Exited {
                container: live.name.clone(),
                id: live.id.clone(),
                code: s.code(),
            });
        }
    }

    /// `live`'s `pre_stop` hooks, before its stop signal. A hook that fails
    /// or outlives the service's stop grace period (10 s by default) is
    /// noted; the stop goes on.
    pub(super) fn pre_stop(&self, live: &Live) {
        if let Err(e) = run_pre_stop(&self.engine.sandbox, &self.engine.state, live) {
            self.notes
                .borrow_mut()
                .push(format!("{}: pre_stop hook: {e}", live.name));
        }
    }

    /// Remove what `live` made, except the anonymous volumes in `keep`
    /// (carried over to its successor); the rest are released.
    pub(super) fn discard(&mut self, mut live: Live, keep: &[PathBuf]) {
        if let Some(out) = live.output.as_mut() {
            // All of it: read until nothing is left.
            loop {
                let lines = out.read_lines(true);
                if lines.is_empty() {
                    break;
                }
                self.logs.lines(&live.name, &lines);
            }
        }
        if live.container.is_some() {
            self.event(Event::Removed {
                container: live.name.clone(),
            });
        }
        if let Some(p) = live.proxy.take() {
            p.close(Duration::ZERO);
        }
        if let Some(c) = live.container.take() {
            let _ = c.delete();
        }
        if live.owns_netns {
            for a in &live.attachments {
                let _ = self.engine.networks.detach(&a.network, &live.id);
            }
            let _ = berth_network::delete_netns(&format!("berth-{}", live.id));
        }
        unmount_subpaths(&self.engine.state, &live.id);
        let _ = fs::remove_dir_all(live.files(&self.engine.state));
        for a in live.anonymous {
            if !keep.contains(&a.dir) {
                self.released.push(a.dir);
            }
        }
    }

    /// Collect a finished probe of `live[i]`, or start one when it is due.
    pub(super) fn tick_health(&mut self, i: usize, now: Instant) -> Option<Event> {
        let sandbox_dir = self.engine.state.join("sandbox");
        tick_health(&mut self.live[i], &sandbox_dir, now)
    }

    /// `depends_on: {x: {condition: service_healthy}}`: wait for x's
    /// current container to be healthy before `service` is created.
    pub(super) fn wait_dependencies(&mut self, project: &Project, service: &str) -> Result<()> {
        let Some(svc) = project.services.get(service) else {
            return Ok(());
        };
        let sandbox_dir = self.engine.state.join("sandbox");
        for (dep, d) in &svc.depends_on {
            if d.condition != "service_healthy" {
                continue;
            }
            let Some(i) = self
                .live
                .iter()
                .rposition(|l| &l.service == dep && l.running())
            else {
                if d.required {
                    return Err(svc_err(service, format!("dependency {dep} is not running")));
                }
                continue;
            };
            if self.live[i].check.is_none() {
                return Err(svc_err(
                    service,
                    format!("depends on {dep} being healthy, but {dep} has no healthcheck"),
                ));
            }
            let mut events = Vec::new();
            let result = wait_healthy(
                &mut self.live[i],
                &sandbox_dir,
                HEALTHY_TIMEOUT,
                &self.cancel,
                &mut events,
            );
            for e in events {
                self.event(e);
            }
            result.map_err(|why| svc_err(service, format!("dependency {dep} failed: {why}")))?;
        }
        Ok(())
    }

    /// `stop`: the stop signal, SIGKILL after `timeout` (each container's
    /// `stop_grace_period` when `None`). Stopped containers stay, exited,
    /// and restart policies leave them alone until `start` or `up`.
    pub fn stop_containers(&mut self, names: &[String], timeout: Option<Duration>) {
        for name in names {
            if let Some(i) = self.live.iter().position(|l| &l.name == name) {
                self.live[i].user_stopped = true;
                self.stop(i, timeout);
            }
        }
    }

    /// `start`: start stopped containers again, in the same namespace, with
    /// the same volumes and ports. Running ones are left alone.
    pub fn start_containers(&mut self, names: &[String]) -> Result<Vec<String>> {
        let mut started = Vec::new();
        for name in names {
            if let Some(i) = self.live.iter().position(|l| &l.name == name) {
                if !self.live[i].running() {
                    self.respawn(i)?;
                    started.push(name.clone());
                }
            }
        }
        self.refresh_hosts();
        Ok(started)
    }

    /// `kill -s`: send `signal` to each running container's PID 1. SIGKILL
    /// and SIGTERM count as a stop for restart policies, as in docker.
    pub fn kill_containers(&mut self, names: &[String], signal: i32) -> Result<()> {
        for name in names {
            if let Some(l) = self.live.iter_mut().find(|l| &l.name == name) {
                if let (Some(c), true) = (&l.container, l.exited.is_none()) {
                    if signal == signal::SIGKILL || signal == signal::SIGTERM {
                        l.user_stopped = true;
                    }
                    c.kill(signal).map_err(|e| svc_err(&l.service, e))?;
                    self.pending.borrow_mut().push(Event::Killed {
                        container: name.clone(),
                        signal,
                    });
                }
            }
        }
        Ok(())
    }

    /// `pause` / `unpause`: freeze or thaw every process of the running
    /// containers (the freezer cgroup).
    pub fn pause_containers(&mut self, names: &[String], pause: bool) -> Result<()> {
        for name in names {
            let Some(l) = self.live.iter_mut().find(|l| &l.name == name) else {
                continue;
            };
            if !l.running() || l.paused == pause {
                continue;
            }
            let result = if pause {
                self.engine.sandbox.pause(&l.id)
            } else {
                self.engine.sandbox.resume(&l.id)
            };
            result.map_err(|e| svc_err(&l.service, e.to_string().replace(&l.id, &l.name)))?;
            l.paused = pause;
        }
        Ok(())
    }

    /// `rm`: remove stopped containers (running ones are an error unless
    /// `force`, which stops them first); their anonymous volumes go when
    /// nothing mounts them any more.
    pub fn remove_containers(&mut self, names: &[String], force: bool) -> Result<Vec<String>> {
        let mut removed = Vec::new();
        for name in names {
            let Some(i) = self.live.iter().position(|l| &l.name == name) else {
                continue;
            };
            if self.live[i].running() {
                if !force {
                    return Err(svc_err(
                        &self.live[i].service,
                        format!("container {name} is running: stop it first, or use -f"),
                    ));
                }
                self.live[i].user_stopped = true;
                self.stop(i, None);
            }
            let old = self.live.remove(i);
            self.discard(old, &[]);
            removed.push(name.clone());
        }
        self.release_volumes();
        self.refresh_hosts();
        Ok(removed)
    }

    /// Reap exits and apply restart policies; returns what happened.
    pub fn poll(&mut self) -> Vec<Event> {
        self.pump_output();
        let mut events = std::mem::take(&mut *self.pending.borrow_mut());
        let now = Instant::now();
        let mut i = 0;
        while i < self.retiring.len() {
            let r = &mut self.retiring[i];
            let exited = match r.live.container.as_mut() {
                Some(c) => {
                    if now >= r.deadline {
                        let _ = c.kill(signal::SIGKILL);
                    }
                    matches!(c.try_wait(), Ok(Some(_)))
                }
                None => true,
            };
            if exited {
                let r = self.retiring.remove(i);
                self.discard(r.live, &r.keep);
                self.release_volumes();
            } else {
                i += 1;
            }
        }
        for i in 0..self.live.len() {
            let l = &mut self.live[i];
            if l.exited.is_none() {
                let Some(c) = l.container.as_mut() else {
                    continue;
                };
                if let Ok(Some(status)) = c.try_wait() {
                    l.exited = Some(status);
                    events.push(Event::Exited {
                        container: l.name.clone(),
                        id: l.id.clone(),
                        code: status.code(),
                    });
                    if !l.user_stopped && l.restart.restarts(status.code(), l.restarts) {
                        let wait = restart::backoff(l.backoff, now - l.started_at);
                        l.backoff = Some(wait);
                        l.restart_at = Some(now + wait);
                    }
                }
            }
            if let Some(e) = self.tick_health(i, now) {
                events.push(e);
            }
            if self.live[i].restart_at.is_some_and(|t| t <= now) {
                let result = self.respawn(i);
                let l = &mut self.live[i];
                match result {
                    Ok(()) => {
                        l.restarts += 1;
                        events.push(Event::Restarted {
                            container: l.name.clone(),
                            restarts: l.restarts,
                        });
                    }
                    Err(e) => events.push(Event::RestartFailed {
                        container: l.name.clone(),
                        message: e.to_string(),
                    }),
                }
            }
        }
        events
    }

    /// Stop (each container's stop signal, then SIGKILL after `timeout`)
    /// and remove everything: containers, namespaces, anonymous volumes, the
    /// network. Named volumes stay.
    /// Stop and remove everything; `timeout` overrides each service's
    /// `stop_grace_period` (default 10 s), as `down -t` does.
    pub fn down(self, timeout: Option<Duration>) -> Result<()> {
        self.down_with_notes(timeout).0
    }

    /// [`down`](Self::down), and what the user should hear about it (see
    /// [`take_notes`](Self::take_notes)).
    pub fn down_with_notes(mut self, timeout: Option<Duration>) -> (Result<()>, Vec<String>) {
        let result = self.stop_and_remove(timeout);
        (result, self.take_notes())
    }

    pub(super) fn stop_and_remove(&mut self, timeout: Option<Duration>) -> Result<()> {
        // Containers on their way out go with the rest.
        for r in std::mem::take(&mut self.retiring) {
            self.live.push(r.live);
        }
        for l in &mut self.live {
            l.restart_at = None;
            if let Some(p) = l.proxy.take() {
                p.close(Duration::ZERO);
            }
        }
        // Dependants stop before what they depend on, as with docker
        // compose; the containers of one wave stop in parallel, so a
        // project of independent services takes one grace period, not one
        // per service.
        for wave in stop_waves(&self.live) {
            for &i in &wave {
                if self.live[i].running() {
                    self.pre_stop(&self.live[i]);
                }
            }
            for &i in &wave {
                if let (Some(c), None) = (&self.live[i].container, &self.live[i].exited) {
                    let _ = c.kill(effective_stop_signal(c.pid(), self.live[i].stop_signal()));
                }
            }
            let started = Instant::now();
            loop {
                for &i in &wave {
                    let l = &mut self.live[i];
                    if let (Some(c), None) = (l.container.as_mut(), l.exited) {
                        if let Ok(Some(s)) = c.try_wait() {
                            l.exited = Some(s);
                        }
                    }
                }
                if !wave.iter().any(|&i| self.live[i].running()) {
                    break;
                }
                for &i in &wave {
                    let l = &mut self.live[i];
                    let grace = timeout
                        .or_else(|| l.grace())
                        .unwrap_or(Duration::from_secs(10));
                    if !l.running() || started.elapsed() < grace {
                        continue;
                    }
                    let sig = l.stop_signal();
                    if let Some(c) = l.container.as_mut() {
                        let note = killed_note(&l.name, c.pid(), sig, grace);
                        self.notes.borrow_mut().push(note);
                        let _ = c.kill(signal::SIGKILL);
                        if let Ok(s) = c.wait() {
                            l.exited = Some(s);
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let mut first_error = None;
        let mut named: Vec<String> = self
            .live
            .iter()
            .flat_map(|l| l.named_volumes.clone())
            .collect();
        named.sort();
        named.dedup();
        while let Some(mut l) = self.live.pop() {
            if let Some(c) = l.container.take() {
                if let Err(e) = c.delete() {
                    first_error.get_or_insert(svc_err(&l.service, e));
                }
            }
            self.discard(l, &[]);
        }
        self.release_volumes();
        // A tmpfs volume's tmpfs lives while the project runs.
        for name in named {
            if let Ok(dir) = volume_dir(&self.engine.state, &name) {
                unmount_tmpfs_volume(&dir.join("_data"));
            }
        }
        for network in std::mem::take(&mut self.networks) {
            if let Err(e) = self.engine.networks.remove(&network) {
                first_error.get_or_insert(EngineError::Network(e));
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}
