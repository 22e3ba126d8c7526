//! `cp` between the host and a running container's filesystem, as
//! `docker cp` does.
//!
//! The container is reached through `/proc/<pid>/root`, which sees its
//! mount namespace (the files berth bind-mounts, `/etc/hosts` and the like,
//! included). Processes in the container may rename and replace anything
//! while a copy runs, so nothing inside it is ever reached by a path string:
//! the path the user gave is resolved once with `openat2(RESOLVE_IN_ROOT |
//! RESOLVE_NO_MAGICLINKS)` (`..` and symlinks stay inside the root), and
//! every file and directory below it through the fd of its parent, one
//! component at a time, with `O_NOFOLLOW`. A directory swapped for a symlink
//! mid-copy then fails the copy; it never redirects it. Symlinks are copied
//! as symlinks with their target text, in both directions, and never
//! followed.

use crate::sys;
use std::ffi::{CStr, CString, OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn c_name(name: &OsStr) -> io::Result<CString> {
    CString::new(name.as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name contains a NUL byte"))
}

/// `openat(dir, name, flags | O_NOFOLLOW | O_CLOEXEC)`: `name` is one
/// component, and a symlink there is refused.
fn open_at(dir: BorrowedFd, name: &OsStr, flags: libc::c_int, mode: u32) -> io::Result<OwnedFd> {
    let n = c_name(name)?;
    // SAFETY: valid fd and C string.
    let fd = cvt(unsafe {
        libc::openat(
            dir.as_raw_fd(),
            n.as_ptr(),
            flags | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            mode as libc::c_uint,
        )
    })?;
    // SAFETY: just returned to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `fstatat(dir, name, AT_SYMLINK_NOFOLLOW)`, or of `dir` itself when
/// `name` is empty.
fn stat_at(dir: BorrowedFd, name: &OsStr) -> io::Result<libc::stat> {
    let n = c_name(name)?;
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

fn read_link_at(dir: BorrowedFd, name: &OsStr) -> io::Result<OsString> {
    let n = c_name(name)?;
    let mut buf = vec![0u8; libc::PATH_MAX as usize + 1];
    // SAFETY: valid fd, C string and buffer of the length passed.
    let len = unsafe {
        libc::readlinkat(
            dir.as_raw_fd(),
            n.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if len < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(len as usize);
    Ok(OsString::from_vec(buf))
}

/// The names in the directory `dir` (an `O_RDONLY` directory fd).
fn list(dir: BorrowedFd) -> io::Result<Vec<OsString>> {
    let dup = dir.try_clone_to_owned()?;
    // SAFETY: fdopendir takes over the duplicate, closedir closes it.
    let stream = unsafe { libc::fdopendir(dup.as_raw_fd()) };
    if stream.is_null() {
        return Err(io::Error::last_os_error());
    }
    std::mem::forget(dup);
    let mut names = Vec::new();
    loop {
        // SAFETY: errno is thread-local; readdir's result lives until the
        // next call on this stream.
        unsafe { *libc::__errno_location() = 0 };
        let entry = unsafe { libc::readdir(stream) };
        if entry.is_null() {
            let err = io::Error::last_os_error();
            // SAFETY: the stream is ours and closed once.
            unsafe { libc::closedir(stream) };
            return match err.raw_os_error() {
                Some(0) | None => Ok(names),
                _ => Err(err),
            };
        }
        // SAFETY: d_name is a NUL-terminated string inside the entry.
        let name = unsafe { CStr::from_ptr((*entry).d_name.as_ptr()) };
        if name.to_bytes() != b"." && name.to_bytes() != b".." {
            names.push(OsStr::from_bytes(name.to_bytes()).to_os_string());
        }
    }
}

fn kind(st: &libc::stat) -> libc::mode_t {
    st.st_mode & libc::S_IFMT
}

fn fchmod(fd: BorrowedFd, mode: u32) -> io::Result<()> {
    // SAFETY: valid fd.
    cvt(unsafe { libc::fchmod(fd.as_raw_fd(), mode & 0o7777) }).map(drop)
}

/// Where a copy goes: a directory tree reached through fds, or a tar stream.
trait Sink {
    type Dir;
    fn dir(&mut self, parent: &Self::Dir, name: &OsStr, st: &libc::stat) -> io::Result<Self::Dir>;
    fn file(
        &mut self,
        parent: &Self::Dir,
        name: &OsStr,
        st: &libc::stat,
        data: &mut dyn Read,
    ) -> io::Result<()>;
    fn symlink(
        &mut self,
        parent: &Self::Dir,
        name: &OsStr,
        st: &libc::stat,
        target: &OsStr,
    ) -> io::Result<()>;
}

/// Writes into a directory through fds, never following a symlink.
struct FdSink;

impl FdSink {
    /// Remove a non-directory `name` (a symlink in the way of a file).
    fn unlink(parent: BorrowedFd, name: &OsStr) -> io::Result<()> {
        let n = c_name(name)?;
        // SAFETY: valid fd and C string.
        match cvt(unsafe { libc::unlinkat(parent.as_raw_fd(), n.as_ptr(), 0) }) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other.map(drop),
        }
    }
}

impl Sink for FdSink {
    type Dir = OwnedFd;

    fn dir(&mut self, parent: &OwnedFd, name: &OsStr, st: &libc::stat) -> io::Result<OwnedFd> {
        let n = c_name(name)?;
        // SAFETY: valid fd and C string.
        if let Err(e) = cvt(unsafe { libc::mkdirat(parent.as_raw_fd(), n.as_ptr(), 0o700) }) {
            if e.kind() != io::ErrorKind::AlreadyExists {
                return Err(e);
            }
        }
        // An existing symlink here is refused (ELOOP), not followed.
        let dir = open_at(parent.as_fd(), name, libc::O_RDONLY | libc::O_DIRECTORY, 0)
            .map_err(|e| not_a_dir(name, e))?;
        fchmod(dir.as_fd(), st.st_mode)?;
        Ok(dir)
    }

    fn file(
        &mut self,
        parent: &OwnedFd,
        name: &OsStr,
        st: &libc::stat,
        data: &mut dyn Read,
    ) -> io::Result<()> {
        // O_NONBLOCK: a fifo planted under this name must not hang the copy.
        let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_NONBLOCK;
        let fd = match open_at(parent.as_fd(), name, flags, 0o600) {
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                FdSink::unlink(parent.as_fd(), name)?;
                open_at(parent.as_fd(), name, flags | libc::O_EXCL, 0o600)?
            }
            other => other?,
        };
        let now = stat_at(fd.as_fd(), OsStr::new(""))?;
        if kind(&now) != libc::S_IFREG {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{} exists and is not a regular file",
                    name.to_string_lossy()
                ),
            ));
        }
        let mut out = File::from(fd);
        out.set_len(0)?;
        io::copy(data, &mut out)?;
        fchmod(out.as_fd(), st.st_mode)
    }

    fn symlink(
        &mut self,
        parent: &OwnedFd,
        name: &OsStr,
        _st: &libc::stat,
        target: &OsStr,
    ) -> io::Result<()> {
        if let Ok(st) = stat_at(parent.as_fd(), name) {
            if kind(&st) == libc::S_IFDIR {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} exists and is a directory", name.to_string_lossy()),
                ));
            }
            FdSink::unlink(parent.as_fd(), name)?;
        }
        let (t, n) = (c_name(target)?, c_name(name)?);
        // SAFETY: valid fd and C strings.
        cvt(unsafe { libc::symlinkat(t.as_ptr(), parent.as_raw_fd(), n.as_ptr()) }).map(drop)
    }
}

