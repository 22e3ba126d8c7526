//! `berth save` and `berth load`: images to and from a tar file.
//!
//! `save` writes one archive that is both an OCI image layout (`oci-layout`,
//! `index.json`, `blobs/sha256/…`) and what `docker load` reads
//! (`manifest.json` naming each image's config, layers and tags), the same
//! dual layout Docker itself writes since 25.0; the blobs are shared, so
//! nothing is stored twice. `load` reads either kind (and older `docker save`
//! output, whose layers sit at `<id>/layer.tar`), verifying every blob.

use crate::unpack::clean_entry_path;
use berth_oci::digest::HashingWriter;
use berth_oci::spec::REF_NAME;
use berth_oci::store::StoreError;
use berth_oci::{
    media, Descriptor, Digest, ImageConfig, ImageIndex, ImageManifest, Platform, Store,
};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("not an image archive: {0}")]
    NotAnArchive(String),
    #[error("{0}")]
    Corrupt(String),
    #[error("{entry} in the archive is a link (to {target:?}): an image archive's own files must be regular files")]
    Link { entry: String, target: String },
    #[error("{entry} in the archive is a link that leaves the archive (to {target:?})")]
    LinkOutside { entry: String, target: String },
}

type Result<T> = std::result::Result<T, ArchiveError>;

/// One entry of docker's `manifest.json`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Vec<String>,
    layers: Vec<String>,
}

/// Write the images named by `references` (full references as stored) to `out`.
pub fn save(store: &Store, references: &[String], out: impl Write) -> Result<()> {
    let platform = Platform::host();
    let mut tar = tar::Builder::new(out);
    let mut written: HashSet<Digest> = HashSet::new();
    let mut index = ImageIndex::default();
    let mut docker = Vec::new();
    let mut add_blob = |tar: &mut tar::Builder<_>, digest: &Digest| -> Result<()> {
        if !written.insert(digest.clone()) {
            return Ok(());
        }
        let path = store.blob_path(digest);
        let mut f = store.open_blob(digest)?;
        let len = f
            .metadata()
            .map_err(|source| ArchiveError::Io {
                path: path.clone(),
                source,
            })?
            .len();
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(len);
        h.set_mode(0o644);
        h.set_mtime(0);
        tar.append_data(&mut h, format!("blobs/sha256/{}", digest.hex()), &mut f)
            .map_err(|source| ArchiveError::Io { path, source })
    };
    for name in references {
        let desc = store
            .resolve(name)?
            .ok_or_else(|| StoreError::NoSuchImage(name.clone()))?;
        let image = store.image_from(name, &desc, &platform)?;
        // The single-platform manifest is what both formats point at.
        add_blob(&mut tar, &image.manifest_digest)?;
        add_blob(&mut tar, &image.config_digest)?;
        for layer in &image.manifest.layers {
            add_blob(&mut tar, &layer.digest)?;
        }
        let manifest_bytes = store.read_blob(&image.manifest_digest)?;
        let mut entry = Descriptor::new(
            image
                .manifest
                .media_type
                .as_deref()
                .unwrap_or(media::OCI_MANIFEST),
            image.manifest_digest.clone(),
            manifest_bytes.len() as u64,
        );
        entry.annotations.insert(REF_NAME.into(), name.clone());
        entry
            .annotations
            .insert("io.containerd.image.name".into(), name.clone());
        index.manifests.push(entry);
        docker.push(DockerManifestEntry {
            config: format!("blobs/sha256/{}", image.config_digest.hex()),
            repo_tags: vec![name.clone()],
            layers: image
                .manifest
                .layers
                .iter()
                .map(|l| format!("blobs/sha256/{}", l.digest.hex()))
                .collect(),
        });
    }
    let add_json = |tar: &mut tar::Builder<_>, name: &str, bytes: Vec<u8>| -> Result<()> {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        tar.append_data(&mut h, name, &bytes[..])
            .map_err(|source| ArchiveError::Io {
                path: name.into(),
                source,
            })
    };
    add_json(
        &mut tar,
        "oci-layout",
        br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
    )?;
    add_json(
        &mut tar,
        "index.json",
        serde_json::to_vec(&index).unwrap_or_default(),
    )?;
    add_json(
        &mut tar,
        "manifest.json",
        serde_json::to_vec(&docker).unwrap_or_default(),
    )?;
    tar.into_inner()
        .and_then(|mut w| w.flush())
        .map_err(|source| ArchiveError::Io {
            path: "archive".into(),
            source,
        })
}

