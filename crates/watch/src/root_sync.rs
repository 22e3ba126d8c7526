//! Writing synced files into a directory tree seen through a root fd (a
//! running container's `/proc/<pid>/root`), the way a running app can read
//! them at any moment.
//!
//! Two properties matter. A file is replaced whole: written to a temporary
//! name beside it and renamed over it, so an app that reads it on every
//! request sees the old bytes or the new ones, never an empty or half-written
//! file (`docker cp` truncates in place, or unlinks first). And nothing
//! escapes the root: the container's processes may plant symlinks anywhere,
//! so every path is resolved with `openat2(RESOLVE_IN_ROOT)` and every name
//! below that is created or removed through its parent's fd, never followed.

use crate::plan::SyncFile;
use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A file that could not be synced.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("reading {}: {source}", path.display())]
    Host {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} in the container: {source}")]
    Container {
        path: String,
        #[source]
        source: io::Error,
    },
}

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn c_str(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

/// The root of a tree to sync into (`/proc/<pid>/root` for a container).
pub fn open_root(path: &Path) -> io::Result<File> {
    let c = c_str(path.as_os_str().as_bytes())?;
    // SAFETY: valid C string.
    let fd = cvt(unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    })?;
    // SAFETY: just returned to us.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// `rel` (no leading `/`; `.` for the root) resolved inside `root`, its
/// symlinks and `..` kept inside it.
fn open_in_root(root: BorrowedFd, rel: &str, flags: libc::c_int) -> io::Result<OwnedFd> {
    let p = c_str(rel.as_bytes())?;
    // SAFETY: zeroed plain data; the fields the kernel reads are set below.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: valid fd, C string and open_how of the size passed.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root.as_raw_fd(),
            p.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the fd was just returned to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) })
}

fn stat_at(dir: BorrowedFd, name: &[u8]) -> io::Result<libc::stat> {
    let n = c_str(name)?;
    let flags = libc::AT_SYMLINK_NOFOLLOW
        | if name.is_empty() {
            libc::AT_EMPTY_PATH
        } else {
            0
        };
    // SAFETY: zeroed plain data the kernel fills.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid fd, C string and out pointer.
    cvt(unsafe { libc::fstatat(dir.as_raw_fd(), n.as_ptr(), &mut st, flags) })?;
    Ok(st)
}

/// A container path as clean components: its directories and last name.
/// `None` for the root itself, which cannot be replaced by a file.
fn split(container: &str) -> Option<(Vec<&str>, &str)> {
    let mut parts: Vec<&str> = Vec::new();
    for part in container.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    let last = parts.pop()?;
    Some((parts, last))
}

