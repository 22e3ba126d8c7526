//! Loading a project: find the files, read the environment, then per file
//! parse → interpolate → (v1 → spec) → validate → include → extends, merge
//! the files, pick the project name, apply profiles, normalize, check.

use crate::error::{KeyPath, LoadError};
use crate::model::Project;
use crate::normalize::{self, Context};
use crate::yaml::{self, Node, Value};
use crate::{consistency, interpolate, legacy, merge, names, schema};
use indexmap::IndexMap;
use std::path::{Path, PathBuf};

/// File names searched for, in order, in the working directory and its parents.
pub const DEFAULT_FILES: &[&str] = &[
    "compose.yaml",
    "compose.yml",
    "docker-compose.yaml",
    "docker-compose.yml",
];
const OVERRIDE_FILES: &[&str] = &[
    "compose.override.yaml",
    "compose.override.yml",
    "docker-compose.override.yaml",
    "docker-compose.override.yml",
];

/// Longer `extends` chains are refused: each link is resolved recursively,
/// and no real file needs anywhere near this many.
const MAX_EXTENDS_DEPTH: usize = 64;

/// Everything that decides what project the files describe.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `-f` files, in order; `-` reads `stdin`.
    pub files: Vec<PathBuf>,
    pub project_directory: Option<PathBuf>,
    pub project_name: Option<String>,
    /// `--env-file`; when empty, `.env` in the project directory is read if present.
    pub env_files: Vec<PathBuf>,
    pub profiles: Vec<String>,
    /// The process environment (it wins over `.env`).
    pub os_env: IndexMap<String, String>,
    pub cwd: PathBuf,
    /// The text of `-f -`.
    pub stdin: Option<String>,
    pub skip_interpolation: bool,
    pub skip_consistency: bool,
    /// Leave `env_file:` and bare `KEY` entries unresolved.
    pub skip_env_resolution: bool,
}

/// A loaded project and what it was loaded from.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub project: Project,
    /// The normalized document the project was built from. With
    /// interpolation skipped it still holds entries naming variables
    /// (`${PORT}:80`) that the typed project leaves out.
    pub document: serde_json::Value,
    pub files: Vec<PathBuf>,
    pub project_dir: PathBuf,
    /// The environment interpolation saw (`.env` overlaid by the process env).
    pub environment: IndexMap<String, String>,
    /// Every profile named by any service, sorted.
    pub all_profiles: Vec<String>,
    /// Variables the files reference (for `config --variables`).
    pub variables: IndexMap<String, interpolate::Variable>,
    /// Non-fatal notes (unset variables, ignored `version:`), like compose's warnings.
    pub warnings: Vec<String>,
}

struct Loader<'o> {
    opts: &'o Options,
    env: IndexMap<String, String>,
    /// Files read so far; a mark's `file` indexes this.
    sources: Vec<(PathBuf, String)>,
    warnings: Vec<String>,
    variables: IndexMap<String, interpolate::Variable>,
    legacy_v1: bool,
}

pub fn load(opts: &Options) -> Result<Loaded, LoadError> {
    let cwd = &opts.cwd;
    let first_file_dir = opts
        .files
        .first()
        .filter(|f| f.as_os_str() != "-")
        .map(|f| absolute(cwd, f))
        .and_then(|f| f.parent().map(Path::to_path_buf));
    let env_dir = opts
        .project_directory
        .as_ref()
        .map(|d| absolute(cwd, d))
        .or(first_file_dir)
        .unwrap_or_else(|| cwd.clone());
    let env = read_environment(opts, &env_dir)?;

    let files = find_files(opts, &env, &env_dir)?;
    let project_dir = match &opts.project_directory {
        Some(d) => absolute(cwd, d),
        None => files
            .iter()
            .find(|f| f.as_os_str() != "-")
            .and_then(|f| f.parent().map(Path::to_path_buf))
            .unwrap_or_else(|| cwd.clone()),
    };

    let mut env = env;
    // When COMPOSE_FILE (from a .env) moved the project elsewhere, that
    // directory's .env is read too; values already set win.
    if opts.env_files.is_empty() && opts.project_directory.is_none() && project_dir != env_dir {
        let extra = project_dir.join(".env");
        if extra.is_file() {
            let lookup = |k: &str| env.get(k).cloned();
            let parsed = crate::dotenv::parse_file(&extra, &lookup).map_err(|e| {
                let line = e.line().unwrap_or(0);
                LoadError::new(e.to_string()).at(&extra, line, if line > 0 { 1 } else { 0 })
            })?;
            for (k, v) in parsed {
                env.entry(k).or_insert(v);
            }
        }
    }
    let name = project_name(opts, &env, &files, &project_dir)?;
    // compose-go offers the project name to interpolation, e.g. for build tags.
    env.entry("COMPOSE_PROJECT_NAME".to_string())
        .or_insert_with(|| name.clone());
    let mut loader = Loader {
        opts,
        env,
        sources: Vec::new(),
        warnings: Vec::new(),
        variables: IndexMap::new(),
        legacy_v1: false,
    };
    let mut merged: Option<Node> = None;
    for (i, file) in files.iter().enumerate() {
        let doc = loader.load_file(file, &project_dir, i == 0, &mut Vec::new())?;
        merged = Some(match merged {
            None => doc,
            Some(base) => merge::merge(base, doc, &[]),
        });
    }
    let mut merged =
        merged.unwrap_or_else(|| Node::new(Value::Map(IndexMap::new()), Default::default()));
    loader.finish(&mut merged, files, project_dir, name)
}

