//! The UDP side of a published port.
//!
//! UDP has no connections, so the proxy makes flows: the first datagram from a client address
//! opens a socket to the target (created in the target's namespace and connected, so the
//! kernel only hands it the target's replies), later datagrams from that client reuse it, and
//! replies go back to the client from the listening socket, so the client sees them come from
//! the address it sent to. A flow that is quiet in both directions for the idle timeout is
//! closed, like a conntrack entry.
//!
//! One thread polls the listening socket and every flow socket. Datagram relaying is a
//! recv + send per packet with no blocking in between, so a single loop keeps up, and it
//! makes closing trivial: stop the loop and everything it owns is dropped.

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::routing::{Abort, Lease, Routing};
use crate::sys::{self, EventFd};
use crate::ProxyOptions;

/// Larger than any UDP payload (65,507 bytes over IPv4), so no datagram is truncated.
const DATAGRAM_MAX: usize = 64 * 1024;

pub(crate) struct UdpProxy {
    routing: Arc<Routing>,
    /// Wakes the loop: to stop (with `stopping` set) or to drop aborted flows.
    wake: Arc<EventFd>,
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl UdpProxy {
    pub(crate) fn start(
        listener: UdpSocket,
        routing: Arc<Routing>,
        options: &ProxyOptions,
    ) -> io::Result<UdpProxy> {
        listener.set_nonblocking(true)?;
        let wake = Arc::new(EventFd::new()?);
        let stopping = Arc::new(AtomicBool::new(false));
        let thread = {
            let relay = Relay {
                listener,
                routing: routing.clone(),
                wake: wake.clone(),
                stopping: stopping.clone(),
                idle: options.udp_idle_timeout,
                max_flows: options.udp_max_flows,
                flows: HashMap::new(),
            };
            std::thread::Builder::new()
                .name("berth-udp".into())
                .stack_size(256 * 1024)
                .spawn(move || relay.run())?
        };
        Ok(UdpProxy {
            routing,
            wake,
            stopping,
            thread: Some(thread),
        })
    }

    /// Stops at once: replies can only go out through the listening socket, so flows cannot
    /// outlive it and a grace period would relay nothing.
    pub(crate) fn close(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        self.routing.close();
        self.stopping.store(true, Ordering::SeqCst);
        self.wake.signal();
        let _ = thread.join();
    }
}

impl Drop for UdpProxy {
    fn drop(&mut self) {
        self.close();
    }
}

struct Flow {
    socket: UdpSocket,
    last: Instant,
    aborted: Arc<FlowAbort>,
    /// Held for the flow's life: counts it against its target for `drain`.
    _lease: Lease,
}

struct FlowAbort {
    flag: AtomicBool,
    wake: Arc<EventFd>,
}

impl Abort for FlowAbort {
    fn abort(&self) {
        self.flag.store(true, Ordering::SeqCst);
        self.wake.signal();
    }
}

struct Relay {
    listener: UdpSocket,
    routing: Arc<Routing>,
    wake: Arc<EventFd>,
    stopping: Arc<AtomicBool>,
    idle: Duration,
    max_flows: usize,
    flows: HashMap<SocketAddr, Flow>,
}

impl Relay {
    fn run(mut self) {
        let mut buf = vec![0u8; DATAGRAM_MAX];
        loop {
            let mut clients = Vec::with_capacity(self.flows.len());
            let mut fds = Vec::with_capacity(self.flows.len() + 2);
            fds.push(sys::pollfd(self.wake.raw(), libc::POLLIN));
            fds.push(sys::pollfd(self.listener.as_raw_fd(), libc::POLLIN));
            for (client, flow) in &self.flows {
                clients.push(*client);
                fds.push(sys::pollfd(flow.socket.as_raw_fd(), libc::POLLIN));
            }
            let now = Instant::now();
            let timeout = self
                .flows
                .values()
                .map(|f| (f.last + self.idle).saturating_duration_since(now))
                .min();
            if sys::poll(&mut fds, timeout).is_err() {
                // ENOMEM is the only realistic failure; wait for it to pass.
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            if fds[0].revents != 0 {
                self.wake.clear();
                if self.stopping.load(Ordering::SeqCst) {
                    return;
                }
            }
            if fds[1].revents != 0 {
                self.relay_to_targets(&mut buf);
            }
            for (client, fd) in clients.iter().zip(&fds[2..]) {
                if fd.revents != 0 {
                    self.relay_to_client(*client, &mut buf);
                }
            }
            let now = Instant::now();
            let idle = self.idle;
            self.flows.retain(|_, flow| {
                now.duration_since(flow.last) < idle && !flow.aborted.flag.load(Ordering::SeqCst)
            });
        }
    }

    fn relay_to_targets(&mut self, buf: &mut [u8]) {
        loop {
            let (n, client) = match self.listener.recv_from(buf) {
                Ok(got) => got,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                // A pending ICMP error or a signal: the next datagram is still there.
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            };
            if !self.flows.contains_key(&client) && !self.open_flow(client) {
                continue;
            }
            if let Some(flow) = self.flows.get_mut(&client) {
                flow.last = Instant::now();
                // Like any UDP hop, a datagram the target cannot take now is dropped.
                let _ = flow.socket.send(&buf[..n]);
            }
        }
    }

    fn open_flow(&mut self, client: SocketAddr) -> bool {
        // Each flow costs an fd; past the cap new clients' datagrams are dropped rather than
        // letting one noisy sender exhaust the process's fds.
        if self.flows.len() >= self.max_flows {
            return false;
        }
        let Some(lease) = self.routing.lease() else {
            return false;
        };
        let socket = match lease.route().connect_udp() {
            Ok(s) => s,
            Err(err) => {
                self.routing.connect_failed(&lease.route().target, &err);
                return false;
            }
        };
        if socket.set_nonblocking(true).is_err() {
            return false;
        }
        let aborted = Arc::new(FlowAbort {
            flag: AtomicBool::new(false),
            wake: self.wake.clone(),
        });
        lease.set_abort(aborted.clone());
        self.flows.insert(
            client,
            Flow {
                socket,
                last: Instant::now(),
                aborted,
                _lease: lease,
            },
        );
        true
    }

    fn relay_to_client(&mut self, client: SocketAddr, buf: &mut [u8]) {
        let Some(flow) = self.flows.get_mut(&client) else {
            return;
        };
        loop {
            match flow.socket.recv(buf) {
                Ok(n) => {
                    flow.last = Instant::now();
                    let _ = self.listener.send_to(&buf[..n], client);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // WouldBlock, or ECONNREFUSED from an ICMP port-unreachable (nothing listens on
                // the target yet or any more): reading it cleared it; nothing to forward.
                Err(_) => return,
            }
        }
    }
}
