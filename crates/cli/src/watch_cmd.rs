//! `berth watch` and `up --watch`: compose's `develop.watch`. The rules,
//! the file watching and the debouncing live in `berth-watch`; this is the
//! engine side of it, through the project's backend: syncing into the
//! service's running containers (through `/proc/<pid>/root` when the engine
//! runs them on this host, replacing each file atomically so a running app
//! never reads half of one; else the backend's copy, as `berth cp`),
//! rebuilding with `up --build SERVICE`, restarting, and exec'ing hooks.

use crate::options::load_options;
use crate::up_cmd::{install_client_signal_handlers, interrupted};
use crate::GlobalArgs;
use anyhow::{bail, Context, Result};
use berth_engine::backend::{CopyRequest, ExecRequest, HostEnd};
use berth_engine::{Backend, Container, Status};
use berth_watch::{
    ExecHook, Outcome, Progress, SyncFile, TargetError, Timing, WatchAction, WatchRule, WatchTarget,
};
use clap::{Args, FromArgMatches};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

#[derive(Args, Debug)]
pub struct WatchArgs {
    /// Services to watch (default: every service with `develop.watch`)
    services: Vec<String>,
    /// Don't build and start the services first; watch what runs
    #[arg(long)]
    no_up: bool,
    /// Quiet period that ends a burst of changes, in milliseconds
    #[arg(long, value_name = "MS", default_value_t = 100)]
    debounce: u64,
    /// Prune dangling images on rebuild: the image a rebuild replaced
    /// leaves berth's store (`--prune=false` keeps it)
    #[arg(long, value_name = "BOOL", default_value_t = true, num_args = 0..=1,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    prune: bool,
    /// Hide build output (a failed rebuild still shows it)
    #[arg(long)]
    quiet: bool,
}

/// How rebuilds go (`watch --prune`, `--quiet`).
#[derive(Debug, Clone, Copy, Default)]
struct RebuildOptions {
    prune: bool,
    quiet: bool,
}

/// `up`'s own flags, plus `--watch`.
#[derive(Args, Debug)]
pub struct UpWatchArgs {
    #[command(flatten)]
    up: crate::up_cmd::UpArgs,
    /// Watch the services' `develop.watch` paths while the project runs,
    /// syncing, rebuilding or restarting on changes
    #[arg(long)]
    watch: bool,
}

/// Arguments of another berth command, parsed as its command line would
/// be: watch drives `up`, `restart` and `exec` exactly as a user would.
fn parse_as<T: Args + FromArgMatches>(argv: &[&str]) -> Result<T> {
    // argv[0] stands for the command's name, as on a command line.
    let matches = T::augment_args(clap::Command::new("berth"))
        .try_get_matches_from(argv)
        .with_context(|| format!("internal arguments for {argv:?}"))?;
    Ok(T::from_arg_matches(&matches)?)
}

/// The rules of `services` (all with `develop.watch` when empty), checked
/// before anything is started.
fn load_rules(global: &GlobalArgs, services: &[String]) -> Result<(String, Vec<WatchRule>)> {
    let loaded = berth_compose::load(&load_options(global)?)?;
    let mut rules = berth_watch::loaded_rules(&loaded, services)?;
    // The container already sees every change through the bind mount;
    // syncing as well would only write the same bytes twice (docker
    // compose drops such a rule with the same warning).
    rules.retain(|rule| match &rule.bind_mounted {
        Some(source) => {
            eprintln!(
                "warning: {}: {} is bind-mounted into service {} from {}; this rule is not needed and is skipped",
                rule.key(),
                rule.path.display(),
                rule.service,
                source.display()
            );
            false
        }
        None => true,
    });
    if rules.is_empty() {
        bail!(
            "none of the {} has a develop.watch section to act on",
            if services.is_empty() {
                "services".to_string()
            } else {
                format!("services {}", services.join(", "))
            }
        );
    }
    for rule in &rules {
        // Checked here too (the watcher would), so that nothing is built
        // or started for a rule that cannot be watched.
        if !rule.path.exists() {
            bail!(
                "{}.path: {} does not exist",
                rule.key(),
                rule.path.display()
            );
        }
    }
    Ok((loaded.project.name.clone(), rules))
}