/// Why an include's environment could not be made: a named env file is
/// missing (the caller names the include), or one did not parse.
enum IncludeEnv {
    Missing(PathBuf),
    Load(LoadError),
}

fn absolute(cwd: &Path, p: &Path) -> PathBuf {
    normalize::clean_path(&cwd.join(p))
}

fn read_environment(opts: &Options, env_dir: &Path) -> Result<IndexMap<String, String>, LoadError> {
    let os_lookup = |k: &str| opts.os_env.get(k).cloned();
    let mut env = IndexMap::new();
    let files: Vec<(PathBuf, bool)> = if opts.env_files.is_empty() {
        vec![(env_dir.join(".env"), false)]
    } else {
        opts.env_files
            .iter()
            .map(|f| (absolute(&opts.cwd, f), true))
            .collect()
    };
    for (file, required) in files {
        if !file.is_file() {
            if required {
                return Err(LoadError::new(format!(
                    "couldn't find env file: {}",
                    file.display()
                )));
            }
            continue;
        }
        let lookup = |k: &str| os_lookup(k).or_else(|| env.get(k).cloned());
        let parsed = crate::dotenv::parse_file(&file, &lookup).map_err(|e| {
            let line = e.line().unwrap_or(0);
            LoadError::new(e.to_string()).at(&file, line, if line > 0 { 1 } else { 0 })
        })?;
        env.extend(parsed);
    }
    for (k, v) in &opts.os_env {
        env.insert(k.clone(), v.clone());
    }
    Ok(env)
}

fn find_files(
    opts: &Options,
    env: &IndexMap<String, String>,
    env_dir: &Path,
) -> Result<Vec<PathBuf>, LoadError> {
    if !opts.files.is_empty() {
        return Ok(opts
            .files
            .iter()
            .map(|f| {
                if f.as_os_str() == "-" {
                    f.clone()
                } else {
                    absolute(&opts.cwd, f)
                }
            })
            .collect());
    }
    if let Some(list) = env.get("COMPOSE_FILE").filter(|s| !s.is_empty()) {
        let sep = env
            .get("COMPOSE_PATH_SEPARATOR")
            .filter(|s| !s.is_empty())
            .map(String::as_str)
            .unwrap_or(":");
        return Ok(list
            .split(sep)
            .filter(|s| !s.is_empty())
            .map(|f| absolute(env_dir, Path::new(f)))
            .collect());
    }
    let mut dir = Some(env_dir.to_path_buf());
    while let Some(d) = dir {
        if let Some(name) = DEFAULT_FILES.iter().find(|n| d.join(n).is_file()) {
            let mut files = vec![d.join(name)];
            if let Some(o) = OVERRIDE_FILES.iter().find(|n| d.join(n).is_file()) {
                files.push(d.join(o));
            }
            return Ok(files);
        }
        dir = d.parent().map(Path::to_path_buf);
    }
    Err(LoadError::new(format!(
        "no configuration file provided: not found (looked for {} in {} and its parents)",
        DEFAULT_FILES.join(", "),
        env_dir.display()
    )))
}

