//! `berth up`: build or pull what is missing, then hand the project to its
//! supervisor, which plans against what runs and applies the plan. Detached
//! (`-d`) it returns once the plan is applied; attached it shows the
//! containers' output with `name | ` prefixes and takes the project down
//! on Ctrl-C.

use crate::build_cmd::{build_service, service_image, BuildFlags, PullProgress, StoreOrPull};
use crate::image_cmd::open_store;
use crate::logs::{Follower, Printer};
use crate::options::load_options;
use crate::supervisor::{project_dir, read_state, send, LoadRequest, PlanFlags, Request};
use crate::{GlobalArgs, ListFormat};
use anyhow::{bail, Context, Result};
use berth_engine_embedded::RuntimeMount;
use berth_oci::store::state_dir;
use berth_registry::{Client, PullOptions, Reference};
use clap::{Args, ValueEnum};
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
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

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// True once Ctrl-C or SIGTERM arrived.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Set in a command a user runs (not the supervisor): a second Ctrl-C
/// leaves at once instead of waiting for a graceful stop.
static SECOND_EXITS: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    if INTERRUPTED.swap(true, Ordering::SeqCst) && SECOND_EXITS.load(Ordering::SeqCst) {
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(130) };
    }
}

/// [`install_signal_handlers`] for a user's command: as there, and a second
/// Ctrl-C exits at once (130).
pub fn install_client_signal_handlers() {
    SECOND_EXITS.store(true, Ordering::SeqCst);
    install_signal_handlers();
}

