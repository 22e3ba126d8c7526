//! `berth save` and `berth load`: images to and from a tar file.
//!
//! `save` writes one archive that is both an OCI image layout (`oci-layout`,
//! `index.json`, `blobs/sha256/…`) and what `docker load` reads
//! (`manifest.json` naming each image's config, layers and tags), the same
//! dual layout Docker itself writes since 25.0; the blobs are shared, so
//! nothing is stored twice. `load` reads either kind (and older `docker save`
//! output, whose layers sit at `<id>/layer.tar`), verifying every blob.

use crate::unpack::clean_entry_path;
use berth_oci::spec::REF_NAME;
use berth_oci::store::StoreError;
use berth_oci::{media, Descriptor, Digest, ImageIndex, ImageManifest, Platform, Store};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
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
pub fn load(store: &Store, input: impl Read) -> Result<Vec<String>> {
    // Unpack into a scratch directory beside the store (same filesystem, so
    // blobs move by rename), then import with verification.
    let scratch = tempdir_in(store.root())?;
    let result = (|| {
        crate::unpack::unpack(input, scratch.path(), Default::default())
            .map_err(|e| ArchiveError::Corrupt(e.to_string()))?;
        if scratch.path().join("index.json").is_file() {
            load_oci(store, scratch.path())
        } else if scratch.path().join("manifest.json").is_file() {
            load_docker(store, scratch.path())
        } else {
            Err(ArchiveError::NotAnArchive(
                "neither index.json nor manifest.json at the top level".into(),
            ))
        }
    })();
    drop(scratch);
    result
}

/// Copy a file into the store, checking it has `digest` when one is given.
fn import_file(store: &Store, path: &Path, digest: Option<&Digest>) -> Result<(Digest, u64)> {
    let mut f = fs::File::open(path).map_err(|source| ArchiveError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut w = store.blob_writer()?;
    io::copy(&mut f, &mut w).map_err(|source| ArchiveError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(w.commit(digest, None)?)
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let bytes = fs::read(path).map_err(|source| ArchiveError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ArchiveError::Corrupt(format!("{}: {e}", path.display())))
}

fn blob_in(root: &Path, digest: &Digest) -> PathBuf {
    root.join("blobs/sha256").join(digest.hex())
}

fn load_oci(store: &Store, root: &Path) -> Result<Vec<String>> {
    let index: ImageIndex = read_json(&root.join("index.json"))?;
    // Import every blob the layout holds that the index reaches.
    let mut todo: Vec<Descriptor> = index.manifests.clone();
    let mut seen = HashSet::new();
    while let Some(d) = todo.pop() {
        if !seen.insert(d.digest.clone()) {
            continue;
        }
        let path = blob_in(root, &d.digest);
        import_file(store, &path, Some(&d.digest))?;
        if media::is_index(&d.media_type) {
            let i: ImageIndex = read_json(&path)?;
            todo.extend(i.manifests);
        } else if media::is_manifest(&d.media_type) {
            let m: ImageManifest = read_json(&path)?;
            todo.push(m.config);
            todo.extend(m.layers);
        }
    }
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

fn load_docker(store: &Store, root: &Path) -> Result<Vec<String>> {
    let entries: Vec<DockerManifestEntry> = read_json(&root.join("manifest.json"))?;
    let mut tagged = Vec::new();
    for entry in entries {
        let config_path = root.join(
            clean_entry_path(&entry.config).map_err(|e| ArchiveError::Corrupt(e.to_string()))?,
        );
        let (config_digest, config_size) = import_file(store, &config_path, None)?;
        let mut layers = Vec::new();
        for layer in &entry.layers {
            let path = root
                .join(clean_entry_path(layer).map_err(|e| ArchiveError::Corrupt(e.to_string()))?);
            let (digest, size) = import_file(store, &path, None)?;
            let media_type = if is_gzip(&path) {
                media::OCI_LAYER_GZIP
            } else {
                media::OCI_LAYER
            };
            layers.push(Descriptor::new(media_type, digest, size));
        }
        let manifest = ImageManifest {
            schema_version: 2,
            media_type: Some(media::OCI_MANIFEST.into()),
            config: Descriptor::new(media::OCI_CONFIG, config_digest, config_size),
            layers,
            annotations: Default::default(),
            extra: Default::default(),
        };
        let desc = store.put_json(media::OCI_MANIFEST, &manifest)?;
        for tag in entry.repo_tags {
            store.tag(&tag, &desc)?;
            tagged.push(tag);
        }
    }
    Ok(tagged)
}

fn is_gzip(path: &Path) -> bool {
    let mut magic = [0u8; 2];
    fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && magic == [0x1f, 0x8b]
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