/// `-p`, `COMPOSE_PROJECT_NAME`, the files' top-level `name:` (the last file
/// that sets one wins), or the project directory's name.
fn project_name(
    opts: &Options,
    env: &IndexMap<String, String>,
    files: &[PathBuf],
    project_dir: &Path,
) -> Result<String, LoadError> {
    type Found = (String, &'static str, Option<(PathBuf, yaml::Mark)>);
    let explicit: Option<Found> = opts
        .project_name
        .clone()
        .map(|n| (n, "--project-name", None))
        .or_else(|| {
            env.get("COMPOSE_PROJECT_NAME")
                .filter(|s| !s.is_empty())
                .map(|n| (n.clone(), "COMPOSE_PROJECT_NAME", None))
        });
    let from_files = || -> Option<Found> {
        let lookup = |k: &str| env.get(k).cloned();
        let mut found = None;
        for f in files {
            let text = if f.as_os_str() == "-" {
                opts.stdin.clone()?
            } else {
                std::fs::read_to_string(f).ok()?
            };
            // Errors here are reported by the full load that follows.
            let Ok(docs) = yaml::parse(&text) else {
                continue;
            };
            for d in docs {
                let Some(node) = d.get("name") else { continue };
                if let Some(n) = node.as_str() {
                    let n = if opts.skip_interpolation {
                        n.to_string()
                    } else {
                        interpolate::substitute(n, &lookup).unwrap_or_else(|_| n.to_string())
                    };
                    if !n.is_empty() {
                        found = Some((n, "name", Some((f.clone(), node.mark))));
                    }
                }
            }
        }
        found
    };
    if let Some((raw, from, at)) = explicit.or_else(from_files) {
        // Normalized as docker compose does, so the result is always
        // `[a-z0-9][a-z0-9_-]*`: never a path, whatever was asked for.
        let n = normalize_project_name(&raw);
        let why = if n.is_empty() {
            Some("it must contain a lowercase letter or digit".to_string())
        } else {
            names::why_invalid(&n)
        };
        if let Some(why) = why {
            let e = LoadError::new(format!("invalid project name {raw:?} (from {from}): {why}"));
            return Err(match at {
                Some((file, mark)) => e.key("name").at(&file, mark.line, mark.column),
                None => e,
            });
        }
        return Ok(n);
    }
    let base = project_dir
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let n = normalize_project_name(&base);
    if n.is_empty() {
        return Err(LoadError::new(format!(
            "cannot derive a project name from the directory {}: use -p NAME",
            project_dir.display()
        )));
    }
    Ok(n)
}

/// Normalize a project name to `[a-z0-9_-]`, starting with a letter or digit.
pub fn normalize_project_name(name: &str) -> String {
    let lower: String = name
        .to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-')
        .collect();
    lower.trim_start_matches(['_', '-']).to_string()
}

impl Loader<'_> {
    fn read(&mut self, file: &Path) -> Result<(u32, String), LoadError> {
        let text = if file.as_os_str() == "-" {
            self.opts.stdin.clone().unwrap_or_default()
        } else if file.exists() && !file.is_file() {
            // A directory or a device (`include: /dev/zero`) is never a compose file.
            return Err(LoadError::new(format!(
                "{} is not a regular file",
                file.display()
            )));
        } else {
            std::fs::read_to_string(file).map_err(|e| {
                let reason = match e.kind() {
                    std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
                    std::io::ErrorKind::InvalidData => "not valid UTF-8".to_string(),
                    _ => e.to_string(),
                };
                LoadError::new(format!("open {}: {reason}", file.display()))
            })?
        };
        self.sources.push((file.to_path_buf(), text.clone()));
        Ok(((self.sources.len() - 1) as u32, text))
    }

    /// Parse one file into its spec-shaped document (includes and extends applied).
    fn load_file(
        &mut self,
        file: &Path,
        project_dir: &Path,
        is_main: bool,
        include_stack: &mut Vec<PathBuf>,
    ) -> Result<Node, LoadError> {
        let (id, text) = self.read(file)?;
        let mut doc = self.parse(file, id, &text)?;
        if !self.opts.skip_interpolation {
            self.interpolate(&mut doc, file)?;
        }
        if legacy::is_v1(&doc) {
            if is_main {
                self.legacy_v1 = true;
            }
            doc = legacy::to_spec(doc).map_err(|e| legacy_error(e, file))?;
        } else if doc.get("version").is_some() {
            self.warnings.push(format!(
                "{}: the attribute `version` is obsolete, it will be ignored",
                file.display()
            ));
        }
        // `svc:` with nothing under it is an empty service to compose-go.
        if let Some(svcs) = doc
            .as_map_mut()
            .and_then(|m| m.get_mut("services"))
            .and_then(Node::as_map_mut)
        {
            for svc in svcs.values_mut() {
                if matches!(svc.value, Value::Null) {
                    svc.value = Value::Map(IndexMap::new());
                }
            }
        }
        schema::validate(&doc, file)?;
        include_stack.push(file.to_path_buf());
        self.apply_includes(&mut doc, file, project_dir, include_stack)?;
        include_stack.pop();
        self.apply_extends(&mut doc, file, &mut Vec::new())?;
        Ok(doc)
    }

    fn parse(&mut self, file: &Path, id: u32, text: &str) -> Result<Node, LoadError> {
        let docs = yaml::parse(text).map_err(|e| {
            LoadError::new(e.message.clone())
                .at(file, e.mark.line, e.mark.column)
                .with_snippet(text, e.mark.line, e.mark.column)
        })?;
        let mut merged: Option<Node> = None;
        for mut d in docs {
            d.stamp(id);
            if matches!(d.value, Value::Null) {
                continue;
            }
            if !matches!(d.value, Value::Map(_)) {
                return Err(LoadError::new(format!(
                    "the top level must be a mapping, not {}",
                    d.kind()
                ))
                .at(file, d.mark.line, d.mark.column));
            }
            merged = Some(match merged {
                None => d,
                Some(base) => merge::merge(base, d, &[]),
            });
        }
        match merged {
            Some(d) => Ok(d),
            // Nothing to point at but the start of the file.
            None => Err(LoadError::new("empty compose file").at(file, 1, 1)),
        }
    }

    fn interpolate(&mut self, doc: &mut Node, file: &Path) -> Result<(), LoadError> {
        let env = &self.env;
        let lookup = |k: &str| env.get(k).cloned();
        let mut unset = Vec::new();
        let mut variables = IndexMap::new();
        let mut failure = None;
        walk_strings(doc, &KeyPath::root(), &mut |path, node| {
            if failure.is_some() {
                return;
            }
            let Value::String(s) = &node.value else {
                return;
            };
            if !s.contains('$') {
                return;
            }
            variables.extend(interpolate::extract_variables(s));
            match interpolate::substitute_tracking_unset(s, &lookup, &mut |v| {
                unset.push(v.to_string())
            }) {
                Ok(out) => node.value = Value::String(out),
                Err(e) => {
                    let msg = interpolate::describe_at(&path.to_string(), &e);
                    failure = Some(LoadError::new(msg).at(file, node.mark.line, node.mark.column));
                }
            }
        });
        if let Some(e) = failure {
            return Err(e);
        }
        for v in unset {
            let w = format!("The \"{v}\" variable is not set. Defaulting to a blank string.");
            if !self.warnings.contains(&w) {
                self.warnings.push(w);
            }
        }
        for (k, v) in variables {
            self.variables.entry(k).or_insert(v);
        }
        Ok(())
    }

    fn apply_includes(
        &mut self,
        doc: &mut Node,
        file: &Path,
        project_dir: &Path,
        stack: &mut Vec<PathBuf>,
    ) -> Result<(), LoadError> {
        let Some(map) = doc.as_map_mut() else {
            return Ok(());
        };
        let Some(include) = map.shift_remove("include") else {
            return Ok(());
        };
        let items = include.as_seq().cloned().unwrap_or_default();
        let base_dir = file.parent().unwrap_or(project_dir).to_path_buf();
        for (i, item) in items.iter().enumerate() {
            let ipath = KeyPath::root().key("include").index(i);
            let (paths, item_dir, env_files) = match &item.value {
                Value::String(s) => (vec![s.clone()], None, Vec::new()),
                Value::Map(m) => {
                    let env_files = match m.get("env_file").map(|p| &p.value) {
                        Some(Value::String(s)) => vec![s.clone()],
                        Some(Value::Seq(v)) => v.iter().filter_map(Node::scalar_text).collect(),
                        _ => Vec::new(),
                    };
                    let paths = match m.get("path").map(|p| &p.value) {
                        Some(Value::String(s)) => vec![s.clone()],
                        Some(Value::Seq(v)) => v.iter().filter_map(Node::scalar_text).collect(),
                        _ => Vec::new(),
                    };
                    (
                        paths,
                        m.get("project_directory").and_then(Node::scalar_text),
                        env_files,
                    )
                }
                _ => (Vec::new(), None, Vec::new()),
            };
            let mut included: Option<Node> = None;
            for p in &paths {
                let target = absolute(&base_dir, Path::new(p));
                if stack.contains(&target) {
                    let chain: Vec<String> = stack
                        .iter()
                        .chain(std::iter::once(&target))
                        .map(|p| p.display().to_string())
                        .collect();
                    return Err(LoadError::new(format!(
                        "include cycle detected: {}",
                        chain.join(" -> ")
                    ))
                    .key(ipath.to_string())
                    .at(file, item.mark.line, item.mark.column));
                }
                let dir = item_dir
                    .as_deref()
                    .map(|d| absolute(&base_dir, Path::new(d)))
                    .unwrap_or_else(|| target.parent().unwrap_or(&base_dir).to_path_buf());
                // The included file is interpolated with this project's
                // environment, to which its env_file (by default its own
                // directory's .env) adds what is not set yet, as compose-go.
                let env = self
                    .include_environment(&env_files, &base_dir, &dir)
                    .map_err(|e| match e {
                        IncludeEnv::Missing(f) => {
                            LoadError::new(format!("couldn't find env file: {}", f.display()))
                                .key(ipath.key("env_file").to_string())
                                .at(file, item.mark.line, item.mark.column)
                        }
                        IncludeEnv::Load(e) => e,
                    })?;
                let outer = std::mem::replace(&mut self.env, env);
                let sub = self.load_file(&target, &dir, false, stack);
                self.env = outer;
                let mut sub = sub?;
                rebase_relative_paths(&mut sub, &dir);
                included = Some(match included {
                    None => sub,
                    Some(b) => merge::merge(b, sub, &[]),
                });
            }
            let Some(included) = included else { continue };
            // Included resources join the project; a service defined in both is a conflict.
            let Some(doc_map) = doc.as_map_mut() else {
                continue;
            };
            if let Some(inc_map) = included.as_map() {
                for (section, entries) in inc_map {
                    if section == "name" {
                        continue;
                    }
                    let Some(entries) = entries.as_map() else {
                        continue;
                    };
                    let target = doc_map
                        .entry(section.clone())
                        .or_insert_with(|| Node::new(Value::Map(IndexMap::new()), item.mark));
                    let Some(target) = target.as_map_mut() else {
                        continue;
                    };
                    for (name, def) in entries {
                        if target.contains_key(name) {
                            if section == "services" {
                                return Err(LoadError::new(format!(
                                    "services.{name} conflicts with imported resource"
                                ))
                                .at(
                                    file,
                                    item.mark.line,
                                    item.mark.column,
                                ));
                            }
                            continue;
                        }
                        target.insert(name.clone(), def.clone());
                    }
                }
            }
        }
        Ok(())
    }

    /// The environment an included file is interpolated with: this
    /// project's, plus the include's `env_file`s (relative to the including
    /// file; each must exist) or else the `.env` of the included project
    /// directory, for variables not set already.
    fn include_environment(
        &self,
        env_files: &[String],
        base_dir: &Path,
        include_dir: &Path,
    ) -> Result<IndexMap<String, String>, IncludeEnv> {
        let mut env = self.env.clone();
        let files: Vec<(PathBuf, bool)> = if env_files.is_empty() {
            vec![(include_dir.join(".env"), false)]
        } else {
            env_files
                .iter()
                .map(|f| (absolute(base_dir, Path::new(f)), true))
                .collect()
        };
        for (f, required) in files {
            if !f.is_file() {
                if required {
                    return Err(IncludeEnv::Missing(f));
                }
                continue;
            }
            let lookup = |k: &str| env.get(k).cloned();
            let parsed = crate::dotenv::parse_file(&f, &lookup).map_err(|e| {
                let line = e.line().unwrap_or(0);
                IncludeEnv::Load(LoadError::new(e.to_string()).at(
                    &f,
                    line,
                    if line > 0 { 1 } else { 0 },
                ))
            })?;
            for (k, v) in parsed {
                env.entry(k).or_insert(v);
            }
        }
        Ok(env)
    }

    fn apply_extends(
        &mut self,
        doc: &mut Node,
        file: &Path,
        stack: &mut Vec<(PathBuf, String)>,
    ) -> Result<(), LoadError> {
        let names: Vec<String> = match doc.get("services").and_then(Node::as_map) {
            Some(m) => m.keys().cloned().collect(),
            None => return Ok(()),
        };
        for name in names {
            self.extend_service(doc, file, &name, stack)?;
        }
        Ok(())
    }

    /// Resolve `extends` of `services.NAME` in `doc` (recursively), in place.
    fn extend_service(
        &mut self,
        doc: &mut Node,
        file: &Path,
        name: &str,
        stack: &mut Vec<(PathBuf, String)>,
    ) -> Result<(), LoadError> {
        let Some(service) = doc.get("services").and_then(|s| s.get(name)).cloned() else {
            return Ok(());
        };
        let Some(ext) = service.get("extends").cloned() else {
            return Ok(());
        };
        let spath = KeyPath::root().key("services").key(name).key("extends");
        let (base_name, base_file) = match &ext.value {
            Value::String(s) => (s.clone(), None),
            Value::Map(m) => (
                m.get("service")
                    .and_then(Node::scalar_text)
                    .unwrap_or_default(),
                m.get("file").and_then(Node::scalar_text),
            ),
            _ => (String::new(), None),
        };
        let here = (file.to_path_buf(), name.to_string());
        if stack.contains(&here) {
            let chain: Vec<String> = stack
                .iter()
                .chain(std::iter::once(&here))
                .map(|(f, s)| format!("{s} ({})", f.display()))
                .collect();
            return Err(
                LoadError::new(format!("extends cycle detected: {}", chain.join(" -> ")))
                    .key(spath.to_string())
                    .at(file, ext.mark.line, ext.mark.column),
            );
        }
        if stack.len() >= MAX_EXTENDS_DEPTH {
            let first = stack.first().map(|(_, s)| s.as_str()).unwrap_or(name);
            return Err(LoadError::new(format!(
                "extends chain deeper than {MAX_EXTENDS_DEPTH} services (starting at service {first:?})"
            ))
            .key(spath.to_string())
            .at(file, ext.mark.line, ext.mark.column));
        }
        stack.push(here);
        let base = match base_file {
            None => {
                if doc
                    .get("services")
                    .and_then(|s| s.get(&base_name))
                    .is_none()
                {
                    stack.pop();
                    return Err(LoadError::new(format!(
                        "cannot extend service {name:?}: service {base_name:?} not found"
                    ))
                    .key(spath.to_string())
                    .at(file, ext.mark.line, ext.mark.column));
                }
                self.extend_service(doc, file, &base_name, stack)?;
                doc.get("services")
                    .and_then(|s| s.get(&base_name))
                    .cloned()
                    .unwrap_or_else(|| Node::new(Value::Null, ext.mark))
            }
            Some(other) => {
                let dir = file.parent().unwrap_or(Path::new("/"));
                let other_path = absolute(dir, Path::new(&other));
                let (id, text) = self.read(&other_path).map_err(|e| {
                    e.key(spath.to_string())
                        .at(file, ext.mark.line, ext.mark.column)
                })?;
                let mut other_doc = self.parse(&other_path, id, &text)?;
                if !self.opts.skip_interpolation {
                    self.interpolate(&mut other_doc, &other_path)?;
                }
                if legacy::is_v1(&other_doc) {
                    other_doc =
                        legacy::to_spec(other_doc).map_err(|e| legacy_error(e, &other_path))?;
                }
                if other_doc
                    .get("services")
                    .and_then(|s| s.get(&base_name))
                    .is_none()
                {
                    stack.pop();
                    return Err(LoadError::new(format!(
                        "cannot extend service {name:?}: service {base_name:?} not found in {}",
                        other_path.display()
                    ))
                    .key(spath.to_string())
                    .at(file, ext.mark.line, ext.mark.column));
                }
                self.extend_service(&mut other_doc, &other_path, &base_name, stack)?;
                let mut base = other_doc
                    .get("services")
                    .and_then(|s| s.get(&base_name))
                    .cloned()
                    .unwrap_or_else(|| Node::new(Value::Null, ext.mark));
                let other_dir = other_path.parent().unwrap_or(Path::new("/")).to_path_buf();
                rebase_service_paths(&mut base, &other_dir);
                base
            }
        };
        stack.pop();
        let mut local = service;
        if let Some(m) = local.as_map_mut() {
            m.shift_remove("extends");
        }
        let mut base = base;
        if let Some(m) = base.as_map_mut() {
            m.shift_remove("extends");
        }
        let base = if matches!(base.value, Value::Null) {
            Node::new(Value::Map(IndexMap::new()), ext.mark)
        } else {
            base
        };
        let merged = merge::merge(base, local, &["services", name]);
        if let Some(svcs) = doc
            .as_map_mut()
            .and_then(|m| m.get_mut("services"))
            .and_then(Node::as_map_mut)
        {
            svcs.insert(name.to_string(), merged);
        }
        Ok(())
    }

    fn finish(
        mut self,
        merged: &mut Node,
        files: Vec<PathBuf>,
        project_dir: PathBuf,
        name: String,
    ) -> Result<Loaded, LoadError> {
        // Profiles.
        let mut active: Vec<String> = self.opts.profiles.clone();
        if let Some(p) = self.env.get("COMPOSE_PROFILES") {
            active.extend(
                p.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from),
            );
        }
        let mut all_profiles: Vec<String> = Vec::new();
        if let Some(svcs) = merged
            .as_map_mut()
            .and_then(|m| m.get_mut("services"))
            .and_then(Node::as_map_mut)
        {
            let mut disabled = Vec::new();
            for (svc_name, svc) in svcs.iter() {
                let profiles: Vec<String> = svc
                    .get("profiles")
                    .and_then(Node::as_seq)
                    .map(|s| s.iter().filter_map(Node::scalar_text).collect())
                    .unwrap_or_default();
                for p in &profiles {
                    if !all_profiles.contains(p) {
                        all_profiles.push(p.clone());
                    }
                }
                let enabled = profiles.is_empty()
                    || profiles
                        .iter()
                        .any(|p| active.iter().any(|a| a == p || a == "*"));
                if !enabled {
                    disabled.push(svc_name.clone());
                }
            }
            for d in disabled {
                svcs.shift_remove(&d);
            }
        }
        all_profiles.sort();

        let json = merged.to_json();
        let env = &self.env;
        let lookup = |k: &str| env.get(k).cloned();
        let ctx = Context {
            project_name: &name,
            project_dir: &project_dir,
            lookup: &lookup,
            resolve_environment: !self.opts.skip_env_resolution,
            legacy_v1: self.legacy_v1,
        };
        let document = normalize::normalize(json, &ctx)
            .map_err(|e| self.locate(merged, &e.path, e.message))?;
        let typed = if self.opts.skip_interpolation {
            normalize::without_unresolved(&document)
        } else {
            document.clone()
        };
        let project: Project = serde_json::from_value(typed).map_err(|e| {
            LoadError::new(format!(
                "internal: normalized project does not fit the model: {e}"
            ))
        })?;
        // Names become paths under berth's state: checked even with
        // consistency checks off.
        names::check(&project, self.opts.skip_interpolation)
            .map_err(|e| self.locate(merged, &e.path, e.message))?;
        if !self.opts.skip_consistency {
            consistency::check(&project).map_err(|e| self.locate(merged, &e.path, e.message))?;
        }
        crate::extensions::check(&project).map_err(|e| self.locate(merged, &e.path, e.message))?;
        self.warnings.sort();
        self.warnings.dedup();
        Ok(Loaded {
            project,
            document,
            files,
            project_dir,
            environment: self.env,
            all_profiles,
            variables: self.variables,
            warnings: self.warnings,
        })
    }

    /// An error at `path`, pointed at the file and line the value came from.
    fn locate(&self, doc: &Node, path: &KeyPath, message: String) -> LoadError {
        let mut node = Some(doc);
        let mut found = doc;
        for seg in path.segments() {
            node = match (node, seg) {
                (Some(n), Ok(key)) => n.get(key),
                (Some(n), Err(i)) => n.as_seq().and_then(|s| s.get(i)),
                (None, _) => None,
            };
            if let Some(n) = node {
                found = n;
            }
        }
        let e = LoadError::new(message).key(path.to_string());
        match self.sources.get(found.mark.file as usize) {
            Some((file, _)) if found.mark.line > 0 => {
                e.at(file, found.mark.line, found.mark.column)
            }
            Some((file, _)) => e.in_file(file),
            None => e,
        }
    }
}

