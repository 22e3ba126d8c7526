//! A `RUN` step's changes as a layer: the upper directory of the overlay
//! the step ran on, with overlayfs' whiteouts (0/0 character devices) and
//! opaque directories (`trusted.overlay.opaque=y`) turned into OCI ones
//! (`.wh.NAME`, `.wh..wh..opq`).
//!
//! Entries are written in name order with their own owner and mode; their
//! times are clamped to `SOURCE_DATE_EPOCH` when it is set, so a rebuild
//! that writes the same files gives the same layer.

use crate::layer::{Layer, LayerBuilder, LayerError, Owner};
use berth_oci::Store;
use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

/// The layer holding what `upper` (an overlay's upper dir, not mounted
/// anywhere writable any more) records.
pub fn layer_from_upper(store: &Store, upper: &Path) -> Result<Layer, LayerError> {
    let clamp = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    let mut l = LayerBuilder::new(store)?;
    walk(&mut l, upper, "", clamp)?;
    l.finish()
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> LayerError + '_ {
    move |source| LayerError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn walk(l: &mut LayerBuilder, dir: &Path, rel: &str, clamp: Option<u64>) -> Result<(), LayerError> {
    let mut names: Vec<_> = fs::read_dir(dir)
        .map_err(io_err(dir))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<_>>()
        .map_err(io_err(dir))?;
    names.sort();
    for name in names {
        let path = dir.join(&name);
        let Some(name) = name.to_str() else {
            return Err(io_err(&path)(io::Error::new(
                io::ErrorKind::InvalidData,
                "a file name that is not UTF-8 cannot go into a layer",
            )));
        };
        let entry = if rel.is_empty() {
            name.to_string()
        } else {
            format!("{rel}/{name}")
        };
        let meta = fs::symlink_metadata(&path).map_err(io_err(&path))?;
        let mtime = meta.mtime().max(0) as u64;
        l.set_mtime(clamp.map_or(mtime, |c| mtime.min(c)));
        let owner = Owner {
            uid: u64::from(meta.uid()),
            gid: u64::from(meta.gid()),
        };
        let ft = meta.file_type();
        if ft.is_char_device() && meta.rdev() == 0 {
            let whiteout = match entry.rsplit_once('/') {
                Some((parent, _)) => format!("{parent}/.wh.{name}"),
                None => format!(".wh.{name}"),
            };
            l.add_bytes(&whiteout, b"", 0o600, Owner::ROOT)?;
        } else if ft.is_dir() {
            l.add_dir(&entry, meta.mode(), owner)?;
            if is_opaque(&path) {
                l.add_bytes(&format!("{entry}/.wh..wh..opq"), b"", 0o600, Owner::ROOT)?;
            }
            walk(l, &path, &entry, clamp)?;
        } else if ft.is_file() {
            l.add_file(&entry, &path, meta.mode(), owner)?;
        } else if ft.is_symlink() {
            let target = fs::read_link(&path).map_err(io_err(&path))?;
            let target = target.to_str().ok_or_else(|| {
                io_err(&path)(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "a link target that is not UTF-8 cannot go into a layer",
                ))
            })?;
            l.add_symlink(&entry, target, owner)?;
        } else if ft.is_fifo() {
            l.add_fifo(&entry, meta.mode(), owner)?;
        }
        // Sockets and device nodes left by a step are not image content
        // (docker drops sockets too; device nodes belong to the runtime).
    }
    Ok(())
}

/// Whether overlayfs marked `dir` opaque: it replaced a lower directory
/// of the same name instead of merging with it.
fn is_opaque(dir: &Path) -> bool {
    let Ok(path) = CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    [c"trusted.overlay.opaque", c"user.overlay.opaque"]
        .iter()
        .any(|name| {
            let mut buf = [0u8; 4];
            // SAFETY: both strings are NUL-terminated, the buffer's length is passed.
            let n = unsafe {
                libc::lgetxattr(
                    path.as_ptr(),
                    name.as_ptr(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                )
            };
            n == 1 && buf[0] == b'y'
        })
}
