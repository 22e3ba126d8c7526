//! Unpacking a tar stream into a directory without letting it escape.
//!
//! A layer or an `ADD`ed archive is untrusted: an entry named `../../etc/x`,
//! an absolute path, or a path that walks through a symlink the archive
//! planted earlier (`link -> /etc`, then `link/passwd`) must not write
//! outside the destination. Every entry's path is cleaned lexically and each
//! existing parent is checked not to be a symlink before anything is created;
//! files are created with `create_new`, which refuses to follow a symlink.
//! OCI whiteouts (`.wh.name`, `.wh..wh..opq`) are applied when asked, so the
//! same code unpacks image layers on top of each other.

use flate2::read::GzDecoder;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Component, Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("tar entry {0:?} escapes the destination")]
    Escape(String),
    #[error("tar entry {entry:?} passes through the symlink {link:?}")]
    ThroughSymlink { entry: String, link: String },
    #[error("hard link {entry:?} points outside the destination ({target:?})")]
    LinkEscape { entry: String, target: String },
    #[error("corrupt archive: {0}")]
    Corrupt(String),
}

type Result<T> = std::result::Result<T, UnpackError>;

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> UnpackError + '_ {
    move |source| UnpackError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct UnpackOptions {
    /// Apply OCI whiteout entries (for image layers), instead of writing them.
    pub whiteouts: bool,
    /// Keep the archive's uid/gid (needs root); otherwise files belong to us.
    pub preserve_owner: bool,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct UnpackStats {
    pub entries: u64,
    pub bytes: u64,
}

/// Wrap `reader` in a decompressor chosen by its magic bytes (gzip, zstd),
/// or pass it through when it is a plain tar.
pub fn decompress<'a>(mut reader: Box<dyn Read + 'a>) -> io::Result<Box<dyn Read + 'a>> {
    let mut magic = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = reader.read(&mut magic[got..])?;
        if n == 0 {
            break;
        }
        got += n;
    }
    let head = io::Cursor::new(magic[..got].to_vec());
    let chained: Box<dyn Read + 'a> = Box::new(head.chain(reader));
    Ok(match magic[..got] {
        [0x1f, 0x8b, ..] => Box::new(GzDecoder::new(chained)),
        [0x28, 0xb5, 0x2f, 0xfd] => Box::new(
            ruzstd::decoding::StreamingDecoder::new(chained)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?,
        ),
        _ => chained,
    })
}

/// The entry's path relative to the destination, or an error if it climbs out.
pub fn clean_entry_path(raw: &str) -> Result<PathBuf> {
    let mut out = PathBuf::new();
    for c in Path::new(raw).components() {
        match c {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                if !out.pop() {
                    return Err(UnpackError::Escape(raw.to_string()));
                }
            }
            Component::Normal(n) => out.push(n),
        }
    }
    Ok(out)
}

