//! The layer cache: every image layer unpacked once, shared by every
//! container (and image) that uses it.
//!
//! ```text
//! <root>/<diff_id hex>/          a layer in overlayfs format (see `unpack`)
//! <root>/.tmp-<diff_id hex>/     a layer being unpacked (never used)
//! <root>/.locks/<diff_id hex>    held while that layer is unpacked
//! ```
//!
//! A layer appears by `rename` only once it is complete, its diff ID
//! verified and its data flushed, so a crash leaves at worst a `.tmp-` dir,
//! which the next unpack of that layer removes. Two processes wanting the
//! same layer serialize on its lock file; the second finds it done.

use crate::unpack::{unpack_layer, UnpackError};
use berth_oci::store::Image;
use berth_oci::{Descriptor, Digest, Store, StoreError};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("layer {blob}: {source}")]
    Unpack {
        blob: Digest,
        #[source]
        source: UnpackError,
    },
    #[error("layer {blob} does not match its diff ID: expected {expected}, got {actual}")]
    DiffIdMismatch {
        blob: Digest,
        expected: Digest,
        actual: Digest,
    },
    #[error("the image has {layers} layers but its config lists {diff_ids} diff IDs")]
    LayerCount { layers: usize, diff_ids: usize },
    #[error(transparent)]
    Store(#[from] StoreError),
}

type Result<T> = std::result::Result<T, LayerError>;

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> LayerError + '_ {
    move |source| LayerError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Unpacked layers under one directory, keyed by diff ID.
#[derive(Debug, Clone)]
pub struct LayerCache {
    root: PathBuf,
}

impl LayerCache {
    /// Open (creating if needed) the cache at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<LayerCache> {
        let root = root.into();
        let locks = root.join(".locks");
        fs::create_dir_all(&locks).map_err(io_err(&locks))?;
        // Layers keep their set-ID binaries: no host user but root may
        // reach them.
        fs::set_permissions(&root, fs::Permissions::from_mode(0o700)).map_err(io_err(&root))?;
        Ok(LayerCache { root })
    }

    /// Where the layer with `diff_id` lives once unpacked.
    pub fn path(&self, diff_id: &Digest) -> PathBuf {
        self.root.join(diff_id.hex())
    }

    pub fn contains(&self, diff_id: &Digest) -> bool {
        self.path(diff_id).is_dir()
    }

    /// The image's layers unpacked, bottom first (the order of the manifest).
    pub fn unpack_image(&self, store: &Store, image: &Image) -> Result<Vec<PathBuf>> {
        let layers = &image.manifest.layers;
        let diff_ids = &image.config.rootfs.diff_ids;
        if layers.len() != diff_ids.len() {
            return Err(LayerError::LayerCount {
                layers: layers.len(),
                diff_ids: diff_ids.len(),
            });
        }
        layers
            .iter()
            .zip(diff_ids)
            .map(|(blob, diff_id)| self.ensure(store, blob, diff_id))
            .collect()
    }

    /// The layer `blob` unpacked, unpacking it now if nobody has yet. Its
    /// uncompressed content must hash to `diff_id`, or nothing is cached.
    pub fn ensure(&self, store: &Store, blob: &Descriptor, diff_id: &Digest) -> Result<PathBuf> {
        let dest = self.path(diff_id);
        if dest.is_dir() {
            return Ok(dest);
        }
        let _lock = self.lock(diff_id)?;
        if dest.is_dir() {
            return Ok(dest); // another process finished it while we waited
        }
        let tmp = self.root.join(format!(".tmp-{}", diff_id.hex()));
        // Only a crashed unpack leaves this: we hold the layer's lock.
        remove_tree(&tmp)?;
        let result = self.unpack_into(store, blob, diff_id, &tmp);
        if result.is_err() {
            let _ = remove_tree(&tmp);
            return result.map(|_| dest);
        }
        sys_syncfs(&tmp)?;
        fs::rename(&tmp, &dest).map_err(io_err(&dest))?;
        if let Ok(d) = File::open(&self.root) {
            let _ = d.sync_all();
        }
        Ok(dest)
    }

    /// Make `dir` (a layer in overlayfs format: a finished `RUN` step's
    /// upper directory, whose content is the layer `diff_id`) the cached
    /// layer, moved rather than unpacked from its blob. Nothing is done
    /// when the layer is cached already; `dir` is then left as it is.
    pub fn adopt(&self, diff_id: &Digest, dir: &Path) -> Result<()> {
        let dest = self.path(diff_id);
        if dest.is_dir() {
            return Ok(());
        }
        let _lock = self.lock(diff_id)?;
        if dest.is_dir() {
            return Ok(());
        }
        // Flushed before it appears, as an unpacked layer is.
        sys_syncfs(dir)?;
        fs::rename(dir, &dest).map_err(io_err(&dest))?;
        if let Ok(d) = File::open(&self.root) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    fn unpack_into(
        &self,
        store: &Store,
        blob: &Descriptor,
        diff_id: &Digest,
        tmp: &Path,
    ) -> Result<()> {
        let file = store.open_blob(&blob.digest)?;
        let unpacked =
            unpack_layer(io::BufReader::with_capacity(1 << 20, file), tmp).map_err(|source| {
                LayerError::Unpack {
                    blob: blob.digest.clone(),
                    source,
                }
            })?;
        if unpacked.diff_id != *diff_id {
            return Err(LayerError::DiffIdMismatch {
                blob: blob.digest.clone(),
                expected: diff_id.clone(),
                actual: unpacked.diff_id,
            });
        }
        Ok(())
    }

    fn lock(&self, diff_id: &Digest) -> Result<File> {
        let path = self.root.join(".locks").join(diff_id.hex());
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err(&path))?;
        f.lock().map_err(io_err(&path))?;
        Ok(f)
    }
}

fn sys_syncfs(path: &Path) -> Result<()> {
    crate::sys::syncfs(path).map_err(io_err(path))
}

fn remove_tree(path: &Path) -> Result<()> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(LayerError::Io {
            path: path.to_path_buf(),
            source: e,
        }),
    }
}