fn legacy_error((path, mark, message): legacy::LegacyError, file: &Path) -> LoadError {
    LoadError::new(message)
        .key(path.to_string())
        .at(file, mark.line, mark.column)
}

/// Visit every string scalar with its key path.
fn walk_strings(node: &mut Node, path: &KeyPath, f: &mut dyn FnMut(&KeyPath, &mut Node)) {
    match &mut node.value {
        Value::Map(m) => {
            for (k, v) in m.iter_mut() {
                walk_strings(v, &path.key(k), f);
            }
        }
        Value::Seq(items) => {
            for (i, v) in items.iter_mut().enumerate() {
                walk_strings(v, &path.index(i), f);
            }
        }
        Value::String(_) => f(path, node),
        _ => {}
    }
}

/// Make the relative paths of an included file's services absolute, so they
/// keep pointing where its author meant once merged into another directory.
fn rebase_relative_paths(doc: &mut Node, dir: &Path) {
    if let Some(svcs) = doc
        .as_map_mut()
        .and_then(|m| m.get_mut("services"))
        .and_then(Node::as_map_mut)
    {
        for svc in svcs.values_mut() {
            rebase_service_paths(svc, dir);
        }
    }
}

fn rebase_service_paths(svc: &mut Node, dir: &Path) {
    let rebase = |s: &str| -> Option<String> {
        if s.starts_with('/') || s.starts_with('~') || s.contains("://") || s.starts_with("git@") {
            None
        } else {
            Some(
                normalize::clean_path(&dir.join(s))
                    .to_string_lossy()
                    .into_owned(),
            )
        }
    };
    let Some(m) = svc.as_map_mut() else { return };
    if let Some(build) = m.get_mut("build") {
        match &mut build.value {
            Value::String(s) => {
                if let Some(r) = rebase(s) {
                    *s = r;
                }
            }
            Value::Map(b) => match b.get_mut("context") {
                Some(ctx) => {
                    if let Value::String(s) = &mut ctx.value {
                        if let Some(r) = rebase(s) {
                            *s = r;
                        }
                    }
                }
                None => {
                    let mark = build.mark;
                    if let Value::Map(b) = &mut build.value {
                        b.insert(
                            "context".into(),
                            Node::new(Value::String(dir.to_string_lossy().into_owned()), mark),
                        );
                    }
                }
            },
            _ => {}
        }
    }
    if let Some(env_file) = m.get_mut("env_file") {
        match &mut env_file.value {
            Value::String(s) => {
                if let Some(r) = rebase(s) {
                    *s = r;
                }
            }
            Value::Seq(items) => {
                for item in items {
                    match &mut item.value {
                        Value::String(s) => {
                            if let Some(r) = rebase(s) {
                                *s = r;
                            }
                        }
                        Value::Map(e) => {
                            if let Some(Value::String(s)) = e.get_mut("path").map(|p| &mut p.value)
                            {
                                if let Some(r) = rebase(s) {
                                    *s = r;
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    if let Some(Value::Seq(vols)) = m.get_mut("volumes").map(|v| &mut v.value) {
        for vol in vols {
            match &mut vol.value {
                Value::String(s) if s.starts_with('.') => {
                    if let Some((src, rest)) = s.split_once(':') {
                        if let Some(r) = rebase(src) {
                            *s = format!("{r}:{rest}");
                        }
                    }
                }
                Value::Map(v) => {
                    let is_bind = v.get("type").and_then(Node::as_str) == Some("bind");
                    if is_bind {
                        if let Some(Value::String(s)) = v.get_mut("source").map(|p| &mut p.value) {
                            if let Some(r) = rebase(s) {
                                *s = r;
                            }
                        }
                    }
                }
                _ => {}
            }
        }
    }
}