/// The directory `dirs` inside the root; with `create`, missing ones are
/// made (0755, owned like their parent so the app's user may write there).
fn dir_in_root(root: BorrowedFd, dirs: &[&str], create: bool) -> io::Result<OwnedFd> {
    let flags = libc::O_PATH | libc::O_DIRECTORY;
    let mut dir = open_in_root(root, ".", flags)?;
    let mut prefix = String::new();
    for name in dirs {
        if !prefix.is_empty() {
            prefix.push('/');
        }
        prefix.push_str(name);
        dir = match open_in_root(root, &prefix, flags) {
            Ok(fd) => fd,
            Err(e) if create && e.kind() == io::ErrorKind::NotFound => {
                let n = c_str(name.as_bytes())?;
                // SAFETY: valid fd and C string.
                match cvt(unsafe { libc::mkdirat(dir.as_raw_fd(), n.as_ptr(), 0o755) }) {
                    Ok(_) => {
                        let parent = stat_at(dir.as_fd(), b"")?;
                        // SAFETY: valid fd and C string; the name is not followed.
                        let _ = unsafe {
                            libc::fchownat(
                                dir.as_raw_fd(),
                                n.as_ptr(),
                                parent.st_uid,
                                parent.st_gid,
                                libc::AT_SYMLINK_NOFOLLOW,
                            )
                        };
                    }
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(e),
                }
                open_in_root(root, &prefix, flags)?
            }
            Err(e) => return Err(e),
        };
    }
    Ok(dir)
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Copy `files` into the tree under `root` and remove `deletions`. Every
/// entry is tried; the first failure is returned after the rest were done.
pub fn sync_in_root(
    root: &File,
    files: &[SyncFile],
    deletions: &[String],
) -> Result<(), SyncError> {
    let mut first_error = None;
    for path in deletions {
        if let Err(source) = delete(root.as_fd(), path) {
            first_error.get_or_insert(SyncError::Container {
                path: path.clone(),
                source,
            });
        }
    }
    for file in files {
        if let Err(e) = write(root.as_fd(), file) {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

fn write(root: BorrowedFd, file: &SyncFile) -> Result<(), SyncError> {
    let in_container = |source: io::Error| SyncError::Container {
        path: file.container.clone(),
        source,
    };
    let host_err = |source: io::Error| SyncError::Host {
        path: file.host.clone(),
        source,
    };
    let meta = match std::fs::symlink_metadata(&file.host) {
        Ok(m) => m,
        // Gone since the batch was planned: its deletion event comes next.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(host_err(e)),
    };
    let Some((dirs, name)) = split(&file.container) else {
        return Err(in_container(io::Error::new(
            io::ErrorKind::InvalidInput,
            "cannot replace the root directory with a file",
        )));
    };
    let dir = dir_in_root(root, &dirs, true).map_err(in_container)?;
    let owner = match stat_at(dir.as_fd(), name.as_bytes()) {
        Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => {
            return Err(in_container(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "is a directory in the container and a file on the host",
            )))
        }
        Ok(st) => (st.st_uid, st.st_gid),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let parent = stat_at(dir.as_fd(), b"").map_err(in_container)?;
            (parent.st_uid, parent.st_gid)
        }
        Err(e) => return Err(in_container(e)),
    };
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let temp = format!(".berth-sync.{}.{n}", std::process::id());
    let temp_c = c_str(temp.as_bytes()).map_err(in_container)?;
    let name_c = c_str(name.as_bytes()).map_err(in_container)?;

    let made = if meta.file_type().is_symlink() {
        let link = std::fs::read_link(&file.host).map_err(host_err)?;
        let link_c = c_str(link.as_os_str().as_bytes()).map_err(in_container)?;
        // SAFETY: valid fd and C strings.
        cvt(unsafe { libc::symlinkat(link_c.as_ptr(), dir.as_raw_fd(), temp_c.as_ptr()) })
            .map(drop)
            .map_err(in_container)
            .and_then(|()| chown_at(dir.as_fd(), &temp_c, owner).map_err(in_container))
    } else if meta.is_file() {
        copy_to_temp(
            dir.as_fd(),
            &temp_c,
            &file.host,
            meta.mode(),
            owner,
            in_container,
            host_err,
        )
    } else {
        // Sockets, fifos and devices are not copied, as `docker cp` skips them.
        return Ok(());
    };
    let renamed = made.and_then(|()| {
        // SAFETY: valid fds and C strings.
        cvt(unsafe {
            libc::renameat(
                dir.as_raw_fd(),
                temp_c.as_ptr(),
                dir.as_raw_fd(),
                name_c.as_ptr(),
            )
        })
        .map(drop)
        .map_err(in_container)
    });
    if renamed.is_err() {
        // SAFETY: valid fd and C string; removes only our own temp name.
        unsafe { libc::unlinkat(dir.as_raw_fd(), temp_c.as_ptr(), 0) };
    }
    renamed
}

fn chown_at(dir: BorrowedFd, name: &CString, (uid, gid): (u32, u32)) -> io::Result<()> {
    // SAFETY: valid fd and C string; a symlink there is changed, not followed.
    cvt(unsafe {
        libc::fchownat(
            dir.as_raw_fd(),
            name.as_ptr(),
            uid,
            gid,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })
    .map(drop)
    .or_else(|e| {
        // Not root (a test, or a rootless run): the file stays ours.
        if e.raw_os_error() == Some(libc::EPERM) {
            Ok(())
        } else {
            Err(e)
        }
    })
}

fn copy_to_temp(
    dir: BorrowedFd,
    temp: &CString,
    host: &Path,
    mode: u32,
    owner: (u32, u32),
    in_container: impl Fn(io::Error) -> SyncError,
    host_err: impl Fn(io::Error) -> SyncError,
) -> Result<(), SyncError> {
    let mut src = File::open(host).map_err(&host_err)?;
    // SAFETY: valid fd and C string; O_EXCL|O_NOFOLLOW: never someone else's file.
    let fd = cvt(unsafe {
        libc::openat(
            dir.as_raw_fd(),
            temp.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            0o600 as libc::c_uint,
        )
    })
    .map_err(&in_container)?;
    // SAFETY: just returned to us.
    let mut out = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let done = io::copy(&mut src, &mut out)
        .map_err(|e| {
            // Which side failed is not told by io::copy; a read error on a
            // host file being rewritten is the likely one, and is retried.
            host_err(e)
        })
        .and_then(|_| {
            chown_at(dir, temp, owner).map_err(&in_container)?;
            // After chown, which clears set-id bits.
            // SAFETY: valid fd.
            cvt(unsafe { libc::fchmod(out.as_raw_fd(), mode & 0o7777) })
                .map(drop)
                .map_err(&in_container)
        });
    if done.is_err() {
        // SAFETY: valid fd and C string; removes only our own temp name.
        unsafe { libc::unlinkat(dir.as_raw_fd(), temp.as_ptr(), 0) };
    }
    done
}

/// Remove `container` (a file, symlink or whole directory); a path that is
/// already gone is fine.
fn delete(root: BorrowedFd, container: &str) -> io::Result<()> {
    let Some((dirs, name)) = split(container) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "refusing to remove the root directory",
        ));
    };
    let dir = match dir_in_root(root, &dirs, false) {
        Ok(dir) => dir,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    remove_at(dir.as_fd(), OsStr::new(name))
}

fn remove_at(dir: BorrowedFd, name: &OsStr) -> io::Result<()> {
    let n = c_str(name.as_bytes())?;
    // SAFETY: valid fd and C string.
    match cvt(unsafe { libc::unlinkat(dir.as_raw_fd(), n.as_ptr(), 0) }) {
        Ok(_) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EISDIR) => {}
        Err(e) => return Err(e),
    }
    // SAFETY: valid fd and C string; O_NOFOLLOW: a symlink swapped in is refused.
    let sub = cvt(unsafe {
        libc::openat(
            dir.as_raw_fd(),
            n.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    })?;
    // SAFETY: just returned to us.
    let sub = unsafe { OwnedFd::from_raw_fd(sub) };
    // Listing through our own fd's /proc entry reads the directory that was
    // opened, whatever is renamed meanwhile.
    let listing = std::fs::read_dir(format!("/proc/self/fd/{}", sub.as_raw_fd()))?;
    for entry in listing {
        remove_at(sub.as_fd(), &entry?.file_name())?;
    }
    // SAFETY: valid fd and C string.
    match cvt(unsafe { libc::unlinkat(dir.as_raw_fd(), n.as_ptr(), libc::AT_REMOVEDIR) }) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn file(host: &Path, container: &str) -> SyncFile {
        SyncFile {
            host: host.to_path_buf(),
            container: container.to_string(),
        }
    }

    #[test]
    fn files_are_replaced_whole_with_their_mode_and_missing_directories_made() {
        let host = tempfile::tempdir().unwrap();
        let root_dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(root_dir.path().join("app")).unwrap();
        std::fs::write(root_dir.path().join("app/index.js"), "old").unwrap();
        let old = File::open(root_dir.path().join("app/index.js")).unwrap();
        std::fs::write(host.path().join("index.js"), "new text").unwrap();
        std::fs::write(host.path().join("run.sh"), "#!/bin/sh").unwrap();
        std::fs::set_permissions(
            host.path().join("run.sh"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();

        let root = open_root(root_dir.path()).unwrap();
        sync_in_root(
            &root,
            &[
                file(&host.path().join("index.js"), "/app/index.js"),
                file(&host.path().join("run.sh"), "/app/bin/deep/run.sh"),
            ],
            &[],
        )
        .unwrap();

        let app = root_dir.path().join("app");
        assert_eq!(
            std::fs::read_to_string(app.join("index.js")).unwrap(),
            "new text"
        );
        // A reader holding the old file still reads all of the old bytes: the
        // new file was renamed over it, not written into it.
        assert_eq!(std::io::read_to_string(old).unwrap(), "old");
        let mode = std::fs::metadata(app.join("bin/deep/run.sh"))
            .unwrap()
            .mode();
        assert_eq!(mode & 0o7777, 0o755);
        let left: Vec<_> = std::fs::read_dir(&app)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".berth-sync"))
            .collect();
        assert!(left.is_empty(), "temporary files left: {left:?}");
    }

    #[test]
    fn deletions_remove_files_and_whole_directories_and_tolerate_missing_ones() {
        let root_dir = tempfile::tempdir().unwrap();
        let app = root_dir.path().join("app");
        std::fs::create_dir_all(app.join("lib/sub")).unwrap();
        std::fs::write(app.join("lib/sub/a.js"), "").unwrap();
        std::fs::write(app.join("gone.js"), "").unwrap();
        let root = open_root(root_dir.path()).unwrap();
        sync_in_root(
            &root,
            &[],
            &[
                "/app/lib".into(),
                "/app/gone.js".into(),
                "/app/never/was.js".into(),
            ],
        )
        .unwrap();
        assert!(!app.join("lib").exists());
        assert!(!app.join("gone.js").exists());
        assert!(app.exists());
    }

    #[test]
    fn a_symlink_planted_in_the_tree_never_leads_a_write_outside_the_root() {
        let host = tempfile::tempdir().unwrap();
        let root_dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(host.path().join("x.js"), "payload").unwrap();
        // An absolute symlink, as a process in a container would plant it.
        std::os::unix::fs::symlink(outside.path(), root_dir.path().join("app")).unwrap();
        let root = open_root(root_dir.path()).unwrap();
        let _ = sync_in_root(&root, &[file(&host.path().join("x.js"), "/app/x.js")], &[]);
        assert!(
            !outside.path().join("x.js").exists(),
            "the write escaped the root"
        );
        // Within the root, the link's target was followed as the root sees it.
        let inside = root_dir
            .path()
            .join(outside.path().strip_prefix("/").unwrap())
            .join("x.js");
        if inside.exists() {
            assert_eq!(std::fs::read_to_string(inside).unwrap(), "payload");
        }
        // A deletion through the same link does not reach outside either.
        std::fs::write(outside.path().join("keep.js"), "").unwrap();
        let _ = sync_in_root(&root, &[], &["/app/keep.js".into()]);
        assert!(outside.path().join("keep.js").exists());
    }

    #[test]
    fn a_host_symlink_is_copied_as_a_link() {
        let host = tempfile::tempdir().unwrap();
        let root_dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("index.js", host.path().join("main.js")).unwrap();
        let root = open_root(root_dir.path()).unwrap();
        sync_in_root(
            &root,
            &[file(&host.path().join("main.js"), "/app/main.js")],
            &[],
        )
        .unwrap();
        assert_eq!(
            std::fs::read_link(root_dir.path().join("app/main.js")).unwrap(),
            Path::new("index.js")
        );
    }
}