/// The directory `name` in `parent`, made (0755) if missing; an existing
/// one keeps its mode, a symlink there is refused.
fn enter_dir(parent: &OwnedFd, name: &OsStr) -> io::Result<OwnedFd> {
    let n = c_name(name)?;
    // SAFETY: valid fd and C string.
    if let Err(e) = cvt(unsafe { libc::mkdirat(parent.as_raw_fd(), n.as_ptr(), 0o755) }) {
        if e.kind() != io::ErrorKind::AlreadyExists {
            return Err(e);
        }
    }
    open_at(parent.as_fd(), name, libc::O_PATH | libc::O_DIRECTORY, 0)
        .map_err(|e| not_a_dir(name, e))
}

fn not_a_dir(name: &OsStr, e: io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(libc::ELOOP) | Some(libc::ENOTDIR) => io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "{} is not a directory (a symlink or file is in the way)",
                name.to_string_lossy()
            ),
        ),
        _ => e,
    }
}

/// Writes a tar stream, entries named from the copy's top-level name.
struct TarSink<W: Write> {
    tar: tar::Builder<W>,
}

impl<W: Write> TarSink<W> {
    fn header(st: &libc::stat, kind: tar::EntryType) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(st.st_mode & 0o7777);
        h.set_uid(st.st_uid.into());
        h.set_gid(st.st_gid.into());
        h.set_mtime(st.st_mtime.max(0) as u64);
        h.set_size(0);
        h
    }
}

