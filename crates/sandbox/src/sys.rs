//! Thin wrappers over the Linux calls this crate needs and `std` lacks.
//!
//! Each wrapper turns a C-style return into an `io::Result` and nothing
//! more, so the logic that uses them reads as plain Rust. Every fd opened
//! here carries `O_CLOEXEC`: libcontainer clones the process without
//! exec'ing, and an inheritable fd would leak into the next container.

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

fn cstr(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn cvt_long(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// `mknod(2)`: a device node or fifo with exactly `mode` (type bits included).
pub fn mknod(path: &Path, mode: u32, major: u32, minor: u32) -> io::Result<()> {
    let p = cstr(path)?;
    // SAFETY: `p` is a valid C string for the duration of the call.
    cvt(unsafe { libc::mknod(p.as_ptr(), mode, libc::makedev(major, minor)) }).map(drop)
}

/// `lsetxattr(2)`: never follows a symlink at `path`.
pub fn set_xattr(path: &Path, name: &str, value: &[u8]) -> io::Result<()> {
    let p = cstr(path)?;
    let n = CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "xattr name contains NUL"))?;
    // SAFETY: valid C strings and a buffer of the length given.
    cvt(unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    })
    .map(drop)
}

/// `lgetxattr(2)`; `None` when the attribute is absent or unsupported.
pub fn get_xattr(path: &Path, name: &str) -> io::Result<Option<Vec<u8>>> {
    let p = cstr(path)?;
    let n = CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "xattr name contains NUL"))?;
    let mut buf = vec![0u8; 256];
    loop {
        // SAFETY: the buffer is valid for `buf.len()` bytes.
        let r =
            unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if r >= 0 {
            buf.truncate(r as usize);
            return Ok(Some(buf));
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::ENODATA) | Some(libc::EOPNOTSUPP) => return Ok(None),
            Some(libc::ERANGE) if buf.len() < 1 << 16 => buf.resize(buf.len() * 4, 0),
            _ => return Err(err),
        }
    }
}

/// Every xattr name on `path` (not following a symlink).
pub fn list_xattrs(path: &Path) -> io::Result<Vec<String>> {
    let p = cstr(path)?;
    let mut buf = vec![0u8; 1024];
    let len = loop {
        // SAFETY: the buffer is valid for `buf.len()` bytes.
        let r = unsafe { libc::llistxattr(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if r >= 0 {
            break r as usize;
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EOPNOTSUPP) => return Ok(Vec::new()),
            Some(libc::ERANGE) if buf.len() < 1 << 20 => buf.resize(buf.len() * 4, 0),
            _ => return Err(err),
        }
    };
    Ok(buf[..len]
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty())
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .collect())
}

/// Set atime and mtime (seconds) without following a symlink at `path`.
pub fn set_mtime(path: &Path, secs: i64) -> io::Result<()> {
    let p = cstr(path)?;
    let t = libc::timespec {
        tv_sec: secs as libc::time_t,
        tv_nsec: 0,
    };
    let times = [t, t];
    // SAFETY: valid C string and a two-element timespec array.
    cvt(unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            p.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })
    .map(drop)
}

fn raw_mount(
    source: &CStr,
    target: &Path,
    fstype: &CStr,
    flags: libc::c_ulong,
    data: Option<&CStr>,
) -> io::Result<()> {
    let t = cstr(target)?;
    // SAFETY: all pointers are valid C strings (or null for no data).
    cvt(unsafe {
        libc::mount(
            source.as_ptr(),
            t.as_ptr(),
            fstype.as_ptr(),
            flags,
            data.map_or(std::ptr::null(), |d| d.as_ptr().cast()),
        )
    })
    .map(drop)
}

/// `umount2(target, MNT_DETACH)`.
pub fn unmount_detach(target: &Path) -> io::Result<()> {
    let t = cstr(target)?;
    // SAFETY: valid C string.
    cvt(unsafe { libc::umount2(t.as_ptr(), libc::MNT_DETACH) }).map(drop)
}

