//! berth's image store: an OCI image layout on disk.
//!
//! ```text
//! <root>/oci-layout              {"imageLayoutVersion": "1.0.0"}
//! <root>/index.json              references: one descriptor per name, the full
//!                                reference in `org.opencontainers.image.ref.name`
//! <root>/blobs/sha256/<hex>      content, named by its digest
//! <root>/ingest/                 blobs being written (never read from)
//! <root>/index.lock              held while the index changes or blobs are collected
//! ```
//!
//! Crash safety: every file appears by `rename` after its data is fsynced,
//! so a reader sees the old or the new version, never a torn one; a blob is
//! renamed into place only once its digest (and size, if known) has been
//! verified. Concurrent writers serialize on the lock for the index; blob
//! writes need no lock because a name fully determines its content.

use crate::digest::{Digest, HashingWriter};
use crate::media;
use crate::spec::{Descriptor, ImageConfig, ImageIndex, ImageManifest, Platform, REF_NAME};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("size mismatch for {digest}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    #[error("no such image: {0}")]
    NoSuchImage(String),
    #[error("blob {0} is missing from the store")]
    MissingBlob(Digest),
    #[error("{what} {digest} is not valid JSON: {source}")]
    BadDocument {
        what: &'static str,
        digest: Digest,
        #[source]
        source: serde_json::Error,
    },
    #[error("the store index {} is corrupt: {source}", path.display())]
    BadIndex {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{name}: no manifest for platform {}/{}", platform.os, platform.architecture)]
    NoPlatform { name: String, platform: Platform },
    #[error("{0}: unsupported media type {1}")]
    UnsupportedMediaType(Digest, String),
}

type Result<T> = std::result::Result<T, StoreError>;

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Unreferenced blobs younger than this survive `gc`: another process may
/// have written them and not yet tagged the image that uses them.
const GC_GRACE: Duration = Duration::from_secs(10 * 60);

#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// A blob being written: hashed as it streams to a temp file in `ingest/`.
pub struct BlobWriter<'s> {
    store: &'s Store,
    tmp: PathBuf,
    out: Option<HashingWriter<BufWriter<File>>>,
}

/// An image as berth runs it: the reference's manifest for one platform.
#[derive(Debug, Clone)]
pub struct Image {
    /// The digest of the single-platform manifest (the image ID).
    pub manifest_digest: Digest,
    pub manifest: ImageManifest,
    pub config: ImageConfig,
    pub config_digest: Digest,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    pub removed_blobs: usize,
    pub freed_bytes: u64,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct FsckReport {
    pub blobs_checked: usize,
    /// Human-readable problems; empty means the store is consistent.
    pub problems: Vec<String>,
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Store {
    /// Open (creating if needed) the store at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Store> {
        let root = root.into();
        for dir in [root.join("blobs/sha256"), root.join("ingest")] {
            fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        }
        let store = Store { root };
        let layout = store.root.join("oci-layout");
        if !layout.exists() {
            store.write_atomic(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        let index = store.root.join("index.json");
        if !index.exists() {
            let bytes = serde_json::to_vec(&ImageIndex::default()).unwrap_or_default();
            store.write_atomic(&index, &bytes)?;
        }
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    pub fn open_blob(&self, digest: &Digest) -> Result<File> {
        let path = self.blob_path(digest);
        File::open(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StoreError::MissingBlob(digest.clone()),
            _ => StoreError::Io { path, source: e },
        })
    }

    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        let mut buf = Vec::new();
        let path = self.blob_path(digest);
        self.open_blob(digest)?
            .read_to_end(&mut buf)
            .map_err(io_err(&path))?;
        Ok(buf)
    }

    pub fn blob_writer(&self) -> Result<BlobWriter<'_>> {
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = self
            .root
            .join("ingest")
            .join(format!("{}-{n}", std::process::id()));
        let file = File::create(&tmp).map_err(io_err(&tmp))?;
        Ok(BlobWriter {
            store: self,
            out: Some(HashingWriter::new(BufWriter::new(file))),
            tmp,
        })
    }

    /// Store `bytes` as a blob; returns its digest.
    pub fn write_blob(&self, bytes: &[u8]) -> Result<Digest> {
        let digest = Digest::of(bytes);
        if self.has_blob(&digest) {
            return Ok(digest);
        }
        let mut w = self.blob_writer()?;
        w.write_all(bytes).map_err(io_err(&w.tmp))?;
        w.commit(Some(&digest), Some(bytes.len() as u64))?;
        Ok(digest)
    }

    /// Serialize `value` as a blob of `media_type`.
    pub fn put_json<T: serde::Serialize>(&self, media_type: &str, value: &T) -> Result<Descriptor> {
        let bytes = serde_json::to_vec(value).map_err(|e| StoreError::Io {
            path: self.root.clone(),
            source: io::Error::other(e),
        })?;
        let digest = self.write_blob(&bytes)?;
        Ok(Descriptor::new(media_type, digest, bytes.len() as u64))
    }

    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = self
            .root
            .join("ingest")
            .join(format!("{}-{n}.meta", std::process::id()));
        {
            let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
            f.write_all(bytes).map_err(io_err(&tmp))?;
            f.sync_all().map_err(io_err(&tmp))?;
        }
        fs::rename(&tmp, path).map_err(io_err(path))?;
        sync_dir(path.parent().unwrap_or(&self.root));
        Ok(())
    }

