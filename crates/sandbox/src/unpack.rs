//! Unpacking one image layer into a directory that overlayfs can use as a
//! lower layer.
//!
//! Unlike `berth_image::unpack`, which applies OCI whiteouts to what is
//! already there, a layer here is unpacked alone into an empty directory, and
//! its whiteouts are *recorded* the way overlayfs reads them: `.wh.NAME`
//! becomes a character device 0/0 named `NAME`, and `.wh..wh..opq` becomes
//! the xattr `trusted.overlay.opaque=y` on its directory. Ownership, modes,
//! mtimes, fifos and `SCHILY.xattr.*` attributes are kept, since the
//! result is a container's filesystem and not a build context; device nodes
//! are not (see `unpack_entry`).
//!
//! The archive is untrusted: entry paths are cleaned with
//! [`berth_image::unpack::clean_entry_path`] (no `..` out of the
//! destination), no entry is created through a symlink the archive planted
//! earlier, and files are created with `O_EXCL` after removing what was there,
//! so a write never follows a link.
//!
//! The uncompressed stream is hashed while it is read; the caller compares
//! the result with the layer's diff ID.

use crate::sys;
use berth_image::unpack::{clean_entry_path, decompress};
use berth_oci::digest::HashingWriter;
use berth_oci::Digest;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{symlink, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("tar entry {0:?} escapes the layer")]
    Escape(String),
    #[error("tar entry {entry:?} passes through the symlink {link:?}")]
    ThroughSymlink { entry: String, link: String },
    #[error("hard link {entry:?} points outside the layer ({target:?})")]
    LinkEscape { entry: String, target: String },
    #[error("corrupt layer archive: {0}")]
    Corrupt(String),
}

type Result<T> = std::result::Result<T, UnpackError>;

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> UnpackError + '_ {
    move |source| UnpackError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn corrupt(e: impl std::fmt::Display) -> UnpackError {
    UnpackError::Corrupt(e.to_string())
}

/// The overlayfs xattr that makes a directory hide the layers below it.
pub const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// What an unpack produced.
#[derive(Debug)]
pub struct Unpacked {
    /// sha256 of the uncompressed tar stream: the layer's diff ID if intact.
    pub diff_id: Digest,
}

/// A reader that hashes everything read through it.
struct HashingReader<R> {
    inner: R,
    hash: HashingWriter<io::Sink>,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.write_all(&buf[..n])?;
        Ok(n)
    }
}

/// Unpack the (possibly compressed) layer `blob` into the empty or missing
/// directory `dest`, in overlayfs format.
pub fn unpack_layer(blob: impl Read, dest: &Path) -> Result<Unpacked> {
    fs::create_dir_all(dest).map_err(io_err(dest))?;
    let plain = decompress(Box::new(blob)).map_err(corrupt)?;
    let mut archive = tar::Archive::new(HashingReader {
        inner: plain,
        hash: HashingWriter::new(io::sink()),
    });
    // Directory modes and mtimes are applied last: a read-only directory must
    // still receive the entries that follow it, and creating a child bumps
    // its parent's mtime.
    let mut dirs: Vec<(PathBuf, u32, Option<i64>)> = Vec::new();
    for entry in archive.entries().map_err(corrupt)? {
        let mut entry = entry.map_err(corrupt)?;
        unpack_entry(&mut entry, dest, &mut dirs)?;
    }
    for (dir, mode, mtime) in dirs.into_iter().rev() {
        // A later entry may have replaced the directory with a symlink:
        // the mode goes to what is there now, and only if it is still a
        // directory (a path-based chmod would follow the link).
        let opened = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_DIRECTORY)
            .open(&dir);
        let Ok(handle) = opened else { continue };
        handle
            .set_permissions(fs::Permissions::from_mode(mode))
            .map_err(io_err(&dir))?;
        if let Some(t) = mtime {
            let _ = sys::set_mtime(&dir, t);
        }
    }
    // The tar reader stops at the end-of-archive marker; whatever padding
    // follows is part of the diff ID too.
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(corrupt)?;
    let (_, diff_id, _) = rest.hash.finish();
    Ok(Unpacked { diff_id })
}

