//! The Dockerfile builder: stages → layers and an image config in the store.
//!
//! Every step's result is identified by a cache key chained from the step
//! before it (base image, the instruction after expansion, and for
//! `COPY`/`ADD` the digest of exactly the files it reads), so an unchanged
//! step reuses its layer and says `CACHED`. The config carries no wall-clock
//! time (`created` is `SOURCE_DATE_EPOCH` or the epoch), so an unchanged
//! build gives an unchanged image digest.

use crate::context::{self, Entry, EntryKind, Exclude};
use crate::copy::{self, image_path};
use crate::layer::{layer_mtime, Layer, LayerBuilder, LayerError, Owner};
use berth_dockerfile::{expand, expand_words, Command, Healthcheck, Instruction, ShellOrExec};
use berth_oci::digest::HashingWriter;
use berth_oci::spec::{History, ImageConfig, RootFs};
use berth_oci::store::StoreError;
use berth_oci::{media, Descriptor, Digest, ImageManifest, Platform, Store};
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

mod run;

pub(crate) use run::copy_tree;

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{file}: {source}")]
    Parse {
        file: String,
        #[source]
        source: Box<berth_dockerfile::ParseError>,
    },
    /// An instruction that cannot be carried out, with where it is.
    #[error("{file}:{line}: {instruction}: {message}")]
    Step {
        file: String,
        line: usize,
        instruction: String,
        message: String,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Layer(#[from] LayerError),
    #[error(transparent)]
    Context(#[from] context::ContextError),
    #[error("base image {reference}: {message}")]
    Base { reference: String, message: String },
    #[error("target stage {0:?} not found in the Dockerfile")]
    NoTarget(String),
    #[error("{0}")]
    Ignore(String),
    #[error("the build was interrupted")]
    Interrupted,
}

type Result<T> = std::result::Result<T, BuildError>;

pub enum DockerfileSource {
    /// A path (relative paths are relative to the context).
    Path(PathBuf),
    Inline(String),
}

pub struct BuildRequest {
    pub context: PathBuf,
    pub dockerfile: DockerfileSource,
    pub build_args: IndexMap<String, String>,
    pub target: Option<String>,
    pub labels: IndexMap<String, String>,
    /// Full references to tag the result with.
    pub tags: Vec<String>,
    pub no_cache: bool,
    /// Pull base images even when the store has them.
    pub pull: bool,
    pub platform: Platform,
    /// Secrets `RUN --mount=type=secret` may mount, by id.
    pub secrets: IndexMap<String, SecretSource>,
    /// The network of `RUN` steps without `--network` (compose
    /// `build.network`): `default`, `host` or `none`.
    pub network: Option<String>,
    /// `/etc/hosts` entries of `RUN` steps (compose `build.extra_hosts`):
    /// host name and address.
    pub extra_hosts: Vec<(String, String)>,
    /// The size of `RUN` steps' `/dev/shm` (compose `build.shm_size`).
    pub shm_size: Option<u64>,
    /// Images whose build records answer steps as the cache does (compose
    /// `build.cache_from`): local, or pulled like a base image.
    pub cache_from: Vec<String>,
    /// SSH agent sockets `RUN --mount=type=ssh` may forward, by id
    /// (`--ssh default=$SSH_AUTH_SOCK`, compose `build.ssh`).
    pub ssh: IndexMap<String, PathBuf>,
    /// Named contexts (`--build-context`, compose `build.additional_contexts`),
    /// by lower-case name: `FROM name`, `COPY --from=name` and
    /// `RUN --mount=from=name` read them when no stage of the Dockerfile
    /// has that name.
    pub named_contexts: IndexMap<String, NamedContext>,
}

/// What a named context is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamedContext {
    /// A local directory: its files (after its own `.dockerignore`), as a
    /// one-layer image whose layer is made once per build.
    Dir(PathBuf),
    /// An image reference, found in the store or pulled like a base image.
    Image(String),
}

/// Where a build secret's bytes come from (`--secret id=…,src=…|env=…`).
/// They are read when a step mounts the secret and never reach a layer,
/// the cache key, the image config or the build log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    File(PathBuf),
    Env(String),
}

/// The network a `RUN` step gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunNetwork {
    /// Outbound access as containers have it (the runner documents how).
    Default,
    /// Only a loopback interface.
    None,
    /// The host's network namespace.
    Host,
}

/// A filesystem a `RUN` step sees at `target`, besides its rootfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunMount {
    pub target: String,
    pub kind: RunMountKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunMountKind {
    Bind { source: PathBuf, read_only: bool },
    Tmpfs { size: Option<u64> },
}

/// One `RUN` step for a [`RunSteps`] to execute.
#[derive(Debug, Clone)]
pub struct RunStep {
    /// The stage's layers so far (blob and diff ID), bottom first.
    pub layers: Vec<(Descriptor, Digest)>,
    pub argv: Vec<String>,
    /// `KEY=VALUE`: the stage's ENV and the ARGs in scope.
    pub env: Vec<String>,
    pub user: Option<String>,
    /// Absolute.
    pub workdir: String,
    pub network: RunNetwork,
    pub mounts: Vec<RunMount>,
}

/// How a `RUN` step's command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    /// It exited 0 and `commit` was given its changes.
    Committed,
    /// It exited with this code (128 + the signal if killed).
    Failed { code: i32 },
}

pub type RunError = Box<dyn std::error::Error + Send + Sync>;

/// What executes `RUN` steps: a container on the stage's filesystem.
pub trait RunSteps {
    /// Run `step`, streaming its output lines to `output`. On success, call
    /// `commit` with the directory holding the step's changes in overlayfs
    /// format (see [`crate::diff`]) before anything of the step is removed;
    /// it returns the new layer's diff ID when that directory is exactly
    /// the layer unpacked, so the runner may keep it as the layer's
    /// directory instead of unpacking the layer again. Whatever happens,
    /// nothing else of the step (container, mount, scratch file) is left
    /// once this returns.
    fn run(
        &self,
        store: &Store,
        step: &RunStep,
        output: &mut dyn FnMut(&str),
        commit: &mut dyn FnMut(&Path) -> std::result::Result<Option<Digest>, RunError>,
    ) -> std::result::Result<RunOutcome, RunError>;
}

/// For builds without a container runtime: `RUN` is an error.
pub struct NoRun;

impl RunSteps for NoRun {
    fn run(
        &self,
        _: &Store,
        _: &RunStep,
        _: &mut dyn FnMut(&str),
        _: &mut dyn FnMut(&Path) -> std::result::Result<Option<Digest>, RunError>,
    ) -> std::result::Result<RunOutcome, RunError> {
        Err("this build has no container runtime to execute RUN with".into())
    }
}

/// Where base images come from: the store, or a registry on demand.
pub trait BaseImages {
    /// Make `reference` available in the store; return the name it is stored under.
    fn ensure(
        &self,
        store: &Store,
        reference: &str,
        pull: bool,
        platform: &Platform,
    ) -> std::result::Result<String, String>;
}

/// What the user sees while building.
pub trait BuildProgress {
    fn step(&self, stage: usize, index: usize, total: usize, text: &str);
    fn cached(&self, stage: usize, index: usize);
    /// The step ended well (its stage goes on, or is built).
    fn finished(&self, _stage: usize, _index: usize) {}
    fn note(&self, text: &str);
    /// A line of a running `RUN` step's output.
    fn output(&self, _stage: usize, _index: usize, _line: &str) {}
    /// The user asked to stop (Ctrl-C): no further step starts.
    fn cancelled(&self) -> bool {
        false
    }
}

/// Prints nothing (tests, `--progress quiet`).
pub struct Silent;

