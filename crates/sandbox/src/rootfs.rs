//! A container's root filesystem: an overlay of the image's unpacked layers
//! with a private upper dir, or a flattened copy where overlayfs is missing.
//!
//! ```text
//! <container dir>/rootfs/   the overlay mountpoint (or the copy)
//! <container dir>/upper/    the container's own writes
//! <container dir>/work/     overlayfs' scratch space
//! <container dir>/empty/    the only lower dir of an image without layers
//! ```
//!
//! The overlay is mounted in the calling process's mount namespace. A caller
//! that wants the mounts to vanish with it (a supervisor) unshares its own
//! mount namespace first.

use crate::{flatten, sys};
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

/// How root filesystems are made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RootfsMode {
    /// An overlay, falling back to a copy when it cannot be mounted.
    #[default]
    Auto,
    /// An overlay or an error.
    Overlay,
    /// Always a copy (slow, but works on any filesystem).
    Copy,
}

/// What a container's rootfs turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootfsKind {
    Overlay { upper: PathBuf },
    Copy,
}

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot mount an overlay at {}: {source}", path.display())]
    Overlay {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} is still mounted; not removing it", .0.display())]
    StillMounted(PathBuf),
    #[error("mount target {target}: {reason} (berth resolves an image's symlinks within the container's root)")]
    MountTarget {
        target: String,
        reason: &'static str,
    },
}

/// The symlinks one resolution may pass through, as the kernel's limit.
const MAX_LINKS: usize = 40;

/// `target` (clean and absolute) with every symlink in it resolved as the
/// container will see it, as docker does: inside `root`, absolute links
/// from `root`, `..` stopping at it. Components that do not exist are kept
/// as they are; the runtime then creates them inside the root, on a path
/// with no symlink left to lead it out. Only for a root nothing runs in yet.
pub(crate) fn resolve_in_root(root: &Path, target: &str) -> Result<String, RootfsError> {
    let bad = |reason| RootfsError::MountTarget {
        target: target.to_string(),
        reason,
    };
    let mut done: Vec<std::ffi::OsString> = Vec::new();
    let mut todo: std::collections::VecDeque<std::ffi::OsString> = Path::new(target)
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            _ => None,
        })
        .collect();
    let mut links = 0;
    while let Some(name) = todo.pop_front() {
        if name == ".." {
            done.pop();
            continue;
        }
        let mut path = root.to_path_buf();
        path.extend(&done);
        path.push(&name);
        match fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(bad("too many levels of symbolic links in the image"));
                }
                let link = fs::read_link(&path).map_err(io_err(&path))?;
                if link.is_absolute() {
                    done.clear();
                }
                let mut next: std::collections::VecDeque<_> = link
                    .components()
                    .filter_map(|c| match c {
                        Component::Normal(n) => Some(n.to_os_string()),
                        Component::ParentDir => Some("..".into()),
                        _ => None,
                    })
                    .collect();
                next.extend(todo);
                todo = next;
            }
            Ok(_) => done.push(name),
            Err(e) if e.kind() == io::ErrorKind::NotFound => done.push(name),
            Err(e) => return Err(io_err(&path)(e)),
        }
    }
    if done.is_empty() {
        return Err(bad(
            "a symlink in the image leads it to the container's root",
        ));
    }
    let mut out = PathBuf::from("/");
    out.extend(&done);
    Ok(out.to_string_lossy().into_owned())
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> RootfsError + '_ {
    move |source| RootfsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The rootfs mountpoint inside a container dir.
pub fn rootfs_dir(container_dir: &Path) -> PathBuf {
    container_dir.join("rootfs")
}

/// Build the rootfs for `layers` (bottom first) in `container_dir`.
pub fn prepare(
    container_dir: &Path,
    layers: &[PathBuf],
    mode: RootfsMode,
) -> Result<RootfsKind, RootfsError> {
    let rootfs = rootfs_dir(container_dir);
    fs::create_dir_all(&rootfs).map_err(io_err(&rootfs))?;
    if mode != RootfsMode::Copy {
        match mount_overlay(container_dir, &rootfs, layers) {
            Ok(upper) => return Ok(RootfsKind::Overlay { upper }),
            Err(e) if mode == RootfsMode::Overlay => return Err(e),
            Err(_) => {
                // Clear what the failed attempt left before copying.
                for d in ["upper", "work", "empty"] {
                    let _ = fs::remove_dir_all(container_dir.join(d));
                }
            }
        }
    }
    flatten::flatten(layers, &rootfs).map_err(io_err(&rootfs))?;
    Ok(RootfsKind::Copy)
}