pub fn watch(global: &GlobalArgs, args: WatchArgs) -> Result<ExitCode> {
    let (project, rules) = load_rules(global, &args.services)?;
    if !args.no_up {
        let mut argv = vec!["up", "-d"];
        argv.extend(args.services.iter().map(String::as_str));
        let code = crate::up_cmd::up(global, parse_as(&argv)?)?;
        if code != ExitCode::SUCCESS {
            return Ok(code);
        }
    } else if !Running::new(global, &project)?.still() {
        bail!("project {project} is not running (drop --no-up to start it)");
    }
    install_client_signal_handlers();
    let timing = Timing {
        quiet: Duration::from_millis(args.debounce),
        ..Timing::default()
    };
    // A project taken down elsewhere (`berth down`) has nothing left to
    // sync into: watching ends with it.
    let running = Running::new(global, &project)?;
    let rebuilds = RebuildOptions {
        prune: args.prune,
        quiet: args.quiet,
    };
    watch_loop(global, &project, &rules, timing, rebuilds, &|| {
        interrupted() || !running.still()
    })?;
    if !interrupted() {
        eprintln!("{project} is no longer running; stopped watching");
    }
    Ok(ExitCode::SUCCESS)
}

/// Whether the project still runs, asked of its engine at most once a
/// second (the watch loop asks several times a second, and the Docker
/// engine answers over its API).
struct Running {
    backend: Box<dyn Backend>,
    project: String,
    last: std::cell::Cell<Option<(Instant, bool)>>,
}

impl Running {
    fn new(global: &GlobalArgs, project: &str) -> Result<Running> {
        Ok(Running {
            backend: crate::engine::backend(global)?,
            project: project.to_string(),
            last: std::cell::Cell::new(None),
        })
    }

    fn still(&self) -> bool {
        if let Some((at, answer)) = self.last.get() {
            if at.elapsed() < Duration::from_secs(1) {
                return answer;
            }
        }
        // An engine that cannot be asked right now is not taken for gone.
        let answer = !matches!(self.backend.observe(&self.project), Ok(None));
        self.last.set(Some((Instant::now(), answer)));
        answer
    }
}

/// Set when `up --watch`'s `up` failed.
static STOP_WATCH: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// `up`, and with `--watch` the watch loop beside it: started first so no
/// change made while `up` builds is lost, ended when `up` ends (attached:
/// Ctrl-C or every container exited) or, detached, at Ctrl-C.
pub fn up(global: &GlobalArgs, args: UpWatchArgs) -> Result<ExitCode> {
    if !args.watch {
        return crate::up_cmd::up(global, args.up);
    }
    let (project, rules) = load_rules(global, &[])?;
    // `up` installs them only on its way to the engine (not on its
    // nothing-to-do path), and Ctrl-C must end the watch loop, not the
    // process.
    install_client_signal_handlers();
    let up_done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (global, project, up_done) = (global.clone(), project.clone(), up_done.clone());
        std::thread::spawn(move || {
            let running = Running::new(&global, &project)?;
            let stop = || {
                interrupted()
                    || STOP_WATCH.load(std::sync::atomic::Ordering::SeqCst)
                    || (up_done.load(std::sync::atomic::Ordering::SeqCst) && !running.still())
            };
            // docker compose's `up --watch` has no --prune or --quiet.
            watch_loop(
                &global,
                &project,
                &rules,
                Timing::default(),
                RebuildOptions::default(),
                &stop,
            )
        })
    };
    let result = crate::up_cmd::up(global, args.up);
    up_done.store(true, std::sync::atomic::Ordering::SeqCst);
    let code = match result {
        Ok(code) if code == ExitCode::SUCCESS => code,
        // A failed `up`: nothing is watched past it.
        other => {
            STOP_WATCH.store(true, std::sync::atomic::Ordering::SeqCst);
            let _ = watcher.join();
            return other;
        }
    };
    if !interrupted() && Running::new(global, &project)?.still() {
        eprintln!("Watching for changes (Ctrl-C to stop; the project keeps running)");
    }
    match watcher.join() {
        Ok(Ok(())) => Ok(code),
        Ok(Err(e)) => Err(e),
        Err(_) => bail!("the watcher thread failed"),
    }
}

