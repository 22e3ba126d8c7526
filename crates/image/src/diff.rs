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
/// anywhere writable any more) records, and whether `upper` is exactly
/// that layer unpacked in overlayfs format (no time clamped, no socket,
/// device or extended attribute left out), so that it can serve as the
/// layer's directory as it is.
pub fn layer_from_upper(store: &Store, upper: &Path) -> Result<(Layer, bool), LayerError> {
    let clamp = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    layer_clamped(store, upper, clamp)
}

fn layer_clamped(
    store: &Store,
    upper: &Path,
    clamp: Option<u64>,
) -> Result<(Layer, bool), LayerError> {
    let mut l = LayerBuilder::new(store)?;
    let mut exact = true;
    walk(&mut l, upper, "", clamp, &mut exact)?;
    Ok((l.finish()?, exact))
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> LayerError + '_ {
    move |source| LayerError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn walk(
    l: &mut LayerBuilder,
    dir: &Path,
    rel: &str,
    clamp: Option<u64>,
    exact: &mut bool,
) -> Result<(), LayerError> {
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
        let written = clamp.map_or(mtime, |c| mtime.min(c));
        l.set_mtime(written);
        if *exact && (written != mtime || has_foreign_xattrs(&path)) {
            *exact = false;
        }
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
            walk(l, &path, &entry, clamp, exact)?;
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
        } else {
            *exact = false;
        }
        // Sockets and device nodes left by a step are not image content
        // (docker drops sockets too; device nodes belong to the runtime).
    }
    Ok(())
}

/// Whether `path` has extended attributes other than overlayfs' own
/// (which the layer's directory keeps in the same format); layers carry
/// none, so such a file differs from its layer entry.
fn has_foreign_xattrs(path: &Path) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
        return true;
    };
    let mut buf = vec![0u8; 1024];
    // SAFETY: a NUL-terminated path and a buffer whose length is passed.
    let n = unsafe { libc::llistxattr(c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        // No xattr support means none; a list too long for the buffer is foreign.
        return std::io::Error::last_os_error().raw_os_error() != Some(libc::ENOTSUP);
    }
    buf[..n as usize]
        .split(|b| *b == 0)
        .filter(|name| !name.is_empty())
        .any(|name| !name.starts_with(b"trusted.overlay.") && !name.starts_with(b"user.overlay."))
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

#[cfg(test)]
mod tests {
    //! These make a whiteout device and a `trusted.` xattr: root only, as
    //! the builder's `RUN` is.
    use super::*;

    #[test]
    fn overlay_changes_become_oci_entries_with_clamped_times() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("s")).unwrap();
        let upper = dir.path().join("upper");
        fs::create_dir_all(upper.join("etc/replaced")).unwrap();
        fs::write(upper.join("etc/new"), "x").unwrap();
        fs::write(upper.join("etc/replaced/only"), "y").unwrap();
        let c = |p: &Path| CString::new(p.as_os_str().as_bytes()).unwrap();
        let gone = c(&upper.join("etc/gone"));
        // SAFETY: a valid path; a 0/0 character device is overlayfs' whiteout.
        assert_eq!(
            unsafe { libc::mknod(gone.as_ptr(), libc::S_IFCHR | 0o600, 0) },
            0
        );
        let replaced = c(&upper.join("etc/replaced"));
        // SAFETY: valid strings and a 1-byte value.
        let set = unsafe {
            libc::lsetxattr(
                replaced.as_ptr(),
                c"trusted.overlay.opaque".as_ptr(),
                b"y".as_ptr().cast(),
                1,
                0,
            )
        };
        assert_eq!(set, 0);
        let (layer, exact) = layer_clamped(&store, &upper, Some(1000)).unwrap();
        assert!(!exact, "times were clamped");
        let mut entries = Vec::new();
        let mut archive = tar::Archive::new(store.open_blob(&layer.diff_id).unwrap());
        for e in archive.entries().unwrap() {
            let e = e.unwrap();
            let h = e.header();
            entries.push((
                e.path().unwrap().to_string_lossy().into_owned(),
                h.entry_type(),
                h.mtime().unwrap(),
            ));
        }
        let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "etc/",
                "etc/.wh.gone",
                "etc/new",
                "etc/replaced/",
                "etc/replaced/.wh..wh..opq",
                "etc/replaced/only"
            ]
        );
        assert!(entries.iter().all(|e| e.2 <= 1000), "{entries:?}");
        assert!(
            entries.iter().all(|e| e.1 != tar::EntryType::Char),
            "{entries:?}"
        );
        // Without SOURCE_DATE_EPOCH the files keep their own times.
        let (kept, exact) = layer_clamped(&store, &upper, None).unwrap();
        assert!(
            exact,
            "whiteouts and opaque dirs are the layer's own format"
        );
        let mut archive = tar::Archive::new(store.open_blob(&kept.diff_id).unwrap());
        let newest = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().header().mtime().unwrap())
            .max()
            .unwrap();
        assert!(newest > 1000);
    }
}
