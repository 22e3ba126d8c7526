//! `berth build`, `berth pull`, `berth push` for a project's services.

use crate::image_cmd::{human_size, open_store};
use crate::options::load_options;
use crate::GlobalArgs;
use anyhow::{bail, Context, Result};
use berth_compose::model::Service;
use berth_compose::Project;
use berth_image::builder::{
    self, BaseImages, BuildProgress, BuildRequest, DockerfileSource, SecretSource,
};
use berth_oci::{Digest, Platform, Store};
use berth_registry::{Client, Progress, PullOptions, Reference};
use clap::Args;
use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Instant;

#[derive(Args, Debug)]
pub struct BuildArgs {
    /// Services to build (default: every service with a `build:` section)
    services: Vec<String>,
    /// Don't use the build cache
    #[arg(long)]
    no_cache: bool,
    /// Always pull base images, even when the store has them
    #[arg(long)]
    pull: bool,
    /// Set a build-time variable (repeatable), `NAME=VALUE` or `NAME` (from the environment)
    #[arg(long = "build-arg", value_name = "NAME[=VALUE]")]
    build_arg: Vec<String>,
    /// A secret for `RUN --mount=type=secret` (repeatable): `id=NAME,src=FILE` or
    /// `id=NAME,env=VAR`; its bytes never reach the image, the cache or the log
    #[arg(long = "secret", value_name = "id=NAME,src=FILE|env=VAR")]
    secret: Vec<String>,
    /// Print nothing but errors
    #[arg(short, long)]
    quiet: bool,
}

/// `--secret id=NAME,src=FILE|env=VAR` (as docker build; `source=` and
/// `type=file|env` are accepted too, and `env` alone names both).
fn parse_secret(text: &str) -> Result<(String, SecretSource)> {
    let mut id = None;
    let mut src = None;
    let mut env = None;
    let mut kind = None;
    for field in text.split(',') {
        let (k, v) = field
            .split_once('=')
            .with_context(|| format!("--secret {text:?}: {field:?} is not key=value"))?;
        match k.trim() {
            "id" => id = Some(v.to_string()),
            "src" | "source" => src = Some(v.to_string()),
            "env" => env = Some(v.to_string()),
            "type" => kind = Some(v.to_string()),
            other => bail!("--secret {text:?}: unknown key {other:?}"),
        }
    }
    let source = match (src, env, kind.as_deref()) {
        (Some(s), None, None | Some("file")) => SecretSource::File(s.into()),
        (Some(s), None, Some("env")) => SecretSource::Env(s),
        (None, Some(e), None | Some("env")) => SecretSource::Env(e),
        (None, None, _) => match &id {
            Some(i) => SecretSource::Env(i.clone()),
            None => bail!("--secret {text:?}: needs id= and src= or env="),
        },
        _ => bail!("--secret {text:?}: give either src= or env="),
    };
    let id = match (id, &source) {
        (Some(i), _) => i,
        (None, SecretSource::Env(e)) => e.clone(),
        (None, SecretSource::File(_)) => bail!("--secret {text:?}: needs id="),
    };
    Ok((id, source))
}

/// `build.secrets` of a service, from the project's top-level `secrets:`
/// (`file:` or `environment:`); the id a Dockerfile mounts is the secret's
/// name, or `target` in the long form.
fn compose_secrets(
    project: &Project,
    name: &str,
    b: &berth_compose::model::Build,
) -> Result<indexmap::IndexMap<String, SecretSource>> {
    let mut out = indexmap::IndexMap::new();
    let Some(list) = b.extra.get("secrets") else {
        return Ok(out);
    };
    let items = list
        .as_array()
        .with_context(|| format!("services.{name}.build.secrets: must be a list"))?;
    for item in items {
        let (source, id) = match item {
            serde_json::Value::String(s) => (s.clone(), s.clone()),
            serde_json::Value::Object(o) => {
                let source = o.get("source").and_then(|v| v.as_str()).with_context(|| {
                    format!("services.{name}.build.secrets: an entry without source")
                })?;
                let id = o.get("target").and_then(|v| v.as_str()).unwrap_or(source);
                (source.to_string(), id.to_string())
            }
            _ => bail!("services.{name}.build.secrets: entries are names or {{source, target}}"),
        };
        let def = project.secrets.get(&source).with_context(|| {
            format!("services.{name}.build.secrets: secret {source:?} is not defined under the top-level secrets")
        })?;
        let from = if let Some(f) = def.get("file").and_then(|v| v.as_str()) {
            SecretSource::File(f.into())
        } else if let Some(e) = def.get("environment").and_then(|v| v.as_str()) {
            SecretSource::Env(e.to_string())
        } else {
            bail!("secrets.{source}: berth builds read secrets from `file:` or `environment:`");
        };
        out.insert(id, from);
    }
    Ok(out)
}