/// Ctrl-C and SIGTERM ask the loop below to stop the project; the handler
/// only sets a flag (nothing else is async-signal-safe).
pub fn install_signal_handlers() {
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
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
    let wanted: Vec<(&String, &serde_json::Value)> = loaded
        .project
        .services
        .iter()
        .filter_map(|(n, s)| s.extra.get("x-runtime").map(|v| (n, v)))
        .collect();
    if wanted.is_empty() {
        return Ok(out);
    }
    let runtimes = Runtimes::open(&state_dir()).context("opening the runtime store")?;
    let cache = runtimes.npm_cache_dir();
    std::fs::create_dir_all(&cache).with_context(|| format!("creating {}", cache.display()))?;
    let ca = std::path::Path::new("/etc/ssl/certs/ca-certificates.crt");
    for (service, value) in wanted {
        let text = value.as_str().with_context(|| {
            format!("services.{service}.x-runtime: must be a string like node@4.2.3")
        })?;
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
        let use_cache = loaded.project.services[service.as_str()]
            .extra
            .get("x-berth")
            .and_then(|x| x.get("npm_cache"))
            .and_then(|v| v.as_bool())
            .unwrap_or(true);
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
        let present = store.resolve(&image.to_string())?.is_some();
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
                let r: Reference = image.to_string().parse()?;
                let progress = PullProgress::new(name, false);
                client
                    .pull(&store, &r, &PullOptions::default(), &progress)
                    .with_context(|| format!("pulling {} for service {name:?}", r.familiar()))?;
                times.record(&image.to_string())?;
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
    let project = loaded.project.name.clone();
    let flags = args.flags()?;
    if let Some(s) = &args.exit_code_from {
        if !loaded.project.services.contains_key(s) {
            bail!("--exit-code-from {s}: no such service");
        }
    }
    let dir = project_dir(&project);
    let state = read_state(&dir);

    // The fast path: when the images are there and the plan is empty there
    // is nothing to build, pull or ask the supervisor.
    if args.detach && !args.build && !pulls_every_time(&loaded, args.pull) && !args.dry_run {
        if let Some(state) = &state {
            if let Ok(plan) = plan_against(&loaded, &state.observed, &flags) {
                if plan.is_noop() {
                    eprintln!(
                        "{project} is up to date (supervisor pid {})",
                        state.supervisor_pid
                    );
                    return Ok(ExitCode::SUCCESS);
                }
            }
        }
    }
    if args.dry_run {
        // Show what `up` would do; build and pull nothing.
        let observed = state.map(|s| s.observed).unwrap_or_default();
        let plan = plan_against(&loaded, &observed, &flags)?;
        if args.format == ListFormat::Json {
            println!("{}", serde_json::to_string_pretty(&plan)?);
        } else {
            print!("{plan}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    ensure_images(&loaded, args.build, args.no_build, args.pull)?;
    runtime_mounts(&loaded, true)?;

    install_client_signal_handlers();
    let detach = args.detach || args.wait;
    let follower = (!detach).then(|| Follower::new(&dir.join("logs"), &project, &[], true));
    let request = Request::Up {
        load: Box::new(LoadRequest::from(&options)),
        flags,
    };
    if let Err(e) = send(&project, &request, &|line| eprintln!(" {line}")) {
        if interrupted() {
            // Ctrl-C: the supervisor gave up and undid what it started.
            eprintln!("{}", crate::error_chain(&e));
            return Ok(ExitCode::from(130));
        }
        return Err(e);
    }
    if args.wait {
        wait_ready(&project, args.wait_timeout.map(Duration::from_secs))?;
    }
    let Some(mut follower) = follower else {
        return Ok(ExitCode::SUCCESS);
    };
    attached(global, &args, &project, &mut follower)
}

/// `--wait`: until every container runs (or completed successfully) and
/// every one with a healthcheck is healthy.
fn wait_ready(project: &str, timeout: Option<Duration>) -> Result<()> {
    let dir = project_dir(project);
    let deadline = timeout.map(|t| std::time::Instant::now() + t);
    loop {
        let state = read_state(&dir).with_context(|| format!("{project} is not running"))?;
        if let Some(c) = state
            .containers
            .iter()
            .find(|c| c.state == "exited" && c.exit_code != Some(0))
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
                c.state != "exited"
                    && (c.state != "running" || c.health.as_deref().is_some_and(|h| h != "healthy"))
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
    args: &UpArgs,
    project: &str,
    follower: &mut Follower,
) -> Result<ExitCode> {
    let dir = project_dir(project);
    let printer = Printer {
        colour: std::io::stdout().is_terminal() && global.colour(),
        ..Printer::default()
    };
    let abort = args.abort_on_container_exit || args.exit_code_from.is_some();
    let mut code = 0;
    let names: Vec<String> = read_state(&dir)
        .map(|s| s.containers.into_iter().map(|c| c.name).collect())
        .unwrap_or_default();
    eprintln!("Attaching to {}", names.join(", "));
    let mut reported: std::collections::BTreeSet<String> = Default::default();
    loop {
        follower.pump(&printer, None);
        if interrupted() {
            eprintln!("Gracefully stopping... (press Ctrl+C again to force)");
            break;
        }
        let Some(state) = read_state(&dir) else {
            break;
        };
        let mut stop = false;
        for c in &state.containers {
            if c.state == "exited" && reported.insert(c.name.clone()) {
                let exit = c.exit_code.unwrap_or(0);
                eprintln!("{} exited with code {exit}", c.name);
                match &args.exit_code_from {
                    Some(s) if *s == c.service => {
                        code = exit;
                        stop = true;
                    }
                    Some(_) => {}
                    None if abort => {
                        code = exit;
                        stop = true;
                    }
                    None => {}
                }
            }
        }
        if stop || !state.containers.iter().any(|c| c.state != "exited") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    follower.pump(&printer, None);
    eprintln!("Stopping {project}");
    send(
        project,
        &Request::Down {
            timeout_secs: args.timeout,
        },
        &|line| eprintln!("{line}"),
    )?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(if code == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(code.clamp(1, 255) as u8)
    })
}

/// The plan `up` would apply against `observed`, from the images in the
/// store (a service whose image is missing is left out of the digests).
pub fn plan_against(
    loaded: &berth_compose::Loaded,
    observed: &[berth_engine::ObservedContainer],
    flags: &PlanFlags,
) -> Result<berth_engine::Plan> {
    let store = open_store()?;
    let mut names = image_names(loaded)?;
    // A service whose image is missing is left out of the digests.
    names.retain(|_, name| store.image(name, &berth_oci::Platform::host()).is_ok());
    let runtimes = runtime_mounts(loaded, false)?;
    let images = berth_engine_embedded::service_images(&store, &names, &runtimes)?;
    let files = berth_engine::project_files::resolve(&loaded.project, &loaded.environment)?;
    let mut desired = berth_engine::Desired::new(&loaded.project).with_project_files(&files);
    for (service, image) in &images {
        desired = desired.with_image_digest(service, &image.digest);
    }
    Ok(berth_engine::plan(&desired, observed, &flags.into())?)
}
