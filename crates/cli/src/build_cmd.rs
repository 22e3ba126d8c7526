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
    /// An SSH agent for `RUN --mount=type=ssh` (repeatable): `default` (from
    /// $SSH_AUTH_SOCK) or `ID=SOCKET`
    #[arg(long = "ssh", value_name = "default|ID=SOCKET")]
    ssh: Vec<String>,
    /// An image whose build records answer steps as the build cache does
    /// (repeatable): local, or pulled from its registry (`IMAGE` or
    /// `type=registry,ref=IMAGE`); adds to the service's `build.cache_from`
    #[arg(long = "cache-from", value_name = "IMAGE")]
    cache_from: Vec<String>,
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

/// compose `build` keys berth's builder does not carry out: refused by
/// name before anything is built, never accepted and dropped.
const UNSUPPORTED_BUILD_KEYS: &[(&str, &str)] = &[
    ("cache_to", "the build cache is not exported"),
    ("entitlements", "RUN steps never get extra privileges"),
    ("privileged", "RUN steps are never privileged"),
    ("ulimits", "RUN steps get the default limits"),
    ("no_cache_filter", "use no_cache: true"),
    ("provenance", "no attestation is made"),
    ("sbom", "no attestation is made"),
];

fn check_build_keys(name: &str, b: &berth_compose::model::Build) -> Result<()> {
    for (key, why) in UNSUPPORTED_BUILD_KEYS {
        let Some(v) = b.extra.get(*key) else { continue };
        // Explicitly off is what berth does anyway.
        let off = matches!(v, serde_json::Value::Bool(false) | serde_json::Value::Null)
            || v.as_array().is_some_and(|a| a.is_empty())
            || v.as_object().is_some_and(|o| o.is_empty());
        if !off {
            bail!("services.{name}.build.{key}: not supported by berth's builder ({why})");
        }
    }
    if let Some(p) = b.extra.get("platforms") {
        let host = Platform::host();
        let host = format!("{}/{}", host.os, host.architecture);
        let items = p
            .as_array()
            .with_context(|| format!("services.{name}.build.platforms: must be a list"))?;
        for item in items {
            let text = item.as_str().unwrap_or_default();
            if text.trim_end_matches("/v1") != host {
                bail!("services.{name}.build.platforms: {text:?}: berth builds for this host's platform ({host}) only");
            }
        }
    }
    if let Some(i) = b.extra.get("isolation") {
        if i.as_str().is_some_and(|i| i != "default") {
            bail!("services.{name}.build.isolation: only \"default\" applies on Linux");
        }
    }
    Ok(())
}

/// compose `build.extra_hosts` (`host=ip`, `host:ip` or a mapping).
fn build_extra_hosts(name: &str, b: &berth_compose::model::Build) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    let key = || format!("services.{name}.build.extra_hosts");
    let check = |host: &str, ip: &str| -> Result<(String, String)> {
        let ip = ip.trim().trim_start_matches('[').trim_end_matches(']');
        ip.parse::<std::net::IpAddr>()
            .with_context(|| format!("{}: {host:?}: invalid address {ip:?}", key()))?;
        if host.is_empty() || host.contains(char::is_whitespace) {
            bail!("{}: invalid host name {host:?}", key());
        }
        Ok((host.to_string(), ip.to_string()))
    };
    match b.extra.get("extra_hosts") {
        None | Some(serde_json::Value::Null) => {}
        Some(serde_json::Value::Array(items)) => {
            for item in items {
                let text = item
                    .as_str()
                    .with_context(|| format!("{}: entries are strings", key()))?;
                let (host, ip) = text
                    .split_once('=')
                    .or_else(|| text.split_once(':'))
                    .with_context(|| format!("{}: {text:?} is not host=ip", key()))?;
                out.push(check(host, ip)?);
            }
        }
        Some(serde_json::Value::Object(map)) => {
            for (host, ip) in map {
                match ip {
                    serde_json::Value::Array(ips) => {
                        for ip in ips {
                            out.push(check(host, ip.as_str().unwrap_or_default())?);
                        }
                    }
                    other => out.push(check(host, other.as_str().unwrap_or_default())?),
                }
            }
        }
        Some(_) => bail!("{}: must be a list or a mapping", key()),
    }
    Ok(out)
}