    fn lock(&self) -> Result<File> {
        let path = self.root.join("index.lock");
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err(&path))?;
        f.lock().map_err(io_err(&path))?;
        Ok(f)
    }

    fn read_index(&self) -> Result<ImageIndex> {
        let path = self.root.join("index.json");
        let bytes = fs::read(&path).map_err(io_err(&path))?;
        serde_json::from_slice(&bytes).map_err(|source| StoreError::BadIndex { path, source })
    }

    fn write_index(&self, index: &ImageIndex) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(index).unwrap_or_default();
        self.write_atomic(&self.root.join("index.json"), &bytes)
    }

    /// Point `name` at `desc` (replacing what it pointed at).
    pub fn tag(&self, name: &str, desc: &Descriptor) -> Result<()> {
        let _lock = self.lock()?;
        let mut index = self.read_index()?;
        index
            .manifests
            .retain(|m| m.annotations.get(REF_NAME).map(String::as_str) != Some(name));
        let mut entry = desc.clone();
        entry
            .annotations
            .insert(REF_NAME.to_string(), name.to_string());
        index.manifests.push(entry);
        self.write_index(&index)
    }

    /// Remove the reference `name`; true if it existed.
    pub fn untag(&self, name: &str) -> Result<bool> {
        let _lock = self.lock()?;
        let mut index = self.read_index()?;
        let before = index.manifests.len();
        index
            .manifests
            .retain(|m| m.annotations.get(REF_NAME).map(String::as_str) != Some(name));
        let removed = index.manifests.len() != before;
        if removed {
            self.write_index(&index)?;
        }
        Ok(removed)
    }

    pub fn resolve(&self, name: &str) -> Result<Option<Descriptor>> {
        Ok(self
            .read_index()?
            .manifests
            .into_iter()
            .find(|m| m.annotations.get(REF_NAME).map(String::as_str) == Some(name)))
    }

    /// Every reference with its descriptor, in the order they were tagged.
    pub fn references(&self) -> Result<Vec<(String, Descriptor)>> {
        Ok(self
            .read_index()?
            .manifests
            .into_iter()
            .filter_map(|m| m.annotations.get(REF_NAME).cloned().map(|n| (n, m)))
            .collect())
    }

    pub fn read_manifest(&self, digest: &Digest) -> Result<ImageManifest> {
        let bytes = self.read_blob(digest)?;
        serde_json::from_slice(&bytes).map_err(|source| StoreError::BadDocument {
            what: "manifest",
            digest: digest.clone(),
            source,
        })
    }

    pub fn read_index_blob(&self, digest: &Digest) -> Result<ImageIndex> {
        let bytes = self.read_blob(digest)?;
        serde_json::from_slice(&bytes).map_err(|source| StoreError::BadDocument {
            what: "image index",
            digest: digest.clone(),
            source,
        })
    }

    pub fn read_config(&self, digest: &Digest) -> Result<ImageConfig> {
        let bytes = self.read_blob(digest)?;
        serde_json::from_slice(&bytes).map_err(|source| StoreError::BadDocument {
            what: "image config",
            digest: digest.clone(),
            source,
        })
    }

    /// The image `name` refers to, for `platform` when it is multi-platform.
    pub fn image(&self, name: &str, platform: &Platform) -> Result<Image> {
        let desc = self
            .resolve(name)?
            .ok_or_else(|| StoreError::NoSuchImage(name.to_string()))?;
        self.image_from(name, &desc, platform)
    }

    pub fn image_from(&self, name: &str, desc: &Descriptor, platform: &Platform) -> Result<Image> {
        let manifest_desc = if media::is_index(&desc.media_type) {
            let index = self.read_index_blob(&desc.digest)?;
            index
                .manifests
                .into_iter()
                .find(|m| m.platform.as_ref().is_none_or(|p| platform.matches(p)))
                .ok_or_else(|| StoreError::NoPlatform {
                    name: name.to_string(),
                    platform: platform.clone(),
                })?
        } else if media::is_manifest(&desc.media_type) {
            desc.clone()
        } else {
            return Err(StoreError::UnsupportedMediaType(
                desc.digest.clone(),
                desc.media_type.clone(),
            ));
        };
        let manifest = self.read_manifest(&manifest_desc.digest)?;
        let config = self.read_config(&manifest.config.digest)?;
        Ok(Image {
            manifest_digest: manifest_desc.digest,
            config_digest: manifest.config.digest.clone(),
            manifest,
            config,
        })
    }

    /// Blobs reachable from the references (manifests, configs, layers).
    fn reachable(&self) -> Result<std::collections::HashSet<Digest>> {
        let mut seen = std::collections::HashSet::new();
        let mut todo: Vec<Descriptor> = self.read_index()?.manifests;
        while let Some(d) = todo.pop() {
            if !seen.insert(d.digest.clone()) || !self.has_blob(&d.digest) {
                continue;
            }
            if media::is_index(&d.media_type) {
                if let Ok(idx) = self.read_index_blob(&d.digest) {
                    todo.extend(idx.manifests);
                }
            } else if media::is_manifest(&d.media_type) {
                if let Ok(m) = self.read_manifest(&d.digest) {
                    todo.push(m.config);
                    todo.extend(m.layers);
                }
            }
        }
        Ok(seen)
    }

    /// Remove blobs no reference reaches (older than a grace period) and
    /// leftovers of interrupted writes.
    pub fn gc(&self) -> Result<GcReport> {
        let _lock = self.lock()?;
        let keep = self.reachable()?;
        let mut report = GcReport::default();
        let now = SystemTime::now();
        let old = |meta: &fs::Metadata| {
            meta.modified()
                .ok()
                .and_then(|m| now.duration_since(m).ok())
                .is_some_and(|age| age > GC_GRACE)
        };
        let blobs = self.root.join("blobs/sha256");
        for entry in fs::read_dir(&blobs).map_err(io_err(&blobs))?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(digest) = format!("sha256:{name}").parse::<Digest>() else {
                continue;
            };
            let Ok(meta) = entry.metadata() else { continue };
            if !keep.contains(&digest) && old(&meta) && fs::remove_file(entry.path()).is_ok() {
                report.removed_blobs += 1;
                report.freed_bytes += meta.len();
            }
        }
        let ingest = self.root.join("ingest");
        for entry in fs::read_dir(&ingest).map_err(io_err(&ingest))?.flatten() {
            if entry.metadata().is_ok_and(|m| old(&m)) {
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(report)
    }

    /// Remove the blobs `roots` (manifests or indexes that lost their
    /// reference, as a rebuild's old image) reach and no reference does, at
    /// once: unlike [`gc`](Self::gc), the caller knows these were replaced
    /// (`berth watch --prune`).
    pub fn prune(&self, roots: &[Digest]) -> Result<GcReport> {
        let _lock = self.lock()?;
        let keep = self.reachable()?;
        let mut report = GcReport::default();
        // (blob, whether it is a document to follow): layers and configs
        // are leaves, never read (a layer can be large).
        let mut todo: Vec<(Digest, bool)> = roots.iter().map(|d| (d.clone(), true)).collect();
        let mut seen = std::collections::HashSet::new();
        while let Some((d, document)) = todo.pop() {
            if keep.contains(&d) || !seen.insert(d.clone()) || !self.has_blob(&d) {
                continue;
            }
            if document {
                if let Ok(idx) = self.read_index_blob(&d) {
                    todo.extend(idx.manifests.into_iter().map(|m| (m.digest, true)));
                }
                if let Ok(m) = self.read_manifest(&d) {
                    todo.push((m.config.digest, false));
                    todo.extend(m.layers.into_iter().map(|l| (l.digest, false)));
                }
            }
            let path = self.blob_path(&d);
            let len = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            if fs::remove_file(&path).is_ok() {
                report.removed_blobs += 1;
                report.freed_bytes += len;
            }
        }
        Ok(report)
    }

    /// Check every blob against its name and every reference's closure.
    pub fn fsck(&self) -> Result<FsckReport> {
        let mut report = FsckReport::default();
        let blobs = self.root.join("blobs/sha256");
        for entry in fs::read_dir(&blobs).map_err(io_err(&blobs))?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(digest) = format!("sha256:{name}").parse::<Digest>() else {
                report
                    .problems
                    .push(format!("stray file blobs/sha256/{name}"));
                continue;
            };
            report.blobs_checked += 1;
            let mut w = HashingWriter::new(io::sink());
            let ok = File::open(entry.path())
                .and_then(|mut f| io::copy(&mut f, &mut w))
                .is_ok();
            let (_, actual, _) = w.finish();
            if !ok || actual != digest {
                report
                    .problems
                    .push(format!("blob {digest} has content {actual}"));
            }
        }
        for (name, desc) in self.references()? {
            let mut todo = vec![desc];
            while let Some(d) = todo.pop() {
                if !self.has_blob(&d.digest) {
                    report
                        .problems
                        .push(format!("{name}: missing blob {}", d.digest));
                    continue;
                }
                if media::is_index(&d.media_type) {
                    match self.read_index_blob(&d.digest) {
                        Ok(i) => todo.extend(i.manifests),
                        Err(e) => report.problems.push(format!("{name}: {e}")),
                    }
                } else if media::is_manifest(&d.media_type) {
                    match self.read_manifest(&d.digest) {
                        Ok(m) => {
                            todo.push(m.config);
                            todo.extend(m.layers);
                        }
                        Err(e) => report.problems.push(format!("{name}: {e}")),
                    }
                }
            }
        }
        Ok(report)
    }
}

