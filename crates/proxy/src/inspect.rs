//! Relaying a TCP connection through userspace while following its HTTP/1.x exchanges.
//!
//! A switch must not cut the requests of kept-alive connections, nor leave them on the old
//! backend until the grace period ends. So connections that carry HTTP/1.x (detected from the
//! client's first bytes, or declared) are relayed here, by one thread that owns both
//! directions (non-blocking sockets and `poll`), with [`Tracker`] marking where each message
//! ends. When the connection's route is switched away from, it is ended at a boundary:
//!
//! - the request in progress is forwarded to its end; no later request is forwarded;
//! - the response to the last forwarded request gets `Connection: close`, and after it the
//!   proxy closes the connection: the client opens a new one, which reaches the new target;
//! - a connection with nothing in flight that stays quiet for [`IDLE_CLOSE`] is closed.
//!
//! Pipelined requests the client sent after the last forwarded one are not answered; the
//! `Connection: close` tells the client to send them again on a new connection (RFC 9112
//! §9.3.2). Anything that turns out not to be HTTP (the server speaks first, the first bytes
//! are no request line, the tracker cannot follow) or stops being HTTP (an upgrade) is handed
//! back, buffers flushed, to the splice relay as plain TCP: those connections drain until the
//! grace period like any TCP connection.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::time::{Duration, Instant};

use crate::http::{self, Head, Sniff, Step, Tracker, MAX_HEAD};
use crate::routing::{Abort, Kind, Lease};
use crate::sys;
use crate::tcp::TcpConn;

/// Buffer per direction: a message head fits, and bodies move in few syscalls. Two per
/// connection bound the memory of 1,000 busy kept-alive connections to 32 MiB.
const BUF: usize = 16 * 1024;

/// A connection with nothing buffered that stays quiet this long gives its buffers back to
/// the allocator (and gets new ones with its next bytes), so buffer memory follows the
/// connections that are busy, not all the kept-alive ones open; a connection that never
/// sends a byte (a browser's spare) never gets one. (The allocator keeps freed memory for
/// reuse rather than returning it to the system at once.)
const BUFFER_IDLE: Duration = Duration::from_secs(1);

/// During a drain, a connection with nothing in flight is closed after this long without a
/// byte. Closing at once would race a kept-alive client that just got its response and is
/// sending the next request (it would see the close as a failed request); a client that is
/// busy sends within this time, and its request is then answered with `Connection: close`.
pub(crate) const IDLE_CLOSE: Duration = Duration::from_secs(1);

/// After ending a connection, how long its client may take to close its side. Until then
/// what it sends is read and dropped: closing a socket with unread data resets it, which
/// could destroy the last response before the client has read it.
const LINGER: Duration = Duration::from_secs(2);

/// How long the first bytes of a connection may stay a mere prefix of a request line
/// (`GET /lo`) before the connection is taken for plain TCP. An HTTP client writes its
/// request line at once; a client of another protocol may send a few bytes that happen to
/// look like one and then wait for an answer, which must not wait on the proxy for long.
const DETECT_WAIT: Duration = Duration::from_millis(200);

/// How a relayed connection continues.
pub(crate) enum Outcome {
    /// The connection is over.
    Done,
    /// Not (or no longer) HTTP: relay the rest as plain bytes. Everything buffered has been
    /// forwarded and the sockets are blocking again.
    Opaque,
}

/// One direction's bytes: `[sent, approved)` may be written, `[approved, end)` are not yet
/// parsed (or held back).
struct Flow {
    buf: Vec<u8>,
    sent: usize,
    approved: usize,
    end: usize,
    /// The source reached end of stream.
    eof: bool,
    /// The end of stream was forwarded (shutdown of the destination's write side).
    shut: bool,
}

impl Flow {
    fn new() -> Flow {
        Flow {
            // Allocated by the first read.
            buf: Vec::new(),
            sent: 0,
            approved: 0,
            end: 0,
            eof: false,
            shut: false,
        }
    }