#[derive(Args, Debug)]
pub struct PullArgs {
    /// Services whose images to pull (default: all with an `image:`)
    services: Vec<String>,
    /// Continue with the other services when one fails
    #[arg(long)]
    ignore_pull_failures: bool,
    /// Print nothing but errors
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Args, Debug)]
pub struct PushArgs {
    /// Services whose images to push (default: all that have an `image:` and are built)
    services: Vec<String>,
    /// Continue with the other services when one fails
    #[arg(long)]
    ignore_push_failures: bool,
}

/// The image name a service runs: `image:`, or `<project>-<service>` for
/// build-only services (docker compose v2's naming), normalized.
pub fn service_image(project: &Project, name: &str, svc: &Service) -> Result<Reference> {
    if let Some(base) = runtime_base(svc)? {
        return base.parse::<Reference>().with_context(|| {
            format!("services.{name}.x-berth.base: invalid image reference {base:?}")
        });
    }
    let raw = svc
        .image
        .clone()
        .unwrap_or_else(|| format!("{}-{}", project.name, name));
    raw.parse::<Reference>()
        .with_context(|| format!("services.{name}.image: invalid image reference {raw:?}"))
}

/// The base image of a service that names only an `x-runtime`: the runtime
/// is mounted over a real image, never over the host's root (whose every
/// file, other projects' volumes and `/etc/shadow` included, the container
/// could then read). `x-berth: {base: IMAGE}`, else `BERTH_BASE_IMAGE`, else
/// `base_image` under `[runtimes]` in berth's config file, else
/// `debian:bookworm-slim`. `None` for a service with an image or a build.
pub fn runtime_base(svc: &Service) -> Result<Option<String>> {
    if svc.image.is_some() || svc.build.is_some() || !svc.extra.contains_key("x-runtime") {
        return Ok(None);
    }
    if let Some(base) = svc.extra.get("x-berth").and_then(|x| x.get("base")) {
        let base = base
            .as_str()
            .context("x-berth.base: must be an image reference")?;
        return Ok(Some(base.to_string()));
    }
    if let Some(base) = std::env::var("BERTH_BASE_IMAGE")
        .ok()
        .filter(|b| !b.is_empty())
    {
        return Ok(Some(base));
    }
    let path = berth_registry::RegistryConfig::default_path();
    if let Ok(text) = std::fs::read_to_string(&path) {
        let doc: toml::Table =
            toml::from_str(&text).with_context(|| format!("reading {}", path.display()))?;
        if let Some(base) = doc
            .get("runtimes")
            .and_then(|r| r.get("base_image"))
            .and_then(|b| b.as_str())
        {
            return Ok(Some(base.to_string()));
        }
    }
    Ok(Some(DEFAULT_RUNTIME_BASE.to_string()))
}

/// What an `x-runtime` service runs on when nothing else is said.
pub const DEFAULT_RUNTIME_BASE: &str = "debian:bookworm-slim";

fn selected<'p>(project: &'p Project, wanted: &[String]) -> Result<Vec<(&'p String, &'p Service)>> {
    for w in wanted {
        if !project.services.contains_key(w) {
            bail!("no such service: {w}");
        }
    }
    Ok(project
        .services
        .iter()
        .filter(|(n, _)| wanted.is_empty() || wanted.contains(n))
        .collect())
}

/// Lines on stderr; on a terminal the current layer's byte count updates in place.
pub struct PullProgress {
    label: String,
    tty: bool,
    quiet: bool,
    bytes: Mutex<HashMap<Digest, (u64, u64)>>,
}

