//! The commands after `up`: control, one-offs, exec, cp, top, logs, events.

use crate::observe::{inspect_project, labels_of, name_of, status_of};
use crate::{api_err, is_not_found, labels, spec, DockerBackend, Result};
use berth_engine::backend::{
    Container, Control, CopyRequest, Event, ExecRequest, HostEnd, LogLine, LogOptions, PlanFlags,
    Process, Progress, RunOutcome, RunRequest, RuntimeMount, UpRequest,
};
use berth_engine::{BackendError, ErrorKind};
use bollard::container::LogOutput;
use bollard::exec::StartExecResults;
use bollard::models::{ContainerInspectResponse, EventMessage, ExecConfig, PortBinding};
use bollard::query_parameters::{
    AttachContainerOptions, DownloadFromContainerOptions, EventsOptions, KillContainerOptions,
    LogsOptions, RemoveContainerOptions, RestartContainerOptions, TopOptions,
    UploadToContainerOptions,
};
use bollard::Docker;
use futures_util::{Stream, StreamExt};
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::pin::Pin;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// How often a watching command (`logs -f`, `events`) asks whether to stop.
pub(crate) const STOP_POLL: Duration = Duration::from_millis(100);
/// How often `logs -f` looks for containers that (re)started.
const RESCAN: Duration = Duration::from_secs(1);

type Output =
    Pin<Box<dyn Stream<Item = std::result::Result<LogOutput, bollard::errors::Error>> + Send>>;

fn days_to_civil(z: i64) -> (i64, u32, u32) {
    // Howard Hinnant's civil_from_days: the proleptic Gregorian calendar.
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// RFC 3339 in UTC with nanoseconds, from nanoseconds since the epoch.
pub(crate) fn rfc3339(nanos: i64) -> String {
    let secs = nanos.div_euclid(1_000_000_000);
    let frac = nanos.rem_euclid(1_000_000_000);
    let (y, m, d) = days_to_civil(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{frac:09}Z",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// Seconds since the epoch of an RFC 3339 time (`Z` or `±hh:mm`).
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    parse_rfc3339_nanos(text).map(|n| n.div_euclid(1_000_000_000))
}

/// Nanoseconds since the epoch of an RFC 3339 time: Docker's log times
/// drop trailing zeros of the fraction, so they are compared as numbers.
pub fn parse_rfc3339_nanos(text: &str) -> Option<i64> {
    let t = text.trim();
    let num = |s: &str| s.parse::<i64>().ok();
    let (date, rest) = t.split_once(['T', ' '])?;
    let mut dp = date.split('-');
    let (y, m, d) = (num(dp.next()?)?, num(dp.next()?)?, num(dp.next()?)?);
    let (clock, offset) = if let Some(c) = rest.strip_suffix(['Z', 'z']) {
        (c, 0)
    } else {
        let at = rest.rfind(['+', '-'])?;
        let (c, off) = rest.split_at(at);
        let sign = if off.starts_with('-') { -1 } else { 1 };
        let (oh, om) = off[1..].split_once(':')?;
        (c, sign * (num(oh)? * 3600 + num(om)? * 60))
    };
    let (clock, frac) = clock.split_once('.').unwrap_or((clock, ""));
    let digits: String = frac.chars().take(9).collect();
    let nanos = if digits.is_empty() {
        0
    } else {
        num(&digits)? * 10i64.pow(9 - digits.len() as u32)
    };
    let mut cp = clock.split(':');
    let (h, mi, s) = (
        num(cp.next()?)?,
        num(cp.next()?)?,
        num(cp.next().unwrap_or("0"))?,
    );
    let days = days_from_civil(y, u32::try_from(m).ok()?, u32::try_from(d).ok()?);
    let secs = days * 86_400 + h * 3600 + mi * 60 + s - offset;
    Some(secs * 1_000_000_000 + nanos)
}

fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Forward this process's stdin to a container's input until EOF, from a
/// thread (reading stdin blocks).
fn pump_stdin(
    mut input: Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
) -> tokio::task::JoinHandle<()> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin();
        let mut buf = [0u8; 8192];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.blocking_send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
            }
        }
    });
    tokio::spawn(async move {
        while let Some(chunk) = rx.recv().await {
            if input.write_all(&chunk).await.is_err() {
                return;
            }
            let _ = input.flush().await;
        }
        // EOF on our stdin: the container's stdin closes too.
        let _ = input.shutdown().await;
    })
}