fn watch_loop(
    global: &GlobalArgs,
    project: &str,
    rules: &[WatchRule],
    timing: Timing,
    rebuilds: RebuildOptions,
    stop: &dyn Fn() -> bool,
) -> Result<()> {
    let mut target = CliTarget {
        global: global.clone(),
        project: project.to_string(),
        backend: crate::engine::backend(global)?,
        stop,
        rebuilds,
    };
    let describe: Vec<String> = rules
        .iter()
        .map(|r| {
            let to = r
                .target
                .as_deref()
                .map(|t| format!(" → {t}"))
                .unwrap_or_default();
            format!(
                "{}: {} {}{to}",
                r.service,
                r.action.as_str(),
                shown(&r.path)
            )
        })
        .collect();
    berth_watch::run(rules, &mut target, timing, stop, |p| match p {
        Progress::Watching { .. } => {
            eprintln!("Watching {}", describe.join("; "));
        }
        Progress::Changed { changed } => {
            let names: Vec<String> = changed.iter().take(3).map(|p| shown(p)).collect();
            let more = changed.len().saturating_sub(3);
            eprintln!(
                "Changed: {}{}",
                names.join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            );
        }
        Progress::Done(outcome) => report(outcome),
        Progress::Warning(w) => eprintln!("warning: watch: {w}"),
    })
    .map_err(anyhow::Error::from)
}

/// A host path as the user would type it: relative to the current
/// directory when below it (`./src`), else absolute.
fn shown(path: &std::path::Path) -> String {
    let cwd = std::env::current_dir().unwrap_or_default();
    match path.strip_prefix(&cwd) {
        Ok(rel) if rel.as_os_str().is_empty() => ".".to_string(),
        Ok(rel) => format!("./{}", rel.display()),
        Err(_) => path.display().to_string(),
    }
}

fn report(o: &Outcome) {
    let ms = o.elapsed.as_millis();
    let what = match &o.action {
        WatchAction::Sync {
            service,
            files,
            deletions,
        } => {
            let mut parts = Vec::new();
            if !files.is_empty() {
                parts.push(format!(
                    "{} file{}",
                    files.len(),
                    if files.len() == 1 { "" } else { "s" }
                ));
            }
            if !deletions.is_empty() {
                parts.push(format!(
                    "{} removal{}",
                    deletions.len(),
                    if deletions.len() == 1 { "" } else { "s" }
                ));
            }
            format!("Synced {} to {service}", parts.join(" and "))
        }
        WatchAction::Rebuild { service } => format!("Rebuilt {service}"),
        WatchAction::Restart { service } => format!("Restarted {service}"),
        WatchAction::Exec { service, exec } => {
            format!("Ran {:?} in {service}", exec.command.join(" "))
        }
    };
    match &o.result {
        Ok(()) => eprintln!("{what} in {ms} ms"),
        Err(e) => eprintln!(
            "error: watch: {} {}: {e}",
            action_verb(&o.action),
            o.action.service()
        ),
    }
}

fn action_verb(a: &WatchAction) -> &'static str {
    match a {
        WatchAction::Sync { .. } => "syncing to",
        WatchAction::Rebuild { .. } => "rebuilding",
        WatchAction::Restart { .. } => "restarting",
        WatchAction::Exec { .. } => "running the exec hook in",
    }
}

/// The running project, as berth's own commands reach it.
struct CliTarget<'a> {
    global: GlobalArgs,
    project: String,
    backend: Box<dyn Backend>,
    stop: &'a dyn Fn() -> bool,
    rebuilds: RebuildOptions,
}