impl PullProgress {
    pub fn new(label: &str, quiet: bool) -> PullProgress {
        PullProgress {
            label: label.to_string(),
            tty: std::io::stderr().is_terminal(),
            quiet,
            bytes: Mutex::new(HashMap::new()),
        }
    }

    fn line(&self, text: &str) {
        if !self.quiet {
            eprintln!("{} | {text}", self.label);
        }
    }
}

impl Progress for PullProgress {
    fn on_layer_start(&self, digest: &Digest, size: u64) {
        if let Ok(mut b) = self.bytes.lock() {
            b.insert(digest.clone(), (0, size));
        }
    }

    fn on_bytes(&self, digest: &Digest, n: u64) {
        let Ok(mut b) = self.bytes.lock() else { return };
        let Some(entry) = b.get_mut(digest) else {
            return;
        };
        entry.0 += n;
        if self.tty && !self.quiet {
            let (done, total) = b
                .values()
                .fold((0, 0), |acc, (d, t)| (acc.0 + d, acc.1 + t));
            eprint!(
                "\r{} | downloading {} / {}   ",
                self.label,
                human_size(done),
                human_size(total)
            );
            let _ = std::io::stderr().flush();
        }
    }

    fn on_layer_restart(&self, digest: &Digest) {
        if let Ok(mut b) = self.bytes.lock() {
            if let Some(e) = b.get_mut(digest) {
                e.0 = 0;
            }
        }
    }

    fn on_layer_done(&self, digest: &Digest, cached: bool) {
        if self.tty && !self.quiet {
            eprint!("\r");
        }
        let size = self
            .bytes
            .lock()
            .ok()
            .and_then(|b| b.get(digest).map(|e| e.1))
            .unwrap_or(0);
        let what = if cached { "already present" } else { "done" };
        self.line(&format!(
            "layer {} {} ({what})",
            digest.short(),
            human_size(size)
        ));
    }
}

/// Base images: from the store, or pulled (through mirrors) when missing.
pub struct StoreOrPull<'c> {
    pub client: &'c Client,
    pub quiet: bool,
}

impl BaseImages for StoreOrPull<'_> {
    fn ensure(
        &self,
        store: &Store,
        reference: &str,
        pull: bool,
        platform: &Platform,
    ) -> std::result::Result<String, String> {
        let r: Reference = reference.parse().map_err(|e| format!("{e}"))?;
        let name = r.to_string();
        if !pull && store.resolve(&name).ok().flatten().is_some() {
            return Ok(name);
        }
        let progress = PullProgress::new(&r.familiar(), self.quiet);
        let opts = PullOptions {
            platform: Some(platform.clone()),
            ..Default::default()
        };
        self.client
            .pull(store, &r, &opts, &progress)
            .map(|_| name)
            .map_err(|e| e.to_string())
    }
}

struct StepProgress {
    service: String,
    quiet: bool,
}

impl BuildProgress for StepProgress {
    fn step(&self, stage: usize, index: usize, total: usize, text: &str) {
        if !self.quiet {
            eprintln!(
                "{} | [stage {} {index}/{total}] {text}",
                self.service,
                stage + 1
            );
        }
    }

    fn cached(&self, _stage: usize, _index: usize) {
        if !self.quiet {
            eprintln!("{} | CACHED", self.service);
        }
    }

    fn note(&self, text: &str) {
        if !self.quiet {
            eprintln!("{} | {text}", self.service);
        }
    }

    fn output(&self, _stage: usize, _index: usize, line: &str) {
        if !self.quiet {
            eprintln!("{} |   {line}", self.service);
        }
    }

    fn cancelled(&self) -> bool {
        crate::up_cmd::interrupted()
    }
}

