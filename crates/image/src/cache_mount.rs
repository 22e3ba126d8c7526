//! `RUN --mount=type=cache` directories, kept between builds under the
//! store's `cache-mounts/`, and `berth builder prune`.
//!
//! Each cache is a directory named by the digest of its identity (the
//! `id`, or the target; plus the `from` it was seeded with), next to a
//! lock file. Every step using a cache holds an `flock` on that file while
//! it runs, which is how BuildKit's `sharing` modes are kept between
//! concurrent steps and builds (flock locks belong to the open file, so
//! two steps of one process exclude each other as two processes do):
//!
//! - `shared` (the default): a shared lock; any number of steps at once.
//! - `locked`: an exclusive lock, waited for.
//! - `private`: an exclusive lock if free at once; otherwise the step gets
//!   a fresh empty directory of its own, discarded afterwards (BuildKit
//!   keeps such instances; nothing depends on them here).
//!
//! Prune takes each cache's lock exclusively without waiting, so a cache a
//! running step holds is left alone.

use berth_oci::Digest;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct CacheMountError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

type Result<T> = std::result::Result<T, CacheMountError>;

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> CacheMountError + '_ {
    move |source| CacheMountError {
        path: path.to_path_buf(),
        source,
    }
}

pub use berth_dockerfile::Sharing;

/// A cache directory in use by one step: the lock is held until dropped,
/// and a private instance is removed then.
pub struct CacheLease {
    pub dir: PathBuf,
    _lock: Option<fs::File>,
    discard: bool,
}

impl Drop for CacheLease {
    fn drop(&mut self) {
        if self.discard {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// How a new cache directory starts.
pub struct NewCache<'a> {
    pub mode: u32,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// Copied in when the cache is made (`from=`/`source=`).
    pub seed: Option<&'a Path>,
}

/// The directory holding every cache mount of the store at `store_root`.
pub fn root(store_root: &Path) -> PathBuf {
    store_root.join("cache-mounts")
}

/// Take (making it if needed) the cache named `identity`.
pub fn lease(
    store_root: &Path,
    identity: &str,
    sharing: Sharing,
    new: &NewCache,
) -> Result<CacheLease> {
    let root = root(store_root);
    fs::create_dir_all(&root).map_err(io_at(&root))?;
    fs::set_permissions(&root, fs::Permissions::from_mode(0o700)).map_err(io_at(&root))?;
    let hex = Digest::of(identity.as_bytes()).hex().to_string();
    let dir = root.join(&hex);
    let lock_path = root.join(format!("{hex}.lock"));
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io_at(&lock_path))?;
    let private_elsewhere = match sharing {
        Sharing::Shared => {
            lock.lock_shared().map_err(io_at(&lock_path))?;
            false
        }
        Sharing::Locked => {
            lock.lock().map_err(io_at(&lock_path))?;
            false
        }
        Sharing::Private => match lock.try_lock() {
            Ok(()) => false,
            Err(fs::TryLockError::WouldBlock) => true,
            Err(fs::TryLockError::Error(e)) => return Err(io_at(&lock_path)(e)),
        },
    };
    if private_elsewhere {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = root.join(format!(
            ".private-{hex}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        make(&dir, new)?;
        return Ok(CacheLease {
            dir,
            _lock: None,
            discard: true,
        });
    }
    if !dir.exists() {
        // Made aside and renamed, so a half-made (or half-seeded) cache never shows.
        let tmp = root.join(format!(".new-{hex}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        if let Err(e) = make(&tmp, new) {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
        if let Err(e) = fs::rename(&tmp, &dir) {
            let _ = fs::remove_dir_all(&tmp);
            if !dir.exists() {
                return Err(io_at(&dir)(e));
            }
        }
    }
    Ok(CacheLease {
        dir,
        _lock: Some(lock),
        discard: false,
    })
}

fn make(dir: &Path, new: &NewCache) -> Result<()> {
    match new.seed {
        Some(seed) => crate::builder::copy_tree(seed, dir).map_err(io_at(seed))?,
        None => fs::create_dir(dir).map_err(io_at(dir))?,
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(new.mode)).map_err(io_at(dir))?;
    std::os::unix::fs::chown(dir, new.uid, new.gid).map_err(io_at(dir))
}

/// What [`prune`] removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PruneReport {
    pub cache_mounts: usize,
    /// Cache mounts a running step holds, left alone.
    pub in_use: usize,
    pub step_records: usize,
    pub bytes: u64,
}

/// Remove every cache mount not in use and every record of the step cache
/// (so every step runs again; the layers themselves are blobs, which
/// `image prune` collects once nothing refers to them).
pub fn prune(store_root: &Path) -> Result<PruneReport> {
    let mut report = PruneReport::default();
    let root = root(store_root);
    if let Ok(entries) = fs::read_dir(&root) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let path = e.path();
            if name.ends_with(".lock") {
                continue;
            }
            if name.starts_with('.') {
                // A private instance or a half-made cache of a step still
                // running (then its process is alive) or of one that died.
                let pid = name.split('-').nth(2).and_then(|p| p.parse::<u32>().ok());
                if pid.is_some_and(|p| Path::new(&format!("/proc/{p}")).exists()) {
                    report.in_use += 1;
                    continue;
                }
                report.bytes += du(&path);
                fs::remove_dir_all(&path).map_err(io_at(&path))?;
                continue;
            }
            let lock_path = root.join(format!("{name}.lock"));
            let lock = fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock_path)
                .map_err(io_at(&lock_path))?;
            match lock.try_lock() {
                Ok(()) => {}
                Err(fs::TryLockError::WouldBlock) => {
                    report.in_use += 1;
                    continue;
                }
                Err(fs::TryLockError::Error(e)) => return Err(io_at(&lock_path)(e)),
            }
            report.bytes += du(&path);
            fs::remove_dir_all(&path).map_err(io_at(&path))?;
            report.cache_mounts += 1;
        }
    }
    let steps = store_root.join("build-cache");
    if let Ok(entries) = fs::read_dir(&steps) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_file()) {
                report.bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
                fs::remove_file(e.path()).map_err(io_at(&e.path()))?;
                report.step_records += 1;
            }
        }
    }
    Ok(report)
}

