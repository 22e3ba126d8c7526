//! The runtime store: verified runtimes under berth's state dir, shared by
//! every project, one content-addressed directory each:
//!
//! ```text
//! <state>/runtimes/node/<version>-<arch>-<digest>/   bin/node, bin/npm, lib/…, berth-runtime.json
//! <state>/runtimes/cache/                             release indexes (TTL, offline fallback)
//! <state>/runtimes/resolved.json                      spec → version, as last resolved
//! <state>/runtimes/npm-cache/                         npm's download cache (npm_config_cache)
//! ```
//!
//! `<digest>` is the first 16 hex digits of the sha256 of the verified
//! artifacts (the node archive, and the npm package when it is a separate
//! download). An install downloads to a scratch file, verifies it, unpacks
//! into a scratch directory next to the final one and renames it into
//! place: a failure at any step leaves nothing behind but scratch, which is
//! removed on the way out (and by `prune` after a crash).

use crate::config::{RuntimesConfig, SourceKind};
use crate::fetch::{scratch_path, Downloaded, Expected, FetchError, Http, Progress, ProgressFn};
use crate::index::{host_arch, npm_for_node, IndexError, Release, ReleaseIndex};
use crate::spec::{RuntimeKind, RuntimeSpec, VersionReq};
use crate::version::Version;
use berth_image::unpack::{decompress, unpack, UnpackError, UnpackOptions};
use sha2::{Digest as _, Sha256};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const META_FILE: &str = "berth-runtime.json";
const MAX_INDEX_BYTES: u64 = 256 << 20;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error("unpacking {what}: {source}")]
    Unpack {
        what: String,
        #[source]
        source: UnpackError,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{what}: {reason}")]
    Layout { what: String, reason: String },
    #[error("SHASUMS256.txt of node {version} has no line for {file}")]
    NoChecksum { version: Version, file: String },
    #[error("cannot resolve {spec}: {reason} (and no cached index or earlier resolution to fall back on)")]
    Offline { spec: String, reason: String },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A spec resolved to one published release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub kind: RuntimeKind,
    pub version: Version,
    pub source: SourceKind,
    /// The release as its index described it (`None` when the version came
    /// from the store or an earlier resolution without asking the index).
    pub release: Option<Release>,
}

/// One artifact an installed runtime was built from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ArtifactRecord {
    pub url: String,
    pub size: u64,
    pub sha256: String,
    pub integrity: String,
}

/// The metadata file of an installed runtime.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RuntimeMeta {
    pub kind: RuntimeKind,
    pub version: Version,
    pub arch: String,
    pub source: SourceKind,
    /// `sha256:<hex>` over the artifacts; its first 16 hex digits name the directory.
    pub digest: String,
    pub artifacts: Vec<ArtifactRecord>,
    /// The npm that `bin/npm` runs, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub npm: Option<Version>,
    /// Seconds since the epoch.
    pub installed_at: u64,
}

/// A runtime ready to use: `root/bin/node`, `root/bin/npm`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledRuntime {
    pub root: PathBuf,
    pub version: Version,
    /// `sha256:<hex>` of the verified artifacts.
    pub digest: String,
    pub meta: RuntimeMeta,
}