fn open_dir_path(path: &Path) -> io::Result<OwnedFd> {
    let p = cstr(path)?;
    // SAFETY: valid C string; the fd returned is owned by us.
    let fd = cvt(unsafe {
        libc::open(
            p.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    })?;
    // SAFETY: `fd` was just opened and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Mount an overlay with the new mount API, giving each lower dir as its own
/// `lowerdir+` parameter (Linux 6.8+): no option-string length limit and no
/// escaping. `lowers` is ordered top first. Fails with `EINVAL` on kernels
/// that do not know `lowerdir+`.
pub fn mount_overlay_fsconfig(
    target: &Path,
    lowers: &[&Path],
    upper: &Path,
    work: &Path,
) -> io::Result<()> {
    let fstype = c"overlay";
    // SAFETY: valid C string; flags are a documented constant.
    let fs = cvt_long(unsafe {
        libc::syscall(
            libc::SYS_fsopen,
            fstype.as_ptr(),
            libc::FSOPEN_CLOEXEC as libc::c_uint,
        )
    })?;
    // SAFETY: the fd was just returned to us.
    let fs = unsafe { OwnedFd::from_raw_fd(fs as RawFd) };
    let set = |key: &CStr, value: &Path| -> io::Result<()> {
        let v = cstr(value)?;
        // SAFETY: valid fd and C strings.
        cvt_long(unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                fs.as_raw_fd(),
                libc::FSCONFIG_SET_STRING as libc::c_uint,
                key.as_ptr(),
                v.as_ptr(),
                0 as libc::c_int,
            )
        })
        .map(drop)
    };
    for lower in lowers {
        set(c"lowerdir+", lower)?;
    }
    set(c"upperdir", upper)?;
    set(c"workdir", work)?;
    // SAFETY: valid fd; no key or value for the create command.
    cvt_long(unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            libc::FSCONFIG_CMD_CREATE as libc::c_uint,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0 as libc::c_int,
        )
    })?;
    // SAFETY: valid fd and documented flags.
    let mnt = cvt_long(unsafe {
        libc::syscall(
            libc::SYS_fsmount,
            fs.as_raw_fd(),
            libc::FSMOUNT_CLOEXEC as libc::c_uint,
            0 as libc::c_uint,
        )
    })?;
    // SAFETY: the fd was just returned to us.
    let mnt = unsafe { OwnedFd::from_raw_fd(mnt as RawFd) };
    let t = cstr(target)?;
    // SAFETY: valid fds and C strings; an empty path with F_EMPTY_PATH moves
    // the detached mount itself.
    cvt_long(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            mnt.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            libc::MOVE_MOUNT_F_EMPTY_PATH as libc::c_uint,
        )
    })
    .map(drop)
}

/// Mount an overlay with classic `mount(2)`. Each directory is passed as
/// `/proc/self/fd/N` of an `O_PATH` fd: about 17 bytes per layer whatever the
/// state directory's path, no `:`/`,` escaping, and no `chdir` (which would
/// move every thread of the process). `lowers` is ordered top first.
pub fn mount_overlay_legacy(
    target: &Path,
    lowers: &[&Path],
    upper: &Path,
    work: &Path,
) -> io::Result<()> {
    let fds = lowers
        .iter()
        .map(|l| open_dir_path(l))
        .collect::<io::Result<Vec<_>>>()?;
    let upper_fd = open_dir_path(upper)?;
    let work_fd = open_dir_path(work)?;
    let lower = fds
        .iter()
        .map(|fd| format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .collect::<Vec<_>>()
        .join(":");
    let data = format!(
        "lowerdir={lower},upperdir=/proc/self/fd/{},workdir=/proc/self/fd/{}",
        upper_fd.as_raw_fd(),
        work_fd.as_raw_fd()
    );
    // The kernel copies at most one page of mount data.
    if data.len() >= 4096 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} layers make an overlay option string of {} bytes (limit 4095)",
                lowers.len(),
                data.len()
            ),
        ));
    }
    let data = CString::new(data).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    raw_mount(c"overlay", target, c"overlay", 0, Some(&data))
}

/// Is `path` the root of a mount? Compares the mount IDs of the path and its
/// parent, which (unlike `st_dev`) also tells bind mounts apart.
pub fn is_mountpoint(path: &Path) -> io::Result<bool> {
    let Some(parent) = path.parent() else {
        return Ok(true);
    };
    Ok(mount_id(path)? != mount_id(parent)?)
}

fn mount_id(path: &Path) -> io::Result<u64> {
    let p = cstr(path)?;
    // SAFETY: statx writes into the zeroed struct we pass.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    cvt(unsafe {
        libc::statx(
            libc::AT_FDCWD,
            p.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
            libc::STATX_MNT_ID,
            &mut stx,
        )
    })?;
    Ok(stx.stx_mnt_id)
}

/// Open `path` resolved as if `root` were `/`: `..` and absolute symlinks
/// cannot leave `root` (`openat2` with `RESOLVE_IN_ROOT`). Used to read and
/// create files inside an untrusted image rootfs.
pub fn open_in_root(root: &File, path: &Path, flags: libc::c_int) -> io::Result<File> {
    let p = cstr(path)?;
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: valid fd, C string and open_how of the size passed.
    let fd = cvt_long(unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root.as_raw_fd(),
            p.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    })?;
    // SAFETY: the fd was just returned to us.
    Ok(unsafe { File::from_raw_fd(fd as RawFd) })
}