impl<W: Write> Sink for TarSink<W> {
    type Dir = PathBuf;

    fn dir(&mut self, parent: &PathBuf, name: &OsStr, st: &libc::stat) -> io::Result<PathBuf> {
        let path = parent.join(name);
        let mut h = Self::header(st, tar::EntryType::Directory);
        self.tar.append_data(&mut h, &path, io::empty())?;
        Ok(path)
    }

    fn file(
        &mut self,
        parent: &PathBuf,
        name: &OsStr,
        st: &libc::stat,
        data: &mut dyn Read,
    ) -> io::Result<()> {
        let mut h = Self::header(st, tar::EntryType::Regular);
        h.set_size(st.st_size as u64);
        // The header promises st_size bytes: a file that changed size since
        // is cut or padded to it, keeping the stream valid.
        let size = st.st_size as u64;
        let data = data.take(size).chain(io::repeat(0)).take(size);
        self.tar.append_data(&mut h, parent.join(name), data)
    }

    fn symlink(
        &mut self,
        parent: &PathBuf,
        name: &OsStr,
        st: &libc::stat,
        target: &OsStr,
    ) -> io::Result<()> {
        let mut h = Self::header(st, tar::EntryType::Symlink);
        self.tar
            .append_link(&mut h, parent.join(name), Path::new(target))
    }
}

/// Copy `name` in the directory `src_dir` (and all below it) to
/// `dst_name` in `dst_dir`. Devices, sockets and fifos are skipped, as
/// `docker cp` does.
fn walk<S: Sink>(
    sink: &mut S,
    src_dir: BorrowedFd,
    name: &OsStr,
    dst_dir: &S::Dir,
    dst_name: &OsStr,
) -> io::Result<()> {
    let st = stat_at(src_dir, name)?;
    match kind(&st) {
        libc::S_IFDIR => {
            let dir = open_at(src_dir, name, libc::O_RDONLY | libc::O_DIRECTORY, 0)
                .map_err(|e| not_a_dir(name, e))?;
            let to = sink.dir(dst_dir, dst_name, &st)?;
            for entry in list(dir.as_fd())? {
                walk(sink, dir.as_fd(), &entry, &to, &entry)?;
            }
            Ok(())
        }
        libc::S_IFLNK => {
            let target = read_link_at(src_dir, name)?;
            sink.symlink(dst_dir, dst_name, &st, &target)
        }
        libc::S_IFREG => {
            let fd = open_at(src_dir, name, libc::O_RDONLY | libc::O_NONBLOCK, 0)?;
            // What was opened, not what was looked at: it may have been
            // swapped in between.
            let st = stat_at(fd.as_fd(), OsStr::new(""))?;
            if kind(&st) != libc::S_IFREG {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} changed during the copy", name.to_string_lossy()),
                ));
            }
            sink.file(dst_dir, dst_name, &st, &mut File::from(fd))
        }
        _ => Ok(()),
    }
}

