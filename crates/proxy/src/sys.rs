//! Thin, safe wrappers over the few syscalls std does not expose: sockets with options that
//! must be set before `bind`, non-blocking connect with a cancellable wait, `poll`, `eventfd`,
//! pipes and `splice`. Every fd is created `O_CLOEXEC` so a container start running
//! concurrently in the same process never inherits a proxy socket.

use std::io;
use std::mem;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

/// Converts a `-1` return into the thread's `errno`.
fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn check_ssize(ret: libc::ssize_t) -> io::Result<usize> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as usize)
    }
}

/// The socket kinds the proxy creates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SockKind {
    Stream,
    Datagram,
}

impl SockKind {
    fn raw(self) -> libc::c_int {
        match self {
            SockKind::Stream => libc::SOCK_STREAM,
            SockKind::Datagram => libc::SOCK_DGRAM,
        }
    }
}

/// A new, unbound socket in the calling thread's network namespace.
pub(crate) fn socket(family: libc::c_int, kind: SockKind) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; on success the fd is fresh and owned by nobody else.
    let fd = check(unsafe { libc::socket(family, kind.raw() | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: `fd` was just returned by socket(2) and is not owned elsewhere.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub(crate) fn family_of(addr: &SocketAddr) -> libc::c_int {
    match addr {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    }
}

/// A `sockaddr_storage` for `addr`, with the length the kernel expects.
fn sockaddr(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(v4.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and suitably aligned for sockaddr_in.
            unsafe { std::ptr::write(&mut storage as *mut _ as *mut libc::sockaddr_in, sin) };
            mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v6) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: v6.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: v6.ip().octets(),
                },
                sin6_scope_id: v6.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and suitably aligned for sockaddr_in6.
            unsafe { std::ptr::write(&mut storage as *mut _ as *mut libc::sockaddr_in6, sin6) };
            mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

fn setsockopt_int(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: the option value is a live c_int of the length passed.
    check(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            &value as *const libc::c_int as *const libc::c_void,
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// A socket bound to `addr` (and listening, for streams).
///
/// Streams get `SO_REUSEADDR` so a restarted supervisor can take its ports back while old
/// connections sit in TIME_WAIT; Linux still refuses a second *listener*, so "port in use"
/// stays detectable. Datagram sockets do not get it: on UDP it would let two sockets share
/// a port silently. IPv6 sockets are `IPV6_V6ONLY` so `0.0.0.0:P` and `[::]:P` are two
/// independent proxies, as docker publishes them, instead of the second failing.
pub(crate) fn bind(addr: &SocketAddr, kind: SockKind) -> io::Result<OwnedFd> {
    let fd = socket(family_of(addr), kind)?;
    if kind == SockKind::Stream {
        setsockopt_int(fd.as_fd(), libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
    }
    if addr.is_ipv6() {
        setsockopt_int(fd.as_fd(), libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 1)?;
    }
    let (storage, len) = sockaddr(addr);
    // SAFETY: `storage` is a valid sockaddr of `len` bytes.
    check(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            &storage as *const _ as *const libc::sockaddr,
            len,
        )
    })?;
    if kind == SockKind::Stream {
        // The kernel clamps the backlog to net.core.somaxconn; ask for the most so bursts of
        // short connections during a swap wait in the queue instead of being refused.
        // SAFETY: plain syscall on a socket we own.
        check(unsafe { libc::listen(fd.as_raw_fd(), libc::SOMAXCONN) })?;
    }
    Ok(fd)
}

pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    // SAFETY: fcntl on an fd we borrow; no memory is passed.
    let flags = check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
    let flags = if on {
        flags | libc::O_NONBLOCK
    } else {
        flags & !libc::O_NONBLOCK
    };
    // SAFETY: as above.
    check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags) }).map(drop)
}

pub(crate) fn set_nodelay(fd: BorrowedFd<'_>) -> io::Result<()> {
    setsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1)
}