/// `mkdirat(dir, name, mode)`; `name` must be a single path component.
pub fn mkdir_at(dir: &File, name: &std::ffi::OsStr, mode: u32) -> io::Result<()> {
    let n = CString::new(name.as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name contains NUL"))?;
    // SAFETY: valid fd and C string.
    cvt(unsafe { libc::mkdirat(dir.as_raw_fd(), n.as_ptr(), mode) }).map(drop)
}

/// `PR_GET_DUMPABLE`.
pub fn dumpable() -> io::Result<bool> {
    // SAFETY: PR_GET_DUMPABLE takes no pointer arguments.
    Ok(cvt(unsafe { libc::prctl(libc::PR_GET_DUMPABLE) })? != 0)
}

/// `PR_SET_DUMPABLE`.
pub fn set_dumpable(on: bool) -> io::Result<()> {
    // SAFETY: PR_SET_DUMPABLE takes an integer argument.
    cvt(unsafe { libc::prctl(libc::PR_SET_DUMPABLE, on as libc::c_ulong) }).map(drop)
}

/// `pidfd_open(2)`: a handle on a process that cannot be confused with a
/// later process reusing its pid.
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: plain integer arguments.
    let fd = cvt_long(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0 as libc::c_uint) })?;
    // SAFETY: the fd was just returned to us (pidfds are always CLOEXEC).
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Whether the process behind `pidfd` has ended (waiting for it when
/// `block`); works for processes that are not our children.
pub fn pidfd_exited(pidfd: &OwnedFd, block: bool) -> io::Result<bool> {
    let mut p = libc::pollfd {
        fd: pidfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut p, 1, if block { -1 } else { 0 }) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        return Ok(r > 0);
    }
}

/// `pidfd_send_signal(2)`.
pub fn pidfd_send_signal(pidfd: &OwnedFd, signal: i32) -> io::Result<()> {
    // SAFETY: valid fd; null siginfo means "as if by kill(2)".
    cvt_long(unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0 as libc::c_uint,
        )
    })
    .map(drop)
}

/// How a process ended, as `waitid` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reaped {
    Exited(i32),
    Signaled(i32),
}

/// Reap the child behind `pidfd` (`waitid(P_PIDFD)`); with `block` false,
/// `None` when it is still running.
pub fn wait_pidfd(pidfd: &OwnedFd, block: bool) -> io::Result<Option<Reaped>> {
    let mut flags = libc::WEXITED;
    if !block {
        flags |= libc::WNOHANG;
    }
    loop {
        // SAFETY: waitid fills the zeroed siginfo we pass.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let r = unsafe {
            libc::waitid(
                libc::P_PIDFD,
                pidfd.as_raw_fd() as libc::id_t,
                &mut info,
                flags,
            )
        };
        if r < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        // SAFETY: waitid filled `info` for a CLD_* event.
        let (pid, status) = unsafe { (info.si_pid(), info.si_status()) };
        if pid == 0 {
            return Ok(None);
        }
        return Ok(Some(match info.si_code {
            libc::CLD_EXITED => Reaped::Exited(status),
            _ => Reaped::Signaled(status),
        }));
    }
}

/// `waitpid(pid, WNOHANG)`: `Ok(true)` when it was reaped, `Ok(false)` while
/// it runs, an error (ECHILD) when it is not our child.
pub fn reap_nohang(pid: i32) -> io::Result<bool> {
    let mut status = 0;
    // SAFETY: `status` is a valid out pointer.
    let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG | libc::__WALL) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(r == pid)
}

/// `waitpid(pid)`, blocking; errors (no such child) are ignored.
pub fn reap_blocking(pid: i32) {
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid out pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::__WALL) };
        if r >= 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return;
        }
    }
}

/// `kill(2)`.
pub fn kill(pid: i32, signal: i32) -> io::Result<()> {
    // SAFETY: plain integer arguments.
    cvt(unsafe { libc::kill(pid, signal) }).map(drop)
}

