//! The TCP side of a published port.
//!
//! Concurrency model: plain threads with blocking I/O. One accept thread per port; per
//! connection, one thread per direction, each a blocking splice(2) loop. This is the simplest
//! model that is also fast here: the kernel moves the bytes (no copies through userspace and
//! no event loop between them), a blocked thread costs nothing but a small stack, and
//! cancellation is just shutdown(2) on the sockets, which wakes any blocked splice. A
//! compose project's published ports see tens to hundreds of concurrent connections, where a
//! thread pair each is cheap; an async runtime would add a large dependency and lose splice.
//! Relay threads are reused across connections (see `pool.rs` for why).
//!
//! Half-close: when one side sends FIN, the copy of that direction ends and the proxy shuts
//! down the write side of the other socket, so the FIN travels end to end while the opposite
//! direction keeps flowing. An error in either direction (reset, broken pipe) shuts both
//! sockets down completely, which ends the other direction too. The sockets are closed when
//! both directions have ended.

use std::io;
use std::net::TcpListener;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::inspect::{self, Outcome};
use crate::pool::Pool;
use crate::relay;
use crate::routing::{Abort, Lease, Routing};
use crate::sys::{self, EventFd};
use crate::{Protocol, ProxyOptions};

/// How long the accept loop backs off when the process is out of fds or memory, instead of
/// spinning on an error that only time (connections closing) can fix.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

pub(crate) struct TcpProxy {
    routing: Arc<Routing>,
    /// Stops the accept loop.
    stop: Arc<EventFd>,
    /// Abandons connects still in progress when the proxy closes.
    cut: Arc<EventFd>,
    pool: Arc<Pool>,
    accept: Option<JoinHandle<()>>,
}

impl TcpProxy {
    pub(crate) fn start(
        listener: TcpListener,
        routing: Arc<Routing>,
        options: &ProxyOptions,
    ) -> io::Result<TcpProxy> {
        listener.set_nonblocking(true)?;
        let stop = Arc::new(EventFd::new()?);
        let cut = Arc::new(EventFd::new()?);
        let pool = Arc::new(Pool::new());
        let accept = {
            let accepting = Accepting {
                listener,
                routing: routing.clone(),
                stop: stop.clone(),
                cut: cut.clone(),
                pool: pool.clone(),
                connect_timeout: options.connect_timeout,
                protocol: options.protocol,
            };
            std::thread::Builder::new()
                .name("berth-accept".into())
                .stack_size(64 * 1024)
                .spawn(move || accepting.run())?
        };
        Ok(TcpProxy {
            routing,
            stop,
            cut,
            pool,
            accept: Some(accept),
        })
    }

    /// Stops listening at once: the port is free when this returns. Open connections go on.
    pub(crate) fn stop_listening(&mut self) {
        let Some(accept) = self.accept.take() else {
            return;
        };
        self.routing.close();
        self.stop.signal();
        let _ = accept.join();
    }

    /// Stops listening, lets open connections finish for up to `grace`, then cuts the rest
    /// and joins every thread.
    pub(crate) fn close(&mut self, grace: Duration) {
        self.stop_listening();
        if !grace.is_zero() {
            self.routing.wait(None, grace);
        }
        self.cut.signal();
        self.routing.abort(None);
        self.pool.shutdown();
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.close(Duration::ZERO);
    }
}

struct Accepting {
    listener: TcpListener,
    routing: Arc<Routing>,
    stop: Arc<EventFd>,
    cut: Arc<EventFd>,
    pool: Arc<Pool>,
    connect_timeout: Duration,
    protocol: Protocol,
}