/// Copy a container's output stream to this process's stdout/stderr.
pub(crate) async fn pump_output(mut output: Output) -> Result<()> {
    while let Some(item) = output.next().await {
        match item.map_err(|e| api_err("reading the container's output", e))? {
            LogOutput::StdErr { message } => {
                let mut e = std::io::stderr();
                let _ = e.write_all(&message);
                let _ = e.flush();
            }
            LogOutput::StdOut { message } | LogOutput::Console { message } => {
                let mut o = std::io::stdout();
                let _ = o.write_all(&message);
                let _ = o.flush();
            }
            LogOutput::StdIn { .. } => {}
        }
    }
    Ok(())
}

/// The terminal in raw mode while a `-t` session runs, restored on drop.
pub(crate) struct RawTerminal(Option<libc::termios>);

impl RawTerminal {
    pub(crate) fn enter(tty: bool) -> RawTerminal {
        // SAFETY: isatty/tcgetattr/tcsetattr on fd 0 with a zeroed termios
        // the kernel fills; nothing is kept past the calls.
        unsafe {
            if !tty || libc::isatty(0) != 1 {
                return RawTerminal(None);
            }
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut t) != 0 {
                return RawTerminal(None);
            }
            let saved = t;
            libc::cfmakeraw(&mut t);
            libc::tcsetattr(0, libc::TCSANOW, &t);
            RawTerminal(Some(saved))
        }
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        if let Some(t) = self.0 {
            // SAFETY: restores the attributes read in `enter`.
            unsafe {
                libc::tcsetattr(0, libc::TCSANOW, &t);
            }
        }
    }
}

impl DockerBackend {
    async fn project_containers(
        &self,
        project: &str,
        services: &[String],
    ) -> Result<Vec<ContainerInspectResponse>> {
        // A container a swap replaced is the keeper's to retire, not a
        // command's to act on.
        let all: Vec<ContainerInspectResponse> = self
            .inspect_project(project)
            .await?
            .into_iter()
            .filter(|c| !crate::apply::is_retired(&crate::observe::name_of(c)))
            .collect();
        if all.is_empty() {
            return Err(BackendError::not_running(project));
        }
        Ok(all
            .into_iter()
            .filter(|c| {
                let l = labels_of(c);
                l.get(labels::ONEOFF).map(String::as_str) != Some("True")
                    && (services.is_empty()
                        || l.get(labels::SERVICE).is_some_and(|s| services.contains(s)))
            })
            .collect())
    }

    pub(crate) async fn control_project(
        &self,
        project: &str,
        control: &Control,
        progress: Progress<'_>,
    ) -> Result<()> {
        let services = match control {
            Control::Stop { services, .. }
            | Control::Start { services }
            | Control::Restart { services, .. }
            | Control::Kill { services, .. }
            | Control::Rm { services, .. }
            | Control::Pause { services, .. } => services,
        };
        let containers = self.project_containers(project, services).await?;
        for c in &containers {
            let name = name_of(c);
            let status = status_of(c);
            let service = labels_of(c)
                .get(labels::SERVICE)
                .cloned()
                .unwrap_or_default();
            match control {
                Control::Stop { timeout_secs, .. } => {
                    if status.is_alive() {
                        let t = timeout_secs
                            .map(|t| t.min(i32::MAX as u64) as i32)
                            .unwrap_or_else(|| {
                                c.config
                                    .as_ref()
                                    .and_then(|c| c.stop_timeout)
                                    .map(|t| t as i32)
                                    .unwrap_or(10)
                            });
                        let hooks = crate::hooks::of_container(c);
                        self.pre_stop(hooks.as_ref(), &service, &name, t, progress)
                            .await;
                        self.stop(&name, t).await?;
                        progress(&format!(" ✔ Container {name} Stopped"));
                    }
                }
                Control::Start { .. } => {
                    if !status.is_alive() {
                        self.start(&name, &name).await?;
                        if let Some(hooks) = crate::hooks::of_container(c) {
                            self.run_hooks(&hooks, &service, "post_start", &name, None)
                                .await?;
                        }
                        progress(&format!(" ✔ Container {name} Started"));
                    }
                }
                Control::Restart { timeout_secs, .. } => {
                    self.docker
                        .restart_container(
                            &name,
                            Some(RestartContainerOptions {
                                t: timeout_secs.map(|t| t.min(i32::MAX as u64) as i32),
                                ..Default::default()
                            }),
                        )
                        .await
                        .map_err(|e| api_err(format!("restarting {name}"), e))?;
                    progress(&format!(" ✔ Container {name} Restarted"));
                }
                Control::Kill { signal, .. } => {
                    if status.is_alive() {
                        self.docker
                            .kill_container(
                                &name,
                                Some(KillContainerOptions {
                                    signal: signal.to_string(),
                                }),
                            )
                            .await
                            .map_err(|e| api_err(format!("killing {name}"), e))?;
                        progress(&format!(" ✔ Container {name} Killed"));
                    }
                }
                Control::Rm { force, .. } => {
                    if status.is_alive() && !force {
                        continue;
                    }
                    self.remove(&name).await?;
                    progress(&format!(" ✔ Container {name} Removed"));
                }
                Control::Pause { pause, .. } => {
                    let r = if *pause {
                        self.docker.pause_container(&name).await
                    } else {
                        self.docker.unpause_container(&name).await
                    };
                    r.map_err(|e| {
                        api_err(
                            format!("{} {name}", if *pause { "pausing" } else { "unpausing" }),
                            e,
                        )
                    })?;
                    progress(&format!(
                        " ✔ Container {name} {}",
                        if *pause { "Paused" } else { "Unpaused" }
                    ));
                }
            }
        }
        Ok(())
    }