impl InstalledRuntime {
    pub fn node(&self) -> PathBuf {
        self.root.join("bin/node")
    }
    pub fn npm(&self) -> PathBuf {
        self.root.join("bin/npm")
    }
    /// The directory name (`4.2.2-x64-0123456789abcdef`).
    pub fn id(&self) -> String {
        self.root
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Resolutions {
    #[serde(default)]
    entries: std::collections::BTreeMap<String, Version>,
}

/// berth's runtime store and the sources that fill it.
#[derive(Debug, Clone)]
pub struct Runtimes {
    root: PathBuf,
    config: RuntimesConfig,
    http: Http,
    arch: String,
}

impl Runtimes {
    /// The store under `state_dir` (`berth_oci::store::state_dir()`), with
    /// sources from berth's config file and environment.
    pub fn open(state_dir: &Path) -> Result<Runtimes, crate::Error> {
        let config = RuntimesConfig::from_env_and_file()?;
        Ok(Runtimes::with_config(state_dir, config)?)
    }

    pub fn with_config(state_dir: &Path, config: RuntimesConfig) -> Result<Runtimes, StoreError> {
        let root = state_dir.join("runtimes");
        for d in [
            root.join("node"),
            root.join("cache"),
            root.join("npm-cache"),
        ] {
            fs::create_dir_all(&d).map_err(io_err(&d))?;
        }
        Ok(Runtimes {
            root,
            config,
            http: Http::new(),
            arch: host_arch().to_string(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn config(&self) -> &RuntimesConfig {
        &self.config
    }

    pub fn http(&self) -> &Http {
        &self.http
    }

    /// npm's shared download cache: mount it and point `npm_config_cache` at it.
    pub fn npm_cache_dir(&self) -> PathBuf {
        self.root.join("npm-cache")
    }

    fn kind_dir(&self, kind: RuntimeKind) -> PathBuf {
        self.root.join(kind.name())
    }

    fn index_cache_path(&self) -> PathBuf {
        self.root.join("cache").join(format!(
            "node-{}-linux-{}.json",
            self.config.node_source, self.arch
        ))
    }

    fn index_url(&self) -> String {
        match self.config.node_source {
            SourceKind::Dist => format!("{}/index.json", self.config.node_mirror),
            SourceKind::Npm => format!("{}/node-linux-{}", self.config.npm_registry, self.arch),
        }
    }

    fn parse_index(&self, bytes: &[u8]) -> Result<ReleaseIndex, IndexError> {
        match self.config.node_source {
            SourceKind::Dist => ReleaseIndex::from_dist_json(bytes, &self.arch),
            SourceKind::Npm => ReleaseIndex::from_npm_packument(bytes, &self.arch),
        }
    }

    /// The cached release index, whatever its age, without the network.
    pub fn cached_index(&self) -> Option<ReleaseIndex> {
        fs::read(self.index_cache_path())
            .ok()
            .and_then(|b| self.parse_index(&b).ok())
    }

    /// The release index of the configured source: the cached copy while it
    /// is younger than the TTL, else a fresh one; when the source cannot be
    /// reached, the cached copy whatever its age.
    pub fn index(&self, progress: ProgressFn<'_>) -> Result<ReleaseIndex, StoreError> {
        let cache = self.index_cache_path();
        let age = fs::metadata(&cache)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok());
        if age.is_some_and(|a| a < self.config.index_ttl) {
            if let Ok(idx) = fs::read(&cache)
                .map_err(|_| ())
                .and_then(|b| self.parse_index(&b).map_err(|_| ()))
            {
                return Ok(idx);
            }
        }
        let url = self.index_url();
        progress(&Progress::Step(&format!("fetching release index {url}")));
        let accept = match self.config.node_source {
            // The full packument: only it has the publish times (`time`)
            // that tell which releases are newer than the vulnerability data.
            SourceKind::Npm => Some("application/json"),
            SourceKind::Dist => None,
        };
        match self.http.get(&url, accept, MAX_INDEX_BYTES) {
            Ok(bytes) => {
                let idx = self.parse_index(&bytes)?;
                write_atomic(&cache, &bytes)?;
                Ok(idx)
            }
            Err(e) => match fs::read(&cache) {
                Ok(bytes) => {
                    progress(&Progress::Step(&format!(
                        "{e}; using the cached release index"
                    )));
                    Ok(self.parse_index(&bytes)?)
                }
                Err(_) => Err(e.into()),
            },
        }
    }

    fn resolutions_path(&self) -> PathBuf {
        self.root.join("resolved.json")
    }

    fn resolution_key(&self, spec: &RuntimeSpec) -> String {
        format!("{spec} {} linux-{}", self.config.node_source, self.arch)
    }

    fn record_resolution(&self, spec: &RuntimeSpec, version: &Version) {
        let path = self.resolutions_path();
        let mut r: Resolutions = fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let key = self.resolution_key(spec);
        if r.entries.get(&key) != Some(version) {
            r.entries.insert(key, version.clone());
            if let Ok(bytes) = serde_json::to_vec_pretty(&r) {
                let _ = write_atomic(&path, &bytes);
            }
        }
    }

    fn recorded_resolution(&self, spec: &RuntimeSpec) -> Option<Version> {
        let r: Resolutions =
            serde_json::from_slice(&fs::read(self.resolutions_path()).ok()?).ok()?;
        r.entries.get(&self.resolution_key(spec)).cloned()
    }

    /// The release `spec` names. An exact version already in the store is
    /// answered without the network; otherwise the index decides (cached
    /// for the TTL), and the answer is recorded so that, with no index at
    /// all reachable, the same spec still resolves to the same version.
    pub fn resolve(&self, spec: &RuntimeSpec) -> Result<Resolved, StoreError> {
        self.resolve_with(spec, &mut crate::fetch::quiet)
    }

    pub fn resolve_with(
        &self,
        spec: &RuntimeSpec,
        progress: ProgressFn<'_>,
    ) -> Result<Resolved, StoreError> {
        if let VersionReq::Exact(v) = &spec.req {
            if self.find_installed(spec.kind, v)?.is_some() {
                return Ok(Resolved {
                    kind: spec.kind,
                    version: v.clone(),
                    source: self.config.node_source,
                    release: None,
                });
            }
        }
        match self.index(progress) {
            Ok(idx) => {
                let release = idx.resolve(spec)?.clone();
                self.record_resolution(spec, &release.version);
                Ok(Resolved {
                    kind: spec.kind,
                    version: release.version.clone(),
                    source: idx.source,
                    release: Some(release),
                })
            }
            Err(StoreError::Fetch(e)) => match self.recorded_resolution(spec) {
                Some(version) => Ok(Resolved {
                    kind: spec.kind,
                    version,
                    source: self.config.node_source,
                    release: None,
                }),
                None => Err(StoreError::Offline {
                    spec: spec.to_string(),
                    reason: e.to_string(),
                }),
            },
            Err(e) => Err(e),
        }
    }

    /// Every runtime in the store, by version.
    pub fn installed(&self) -> Result<Vec<InstalledRuntime>, StoreError> {
        let dir = self.kind_dir(RuntimeKind::Node);
        let mut out = Vec::new();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(io_err(&dir)(e)),
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let root = entry.path();
            let Some(meta) = fs::read(root.join(META_FILE))
                .ok()
                .and_then(|b| serde_json::from_slice::<RuntimeMeta>(&b).ok())
            else {
                continue;
            };
            out.push(InstalledRuntime {
                version: meta.version.clone(),
                digest: meta.digest.clone(),
                root,
                meta,
            });
        }
        out.sort_by(|a, b| a.version.cmp(&b.version).then_with(|| a.root.cmp(&b.root)));
        Ok(out)
    }

    /// The installed runtime of `version` for this machine's architecture.
    pub fn find_installed(
        &self,
        kind: RuntimeKind,
        version: &Version,
    ) -> Result<Option<InstalledRuntime>, StoreError> {
        Ok(self.installed()?.into_iter().find(|r| {
            r.meta.kind == kind
                && &r.version == version
                && r.meta.arch == self.arch
                && r.node().is_file()
        }))
    }

    /// Make `resolved` available in the store: the installed copy if there
    /// is one, else fetch, verify and install it.
    pub fn ensure(
        &self,
        resolved: &Resolved,
        progress: ProgressFn<'_>,
    ) -> Result<InstalledRuntime, StoreError> {
        if let Some(r) = self.find_installed(resolved.kind, &resolved.version)? {
            return Ok(r);
        }
        let release = match &resolved.release {
            Some(r) => r.clone(),
            None => {
                let idx = self.index(progress)?;
                idx.find(&resolved.version)
                    .cloned()
                    .ok_or_else(|| IndexError::UnknownVersion {
                        version: resolved.version.clone(),
                        arch: self.arch.clone(),
                        via: idx.source,
                    })?
            }
        };
        self.install(&release, progress)
    }

    fn install(
        &self,
        release: &Release,
        progress: ProgressFn<'_>,
    ) -> Result<InstalledRuntime, StoreError> {
        let dir = self.kind_dir(RuntimeKind::Node);
        let staging = Scratch(scratch_path(&dir, "install"));
        fs::create_dir(&staging.0).map_err(io_err(&staging.0))?;
        let root = staging.0.join("root");
        let v = &release.version;
        let mut artifacts = Vec::new();
        let npm_version;
        let source = match &release.npm_dist {
            Some(dist) => {
                // npm source: bin/node from node-linux-<arch>, npm from its own package.
                progress(&Progress::Step(&format!(
                    "fetching node {v} (npm registry)"
                )));
                let node = self.http.download(
                    &dist.tarball,
                    &staging.0,
                    &Expected::Integrity(dist.integrity.clone()),
                    progress,
                )?;
                let unpacked = staging.0.join("node");
                unpack_file(&node, &unpacked, &format!("node {v}"))?;
                let bin = root.join("bin");
                fs::create_dir_all(&bin).map_err(io_err(&bin))?;
                let from = unpacked.join("package/bin/node");
                if !from.is_file() {
                    return Err(StoreError::Layout {
                        what: dist.tarball.clone(),
                        reason: "the package has no bin/node".into(),
                    });
                }
                rename(&from, &bin.join("node"))?;
                artifacts.push(record(&dist.tarball, &node));
                let npm = npm_for_node(v, release.npm.as_ref());
                progress(&Progress::Step(&format!("fetching npm {npm}")));
                let (url, npm_file) = self.download_npm(&npm, &staging.0, progress)?;
                let npm_unpacked = staging.0.join("npm");
                unpack_file(&npm_file, &npm_unpacked, &format!("npm {npm}"))?;
                let lib = root.join("lib/node_modules");
                fs::create_dir_all(&lib).map_err(io_err(&lib))?;
                rename(&npm_unpacked.join("package"), &lib.join("npm"))?;
                artifacts.push(record(&url, &npm_file));
                npm_version = Some(npm);
                SourceKind::Npm
            }
            None => {
                let base = format!("{}/v{v}", self.config.node_mirror);
                let file = format!("node-v{v}-linux-{}.tar.gz", self.arch);
                progress(&Progress::Step(&format!("fetching {base}/SHASUMS256.txt")));
                let sums = self
                    .http
                    .get(&format!("{base}/SHASUMS256.txt"), None, 1 << 20)?;
                let sha = shasum_for(&String::from_utf8_lossy(&sums), &file).ok_or_else(|| {
                    StoreError::NoChecksum {
                        version: v.clone(),
                        file: file.clone(),
                    }
                })?;
                let url = format!("{base}/{file}");
                progress(&Progress::Step(&format!("fetching {url}")));
                let tarball =
                    self.http
                        .download(&url, &staging.0, &Expected::Sha256(sha), progress)?;
                let unpacked = staging.0.join("node");
                unpack_file(&tarball, &unpacked, &file)?;
                let top = unpacked.join(format!("node-v{v}-linux-{}", self.arch));
                if !top.join("bin/node").is_file() {
                    return Err(StoreError::Layout {
                        what: url,
                        reason: format!("no node-v{v}-linux-{}/bin/node inside", self.arch),
                    });
                }
                rename(&top, &root)?;
                artifacts.push(record(&url, &tarball));
                npm_version = release.npm.clone();
                SourceKind::Dist
            }
        };
        progress(&Progress::Step("verified; installing"));
        link_npm(&root)?;
        set_mode(&root.join("bin/node"), 0o755)?;
        let mut hasher = Sha256::new();
        for a in &artifacts {
            hasher.update(format!("{} {}\n", a.sha256, a.size).as_bytes());
        }
        let digest = if artifacts.len() == 1 {
            artifacts[0].sha256.clone()
        } else {
            hex::encode(hasher.finalize())
        };
        let meta = RuntimeMeta {
            kind: RuntimeKind::Node,
            version: v.clone(),
            arch: self.arch.clone(),
            source,
            digest: format!("sha256:{digest}"),
            artifacts,
            npm: npm_version,
            installed_at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or(Duration::ZERO)
                .as_secs(),
        };
        let meta_bytes = serde_json::to_vec_pretty(&meta).map_err(|e| StoreError::Layout {
            what: META_FILE.into(),
            reason: e.to_string(),
        })?;
        fs::write(root.join(META_FILE), meta_bytes).map_err(io_err(&root.join(META_FILE)))?;
        let final_dir = dir.join(format!("{v}-{}-{}", self.arch, &digest[..16]));
        match fs::rename(&root, &final_dir) {
            Ok(()) => {}
            // Someone installed the same artifacts meanwhile: theirs is as good.
            Err(_) if final_dir.join(META_FILE).is_file() => {}
            Err(e) => return Err(io_err(&final_dir)(e)),
        }
        drop(staging);
        Ok(InstalledRuntime {
            root: final_dir,
            version: v.clone(),
            digest: meta.digest.clone(),
            meta,
        })
    }

    fn download_npm(
        &self,
        npm: &Version,
        dir: &Path,
        progress: ProgressFn<'_>,
    ) -> Result<(String, Downloaded), StoreError> {
        let doc_url = format!("{}/npm/{npm}", self.config.npm_registry);
        let doc = self
            .http
            .get(&doc_url, Some("application/json"), 16 << 20)?;
        let json: serde_json::Value =
            serde_json::from_slice(&doc).map_err(|e| StoreError::Layout {
                what: doc_url.clone(),
                reason: e.to_string(),
            })?;
        let dist = json.get("dist");
        let field = |k: &str| {
            dist.and_then(|d| d.get(k))
                .and_then(|x| x.as_str())
                .map(String::from)
        };
        let (Some(tarball), Some(integrity)) = (field("tarball"), field("integrity")) else {
            return Err(StoreError::Layout {
                what: doc_url,
                reason: "no dist.tarball or dist.integrity".into(),
            });
        };
        let file = self
            .http
            .download(&tarball, dir, &Expected::Integrity(integrity), progress)?;
        Ok((tarball, file))
    }

    /// Remove one installed runtime.
    pub fn remove(&self, runtime: &InstalledRuntime) -> Result<(), StoreError> {
        // Rename first so a half-removed tree never looks installed.
        let doomed = scratch_path(&self.kind_dir(runtime.meta.kind), "remove");
        rename(&runtime.root, &doomed)?;
        fs::remove_dir_all(&doomed).map_err(io_err(&doomed))
    }

    /// Leftovers of interrupted installs and removals.
    pub fn remove_scratch(&self) -> Result<usize, StoreError> {
        let dir = self.kind_dir(RuntimeKind::Node);
        let mut n = 0;
        for entry in fs::read_dir(&dir).map_err(io_err(&dir))?.flatten() {
            if entry.file_name().to_string_lossy().starts_with(".tmp-") {
                let p = entry.path();
                let _ = fs::remove_dir_all(&p).or_else(|_| fs::remove_file(&p));
                n += 1;
            }
        }
        Ok(n)
    }
}

/// A scratch path removed (file or tree) when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn record(url: &str, d: &Downloaded) -> ArtifactRecord {
    ArtifactRecord {
        url: url.to_string(),
        size: d.size,
        sha256: d.sha256.clone(),
        integrity: d.integrity.clone(),
    }
}

fn rename(from: &Path, to: &Path) -> Result<(), StoreError> {
    fs::rename(from, to).map_err(io_err(to))
}

fn set_mode(path: &Path, mode: u32) -> Result<(), StoreError> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io_err(path))
}

fn unpack_file(file: &Downloaded, dest: &Path, what: &str) -> Result<(), StoreError> {
    let f = fs::File::open(&file.path).map_err(io_err(&file.path))?;
    let reader = decompress(Box::new(io::BufReader::new(f))).map_err(io_err(&file.path))?;
    unpack(reader, dest, UnpackOptions::default()).map_err(|source| StoreError::Unpack {
        what: what.to_string(),
        source,
    })?;
    Ok(())
}

/// `bin/npm` (and `bin/npx` where npm has it) as the official tarball lays
/// them out: relative links into `lib/node_modules/npm/bin`.
fn link_npm(root: &Path) -> Result<(), StoreError> {
    let npm_bin = root.join("lib/node_modules/npm/bin");
    for (link, target) in [("npm", "npm-cli.js"), ("npx", "npx-cli.js")] {
        let at = root.join("bin").join(link);
        if fs::symlink_metadata(&at).is_ok() || !npm_bin.join(target).is_file() {
            continue;
        }
        std::os::unix::fs::symlink(format!("../lib/node_modules/npm/bin/{target}"), &at)
            .map_err(io_err(&at))?;
        set_mode(&npm_bin.join(target), 0o755)?;
    }
    Ok(())
}

/// The hex sha256 `SHASUMS256.txt` gives for `file`.
pub fn shasum_for(text: &str, file: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let mut parts = line.split_whitespace();
        let (Some(sum), Some(name)) = (parts.next(), parts.next()) else {
            return None;
        };
        let name = name.trim_start_matches('*');
        (name == file && sum.len() == 64 && sum.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| sum.to_ascii_lowercase())
    })
}

pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let tmp = scratch_path(dir, "write");
    fs::write(&tmp, bytes).map_err(io_err(&tmp))?;
    fs::rename(&tmp, path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        io_err(path)(e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shasums_lines() {
        let text = format!(
            "{a}  node-v4.2.2-linux-x64.tar.gz\n{b}  node-v4.2.2-linux-x64.tar.xz\n{c} *node-v4.2.2.pkg\n",
            a = "a".repeat(64),
            b = "b".repeat(64),
            c = "c".repeat(64)
        );
        assert_eq!(
            shasum_for(&text, "node-v4.2.2-linux-x64.tar.gz"),
            Some("a".repeat(64))
        );
        assert_eq!(shasum_for(&text, "node-v4.2.2.pkg"), Some("c".repeat(64)));
        assert_eq!(shasum_for(&text, "node-v4.2.2-linux-x64.tar"), None);
        assert_eq!(shasum_for("xyz  node.tar.gz", "node.tar.gz"), None);
    }
}
