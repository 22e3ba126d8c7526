//! `berth up`, attached: build or pull what is missing, run the project on
//! the embedded engine with `name | ` prefixed logs, and on Ctrl-C (or when
//! every container has exited) stop and remove what it made.

use crate::build_cmd::{build_service, service_image, BuildFlags, PullProgress, StoreOrPull};
use crate::image_cmd::open_store;
use crate::options::load_options;
use crate::GlobalArgs;
use anyhow::{Context, Result};
use berth_engine::embedded::{Embedded, LogSink};
use berth_oci::store::state_dir;
use berth_registry::{Client, PullOptions, Reference};
use clap::Args;
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Args, Debug)]
pub struct UpArgs {
    /// Detached: start the project under a supervisor and return
    #[arg(short = 'd', long)]
    detach: bool,
    /// Build images before starting containers
    #[arg(long)]
    build: bool,
    /// Don't build an image, even if it is missing
    #[arg(long, conflicts_with = "build")]
    no_build: bool,
    /// Seconds to wait for containers to stop on shutdown
    #[arg(short = 't', long, default_value_t = 10)]
    timeout: u64,
    /// Stop all containers if any container exits
    #[arg(long)]
    abort_on_container_exit: bool,
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// True once Ctrl-C or SIGTERM arrived.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
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

const COLOURS: &[&str] = &["36", "33", "32", "35", "34", "96", "93", "92", "95", "94"];

struct Prefixed {
    colour: bool,
    width: usize,
    colours: Mutex<BTreeMap<String, &'static str>>,
}

impl LogSink for Prefixed {
    fn line(&self, container: &str, line: &str) {
        let colour = {
            let mut map = self.colours.lock().unwrap_or_else(|e| e.into_inner());
            let n = map.len();
            *map.entry(container.to_string())
                .or_insert(COLOURS[n % COLOURS.len()])
        };
        let prefix = format!("{container:<width$} | ", width = self.width);
        let mut out = std::io::stdout().lock();
        let _ = if self.colour {
            writeln!(out, "\x1b[{colour}m{prefix}\x1b[0m{line}")
        } else {
            writeln!(out, "{prefix}{line}")
        };
    }
}

/// The store name of every service's image, which must be present.
pub fn image_names(loaded: &berth_compose::Loaded) -> Result<BTreeMap<String, String>> {
    let project = &loaded.project;
    let mut images = BTreeMap::new();
    for (name, svc) in &project.services {
        images.insert(name.clone(), service_image(project, name, svc)?.to_string());
    }
    Ok(images)
}

/// Build or pull what is missing (or everything buildable with `build`).
pub fn ensure_images(
    loaded: &berth_compose::Loaded,
    build: bool,
    no_build: bool,
) -> Result<BTreeMap<String, String>> {
    let project = &loaded.project;
    let store = open_store()?;
    let client = Client::from_env()?;
    let bases = StoreOrPull {
        client: &client,
        quiet: false,
    };
    let no_args = indexmap::IndexMap::new();
    for (name, svc) in &project.services {
        let image = service_image(project, name, svc)?;
        let present = store.resolve(&image.to_string())?.is_some();
        match &svc.build {
            Some(b) if build || (!present && !no_build) => {
                let flags = BuildFlags {
                    no_cache: false,
                    pull: false,
                    quiet: false,
                    cli_args: &no_args,
                };
                build_service(loaded, &store, &bases, name, svc, b, &flags)?;
            }
            _ if present => {}
            Some(_) => anyhow::bail!(
                "service {name:?}: image {} is missing and --no-build was given",
                image.familiar()
            ),
            None => {
                let r: Reference = image.to_string().parse()?;
                let progress = PullProgress::new(name, false);
                client
                    .pull(&store, &r, &PullOptions::default(), &progress)
                    .with_context(|| format!("pulling {} for service {name:?}", r.familiar()))?;
            }
        }
    }
    image_names(loaded)
}

pub fn up(global: &GlobalArgs, args: UpArgs) -> Result<ExitCode> {
    if args.detach {
        return crate::project_cmd::up_detached(global, args.build, args.no_build, args.timeout);
    }
    let loaded = berth_compose::load(&load_options(global)?)?;
    for w in &loaded.warnings {
        eprintln!("warning: {w}");
    }
    let project = &loaded.project;
    let images = ensure_images(&loaded, args.build, args.no_build)?;
    let store = open_store()?;

    install_signal_handlers();
    let width = project
        .services
        .keys()
        .map(|s| project.name.len() + s.len() + 3)
        .max()
        .unwrap_or(10);
    let sink = Arc::new(Prefixed {
        colour: std::io::stdout().is_terminal() && global.colour(),
        width,
        colours: Mutex::new(BTreeMap::new()),
    });
    let engine = Embedded::open(&state_dir(), store)?;
    let mut running = engine.up(project, &images, sink)?;
    let names: Vec<String> = running.containers().into_iter().map(|(_, n)| n).collect();
    eprintln!("Attaching to {}", names.join(", "));
    let mut code = 0;
    loop {
        for (name, status) in running.poll() {
            eprintln!("{name} exited with code {}", status.code());
            if args.abort_on_container_exit {
                code = status.code();
                INTERRUPTED.store(true, Ordering::SeqCst);
            }
        }
        if INTERRUPTED.load(Ordering::SeqCst) || !running.any_running() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("Stopping {}", project.name);
    running.down(Duration::from_secs(args.timeout))?;
    Ok(if code == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(code.clamp(1, 255) as u8)
    })
}