fn mount_overlay(
    container_dir: &Path,
    rootfs: &Path,
    layers: &[PathBuf],
) -> Result<PathBuf, RootfsError> {
    let upper = container_dir.join("upper");
    let work = container_dir.join("work");
    for d in [&upper, &work] {
        fs::create_dir_all(d).map_err(io_err(d))?;
    }
    let empty = container_dir.join("empty");
    // overlayfs refuses a lower dir given twice (an image may repeat a
    // layer: two steps that changed nothing make the same empty one). The
    // topmost copy alone gives the same tree: everything between it and a
    // lower copy lies beneath it, and the lower copy has nothing it lacks.
    let mut lowers: Vec<&Path> = Vec::with_capacity(layers.len());
    for l in layers.iter().rev() {
        if !lowers.contains(&l.as_path()) {
            lowers.push(l);
        }
    }
    if lowers.is_empty() {
        // overlayfs needs at least one lower dir.
        fs::create_dir_all(&empty).map_err(io_err(&empty))?;
        lowers.push(&empty);
    }
    // Linux 6.8+ takes each lower dir separately; older kernels reject the
    // `lowerdir+` key and get one option string instead.
    let mounted = sys::mount_overlay_fsconfig(rootfs, &lowers, &upper, &work)
        .or_else(|_| sys::mount_overlay_legacy(rootfs, &lowers, &upper, &work));
    mounted.map_err(|source| RootfsError::Overlay {
        path: rootfs.to_path_buf(),
        source,
    })?;
    Ok(upper)
}

/// Unmount the rootfs (if mounted) and remove the whole container dir.
/// Refuses to remove anything while the rootfs is still a mountpoint:
/// deleting through a live overlay would only write whiteouts, and through
/// a bind would delete someone else's files.
pub fn teardown(container_dir: &Path) -> Result<(), RootfsError> {
    if !container_dir.exists() {
        return Ok(());
    }
    unmount_all(container_dir)?;
    match fs::remove_dir_all(container_dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(container_dir)(e)),
    }
}