/// Bytes of the regular files under `path` (links not followed).
fn du(path: &Path) -> u64 {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return if meta.is_file() { meta.len() } else { 0 };
    }
    fs::read_dir(path)
        .map(|d| d.flatten().map(|e| du(&e.path())).sum())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new() -> NewCache<'static> {
        NewCache {
            mode: 0o755,
            uid: None,
            gid: None,
            seed: None,
        }
    }

    #[test]
    fn shared_users_see_one_directory_and_private_gets_its_own_while_busy() {
        let store = tempfile::tempdir().unwrap();
        let a = lease(store.path(), "npm", Sharing::Shared, &new()).unwrap();
        let b = lease(store.path(), "npm", Sharing::Shared, &new()).unwrap();
        assert_eq!(a.dir, b.dir);
        fs::write(a.dir.join("kept"), "x").unwrap();
        let p = lease(store.path(), "npm", Sharing::Private, &new()).unwrap();
        assert_ne!(p.dir, a.dir, "a busy cache gives a private step its own");
        assert!(!p.dir.join("kept").exists());
        let private_dir = p.dir.clone();
        drop(p);
        assert!(!private_dir.exists(), "a private instance is discarded");
        drop((a, b));
        let p = lease(store.path(), "npm", Sharing::Private, &new()).unwrap();
        assert!(
            p.dir.join("kept").exists(),
            "a free cache is the private step's"
        );
    }

    #[test]
    fn locked_waits_for_the_holder() {
        let store = tempfile::tempdir().unwrap();
        let held = lease(store.path(), "apt", Sharing::Locked, &new()).unwrap();
        let path = store.path().to_path_buf();
        let (tx, rx) = std::sync::mpsc::channel();
        let t = std::thread::spawn(move || {
            let l = lease(&path, "apt", Sharing::Locked, &new()).unwrap();
            tx.send(()).unwrap();
            drop(l);
        });
        // The second step does not get in while the first holds the cache.
        assert!(rx
            .recv_timeout(std::time::Duration::from_millis(300))
            .is_err());
        drop(held);
        rx.recv().unwrap();
        t.join().unwrap();
    }

    #[test]
    fn prune_clears_caches_and_step_records_but_not_one_in_use() {
        let store = tempfile::tempdir().unwrap();
        let busy = lease(store.path(), "busy", Sharing::Shared, &new()).unwrap();
        let idle = lease(store.path(), "idle", Sharing::Shared, &new()).unwrap();
        fs::write(idle.dir.join("f"), vec![0u8; 1000]).unwrap();
        let idle_dir = idle.dir.clone();
        drop(idle);
        fs::create_dir_all(store.path().join("build-cache")).unwrap();
        fs::write(store.path().join("build-cache/abc"), "{}").unwrap();
        let r = prune(store.path()).unwrap();
        assert_eq!(r.cache_mounts, 1);
        assert_eq!(r.in_use, 1);
        assert_eq!(r.step_records, 1);
        assert!(r.bytes >= 1000);
        assert!(!idle_dir.exists());
        assert!(busy.dir.exists());
    }

    #[test]
    fn a_seed_fills_a_new_cache() {
        let store = tempfile::tempdir().unwrap();
        let seed = tempfile::tempdir().unwrap();
        fs::write(seed.path().join("warm"), "w").unwrap();
        let n = NewCache {
            seed: Some(seed.path()),
            ..new()
        };
        let l = lease(store.path(), "seeded", Sharing::Shared, &n).unwrap();
        assert_eq!(fs::read_to_string(l.dir.join("warm")).unwrap(), "w");
    }
}