/// Create the parents of `rel` under `dest`, refusing to pass through a symlink.
fn prepare_parents(dest: &Path, rel: &Path, raw: &str) -> Result<()> {
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
            Ok(_) => {
                // A file where a directory must go: the later entry wins, as in tar.
                fs::remove_file(&cur).map_err(io_err(&cur))?;
                fs::create_dir(&cur).map_err(io_err(&cur))?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&cur).map_err(io_err(&cur))?;
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

/// Remove whatever is at `path` (file, symlink or directory tree).
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

pub fn unpack(reader: impl Read, dest: &Path, opts: UnpackOptions) -> Result<UnpackStats> {
    unpack_only(reader, dest, opts, &|_| true)
}

/// [`unpack`] of the entries `keep` wants: it is asked with the path an
/// entry makes or removes (a whiteout's hidden path, an opaque marker's
/// directory), relative to `dest`. The archive is still read through.
pub fn unpack_only(
    reader: impl Read,
    dest: &Path,
    opts: UnpackOptions,
    keep: &dyn Fn(&Path) -> bool,
) -> Result<UnpackStats> {
    fs::create_dir_all(dest).map_err(io_err(dest))?;
    let mut archive = tar::Archive::new(reader);
    let mut stats = UnpackStats::default();
    // Directory modes are applied last: a read-only directory must still
    // receive the entries that follow it.
    let mut dir_modes: Vec<(PathBuf, u32)> = Vec::new();
    let entries = archive
        .entries()
        .map_err(|e| UnpackError::Corrupt(e.to_string()))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| UnpackError::Corrupt(e.to_string()))?;
        let raw = entry
            .path()
            .map_err(|e| UnpackError::Corrupt(e.to_string()))?
            .to_string_lossy()
            .into_owned();
        let rel = clean_entry_path(&raw)?;
        stats.entries += 1;
        if rel.as_os_str().is_empty() {
            continue; // `./` itself
        }
        let affects = match rel.file_name().and_then(|n| n.to_str()) {
            Some(".wh..wh..opq") => rel.parent().map(Path::to_path_buf).unwrap_or_default(),
            Some(n) if n.starts_with(".wh.") => rel.with_file_name(&n[4..]),
            _ => rel.clone(),
        };
        if !keep(&affects) {
            continue;
        }
        prepare_parents(dest, &rel, &raw)?;
        let target = dest.join(&rel);
        let name = rel
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if opts.whiteouts {
            if name == ".wh..wh..opq" {
                let dir = target.parent().unwrap_or(dest);
                if let Ok(children) = fs::read_dir(dir) {
                    for child in children.flatten() {
                        remove_any(&child.path())?;
                    }
                }
                continue;
            }
            if let Some(hidden) = name.strip_prefix(".wh.") {
                // `.wh..` and `.wh...` would name the directory itself or its
                // parent, which for a top-level entry is outside `dest`.
                if matches!(hidden, "" | "." | "..") {
                    return Err(UnpackError::Escape(raw));
                }
                remove_any(&target.with_file_name(hidden))?;
                continue;
            }
        }
        let header = entry.header();
        let kind = header.entry_type();
        let mut mode = header.mode().unwrap_or(0o644) & 0o7777;
        if !opts.preserve_owner && kind != tar::EntryType::Directory {
            // The file becomes ours (root's, under berth), not the archive's
            // owner's: a set-user/group-ID bit kept now would hand whoever
            // wrote the archive our identity.
            mode &= !0o6000;
        }
        let owner = (header.uid().ok(), header.gid().ok());
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
                dir_modes.push((target.clone(), mode));
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                remove_any(&target)?;
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&target)
                    .map_err(io_err(&target))?;
                let n = io::copy(&mut entry, &mut f).map_err(io_err(&target))?;
                stats.bytes += n;
                if opts.preserve_owner {
                    // Before the mode: a chown clears set-ID bits.
                    if let (Some(uid), Some(gid)) = owner {
                        std::os::unix::fs::fchown(&f, Some(uid as u32), Some(gid as u32))
                            .map_err(io_err(&target))?;
                    }
                }
                f.set_permissions(fs::Permissions::from_mode(mode))
                    .map_err(io_err(&target))?;
                continue;
            }
            tar::EntryType::Symlink => {
                let link = entry
                    .link_name()
                    .map_err(|e| UnpackError::Corrupt(e.to_string()))?
                    .ok_or_else(|| {
                        UnpackError::Corrupt(format!("symlink {raw:?} has no target"))
                    })?;
                remove_any(&target)?;
                symlink(&link, &target).map_err(io_err(&target))?;
            }
            tar::EntryType::Link => {
                let link = entry
                    .link_name()
                    .map_err(|e| UnpackError::Corrupt(e.to_string()))?
                    .ok_or_else(|| {
                        UnpackError::Corrupt(format!("hard link {raw:?} has no target"))
                    })?
                    .to_string_lossy()
                    .into_owned();
                let link_rel = clean_entry_path(&link).map_err(|_| UnpackError::LinkEscape {
                    entry: raw.clone(),
                    target: link.clone(),
                })?;
                // The link's source must itself be reachable without symlinks.
                prepare_parents(dest, &link_rel, &raw)?;
                let source = dest.join(&link_rel);
                if fs::symlink_metadata(&source).is_ok_and(|m| m.file_type().is_symlink()) {
                    return Err(UnpackError::LinkEscape {
                        entry: raw,
                        target: link,
                    });
                }
                remove_any(&target)?;
                fs::hard_link(&source, &target).map_err(io_err(&target))?;
            }
            // Devices and fifos need mknod; layers that carry them are rare and
            // the runtime provides /dev itself.
            _ => continue,
        }
        if opts.preserve_owner && kind != tar::EntryType::Link {
            if let (Some(uid), Some(gid)) = owner {
                std::os::unix::fs::lchown(&target, Some(uid as u32), Some(gid as u32))
                    .map_err(io_err(&target))?;
            }
        }
    }
    for (dir, mode) in dir_modes.into_iter().rev() {
        // A later entry may have replaced the directory (or one of its
        // parents) with a symlink: a mode set through it would change a
        // file outside the destination.
        if !is_real_dir_under(dest, &dir) {
            continue;
        }
        fs::set_permissions(&dir, fs::Permissions::from_mode(mode)).map_err(io_err(&dir))?;
    }
    Ok(stats)
}