pub fn build(global: &GlobalArgs, args: BuildArgs) -> Result<ExitCode> {
    // Ctrl-C stops the build between steps or kills the running `RUN`,
    // leaving no container or mount; a second one exits at once.
    crate::up_cmd::install_client_signal_handlers();
    let loaded = berth_compose::load(&load_options(global)?)?;
    let project = &loaded.project;
    let store = open_store()?;
    let client = Client::from_env()?;
    let bases = StoreOrPull {
        client: &client,
        quiet: args.quiet,
    };
    let mut cli_args = indexmap::IndexMap::new();
    for a in &args.build_arg {
        match a.split_once('=') {
            Some((k, v)) => {
                cli_args.insert(k.to_string(), v.to_string());
            }
            None => {
                if let Some(v) = loaded.environment.get(a) {
                    cli_args.insert(a.clone(), v.clone());
                }
            }
        }
    }
    let mut secrets = indexmap::IndexMap::new();
    for text in &args.secret {
        let (id, source) = parse_secret(text)?;
        secrets.insert(id, source);
    }
    let services = selected(project, &args.services)?;
    let mut built_any = false;
    for (name, svc) in services {
        let Some(b) = &svc.build else {
            if !args.services.is_empty() {
                eprintln!("{name} | has no build section; skipped");
            }
            continue;
        };
        built_any = true;
        let opts = BuildFlags {
            no_cache: args.no_cache,
            pull: args.pull,
            quiet: args.quiet,
            cli_args: &cli_args,
        };
        build_service_with(&loaded, &store, &bases, name, svc, b, &opts, &secrets)?;
    }
    if !built_any && args.services.is_empty() && !args.quiet {
        eprintln!("no service has a build section");
    }
    Ok(ExitCode::SUCCESS)
}

/// Flags `build` and `up --build` share.
pub struct BuildFlags<'a> {
    pub no_cache: bool,
    pub pull: bool,
    pub quiet: bool,
    pub cli_args: &'a indexmap::IndexMap<String, String>,
}

/// Build one service's image into the store, tagged with its image name.
pub fn build_service(
    loaded: &berth_compose::Loaded,
    store: &Store,
    bases: &dyn BaseImages,
    name: &str,
    svc: &Service,
    b: &berth_compose::model::Build,
    flags: &BuildFlags,
) -> Result<()> {
    build_service_with(
        loaded,
        store,
        bases,
        name,
        svc,
        b,
        flags,
        &indexmap::IndexMap::new(),
    )
}

/// [`build_service`] with `--secret`s given on the command line (they
/// win over the service's `build.secrets` of the same id).
#[allow(clippy::too_many_arguments)]
fn build_service_with(
    loaded: &berth_compose::Loaded,
    store: &Store,
    bases: &dyn BaseImages,
    name: &str,
    svc: &Service,
    b: &berth_compose::model::Build,
    flags: &BuildFlags,
    cli_secrets: &indexmap::IndexMap<String, SecretSource>,
) -> Result<()> {
    let project = &loaded.project;
    let image = service_image(project, name, svc)?;
    let mut tags = vec![image.to_string()];
    for t in &b.tags {
        let r: Reference = t
            .parse()
            .with_context(|| format!("services.{name}.build.tags: invalid tag {t:?}"))?;
        tags.push(r.to_string());
    }
    // compose build.args: a key without a value takes it from the environment.
    let mut build_args = indexmap::IndexMap::new();
    for (k, v) in &b.args {
        match v {
            Some(v) => {
                build_args.insert(k.clone(), v.clone());
            }
            None => {
                if let Some(v) = loaded.environment.get(k) {
                    build_args.insert(k.clone(), v.clone());
                }
            }
        }
    }
    build_args.extend(flags.cli_args.clone());
    let mut secrets = compose_secrets(project, name, b)?;
    secrets.extend(cli_secrets.clone());
    let labels = b
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone().unwrap_or_default()))
        .collect();
    let req = BuildRequest {
        context: b.context.clone().into(),
        dockerfile: match (&b.dockerfile_inline, &b.dockerfile) {
            (Some(inline), _) => DockerfileSource::Inline(inline.clone()),
            (None, Some(f)) => DockerfileSource::Path(f.into()),
            (None, None) => DockerfileSource::Path("Dockerfile".into()),
        },
        build_args,
        target: b.target.clone(),
        labels,
        tags,
        no_cache: flags.no_cache || b.no_cache == Some(true),
        pull: flags.pull || b.pull == Some(true),
        platform: Platform::host(),
        secrets,
        network: b
            .extra
            .get("network")
            .and_then(|n| n.as_str())
            .map(str::to_string),
    };
    let started = Instant::now();
    let progress = StepProgress {
        service: name.to_string(),
        quiet: flags.quiet,
    };
    // Ctrl-C (once handlers are installed) stops the running step and
    // removes its container and mounts.
    let runner = berth_sandbox::BuildRunner::new(berth_oci::store::state_dir().join("sandbox"))
        .with_interrupt(crate::up_cmd::interrupted);
    let built = builder::build_with(store, &req, bases, &runner, &progress)
        .with_context(|| format!("building service {name:?}"))?;
    if !flags.quiet {
        eprintln!(
            "{name} | built {} as {} in {:.2}s ({} of {} steps cached)",
            built.manifest.digest.short(),
            image.familiar(),
            started.elapsed().as_secs_f64(),
            built.cached_steps,
            built.steps
        );
    }
    Ok(())
}