impl BlobWriter<'_> {
    pub fn tmp_path(&self) -> &Path {
        &self.tmp
    }

    /// Verify and move the blob into place. On any mismatch the temp file is
    /// removed and the store is unchanged.
    pub fn commit(
        mut self,
        expected: Option<&Digest>,
        expected_size: Option<u64>,
    ) -> Result<(Digest, u64)> {
        let Some(out) = self.out.take() else {
            return Err(StoreError::Io {
                path: self.tmp.clone(),
                source: io::Error::other("blob writer already finished"),
            });
        };
        let (buf, digest, len) = out.finish();
        let file = buf.into_inner().map_err(|e| StoreError::Io {
            path: self.tmp.clone(),
            source: e.into_error(),
        })?;
        file.sync_all().map_err(io_err(&self.tmp))?;
        drop(file);
        if let Some(want) = expected {
            if *want != digest {
                return Err(StoreError::DigestMismatch {
                    expected: want.clone(),
                    actual: digest,
                });
            }
        }
        if let Some(size) = expected_size {
            if size != len {
                return Err(StoreError::SizeMismatch {
                    digest,
                    expected: size,
                    actual: len,
                });
            }
        }
        let dest = self.store.blob_path(&digest);
        fs::rename(&self.tmp, &dest).map_err(io_err(&dest))?;
        sync_dir(dest.parent().unwrap_or(&self.store.root));
        Ok((digest, len))
    }
}