fn unpack_entry<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    dest: &Path,
    dirs: &mut Vec<(PathBuf, u32, Option<i64>)>,
) -> Result<()> {
    let raw = entry
        .path()
        .map_err(corrupt)?
        .to_string_lossy()
        .into_owned();
    let rel = clean_entry_path(&raw).map_err(|_| UnpackError::Escape(raw.clone()))?;
    if rel.as_os_str().is_empty() {
        return Ok(()); // `./` itself
    }
    prepare_parents(dest, &rel, &raw, true)?;
    let target = dest.join(&rel);
    let name = rel
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();

    if name == OPAQUE_MARKER {
        let dir = target.parent().unwrap_or(dest);
        return sys::set_xattr(dir, OPAQUE_XATTR, b"y").map_err(io_err(dir));
    }
    if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
        // Other `.wh..wh.*` names are aufs bookkeeping, meaningless here.
        if hidden.is_empty() || hidden.starts_with(WHITEOUT_PREFIX) {
            return Ok(());
        }
        // `.wh..` and `.wh...` would name the directory itself or its parent.
        if hidden == "." || hidden == ".." {
            return Err(UnpackError::Escape(raw));
        }
        let whiteout = target.with_file_name(hidden);
        remove_any(&whiteout)?;
        return sys::mknod(&whiteout, libc::S_IFCHR, 0, 0).map_err(io_err(&whiteout));
    }

    let header = entry.header();
    let mode = header.mode().unwrap_or(0o644) & 0o7777;
    // Lenient like GNU tar: some writers leave numeric fields blank.
    let uid = header.uid().unwrap_or(0);
    let gid = header.gid().unwrap_or(0);
    let mtime = header.mtime().ok().map(|t| t as i64);
    let kind = header.entry_type();
    match kind {
        tar::EntryType::Directory => {
            match fs::symlink_metadata(&target) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    remove_any(&target)?;
                    fs::create_dir(&target).map_err(io_err(&target))?;
                }
                Err(_) => fs::create_dir(&target).map_err(io_err(&target))?,
            }
            chown(&target, uid, gid)?;
            dirs.push((target.clone(), mode, mtime));
        }
        tar::EntryType::Regular | tar::EntryType::Continuous => {
            remove_any(&target)?;
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&target)
                .map_err(io_err(&target))?;
            io::copy(entry, &mut f).map_err(io_err(&target))?;
            drop(f);
            chown(&target, uid, gid)?;
            // After chown: changing the owner clears set-id bits.
            fs::set_permissions(&target, fs::Permissions::from_mode(mode))
                .map_err(io_err(&target))?;
        }
        tar::EntryType::Symlink => {
            let link = entry
                .link_name()
                .map_err(corrupt)?
                .ok_or_else(|| corrupt(format!("symlink {raw:?} has no target")))?;
            remove_any(&target)?;
            // A symlink may point anywhere: it is only ever resolved inside
            // the container, or by code here that refuses to pass through it.
            symlink(&link, &target).map_err(io_err(&target))?;
            chown(&target, uid, gid)?;
        }
        tar::EntryType::Link => {
            let link = entry
                .link_name()
                .map_err(corrupt)?
                .ok_or_else(|| corrupt(format!("hard link {raw:?} has no target")))?
                .to_string_lossy()
                .into_owned();
            let escape = || UnpackError::LinkEscape {
                entry: raw.clone(),
                target: link.clone(),
            };
            let link_rel = clean_entry_path(&link).map_err(|_| escape())?;
            if link_rel.as_os_str().is_empty() {
                return Err(escape());
            }
            // The source must be reachable without passing through a symlink;
            // linkat(2) itself never follows the last component.
            prepare_parents(dest, &link_rel, &raw, false)?;
            let source = dest.join(&link_rel);
            remove_any(&target)?;
            fs::hard_link(&source, &target).map_err(io_err(&target))?;
            return Ok(()); // a hard link shares its source's owner, mode, xattrs
        }
        tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
            let type_bits = match kind {
                tar::EntryType::Char => libc::S_IFCHR,
                tar::EntryType::Block => libc::S_IFBLK,
                _ => libc::S_IFIFO,
            };
            let major = header.device_major().ok().flatten().unwrap_or(0);
            let minor = header.device_minor().ok().flatten().unwrap_or(0);
            // A device node in the layer cache opens the host's device for
            // whoever reaches it on the host; in a container, /dev is a
            // fresh tmpfs and the device cgroup refuses image nodes anyway.
            // Only fifos and 0/0 (overlayfs' whiteout) are kept.
            if type_bits != libc::S_IFIFO && (major, minor) != (0, 0) {
                return Ok(());
            }
            remove_any(&target)?;
            sys::mknod(&target, type_bits | mode, major, minor).map_err(io_err(&target))?;
            chown(&target, uid, gid)?;
        }
        // Pax and GNU metadata entries are consumed by the tar reader; any
        // other type has no meaning in a container filesystem.
        _ => return Ok(()),
    }
    apply_xattrs(entry, &target)?;
    if kind != tar::EntryType::Directory {
        if let Some(t) = mtime {
            let _ = sys::set_mtime(&target, t);
        }
    }
    Ok(())
}