pub fn pull(global: &GlobalArgs, args: PullArgs) -> Result<ExitCode> {
    let loaded = berth_compose::load(&load_options(global)?)?;
    let project = &loaded.project;
    let store = open_store()?;
    let client = Client::from_env()?;
    let mut failed = false;
    for (name, svc) in selected(project, &args.services)? {
        let Some(image) = &svc.image else { continue };
        // A service that builds its image is not pulled (docker compose skips it too).
        if svc.build.is_some() {
            continue;
        }
        let r: Reference = image
            .parse()
            .with_context(|| format!("services.{name}.image: invalid reference {image:?}"))?;
        let progress = PullProgress::new(name, args.quiet);
        let opts = PullOptions::default();
        match client.pull(&store, &r, &opts, &progress) {
            Ok(p) => {
                if !args.quiet {
                    eprintln!(
                        "{name} | pulled {} ({}) from {}",
                        r.familiar(),
                        p.digest(),
                        p.source
                    );
                }
            }
            Err(e) if args.ignore_pull_failures => {
                eprintln!("{name} | error: {e}");
                failed = true;
            }
            Err(e) => {
                return Err(anyhow::Error::new(e)
                    .context(format!("pulling {} for service {name:?}", r.familiar())))
            }
        }
    }
    let _ = failed;
    Ok(ExitCode::SUCCESS)
}

pub fn push(global: &GlobalArgs, args: PushArgs) -> Result<ExitCode> {
    let loaded = berth_compose::load(&load_options(global)?)?;
    let project = &loaded.project;
    let store = open_store()?;
    let client = Client::from_env()?;
    for (name, svc) in selected(project, &args.services)? {
        if svc.image.is_none() {
            continue;
        }
        let r = service_image(project, name, svc)?;
        if store.resolve(&r.to_string())?.is_none() {
            if args.services.contains(name) {
                bail!(
                    "service {name:?}: image {} is not in the store; build or pull it first",
                    r.familiar()
                );
            }
            continue;
        }
        let progress = PullProgress::new(name, false);
        match client.push(&store, &r, &progress) {
            Ok(p) => eprintln!("{name} | pushed {} ({})", r.familiar(), p.digest),
            Err(e) if args.ignore_push_failures => eprintln!("{name} | error: {e}"),
            Err(e) => {
                return Err(anyhow::Error::new(e)
                    .context(format!("pushing {} for service {name:?}", r.familiar())))
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `berth builder …`: the build cache.
#[derive(clap::Subcommand, Debug)]
pub enum BuilderCommand {
    /// Remove the build cache: every `RUN --mount=type=cache` directory not
    /// in use by a running build, and the step records (every step runs again)
    Prune,
}

pub fn builder(cmd: BuilderCommand) -> Result<ExitCode> {
    match cmd {
        BuilderCommand::Prune => {
            let store = open_store()?;
            let r = berth_image::cache_mount::prune(store.root())?;
            let mut line = format!(
                "Deleted {} cache mount(s) and {} step record(s), reclaimed {}",
                r.cache_mounts,
                r.step_records,
                human_size(r.bytes)
            );
            if r.in_use > 0 {
                line.push_str(&format!(
                    "; {} cache mount(s) in use by a running build kept",
                    r.in_use
                ));
            }
            println!("{line}");
            Ok(ExitCode::SUCCESS)
        }
    }
}