/// Unmount the rootfs and a shareable `/dev/shm` of the container in
/// `container_dir`: afterwards nothing of it is mounted.
pub fn unmount_all(container_dir: &Path) -> Result<(), RootfsError> {
    let rootfs = rootfs_dir(container_dir);
    // Stacked mounts (a retried create) need one unmount each.
    for _ in 0..8 {
        match sys::is_mountpoint(&rootfs) {
            Ok(true) => {
                sys::unmount_detach(&rootfs).map_err(io_err(&rootfs))?;
            }
            Ok(false) => break,
            Err(e) if e.kind() == io::ErrorKind::NotFound => break,
            Err(e) => return Err(io_err(&rootfs)(e)),
        }
    }
    if sys::is_mountpoint(&rootfs).unwrap_or(false) {
        return Err(RootfsError::StillMounted(rootfs));
    }
    // A shareable IPC namespace's /dev/shm: detached, so containers that
    // joined it keep their files; removing through it would delete them.
    let shm = container_dir.join(crate::container::SHM_DIR);
    for _ in 0..8 {
        if !sys::is_mountpoint(&shm).unwrap_or(false) {
            break;
        }
        sys::unmount_detach(&shm).map_err(io_err(&shm))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! These mount overlays: they need root, as the integration suite does.
    use super::*;

    /// `n` layers under a deep, long path, each with its own file and a
    /// `top` file naming it.
    fn make_layers(base: &Path, n: usize) -> Vec<PathBuf> {
        let long = base.join("x".repeat(200));
        (0..n)
            .map(|i| {
                let d = long.join(format!("layer-{i:03}"));
                fs::create_dir_all(&d).unwrap();
                fs::write(d.join(format!("f{i}")), "").unwrap();
                fs::write(d.join("top"), i.to_string()).unwrap();
                d
            })
            .collect()
    }

    #[test]
    fn both_mount_calls_stack_many_layers_top_first() {
        let dir = tempfile::tempdir().unwrap();
        // 60 paths of ~270 bytes: far past one page as plain option text.
        let layers = make_layers(dir.path(), 60);
        type MountFn = fn(&Path, &[&Path], &Path, &Path) -> io::Result<()>;
        let calls: [(&str, MountFn); 2] = [
            ("fsconfig", sys::mount_overlay_fsconfig),
            ("legacy", sys::mount_overlay_legacy),
        ];
        for (name, mount) in calls {
            let c = dir.path().join(name);
            let (target, upper, work) = (c.join("rootfs"), c.join("upper"), c.join("work"));
            for d in [&target, &upper, &work] {
                fs::create_dir_all(d).unwrap();
            }
            let lowers: Vec<&Path> = layers.iter().rev().map(PathBuf::as_path).collect();
            mount(&target, &lowers, &upper, &work).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(
                fs::read_to_string(target.join("top")).unwrap(),
                "59",
                "{name}"
            );
            assert!(target.join("f0").exists() && target.join("f59").exists());
            fs::write(target.join("written"), "w").unwrap();
            assert!(upper.join("written").exists());
            teardown(&c).unwrap();
            assert!(!c.exists());
        }
    }

    /// A layer repeated (A, B, A) mounts, and reads as the layers stacked
    /// in order would: the top A's files over B's.
    #[test]
    fn a_repeated_layer_is_stacked_once_at_its_topmost_place() {
        let dir = tempfile::tempdir().unwrap();
        let layers = make_layers(dir.path(), 2);
        let c = dir.path().join("c");
        let stack = [layers[0].clone(), layers[1].clone(), layers[0].clone()];
        let kind = prepare(&c, &stack, RootfsMode::Overlay).unwrap();
        assert!(matches!(kind, RootfsKind::Overlay { .. }));
        let root = rootfs_dir(&c);
        assert_eq!(fs::read_to_string(root.join("top")).unwrap(), "0");
        assert!(root.join("f0").exists() && root.join("f1").exists());
        teardown(&c).unwrap();
    }

    #[test]
    fn an_image_without_layers_gets_an_empty_lower_dir() {
        let dir = tempfile::tempdir().unwrap();
        let c = dir.path().join("c");
        let kind = prepare(&c, &[], RootfsMode::Overlay).unwrap();
        assert!(matches!(kind, RootfsKind::Overlay { .. }));
        assert!(sys::is_mountpoint(&rootfs_dir(&c)).unwrap());
        assert_eq!(fs::read_dir(rootfs_dir(&c)).unwrap().count(), 0);
        teardown(&c).unwrap();
        assert!(!c.exists());
    }

    /// Mount targets follow an image's symlinks the way the container
    /// will, never out of its root; loops and links to the root are clear
    /// errors naming the target.
    #[test]
    fn mount_targets_resolve_inside_the_root() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        let link = |to: &str, at: &str| std::os::unix::fs::symlink(to, r.join(at)).unwrap();
        fs::create_dir_all(r.join("srv/data")).unwrap();
        fs::create_dir_all(r.join("etc")).unwrap();
        link("/srv/data", "data");
        link("../../srv/hosts", "etc/hosts");
        link("/missing/dir", "dangling");
        link("/loop2", "loop1");
        link("/loop1", "loop2");
        link("/", "top");
        let resolve = |t: &str| resolve_in_root(r, t);
        assert_eq!(resolve("/data/sub").unwrap(), "/srv/data/sub");
        assert_eq!(resolve("/etc/hosts").unwrap(), "/srv/hosts");
        assert_eq!(resolve("/dangling/x").unwrap(), "/missing/dir/x");
        assert_eq!(resolve("/plain/new").unwrap(), "/plain/new");
        let err = resolve("/loop1/x").unwrap_err().to_string();
        assert!(
            err.contains("/loop1/x") && err.contains("symbolic links"),
            "{err}"
        );
        let err = resolve("/top").unwrap_err().to_string();
        assert!(err.contains("/top") && err.contains("root"), "{err}");
    }
}