impl Write for BlobWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.out {
            Some(w) => w.write(buf),
            None => Err(io::Error::other("blob writer already finished")),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.out {
            Some(w) => w.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for BlobWriter<'_> {
    fn drop(&mut self) {
        // Uncommitted (or failed) writes leave nothing behind.
        if self.tmp.exists() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// Make a rename durable. Failure only weakens durability, never correctness.
fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// berth's state directory: `BERTH_STATE_DIR`, else `/var/lib/berth` for root,
/// else `$XDG_DATA_HOME/berth` (or `~/.local/share/berth`).
pub fn state_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("BERTH_STATE_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    // SAFETY-free check of the effective uid through procfs keeps this crate libc-free.
    let is_root = fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false);
    if is_root {
        return PathBuf::from("/var/lib/berth");
    }
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("berth");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into());
    PathBuf::from(home).join(".local/share/berth")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::RootFs;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path().join("images")).unwrap();
        (dir, s)
    }

    fn image(s: &Store, layer: &[u8]) -> Descriptor {
        let layer_digest = s.write_blob(layer).unwrap();
        let config = ImageConfig {
            architecture: "amd64".into(),
            os: "linux".into(),
            rootfs: RootFs {
                kind: "layers".into(),
                diff_ids: vec![layer_digest.clone()],
            },
            ..Default::default()
        };
        let config_desc = s.put_json(media::OCI_CONFIG, &config).unwrap();
        let manifest = ImageManifest {
            schema_version: 2,
            media_type: Some(media::OCI_MANIFEST.into()),
            config: config_desc,
            layers: vec![Descriptor::new(
                media::OCI_LAYER,
                layer_digest,
                layer.len() as u64,
            )],
            annotations: Default::default(),
            extra: Default::default(),
        };
        s.put_json(media::OCI_MANIFEST, &manifest).unwrap()
    }

    #[test]
    fn tag_resolve_and_read_back() {
        let (_d, s) = store();
        let desc = image(&s, b"layer one");
        s.tag("example.com/app:1", &desc).unwrap();
        let img = s.image("example.com/app:1", &Platform::host()).unwrap();
        assert_eq!(img.manifest_digest, desc.digest);
        assert_eq!(img.config.rootfs.diff_ids.len(), 1);
        assert_eq!(s.references().unwrap().len(), 1);
        // Re-tagging replaces, never duplicates.
        let other = image(&s, b"layer two");
        s.tag("example.com/app:1", &other).unwrap();
        assert_eq!(s.references().unwrap().len(), 1);
        assert!(matches!(
            s.image("nope", &Platform::host()),
            Err(StoreError::NoSuchImage(_))
        ));
    }

    #[test]
    fn a_wrong_digest_leaves_nothing_behind() {
        let (_d, s) = store();
        let mut w = s.blob_writer().unwrap();
        w.write_all(b"truncated").unwrap();
        let err = w
            .commit(Some(&Digest::of(b"the real thing")), None)
            .unwrap_err();
        assert!(matches!(err, StoreError::DigestMismatch { .. }));
        assert!(!s.has_blob(&Digest::of(b"truncated")));
        assert_eq!(fs::read_dir(s.root().join("ingest")).unwrap().count(), 0);
        assert!(s.fsck().unwrap().problems.is_empty());
    }

    #[test]
    fn fsck_finds_corruption_and_missing_blobs() {
        let (_d, s) = store();
        let desc = image(&s, b"layer");
        s.tag("app", &desc).unwrap();
        assert!(s.fsck().unwrap().problems.is_empty());
        let layer = Digest::of(b"layer");
        fs::write(s.blob_path(&layer), b"tampered").unwrap();
        let report = s.fsck().unwrap();
        assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
        fs::remove_file(s.blob_path(&layer)).unwrap();
        assert!(s.fsck().unwrap().problems[0].contains("missing blob"));
    }

    #[test]
    fn gc_keeps_referenced_and_recent_blobs() {
        let (_d, s) = store();
        let kept = image(&s, b"kept");
        s.tag("kept", &kept).unwrap();
        let dropped = image(&s, b"dropped");
        // Fresh blobs survive: another process may be about to tag them.
        assert_eq!(s.gc().unwrap().removed_blobs, 0);
        let old = SystemTime::now() - Duration::from_secs(3600);
        for d in [&dropped.digest, &Digest::of(b"dropped")] {
            File::options()
                .write(true)
                .open(s.blob_path(d))
                .unwrap()
                .set_modified(old)
                .unwrap();
        }
        let report = s.gc().unwrap();
        assert_eq!(report.removed_blobs, 2);
        assert!(s.has_blob(&kept.digest));
        assert!(s.fsck().unwrap().problems.is_empty());
    }

    #[test]
    fn prune_removes_what_only_a_replaced_image_reached() {
        let (_d, s) = store();
        let old = image(&s, b"old code");
        s.tag("app", &old).unwrap();
        let new = image(&s, b"new code");
        // A rebuild moves the tag; the old image dangles.
        s.tag("app", &new).unwrap();
        let old_manifest = s.read_manifest(&old.digest).unwrap();
        let report = s.prune(&[old.digest.clone(), new.digest.clone()]).unwrap();
        assert_eq!(report.removed_blobs, 3, "manifest, config and layer");
        for d in [
            &old.digest,
            &old_manifest.config.digest,
            &Digest::of(b"old code"),
        ] {
            assert!(!s.has_blob(d), "{d} is left");
        }
        // What a reference reaches stays, however it was named.
        assert!(s.has_blob(&new.digest) && s.has_blob(&Digest::of(b"new code")));
        assert!(s.fsck().unwrap().problems.is_empty());
    }

    #[test]
    fn concurrent_taggers_do_not_lose_references() {
        let (_d, s) = store();
        let descs: Vec<Descriptor> = (0..8)
            .map(|i| image(&s, format!("l{i}").as_bytes()))
            .collect();
        std::thread::scope(|scope| {
            for (i, d) in descs.iter().enumerate() {
                let s = s.clone();
                scope.spawn(move || s.tag(&format!("img{i}"), d).unwrap());
            }
        });
        assert_eq!(s.references().unwrap().len(), 8);
    }
}