/// `default` (the agent of $SSH_AUTH_SOCK) or `ID=SOCKET`: an agent's
/// socket for `RUN --mount=type=ssh`. A key file is refused: berth forwards
/// agents, it does not run one.
fn parse_ssh(text: &str) -> Result<(String, std::path::PathBuf)> {
    let (id, path) = match text.split_once('=') {
        Some((id, path)) => (id.trim().to_string(), path.trim().to_string()),
        None => {
            let sock = std::env::var("SSH_AUTH_SOCK")
                .ok()
                .filter(|s| !s.is_empty())
                .with_context(|| {
                    format!(
                        "{text}: SSH_AUTH_SOCK is not set (start ssh-agent, or give {text}=SOCKET)"
                    )
                })?;
            (text.trim().to_string(), sock)
        }
    };
    if id.is_empty() {
        bail!("an empty id");
    }
    let path = match path.strip_prefix("~/") {
        Some(rest) => {
            std::path::PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(rest)
        }
        None => std::path::PathBuf::from(path),
    };
    let meta = std::fs::metadata(&path).with_context(|| format!("{id}: {}", path.display()))?;
    use std::os::unix::fs::FileTypeExt;
    if !meta.file_type().is_socket() {
        bail!(
            "{id}: {} is not an agent socket (berth forwards ssh-agent sockets; ssh-add a key file to an agent)",
            path.display()
        );
    }
    Ok((id, path))
}

/// compose `build.ssh`: a list of `default` / `ID=SOCKET`, or a mapping.
fn compose_ssh(
    name: &str,
    b: &berth_compose::model::Build,
) -> Result<indexmap::IndexMap<String, std::path::PathBuf>> {
    let mut out = indexmap::IndexMap::new();
    let key = format!("services.{name}.build.ssh");
    let entries: Vec<String> = match b.extra.get("ssh") {
        None | Some(serde_json::Value::Null) => return Ok(out),
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .map(|i| i.as_str().map(str::to_string))
            .collect::<Option<_>>()
            .with_context(|| format!("{key}: entries are strings"))?,
        Some(serde_json::Value::Object(map)) => map
            .iter()
            .map(|(k, v)| match v.as_str() {
                Some(p) if !p.is_empty() => format!("{k}={p}"),
                _ => k.clone(),
            })
            .collect(),
        Some(_) => bail!("{key}: must be a list or a mapping"),
    };
    for e in entries {
        let (id, socket) = parse_ssh(&e).with_context(|| key.clone())?;
        out.insert(id, socket);
    }
    Ok(out)
}

/// compose `build.cache_from`: image references (`IMAGE` or
/// `type=registry,ref=IMAGE`); other cache sources are refused by name.
fn compose_cache_from(name: &str, b: &berth_compose::model::Build) -> Result<Vec<String>> {
    let key = format!("services.{name}.build.cache_from");
    let Some(v) = b.extra.get("cache_from") else {
        return Ok(Vec::new());
    };
    let items = v
        .as_array()
        .with_context(|| format!("{key}: must be a list"))?;
    let mut out = Vec::new();
    for item in items {
        let text = item
            .as_str()
            .with_context(|| format!("{key}: entries are strings"))?;
        out.push(parse_cache_from(text).with_context(|| key.clone())?);
    }
    Ok(out)
}

/// A cache source: `IMAGE` or `type=registry,ref=IMAGE`.
fn parse_cache_from(text: &str) -> Result<String> {
    if !text.contains('=') {
        return Ok(text.to_string());
    }
    let mut kind = None;
    let mut reference = None;
    for field in text.split(',') {
        match field.split_once('=') {
            Some(("type", t)) => kind = Some(t),
            Some(("ref", r)) => reference = Some(r),
            _ => {}
        }
    }
    match (kind, reference) {
        (Some("registry"), Some(r)) => Ok(r.to_string()),
        _ => bail!("{text:?}: berth reads image references (type=registry,ref=IMAGE) only"),
    }
}

/// What `berth build` takes on its command line beyond [`BuildFlags`]:
/// they add to (and for the same id win over) the service's own keys.
#[derive(Default)]
struct CliOnly {
    secrets: indexmap::IndexMap<String, SecretSource>,
    ssh: indexmap::IndexMap<String, std::path::PathBuf>,
    cache_from: Vec<String>,
}