impl BuildProgress for Silent {
    fn step(&self, _: usize, _: usize, _: usize, _: &str) {}
    fn cached(&self, _: usize, _: usize) {}
    fn note(&self, _: &str) {}
}

#[derive(Debug, Clone)]
pub struct Built {
    pub manifest: Descriptor,
    pub config_digest: Digest,
    /// Steps answered from the cache / steps run.
    pub cached_steps: usize,
    pub steps: usize,
}

/// A finished step of the cache: the layer it produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CacheEntry {
    layer: Descriptor,
}

#[derive(Clone)]
struct StageState {
    config: ImageConfig,
    layers: Vec<Descriptor>,
    key: Digest,
    /// ARGs declared in this stage, with their values.
    args: Vec<(String, String)>,
    /// CMD came from the base image (an ENTRYPOINT then clears it).
    cmd_inherited: bool,
    /// The key of each step that made a layer of this stage, and the layer's index.
    records: Vec<(Digest, usize)>,
    /// False for a stage the build does not need (or has not built yet):
    /// it only keeps the stage indexes of the others right.
    built: bool,
}

impl StageState {
    fn placeholder() -> StageState {
        StageState {
            config: ImageConfig::default(),
            layers: Vec::new(),
            key: Digest::of(b""),
            args: Vec::new(),
            cmd_inherited: false,
            records: Vec::new(),
            built: false,
        }
    }

    fn env_pairs(&self) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = self.args.clone();
        for e in self.config.config.env.iter().flatten() {
            if let Some((k, v)) = e.split_once('=') {
                env.push((k.to_string(), v.to_string()));
            }
        }
        env
    }

    fn set_env(&mut self, key: &str, value: &str) {
        let env = self.config.config.env.get_or_insert_with(Vec::new);
        let entry = format!("{key}={value}");
        match env
            .iter_mut()
            .find(|e| e.split_once('=').map(|(k, _)| k) == Some(key))
        {
            Some(e) => *e = entry,
            None => env.push(entry),
        }
    }

    fn workdir(&self) -> String {
        self.config
            .config
            .working_dir
            .clone()
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".into())
    }
}

fn chain(prev: &Digest, parts: &[&str]) -> Digest {
    let mut w = HashingWriter::new(io::sink());
    let _ = write!(w, "{}", prev.as_str());
    for p in parts {
        let _ = write!(w, "\0{}:{p}", p.len());
    }
    w.finish().1
}

/// `.dockerignore` of the context as an [`Exclude`].
struct IgnoreFile(berth_dockerignore::DockerIgnore);

impl IgnoreFile {
    fn load(context: &Path, dockerfile: Option<&Path>) -> Result<IgnoreFile> {
        let loaded = match dockerfile {
            // `<Dockerfile>.dockerignore` beside a custom Dockerfile wins, as in docker.
            Some(df) => berth_dockerignore::DockerIgnore::for_dockerfile(context, df),
            None => berth_dockerignore::DockerIgnore::from_context_dir(context),
        };
        loaded
            .map(IgnoreFile)
            .map_err(|e| BuildError::Ignore(e.to_string()))
    }
}

impl Exclude for IgnoreFile {
    fn excluded(&self, rel: &str, is_dir: bool) -> bool {
        self.0.is_excluded(rel, is_dir)
    }

    fn can_skip_dir(&self, rel: &str) -> bool {
        self.0.can_skip_dir(rel)
    }
}

struct Builder<'a> {
    store: &'a Store,
    req: &'a BuildRequest,
    bases: &'a (dyn BaseImages + Sync),
    runner: &'a (dyn RunSteps + Sync),
    progress: &'a (dyn BuildProgress + Sync),
    file: String,
    escape: char,
    context_entries: Option<Vec<Entry>>,
    file_hashes: HashMap<PathBuf, Digest>,
    cache_dir: PathBuf,
    /// Filesystems of stages and images read by `COPY --from`, by key.
    stage_dirs: HashMap<Digest, ScratchDir>,
    cached_steps: usize,
    steps: usize,
    /// Step keys → layers, from the images of `cache_from`.
    imported: HashMap<Digest, Layer>,
    /// The layers of named contexts that are directories, by name.
    context_layers: HashMap<String, Layer>,
}

/// Where a built image's config records which step made which layer, so
/// that a build naming it in `cache_from` can reuse its layers (as
/// BuildKit's inline cache): `[{"key": "sha256:…", "layer": index}]`.
const CACHE_RECORDS: &str = "berth.build.cache";

/// A stage as later stages see it: its `AS` name and its state.
type Named = (Option<String>, StageState);

/// A directory removed when the build ends, however it ends.
struct ScratchDir(PathBuf);

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// [`build_with`] without a container runtime: `RUN` fails.
pub fn build(
    store: &Store,
    req: &BuildRequest,
    bases: &(dyn BaseImages + Sync),
    progress: &(dyn BuildProgress + Sync),
) -> Result<Built> {
    build_with(store, req, bases, &NoRun, progress)
}

