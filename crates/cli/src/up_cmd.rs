//! `berth up`: build or pull what is missing, then hand the project to its
//! supervisor, which plans against what runs and applies the plan. Detached
//! (`-d`) it returns once the plan is applied; attached it shows the
//! containers' output with `name | ` prefixes and takes the project down
//! on Ctrl-C.

use crate::build_cmd::{build_service, service_image, BuildFlags, PullProgress, StoreOrPull};
use crate::image_cmd::open_store;
use crate::logs::{Printer, Seen};
use crate::options::load_options;
use crate::{GlobalArgs, ListFormat};
use anyhow::{bail, Context, Result};
use berth_engine::backend::{
    DownOptions, LoadRequest, LogOptions, PlanFlags, RuntimeMount, UpRequest,
};
pub use berth_engine::interrupt::{install_client_signal_handlers, interrupted};
use berth_engine::{Backend, ErrorKind, Status};
use berth_oci::store::state_dir;
use berth_registry::Client;
use clap::{Args, ValueEnum};
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PullPolicy {
    /// Pull every image that has no build section
    Always,
    /// Pull what is missing (the default)
    Missing,
    /// Never pull; fail when an image is missing
    Never,
}

#[derive(Args, Debug)]
pub struct UpArgs {
    /// Services to start (default: all), with what they depend on
    services: Vec<String>,
    /// Detached: start the project under its supervisor and return
    #[arg(short = 'd', long)]
    detach: bool,
    /// Build images before starting containers
    #[arg(long)]
    build: bool,
    /// Don't build an image, even if it is missing
    #[arg(long, conflicts_with = "build")]
    no_build: bool,
    /// When to pull images (default: each service's `pull_policy`, else missing)
    #[arg(long, value_enum)]
    pull: Option<PullPolicy>,
    /// Don't start linked or depended-on services
    #[arg(long)]
    no_deps: bool,
    /// Recreate containers even if nothing changed
    #[arg(long, conflicts_with = "no_recreate")]
    force_recreate: bool,
    /// Keep existing containers even if their configuration changed
    #[arg(long)]
    no_recreate: bool,
    /// Also recreate the dependencies of recreated services
    #[arg(long)]
    always_recreate_deps: bool,
    /// Give recreated containers fresh anonymous volumes
    #[arg(short = 'V', long)]
    renew_anon_volumes: bool,
    /// Scale SERVICE to NUM containers (repeatable)
    #[arg(long, value_name = "SERVICE=NUM")]
    scale: Vec<String>,
    /// Remove containers of services that are no longer in the compose file
    #[arg(long)]
    remove_orphans: bool,
    /// Seconds to wait for containers to stop on shutdown (default: each
    /// service's `stop_grace_period`, else 10)
    #[arg(short = 't', long)]
    timeout: Option<u64>,
    /// Stop all containers if any container exits (attached only)
    #[arg(long, conflicts_with = "detach")]
    abort_on_container_exit: bool,
    /// Exit with the exit code of this service's container (implies --abort-on-container-exit)
    #[arg(long, value_name = "SERVICE", conflicts_with = "detach")]
    exit_code_from: Option<String>,
    /// Wait until services are running (healthy, when they have a healthcheck); implies -d
    #[arg(long, conflicts_with_all = ["abort_on_container_exit", "exit_code_from"])]
    wait: bool,
    /// Seconds to wait with --wait
    #[arg(long, value_name = "SECONDS", requires = "wait")]
    wait_timeout: Option<u64>,
    /// Show the plan, with the reason for every step, and change nothing
    #[arg(long)]
    dry_run: bool,
    /// Plan output format (with --dry-run)
    #[arg(long, value_enum, default_value_t = ListFormat::Table)]
    format: ListFormat,
}

impl UpArgs {
    fn flags(&self) -> Result<PlanFlags> {
        let mut scale = BTreeMap::new();
        for s in &self.scale {
            let (svc, n) = s
                .split_once('=')
                .with_context(|| format!("--scale {s:?}: expected SERVICE=NUM"))?;
            let n: u32 = n
                .parse()
                .with_context(|| format!("--scale {s:?}: {n:?} is not a number"))?;
            scale.insert(svc.to_string(), n);
        }
        Ok(PlanFlags {
            services: self.services.clone(),
            force_recreate: self.force_recreate,
            no_recreate: self.no_recreate,
            always_recreate_deps: self.always_recreate_deps,
            renew_anon_volumes: self.renew_anon_volumes,
            no_deps: self.no_deps,
            scale,
            remove_orphans: self.remove_orphans,
        })
    }
}