/// Connects `fd` to `addr`, giving up after `timeout` or as soon as `cancel` becomes readable.
/// The socket is left in blocking mode.
pub(crate) fn connect(
    fd: BorrowedFd<'_>,
    addr: &SocketAddr,
    timeout: Duration,
    cancel: Option<BorrowedFd<'_>>,
) -> io::Result<()> {
    set_nonblocking(fd, true)?;
    let (storage, len) = sockaddr(addr);
    // SAFETY: `storage` is a valid sockaddr of `len` bytes.
    let ret = unsafe {
        libc::connect(
            fd.as_raw_fd(),
            &storage as *const _ as *const libc::sockaddr,
            len,
        )
    };
    if ret < 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINPROGRESS) {
            return Err(err);
        }
        let deadline = Instant::now() + timeout;
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connection timed out",
                ));
            }
            let mut fds = vec![pollfd(fd.as_raw_fd(), libc::POLLOUT)];
            if let Some(cancel) = cancel {
                fds.push(pollfd(cancel.as_raw_fd(), libc::POLLIN));
            }
            poll(&mut fds, Some(deadline - now))?;
            if fds.len() > 1 && fds[1].revents != 0 {
                return Err(io::Error::new(
                    io::ErrorKind::Interrupted,
                    "proxy is closing",
                ));
            }
            if fds[0].revents != 0 {
                break;
            }
        }
        let err = socket_error(fd)?;
        if err != 0 {
            return Err(io::Error::from_raw_os_error(err));
        }
    }
    set_nonblocking(fd, false)
}

fn socket_error(fd: BorrowedFd<'_>) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: value/len describe a live c_int buffer.
    check(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            &mut value as *mut libc::c_int as *mut libc::c_void,
            &mut len,
        )
    })?;
    Ok(value)
}

/// `shutdown(2)`, ignoring ENOTCONN: the peer may already be gone, which is the same outcome.
pub(crate) fn shutdown(fd: BorrowedFd<'_>, how: libc::c_int) {
    // SAFETY: plain syscall on a borrowed fd; errors carry no information we act on.
    unsafe { libc::shutdown(fd.as_raw_fd(), how) };
}

pub(crate) fn pollfd(fd: RawFd, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}