/// Build `req` into `store`, executing `RUN` steps with `runner`.
pub fn build_with(
    store: &Store,
    req: &BuildRequest,
    bases: &(dyn BaseImages + Sync),
    runner: &(dyn RunSteps + Sync),
    progress: &(dyn BuildProgress + Sync),
) -> Result<Built> {
    let (text, file) = match &req.dockerfile {
        DockerfileSource::Inline(t) => (t.clone(), "Dockerfile (inline)".to_string()),
        DockerfileSource::Path(p) => {
            let path = if p.is_absolute() {
                p.clone()
            } else {
                req.context.join(p)
            };
            let text = std::fs::read_to_string(&path).map_err(|source| BuildError::Io {
                path: path.clone(),
                source,
            })?;
            (text, path.display().to_string())
        }
    };
    let dockerfile = berth_dockerfile::parse(&text).map_err(|source| BuildError::Parse {
        file: file.clone(),
        source: Box::new(source),
    })?;
    if let Some(syntax) = dockerfile.syntax() {
        // A frontend image would come from Docker Hub; the built-in one
        // knows what berth builds.
        progress.note(&format!(
            "# syntax={syntax} ignored: berth's built-in Dockerfile frontend is used"
        ));
    }
    let cache_dir = store.root().join("build-cache");
    std::fs::create_dir_all(&cache_dir).map_err(|source| BuildError::Io {
        path: cache_dir.clone(),
        source,
    })?;
    let mut b = Builder {
        store,
        req,
        bases,
        runner,
        progress,
        file,
        escape: dockerfile.escape(),
        context_entries: None,
        file_hashes: HashMap::new(),
        cache_dir,
        stage_dirs: HashMap::new(),
        cached_steps: 0,
        steps: 0,
        imported: HashMap::new(),
        context_layers: HashMap::new(),
    };
    for reference in &req.cache_from {
        if let Err(message) = b.import_cache(reference) {
            // As BuildKit: a cache source that cannot be read is a note,
            // the build goes on without it.
            progress.note(&format!("cache_from {reference}: {message}; not used"));
        }
    }

    // Global ARGs: defaults overridden by --build-arg; usable in FROM lines.
    // BuildKit's automatic platform ARGs, usable in FROM lines.
    let p = &req.platform;
    let platform_text = match &p.variant {
        Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
        None => format!("{}/{}", p.os, p.architecture),
    };
    let mut global: Vec<(String, String)> = vec![
        ("TARGETPLATFORM".into(), platform_text.clone()),
        ("TARGETOS".into(), p.os.clone()),
        ("TARGETARCH".into(), p.architecture.clone()),
        (
            "TARGETVARIANT".into(),
            p.variant.clone().unwrap_or_default(),
        ),
        ("BUILDPLATFORM".into(), platform_text),
        ("BUILDOS".into(), p.os.clone()),
        ("BUILDARCH".into(), p.architecture.clone()),
    ];
    for (name, default) in dockerfile.global_arg_pairs() {
        let value = match req.build_args.get(&name) {
            Some(v) => Some(v.clone()),
            None => default.map(|d| expand(&d, &global, b.escape).unwrap_or(d)),
        };
        if let Some(v) = value {
            global.push((name, v));
        }
    }

    let last = match &req.target {
        Some(t) => dockerfile
            .stages
            .iter()
            .position(|s| s.name.as_deref() == Some(&t.to_lowercase()))
            .ok_or_else(|| BuildError::NoTarget(t.clone()))?,
        None => dockerfile.stages.len().saturating_sub(1),
    };
    let stages = &dockerfile.stages[..(last + 1).min(dockerfile.stages.len())];
    let deps = stage_deps(stages, &global, b.escape);
    // Only what the target needs: a stage nothing needs is never built,
    // and its base image never fetched.
    let mut needed = vec![false; stages.len()];
    let mut todo = vec![last];
    while let Some(i) = todo.pop() {
        if i < needed.len() && !needed[i] {
            needed[i] = true;
            todo.extend(deps[i].iter().copied());
        }
    }
    let mut built: Vec<Option<StageState>> = vec![None; stages.len()];
    // What stage `i` may refer to: the stages before it, those not built
    // as placeholders (so indexes stay right).
    let snapshot = |built: &[Option<StageState>], i: usize| -> Vec<Named> {
        (0..i)
            .map(|k| match &built[k] {
                Some(st) => (stages[k].name.clone(), st.clone()),
                None => (None, StageState::placeholder()),
            })
            .collect()
    };
    let abort = std::sync::atomic::AtomicBool::new(false);
    loop {
        // Every needed stage whose stages are built: these run side by side.
        let ready: Vec<usize> = (0..stages.len())
            .filter(|&i| {
                needed[i] && built[i].is_none() && deps[i].iter().all(|d| built[*d].is_some())
            })
            .collect();
        if ready.is_empty() {
            break;
        }
        if let [i] = ready[..] {
            let done = snapshot(&built, i);
            built[i] = Some(b.stage(i, &stages[i], &done, &global, &abort)?);
            continue;
        }
        let jobs: Vec<(usize, Builder, Vec<Named>)> = ready
            .iter()
            .map(|&i| (i, b.child(), snapshot(&built, i)))
            .collect();
        let global = &global;
        let abort = &abort;
        let results: Vec<(usize, Result<StageState>, usize, usize)> = std::thread::scope(|scope| {
            let handles: Vec<_> = jobs
                .into_iter()
                .map(|(i, mut child, done)| {
                    let stage = &stages[i];
                    scope.spawn(move || {
                        let r = child.stage(i, stage, &done, global, abort);
                        if r.is_err() {
                            // The others stop at their next step.
                            abort.store(true, std::sync::atomic::Ordering::Relaxed);
                        }
                        (i, r, child.steps, child.cached_steps)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| (usize::MAX, Err(BuildError::Interrupted), 0, 0))
                })
                .collect()
        });
        let mut first_error = None;
        for (i, r, steps, cached) in results {
            b.steps += steps;
            b.cached_steps += cached;
            match r {
                Ok(st) => built[i] = Some(st),
                // The error of the stage that failed, not an "interrupted"
                // of one stopped because of it.
                Err(BuildError::Interrupted) if first_error.is_some() => {}
                Err(e) => {
                    if first_error
                        .as_ref()
                        .is_none_or(|f| matches!(f, BuildError::Interrupted))
                    {
                        first_error = Some(e);
                    }
                }
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
    }
    let mut done: Vec<(Option<String>, StageState)> = built
        .into_iter()
        .enumerate()
        .filter_map(|(i, st)| st.map(|st| (stages[i].name.clone(), st)))
        .collect();
    let (_, mut state) = done.pop().ok_or_else(|| BuildError::Step {
        file: b.file.clone(),
        line: 1,
        instruction: "FROM".into(),
        message: "no build stage".into(),
    })?;
    for (k, v) in &req.labels {
        state
            .config
            .config
            .labels
            .get_or_insert_with(IndexMap::new)
            .insert(k.clone(), v.clone());
    }
    state.config.created = Some(rfc3339(layer_mtime()));
    if !state.records.is_empty() {
        let records: Vec<serde_json::Value> = state
            .records
            .iter()
            .map(|(key, layer)| serde_json::json!({"key": key.to_string(), "layer": layer}))
            .collect();
        state
            .config
            .extra
            .insert(CACHE_RECORDS.into(), serde_json::Value::Array(records));
    }
    let config_desc = store.put_json(media::OCI_CONFIG, &state.config)?;
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: Some(media::OCI_MANIFEST.into()),
        config: config_desc.clone(),
        layers: state.layers.clone(),
        annotations: Default::default(),
        extra: Default::default(),
    };
    let manifest_desc = store.put_json(media::OCI_MANIFEST, &manifest)?;
    for tag in &req.tags {
        store.tag(tag, &manifest_desc)?;
    }
    Ok(Built {
        manifest: manifest_desc,
        config_digest: config_desc.digest,
        cached_steps: b.cached_steps,
        steps: b.steps,
    })
}

/// Seconds since the epoch as RFC 3339 (UTC), without a date library.
fn rfc3339(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm), valid for all u64 days we meet.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// The stages each stage needs: its base when that is a stage, and the
/// stages its `COPY --from` and `RUN --mount=…,from=` read (by name or
/// index; names expanded with the global ARGs as FROM lines are).
fn stage_deps(
    stages: &[berth_dockerfile::Stage],
    global: &[(String, String)],
    escape: char,
) -> Vec<Vec<usize>> {
    let find = |i: usize, name: &str| -> Option<usize> {
        let name = expand(name, global, escape).unwrap_or_else(|_| name.to_string());
        let lower = name.to_lowercase();
        stages[..i]
            .iter()
            .rposition(|s| s.name.as_deref() == Some(lower.as_str()))
            .or_else(|| lower.parse::<usize>().ok().filter(|k| *k < i))
    };
    stages
        .iter()
        .enumerate()
        .map(|(i, stage)| {
            let mut deps: Vec<usize> = find(i, &stage.base).into_iter().collect();
            for cmd in &stage.instructions {
                match &cmd.instruction {
                    Instruction::Copy { from: Some(f), .. } => deps.extend(find(i, f)),
                    Instruction::Run { mounts, .. } => {
                        for raw in mounts {
                            let spec = expand(raw, global, escape).unwrap_or_else(|_| raw.clone());
                            if let Ok(m) = berth_dockerfile::parse_mount(&spec) {
                                if let Some(f) = &m.from {
                                    deps.extend(find(i, f));
                                }
                            }
                        }
                    }
                    _ => {}
                }
            }
            deps.sort_unstable();
            deps.dedup();
            deps
        })
        .collect()
}

impl<'a> Builder<'a> {
    /// A builder for a stage run beside others: the same build, its own
    /// scratch state (counted back into this one by the caller).
    fn child(&self) -> Builder<'a> {
        Builder {
            store: self.store,
            req: self.req,
            bases: self.bases,
            runner: self.runner,
            progress: self.progress,
            file: self.file.clone(),
            escape: self.escape,
            context_entries: self.context_entries.clone(),
            file_hashes: self.file_hashes.clone(),
            cache_dir: self.cache_dir.clone(),
            stage_dirs: HashMap::new(),
            cached_steps: 0,
            steps: 0,
            imported: self.imported.clone(),
            context_layers: self.context_layers.clone(),
        }
    }

    /// Build stage `i` on the stages before it (`done`).
    fn stage(
        &mut self,
        i: usize,
        stage: &berth_dockerfile::Stage,
        done: &[(Option<String>, StageState)],
        global: &[(String, String)],
        abort: &std::sync::atomic::AtomicBool,
    ) -> Result<StageState> {
        let progress = self.progress;
        let base = expand(&stage.base, global, self.escape).map_err(|e| BuildError::Step {
            file: self.file.clone(),
            line: stage.start_line,
            instruction: "FROM".into(),
            message: e.to_string(),
        })?;
        let total = stage.instructions.len() + 1;
        progress.step(i, 1, total, &format!("FROM {base}"));
        let platform = match &stage.platform {
            Some(text) => {
                let text = expand(text, global, self.escape).unwrap_or_else(|_| text.clone());
                Platform::parse(&text).ok_or_else(|| BuildError::Step {
                    file: self.file.clone(),
                    line: stage.start_line,
                    instruction: "FROM".into(),
                    message: format!("--platform={text}: expected os/arch[/variant]"),
                })?
            }
            None => self.req.platform.clone(),
        };
        let mut state = self.from(&base, done, stage.start_line, &platform)?;
        progress.finished(i, 1);
        let stopped = || progress.cancelled() || abort.load(std::sync::atomic::Ordering::Relaxed);
        // ONBUILD triggers of the base run first, and are not inherited
        // further (BuildKit runs a base stage's as well as a base image's).
        let triggers = state.config.config.on_build.take().unwrap_or_default();
        if !triggers.is_empty() {
            let text = format!("FROM scratch\n{}\n", triggers.join("\n"));
            let parsed = berth_dockerfile::parse(&text).map_err(|e| BuildError::Step {
                file: self.file.clone(),
                line: stage.start_line,
                instruction: "FROM".into(),
                message: format!("an ONBUILD trigger of {base}: {e}"),
            })?;
            for cmd in parsed.stages.iter().flat_map(|s| s.instructions.iter()) {
                if stopped() {
                    return Err(BuildError::Interrupted);
                }
                let label = format!("ONBUILD {}", cmd.source.trim());
                progress.step(i, 1, total, &label);
                self.steps += 1;
                // Errors point at the FROM line that brought the trigger in.
                let mut cmd = cmd.clone();
                cmd.start_line = stage.start_line;
                let cached =
                    self.run(&mut state, &cmd, global, done, i, 1)
                        .map_err(|e| match e {
                            BuildError::Step {
                                file,
                                line,
                                message,
                                ..
                            } => BuildError::Step {
                                file,
                                line,
                                instruction: label.clone(),
                                message,
                            },
                            other => other,
                        })?;
                if cached {
                    self.cached_steps += 1;
                    progress.cached(i, 1);
                }
                progress.finished(i, 1);
            }
        }
        for (j, cmd) in stage.instructions.iter().enumerate() {
            if stopped() {
                return Err(BuildError::Interrupted);
            }
            progress.step(i, j + 2, total, cmd.source.trim());
            self.steps += 1;
            let cached = self.run(&mut state, cmd, global, done, i, j + 2)?;
            if cached {
                self.cached_steps += 1;
                progress.cached(i, j + 2);
            }
            progress.finished(i, j + 2);
        }
        Ok(state)
    }
}

impl Builder<'_> {
    /// The layer a step with `key` made before, from this store's records or
    /// a `cache_from` image; never under `--no-cache`.
    fn cached_layer(&self, key: &Digest) -> Option<Layer> {
        if self.req.no_cache {
            return None;
        }
        if let Some(entry) = read_cache(&self.cache_dir.join(key.hex())) {
            if self.store.has_blob(&entry.layer.digest) {
                return Some(Layer {
                    diff_id: entry.layer.digest.clone(),
                    descriptor: entry.layer,
                });
            }
        }
        self.imported
            .get(key)
            .filter(|l| self.store.has_blob(&l.descriptor.digest))
            .cloned()
    }

    /// Read the build records of a `cache_from` image.
    fn import_cache(&mut self, reference: &str) -> std::result::Result<(), String> {
        let name = self
            .bases
            .ensure(self.store, reference, false, &self.req.platform)?;
        let image = self
            .store
            .image(&name, &self.req.platform)
            .map_err(|e| e.to_string())?;
        let Some(records) = image
            .config
            .extra
            .get(CACHE_RECORDS)
            .and_then(|r| r.as_array())
        else {
            return Err("the image has no build records (it was not built by berth)".into());
        };
        for r in records {
            let key = r
                .get("key")
                .and_then(|k| k.as_str())
                .and_then(|k| k.parse::<Digest>().ok());
            let index = r.get("layer").and_then(|i| i.as_u64()).map(|i| i as usize);
            let (Some(key), Some(index)) = (key, index) else {
                continue;
            };
            let (Some(desc), Some(diff_id)) = (
                image.manifest.layers.get(index),
                image.config.rootfs.diff_ids.get(index),
            ) else {
                continue;
            };
            self.imported.insert(
                key,
                Layer {
                    descriptor: desc.clone(),
                    diff_id: diff_id.clone(),
                },
            );
        }
        Ok(())
    }

    fn fail(&self, cmd: &Command, message: impl Into<String>) -> BuildError {
        let instruction = cmd
            .source
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_uppercase();
        BuildError::Step {
            file: self.file.clone(),
            line: cmd.start_line,
            instruction,
            message: message.into(),
        }
    }

    fn from(
        &mut self,
        base: &str,
        done: &[(Option<String>, StageState)],
        line: usize,
        platform: &Platform,
    ) -> Result<StageState> {
        let lower = base.to_lowercase();
        if let Some((_, s)) = done
            .iter()
            .rev()
            .find(|(n, s)| s.built && n.as_deref() == Some(&lower))
        {
            let mut s = s.clone();
            s.args.clear();
            return Ok(s);
        }
        // A named context stands in for the image of the same name.
        let base = match self.req.named_contexts.get(&lower) {
            Some(NamedContext::Image(reference)) => reference.clone(),
            Some(NamedContext::Dir(dir)) => {
                let layer = self.context_layer(&lower, dir)?;
                let mut config = ImageConfig {
                    architecture: platform.architecture.clone(),
                    os: platform.os.clone(),
                    variant: platform.variant.clone(),
                    rootfs: RootFs::default(),
                    ..Default::default()
                };
                config.config.env = Some(vec![format!("PATH={DEFAULT_PATH}")]);
                config.rootfs.diff_ids.push(layer.diff_id.clone());
                return Ok(StageState {
                    key: chain(&layer.diff_id, &["context", &platform.architecture]),
                    config,
                    layers: vec![layer.descriptor],
                    args: Vec::new(),
                    cmd_inherited: false,
                    records: Vec::new(),
                    built: true,
                });
            }
            None => base.to_string(),
        };
        let base = base.as_str();
        let lower = base.to_lowercase();
        if lower == "scratch" {
            let mut config = ImageConfig {
                architecture: platform.architecture.clone(),
                os: platform.os.clone(),
                variant: platform.variant.clone(),
                rootfs: RootFs::default(),
                ..Default::default()
            };
            config.config.env = Some(vec![format!("PATH={DEFAULT_PATH}")]);
            return Ok(StageState {
                key: chain(&Digest::of(b""), &["scratch", &platform.architecture]),
                config,
                layers: Vec::new(),
                args: Vec::new(),
                cmd_inherited: false,
                records: Vec::new(),
                built: true,
            });
        }
        let name = self
            .bases
            .ensure(self.store, base, self.req.pull, platform)
            .map_err(|message| BuildError::Base {
                reference: base.to_string(),
                message: format!("{message} (FROM at {}:{line})", self.file),
            })?;
        let image = self.store.image(&name, platform)?;
        let mut config = image.config.clone();
        // The base's records name its layers by index in its own build.
        config.extra.shift_remove(CACHE_RECORDS);
        if config
            .config
            .env
            .as_ref()
            .is_none_or(|e| !e.iter().any(|v| v.starts_with("PATH=")))
        {
            config
                .config
                .env
                .get_or_insert_with(Vec::new)
                .push(format!("PATH={DEFAULT_PATH}"));
        }
        Ok(StageState {
            key: chain(&image.manifest_digest, &[]),
            cmd_inherited: config.config.cmd.is_some(),
            config,
            layers: image.manifest.layers.clone(),
            args: Vec::new(),
            records: Vec::new(),
            built: true,
        })
    }

    /// Resolve a `--chown` spec, reading names from the stage's own files.
    fn owner(&self, state: &StageState, spec: &str) -> std::result::Result<Owner, String> {
        if let Ok(o) = parse_owner(spec) {
            return Ok(o);
        }
        let read = |p: &str| {
            crate::passwd::read_from_layers(self.store, &state.layers, p)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
        };
        crate::passwd::resolve_owner(
            spec,
            read("etc/passwd").as_deref(),
            read("etc/group").as_deref(),
        )
    }

    fn expand1(&self, cmd: &Command, state: &StageState, word: &str) -> Result<String> {
        expand(word, &state.env_pairs(), self.escape).map_err(|e| self.fail(cmd, e.to_string()))
    }

    fn command_line(&self, state: &StageState, c: &ShellOrExec) -> Vec<String> {
        match c {
            ShellOrExec::Exec(v) => v.clone(),
            ShellOrExec::Shell(s) => {
                let mut shell = state
                    .config
                    .config
                    .shell
                    .clone()
                    .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()]);
                shell.push(s.clone());
                shell
            }
        }
    }

    /// Carry out one instruction; true if answered from the cache.
    fn run(
        &mut self,
        state: &mut StageState,
        cmd: &Command,
        global: &[(String, String)],
        done: &[(Option<String>, StageState)],
        stage: usize,
        index: usize,
    ) -> Result<bool> {
        let history = |state: &mut StageState, empty: bool| {
            state.config.history.push(History {
                created_by: Some(cmd.source.trim().to_string()),
                empty_layer: empty,
                ..Default::default()
            });
        };
        match &cmd.instruction {
            Instruction::From { .. } => {}
            Instruction::Env(pairs) => {
                for (k, v) in pairs {
                    let key = self.expand1(cmd, state, k)?;
                    let value = self.expand1(cmd, state, v)?;
                    state.set_env(&key, &value);
                }
                history(state, true);
            }
            Instruction::Arg(pairs) => {
                for (name, default) in pairs {
                    let value = match self.req.build_args.get(name) {
                        Some(v) => Some(v.clone()),
                        None => match default {
                            Some(d) => Some(self.expand1(cmd, state, d)?),
                            // A global ARG re-declared without a default keeps its value.
                            None => global
                                .iter()
                                .find(|(k, _)| k == name)
                                .map(|(_, v)| v.clone()),
                        },
                    };
                    if let Some(v) = value {
                        state.args.push((name.clone(), v));
                    }
                }
            }
            Instruction::Label(pairs) => {
                for (k, v) in pairs {
                    let key = self.expand1(cmd, state, k)?;
                    let value = self.expand1(cmd, state, v)?;
                    state
                        .config
                        .config
                        .labels
                        .get_or_insert_with(IndexMap::new)
                        .insert(key, value);
                }
                history(state, true);
            }
            Instruction::Expose(ports) => {
                for p in ports {
                    let p = self.expand1(cmd, state, p)?;
                    let p = if p.contains('/') {
                        p
                    } else {
                        format!("{p}/tcp")
                    };
                    state
                        .config
                        .config
                        .exposed_ports
                        .get_or_insert_with(IndexMap::new)
                        .insert(p, serde_json::json!({}));
                }
                history(state, true);
            }
            Instruction::Volume(vols) => {
                for v in vols {
                    let v = self.expand1(cmd, state, v)?;
                    state
                        .config
                        .config
                        .volumes
                        .get_or_insert_with(IndexMap::new)
                        .insert(v, serde_json::json!({}));
                }
                history(state, true);
            }
            Instruction::User(u) => {
                let u = self.expand1(cmd, state, u)?;
                state.config.config.user = Some(u);
                history(state, true);
            }
            Instruction::Workdir(w) => {
                let w = self.expand1(cmd, state, w)?;
                let joined = format!("/{}", image_path(&state.workdir(), &w));
                state.config.config.working_dir = Some(joined);
                history(state, true);
            }
            Instruction::Cmd(c) => {
                let line = self.command_line(state, c);
                state.config.config.cmd = Some(line);
                state.cmd_inherited = false;
                history(state, true);
            }
            Instruction::Entrypoint(c) => {
                let line = self.command_line(state, c);
                state.config.config.entrypoint = Some(line);
                if state.cmd_inherited {
                    state.config.config.cmd = None;
                    state.cmd_inherited = false;
                }
                history(state, true);
            }
            Instruction::Shell(s) => {
                state.config.config.shell = Some(s.clone());
                history(state, true);
            }
            Instruction::StopSignal(s) => {
                let s = self.expand1(cmd, state, s)?;
                state.config.config.stop_signal = Some(s);
                history(state, true);
            }
            Instruction::Healthcheck(h) => {
                state.config.config.healthcheck = Some(healthcheck_json(h));
                history(state, true);
            }
            Instruction::Onbuild(trigger) => {
                state
                    .config
                    .config
                    .on_build
                    .get_or_insert_with(Vec::new)
                    .push(trigger.clone());
                history(state, true);
            }
            Instruction::Maintainer(m) => {
                state.config.author = Some(m.clone());
                history(state, true);
            }
            Instruction::Run {
                cmd: line,
                mounts,
                network,
                security,
                devices,
                heredocs,
            } => {
                if security.as_deref().is_some_and(|s| s != "sandbox") {
                    return Err(self.fail(cmd, "RUN --security=insecure is not supported"));
                }
                if !devices.is_empty() {
                    return Err(self.fail(cmd, "RUN --device is not supported"));
                }
                return self.run_step(
                    state,
                    cmd,
                    line,
                    mounts,
                    network.as_deref(),
                    heredocs,
                    done,
                    (stage, index),
                );
            }
            Instruction::Copy {
                srcs,
                dest,
                from,
                chown,
                chmod,
                heredocs,
                ..
            } => {
                let from = match from {
                    Some(f) => Some(self.expand1(cmd, state, f)?),
                    None => None,
                };
                return self.copy(
                    state,
                    cmd,
                    srcs,
                    dest,
                    from.as_deref(),
                    chown,
                    chmod,
                    heredocs,
                    done,
                    false,
                );
            }
            Instruction::Add {
                srcs,
                dest,
                chown,
                chmod,
                heredocs,
                checksum,
                ..
            } => {
                let is_url = |s: &str| s.starts_with("http://") || s.starts_with("https://");
                if srcs.iter().any(|s| is_url(s)) {
                    if !srcs.iter().all(|s| is_url(s)) {
                        return Err(self.fail(
                            cmd,
                            "mixing URLs and local files in one ADD is not supported; split it",
                        ));
                    }
                    return self.add_urls(
                        state,
                        cmd,
                        srcs,
                        dest,
                        checksum.as_deref(),
                        chown,
                        chmod,
                    );
                }
                return self.copy(
                    state, cmd, srcs, dest, None, chown, chmod, heredocs, done, true,
                );
            }
        }
        Ok(false)
    }

    /// The files of another stage (`--from=name|index`) or image that the
    /// `COPY` sources `wanted` can name: only the trees under their literal
    /// leading directories are unpacked (a Go build stage holds a toolchain
    /// of hundreds of MB; the final stage copies one binary out of it).
    fn stage_entries_for(
        &mut self,
        cmd: &Command,
        source: &str,
        done: &[(Option<String>, StageState)],
        wanted: &[String],
    ) -> Result<Vec<Entry>> {
        let (key, layers) = self.stage_source(cmd, source, done)?;
        let Some(prefixes) = literal_prefixes(wanted) else {
            let (_, dir) = self.unpacked(cmd, source, key, &layers)?;
            return Ok(context::walk(&dir, &context::Everything)?);
        };
        let subset = chain(
            &key,
            &prefixes
                .iter()
                .map(|p| p.to_str().unwrap_or(""))
                .collect::<Vec<_>>(),
        );
        if !self.stage_dirs.contains_key(&subset) {
            let scratch = ScratchDir(self.scratch_path(&subset));
            let _ = std::fs::remove_dir_all(&scratch.0);
            let keep = |p: &Path| {
                prefixes
                    .iter()
                    .any(|w| p.starts_with(w) || w.starts_with(p))
            };
            let mut complete = true;
            for l in &layers {
                let blob = self.store.open_blob(&l.digest)?;
                let reader = crate::unpack::decompress(Box::new(io::BufReader::new(blob)))
                    .map_err(|source| BuildError::Io {
                        path: self.store.blob_path(&l.digest),
                        source,
                    })?;
                let opts = crate::unpack::UnpackOptions {
                    whiteouts: true,
                    ..Default::default()
                };
                // A hard link to a file outside the subset cannot be made.
                if crate::unpack::unpack_only(reader, &scratch.0, opts, &keep).is_err() {
                    complete = false;
                    break;
                }
            }
            // Sources name entries by their own paths (a link on the way is
            // not followed, as with the whole stage), so the subset holds
            // every entry they can name.
            if !complete {
                drop(scratch);
                let (_, dir) = self.unpacked(cmd, source, key, &layers)?;
                return Ok(context::walk(&dir, &context::Everything)?);
            }
            self.stage_dirs.insert(subset.clone(), scratch);
        }
        let dir = self.stage_dirs[&subset].0.clone();
        std::fs::create_dir_all(&dir).map_err(|source| BuildError::Io {
            path: dir.clone(),
            source,
        })?;
        Ok(context::walk(&dir, &context::Everything)?)
    }

    /// A scratch directory's path for the files of `key`, unique in this
    /// process: builders of parallel stages may unpack the same stage at once.
    fn scratch_path(&self, key: &Digest) -> PathBuf {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        self.store.root().join("ingest").join(format!(
            "stage-{}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            key.short()
        ))
    }

    /// The key and unpacked directory of a stage or image.
    fn stage_dir(
        &mut self,
        cmd: &Command,
        source: &str,
        done: &[(Option<String>, StageState)],
    ) -> Result<(Digest, PathBuf)> {
        let (key, layers) = self.stage_source(cmd, source, done)?;
        self.unpacked(cmd, source, key, &layers)
    }

    /// The key and layers of a stage (by name or index) or an image.
    fn stage_source(
        &mut self,
        cmd: &Command,
        source: &str,
        done: &[(Option<String>, StageState)],
    ) -> Result<(Digest, Vec<Descriptor>)> {
        let lower = source.to_lowercase();
        let by_name = done
            .iter()
            .find(|(n, s)| s.built && n.as_deref() == Some(&lower));
        let by_index = source
            .parse::<usize>()
            .ok()
            .and_then(|i| done.get(i))
            .filter(|(_, s)| s.built);
        let (key, layers) = match (by_name.or(by_index), self.req.named_contexts.get(&lower)) {
            (Some((_, st)), _) => (st.key.clone(), st.layers.clone()),
            (None, Some(NamedContext::Dir(dir))) => {
                let layer = self.context_layer(&lower, dir)?;
                (chain(&layer.diff_id, &["context"]), vec![layer.descriptor])
            }
            (None, named) => {
                let source = match named {
                    Some(NamedContext::Image(reference)) => reference.as_str(),
                    _ => source,
                };
                let name = self
                    .bases
                    .ensure(self.store, source, self.req.pull, &self.req.platform)
                    .map_err(|m| self.fail(cmd, format!("--from={source}: {m}")))?;
                let img = self.store.image(&name, &self.req.platform)?;
                (img.manifest_digest.clone(), img.manifest.layers.clone())
            }
        };
        Ok((key, layers))
    }

    /// The layer of the named context `name`, a directory: its files
    /// (after its own `.dockerignore`) owned by root, made once per build.
    fn context_layer(&mut self, name: &str, dir: &Path) -> Result<Layer> {
        if let Some(l) = self.context_layers.get(name) {
            return Ok(l.clone());
        }
        let ignore = IgnoreFile::load(dir, None)?;
        let entries = context::walk(dir, &ignore)?;
        let mut l = LayerBuilder::new(self.store)?;
        for e in &entries {
            match &e.kind {
                EntryKind::Dir => l.add_dir(&e.rel, e.mode, Owner::ROOT)?,
                EntryKind::File => {
                    let f = context::open_entry(&e.path).map_err(|source| BuildError::Io {
                        path: e.path.clone(),
                        source,
                    })?;
                    l.add_open_file(&e.rel, f, &e.path, e.mode, Owner::ROOT)?;
                }
                EntryKind::Symlink(target) => l.add_symlink(&e.rel, target, Owner::ROOT)?,
            }
        }
        let layer = l.finish()?;
        self.context_layers.insert(name.to_string(), layer.clone());
        Ok(layer)
    }

    /// The files of a stage or image (`key`, `layers`), unpacked once per build.
    fn unpacked(
        &mut self,
        cmd: &Command,
        source: &str,
        key: Digest,
        layers: &[Descriptor],
    ) -> Result<(Digest, PathBuf)> {
        if !self.stage_dirs.contains_key(&key) {
            let dir = self.scratch_path(&key);
            let _ = std::fs::remove_dir_all(&dir);
            let scratch = ScratchDir(dir);
            for l in layers {
                let blob = self.store.open_blob(&l.digest)?;
                let reader = crate::unpack::decompress(Box::new(io::BufReader::new(blob)))
                    .map_err(|source| BuildError::Io {
                        path: self.store.blob_path(&l.digest),
                        source,
                    })?;
                let opts = crate::unpack::UnpackOptions {
                    whiteouts: true,
                    ..Default::default()
                };
                crate::unpack::unpack(reader, &scratch.0, opts)
                    .map_err(|e| self.fail(cmd, format!("--from={source}: {e}")))?;
            }
            self.stage_dirs.insert(key.clone(), scratch);
        }
        let dir = self.stage_dirs[&key].0.clone();
        std::fs::create_dir_all(&dir).map_err(|source| BuildError::Io {
            path: dir.clone(),
            source,
        })?;
        Ok((key, dir))
    }

    fn entries(&mut self) -> Result<&Vec<Entry>> {
        if self.context_entries.is_none() {
            let dockerfile = match &self.req.dockerfile {
                DockerfileSource::Path(p) if p.is_absolute() => Some(p.clone()),
                DockerfileSource::Path(p) => Some(self.req.context.join(p)),
                DockerfileSource::Inline(_) => None,
            };
            let ignore = IgnoreFile::load(&self.req.context, dockerfile.as_deref())?;
            self.context_entries = Some(context::walk(&self.req.context, &ignore)?);
        }
        Ok(self.context_entries.get_or_insert_with(Vec::new))
    }

    #[allow(clippy::too_many_arguments)]
    fn copy(
        &mut self,
        state: &mut StageState,
        cmd: &Command,
        srcs: &[String],
        dest: &str,
        from: Option<&str>,
        chown: &Option<String>,
        chmod: &Option<String>,
        heredocs: &[berth_dockerfile::SourceContent],
        done: &[(Option<String>, StageState)],
        is_add: bool,
    ) -> Result<bool> {
        let env = state.env_pairs();
        let mut sources = Vec::new();
        for s in srcs {
            let words =
                expand_words(s, &env, self.escape).map_err(|e| self.fail(cmd, e.to_string()))?;
            sources.extend(words);
        }
        let dest = self.expand1(cmd, state, dest)?;
        let owner = match chown {
            Some(c) => {
                let spec = self.expand1(cmd, state, c)?;
                self.owner(state, &spec).map_err(|m| self.fail(cmd, m))?
            }
            None => Owner::ROOT,
        };
        let mode = match chmod {
            Some(m) => Some(
                u32::from_str_radix(&self.expand1(cmd, state, m)?, 8).map_err(|_| {
                    self.fail(
                        cmd,
                        format!("invalid --chmod {m:?}: expected an octal mode like 755"),
                    )
                })?,
            ),
            None => None,
        };
        let workdir = state.workdir();
        let escape = self.escape;
        // Heredoc sources (`COPY <<EOF /file`) are files with inline content.
        if !heredocs.is_empty() {
            let mut l = LayerBuilder::new(self.store)?;
            let mut key_parts: Vec<String> = vec![cmd.source.clone()];
            for h in heredocs {
                let data = if h.expand {
                    expand(&h.data, &env, escape).map_err(|e| self.fail(cmd, e.to_string()))?
                } else {
                    h.data.clone()
                };
                let target = if dest.ends_with('/') {
                    image_path(&workdir, &format!("{dest}{}", h.path))
                } else {
                    image_path(&workdir, &dest)
                };
                l.add_bytes(&target, data.as_bytes(), mode.unwrap_or(0o644), owner)?;
                key_parts.push(data);
            }
            let layer = l.finish()?;
            state.key = chain(
                &state.key,
                &key_parts.iter().map(String::as_str).collect::<Vec<_>>(),
            );
            push_layer(state, layer, cmd);
            return Ok(false);
        }
        let kind = if is_add { "ADD" } else { "COPY" };
        let head = |from: &str| -> Vec<String> {
            vec![
                kind.to_string(),
                from.to_string(),
                format!("{sources:?}"),
                dest.clone(),
                workdir.clone(),
                format!("{owner:?}"),
                format!("{mode:?}"),
            ]
        };
        // From a stage or an image, the key is that source's own key: it
        // fixes its files, so a hit needs no unpacking (which, for a build
        // stage holding a toolchain, costs far more than the copy).
        let from_key = match from {
            Some(source) => {
                let (source_key, _) = self.stage_source(cmd, source, done)?;
                let parts = head(&format!("from={source_key}"));
                let key = chain(
                    &state.key,
                    &parts.iter().map(String::as_str).collect::<Vec<_>>(),
                );
                if let Some(layer) = self.cached_layer(&key) {
                    state.key = key;
                    push_layer(state, layer, cmd);
                    return Ok(true);
                }
                Some(key)
            }
            None => None,
        };
        let entries = match from {
            Some(source) => self.stage_entries_for(cmd, source, done, &sources)?,
            None => self.entries()?.clone(),
        };
        let placements = copy::plan(&entries, &sources, &dest, &workdir)
            .map_err(|e| self.fail(cmd, e.to_string()))?;
        let key = match from_key {
            Some(key) => key,
            None => {
                // The step's inputs: the files it reads, their names and modes.
                let hashes = self.hash_sources(placements.iter().map(|p| p.entry))?;
                let mut parts = head("context");
                for p in &placements {
                    let h = hashes.get(&p.entry.path).map(Digest::as_str).unwrap_or("");
                    parts.push(format!("{}|{}|{:o}|{h}", p.dest, p.entry.rel, p.entry.mode));
                }
                let key = chain(
                    &state.key,
                    &parts.iter().map(String::as_str).collect::<Vec<_>>(),
                );
                if let Some(layer) = self.cached_layer(&key) {
                    state.key = key;
                    push_layer(state, layer, cmd);
                    return Ok(true);
                }
                key
            }
        };
        let cache_file = self.cache_dir.join(key.hex());
        let mut l = LayerBuilder::new(self.store)?;
        // Parent directories of the destination, so the layer stands alone.
        let mut placements = placements;
        placements.sort_by(|a, b| a.dest.cmp(&b.dest));
        let mut dirs_written: std::collections::BTreeSet<String> = Default::default();
        for p in &placements {
            let mut parent = String::new();
            let comps: Vec<&str> = p.dest.split('/').collect();
            for c in &comps[..comps.len().saturating_sub(1)] {
                parent = if parent.is_empty() {
                    c.to_string()
                } else {
                    format!("{parent}/{c}")
                };
                if dirs_written.insert(parent.clone())
                    && !placements.iter().any(|q| q.dest == parent)
                {
                    l.add_dir(&parent, 0o755, owner)?;
                }
            }
            match &p.entry.kind {
                EntryKind::Dir => {
                    if dirs_written.insert(p.dest.clone()) {
                        l.add_dir(&p.dest, mode.unwrap_or(p.entry.mode), owner)?;
                    }
                }
                EntryKind::File => {
                    if is_add && is_archive(&p.entry.path) {
                        self.add_archive(&mut l, &p.entry.path, &p.dest, cmd)?;
                    } else {
                        let f = context::open_entry(&p.entry.path).map_err(|source| {
                            BuildError::Io {
                                path: p.entry.path.clone(),
                                source,
                            }
                        })?;
                        let mode = mode.unwrap_or(p.entry.mode);
                        l.add_open_file(&p.dest, f, &p.entry.path, mode, owner)?;
                    }
                }
                EntryKind::Symlink(target) => l.add_symlink(&p.dest, target, owner)?,
            }
        }
        let layer = l.finish()?;
        write_cache(
            &cache_file,
            &CacheEntry {
                layer: layer.descriptor.clone(),
            },
        );
        state.key = key;
        push_layer(state, layer, cmd);
        Ok(false)
    }

    /// `ADD URL… dest`: downloaded (verified against `--checksum`), never
    /// extracted, mode 0600 unless `--chmod` says otherwise, as docker does.
    #[allow(clippy::too_many_arguments)]
    fn add_urls(
        &mut self,
        state: &mut StageState,
        cmd: &Command,
        srcs: &[String],
        dest: &str,
        checksum: Option<&str>,
        chown: &Option<String>,
        chmod: &Option<String>,
    ) -> Result<bool> {
        let dest = self.expand1(cmd, state, dest)?;
        let owner = match chown {
            Some(c) => {
                let spec = self.expand1(cmd, state, c)?;
                self.owner(state, &spec).map_err(|m| self.fail(cmd, m))?
            }
            None => Owner::ROOT,
        };
        let mode = match chmod {
            Some(m) => u32::from_str_radix(&self.expand1(cmd, state, m)?, 8)
                .map_err(|_| self.fail(cmd, format!("invalid --chmod {m:?}")))?,
            None => 0o600,
        };
        let checksum = match checksum {
            Some(c) => Some(self.expand1(cmd, state, c)?),
            None => None,
        };
        let workdir = state.workdir();
        let mut files = Vec::new();
        for src in srcs {
            let url = self.expand1(cmd, state, src)?;
            let got = crate::fetch::download(
                &url,
                checksum.as_deref(),
                &self.store.root().join("ingest"),
            )
            .map_err(|e| self.fail(cmd, e.to_string()))?;
            files.push(got);
        }
        if files.len() > 1 && !dest.ends_with('/') {
            return Err(self.fail(cmd, copy::CopyError::DestNotDir.to_string()));
        }
        let mut parts = vec![
            cmd.source.clone(),
            format!("{mode:o}"),
            format!("{owner:?}"),
        ];
        parts.extend(files.iter().map(|f| f.digest.to_string()));
        let key = chain(
            &state.key,
            &parts.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        let mut l = LayerBuilder::new(self.store)?;
        for f in &files {
            let target = if dest.ends_with('/') {
                image_path(&workdir, &format!("{dest}{}", f.file_name))
            } else {
                image_path(&workdir, &dest)
            };
            l.add_file(&target, &f.path, mode, owner)?;
        }
        let layer = l.finish()?;
        state.key = key;
        push_layer(state, layer, cmd);
        Ok(false)
    }

    /// `ADD archive.tar.gz /dir`: the archive's entries, not the archive.
    fn add_archive(
        &self,
        l: &mut LayerBuilder,
        path: &Path,
        dest: &str,
        cmd: &Command,
    ) -> Result<()> {
        // The destination of an auto-extracted archive is the directory.
        let dir = if is_archive_name(dest) {
            dest.rsplit_once('/')
                .map(|(d, _)| d.to_string())
                .unwrap_or_default()
        } else {
            dest.to_string()
        };
        let scratch = self.store.root().join("ingest").join(format!(
            "add-{}-{}",
            std::process::id(),
            Digest::of(path.to_string_lossy().as_bytes()).short()
        ));
        let _ = std::fs::remove_dir_all(&scratch);
        let file = context::open_entry(path).map_err(|source| BuildError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let reader =
            crate::unpack::decompress(Box::new(io::BufReader::new(file))).map_err(|source| {
                BuildError::Io {
                    path: path.to_path_buf(),
                    source,
                }
            })?;
        let result = crate::unpack::unpack(reader, &scratch, Default::default())
            .map_err(|e| self.fail(cmd, format!("{}: {e}", path.display())))
            .and_then(|_| {
                let entries = context::walk(&scratch, &context::Everything)?;
                for e in entries {
                    let target = if dir.is_empty() {
                        e.rel.clone()
                    } else {
                        format!("{dir}/{}", e.rel)
                    };
                    match &e.kind {
                        EntryKind::Dir => l.add_dir(&target, e.mode, Owner::ROOT)?,
                        EntryKind::File => l.add_file(&target, &e.path, e.mode, Owner::ROOT)?,
                        EntryKind::Symlink(t) => l.add_symlink(&target, t, Owner::ROOT)?,
                    }
                }
                Ok(())
            });
        let _ = std::fs::remove_dir_all(&scratch);
        result
    }

    fn hash_sources<'e>(
        &mut self,
        entries: impl Iterator<Item = &'e Entry>,
    ) -> Result<HashMap<PathBuf, Digest>> {
        use rayon::prelude::*;
        let todo: Vec<&Entry> = entries
            .filter(|e| e.kind == EntryKind::File && !self.file_hashes.contains_key(&e.path))
            .collect();
        let new: Vec<(PathBuf, Digest)> = todo
            .par_iter()
            .map(|e| {
                context::open_entry(&e.path)
                    .and_then(crate::layer::hash_reader)
                    .map(|d| (e.path.clone(), d))
                    .map_err(|source| BuildError::Io {
                        path: e.path.clone(),
                        source,
                    })
            })
            .collect::<Result<_>>()?;
        self.file_hashes.extend(new);
        Ok(self.file_hashes.clone())
    }
}

