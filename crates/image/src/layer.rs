//! Reproducible layers: the same inputs always give the same bytes.
//!
//! Entries are written in the order the caller gives (callers sort them),
//! with the mtime fixed to `SOURCE_DATE_EPOCH` (or 0) and the owner to root
//! unless a `--chown` says otherwise, so a rebuild of unchanged sources has
//! the same digest. Layers are stored uncompressed: the digest then equals
//! the diff ID, nothing is spent compressing locally, and a registry accepts
//! the OCI tar media type as it is.

use berth_oci::digest::HashingWriter;
use berth_oci::store::{BlobWriter, StoreError};
use berth_oci::{media, Descriptor, Digest, Store};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("{}: {source}", path.display())]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub uid: u64,
    pub gid: u64,
}

impl Owner {
    pub const ROOT: Owner = Owner { uid: 0, gid: 0 };
}

/// The mtime written into layers: `SOURCE_DATE_EPOCH` if set, else 0.
pub fn layer_mtime() -> u64 {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

pub struct LayerBuilder<'s> {
    tar: tar::Builder<BufWriter<BlobWriter<'s>>>,
    mtime: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Layer {
    pub descriptor: Descriptor,
    /// Equal to the descriptor's digest: layers are stored uncompressed.
    pub diff_id: Digest,
}

impl<'s> LayerBuilder<'s> {
    pub fn new(store: &'s Store) -> Result<LayerBuilder<'s>, LayerError> {
        let mut tar = tar::Builder::new(BufWriter::with_capacity(1 << 20, store.blob_writer()?));
        tar.mode(tar::HeaderMode::Deterministic);
        tar.follow_symlinks(false);
        Ok(LayerBuilder {
            tar,
            mtime: layer_mtime(),
        })
    }

    /// The mtime of the entries added from now on (a `RUN` step's files
    /// keep their own times, clamped to `SOURCE_DATE_EPOCH`).
    pub fn set_mtime(&mut self, mtime: u64) {
        self.mtime = mtime;
    }

    fn header(&self, kind: tar::EntryType, mode: u32, owner: Owner, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode & 0o7777);
        h.set_uid(owner.uid);
        h.set_gid(owner.gid);
        h.set_mtime(self.mtime);
        h.set_size(size);
        h
    }

    fn io<T>(&self, path: &str, r: io::Result<T>) -> Result<T, LayerError> {
        r.map_err(|source| LayerError::Io {
            path: path.into(),
            source,
        })
    }

    /// `path` is relative to the image root, without a leading `/`.
    pub fn add_dir(&mut self, path: &str, mode: u32, owner: Owner) -> Result<(), LayerError> {
        let mut h = self.header(tar::EntryType::Directory, mode, owner, 0);
        let name = format!("{}/", path.trim_end_matches('/'));
        let r = self.tar.append_data(&mut h, &name, io::empty());
        self.io(path, r)
    }

    pub fn add_file(
        &mut self,
        path: &str,
        source: &Path,
        mode: u32,
        owner: Owner,
    ) -> Result<(), LayerError> {
        let f = File::open(source).map_err(|e| LayerError::Io {
            path: source.to_path_buf(),
            source: e,
        })?;
        self.add_open_file(path, f, source, mode, owner)
    }

    /// [`LayerBuilder::add_file`] for a file already opened (and checked)
    /// by the caller; `source` names it in errors.
    pub fn add_open_file(
        &mut self,
        path: &str,
        f: File,
        source: &Path,
        mode: u32,
        owner: Owner,
    ) -> Result<(), LayerError> {
        let len = f
            .metadata()
            .map_err(|e| LayerError::Io {
                path: source.to_path_buf(),
                source: e,
            })?
            .len();
        let mut h = self.header(tar::EntryType::Regular, mode, owner, len);
        // A file that changes size while being read would corrupt the tar; take
        // exactly `len` bytes and fail if fewer arrive.
        let mut limited = io::Read::take(f, len);
        let r = self.tar.append_data(&mut h, path, &mut limited);
        self.io(path, r)
    }

    pub fn add_bytes(
        &mut self,
        path: &str,
        data: &[u8],
        mode: u32,
        owner: Owner,
    ) -> Result<(), LayerError> {
        let mut h = self.header(tar::EntryType::Regular, mode, owner, data.len() as u64);
        let r = self.tar.append_data(&mut h, path, data);
        self.io(path, r)
    }

    pub fn add_symlink(
        &mut self,
        path: &str,
        target: &str,
        owner: Owner,
    ) -> Result<(), LayerError> {
        let mut h = self.header(tar::EntryType::Symlink, 0o777, owner, 0);
        let r = self.tar.append_link(&mut h, path, target);
        self.io(path, r)
    }

    /// A named pipe (what a `RUN` step may leave behind).
    pub fn add_fifo(&mut self, path: &str, mode: u32, owner: Owner) -> Result<(), LayerError> {
        let mut h = self.header(tar::EntryType::Fifo, mode, owner, 0);
        let r = self.tar.append_data(&mut h, path, io::empty());
        self.io(path, r)
    }

    pub fn finish(self) -> Result<Layer, LayerError> {
        let buf = self.tar.into_inner().map_err(|source| LayerError::Io {
            path: "layer".into(),
            source,
        })?;
        let blob = buf.into_inner().map_err(|e| LayerError::Io {
            path: "layer".into(),
            source: e.into_error(),
        })?;
        let (digest, size) = blob.commit(None, None)?;
        Ok(Layer {
            descriptor: Descriptor::new(media::OCI_LAYER, digest.clone(), size),
            diff_id: digest,
        })
    }
}

/// Hash a file's content (used for cache keys and the context digest).
pub fn hash_reader(mut f: impl io::Read) -> io::Result<Digest> {
    let mut w = HashingWriter::new(io::sink());
    io::copy(&mut f, &mut w)?;
    w.flush()?;
    Ok(w.finish().1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_inputs_same_digest() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("s")).unwrap();
        std::fs::write(dir.path().join("f"), b"content").unwrap();
        let build = || {
            let mut l = LayerBuilder::new(&store).unwrap();
            l.add_dir("app", 0o755, Owner::ROOT).unwrap();
            l.add_file("app/f", &dir.path().join("f"), 0o644, Owner::ROOT)
                .unwrap();
            l.add_symlink("app/l", "f", Owner::ROOT).unwrap();
            l.finish().unwrap()
        };
        let (a, b) = (build(), build());
        assert_eq!(a, b);
        assert_eq!(a.diff_id, a.descriptor.digest);
        // The layer unpacks to what went in.
        let out = dir.path().join("out");
        let f = store.open_blob(&a.diff_id).unwrap();
        crate::unpack::unpack(f, &out, Default::default()).unwrap();
        assert_eq!(std::fs::read(out.join("app/f")).unwrap(), b"content");
        assert_eq!(
            std::fs::read_link(out.join("app/l")).unwrap().to_str(),
            Some("f")
        );
        // A changed file changes the digest.
        std::fs::write(dir.path().join("f"), b"content 2").unwrap();
        assert_ne!(build().diff_id, a.diff_id);
    }
}