/// `poll(2)` retrying on EINTR; `None` waits forever. Returns the number of ready fds.
pub(crate) fn poll(fds: &mut [libc::pollfd], timeout: Option<Duration>) -> io::Result<usize> {
    let ms = match timeout {
        None => -1,
        // Round up so a 0.4 ms remainder does not become a busy 0 ms poll.
        Some(t) => t.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as libc::c_int,
    };
    loop {
        // SAFETY: `fds` is a live, correctly sized array of pollfd.
        let ret = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        match check(ret) {
            Ok(n) => return Ok(n as usize),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// An eventfd used as a level-triggered wake-up: once signalled it stays readable until cleared.
pub(crate) struct EventFd(OwnedFd);

impl EventFd {
    pub(crate) fn new() -> io::Result<EventFd> {
        // SAFETY: plain syscall; the result is a fresh fd we own.
        let fd = check(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })?;
        // SAFETY: `fd` was just returned by eventfd(2).
        Ok(EventFd(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    pub(crate) fn signal(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64. It can only fail with EAGAIN when the counter
        // is saturated, which still leaves the fd readable, so the result is not needed.
        unsafe {
            libc::write(
                self.0.as_raw_fd(),
                &one as *const u64 as *const libc::c_void,
                8,
            )
        };
    }

    pub(crate) fn clear(&self) {
        let mut value: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64; EAGAIN (not signalled) is fine.
        unsafe {
            libc::read(
                self.0.as_raw_fd(),
                &mut value as *mut u64 as *mut libc::c_void,
                8,
            )
        };
    }

    pub(crate) fn raw(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    pub(crate) fn borrow(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// A pipe used as splice(2)'s in-kernel buffer between two sockets.
pub(crate) struct Pipe {
    pub(crate) read: OwnedFd,
    pub(crate) write: OwnedFd,
}

impl Pipe {
    pub(crate) fn new() -> io::Result<Pipe> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: `fds` has room for the two fds pipe2 writes.
        check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
        // SAFETY: both fds were just created by pipe2 and are owned by nobody else.
        Ok(unsafe {
            Pipe {
                read: OwnedFd::from_raw_fd(fds[0]),
                write: OwnedFd::from_raw_fd(fds[1]),
            }
        })
    }

    /// Grows the pipe so one splice moves more per wake-up; failure only costs throughput.
    pub(crate) fn try_resize(&self, bytes: usize) -> usize {
        // SAFETY: fcntl on a pipe fd we own.
        let ret = unsafe {
            libc::fcntl(
                self.write.as_raw_fd(),
                libc::F_SETPIPE_SZ,
                bytes as libc::c_int,
            )
        };
        if ret > 0 {
            ret as usize
        } else {
            // SAFETY: as above.
            let cur = unsafe { libc::fcntl(self.write.as_raw_fd(), libc::F_GETPIPE_SZ) };
            if cur > 0 {
                cur as usize
            } else {
                64 * 1024
            }
        }
    }
}

/// `splice(2)` between two fds (one of them a pipe), at most `len` bytes, retrying EINTR.
pub(crate) fn splice(from: BorrowedFd<'_>, to: BorrowedFd<'_>, len: usize) -> io::Result<usize> {
    loop {
        // SAFETY: no offsets are passed (both ends are streams); the fds are borrowed live.
        let ret = unsafe {
            libc::splice(
                from.as_raw_fd(),
                std::ptr::null_mut(),
                to.as_raw_fd(),
                std::ptr::null_mut(),
                len,
                libc::SPLICE_F_MOVE,
            )
        };
        match check_ssize(ret) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

pub(crate) fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `buf` is a live, writable buffer of the length passed.
        let ret = unsafe {
            libc::read(
                fd.as_raw_fd(),
                buf.as_mut_ptr() as *mut libc::c_void,
                buf.len(),
            )
        };
        match check_ssize(ret) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

pub(crate) fn write(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    loop {
        // MSG_NOSIGNAL: a peer that went away must surface as EPIPE here, not kill the process.
        // SAFETY: `buf` is a live buffer of the length passed.
        let ret = unsafe {
            libc::send(
                fd.as_raw_fd(),
                buf.as_ptr() as *const libc::c_void,
                buf.len(),
                libc::MSG_NOSIGNAL,
            )
        };
        match check_ssize(ret) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Blocks SIGPIPE in the calling thread. splice(2) into a socket whose peer has gone raises
/// SIGPIPE at the thread (it has no MSG_NOSIGNAL); Rust binaries ignore it by default, but a
/// host program that restored the default action would be killed by a client hanging up.
pub(crate) fn block_sigpipe() {
    // SAFETY: sigset manipulation on a local set; pthread_sigmask only changes this thread.
    unsafe {
        let mut set: libc::sigset_t = mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGPIPE);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// `setns(fd, CLONE_NEWNET)` for the calling thread only.
pub(crate) fn enter_netns(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: plain syscall on a borrowed fd.
    check(unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) }).map(drop)
}

/// This process's `RLIMIT_NOFILE` as (soft, hard).
pub(crate) fn nofile_limit() -> io::Result<(u64, u64)> {
    // SAFETY: rlimit is plain old data; all-zero is valid and getrlimit fills it.
    let mut lim: libc::rlimit = unsafe { mem::zeroed() };
    // SAFETY: `lim` is a live rlimit.
    check(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) })?;
    Ok((lim.rlim_cur as u64, lim.rlim_max as u64))
}

/// Sets the soft `RLIMIT_NOFILE`, keeping the hard one.
pub(crate) fn set_nofile_soft(soft: u64, hard: u64) -> io::Result<()> {
    let lim = libc::rlimit {
        rlim_cur: soft as libc::rlim_t,
        rlim_max: hard as libc::rlim_t,
    };
    // SAFETY: `lim` is a live rlimit.
    check(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }).map(drop)
}