/// `SCHILY.xattr.NAME` pax records, as docker writes them (file capabilities
/// such as `security.capability` on `ping` live there).
fn apply_xattrs<R: Read>(entry: &mut tar::Entry<'_, R>, target: &Path) -> Result<()> {
    let Some(exts) = entry.pax_extensions().map_err(corrupt)? else {
        return Ok(());
    };
    for ext in exts {
        let ext = ext.map_err(corrupt)?;
        let Some(name) = ext.key().ok().and_then(|k| k.strip_prefix("SCHILY.xattr.")) else {
            continue;
        };
        // `trusted.*` is overlayfs' own namespace (opaque, redirect, metacopy):
        // an image must not be able to steer the overlay through it.
        if name.starts_with("trusted.") {
            continue;
        }
        // Best effort: the filesystem may not support the namespace.
        let _ = sys::set_xattr(target, name, ext.value_bytes());
    }
    Ok(())
}

fn chown(path: &Path, uid: u64, gid: u64) -> Result<()> {
    let (Ok(uid), Ok(gid)) = (u32::try_from(uid), u32::try_from(gid)) else {
        return Err(corrupt(format!(
            "{}: owner {uid}:{gid} out of range",
            path.display()
        )));
    };
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).map_err(io_err(path))
}

/// Walk the parents of `rel` under `dest`, refusing to pass through a
/// symlink; with `create`, missing ones are made (and a file where a
/// directory must go is replaced, as tar does).
fn prepare_parents(dest: &Path, rel: &Path, raw: &str, create: bool) -> Result<()> {
    let mut cur = dest.to_path_buf();
    let parent = rel.parent().unwrap_or(Path::new(""));
    for c in parent.components() {
        cur.push(c);
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(UnpackError::ThroughSymlink {
                    entry: raw.to_string(),
                    link: cur.strip_prefix(dest).unwrap_or(&cur).display().to_string(),
                })
            }
            Ok(m) if m.is_dir() => {}
            Ok(_) if create => {
                fs::remove_file(&cur).map_err(io_err(&cur))?;
                fs::create_dir(&cur).map_err(io_err(&cur))?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                fs::create_dir(&cur).map_err(io_err(&cur))?;
            }
            Ok(_) => {
                return Err(UnpackError::Io {
                    path: cur,
                    source: io::Error::from(io::ErrorKind::NotADirectory),
                })
            }
            Err(e) => {
                return Err(UnpackError::Io {
                    path: cur,
                    source: e,
                })
            }
        }
    }
    Ok(())
}

/// Remove whatever is at `path` (file, symlink, device or directory tree).
fn remove_any(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path).map_err(io_err(path)),
        Ok(_) => fs::remove_file(path).map_err(io_err(path)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(UnpackError::Io {
            path: path.to_path_buf(),
            source: e,
        }),
    }
}

