//! `cp` between the host and a running container's filesystem, through
//! `/proc/<pid>/root`. The path inside the container is resolved with
//! `RESOLVE_IN_ROOT`, so `..` and absolute symlinks stay inside it, and the
//! copy never follows a symlink it meets (it copies the link).

use crate::sys;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

fn container_root(pid: i32) -> io::Result<File> {
    File::open(format!("/proc/{pid}/root"))
}

/// The last component of `path` (`/` for the root itself).
fn base_name(path: &str) -> String {
    path.trim_end_matches('/')
        .rsplit('/')
        .next()
        .filter(|n| !n.is_empty())
        .unwrap_or("/")
        .to_string()
}

/// Copy `src` inside the container whose PID 1 is `pid` to `dest` on the
/// host. As `docker cp`: into `dest` when it is a directory, else as `dest`.
pub fn copy_out(pid: i32, src: &str, dest: &Path) -> io::Result<()> {
    let root = container_root(pid)?;
    let found = sys::open_in_root(&root, Path::new(src), libc::O_PATH)?;
    let from = PathBuf::from(format!("/proc/self/fd/{}", found.as_raw_fd()));
    let name = base_name(src);
    let to = if dest.is_dir() && name == "/" {
        // The container's whole root: its contents go into `dest`.
        dest.to_path_buf()
    } else if dest.is_dir() {
        dest.join(name)
    } else {
        dest.to_path_buf()
    };
    copy_tree(&from, &to)
}

/// Copy `src` on the host to `dest` inside the container whose PID 1 is
/// `pid`: into `dest` when it is a directory there, else as `dest` (whose
/// parent must exist).
pub fn copy_in(pid: i32, src: &Path, dest: &str) -> io::Result<()> {
    let root = container_root(pid)?;
    let name = src
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| ".".into());
    let (dir, name) =
        match sys::open_in_root(&root, Path::new(dest), libc::O_PATH | libc::O_DIRECTORY) {
            Ok(d) => (d, name),
            Err(_) => {
                let parent = Path::new(dest).parent().unwrap_or(Path::new("/"));
                let d = sys::open_in_root(&root, parent, libc::O_PATH | libc::O_DIRECTORY)?;
                (d, base_name(dest))
            }
        };
    let to = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd())).join(name);
    copy_tree(src, &to)
}

/// Copy a file, a symlink (as a link) or a directory tree, never following
/// a link on either side.
fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(from)?;
    let kind = meta.file_type();
    if kind.is_dir() {
        match fs::symlink_metadata(to) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} exists and is not a directory", to.display()),
                ))
            }
            Err(_) => fs::create_dir(to)?,
        }
        fs::set_permissions(to, fs::Permissions::from_mode(meta.permissions().mode()))?;
        for entry in fs::read_dir(from)? {
            let entry = entry?;
            copy_tree(&entry.path(), &to.join(entry.file_name()))?;
        }
    } else if kind.is_symlink() {
        let target = fs::read_link(from)?;
        if fs::symlink_metadata(to).is_ok() {
            fs::remove_file(to)?;
        }
        std::os::unix::fs::symlink(target, to)?;
    } else if kind.is_file() {
        let mut src = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(from)?;
        let mut dst = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(libc::O_NOFOLLOW)
            .mode(meta.permissions().mode())
            .open(to)?;
        io::copy(&mut src, &mut dst)?;
        dst.set_permissions(fs::Permissions::from_mode(meta.permissions().mode()))?;
    }
    // Devices, sockets and fifos are not copied, as docker cp skips them.
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn base_names() {
        assert_eq!(super::base_name("/etc/hosts"), "hosts");
        assert_eq!(super::base_name("/etc/"), "etc");
        assert_eq!(super::base_name("/"), "/");
        assert_eq!(super::base_name("x"), "x");
    }
}