/// Import every image in the archive; returns the references tagged.
///
/// The archive is read as a tar stream and never unpacked as a tree: each
/// regular file is spooled to a private temp file (hashed on the way), and
/// links are only recorded. An entry that is a link to a host path is
/// therefore never opened, whatever its name; the layout's own files
/// (`oci-layout`, `index.json`, `manifest.json`, `blobs/…`) must be regular
/// files. Every blob is verified before any of them enters the store, so a
/// refused archive leaves the store as it was.
pub fn load(store: &Store, input: impl Read) -> Result<Vec<String>> {
    let spool = Spool::read(store, input)?;
    if spool.has("index.json") {
        load_oci(store, &spool)
    } else if spool.has("manifest.json") {
        load_docker(store, &spool)
    } else {
        Err(ArchiveError::NotAnArchive(
            "neither index.json nor manifest.json at the top level".into(),
        ))
    }
}

/// Largest JSON document (index, manifest, config, `manifest.json`) read
/// into memory; registries refuse manifests over 4 MiB, and configs with a
/// long history stay far below this.
const MAX_DOCUMENT_BYTES: u64 = 8 << 20;

/// Most links followed inside the archive to reach one file.
const MAX_LINK_HOPS: usize = 16;

/// A regular file of the archive, copied out of the stream.
struct Spooled {
    path: PathBuf,
    digest: Digest,
    size: u64,
}

enum Link {
    /// Its target as written, relative to the link's directory.
    Symbolic(String),
    /// Its target as written, relative to the archive's root.
    Hard(String),
}

/// The archive's entries: regular files spooled to a scratch directory of
/// the store, links as their target text.
struct Spool {
    dir: ScratchDir,
    files: HashMap<PathBuf, Spooled>,
    links: HashMap<PathBuf, Link>,
}