impl CliTarget<'_> {
    /// The service's running containers. A service being recreated (a
    /// rebuild, a swap) has none for a moment, and under `up --watch` none
    /// yet: wait for one, up to a minute.
    fn running(&self, service: &str) -> Result<Vec<Container>, TargetError> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let containers: Vec<Container> = self
                .backend
                .observe(&self.project)?
                .map(|s| {
                    s.containers
                        .into_iter()
                        .filter(|c| c.service == service && c.status == Status::Running)
                        .filter(|c| !c.one_off)
                        .collect()
                })
                .unwrap_or_default();
            if !containers.is_empty() {
                return Ok(containers);
            }
            if Instant::now() > deadline || (self.stop)() {
                return Err(format!("service {service} has no running container").into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Through the engine, for a container not on this host: each file
    /// copied as `berth cp` copies it, deletions by `rm -rf` in the
    /// container (as docker compose does them).
    fn sync_through_engine(
        &self,
        container: &Container,
        files: &[SyncFile],
        deletions: &[String],
    ) -> Result<(), TargetError> {
        if !deletions.is_empty() {
            let mut command = vec!["rm".to_string(), "-rf".to_string(), "--".to_string()];
            command.extend(deletions.iter().cloned());
            let request = ExecRequest {
                container: container.clone(),
                command,
                user: None,
                workdir: None,
                env: Vec::new(),
                tty: false,
                privileged: false,
                detach: false,
            };
            let code = self.backend.exec(&self.project, &request)?;
            if code != 0 {
                return Err(format!("rm -rf in {} exited with code {code}", container.name).into());
            }
        }
        for file in files {
            let request = CopyRequest {
                container: container.clone(),
                path: file.container.clone(),
                host: HostEnd::Path(file.host.clone()),
                out: false,
            };
            self.backend.copy(&self.project, &request)?;
        }
        Ok(())
    }

    /// `berth` with this command's global flags, for a command whose
    /// stdin must not be ours.
    fn berth(&self) -> Result<std::process::Command, TargetError> {
        let mut cmd = std::process::Command::new(std::env::current_exe()?);
        for f in &self.global.file {
            cmd.arg("-f").arg(f);
        }
        if let Some(p) = &self.global.project_name {
            cmd.arg("-p").arg(p);
        }
        if let Some(d) = &self.global.project_directory {
            cmd.arg("--project-directory").arg(d);
        }
        for e in &self.global.env_file {
            cmd.arg("--env-file").arg(e);
        }
        for p in &self.global.profile {
            cmd.arg("--profile").arg(p);
        }
        if let Some(engine) = self.global.engine {
            if let Some(value) = clap::ValueEnum::to_possible_value(&engine) {
                cmd.arg("--engine").arg(value.get_name());
            }
        }
        Ok(cmd)
    }
}

impl CliTarget<'_> {
    /// The image `service` runs from in berth's store (where berth builds,
    /// for either engine) and its manifest, before a rebuild replaces it.
    fn image_of(
        &self,
        service: &str,
    ) -> Result<Option<(berth_oci::Store, berth_oci::Digest)>, TargetError> {
        let loaded = berth_compose::load(&load_options(&self.global)?)?;
        let Some(svc) = loaded.project.services.get(service) else {
            return Ok(None);
        };
        let name = crate::build_cmd::service_image(&loaded.project, service, svc)?.to_string();
        let store = crate::image_cmd::open_store()?;
        let digest = store.resolve(&name)?.map(|d| d.digest);
        Ok(digest.map(|d| (store, d)))
    }
}