/// The literal leading directories of `COPY --from` sources (relative to
/// the stage's root): what the sources can name lies under them. `None`
/// when one could name anything (`.`, `/`, a wildcard at the top, `..`).
fn literal_prefixes(sources: &[String]) -> Option<Vec<PathBuf>> {
    let mut out = Vec::new();
    for s in sources {
        let mut p = PathBuf::new();
        for c in s.split('/') {
            match c {
                "" | "." => {}
                ".." => return None,
                c if c.contains(['*', '?', '[', '\\']) => break,
                c => p.push(c),
            }
        }
        if p.as_os_str().is_empty() {
            return None;
        }
        out.push(p);
    }
    Some(out)
}

/// Add a step's layer; `state.key` is already the step's key.
fn push_layer(state: &mut StageState, layer: Layer, cmd: &Command) {
    state.config.rootfs.diff_ids.push(layer.diff_id);
    state.layers.push(layer.descriptor);
    state
        .records
        .push((state.key.clone(), state.layers.len() - 1));
    state.config.history.push(History {
        created_by: Some(cmd.source.trim().to_string()),
        ..Default::default()
    });
}

fn read_cache(path: &Path) -> Option<CacheEntry> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// Best effort: a cache that cannot be written only costs a rebuild later.
fn write_cache(path: &Path, entry: &CacheEntry) {
    let tmp = path.with_extension("tmp");
    if let Ok(bytes) = serde_json::to_vec(entry) {
        if std::fs::write(&tmp, bytes).is_ok() {
            let _ = std::fs::rename(&tmp, path);
        }
    }
}