impl Spool {
    fn read(store: &Store, input: impl Read) -> Result<Spool> {
        let mut spool = Spool {
            dir: tempdir_in(store.root())?,
            files: HashMap::new(),
            links: HashMap::new(),
        };
        let mut archive = tar::Archive::new(input);
        let corrupt = |e: io::Error| ArchiveError::Corrupt(format!("not a readable tar: {e}"));
        for (n, entry) in archive.entries().map_err(corrupt)?.enumerate() {
            let mut entry = entry.map_err(corrupt)?;
            let raw = entry
                .path()
                .map_err(corrupt)?
                .to_string_lossy()
                .into_owned();
            let rel = clean_entry_path(&raw).map_err(|_| {
                ArchiveError::Corrupt(format!("archive entry {raw:?} escapes the archive"))
            })?;
            let link_text = |entry: &tar::Entry<_>| -> Result<String> {
                Ok(entry
                    .link_name()
                    .map_err(corrupt)?
                    .ok_or_else(|| {
                        ArchiveError::Corrupt(format!("link {raw:?} in the archive has no target"))
                    })?
                    .to_string_lossy()
                    .into_owned())
            };
            match entry.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let path = spool.dir.path().join(n.to_string());
                    let file = fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .open(&path)
                        .map_err(|source| ArchiveError::Io {
                            path: path.clone(),
                            source,
                        })?;
                    let mut out = HashingWriter::new(io::BufWriter::new(file));
                    let copied = io::copy(&mut entry, &mut out);
                    let (buf, digest, size) = out.finish();
                    copied
                        .and_then(|_| buf.into_inner().map_err(|e| e.into_error()).map(drop))
                        .map_err(|source| ArchiveError::Io {
                            path: path.clone(),
                            source,
                        })?;
                    spool.links.remove(&rel);
                    if let Some(old) = spool.files.insert(rel, Spooled { path, digest, size }) {
                        // A later entry of the same name wins, as in tar.
                        let _ = fs::remove_file(old.path);
                    }
                }
                tar::EntryType::Symlink => {
                    let target = link_text(&entry)?;
                    spool.forget_file(&rel);
                    spool.links.insert(rel, Link::Symbolic(target));
                }
                tar::EntryType::Link => {
                    let target = link_text(&entry)?;
                    spool.forget_file(&rel);
                    spool.links.insert(rel, Link::Hard(target));
                }
                // Directories need no record; devices, fifos and the like
                // are never part of an image layout.
                _ => {}
            }
        }
        Ok(spool)
    }

    fn forget_file(&mut self, rel: &Path) {
        if let Some(old) = self.files.remove(rel) {
            let _ = fs::remove_file(old.path);
        }
    }

    fn has(&self, name: &str) -> bool {
        let rel = Path::new(name);
        self.files.contains_key(rel) || self.links.contains_key(rel)
    }

    /// One of the layout's own files: it must be a regular file of the
    /// archive, never a link.
    fn regular(&self, name: &str) -> Result<&Spooled> {
        let rel = clean_entry_path(name)
            .map_err(|_| ArchiveError::Corrupt(format!("{name:?} escapes the archive")))?;
        if let Some(link) = self.links.get(&rel) {
            let (Link::Symbolic(target) | Link::Hard(target)) = link;
            return Err(ArchiveError::Link {
                entry: name.to_string(),
                target: target.clone(),
            });
        }
        self.files
            .get(&rel)
            .ok_or_else(|| ArchiveError::Corrupt(format!("{name} is missing from the archive")))
    }

    /// A file `docker save` names, which may be a link to another entry of
    /// the archive (older Docker writes a repeated layer as a symlink to
    /// the first copy). Links are resolved by name among the archive's own
    /// entries; one that leaves the archive is refused.
    fn resolve(&self, name: &str) -> Result<&Spooled> {
        let outside = |target: &str| ArchiveError::LinkOutside {
            entry: name.to_string(),
            target: target.to_string(),
        };
        let mut rel = clean_entry_path(name)
            .map_err(|_| ArchiveError::Corrupt(format!("{name:?} escapes the archive")))?;
        for _ in 0..MAX_LINK_HOPS {
            if let Some(file) = self.files.get(&rel) {
                return Ok(file);
            }
            rel = match self.links.get(&rel) {
                Some(Link::Symbolic(target)) => {
                    if target.starts_with('/') {
                        return Err(outside(target));
                    }
                    let joined = rel.parent().unwrap_or(Path::new("")).join(target);
                    clean_entry_path(&joined.to_string_lossy()).map_err(|_| outside(target))?
                }
                Some(Link::Hard(target)) => {
                    clean_entry_path(target).map_err(|_| outside(target))?
                }
                None => {
                    return Err(ArchiveError::Corrupt(format!(
                        "{name} is missing from the archive"
                    )))
                }
            };
        }
        Err(ArchiveError::Corrupt(format!(
            "{name}: more than {MAX_LINK_HOPS} links in a row in the archive"
        )))
    }

    fn json<T: for<'de> Deserialize<'de>>(&self, name: &str, file: &Spooled) -> Result<T> {
        if file.size > MAX_DOCUMENT_BYTES {
            return Err(ArchiveError::Corrupt(format!(
                "{name} is {} bytes, more than the {MAX_DOCUMENT_BYTES} a JSON document of an image may have",
                file.size
            )));
        }
        let bytes = fs::read(&file.path).map_err(|source| ArchiveError::Io {
            path: file.path.clone(),
            source,
        })?;
        serde_json::from_slice(&bytes).map_err(|e| ArchiveError::Corrupt(format!("{name}: {e}")))
    }
}

/// Check that a spooled file is the blob `digest` (of `size` bytes, when known).
fn verify(name: &str, file: &Spooled, digest: &Digest, size: Option<u64>) -> Result<()> {
    if &file.digest != digest {
        return Err(ArchiveError::Corrupt(format!(
            "{name}: digest mismatch: expected {digest}, got {}",
            file.digest
        )));
    }
    if let Some(size) = size.filter(|s| *s != file.size) {
        return Err(ArchiveError::Corrupt(format!(
            "{name}: size mismatch: expected {size} bytes, got {}",
            file.size
        )));
    }
    Ok(())
}

/// Copy verified spooled files into the store.
fn import(store: &Store, files: &[&Spooled]) -> Result<()> {
    for file in files {
        if store.has_blob(&file.digest) {
            continue;
        }
        let mut f = fs::File::open(&file.path).map_err(|source| ArchiveError::Io {
            path: file.path.clone(),
            source,
        })?;
        let mut w = store.blob_writer()?;
        io::copy(&mut f, &mut w).map_err(|source| ArchiveError::Io {
            path: file.path.clone(),
            source,
        })?;
        w.commit(Some(&file.digest), Some(file.size))?;
    }
    Ok(())
}

fn oci_blob_name(digest: &Digest) -> String {
    format!("blobs/sha256/{}", digest.hex())
}