/// Bring `lo` up in the network namespace at `netns`. Runs on a short-lived
/// thread: `setns` moves only the calling thread, and that thread must not
/// go back to serving the rest of the process from inside the container.
pub fn loopback_up(netns: &Path) -> io::Result<()> {
    let ns = File::open(netns)?;
    std::thread::scope(|s| {
        s.spawn(|| -> io::Result<()> {
            // SAFETY: valid fd; CLONE_NEWNET checks it is a network namespace.
            cvt(unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) })?;
            // SAFETY: plain integer arguments; the fd is owned right after.
            let sock = cvt(unsafe {
                libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0)
            })?;
            // SAFETY: the fd was just returned to us.
            let sock = unsafe { OwnedFd::from_raw_fd(sock) };
            // SAFETY: ifreq is plain data; zeroed is a valid value.
            let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
            for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
                *dst = *src as libc::c_char;
            }
            // SAFETY: valid socket and ifreq.
            cvt(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) })?;
            // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
            unsafe {
                req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            }
            // SAFETY: valid socket and ifreq.
            cvt(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) }).map(drop)
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("loopback thread panicked")))
    })
}

/// `syncfs(2)` on the filesystem holding `path`: flushes a freshly unpacked
/// layer in one call instead of an fsync per file.
pub fn syncfs(path: &Path) -> io::Result<()> {
    let f = File::open(path)?;
    // SAFETY: valid fd.
    cvt(unsafe { libc::syncfs(f.as_raw_fd()) }).map(drop)
}

/// Open a pty master on the devpts instance of `ptmx` and its slave
/// (`TIOCGPTPEER`: no lookup of `/dev/pts/N` by path, which may not be
/// reachable from here). Both fds are `O_CLOEXEC`.
pub fn open_pty(ptmx: &Path) -> io::Result<(OwnedFd, OwnedFd)> {
    let p = cstr(ptmx)?;
    // SAFETY: valid C string; the fd returned is owned right after.
    let master =
        cvt(unsafe { libc::open(p.as_ptr(), libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) })?;
    // SAFETY: the fd was just returned to us.
    let master = unsafe { OwnedFd::from_raw_fd(master) };
    let unlock: libc::c_int = 0;
    // SAFETY: valid fd and a pointer to an int, as TIOCSPTLCK takes.
    cvt(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) })?;
    // SAFETY: valid fd; TIOCGPTPEER takes open flags and returns a new fd.
    let slave = cvt(unsafe {
        libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    })?;
    // SAFETY: the fd was just returned to us.
    Ok((master, unsafe { OwnedFd::from_raw_fd(slave) }))
}

/// Mount a fresh tmpfs on `target` with `nosuid,nodev,noexec` and `data`
/// (`mode=1777,size=…`).
pub fn mount_tmpfs(target: &Path, data: &str) -> io::Result<()> {
    let data = CString::new(data).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    raw_mount(
        c"shm",
        target,
        c"tmpfs",
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        Some(&data),
    )
}

/// The node name (hostname) of the UTS namespace at `ns`, or of this
/// process's own. Read from a short-lived thread that joins the namespace,
/// so the calling thread's namespaces never change.
pub fn uts_nodename(ns: Option<&Path>) -> io::Result<String> {
    let file = ns.map(File::open).transpose()?;
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                if let Some(f) = &file {
                    // SAFETY: a valid fd; only this thread's namespace changes.
                    cvt(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWUTS) })?;
                }
                // SAFETY: uname fills the zeroed struct we pass.
                let mut u: libc::utsname = unsafe { std::mem::zeroed() };
                cvt(unsafe { libc::uname(&mut u) })?;
                // SAFETY: the kernel NUL-terminates nodename.
                let name = unsafe { CStr::from_ptr(u.nodename.as_ptr()) };
                Ok(name.to_string_lossy().into_owned())
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the uname thread panicked")))
    })
}

/// This process's `/proc/self/oom_score_adj`.
pub fn oom_score_adj() -> io::Result<i32> {
    std::fs::read_to_string("/proc/self/oom_score_adj")?
        .trim()
        .parse()
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidData))
}

pub fn set_oom_score_adj(value: i32) -> io::Result<()> {
    std::fs::write("/proc/self/oom_score_adj", value.to_string())
}

/// `waitid(P_PID, pid, WEXITED | WNOHANG)`: its status once it exited.
pub fn wait_pid_nohang(pid: i32) -> io::Result<Option<Reaped>> {
    loop {
        // SAFETY: waitid fills the zeroed siginfo we pass.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let r = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG,
            )
        };
        if r < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        // SAFETY: waitid filled `info` for a CLD_* event.
        let (got, status) = unsafe { (info.si_pid(), info.si_status()) };
        if got == 0 {
            return Ok(None);
        }
        return Ok(Some(match info.si_code {
            libc::CLD_EXITED => Reaped::Exited(status),
            _ => Reaped::Signaled(status),
        }));
    }
}