/// compose `build.additional_contexts` (a mapping, or a list of
/// `name=value`): a directory (already made absolute by the loader),
/// `docker-image://REF`, or `service:OTHER` (OTHER's image; its name is
/// returned beside it so that OTHER is built first). Remote contexts (git,
/// https) and OCI layouts are refused by key path.
#[allow(clippy::type_complexity)]
fn compose_named_contexts(
    project: &Project,
    name: &str,
    b: &berth_compose::model::Build,
) -> Result<indexmap::IndexMap<String, (builder::NamedContext, Option<String>)>> {
    let key = format!("services.{name}.build.additional_contexts");
    let pairs: Vec<(String, String)> = match b.extra.get("additional_contexts") {
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(serde_json::Value::Object(map)) => map
            .iter()
            .map(|(k, v)| {
                v.as_str()
                    .map(|v| (k.clone(), v.to_string()))
                    .with_context(|| format!("{key}.{k}: must be a string"))
            })
            .collect::<Result<_>>()?,
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .and_then(|t| t.split_once('='))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .with_context(|| format!("{key}: entries are name=value"))
            })
            .collect::<Result<_>>()?,
        Some(_) => bail!("{key}: must be a mapping or a list"),
    };
    let mut out = indexmap::IndexMap::new();
    for (ctx, value) in pairs {
        let at = format!("{key}.{ctx}");
        if ctx.is_empty() || ctx.contains(char::is_whitespace) {
            bail!("{key}: invalid context name {ctx:?}");
        }
        let entry = if let Some(other) = value.strip_prefix("service:") {
            let osvc = project
                .services
                .get(other)
                .with_context(|| format!("{at}: no service {other:?} in the project"))?;
            let image = service_image(project, other, osvc)?;
            (
                builder::NamedContext::Image(image.to_string()),
                Some(other.to_string()),
            )
        } else if let Some(reference) = value.strip_prefix("docker-image://") {
            let r: Reference = reference
                .parse()
                .with_context(|| format!("{at}: invalid image reference {reference:?}"))?;
            (builder::NamedContext::Image(r.to_string()), None)
        } else if value.contains("://") || value.starts_with("git@") {
            bail!("{at}: {value:?}: berth reads local directories, docker-image:// and service: contexts only");
        } else {
            let dir = std::path::PathBuf::from(&value);
            if !dir.is_dir() {
                bail!("{at}: {value:?} is not a directory");
            }
            (builder::NamedContext::Dir(dir), None)
        };
        out.insert(ctx.to_lowercase(), entry);
    }
    Ok(out)
}