fn load_oci(store: &Store, spool: &Spool) -> Result<Vec<String>> {
    // Not needed to load, but a link there is a hostile archive all the same.
    if spool.has("oci-layout") {
        spool.regular("oci-layout")?;
    }
    let index: ImageIndex = spool.json("index.json", spool.regular("index.json")?)?;
    // Verify every blob the index reaches before any enters the store.
    let mut todo: Vec<Descriptor> = index.manifests.clone();
    let mut seen = HashSet::new();
    let mut blobs = Vec::new();
    while let Some(d) = todo.pop() {
        if !seen.insert(d.digest.clone()) {
            continue;
        }
        let name = oci_blob_name(&d.digest);
        let file = spool.regular(&name)?;
        verify(&name, file, &d.digest, Some(d.size))?;
        if media::is_index(&d.media_type) {
            let i: ImageIndex = spool.json(&name, file)?;
            todo.extend(i.manifests);
        } else if media::is_manifest(&d.media_type) {
            let m: ImageManifest = spool.json(&name, file)?;
            todo.push(m.config);
            todo.extend(m.layers);
        }
        blobs.push(file);
    }
    import(store, &blobs)?;
    let mut tagged = Vec::new();
    for d in index.manifests {
        let name = d
            .annotations
            .get("io.containerd.image.name")
            .or_else(|| d.annotations.get(REF_NAME))
            .cloned();
        if let Some(name) = name {
            let mut entry = d.clone();
            entry.annotations.clear();
            store.tag(&name, &entry)?;
            tagged.push(name);
        }
    }
    Ok(tagged)
}

/// The digest a `docker save` path names: `blobs/sha256/<hex>` (Docker 25
/// and later), or `<hex>.json` for the config of older versions.
fn named_digest(path: &str) -> Option<Digest> {
    let hex = path
        .strip_prefix("blobs/sha256/")
        .or_else(|| path.strip_suffix(".json"))?;
    format!("sha256:{hex}").parse().ok()
}

fn load_docker(store: &Store, spool: &Spool) -> Result<Vec<String>> {
    let entries: Vec<DockerManifestEntry> =
        spool.json("manifest.json", spool.regular("manifest.json")?)?;
    // Verify every image first, import after: a refused archive adds nothing.
    let mut images = Vec::new();
    for entry in entries {
        let config = spool.resolve(&entry.config)?;
        if let Some(digest) = named_digest(&entry.config) {
            verify(&entry.config, config, &digest, None)?;
        }
        let parsed: ImageConfig = spool.json(&entry.config, config)?;
        let diff_ids = &parsed.rootfs.diff_ids;
        if diff_ids.len() != entry.layers.len() {
            return Err(ArchiveError::Corrupt(format!(
                "{}: the config lists {} layers, manifest.json {}",
                entry.config,
                diff_ids.len(),
                entry.layers.len()
            )));
        }
        let mut layers = Vec::new();
        for (name, diff_id) in entry.layers.iter().zip(diff_ids) {
            let file = spool.resolve(name)?;
            if let Some(digest) = named_digest(name) {
                verify(name, file, &digest, None)?;
            }
            let (compression, uncompressed) = uncompressed_digest(&file.path)?;
            if &uncompressed != diff_id {
                return Err(ArchiveError::Corrupt(format!(
                    "{name}: digest mismatch: the config names layer {diff_id}, the archive holds {uncompressed}"
                )));
            }
            layers.push((file, compression));
        }
        images.push((entry.repo_tags, config, layers));
    }
    let mut tagged = Vec::new();
    for (tags, config, layers) in images {
        let mut files: Vec<&Spooled> = vec![config];
        files.extend(layers.iter().map(|(f, _)| *f));
        import(store, &files)?;
        let manifest = ImageManifest {
            schema_version: 2,
            media_type: Some(media::OCI_MANIFEST.into()),
            config: Descriptor::new(media::OCI_CONFIG, config.digest.clone(), config.size),
            layers: layers
                .iter()
                .map(|(f, media_type)| Descriptor::new(media_type, f.digest.clone(), f.size))
                .collect(),
            annotations: Default::default(),
            extra: Default::default(),
        };
        let desc = store.put_json(media::OCI_MANIFEST, &manifest)?;
        for tag in tags {
            store.tag(&tag, &desc)?;
            tagged.push(tag);
        }
    }
    Ok(tagged)
}