/// The container's root, as its processes see it (their mounts included).
fn container_root(pid: i32) -> io::Result<File> {
    let c = c_name(OsStr::new(&format!("/proc/{pid}/root")))?;
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

/// A path inside the container cleaned lexically: its parent (resolved
/// later, in the root) and its last name (`.` for the root itself).
fn split_inside(path: &str) -> (PathBuf, OsString) {
    let mut parts: Vec<&OsStr> = Vec::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(n) => parts.push(n),
            Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    match parts.pop() {
        Some(last) => (
            std::iter::once(OsStr::new("/")).chain(parts).collect(),
            last.to_os_string(),
        ),
        None => (PathBuf::from("/"), OsString::from(".")),
    }
}

/// A directory inside the container, resolved within its root.
fn open_dir_in(root: &File, path: &Path) -> io::Result<OwnedFd> {
    sys::open_in_root(root, path, libc::O_PATH | libc::O_DIRECTORY).map(OwnedFd::from)
}

/// A host directory (the host is trusted: its symlinks are followed).
fn open_host_dir(path: &Path) -> io::Result<OwnedFd> {
    let path = if path.as_os_str().is_empty() {
        Path::new(".")
    } else {
        path
    };
    let c = c_name(path.as_os_str())?;
    // SAFETY: valid C string.
    let fd = cvt(unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    })?;
    // SAFETY: just returned to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Copy `src` inside the container whose PID 1 is `pid` to `dest` on the
/// host. As `docker cp`: into `dest` when it is a directory, else as `dest`
/// (whose parent must exist).
pub fn copy_out(pid: i32, src: &str, dest: &Path) -> io::Result<()> {
    let root = container_root(pid)?;
    let (parent, name) = split_inside(src);
    let from = open_dir_in(&root, &parent)?;
    let (to, to_name) = if dest.is_dir() {
        (open_host_dir(dest)?, name.clone())
    } else {
        let to_name = dest
            .file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
        let parent = dest.parent().unwrap_or(Path::new("."));
        (open_host_dir(parent)?, to_name.to_os_string())
    };
    walk(&mut FdSink, from.as_fd(), &name, &to, &to_name)
}

/// Write `src` inside the container whose PID 1 is `pid` as a tar stream,
/// its entries under its own name, as `docker cp CONTAINER:SRC -` does.
pub fn copy_out_tar(pid: i32, src: &str, out: impl Write) -> io::Result<()> {
    let root = container_root(pid)?;
    let (parent, name) = split_inside(src);
    let from = open_dir_in(&root, &parent)?;
    let mut sink = TarSink {
        tar: tar::Builder::new(out),
    };
    walk(&mut sink, from.as_fd(), &name, &PathBuf::new(), &name)?;
    sink.tar.into_inner()?.flush()
}

/// Where `dest` inside the container puts a copy named `name`: into
/// `dest` when it is a directory there, else as `dest` (whose parent must
/// exist).
fn destination(root: &File, dest: &str, name: &OsStr) -> io::Result<(OwnedFd, OsString)> {
    match open_dir_in(root, Path::new(dest)) {
        Ok(dir) => Ok((dir, name.to_os_string())),
        Err(_) => {
            let (parent, last) = split_inside(dest);
            Ok((open_dir_in(root, &parent)?, last))
        }
    }
}

/// Copy `src` on the host to `dest` inside the container whose PID 1 is
/// `pid`: into `dest` when it is a directory there, else as `dest`.
pub fn copy_in(pid: i32, src: &Path, dest: &str) -> io::Result<()> {
    let root = container_root(pid)?;
    let (from, name) = match src.file_name() {
        Some(name) => (
            open_host_dir(src.parent().unwrap_or(Path::new(".")))?,
            name.to_os_string(),
        ),
        // `dir/.` or `/`: the directory's contents.
        None => (open_host_dir(src)?, OsString::from(".")),
    };
    let (to, to_name) = destination(&root, dest, &name)?;
    walk(&mut FdSink, from.as_fd(), &name, &to, &to_name)
}

/// Unpack a tar stream (as `docker cp - CONTAINER:DEST` takes) into the
/// directory `dest` inside the container whose PID 1 is `pid`. Entries
/// with `..` are refused; links other than symlinks and special files are
/// skipped.
pub fn copy_in_tar(pid: i32, input: impl Read, dest: &str) -> io::Result<()> {
    let root = container_root(pid)?;
    let top = open_dir_in(&root, Path::new(dest))?;
    let mut archive = tar::Archive::new(input);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.into_owned();
        let mut names = Vec::new();
        for c in path.components() {
            match c {
                Component::Normal(n) => names.push(n.to_os_string()),
                Component::CurDir | Component::RootDir => {}
                _ => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("tar entry {} leaves the destination", path.display()),
                    ))
                }
            }
        }
        let Some(last) = names.pop() else { continue };
        // SAFETY: zeroed plain data; only the fields set below are read.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        st.st_mode = entry.header().mode()?;
        let mut dir = top.try_clone()?;
        for n in &names {
            dir = enter_dir(&dir, n)?;
        }
        match entry.header().entry_type() {
            tar::EntryType::Directory => drop(FdSink.dir(&dir, &last, &st)?),
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                FdSink.file(&dir, &last, &st, &mut entry)?
            }
            tar::EntryType::Symlink => {
                let target = entry.link_name()?.unwrap_or_default().into_owned();
                FdSink.symlink(&dir, &last, &st, target.as_os_str())?
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inside_paths_are_split_lexically() {
        let s = |p: &str| {
            let (a, b) = split_inside(p);
            (
                a.to_string_lossy().into_owned(),
                b.to_string_lossy().into_owned(),
            )
        };
        assert_eq!(s("/etc/hosts"), ("/etc".into(), "hosts".into()));
        assert_eq!(s("/etc/"), ("/".into(), "etc".into()));
        assert_eq!(s("/"), ("/".into(), ".".into()));
        assert_eq!(
            s("/../../etc/./x/../shadow"),
            ("/etc".into(), "shadow".into())
        );
    }
}
