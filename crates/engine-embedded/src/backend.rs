//! [`EmbeddedBackend`]: the [`Backend`] whose containers berth runs itself.
//!
//! Changes go to the project's supervisor over its socket; what runs is
//! read from the `state.json` it keeps; `exec`, `cp` and `top` reach the
//! container directly (`direct.rs`).

use crate::logs::{Follower, LineFilter};
#[cfg(not(feature = "runtime"))]
use crate::supervisor::client::without_runtime;
use crate::supervisor::client::{connect, recover, send, take_over_if_orphaned};
use crate::supervisor::protocol::{Reply, Request};
use crate::supervisor::state::{project_dir, read_state};
use crate::{open_store, service_images, volume_dir};
use berth_engine::backend::{
    AttachOutcome, AttachRequest, Backend, BackendError, Container, Context, Control, CopyRequest,
    DownOptions, Event, ExecRequest, LogLine, LogOptions, Process, Progress, ProjectStatus,
    ProjectSummary, Result, RunOutcome, RunRequest, UpRequest,
};
use berth_engine::{bail, terminal, Desired, Plan};
use berth_oci::store::state_dir;
use std::fs;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::time::Duration;

/// The embedded engine, as the CLI sees it.
#[derive(Debug, Default)]
pub struct EmbeddedBackend;

impl EmbeddedBackend {
    pub fn new() -> EmbeddedBackend {
        EmbeddedBackend
    }
}

fn status_of(state: crate::supervisor::state::ProjectState) -> ProjectStatus {
    let mut containers = state.containers;
    containers.sort_by(|a, b| a.name.cmp(&b.name));
    ProjectStatus {
        project: state.project,
        containers,
        observed: state.observed,
        keeper: format!("supervisor pid {}", state.supervisor_pid),
    }
}

/// Reads the registry client's layer events as progress lines.
struct PullLines<'a> {
    progress: Progress<'a>,
    sizes: std::sync::Mutex<std::collections::HashMap<String, u64>>,
}

impl berth_registry::Progress for PullLines<'_> {
    fn on_layer_start(&self, digest: &berth_oci::Digest, size: u64) {
        if let Ok(mut s) = self.sizes.lock() {
            s.insert(digest.to_string(), size);
        }
    }

    fn on_layer_done(&self, digest: &berth_oci::Digest, cached: bool) {
        let size = self
            .sizes
            .lock()
            .ok()
            .and_then(|s| s.get(&digest.to_string()).copied())
            .unwrap_or(0);
        let what = if cached { "already present" } else { "done" };
        (self.progress)(&format!(
            "layer {} {:.1} MB ({what})",
            digest.short(),
            size as f64 / 1e6
        ));
    }
}