    pub(crate) async fn run_one_off(
        &self,
        project: &str,
        request: &RunRequest,
    ) -> Result<RunOutcome> {
        let loaded = berth_compose::load(&request.load.clone().into())
            .map_err(|e| BackendError::invalid(e.to_string()))?;
        if loaded.project.name != project {
            return Err(BackendError::invalid(format!(
                "the project loaded is {}, not {project}",
                loaded.project.name
            )));
        }
        let svc = loaded
            .project
            .services
            .get(&request.service)
            .ok_or_else(|| {
                BackendError::not_found(format!("no such service: {}", request.service))
            })?
            .clone();
        // `run` is not told which image each service runs: the one its
        // containers were made from is the one `up` resolved.
        let mut images = BTreeMap::new();
        let mut runtimes = BTreeMap::new();
        for c in self.inspect_project(project).await? {
            if crate::apply::is_retired(&crate::observe::name_of(&c)) {
                continue;
            }
            let Some(service) = labels_of(&c).get(labels::SERVICE).cloned() else {
                continue;
            };
            if let Some(image) = c.config.as_ref().and_then(|c| c.image.clone()) {
                images.entry(service.clone()).or_insert(image);
            }
            // Nor which runtime: the one mounted into its containers.
            if let Some(r) = runtime_of(&c) {
                runtimes.entry(service).or_insert(r);
            }
        }
        let deps: Vec<String> = svc.depends_on.keys().cloned().collect();
        let noop = |_: &str| {};
        if !request.no_deps && !deps.is_empty() {
            let flags = PlanFlags {
                services: deps,
                ..PlanFlags::default()
            };
            let up = UpRequest {
                load: &request.load,
                loaded: &loaded,
                images: &images,
                runtimes: &runtimes,
                flags: &flags,
            };
            self.converge(&up, &noop).await?;
        }
        let flags = PlanFlags::default();
        let up = UpRequest {
            load: &request.load,
            loaded: &loaded,
            images: &images,
            runtimes: &runtimes,
            flags: &flags,
        };
        let (_, ctx) = self.make_plan(&up, true).await?;
        let suffix: String = {
            let n = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            format!(
                "{:012x}",
                (n ^ (std::process::id() as u128) << 40) & 0xffff_ffff_ffff
            )
        };
        let name = request
            .name
            .clone()
            .unwrap_or_else(|| format!("{project}-{}-run-{suffix}", request.service));
        let mut extra_ports: Vec<(String, PortBinding)> = Vec::new();
        let service_ports = if request.service_ports {
            svc.ports.clone()
        } else {
            Vec::new()
        };
        for p in &service_ports {
            extra_ports.push((
                format!("{}/{}", p.target, p.protocol),
                PortBinding {
                    host_ip: p.host_ip.clone(),
                    host_port: Some(p.published.clone().unwrap_or_default()),
                },
            ));
        }
        for spec_text in &request.ports {
            // HOST:CONTAINER[/proto], IP:HOST:CONTAINER, or CONTAINER.
            let (body, proto) = spec_text.split_once('/').unwrap_or((spec_text, "tcp"));
            let parts: Vec<&str> = body.rsplitn(3, ':').collect();
            let (target, host_port, host_ip) = match parts.as_slice() {
                [t] => (*t, "", None),
                [t, h] => (*t, *h, None),
                [t, h, ip] => (*t, *h, Some(ip.to_string())),
                _ => {
                    return Err(BackendError::invalid(format!(
                        "--publish {spec_text}: not a port"
                    )))
                }
            };
            extra_ports.push((
                format!("{target}/{proto}"),
                PortBinding {
                    host_ip,
                    host_port: Some(host_port.to_string()),
                },
            ));
        }
        let tweak = |body: &mut bollard::models::ContainerCreateBody| {
            if let Some(c) = &request.command {
                body.cmd = Some(c.clone());
            }
            if let Some(e) = &request.entrypoint {
                body.entrypoint = Some(e.clone());
                if request.command.is_none() {
                    body.cmd = None;
                }
            }
            let env = body.env.get_or_insert_with(Vec::new);
            env.extend(request.env.iter().cloned());
            if let Some(u) = &request.user {
                body.user = Some(u.clone());
            }
            if let Some(w) = &request.workdir {
                body.working_dir = Some(w.clone());
            }
            body.tty = Some(request.tty);
            if !request.detach {
                body.open_stdin = Some(true);
                body.stdin_once = Some(true);
                body.attach_stdin = Some(true);
                body.attach_stdout = Some(true);
                body.attach_stderr = Some(true);
            }
            if !extra_ports.is_empty() {
                let hc = body.host_config.get_or_insert_with(Default::default);
                let map = hc.port_bindings.get_or_insert_with(HashMap::new);
                let exposed = body.exposed_ports.get_or_insert_with(Vec::new);
                for (k, b) in &extra_ports {
                    map.entry(k.clone())
                        .or_insert_with(|| Some(Vec::new()))
                        .get_or_insert_with(Vec::new)
                        .push(b.clone());
                    if !exposed.contains(k) {
                        exposed.push(k.clone());
                    }
                }
            }
        };
        let id = self
            .create_with(
                &ctx,
                &request.service,
                1,
                &name,
                Vec::new(),
                true,
                Some(&tweak),
            )
            .await?;
        if request.detach {
            self.start(&id, &name).await?;
            return Ok(RunOutcome::Detached { name });
        }
        let attached = self
            .docker
            .attach_container(
                &id,
                Some(AttachContainerOptions {
                    stream: true,
                    stdin: true,
                    stdout: true,
                    stderr: true,
                    ..Default::default()
                }),
            )
            .await
            .map_err(|e| api_err(format!("attaching to {name}"), e))?;
        let _raw = RawTerminal::enter(request.tty);
        let input = pump_stdin(attached.input);
        self.start(&id, &name).await?;
        pump_output(attached.output).await?;
        input.abort();
        let code = self.wait_exit(&id).await?;
        drop(_raw);
        if request.rm {
            let _ = self
                .docker
                .remove_container(
                    &id,
                    Some(RemoveContainerOptions {
                        force: true,
                        v: true,
                        ..Default::default()
                    }),
                )
                .await;
        }
        Ok(RunOutcome::Exited {
            code: i32::try_from(code).unwrap_or(1),
        })
    }

