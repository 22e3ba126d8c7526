//! Where a published port forwards to, and how a connection to it is made.

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::netns::NetnsSockets;
use crate::sys::{self, EventFd, SockKind};
use crate::ProxyError;

/// The destination of a published port.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    /// `127.0.0.1:port` inside the network namespace at `netns` (a container's
    /// `/proc/<pid>/ns/net`, or a bind-mounted one such as `/run/netns/NAME`). The connecting
    /// socket is created inside that namespace, so the container needs no address reachable
    /// from the host; its loopback interface must be up.
    InNetns { netns: PathBuf, port: u16 },
    /// A plain address in the proxy's own namespace (host networking, tests).
    Addr(SocketAddr),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::InNetns { netns, port } => {
                write!(
                    f,
                    "127.0.0.1:{port} in network namespace {}",
                    netns.display()
                )
            }
            Target::Addr(addr) => write!(f, "{addr}"),
        }
    }
}

impl Target {
    /// The same target in another namespace (the port inside the container stays): what a
    /// swap does to each published port. `Addr` targets are returned unchanged.
    pub fn with_netns(&self, netns: impl Into<PathBuf>) -> Target {
        match self {
            Target::InNetns { port, .. } => Target::InNetns {
                netns: netns.into(),
                port: *port,
            },
            Target::Addr(_) => self.clone(),
        }
    }

    /// The address connected to, as seen from inside the target's namespace.
    fn addr(&self) -> SocketAddr {
        match self {
            Target::InNetns { port, .. } => SocketAddr::from((Ipv4Addr::LOCALHOST, *port)),
            Target::Addr(addr) => *addr,
        }
    }
}

/// A target made ready to use: for a namespace target, its helper thread is running.
/// Resolving up front makes a bad namespace fail `bind`/`switch`, not every connection.
pub(crate) struct Route {
    pub(crate) target: Target,
    netns: Option<Arc<NetnsSockets>>,
    /// Signalled (and readable for good) once this route is switched away from or its proxy
    /// closes: every HTTP connection on it polls this one fd, so a switch reaches them all
    /// at once without an fd or a wake-up per connection.
    pub(crate) drain: EventFd,
}

impl Route {
    pub(crate) fn resolve(target: Target) -> Result<Route, ProxyError> {
        let netns = match &target {
            Target::InNetns { netns, .. } => Some(NetnsSockets::get(netns)?),
            Target::Addr(_) => None,
        };
        let drain = EventFd::new().map_err(ProxyError::Setup)?;
        Ok(Route {
            target,
            netns,
            drain,
        })
    }

    fn socket(&self, kind: SockKind) -> io::Result<OwnedFd> {
        match &self.netns {
            Some(helper) => helper.socket(kind),
            None => sys::socket(sys::family_of(&self.target.addr()), kind),
        }
    }

    /// A connected TCP socket to the target, in blocking mode. `cancel` becoming readable
    /// (the proxy closing) abandons a connect that is still in progress.
    pub(crate) fn connect_tcp(
        &self,
        timeout: Duration,
        cancel: Option<BorrowedFd<'_>>,
    ) -> io::Result<OwnedFd> {
        let fd = self.socket(SockKind::Stream)?;
        sys::connect(fd.as_fd(), &self.target.addr(), timeout, cancel)?;
        Ok(fd)
    }

    /// A UDP socket connected to the target: the kernel then filters replies to those from the
    /// target, and `send`/`recv` need no address.
    pub(crate) fn connect_udp(&self) -> io::Result<UdpSocket> {
        let fd = self.socket(SockKind::Datagram)?;
        let socket = UdpSocket::from(fd);
        socket.connect(self.target.addr())?;
        Ok(socket)
    }
}

/// Whether `target` accepts a TCP connection within `timeout`: the readiness check a swap
/// runs against the new container before switching traffic to it.
pub fn probe_tcp(target: &Target, timeout: Duration) -> Result<(), ProxyError> {
    let route = Route::resolve(target.clone())?;
    route
        .connect_tcp(timeout, None)
        .map(drop)
        .map_err(|source| ProxyError::Connect {
            target: target.clone(),
            source,
        })
}