impl WatchTarget for CliTarget<'_> {
    fn sync(
        &mut self,
        service: &str,
        files: &[SyncFile],
        deletions: &[String],
    ) -> Result<(), TargetError> {
        // Every container of a scaled service serves the code.
        for container in self.running(service)? {
            match container.pid {
                Some(pid) => {
                    let root = berth_watch::root_sync::open_root(std::path::Path::new(&format!(
                        "/proc/{pid}/root"
                    )))?;
                    berth_watch::root_sync::sync_in_root(&root, files, deletions)?;
                }
                None => self.sync_through_engine(&container, files, deletions)?,
            }
        }
        Ok(())
    }

    fn rebuild(&mut self, service: &str) -> Result<(), TargetError> {
        let replaced = if self.rebuilds.prune {
            self.image_of(service)?
        } else {
            None
        };
        // Not `--no-deps`: the services that mount the rebuilt one's
        // volumes (the seed's app) must move onto the new code volume.
        let argv = ["up", "-d", "--build", service];
        if self.rebuilds.quiet {
            // Its own process, so that its output can be held back and
            // shown only when it fails.
            let out = self.berth()?.args(argv).stdin(Stdio::null()).output()?;
            if !out.status.success() {
                eprint!("{}", String::from_utf8_lossy(&out.stderr));
                return Err(format!("up --build {service} failed").into());
            }
        } else {
            let code = crate::up_cmd::up(&self.global, parse_as(&argv)?)?;
            if code != ExitCode::SUCCESS {
                return Err(format!("up --build {service} failed").into());
            }
        }
        // The image the rebuild replaced dangles now (the same image, when
        // nothing changed, is still referenced and stays).
        if let Some((store, digest)) = replaced {
            store.prune(&[digest])?;
        }
        Ok(())
    }

    fn restart(&mut self, service: &str) -> Result<(), TargetError> {
        let code = crate::lifecycle_cmd::restart(&self.global, parse_as(&["restart", service])?)?;
        if code != ExitCode::SUCCESS {
            return Err(format!("restart {service} failed").into());
        }
        Ok(())
    }

    fn exec(&mut self, service: &str, hook: &ExecHook) -> Result<(), TargetError> {
        let mut cmd = self.berth()?;
        cmd.args(["exec", "-T"]);
        if let Some(u) = &hook.user {
            cmd.arg("-u").arg(u);
        }
        if let Some(w) = &hook.working_dir {
            cmd.arg("-w").arg(w);
        }
        if hook.privileged {
            cmd.arg("--privileged");
        }
        for (k, v) in &hook.environment {
            cmd.arg("-e").arg(format!("{k}={v}"));
        }
        cmd.arg(service).arg("--").args(&hook.command);
        // The hook's output is shown; its stdin is not the terminal's.
        let status = cmd.stdin(Stdio::null()).status()?;
        if !status.success() {
            return Err(format!(
                "{:?} exited with code {}",
                hook.command.join(" "),
                status.code().unwrap_or(-1)
            )
            .into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The command lines watch hands to `up` and `restart` at run time
    /// still parse: a renamed flag fails here, not at a user's first save.
    #[test]
    fn watch_drives_up_and_restart_with_arguments_they_accept() {
        parse_as::<crate::up_cmd::UpArgs>(&["up", "-d", "--build", "app"]).unwrap();
        parse_as::<crate::up_cmd::UpArgs>(&["up", "-d", "app", "web"]).unwrap();
        parse_as::<crate::lifecycle_cmd::StopArgs>(&["restart", "app"]).unwrap();
        let err = parse_as::<crate::lifecycle_cmd::StopArgs>(&["restart", "--bogus"]);
        assert!(err.is_err());
    }

    /// The hook's `berth exec` carries the user's global flags, so it
    /// reaches the same project on the same engine.
    #[test]
    fn the_hooks_exec_runs_on_the_same_project_and_engine() {
        let global = GlobalArgs {
            file: vec!["a.yaml".into(), "b.yaml".into()],
            project_name: Some("demo".into()),
            project_directory: Some("/src".into()),
            env_file: vec![".env.dev".into()],
            profile: vec!["debug".into()],
            ansi: crate::Ansi::Never,
            progress: crate::Progress::Plain,
            engine: Some(crate::engine::EngineKind::Docker),
        };
        let stop = || false;
        let target = CliTarget {
            global,
            project: "demo".into(),
            backend: Box::new(berth_engine_embedded::EmbeddedBackend::new()),
            stop: &stop,
            rebuilds: RebuildOptions::default(),
        };
        let cmd = target.berth().unwrap();
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "-f",
                "a.yaml",
                "-f",
                "b.yaml",
                "-p",
                "demo",
                "--project-directory",
                "/src",
                "--env-file",
                ".env.dev",
                "--profile",
                "debug",
                "--engine",
                "docker"
            ]
        );
    }
}