/// Is this a whiteout in overlayfs format (a character device 0/0)?
pub fn is_whiteout(meta: &fs::Metadata) -> bool {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    meta.file_type().is_char_device() && meta.rdev() == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn header(path: &str, kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(mode);
        h.set_mtime(1_000_000);
        // set_path refuses `..`; write the raw name so hostile archives can be made.
        let name = &mut h.as_old_mut().name;
        name[..path.len()].copy_from_slice(path.as_bytes());
        h.set_cksum();
        h
    }

    fn archive(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        build(&mut b);
        b.into_inner().unwrap()
    }

    fn file(b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8], mode: u32) {
        let h = header(path, tar::EntryType::Regular, data.len() as u64, mode);
        b.append(&h, data).unwrap();
    }

    fn link(b: &mut tar::Builder<Vec<u8>>, path: &str, target: &str, kind: tar::EntryType) {
        let mut h = header(path, kind, 0, 0o777);
        let ln = &mut h.as_old_mut().linkname;
        ln[..target.len()].copy_from_slice(target.as_bytes());
        h.set_cksum();
        b.append(&h, &[][..]).unwrap();
    }

    #[test]
    fn whiteouts_become_overlay_whiteouts() {
        let dir = tempfile::tempdir().unwrap();
        let tar = archive(|b| {
            b.append(
                &header("etc/", tar::EntryType::Directory, 0, 0o755),
                &[][..],
            )
            .unwrap();
            file(b, "etc/.wh.motd", b"", 0o644);
            file(b, "opq/.wh..wh..opq", b"", 0o644);
            file(b, "opq/new", b"n", 0o4755);
            file(b, "ignored/.wh..wh.plnk", b"", 0o644);
        });
        let out = unpack_layer(&tar[..], dir.path()).unwrap();
        assert_eq!(out.diff_id, Digest::of(&tar));
        let motd = fs::symlink_metadata(dir.path().join("etc/motd")).unwrap();
        assert!(is_whiteout(&motd));
        assert!(!dir.path().join("etc/.wh.motd").exists());
        assert_eq!(
            sys::get_xattr(&dir.path().join("opq"), OPAQUE_XATTR).unwrap(),
            Some(b"y".to_vec())
        );
        let new = fs::metadata(dir.path().join("opq/new")).unwrap();
        assert_eq!(new.mode() & 0o7777, 0o4755);
        assert_eq!(new.mtime(), 1_000_000);
        assert_eq!(fs::read_dir(dir.path().join("ignored")).unwrap().count(), 0);
    }

    #[test]
    fn hostile_entries_are_refused() {
        let outer = tempfile::tempdir().unwrap();
        let victim = outer.path().join("victim");
        fs::create_dir(&victim).unwrap();
        let tar = archive(|b| file(b, "../escaped", b"x", 0o644));
        let err = unpack_layer(&tar[..], &outer.path().join("a")).unwrap_err();
        assert!(matches!(err, UnpackError::Escape(_)), "{err}");
        let tar = archive(|b| {
            link(b, "evil", victim.to_str().unwrap(), tar::EntryType::Symlink);
            file(b, "evil/pwned", b"x", 0o644);
        });
        let err = unpack_layer(&tar[..], &outer.path().join("b")).unwrap_err();
        assert!(matches!(err, UnpackError::ThroughSymlink { .. }), "{err}");
        assert!(!victim.join("pwned").exists());
        // A whiteout through a planted symlink must not delete outside.
        fs::write(victim.join("keep"), b"k").unwrap();
        let tar = archive(|b| {
            link(b, "evil", victim.to_str().unwrap(), tar::EntryType::Symlink);
            file(b, "evil/.wh.keep", b"", 0o644);
        });
        assert!(unpack_layer(&tar[..], &outer.path().join("c")).is_err());
        assert!(victim.join("keep").exists());
        let tar = archive(|b| link(b, "h", "../../etc/passwd", tar::EntryType::Link));
        let err = unpack_layer(&tar[..], &outer.path().join("d")).unwrap_err();
        assert!(matches!(err, UnpackError::LinkEscape { .. }), "{err}");
        // Writing a file over a planted symlink replaces the link, not its target.
        let tar = archive(|b| {
            link(
                b,
                "f",
                victim.join("keep").to_str().unwrap(),
                tar::EntryType::Symlink,
            );
            file(b, "f", b"mine", 0o644);
        });
        unpack_layer(&tar[..], &outer.path().join("e")).unwrap();
        assert_eq!(fs::read(victim.join("keep")).unwrap(), b"k");
        assert_eq!(fs::read(outer.path().join("e/f")).unwrap(), b"mine");
    }

    #[test]
    fn hard_links_and_trailing_padding_are_hashed() {
        let dir = tempfile::tempdir().unwrap();
        let mut tar = archive(|b| {
            file(b, "a", b"data", 0o644);
            link(b, "b", "a", tar::EntryType::Link);
        });
        tar.extend_from_slice(&[0u8; 4096]);
        let out = unpack_layer(&tar[..], dir.path()).unwrap();
        assert_eq!(out.diff_id, Digest::of(&tar));
        let (a, b) = (
            fs::metadata(dir.path().join("a")).unwrap(),
            fs::metadata(dir.path().join("b")).unwrap(),
        );
        assert_eq!(a.ino(), b.ino());
    }
}