/// The store name of every service's image, which must be present
/// (for a service with only an `x-runtime`, its base image).
pub fn image_names(loaded: &berth_compose::Loaded) -> Result<BTreeMap<String, String>> {
    let project = &loaded.project;
    let mut images = BTreeMap::new();
    for (name, svc) in &project.services {
        images.insert(name.clone(), service_image(project, name, svc)?.to_string());
    }
    Ok(images)
}

/// The runtime of every service with `x-runtime`, resolved, verified and
/// in the store. `install`: fetch what is missing (with progress on
/// stderr); otherwise a runtime not yet installed is left out.
pub fn runtime_mounts(
    loaded: &berth_compose::Loaded,
    install: bool,
) -> Result<BTreeMap<String, RuntimeMount>> {
    use berth_runtimes::{RuntimeSpec, Runtimes, VersionReq};
    let mut out = BTreeMap::new();
    let wanted: Vec<(&String, &str)> = loaded
        .project
        .services
        .iter()
        .filter_map(|(n, s)| s.runtime().map(|v| (n, v)))
        .collect();
    if wanted.is_empty() {
        return Ok(out);
    }
    let runtimes = Runtimes::open(&state_dir()).context("opening the runtime store")?;
    let cache = runtimes.npm_cache_dir();
    std::fs::create_dir_all(&cache).with_context(|| format!("creating {}", cache.display()))?;
    let ca = std::path::Path::new("/etc/ssl/certs/ca-certificates.crt");
    for (service, text) in wanted {
        let spec: RuntimeSpec = text
            .parse()
            .with_context(|| format!("services.{service}.x-runtime"))?;
        let installed = match (&spec.req, install) {
            // An exact version needs no index when it is installed.
            (VersionReq::Exact(v), false) => runtimes.find_installed(spec.kind, v)?,
            (_, false) => match runtimes.resolve(&spec) {
                Ok(r) => runtimes.find_installed(r.kind, &r.version)?,
                Err(_) => None,
            },
            (_, true) => {
                let resolved = runtimes
                    .resolve(&spec)
                    .with_context(|| format!("services.{service}.x-runtime: {text}"))?;
                let mut progress = crate::runtime_cmd::progress_printer();
                let r = runtimes
                    .ensure(&resolved, &mut progress)
                    .with_context(|| format!("service {service:?}: installing {text}"))?;
                Some(r)
            }
        };
        // `x-berth: {npm_cache: false}` opts a service out of the shared cache.
        let use_cache = loaded.project.services[service.as_str()].berth().npm_cache;
        if let Some(r) = installed {
            out.insert(
                service.clone(),
                RuntimeMount {
                    root: r.root.clone(),
                    digest: r.digest.clone(),
                    npm_cache: use_cache.then(|| cache.clone()),
                    ca_bundle: ca.is_file().then(|| ca.to_path_buf()),
                },
            );
        }
    }
    Ok(out)
}

/// Build or pull what each service's `pull_policy` asks (what is missing,
/// by default), or what `pull` says over all of them; everything buildable
/// with `build`.
pub fn ensure_images(
    backend: &dyn Backend,
    loaded: &berth_compose::Loaded,
    build: bool,
    no_build: bool,
    pull: Option<PullPolicy>,
) -> Result<BTreeMap<String, String>> {
    use crate::pull_policy::{self, Policy};
    let project = &loaded.project;
    let store = open_store()?;
    let client = Client::from_env()?;
    let bases = StoreOrPull {
        client: &client,
        quiet: false,
    };
    let mut times = pull_policy::PullTimes::open(&state_dir());
    let no_args = indexmap::IndexMap::new();
    for (name, svc) in &project.services {
        let image = service_image(project, name, svc)?;
        let present = backend.has_image(&image.to_string())?;
        let policy = match pull {
            Some(PullPolicy::Always) => Policy::Always,
            Some(PullPolicy::Missing) => Policy::Missing,
            Some(PullPolicy::Never) => Policy::Never,
            None => pull_policy::of_service(name, svc)?,
        };
        let pull_now = match policy {
            Policy::Always => true,
            Policy::Every(every) => !present || times.due(&image.to_string(), every),
            Policy::Missing | Policy::Build => !present,
            Policy::Never => false,
        };
        match &svc.build {
            Some(b) if build || policy == Policy::Build || (!present && !no_build) => {
                let flags = BuildFlags {
                    no_cache: false,
                    pull: false,
                    quiet: false,
                    cli_args: &no_args,
                };
                build_service(loaded, &store, &bases, name, svc, b, &flags)?;
                let label = format!("{name} | ");
                backend.import_image(&store, &image.to_string(), &|line| {
                    eprintln!("{label}{line}")
                })?;
            }
            _ if !pull_now && present => {}
            None if policy == Policy::Never => anyhow::bail!(
                "service {name:?}: image {} is missing and its pull policy is never",
                image.familiar()
            ),
            Some(_) if !present => anyhow::bail!(
                "service {name:?}: image {} is missing and --no-build was given",
                image.familiar()
            ),
            Some(_) => {}
            None => {
                let label = format!("{name} | ");
                let reference = image.to_string();
                let progress = |line: &str| eprintln!("{label}{line}");
                if let Err(e) = backend.pull_image(&reference, &progress) {
                    // A daemon that cannot reach the registry (this machine
                    // reaches quay.io only through berth's mirrors) gets the
                    // image from berth's own client, mirrors and all. The
                    // embedded engine's pull already is that client.
                    let what = || format!("pulling {} for service {name:?}", image.familiar());
                    if backend.name() == "embedded" {
                        return Err(e).with_context(what);
                    }
                    let r: berth_registry::Reference = reference.parse()?;
                    let pull = PullProgress::new(name, false);
                    if let Err(ours) = client.pull(&store, &r, &Default::default(), &pull) {
                        // The engine's own errors name it ("the swarm
                        // engine does not support …"); others get its name.
                        let engine = format!("the {} engine", backend.name());
                        let theirs = if e.message.contains(&engine) {
                            e.message.clone()
                        } else {
                            format!("{engine}: {}", e.message)
                        };
                        bail!("{}: {theirs}; berth: {ours}", what());
                    }
                    backend.import_image(&store, &reference, &progress)?;
                }
                times.record(&reference)?;
            }
        }
    }
    image_names(loaded)
}