/// True when `path` (below `dest`) is a directory reached without passing
/// through any symlink.
fn is_real_dir_under(dest: &Path, path: &Path) -> bool {
    let Ok(rel) = path.strip_prefix(dest) else {
        return false;
    };
    let mut cur = dest.to_path_buf();
    rel.components().all(|c| {
        cur.push(c);
        fs::symlink_metadata(&cur).is_ok_and(|m| m.is_dir())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        build(&mut b);
        b.into_inner().unwrap()
    }

    fn file(b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        // set_path refuses `..`; write the raw name so hostile archives can be made.
        let name = &mut h.as_old_mut().name;
        name[..path.len()].copy_from_slice(path.as_bytes());
        h.set_cksum();
        b.append(&h, data).unwrap();
    }

    fn link(b: &mut tar::Builder<Vec<u8>>, path: &str, target: &str, kind: tar::EntryType) {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(0);
        h.set_mode(0o777);
        let name = &mut h.as_old_mut().name;
        name[..path.len()].copy_from_slice(path.as_bytes());
        let ln = &mut h.as_old_mut().linkname;
        ln[..target.len()].copy_from_slice(target.as_bytes());
        h.set_cksum();
        b.append(&h, &[][..]).unwrap();
    }

    #[test]
    fn plain_files_and_dirs() {
        let dir = tempfile::tempdir().unwrap();
        let tar = archive(|b| {
            file(b, "app/index.js", b"hello");
            file(b, "/abs/is/relative", b"x");
        });
        let stats = unpack(&tar[..], dir.path(), UnpackOptions::default()).unwrap();
        assert_eq!(stats.entries, 2);
        assert_eq!(fs::read(dir.path().join("app/index.js")).unwrap(), b"hello");
        assert!(dir.path().join("abs/is/relative").is_file());
    }

    #[test]
    fn dot_dot_is_refused() {
        let outer = tempfile::tempdir().unwrap();
        let dest = outer.path().join("root");
        let tar = archive(|b| file(b, "../escaped", b"x"));
        let err = unpack(&tar[..], &dest, UnpackOptions::default()).unwrap_err();
        assert!(matches!(err, UnpackError::Escape(_)), "{err}");
        assert!(!outer.path().join("escaped").exists());
    }

    #[test]
    fn symlink_tricks_are_refused() {
        let outer = tempfile::tempdir().unwrap();
        let dest = outer.path().join("root");
        let victim = outer.path().join("victim");
        fs::create_dir(&victim).unwrap();
        let tar = archive(|b| {
            link(b, "evil", victim.to_str().unwrap(), tar::EntryType::Symlink);
            file(b, "evil/pwned", b"x");
        });
        let err = unpack(&tar[..], &dest, UnpackOptions::default()).unwrap_err();
        assert!(matches!(err, UnpackError::ThroughSymlink { .. }), "{err}");
        assert!(!victim.join("pwned").exists());
        // A hard link to a path outside is refused too.
        let tar = archive(|b| link(b, "h", "../../etc/passwd", tar::EntryType::Link));
        let err = unpack(&tar[..], &outer.path().join("r2"), UnpackOptions::default()).unwrap_err();
        assert!(matches!(err, UnpackError::LinkEscape { .. }), "{err}");
    }

    #[test]
    fn whiteouts_remove_lower_content() {
        let dir = tempfile::tempdir().unwrap();
        let lower = archive(|b| {
            file(b, "a/keep", b"1");
            file(b, "a/gone", b"2");
            file(b, "b/x", b"3");
        });
        unpack(
            &lower[..],
            dir.path(),
            UnpackOptions {
                whiteouts: true,
                ..Default::default()
            },
        )
        .unwrap();
        let upper = archive(|b| {
            file(b, "a/.wh.gone", b"");
            file(b, "b/.wh..wh..opq", b"");
        });
        unpack(
            &upper[..],
            dir.path(),
            UnpackOptions {
                whiteouts: true,
                ..Default::default()
            },
        )
        .unwrap();
        assert!(dir.path().join("a/keep").exists());
        assert!(!dir.path().join("a/gone").exists());
        assert!(dir.path().join("b").is_dir());
        assert!(!dir.path().join("b/x").exists());
    }

    #[test]
    fn gzip_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let tar = archive(|b| file(b, "f", b"data"));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        io::Write::write_all(&mut gz, &tar).unwrap();
        let gz = gz.finish().unwrap();
        let reader = decompress(Box::new(&gz[..])).unwrap();
        unpack(reader, dir.path(), UnpackOptions::default()).unwrap();
        assert_eq!(fs::read(dir.path().join("f")).unwrap(), b"data");
    }
}