    pub(crate) async fn exec_in(&self, _project: &str, request: &ExecRequest) -> Result<i32> {
        let target = &request.container;
        let id = if target.id.is_empty() {
            &target.name
        } else {
            &target.id
        };
        let attach = !request.detach;
        let exec = self
            .docker
            .create_exec(
                id,
                ExecConfig {
                    attach_stdin: Some(attach),
                    attach_stdout: Some(attach),
                    attach_stderr: Some(attach),
                    tty: Some(request.tty),
                    env: (!request.env.is_empty()).then(|| request.env.clone()),
                    cmd: Some(request.command.clone()),
                    privileged: Some(request.privileged),
                    user: request.user.clone(),
                    working_dir: request.workdir.clone(),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| api_err(format!("exec in {}", target.name), e))?;
        let started = self
            .docker
            .start_exec(
                &exec.id,
                Some(bollard::exec::StartExecOptions {
                    detach: request.detach,
                    tty: request.tty,
                    ..Default::default()
                }),
            )
            .await
            .map_err(|e| api_err(format!("exec in {}", target.name), e))?;
        match started {
            StartExecResults::Detached => Ok(0),
            StartExecResults::Attached { output, input } => {
                let _raw = RawTerminal::enter(request.tty);
                let pump = pump_stdin(input);
                pump_output(output).await?;
                pump.abort();
                let inspect = self
                    .docker
                    .inspect_exec(&exec.id)
                    .await
                    .map_err(|e| api_err("reading the exec's exit code", e))?;
                Ok(inspect.exit_code.map(|c| c as i32).unwrap_or(0))
            }
        }
    }

    pub(crate) async fn copy_files(&self, _project: &str, request: &CopyRequest) -> Result<()> {
        let c = &request.container;
        let id = if c.id.is_empty() { &c.name } else { &c.id };
        if request.out {
            let mut stream = self.docker.download_from_container(
                id,
                Some(DownloadFromContainerOptions {
                    path: request.path.clone(),
                }),
            );
            let mut archive = Vec::new();
            while let Some(chunk) = stream.next().await {
                let chunk =
                    chunk.map_err(|e| api_err(format!("{}:{}", c.name, request.path), e))?;
                archive.extend_from_slice(&chunk);
            }
            match &request.host {
                HostEnd::Stdio => {
                    let mut o = std::io::stdout();
                    o.write_all(&archive)
                        .and_then(|_| o.flush())
                        .map_err(|e| BackendError::engine(format!("writing to stdout: {e}")))?;
                }
                HostEnd::Path(dest) => extract(&archive, dest)?,
            }
            return Ok(());
        }
        let (archive, dir) = match &request.host {
            HostEnd::Stdio => {
                let mut buf = Vec::new();
                std::io::stdin()
                    .read_to_end(&mut buf)
                    .map_err(|e| BackendError::engine(format!("reading stdin: {e}")))?;
                (buf, request.path.clone())
            }
            HostEnd::Path(src) => {
                // Into a directory the source keeps its name; onto another
                // path it takes that path's name, as `docker cp` does.
                let into_dir = self.is_dir(id, &request.path).await;
                let (dir, name) = if into_dir {
                    let name = src
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_else(|| ".".into());
                    (request.path.clone(), name)
                } else {
                    let p = std::path::Path::new(&request.path);
                    let parent = p
                        .parent()
                        .map(|d| d.to_string_lossy().into_owned())
                        .filter(|d| !d.is_empty())
                        .unwrap_or_else(|| "/".into());
                    let name = p
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    (parent, name)
                };
                (pack(src, &name)?, dir)
            }
        };
        self.docker
            .upload_to_container(
                id,
                Some(UploadToContainerOptions {
                    path: dir.clone(),
                    ..Default::default()
                }),
                bollard::body_full(archive.into()),
            )
            .await
            .map_err(|e| api_err(format!("{}:{dir}", c.name), e))
    }

    async fn is_dir(&self, id: &str, path: &str) -> bool {
        // A stat of the path: its header carries the mode.
        match self
            .docker
            .get_container_archive_info(
                id,
                Some(bollard::query_parameters::ContainerArchiveInfoOptions {
                    path: path.to_string(),
                }),
            )
            .await
        {
            Ok(info) => info.file_mode & (1 << 31) != 0,
            Err(_) => false,
        }
    }

    pub(crate) async fn top_of(
        &self,
        _project: &str,
        container: &Container,
    ) -> Result<Vec<Process>> {
        let id = if container.id.is_empty() {
            &container.name
        } else {
            &container.id
        };
        let top = self
            .docker
            .top_processes(
                id,
                Some(TopOptions {
                    ps_args: "-o uid,pid,ppid,args".into(),
                }),
            )
            .await
            .map_err(|e| api_err(format!("top of {}", container.name), e))?;
        let titles = top.titles.unwrap_or_default();
        let col = |name: &str| titles.iter().position(|t| t.eq_ignore_ascii_case(name));
        let (uid, pid, ppid) = (col("UID"), col("PID"), col("PPID"));
        let cmd = col("COMMAND").or_else(|| col("CMD"));
        Ok(top
            .processes
            .unwrap_or_default()
            .into_iter()
            .map(|p| {
                let get = |i: Option<usize>| i.and_then(|i| p.get(i)).cloned().unwrap_or_default();
                Process {
                    uid: get(uid),
                    pid: get(pid).parse().unwrap_or(0),
                    ppid: get(ppid).parse().unwrap_or(0),
                    command: get(cmd),
                }
            })
            .collect())
    }

    /// Every line `options` selects, oldest first (no follow).
    pub(crate) async fn collect_logs(
        &self,
        project: &str,
        options: &LogOptions,
    ) -> Result<Vec<LogLine>> {
        // A container a swap replaced is the keeper's to retire, not a
        // command's to act on.
        let all: Vec<ContainerInspectResponse> = self
            .inspect_project(project)
            .await?
            .into_iter()
            .filter(|c| !crate::apply::is_retired(&crate::observe::name_of(c)))
            .collect();
        if all.is_empty() {
            return Err(BackendError::not_running(project));
        }
        let window = Window::of(options)?;
        let mut merged = futures_util::stream::SelectAll::new();
        for c in &all {
            if let Some((name, service)) = wanted(options, c) {
                merged.push(open_logs(
                    &self.docker,
                    &name,
                    &service,
                    &window,
                    false,
                    window.since,
                    options.tail,
                ));
            }
        }
        let mut lines = Vec::new();
        while let Some((c, s, item)) = merged.next().await {
            match item {
                None => {}
                Some(Ok(out)) => lines.extend(
                    line_of(&c, &s, out)
                        .into_iter()
                        .filter(|l| window.admits(l)),
                ),
                Some(Err(e)) if is_not_found(&e) => {}
                Some(Err(e)) => return Err(api_err(format!("logs of {c}"), e)),
            }
        }
        // Oldest first across containers; the sort is stable, so lines
        // of one container keep their order.
        lines.sort_by(|a, b| a.time.cmp(&b.time));
        Ok(lines)
    }
}

/// The time bounds of a `logs` request.
struct Window {
    /// Docker's `since` (whole seconds).
    since: i64,
    until: i64,
    /// `--from-now` to the nanosecond: Docker's `since` has whole seconds,
    /// so what was written earlier in this second is dropped here.
    floor: Option<i64>,
}

impl Window {
    fn of(options: &LogOptions) -> Result<Window> {
        let started = now_nanos();
        let since = if options.from_now {
            started.div_euclid(1_000_000_000)
        } else {
            match &options.since {
                Some(s) => parse_rfc3339(s)
                    .ok_or_else(|| BackendError::invalid(format!("--since {s}: not a time")))?,
                None => 0,
            }
        };
        let until = match &options.until {
            Some(s) => parse_rfc3339(s)
                .ok_or_else(|| BackendError::invalid(format!("--until {s}: not a time")))?,
            None => 0,
        };
        Ok(Window {
            since,
            until,
            floor: options.from_now.then_some(started),
        })
    }