/// Whether some service's images must be looked at on every `up`
/// (`pull_policy: always|build|daily|…`), so the no-change fast path
/// cannot skip that.
fn pulls_every_time(loaded: &berth_compose::Loaded, pull: Option<PullPolicy>) -> bool {
    use crate::pull_policy::{of_service, Policy};
    if pull == Some(PullPolicy::Always) {
        return true;
    }
    pull.is_none()
        && loaded
            .project
            .services
            .iter()
            .any(|(n, s)| !matches!(of_service(n, s), Ok(Policy::Missing) | Ok(Policy::Never)))
}

pub fn up(global: &GlobalArgs, args: UpArgs) -> Result<ExitCode> {
    let options = load_options(global)?;
    let loaded = berth_compose::load(&options)?;
    for w in &loaded.warnings {
        eprintln!("warning: {w}");
    }
    let flags = args.flags()?;
    let backend = crate::engine::backend(global)?;
    let backend = backend.as_ref();
    let project = loaded.project.name.clone();
    if let Some(s) = &args.exit_code_from {
        if !loaded.project.services.contains_key(s) {
            bail!("--exit-code-from {s}: no such service");
        }
    }
    let load = LoadRequest::from(&options);
    let names = image_names(&loaded)?;
    let request = |runtimes| UpRequest {
        load: &load,
        loaded: &loaded,
        images: &names,
        runtimes,
        flags: &flags,
    };
    let known = if args.dry_run || args.detach {
        runtime_mounts(&loaded, false)?
    } else {
        BTreeMap::new()
    };

    // The fast path: when the images are there and the plan is empty there
    // is nothing to build, pull or ask the engine.
    if args.detach && !args.build && !pulls_every_time(&loaded, args.pull) && !args.dry_run {
        if let Some(status) = backend.observe(&project)? {
            if let Ok(plan) = backend.plan(&request(&known)) {
                if plan.is_noop() {
                    eprintln!("{project} is up to date ({})", status.keeper);
                    return Ok(ExitCode::SUCCESS);
                }
            }
        }
    }
    if args.dry_run {
        // Show what `up` would do; build and pull nothing.
        let skipped = berth_compose::coverage::not_applied(&loaded.project);
        if !skipped.is_empty() {
            eprintln!("not applied: {}", skipped.join(", "));
        }
        let plan = backend.plan(&request(&known))?;
        if args.format == ListFormat::Json {
            println!("{}", serde_json::to_string_pretty(&plan)?);
        } else {
            print!("{plan}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    ensure_images(backend, &loaded, args.build, args.no_build, args.pull)?;
    let runtimes = runtime_mounts(&loaded, true)?;
    let request = UpRequest {
        runtimes: &runtimes,
        ..request(&known)
    };

    install_client_signal_handlers();
    let detach = args.detach || args.wait;
    // Attached, the output shown starts with what the containers write
    // while `up` starts them.
    let since = berth_engine::time::timestamp_now();
    if let Err(e) = backend.up(&request, &|line| eprintln!(" {line}")) {
        if interrupted() || e.kind == ErrorKind::Interrupted {
            // Ctrl-C: the engine gave up and undid what it started.
            eprintln!("{e}");
            return Ok(ExitCode::from(130));
        }
        return Err(e.into());
    }
    if args.wait {
        wait_ready(
            backend,
            &project,
            args.wait_timeout.map(Duration::from_secs),
        )?;
    }
    if detach {
        return Ok(ExitCode::SUCCESS);
    }
    attached(global, backend, &args, &loaded.project, since)
}

/// `--wait`: until every container runs (or completed successfully) and
/// every one with a healthcheck is healthy.
fn wait_ready(backend: &dyn Backend, project: &str, timeout: Option<Duration>) -> Result<()> {
    let deadline = timeout.map(|t| std::time::Instant::now() + t);
    loop {
        let state = backend
            .observe(project)?
            .with_context(|| format!("{project} is not running"))?;
        if let Some(c) = state
            .containers
            .iter()
            .find(|c| c.status == Status::Exited && c.exit_code != Some(0))
        {
            bail!(
                "container {} exited with code {}",
                c.name,
                c.exit_code.unwrap_or(-1)
            );
        }
        let pending: Vec<&str> = state
            .containers
            .iter()
            .filter(|c| {
                c.status != Status::Exited
                    && (c.status != Status::Running
                        || c.health
                            .is_some_and(|h| h != berth_engine::backend::Health::Healthy))
            })
            .map(|c| c.name.as_str())
            .collect();
        if pending.is_empty() {
            return Ok(());
        }
        if deadline.is_some_and(|d| std::time::Instant::now() > d) {
            bail!("timed out waiting for {}", pending.join(", "));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Attached: show the containers' output until Ctrl-C, until every
/// container exited, or (`--abort-on-container-exit`) until one did; then
/// take the project down.
fn attached(
    global: &GlobalArgs,
    backend: &dyn Backend,
    args: &UpArgs,
    project: &berth_compose::Project,
    since: String,
) -> Result<ExitCode> {
    let name = project.name.as_str();
    let printer = Printer {
        colour: std::io::stdout().is_terminal() && global.colour(),
        ..Printer::default()
    };
    let abort = args.abort_on_container_exit || args.exit_code_from.is_some();
    // `attach: false`: the service runs (and its exit still counts) but its
    // output is not shown, as docker compose does; `logs` still has it.
    let detached_services: std::collections::BTreeSet<&str> = project
        .services
        .iter()
        .filter(|(_, s)| s.extra.get("attach").and_then(|a| a.as_bool()) == Some(false))
        .map(|(n, _)| n.as_str())
        .collect();
    let names: Vec<String> = backend
        .observe(name)?
        .map(|s| {
            s.containers
                .into_iter()
                .filter(|c| !detached_services.contains(c.service.as_str()))
                .map(|c| c.name)
                .collect()
        })
        .unwrap_or_default();
    eprintln!("Attaching to {}", names.join(", "));
    let mut seen = Seen::with_names(names.iter().map(String::as_str));
    let code = std::cell::Cell::new(0);
    let reported = std::cell::RefCell::new(std::collections::BTreeSet::<String>::new());
    let last_check = std::cell::Cell::new(std::time::Instant::now());
    // Checked between batches of output: Ctrl-C, exits.
    let stop = || {
        if interrupted() {
            eprintln!("Gracefully stopping... (press Ctrl+C again to force)");
            return true;
        }
        if last_check.get().elapsed() < Duration::from_millis(50) {
            return false;
        }
        last_check.set(std::time::Instant::now());
        let Ok(Some(state)) = backend.observe(name) else {
            return true;
        };
        let mut stop = false;
        for c in &state.containers {
            if c.status == Status::Exited && reported.borrow_mut().insert(c.name.clone()) {
                let exit = c.exit_code.unwrap_or(0);
                eprintln!("{} exited with code {exit}", c.name);
                match &args.exit_code_from {
                    Some(s) if *s == c.service => {
                        code.set(exit);
                        stop = true;
                    }
                    Some(_) => {}
                    None if abort => {
                        code.set(exit);
                        stop = true;
                    }
                    None => {}
                }
            }
        }
        stop || !state.containers.iter().any(|c| c.status != Status::Exited)
    };
    let options = LogOptions {
        follow: true,
        since: Some(since),
        ..LogOptions::default()
    };
    backend.logs(
        name,
        &options,
        &mut |line| {
            if !detached_services.contains(line.service.as_str()) {
                printer.print(&mut seen, &line);
            }
        },
        &stop,
    )?;
    eprintln!("Stopping {name}");
    let down = DownOptions {
        timeout_secs: args.timeout,
        volumes: false,
    };
    backend.down(project, &down, &|line| eprintln!("{line}"))?;
    let code = code.get();
    Ok(if code == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(code.clamp(1, 255) as u8)
    })
}
