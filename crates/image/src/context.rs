//! The build context: which files the build may see, and what they hash to.
//!
//! The walk is sequential (directory reads are cheap), file hashing is
//! parallel (it is the expensive part on big contexts), and nothing is read
//! into memory whole: files are streamed through the hasher, and later
//! straight into a layer.

use berth_oci::digest::HashingWriter;
use berth_oci::Digest;
use rayon::prelude::*;
use std::fs;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("build context {} is not a directory", .0.display())]
    NotADirectory(PathBuf),
}

/// Decides what `.dockerignore` leaves out.
pub trait Exclude: Sync {
    fn excluded(&self, rel: &str, is_dir: bool) -> bool;
    /// True when nothing below `rel` can be re-included, so the walk may
    /// skip the directory entirely.
    fn can_skip_dir(&self, rel: &str) -> bool;
}

/// Excludes nothing.
pub struct Everything;

impl Exclude for Everything {
    fn excluded(&self, _: &str, _: bool) -> bool {
        false
    }
    fn can_skip_dir(&self, _: &str) -> bool {
        false
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    Symlink(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path relative to the context root, `/`-separated, no leading `/`.
    pub rel: String,
    pub path: PathBuf,
    pub kind: EntryKind,
    pub mode: u32,
    pub size: u64,
}

/// Every entry of the context not excluded, sorted by path. Entry paths are
/// under the canonical root (no symlink anywhere in them), which is what
/// [`open_entry`] checks a file against when it is read.
pub fn walk(root: &Path, exclude: &dyn Exclude) -> Result<Vec<Entry>, ContextError> {
    if !root.is_dir() {
        return Err(ContextError::NotADirectory(root.to_path_buf()));
    }
    let root = &fs::canonicalize(root).map_err(|source| ContextError::Io {
        path: root.to_path_buf(),
        source,
    })?;
    let mut out = Vec::new();
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, rel_dir)) = stack.pop() {
        let read = fs::read_dir(&dir).map_err(|source| ContextError::Io {
            path: dir.clone(),
            source,
        })?;
        for entry in read {
            let entry = entry.map_err(|source| ContextError::Io {
                path: dir.clone(),
                source,
            })?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel = if rel_dir.is_empty() {
                name
            } else {
                format!("{rel_dir}/{name}")
            };
            let path = entry.path();
            let meta = fs::symlink_metadata(&path).map_err(|source| ContextError::Io {
                path: path.clone(),
                source,
            })?;
            let ft = meta.file_type();
            let is_dir = ft.is_dir();
            let excluded = exclude.excluded(&rel, is_dir);
            if is_dir {
                // An excluded directory is still walked when an exception
                // pattern may re-include something inside it.
                if excluded && exclude.can_skip_dir(&rel) {
                    continue;
                }
                if !excluded {
                    out.push(Entry {
                        rel: rel.clone(),
                        path: path.clone(),
                        kind: EntryKind::Dir,
                        mode: meta.permissions().mode() & 0o7777,
                        size: 0,
                    });
                }
                stack.push((path, rel));
                continue;
            }
            if excluded {
                continue;
            }
            let kind = if ft.is_symlink() {
                let target = fs::read_link(&path).map_err(|source| ContextError::Io {
                    path: path.clone(),
                    source,
                })?;
                EntryKind::Symlink(target.to_string_lossy().into_owned())
            } else if ft.is_file() {
                EntryKind::File
            } else {
                continue; // sockets, fifos, devices are not build inputs
            };
            out.push(Entry {
                rel,
                path,
                kind,
                mode: meta.permissions().mode() & 0o7777,
                size: meta.len(),
            });
        }
    }
    out.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(out)
}

/// Open a file entry of [`walk`] for reading, refusing it when its path no
/// longer leads to a file inside the context: whoever owns the context may
/// change it while berth reads it, and a file (or a directory above it)
/// swapped for a symlink must not make berth copy a host file into an image.
/// The check is on the opened file itself, so it holds whatever happens
/// after.
pub fn open_entry(path: &Path) -> io::Result<fs::File> {
    let file = fs::File::open(path)?;
    let opened = fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))?;
    if opened != path {
        return Err(io::Error::other(format!(
            "changed while the build read it: it now leads to {}",
            opened.display()
        )));
    }
    if !file.metadata()?.is_file() {
        return Err(io::Error::other(
            "changed while the build read it: no longer a regular file",
        ));
    }
    Ok(file)
}

/// One digest over the entries' paths, kinds, modes and contents. File
/// contents are hashed in parallel.
pub fn content_digest(entries: &[Entry]) -> Result<Digest, ContextError> {
    let file_hashes: Vec<Option<Digest>> = entries
        .par_iter()
        .map(|e| match e.kind {
            EntryKind::File => open_entry(&e.path)
                .and_then(crate::layer::hash_reader)
                .map(Some)
                .map_err(|source| ContextError::Io {
                    path: e.path.clone(),
                    source,
                }),
            _ => Ok(None),
        })
        .collect::<Result<_, _>>()?;
    let mut w = HashingWriter::new(io::sink());
    for (e, h) in entries.iter().zip(&file_hashes) {
        let kind = match &e.kind {
            EntryKind::File => "f".to_string(),
            EntryKind::Dir => "d".to_string(),
            EntryKind::Symlink(t) => format!("l:{t}"),
        };
        let hash = h.as_ref().map(Digest::as_str).unwrap_or("");
        // Length-prefixed fields: no two different entry lists hash alike.
        for field in [
            e.rel.as_str(),
            kind.as_str(),
            &format!("{:o}", e.mode),
            hash,
        ] {
            let _ = write!(w, "{}:{field}", field.len());
        }
    }
    Ok(w.finish().1)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoNodeModules;
    impl Exclude for NoNodeModules {
        fn excluded(&self, rel: &str, _: bool) -> bool {
            rel == "node_modules" || rel.starts_with("node_modules/")
        }
        fn can_skip_dir(&self, rel: &str) -> bool {
            self.excluded(rel, true)
        }
    }

    #[test]
    fn walk_sorts_and_excludes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("node_modules/x")).unwrap();
        fs::write(root.join("node_modules/x/big"), b"x").unwrap();
        fs::create_dir(root.join("lib")).unwrap();
        fs::write(root.join("lib/a.js"), b"a").unwrap();
        fs::write(root.join("index.js"), b"i").unwrap();
        std::os::unix::fs::symlink("index.js", root.join("main.js")).unwrap();
        let entries = walk(root, &NoNodeModules).unwrap();
        let rels: Vec<&str> = entries.iter().map(|e| e.rel.as_str()).collect();
        assert_eq!(rels, ["index.js", "lib", "lib/a.js", "main.js"]);
        assert_eq!(entries[3].kind, EntryKind::Symlink("index.js".into()));
    }

    #[test]
    fn digest_tracks_content_not_order_or_time() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::write(root.join("a"), b"1").unwrap();
        fs::write(root.join("b"), b"2").unwrap();
        let d1 = content_digest(&walk(root, &Everything).unwrap()).unwrap();
        // Rewriting the same bytes (a new mtime) keeps the digest.
        fs::write(root.join("a"), b"1").unwrap();
        let d2 = content_digest(&walk(root, &Everything).unwrap()).unwrap();
        assert_eq!(d1, d2);
        fs::write(root.join("a"), b"changed").unwrap();
        let d3 = content_digest(&walk(root, &Everything).unwrap()).unwrap();
        assert_ne!(d1, d3);
    }
}