/// A layer's media type (by its magic bytes) and the digest of its tar
/// stream once decompressed (its diff_id).
fn uncompressed_digest(path: &Path) -> Result<(&'static str, Digest)> {
    let io_err = |source| ArchiveError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = fs::File::open(path).map_err(io_err)?;
    let mut magic = [0u8; 4];
    let got = f.read(&mut magic).map_err(io_err)?;
    let media_type = match magic[..got] {
        [0x1f, 0x8b, ..] => media::OCI_LAYER_GZIP,
        [0x28, 0xb5, 0x2f, 0xfd] => media::OCI_LAYER_ZSTD,
        _ => media::OCI_LAYER,
    };
    let f = fs::File::open(path).map_err(io_err)?;
    let mut reader = crate::unpack::decompress(Box::new(io::BufReader::new(f))).map_err(io_err)?;
    let mut w = HashingWriter::new(io::sink());
    io::copy(&mut reader, &mut w).map_err(io_err)?;
    Ok((media_type, w.finish().1))
}

/// A directory removed on drop.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn tempdir_in(root: &Path) -> Result<ScratchDir> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let dir = root
        .join("ingest")
        .join(format!("load-{}-{nanos}", std::process::id()));
    fs::create_dir_all(&dir).map_err(|source| ArchiveError::Io {
        path: dir.clone(),
        source,
    })?;
    Ok(ScratchDir(dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::{LayerBuilder, Owner};
    use berth_oci::spec::{ImageConfig, RootFs};

    fn make_image(store: &Store, name: &str, content: &[u8]) -> Digest {
        let mut l = LayerBuilder::new(store).unwrap();
        l.add_bytes("hello.txt", content, 0o644, Owner::ROOT)
            .unwrap();
        let layer = l.finish().unwrap();
        let config = ImageConfig {
            architecture: Platform::host().architecture,
            os: "linux".into(),
            rootfs: RootFs {
                kind: "layers".into(),
                diff_ids: vec![layer.diff_id.clone()],
            },
            ..Default::default()
        };
        let config = store.put_json(media::OCI_CONFIG, &config).unwrap();
        let manifest = ImageManifest {
            schema_version: 2,
            media_type: Some(media::OCI_MANIFEST.into()),
            config,
            layers: vec![layer.descriptor],
            annotations: Default::default(),
            extra: Default::default(),
        };
        let desc = store.put_json(media::OCI_MANIFEST, &manifest).unwrap();
        store.tag(name, &desc).unwrap();
        desc.digest
    }

    #[test]
    fn save_then_load_round_trips_both_ways() {
        let dir = tempfile::tempdir().unwrap();
        let a = Store::open(dir.path().join("a")).unwrap();
        let digest = make_image(&a, "example.com/app:1", b"hi");
        let mut buf = Vec::new();
        save(&a, &["example.com/app:1".to_string()], &mut buf).unwrap();

        // As an OCI layout: same manifest digest.
        let b = Store::open(dir.path().join("b")).unwrap();
        assert_eq!(load(&b, &buf[..]).unwrap(), ["example.com/app:1"]);
        assert_eq!(
            b.resolve("example.com/app:1").unwrap().unwrap().digest,
            digest
        );
        assert!(b.fsck().unwrap().problems.is_empty());

        // As docker's format: drop index.json and load from manifest.json.
        let mut docker_only = tar::Builder::new(Vec::new());
        let mut ar = tar::Archive::new(&buf[..]);
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            if e.path().unwrap().to_str() == Some("index.json") {
                continue;
            }
            let mut h = e.header().clone();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            docker_only
                .append_data(&mut h, e.path().unwrap(), &data[..])
                .unwrap();
        }
        let docker_only = docker_only.into_inner().unwrap();
        let c = Store::open(dir.path().join("c")).unwrap();
        assert_eq!(load(&c, &docker_only[..]).unwrap(), ["example.com/app:1"]);
        let img = c.image("example.com/app:1", &Platform::host()).unwrap();
        assert_eq!(img.config.rootfs.diff_ids.len(), 1);
        assert!(c.fsck().unwrap().problems.is_empty());
    }

    #[test]
    fn a_tampered_archive_is_refused_and_the_store_is_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let a = Store::open(dir.path().join("a")).unwrap();
        make_image(&a, "app:1", b"original");
        let mut buf = Vec::new();
        save(&a, &["app:1".to_string()], &mut buf).unwrap();
        // Flip the layer content inside the archive without fixing its name.
        let needle = b"original";
        let pos = buf.windows(needle.len()).position(|w| w == needle).unwrap();
        buf[pos] = b'O';
        let b = Store::open(dir.path().join("b")).unwrap();
        let err = load(&b, &buf[..]).unwrap_err();
        assert!(err.to_string().contains("digest mismatch"), "{err}");
        assert!(b.references().unwrap().is_empty());
        assert!(b.fsck().unwrap().problems.is_empty());
        assert_eq!(fs::read_dir(b.root().join("ingest")).unwrap().count(), 0);
    }
}