    fn unparsed(&self) -> &[u8] {
        &self.buf[self.approved..self.end]
    }

    fn unsent(&self) -> bool {
        self.sent < self.approved
    }

    /// Whether a read has room, after moving pending bytes to the front if that helps.
    fn room(&mut self) -> bool {
        if self.buf.is_empty() {
            return true;
        }
        if self.sent == self.end {
            (self.sent, self.approved, self.end) = (0, 0, 0);
        } else if self.end == self.buf.len() && self.sent > 0 {
            self.buf.copy_within(self.sent..self.end, 0);
            self.approved -= self.sent;
            self.end -= self.sent;
            self.sent = 0;
        }
        self.end < self.buf.len()
    }

    /// Makes room for an incomplete head; false when it cannot be tracked (too long).
    fn grow(&mut self) -> bool {
        if self.room() {
            return true;
        }
        if self.buf.len() >= MAX_HEAD + BUF {
            return false;
        }
        self.buf.resize(self.buf.len() * 2, 0);
        true
    }

    /// Gives the buffer back if it holds nothing.
    fn release(&mut self) {
        if self.sent == self.end {
            self.buf = Vec::new();
            (self.sent, self.approved, self.end) = (0, 0, 0);
        }
    }

    /// One non-blocking read; `Ok(false)` when nothing was ready.
    fn read(&mut self, src: BorrowedFd<'_>) -> io::Result<bool> {
        if self.buf.is_empty() {
            self.buf = vec![0; BUF];
        }
        match sys::read(src, &mut self.buf[self.end..]) {
            Ok(0) => {
                self.eof = true;
                Ok(true)
            }
            Ok(n) => {
                self.end += n;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Writes what is approved until done or the destination is full.
    fn flush(&mut self, dst: BorrowedFd<'_>) -> io::Result<()> {
        while self.unsent() {
            match sys::write(dst, &self.buf[self.sent..self.approved]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Replaces the `len` unparsed bytes at `approved` with `with`, and approves them.
    fn approve_rewritten(&mut self, len: usize, with: &[u8]) {
        let at = self.approved;
        let mut rest = self.buf.split_off(at + len);
        rest.truncate(self.end - at - len);
        self.buf.truncate(at);
        self.buf.extend_from_slice(with);
        self.approved = self.buf.len();
        self.buf.extend_from_slice(&rest);
        self.end = self.buf.len();
        if self.buf.len() < BUF {
            self.buf.resize(BUF, 0);
        }
    }
}

/// The connection's state as the relay loop sees it.
struct Relay<'a> {
    client: BorrowedFd<'a>,
    upstream: BorrowedFd<'a>,
    lease: &'a Lease,
    up: Flow,
    down: Flow,
    tracker: Tracker,
    /// Still waiting for the first bytes to tell whether this is HTTP.
    detecting: bool,
    /// When the first bytes arrived while detecting.
    first_bytes: Option<Instant>,
    /// The route was switched away from (or the proxy is closing).
    draining: bool,
    /// Draining: no further request is forwarded.
    stop_requests: bool,
    /// Draining: the response marked `Connection: close` has started.
    marked: bool,
    /// The marked response is complete: end the connection once it is sent.
    finished: bool,
    last_activity: Instant,
}

/// What one parsing pass decided.
enum Parsed {
    Continue,
    Opaque,
}

/// Relays `conn` (both sockets connected) for as long as it carries HTTP/1.x.
pub(crate) fn relay(conn: &TcpConn, lease: &Lease, declared_http: bool) -> Outcome {
    let (client, upstream) = (conn.client.as_fd(), conn.upstream.as_fd());
    if sys::set_nonblocking(client, true).is_err() || sys::set_nonblocking(upstream, true).is_err()
    {
        return back_to_blocking(client, upstream);
    }
    let mut relay = Relay {
        client,
        upstream,
        lease,
        up: Flow::new(),
        down: Flow::new(),
        tracker: Tracker::new(),
        detecting: !declared_http,
        first_bytes: None,
        draining: false,
        stop_requests: false,
        marked: false,
        finished: false,
        last_activity: Instant::now(),
    };
    if declared_http {
        lease.set_kind(Kind::Http);
    }
    match relay.run() {
        Ok(Outcome::Opaque) => relay.hand_off(conn),
        Ok(Outcome::Done) => Outcome::Done,
        Err(_) => {
            conn.abort();
            Outcome::Done
        }
    }
}

fn back_to_blocking(client: BorrowedFd<'_>, upstream: BorrowedFd<'_>) -> Outcome {
    if sys::set_nonblocking(client, false).is_ok() && sys::set_nonblocking(upstream, false).is_ok()
    {
        Outcome::Opaque
    } else {
        Outcome::Done
    }
}

impl Relay<'_> {
    fn run(&mut self) -> io::Result<Outcome> {
        let drain = self.lease.route().drain.borrow();
        loop {
            if let Parsed::Opaque = self.parse()? {
                return Ok(Outcome::Opaque);
            }
            self.up.flush(self.upstream)?;
            self.down.flush(self.client)?;
            forward_eof(&mut self.up, self.upstream);
            forward_eof(&mut self.down, self.client);
            if self.up.shut && self.down.shut {
                return Ok(Outcome::Done);
            }
            if self.finished && !self.down.unsent() {
                self.end();
                return Ok(Outcome::Done);
            }
            let mut timeout = None;
            if let (true, Some(first)) = (self.detecting, self.first_bytes) {
                let waited = first.elapsed();
                if waited >= DETECT_WAIT {
                    return Ok(Outcome::Opaque);
                }
                timeout = Some(DETECT_WAIT - waited);
            }
            if self.draining && self.quiet() {
                let quiet_for = self.last_activity.elapsed();
                if quiet_for >= IDLE_CLOSE {
                    self.end();
                    return Ok(Outcome::Done);
                }
                timeout = sooner(timeout, IDLE_CLOSE - quiet_for);
            }
            let holding = |f: &Flow| !f.buf.is_empty() && f.sent == f.end;
            if holding(&self.up) || holding(&self.down) {
                let quiet_for = self.last_activity.elapsed();
                if quiet_for >= BUFFER_IDLE {
                    self.up.release();
                    self.down.release();
                } else {
                    timeout = sooner(timeout, BUFFER_IDLE - quiet_for);
                }
            }

            let read_up = !self.up.eof && self.up.room();
            let read_down = !self.down.eof && !self.finished && self.down.room();
            let mut fds = [
                interest(self.client, read_up, self.down.unsent()),
                interest(self.upstream, read_down, self.up.unsent()),
                sys::pollfd(
                    if self.draining { -1 } else { drain.as_raw_fd() },
                    libc::POLLIN,
                ),
            ];
            sys::poll(&mut fds, timeout)?;
            if fds[2].revents != 0 {
                self.draining = true;
            }
            if read_up && fds[0].revents != 0 && self.up.read(self.client)? {
                self.last_activity = Instant::now();
                if self.detecting && self.first_bytes.is_none() {
                    self.first_bytes = Some(self.last_activity);
                }
            }
            if read_down && fds[1].revents != 0 && self.down.read(self.upstream)? {
                self.last_activity = Instant::now();
            }
        }
    }

    /// Nothing in flight either way: no request partly received or awaiting its response,
    /// no response under way, nothing buffered.
    fn quiet(&self) -> bool {
        !self.detecting
            && self.tracker.idle()
            && self.up.end == self.up.sent
            && self.down.end == self.down.sent
    }

    /// Advances both directions as far as the bytes received allow.
    fn parse(&mut self) -> io::Result<Parsed> {
        if self.detecting {
            if self.down.end > 0 {
                // The server spoke first: not HTTP.
                return Ok(Parsed::Opaque);
            }
            match http::sniff(self.up.unparsed()) {
                Sniff::Http => {
                    self.detecting = false;
                    self.lease.set_kind(Kind::Http);
                }
                Sniff::NotHttp => return Ok(Parsed::Opaque),
                Sniff::NeedMore if self.up.eof || !self.up.grow() => return Ok(Parsed::Opaque),
                Sniff::NeedMore => return Ok(Parsed::Continue),
            }
        }
        if self.parse_requests().is_err() || self.parse_responses().is_err() {
            // Not something the tracker can follow: plain bytes from here on.
            return Ok(Parsed::Opaque);
        }
        if self.tracker.opaque() {
            return Ok(Parsed::Opaque);
        }
        if self.up.eof {
            // Whatever the client left unfinished goes as is, unless the drain holds it.
            if self.stop_requests {
                self.up.end = self.up.approved;
            } else {
                self.up.approved = self.up.end;
            }
        }
        if self.down.eof {
            self.tracker.server_closed();
            if !self.finished {
                self.down.approved = self.down.end;
            }
        }
        Ok(Parsed::Continue)
    }

    fn parse_requests(&mut self) -> Result<(), http::Malformed> {
        while self.up.approved < self.up.end {
            if self.draining
                && self.tracker.request_boundary()
                && (self.stop_requests || self.tracker.pending() > 0)
            {
                // Held back: the response that will carry `Connection: close` is already
                // awaited, and nothing sent after its request would be answered.
                return Ok(());
            }
            match self.tracker.client(self.up.unparsed())? {
                Step::Head { len, .. } => {
                    self.up.approved += len;
                    if self.draining {
                        self.stop_requests = true;
                    }
                }
                Step::Bytes { len, .. } => self.up.approved += len,
                Step::NeedMore => {
                    if !self.up.grow() {
                        return Err(http::Malformed("head too long"));
                    }
                    return Ok(());
                }
                Step::Wait | Step::Opaque => return Ok(()),
            }
        }
        Ok(())
    }

    fn parse_responses(&mut self) -> Result<(), http::Malformed> {
        while self.down.approved < self.down.end && !self.finished {
            match self.tracker.server(self.down.unparsed())? {
                Step::Head { len, kind, end } => {
                    if kind == Head::Final && self.draining && self.tracker.pending() == 0 {
                        // The answer to the last request forwarded: the client learns that
                        // this connection ends here, and opens a new one for what follows.
                        let start = self.down.approved;
                        let head = http::with_connection_close(&self.down.buf[start..start + len]);
                        self.down.approve_rewritten(len, &head);
                        self.stop_requests = true;
                        self.marked = true;
                        self.finished = end;
                    } else {
                        self.down.approved += len;
                    }
                    if kind == Head::Switch {
                        return Ok(());
                    }
                }
                Step::Bytes { len, end } => {
                    self.down.approved += len;
                    if end && self.marked {
                        self.finished = true;
                    }
                }
                Step::NeedMore => {
                    if !self.down.grow() {
                        return Err(http::Malformed("head too long"));
                    }
                    return Ok(());
                }
                Step::Wait | Step::Opaque => return Ok(()),
            }
        }
        Ok(())
    }

    /// Ends the connection after a complete exchange: the client gets the end of stream
    /// after the last response, the server's connection is closed.
    fn end(&mut self) {
        sys::shutdown(self.client, libc::SHUT_WR);
        sys::shutdown(self.upstream, libc::SHUT_RDWR);
        let deadline = Instant::now() + LINGER;
        let mut scratch = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let mut fds = [sys::pollfd(self.client.as_raw_fd(), libc::POLLIN)];
            if left.is_zero() || sys::poll(&mut fds, Some(left)).is_err() || fds[0].revents == 0 {
                return;
            }
            match sys::read(self.client, &mut scratch) {
                Ok(n) if n > 0 => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                _ => return,
            }
        }
    }

    /// Forwards everything buffered, then returns the sockets to blocking mode for the
    /// splice relay.
    fn hand_off(&mut self, conn: &TcpConn) -> Outcome {
        // What the connection carries from here on, for the report of a cut at the grace
        // period: an upgraded protocol, or bytes that were never (or stopped being) HTTP.
        self.lease.set_kind(if self.tracker.opaque() {
            Kind::Upgraded
        } else {
            Kind::Tcp
        });
        self.up.approved = self.up.end;
        self.down.approved = self.down.end;
        let flushed = flush_all(&mut self.up, self.upstream)
            .and_then(|()| flush_all(&mut self.down, self.client));
        if flushed.is_err() {
            conn.abort();
            return Outcome::Done;
        }
        back_to_blocking(self.client, self.upstream)
    }
}

fn sooner(timeout: Option<Duration>, other: Duration) -> Option<Duration> {
    Some(timeout.map_or(other, |t| t.min(other)))
}

fn interest(fd: BorrowedFd<'_>, read: bool, write: bool) -> libc::pollfd {
    let mut events = 0;
    if read {
        events |= libc::POLLIN;
    }
    if write {
        events |= libc::POLLOUT;
    }
    // An fd with no interest is left out: it would still report POLLHUP, over and over.
    sys::pollfd(if events == 0 { -1 } else { fd.as_raw_fd() }, events)
}

/// Passes a source's end of stream on, once everything before it is written.
fn forward_eof(flow: &mut Flow, dst: BorrowedFd<'_>) {
    if flow.eof && !flow.shut && flow.sent == flow.end {
        sys::shutdown(dst, libc::SHUT_WR);
        flow.shut = true;
    }
}

/// Writes everything approved, waiting for room as needed.
fn flush_all(flow: &mut Flow, dst: BorrowedFd<'_>) -> io::Result<()> {
    loop {
        flow.flush(dst)?;
        if !flow.unsent() {
            return Ok(());
        }
        let mut fds = [sys::pollfd(dst.as_raw_fd(), libc::POLLOUT)];
        sys::poll(&mut fds, None)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    #[test]
    fn buffers_exist_only_while_bytes_pass() {
        let (a, b) = UnixStream::pair().unwrap();
        let (c, d) = UnixStream::pair().unwrap();
        b.set_nonblocking(true).unwrap();
        let mut flow = Flow::new();
        assert!(flow.room());
        assert_eq!(flow.buf.capacity(), 0, "no buffer before the first byte");
        assert!(!flow.read(b.as_fd()).unwrap(), "nothing to read yet");
        (&a).write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        assert!(flow.read(b.as_fd()).unwrap());
        assert_eq!(flow.unparsed(), b"GET / HTTP/1.1\r\n\r\n");
        // Bytes not yet forwarded keep the buffer.
        flow.release();
        assert_eq!(flow.unparsed().len(), 18);
        flow.approved = flow.end;
        flow.flush(c.as_fd()).unwrap();
        let mut got = [0u8; 18];
        (&d).read_exact(&mut got).unwrap();
        flow.release();
        assert_eq!(flow.buf.capacity(), 0, "an emptied buffer is given back");
        (&a).write_all(b"x").unwrap();
        assert!(flow.read(b.as_fd()).unwrap());
        assert_eq!(flow.unparsed(), b"x");
    }

    #[test]
    fn a_rewritten_head_keeps_the_bytes_after_it() {
        let (a, b) = UnixStream::pair().unwrap();
        let mut flow = Flow::new();
        (&a).write_all(b"HEADtail").unwrap();
        flow.read(b.as_fd()).unwrap();
        flow.approve_rewritten(4, b"LONGER HEAD");
        assert_eq!(&flow.buf[..flow.approved], b"LONGER HEAD");
        assert_eq!(flow.unparsed(), b"tail");
    }
}