impl Backend for EmbeddedBackend {
    fn name(&self) -> &'static str {
        "embedded"
    }

    fn observe(&self, project: &str) -> Result<Option<ProjectStatus>> {
        take_over_if_orphaned(project)?;
        Ok(read_state(&project_dir(project)).map(status_of))
    }

    fn projects(&self) -> Result<Vec<ProjectSummary>> {
        let dirs = fs::read_dir(state_dir().join("projects"))
            .map(|d| d.flatten().map(|e| e.path()).collect::<Vec<_>>())
            .unwrap_or_default();
        let mut out: Vec<ProjectSummary> = dirs
            .iter()
            .filter_map(|dir| read_state(dir))
            .map(|s| ProjectSummary {
                running: s.containers.iter().filter(|c| c.status.is_alive()).count(),
                total: s.containers.len(),
                name: s.project,
            })
            .collect();
        out.sort();
        Ok(out)
    }

    fn has_image(&self, reference: &str) -> Result<bool> {
        Ok(open_store()?.resolve(reference)?.is_some())
    }

    fn pull_image(&self, reference: &str, progress: Progress) -> Result<()> {
        let r: berth_registry::Reference = reference
            .parse()
            .map_err(|e| BackendError::invalid(format!("{reference}: {e}")))?;
        let client = berth_registry::Client::from_env().context("registry configuration")?;
        let lines = PullLines {
            progress,
            sizes: Default::default(),
        };
        client
            .pull(&open_store()?, &r, &Default::default(), &lines)
            .with_context(|| format!("pulling {}", r.familiar()))?;
        Ok(())
    }

    fn import_image(&self, _: &berth_oci::Store, _: &str, _: Progress) -> Result<()> {
        // Images run from berth's own store: nothing to hand over.
        Ok(())
    }

    fn plan(&self, request: &UpRequest) -> Result<Plan> {
        let loaded = request.loaded;
        let store = open_store()?;
        let mut names = request.images.clone();
        // A service whose image is missing is left out of the digests.
        names.retain(|_, name| store.image(name, &berth_oci::Platform::host()).is_ok());
        let images = service_images(&store, &names, request.runtimes)?;
        let files = berth_engine::project_files::resolve(&loaded.project, &loaded.environment)?;
        let mut desired = Desired::new(&loaded.project).with_project_files(&files);
        for (service, image) in &images {
            desired = desired.with_image_digest(service, &image.digest);
        }
        let observed = read_state(&project_dir(&loaded.project.name))
            .map(|s| s.observed)
            .unwrap_or_default();
        Ok(berth_engine::plan(
            &desired,
            &observed,
            &request.flags.into(),
        )?)
    }

    fn up(&self, request: &UpRequest, progress: Progress) -> Result<()> {
        let wire = Request::Up {
            load: Box::new(request.load.clone()),
            flags: request.flags.clone(),
            images: request.images.clone(),
            runtimes: request.runtimes.clone(),
        };
        send(&request.loaded.project.name, &wire, progress)?;
        Ok(())
    }

    fn down(
        &self,
        project: &berth_compose::Project,
        options: &DownOptions,
        progress: Progress,
    ) -> Result<bool> {
        let dir = project_dir(&project.name);
        let recovered = recover(&project.name, progress)?;
        let stopped = recovered
            || send(
                &project.name,
                &Request::Down {
                    timeout_secs: options.timeout_secs,
                },
                progress,
            )?;
        let _ = fs::remove_dir_all(&dir);
        if options.volumes {
            for (key, v) in &project.volumes {
                if v.external == Some(true) {
                    continue;
                }
                let name = v
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("{}_{key}", project.name));
                let path = volume_dir(&state_dir(), &name)
                    .map_err(|e| BackendError::invalid(format!("volumes.{key}: {e}")))?;
                if path.exists() {
                    fs::remove_dir_all(&path).with_context(|| format!("removing volume {name}"))?;
                    progress(&format!("✔ Volume {name} removed"));
                }
            }
        }
        Ok(stopped)
    }

    fn control(&self, project: &str, control: &Control, progress: Progress) -> Result<()> {
        take_over_if_orphaned(project)?;
        let request = Request::Control {
            control: control.clone(),
        };
        if !send(project, &request, progress)? {
            bail!(
                NotRunning,
                "project {project} is not running (berth up starts it)"
            );
        }
        Ok(())
    }

    fn run(&self, project: &str, request: &RunRequest) -> Result<RunOutcome> {
        let stream = connect(project, true)?.context("no supervisor")?;
        let wire = Request::Run {
            run: Box::new(request.clone()),
        };
        let mut line = serde_json::to_string(&wire)?;
        line.push('\n');
        let mut master = None;
        if request.detach {
            crate::fdpass::send_with_fds(&stream, line.as_bytes(), &[])?;
        } else if request.tty {
            let (m, slave) = terminal::open_pty().context("allocating a pseudo-terminal")?;
            terminal::copy_window_size(&m);
            let fd = slave.as_raw_fd();
            crate::fdpass::send_with_fds(&stream, line.as_bytes(), &[fd, fd, fd])?;
            master = Some(m);
        } else {
            crate::fdpass::send_with_fds(&stream, line.as_bytes(), &[0, 1, 2])?;
        }
        let mut raw = None;
        let mut started = None;
        for reply in BufReader::new(stream).lines() {
            let reply = reply.context("reading the supervisor's reply")?;
            match serde_json::from_str::<Reply>(&reply) {
                // The one-off's own output shares this terminal.
                Ok(Reply::Progress(p)) => eprintln!(" {p}"),
                Ok(Reply::Started(name)) => {
                    if let Some(m) = master.take() {
                        raw = Some(terminal::RawMode::enter());
                        std::thread::spawn(move || terminal::pump(m));
                    }
                    started = Some(name);
                }
                Ok(Reply::Exited(code)) => {
                    drop(raw);
                    return Ok(RunOutcome::Exited { code });
                }
                Ok(Reply::Ok) => {
                    return Ok(RunOutcome::Detached {
                        name: started.unwrap_or_default(),
                    })
                }
                Ok(Reply::Error(e)) => return Err(e),
                Err(_) => {
                    bail!(Engine, "unexpected reply from the supervisor: {reply}")
                }
            }
        }
        bail!(
            Engine,
            "the supervisor of {project} went away without an answer"
        )
    }

    fn exec(&self, _project: &str, request: &ExecRequest) -> Result<i32> {
        #[cfg(feature = "runtime")]
        return crate::direct::exec(self.name(), request);
        #[cfg(not(feature = "runtime"))]
        return Err(without_runtime(&format!(
            "exec in {}",
            request.container.name
        )));
    }

    fn attach(&self, project: &str, request: &AttachRequest) -> Result<AttachOutcome> {
        crate::attach::attach(project, request)
    }

    fn copy(&self, _project: &str, request: &CopyRequest) -> Result<()> {
        #[cfg(feature = "runtime")]
        return crate::direct::copy(request);
        #[cfg(not(feature = "runtime"))]
        return Err(without_runtime(&format!(
            "cp with {}",
            request.container.name
        )));
    }

    fn top(&self, _project: &str, container: &Container) -> Result<Vec<Process>> {
        #[cfg(feature = "runtime")]
        return Ok(crate::direct::top(container));
        #[cfg(not(feature = "runtime"))]
        return Err(without_runtime(&format!("top of {}", container.name)));
    }

    fn logs(
        &self,
        project: &str,
        options: &LogOptions,
        sink: &mut dyn FnMut(LogLine),
        stop: &dyn Fn() -> bool,
    ) -> Result<()> {
        take_over_if_orphaned(project)?;
        let dir = project_dir(project);
        let mut follower = Follower::new(
            &dir.join("logs"),
            project,
            &options.services,
            options.from_now,
        );
        let mut filter = LineFilter {
            tail: options.tail,
            since: options.since.clone(),
            until: options.until.clone(),
        };
        follower.pump(&mut filter, sink);
        if options.follow {
            while !stop() && read_state(&dir).is_some() {
                std::thread::sleep(Duration::from_millis(50));
                follower.pump(&mut filter, sink);
            }
            follower.pump(&mut filter, sink);
        }
        Ok(())
    }

    fn events(
        &self,
        project: &str,
        sink: &mut dyn FnMut(Event),
        stop: &dyn Fn() -> bool,
    ) -> Result<()> {
        let path = project_dir(project).join("events.jsonl");
        let mut offset = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        while !stop() {
            if let Ok(mut f) = fs::File::open(&path) {
                let len = f.metadata().map(|m| m.len()).unwrap_or(0);
                if len < offset {
                    offset = 0; // a new run of the project started the file again
                }
                f.seek(SeekFrom::Start(offset))?;
                let mut reader = BufReader::new(f);
                let mut line = String::new();
                while reader.read_line(&mut line)? > 0 {
                    if !line.ends_with('\n') {
                        break;
                    }
                    offset += line.len() as u64;
                    if let Some(e) = parse_event(project, &line) {
                        sink(e);
                    }
                    line.clear();
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }
}

/// One line of `events.jsonl`; attribute values as docker gives them (strings).
fn parse_event(project: &str, line: &str) -> Option<Event> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let container = v["id"].as_str()?.to_string();
    let attributes = v["attributes"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let text = v
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string());
                    (k.clone(), text)
                })
                .collect()
        })
        .unwrap_or_default();
    Some(Event {
        time: v["time"].as_str().unwrap_or_default().to_string(),
        action: v["action"].as_str().unwrap_or_default().to_string(),
        service: container
            .strip_prefix(&format!("{project}-"))
            .and_then(|r| r.rsplit_once('-').map(|(s, _)| s.to_string()))
            .unwrap_or_default(),
        container,
        attributes,
    })
}
