//! The copy fallback: layers in overlayfs format flattened into one plain
//! directory, for hosts where an overlay cannot be mounted.
//!
//! Layers are applied bottom first, reading their whiteouts the way
//! overlayfs would: a character device 0/0 removes what lower layers put at
//! that name, and an opaque directory (`trusted.overlay.opaque=y`) drops
//! everything lower layers put inside it. Hard links within a layer stay
//! hard links; owners, modes, mtimes and xattrs are kept.

use crate::sys;
use crate::unpack::{is_whiteout, OPAQUE_XATTR};
use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::{symlink, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Copy `layers` (bottom first) into `dest`, which must exist.
pub fn flatten(layers: &[PathBuf], dest: &Path) -> io::Result<()> {
    for layer in layers {
        let mut links = HashMap::new();
        let mut dirs = Vec::new();
        copy_dir(layer, dest, &mut links, &mut dirs)?;
        // Directory metadata last: copying children changes mtimes, and a
        // read-only directory must still receive them.
        for (dir, meta) in dirs.into_iter().rev() {
            fs::set_permissions(&dir, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
            let _ = sys::set_mtime(&dir, meta.mtime());
        }
    }
    Ok(())
}

/// Copy what the image has at `subpath` (relative, e.g. `app`) into `dest`:
/// how docker populates a new volume from the image's content at its
/// mount point. A layer that whites the path out clears what lower ones put.
pub fn populate(layers: &[PathBuf], subpath: &str, dest: &Path) -> io::Result<()> {
    let rel = subpath.trim_start_matches('/');
    for layer in layers {
        let p = layer.join(rel);
        let Ok(meta) = fs::symlink_metadata(&p) else {
            continue;
        };
        if is_whiteout(&meta) || !meta.is_dir() {
            for e in fs::read_dir(dest)?.flatten() {
                let path = e.path();
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    fs::remove_dir_all(&path)?;
                } else {
                    fs::remove_file(&path)?;
                }
            }
            continue;
        }
        let mut links = HashMap::new();
        let mut dirs = Vec::new();
        copy_dir(&p, dest, &mut links, &mut dirs)?;
        for (dir, meta) in dirs.into_iter().rev() {
            fs::set_permissions(&dir, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
        }
    }
    Ok(())
}

fn copy_dir(
    src: &Path,
    dest: &Path,
    links: &mut HashMap<(u64, u64), PathBuf>,
    dirs: &mut Vec<(PathBuf, fs::Metadata)>,
) -> io::Result<()> {
    for entry in fs::read_dir(src)? {
        let entry = entry?;
        let from = entry.path();
        let to = dest.join(entry.file_name());
        let meta = fs::symlink_metadata(&from)?;
        if is_whiteout(&meta) {
            remove_any(&to)?;
            continue;
        }
        let ft = meta.file_type();
        if ft.is_dir() {
            let opaque = sys::get_xattr(&from, OPAQUE_XATTR)?.as_deref() == Some(b"y");
            match fs::symlink_metadata(&to) {
                Ok(m) if m.is_dir() && !opaque => {}
                Ok(_) => {
                    remove_any(&to)?;
                    fs::create_dir(&to)?;
                }
                Err(_) => fs::create_dir(&to)?,
            }
            std::os::unix::fs::lchown(&to, Some(meta.uid()), Some(meta.gid()))?;
            copy_xattrs(&from, &to)?;
            copy_dir(&from, &to, links, dirs)?;
            dirs.push((to, meta));
            continue;
        }
        remove_any(&to)?;
        if meta.nlink() > 1 && !ft.is_symlink() {
            let key = (meta.dev(), meta.ino());
            if let Some(first) = links.get(&key) {
                fs::hard_link(first, &to)?;
                continue;
            }
            links.insert(key, to.clone());
        }
        if ft.is_file() {
            fs::copy(&from, &to)?;
        } else if ft.is_symlink() {
            symlink(fs::read_link(&from)?, &to)?;
        } else if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() || ft.is_socket() {
            let rdev = meta.rdev();
            sys::mknod(
                &to,
                meta.mode(),
                libc::major(rdev) as u32,
                libc::minor(rdev) as u32,
            )?;
        }
        std::os::unix::fs::lchown(&to, Some(meta.uid()), Some(meta.gid()))?;
        if !ft.is_symlink() {
            // After chown: changing the owner clears set-id bits.
            fs::set_permissions(&to, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
        }
        copy_xattrs(&from, &to)?;
        let _ = sys::set_mtime(&to, meta.mtime());
    }
    Ok(())
}

fn copy_xattrs(from: &Path, to: &Path) -> io::Result<()> {
    for name in sys::list_xattrs(from)? {
        // overlayfs' own attributes describe the layer, not the file.
        if name.starts_with("trusted.overlay.") {
            continue;
        }
        if let Some(value) = sys::get_xattr(from, &name)? {
            let _ = sys::set_xattr(to, &name, &value);
        }
    }
    Ok(())
}

fn remove_any(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}