/// compose `build.shm_size`: bytes, or a size with a unit (`2g`, `512m`).
fn build_shm_size(name: &str, b: &berth_compose::model::Build) -> Result<Option<u64>> {
    let bad =
        |v: &serde_json::Value| anyhow::anyhow!("services.{name}.build.shm_size: invalid size {v}");
    match b.extra.get("shm_size") {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v @ serde_json::Value::Number(n)) => n
            .as_u64()
            .filter(|n| *n > 0)
            .map(Some)
            .ok_or_else(|| bad(v)),
        Some(v @ serde_json::Value::String(s)) => berth_compose::units::parse_bytes(s)
            .filter(|n| *n > 0)
            .map(Some)
            .ok_or_else(|| bad(v)),
        Some(v) => Err(bad(v)),
    }
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
    if svc.image.is_some() || svc.build.is_some() || svc.runtime().is_none() {
        return Ok(None);
    }
    if let Some(base) = svc.berth().base {
        return Ok(Some(base));
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

/// How `berth build` shows steps (the global `--progress`); `up --build`
/// leaves it at `Auto`.
static PROGRESS: std::sync::OnceLock<crate::Progress> = std::sync::OnceLock::new();

/// Lines of running `RUN` steps kept live on a terminal (shared among the
/// steps of stages running side by side, at least two each).
const LIVE_LINES: usize = 6;

/// Build progress on stderr. Plain: every step, every line of output, each
/// finished step's time. On a terminal, as BuildKit: below the finished
/// steps, a block of the running ones (stages run side by side), each with
/// its time so far and its last lines, redrawn in place; a step that ends
/// collapses into one line with its time above the block (a failure prints
/// the tail with the error anyway).
struct StepProgress {
    service: String,
    quiet: bool,
    tty: bool,
    state: Mutex<StepState>,
}

/// A step started and not finished.
struct Running {
    text: String,
    started: Instant,
    cached: bool,
    live: std::collections::VecDeque<String>,
}

#[derive(Default)]
struct StepState {
    /// By (stage, index): the order stages and their steps are shown in.
    running: std::collections::BTreeMap<(usize, usize), Running>,
    /// Lines of the live block drawn last, to erase on the next redraw.
    drawn: usize,
    last_draw: Option<Instant>,
}

impl StepProgress {
    fn new(service: &str, quiet: bool) -> StepProgress {
        let mode = PROGRESS.get().copied().unwrap_or(crate::Progress::Auto);
        let tty = match mode {
            crate::Progress::Tty => true,
            crate::Progress::Auto => std::io::stderr().is_terminal(),
            _ => false,
        };
        StepProgress {
            service: service.to_string(),
            quiet: quiet || mode == crate::Progress::Quiet,
            tty,
            state: Mutex::new(StepState::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, StepState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Close a running step: its time (plain), or its line with its time
    /// above the live block (terminal).
    fn finish(&self, st: &mut StepState, at: (usize, usize)) {
        let Some(step) = st.running.remove(&at) else {
            return;
        };
        let took = step.started.elapsed().as_secs_f64();
        if self.tty {
            let how = if step.cached {
                "CACHED".to_string()
            } else {
                format!("{took:.1}s")
            };
            erase(st.drawn);
            st.drawn = 0;
            eprintln!("{} | {} {how}", self.service, step.text);
            self.redraw(st);
        } else if !step.cached {
            // With stages side by side, which step is done.
            let which = match step.text.split_once("] ") {
                Some((id, _)) if !st.running.is_empty() => format!("{id}] "),
                _ => String::new(),
            };
            eprintln!("{} | {which}DONE {took:.1}s", self.service);
        }
    }

    /// The live block: each running step's line and time so far, and its
    /// last lines, dimmed.
    fn redraw(&self, st: &mut StepState) {
        erase(st.drawn);
        let share = (LIVE_LINES / st.running.len().max(1)).max(2);
        let mut out = String::new();
        let mut lines = 0;
        for step in st.running.values() {
            out.push_str(&format!(
                "{} | {} {:.1}s\n",
                self.service,
                step.text,
                step.started.elapsed().as_secs_f64()
            ));
            lines += 1;
            // Cut to the terminal's usual width so a line never wraps (a
            // wrapped line would throw off the erase).
            for l in step.live.iter().skip(step.live.len().saturating_sub(share)) {
                let l: String = l.chars().take(100).collect();
                out.push_str(&format!("\x1b[2m{} |   {l}\x1b[0m\n", self.service));
                lines += 1;
            }
        }
        eprint!("{out}");
        st.drawn = lines;
        st.last_draw = Some(Instant::now());
    }
}

/// Move up over `lines` lines just printed and clear them.
fn erase(lines: usize) {
    if lines == 0 {
        return;
    }
    let mut out = String::new();
    for _ in 0..lines {
        out.push_str("\x1b[1A\x1b[2K");
    }
    eprint!("{out}\r");
}

impl StepProgress {
    /// The build is over: steps still shown as running end here.
    fn done(&self) {
        if !self.quiet {
            let mut st = self.state();
            let open: Vec<(usize, usize)> = st.running.keys().copied().collect();
            for at in open {
                self.finish(&mut st, at);
            }
        }
    }
}

impl Drop for StepProgress {
    fn drop(&mut self) {
        // Ended by an error: the steps' lines and times stay, the error
        // (with the output's tail) follows.
        self.done();
    }
}

impl BuildProgress for StepProgress {
    fn step(&self, stage: usize, index: usize, total: usize, text: &str) {
        if self.quiet {
            return;
        }
        let mut st = self.state();
        // A stage's previous step is over when its next one starts.
        let before: Vec<(usize, usize)> = st
            .running
            .range((stage, 0)..(stage, index))
            .map(|(k, _)| *k)
            .collect();
        for at in before {
            self.finish(&mut st, at);
        }
        let text = format!("[stage {} {index}/{total}] {text}", stage + 1);
        if !self.tty {
            eprintln!("{} | {text}", self.service);
        }
        st.running.insert(
            (stage, index),
            Running {
                text,
                started: Instant::now(),
                cached: false,
                live: Default::default(),
            },
        );
        if self.tty {
            self.redraw(&mut st);
        }
    }

    fn cached(&self, stage: usize, index: usize) {
        if self.quiet {
            return;
        }
        let mut st = self.state();
        if let Some(step) = st.running.get_mut(&(stage, index)) {
            step.cached = true;
        }
        if !self.tty {
            eprintln!("{} | CACHED", self.service);
        }
    }

    fn finished(&self, stage: usize, index: usize) {
        if self.quiet {
            return;
        }
        let mut st = self.state();
        self.finish(&mut st, (stage, index));
    }

    fn note(&self, text: &str) {
        if self.quiet {
            return;
        }
        let mut st = self.state();
        if self.tty {
            erase(st.drawn);
            st.drawn = 0;
            eprintln!("{} | {text}", self.service);
            self.redraw(&mut st);
        } else {
            eprintln!("{} | {text}", self.service);
        }
    }

    fn output(&self, stage: usize, index: usize, line: &str) {
        if self.quiet {
            return;
        }
        let mut st = self.state();
        if !self.tty {
            // With stages side by side, whose line it is.
            let which = match st.running.get(&(stage, index)) {
                Some(step) if st.running.len() > 1 => step
                    .text
                    .split_once("] ")
                    .map(|(id, _)| format!("{id}] "))
                    .unwrap_or_default(),
                _ => String::new(),
            };
            eprintln!("{} |   {which}{line}", self.service);
            return;
        }
        if let Some(step) = st.running.get_mut(&(stage, index)) {
            if step.live.len() == LIVE_LINES {
                step.live.pop_front();
            }
            step.live.push_back(line.to_string());
        }
        // Redrawn at most 10 times a second: apt prints faster than that.
        if st
            .last_draw
            .is_none_or(|t| t.elapsed() >= std::time::Duration::from_millis(100))
        {
            self.redraw(&mut st);
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
    let _ = PROGRESS.set(global.progress);
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
    let mut cli = CliOnly::default();
    for text in &args.secret {
        let (id, source) = parse_secret(text)?;
        cli.secrets.insert(id, source);
    }
    for text in &args.ssh {
        let (id, socket) = parse_ssh(text).with_context(|| format!("--ssh {text:?}"))?;
        cli.ssh.insert(id, socket);
    }
    for text in &args.cache_from {
        cli.cache_from
            .push(parse_cache_from(text).context("--cache-from")?);
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
            quiet: args.quiet || global.progress == crate::Progress::Quiet,
            cli_args: &cli_args,
        };
        build_service_with(&loaded, &store, &bases, name, svc, b, &opts, &cli, &[])?;
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
    bases: &(dyn BaseImages + Sync),
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
        &CliOnly::default(),
        &[],
    )
}

/// [`build_service`] with what the command line adds ([`CliOnly`]);
/// `building` are the services waiting for this one (a `service:`
/// context), to refuse a cycle.
#[allow(clippy::too_many_arguments)]
fn build_service_with(
    loaded: &berth_compose::Loaded,
    store: &Store,
    bases: &(dyn BaseImages + Sync),
    name: &str,
    svc: &Service,
    b: &berth_compose::model::Build,
    flags: &BuildFlags,
    cli: &CliOnly,
    building: &[&str],
) -> Result<()> {
    let project = &loaded.project;
    check_build_keys(name, b)?;
    let named_contexts = compose_named_contexts(project, name, b)?;
    // A `service:OTHER` context is OTHER's image: built first (a cached
    // build of it costs milliseconds), as docker compose orders them.
    for other in named_contexts.values().filter_map(|(_, s)| s.as_ref()) {
        let other = other.as_str();
        if building.contains(&other) || other == name {
            bail!("services.{name}.build.additional_contexts: service:{other} leads back to {name} (a cycle)");
        }
        let osvc = &project.services[other];
        let Some(ob) = &osvc.build else {
            continue;
        };
        let mut chain = building.to_vec();
        chain.push(name);
        build_service_with(loaded, store, bases, other, osvc, ob, flags, cli, &chain)?;
    }
    let named_contexts = named_contexts
        .into_iter()
        .map(|(k, (c, _))| (k, c))
        .collect();
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
    secrets.extend(cli.secrets.clone());
    let mut ssh = compose_ssh(name, b)?;
    ssh.extend(cli.ssh.clone());
    let mut cache_from = compose_cache_from(name, b)?;
    cache_from.extend(cli.cache_from.iter().cloned());
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
        extra_hosts: build_extra_hosts(name, b)?,
        shm_size: build_shm_size(name, b)?,
        ssh,
        cache_from,
        named_contexts,
    };
    let started = Instant::now();
    let progress = StepProgress::new(name, flags.quiet);
    let built = crate::run_steps::with_runner(|runner| {
        builder::build_with(store, &req, bases, runner, &progress)
            .with_context(|| format!("building service {name:?}"))
    })?;
    progress.done();
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