/// `--chown` without names (numbers only); see [`Builder::owner`] for names.
fn parse_owner(spec: &str) -> std::result::Result<Owner, String> {
    crate::passwd::resolve_owner(spec, None, None)
}

fn is_archive_name(name: &str) -> bool {
    [".tar", ".tar.gz", ".tgz", ".tar.zst", ".tar.xz"]
        .iter()
        .any(|s| name.ends_with(s))
}

/// ADD auto-extracts local tar archives (recognised by content, like docker).
fn is_archive(path: &Path) -> bool {
    let mut head = [0u8; 512];
    let Ok(mut f) = std::fs::File::open(path) else {
        return false;
    };
    let n = io::Read::read(&mut f, &mut head).unwrap_or(0);
    if n >= 2 && head[..2] == [0x1f, 0x8b] {
        return true;
    }
    if n >= 4 && head[..4] == [0x28, 0xb5, 0x2f, 0xfd] {
        return true;
    }
    n >= 262 && &head[257..262] == b"ustar"
}

fn healthcheck_json(h: &Healthcheck) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    m.insert("Test".into(), serde_json::json!(h.test));
    for (k, v) in [
        ("Interval", h.interval),
        ("Timeout", h.timeout),
        ("StartPeriod", h.start_period),
        ("StartInterval", h.start_interval),
    ] {
        if let Some(d) = v {
            m.insert(k.into(), serde_json::json!(d.as_nanos() as u64));
        }
    }
    if h.retries > 0 {
        m.insert("Retries".into(), serde_json::json!(h.retries));
    }
    serde_json::Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_formats() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_449_100_800), "2015-12-03T00:00:00Z");
    }

    #[test]
    fn owners() {
        assert_eq!(
            parse_owner("1000:1000").unwrap(),
            Owner {
                uid: 1000,
                gid: 1000
            }
        );
        assert_eq!(parse_owner("5").unwrap(), Owner { uid: 5, gid: 5 });
        assert!(parse_owner("node").is_err());
    }
}