impl Accepting {
    fn run(self) {
        loop {
            let mut fds = [
                sys::pollfd(self.listener.as_raw_fd(), libc::POLLIN),
                sys::pollfd(self.stop.raw(), libc::POLLIN),
            ];
            if sys::poll(&mut fds, None).is_err() {
                self.backoff();
                continue;
            }
            if fds[1].revents != 0 {
                return;
            }
            // The listener is non-blocking: take everything queued, then poll again.
            loop {
                match self.listener.accept() {
                    Ok((client, _peer)) => {
                        let Some(lease) = self.routing.lease() else {
                            // Closing: the client is dropped (closed) here.
                            break;
                        };
                        let client = OwnedFd::from(client);
                        let (cut, pool) = (self.cut.clone(), self.pool.clone());
                        let (timeout, protocol) = (self.connect_timeout, self.protocol);
                        let job = move || serve(client, lease, &cut, &pool, timeout, protocol);
                        // On failure the job (client and lease) was dropped: the client sees
                        // the connection close, the lease ends.
                        if self.pool.submit(job).is_err() {
                            self.backoff();
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if is_transient(&e) => continue,
                    Err(_) => {
                        self.backoff();
                        break;
                    }
                }
            }
        }
    }

    fn backoff(&self) {
        let mut fds = [sys::pollfd(self.stop.raw(), libc::POLLIN)];
        let _ = sys::poll(&mut fds, Some(ACCEPT_BACKOFF));
    }
}

/// Accept errors that concern only the one connection being accepted.
fn is_transient(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::ECONNABORTED | libc::EPROTO | libc::EPERM | libc::EINTR)
    )
}

/// Both sockets of a relayed connection. Shared by the two directions and the abort
/// registry; the fds close when the last of them lets go, so a shutdown(2) from an abort
/// never hits an fd number that was closed and reused.
pub(crate) struct TcpConn {
    pub(crate) client: OwnedFd,
    pub(crate) upstream: OwnedFd,
}

impl Abort for TcpConn {
    fn abort(&self) {
        sys::shutdown(self.client.as_fd(), libc::SHUT_RDWR);
        sys::shutdown(self.upstream.as_fd(), libc::SHUT_RDWR);
    }
}

/// A connection being relayed, held by both directions: when the second one finishes, the
/// lease ends (dropping the registry's reference to the sockets) and then the sockets close.
struct Relayed {
    _lease: Lease,
    conn: Arc<TcpConn>,
}

fn serve(
    client: OwnedFd,
    lease: Lease,
    cut: &EventFd,
    pool: &Pool,
    connect_timeout: Duration,
    protocol: Protocol,
) {
    let route = lease.route();
    let upstream = match route.connect_tcp(connect_timeout, Some(cut.borrow())) {
        Ok(fd) => fd,
        Err(err) => {
            // Dropping `client` closes it now: the client learns at once that the target
            // is not there instead of waiting on a connection that will never answer.
            lease.routing().connect_failed(&route.target, &err);
            return;
        }
    };
    // The endpoints already decided about Nagle; the proxy must not add its own delay to
    // the small writes it forwards.
    let _ = sys::set_nodelay(client.as_fd());
    let _ = sys::set_nodelay(upstream.as_fd());
    let conn = Arc::new(TcpConn { client, upstream });
    lease.set_abort(conn.clone());
    if protocol != Protocol::Tcp {
        let declared_http = protocol == Protocol::Http;
        if let Outcome::Done = inspect::relay(&conn, &lease, declared_http) {
            return;
        }
    }
    let relayed = Arc::new(Relayed {
        _lease: lease,
        conn,
    });

    let back = relayed.clone();
    let submitted = pool.submit(move || {
        pump(back.conn.upstream.as_fd(), back.conn.client.as_fd());
    });
    if submitted.is_err() {
        // Without a second thread the connection cannot be relayed both ways; end it.
        relayed.conn.abort();
        return;
    }
    pump(relayed.conn.client.as_fd(), relayed.conn.upstream.as_fd());
}

fn pump(src: BorrowedFd<'_>, dst: BorrowedFd<'_>) {
    match relay::copy(src, dst) {
        Ok(_) => sys::shutdown(dst, libc::SHUT_WR),
        Err(_) => {
            sys::shutdown(src, libc::SHUT_RDWR);
            sys::shutdown(dst, libc::SHUT_RDWR);
        }
    }
}