    fn admits(&self, l: &LogLine) -> bool {
        self.floor.is_none_or(|f| {
            l.time
                .as_deref()
                .and_then(parse_rfc3339_nanos)
                .is_none_or(|t| t >= f)
        })
    }
}

/// The container's name and service, when `options` selects it.
fn wanted(options: &LogOptions, c: &ContainerInspectResponse) -> Option<(String, String)> {
    let l = labels_of(c);
    let service = l.get(labels::SERVICE).cloned().unwrap_or_default();
    if !options.services.is_empty() && !options.services.contains(&service) {
        return None;
    }
    Some((name_of(c), service))
}

type LogItem = (
    String,
    String,
    Option<std::result::Result<LogOutput, bollard::errors::Error>>,
);

/// One container's log stream, ending with `None` (a follow ends when its
/// container stops).
fn open_logs(
    docker: &Docker,
    name: &str,
    service: &str,
    window: &Window,
    follow: bool,
    since: i64,
    tail: Option<usize>,
) -> Pin<Box<dyn Stream<Item = LogItem> + Send>> {
    let s = docker
        .logs(
            name,
            Some(LogsOptions {
                follow,
                stdout: true,
                stderr: true,
                since: i32::try_from(since).unwrap_or(0),
                until: i32::try_from(window.until).unwrap_or(0),
                timestamps: true,
                tail: tail.map(|n| n.to_string()).unwrap_or_else(|| "all".into()),
            }),
        )
        .map(Some)
        .chain(futures_util::stream::once(async { None }));
    let (n, sv) = (name.to_string(), service.to_string());
    Box::pin(s.map(move |item| (n.clone(), sv.clone(), item)))
}

fn line_of(container: &str, service: &str, out: LogOutput) -> Vec<LogLine> {
    let (stderr, bytes) = match out {
        LogOutput::StdErr { message } => (true, message),
        LogOutput::StdOut { message } | LogOutput::Console { message } => (false, message),
        LogOutput::StdIn { .. } => return Vec::new(),
    };
    String::from_utf8_lossy(&bytes)
        .lines()
        .map(|l| {
            let (time, text) = match l.split_once(' ') {
                Some((t, rest)) if t.len() > 20 && t.as_bytes()[4] == b'-' => {
                    (Some(t.to_string()), rest.to_string())
                }
                _ => (None, l.to_string()),
            };
            LogLine {
                container: container.to_string(),
                service: service.to_string(),
                stderr,
                time,
                text,
            }
        })
        .collect()
}

/// `logs -f`, as a task of the backend's runtime sending lines to `tx`
/// (the caller's sink and stop run outside the runtime, so they may call
/// the backend again). A container that stops ends its stream; when it
/// (or a new container of the project) runs again it is followed again
/// from the last line seen, duplicates dropped by their times.
pub(crate) async fn follow_logs(
    docker: Docker,
    project: String,
    options: LogOptions,
    tx: tokio::sync::mpsc::Sender<Result<LogLine>>,
) {
    let result = async {
        let window = Window::of(&options)?;
        let mut merged = futures_util::stream::SelectAll::new();
        let mut followed: HashMap<String, String> = HashMap::new();
        for c in inspect_project(&docker, &project).await? {
            if let Some((name, service)) = wanted(&options, &c) {
                merged.push(open_logs(
                    &docker,
                    &name,
                    &service,
                    &window,
                    true,
                    window.since,
                    options.tail,
                ));
                followed.insert(name, service);
            }
        }
        let mut last: HashMap<String, i64> = HashMap::new();
        let mut rescan = tokio::time::Instant::now() + RESCAN;
        loop {
            if tokio::time::Instant::now() >= rescan {
                rescan = tokio::time::Instant::now() + RESCAN;
                for c in inspect_project(&docker, &project).await? {
                    let Some((name, service)) = wanted(&options, &c) else {
                        continue;
                    };
                    if followed.contains_key(&name) || !status_of(&c).is_alive() {
                        continue;
                    }
                    let from = last
                        .get(&name)
                        .map(|t| t.div_euclid(1_000_000_000))
                        .unwrap_or(window.since);
                    merged.push(open_logs(
                        &docker, &name, &service, &window, true, from, None,
                    ));
                    followed.insert(name, service);
                }
            }
            if merged.is_empty() {
                tokio::time::sleep(STOP_POLL).await;
                continue;
            }
            match tokio::time::timeout(STOP_POLL, merged.next()).await {
                Err(_) | Ok(None) => continue,
                Ok(Some((c, _, None))) => {
                    followed.remove(&c);
                }
                Ok(Some((c, s, Some(item)))) => match item {
                    Ok(out) => {
                        for l in line_of(&c, &s, out) {
                            if let Some(t) = l.time.as_deref().and_then(parse_rfc3339_nanos) {
                                let seen = last.get(&c).copied().or(window.floor);
                                if seen.is_some_and(|seen| t <= seen) {
                                    continue;
                                }
                                last.insert(c.clone(), t);
                            }
                            if tx.send(Ok(l)).await.is_err() {
                                return Ok(());
                            }
                        }
                    }
                    Err(e) if is_not_found(&e) => {}
                    Err(e) => return Err(api_err(format!("logs of {c}"), e)),
                },
            }
        }
    }
    .await;
    if let Err(e) = result {
        let _ = tx.send(Err(e)).await;
    }
}

/// `events`, as a task sending to `tx` (see [`follow_logs`]).
pub(crate) async fn watch_events(
    docker: Docker,
    project: String,
    tx: tokio::sync::mpsc::Sender<Result<Event>>,
) {
    let filters = HashMap::from([
        ("label".to_string(), vec![labels::project_filter(&project)]),
        ("type".to_string(), vec!["container".to_string()]),
    ]);
    let mut stream = docker.events(Some(EventsOptions {
        filters: Some(filters),
        ..Default::default()
    }));
    while let Some(item) = stream.next().await {
        let sent = match item {
            Ok(m) => tx.send(Ok(to_event(m))).await,
            Err(e) => {
                let _ = tx.send(Err(api_err("reading events", e))).await;
                return;
            }
        };
        if sent.is_err() {
            return;
        }
    }
}

/// The `x-runtime` a container was made with, from its mounts.
fn runtime_of(c: &ContainerInspectResponse) -> Option<RuntimeMount> {
    let digest = labels_of(c).get(labels::RUNTIME)?.clone();
    let source = |target: &str| {
        c.mounts.iter().flatten().find_map(|m| {
            (m.destination.as_deref() == Some(target))
                .then(|| m.source.clone().map(std::path::PathBuf::from))
                .flatten()
        })
    };
    Some(RuntimeMount {
        root: source(spec::RUNTIME_DIR)?,
        digest,
        npm_cache: source(spec::NPM_CACHE_DIR),
        ca_bundle: source(spec::CA_BUNDLE),
    })
}

fn to_event(m: EventMessage) -> Event {
    let attributes: BTreeMap<String, String> = m
        .actor
        .as_ref()
        .and_then(|a| a.attributes.clone())
        .unwrap_or_default()
        .into_iter()
        .collect();
    let nanos = m
        .time_nano
        .or_else(|| m.time.map(|t| t * 1_000_000_000))
        .unwrap_or(0);
    Event {
        time: rfc3339(nanos),
        // `exec_start: sh -c …` carries its command; the action is the verb.
        action: m
            .action
            .unwrap_or_default()
            .split(':')
            .next()
            .unwrap_or_default()
            .to_string(),
        container: attributes.get("name").cloned().unwrap_or_default(),
        service: attributes.get(labels::SERVICE).cloned().unwrap_or_default(),
        attributes,
    }
}

/// `docker cp` out: into an existing directory the entry keeps its name;
/// otherwise the top entry becomes `dest`.
fn extract(archive: &[u8], dest: &std::path::Path) -> Result<()> {
    let err = |e: std::io::Error| BackendError::engine(format!("{}: {e}", dest.display()));
    let into_dir = dest.is_dir();
    let mut tar = tar::Archive::new(archive);
    for entry in tar.entries().map_err(err)? {
        let mut entry = entry.map_err(err)?;
        let path = entry.path().map_err(err)?.into_owned();
        let mut comps = path.components();
        let first = comps.next();
        let rest: std::path::PathBuf = comps.collect();
        let out = if into_dir {
            dest.join(&path)
        } else if first.is_some() {
            dest.join(rest)
        } else {
            continue;
        };
        // `unpack_in` refuses entries that leave the directory.
        let (base, rel) = if into_dir {
            (dest.to_path_buf(), path.clone())
        } else {
            let parent = dest.parent().unwrap_or(std::path::Path::new("."));
            let rel = out.strip_prefix(parent).unwrap_or(&out).to_path_buf();
            (parent.to_path_buf(), rel)
        };
        if rel
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return Err(BackendError::new(
                ErrorKind::Invalid,
                format!("{}: the archive leaves the destination", path.display()),
            ));
        }
        let target = base.join(&rel);
        if let Some(p) = target.parent() {
            std::fs::create_dir_all(p).map_err(err)?;
        }
        entry.unpack(&target).map_err(err)?;
    }
    Ok(())
}

/// A tar of `src` (a file or a directory) named `name` at its top.
fn pack(src: &std::path::Path, name: &str) -> Result<Vec<u8>> {
    let err = |e: std::io::Error| BackendError::engine(format!("{}: {e}", src.display()));
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    let meta = std::fs::symlink_metadata(src).map_err(err)?;
    if meta.is_dir() {
        b.append_dir_all(name, src).map_err(err)?;
    } else {
        b.append_path_with_name(src, name).map_err(err)?;
    }
    b.into_inner().map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips() {
        let t = parse_rfc3339("2026-12-02T13:12:21Z").unwrap();
        assert_eq!(rfc3339(t * 1_000_000_000), "2026-12-02T13:12:21.000000000Z");
        assert_eq!(parse_rfc3339("2026-12-02T14:12:21+01:00"), Some(t));
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00.5Z"), Some(0));
        assert_eq!(parse_rfc3339("yesterday"), None);
        // Docker trims the fraction's trailing zeros.
        assert_eq!(
            parse_rfc3339_nanos("1970-01-01T00:00:01.12Z"),
            Some(1_120_000_000)
        );
    }
}
