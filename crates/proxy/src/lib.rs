//! Published ports: a userspace proxy from a host address into a container.
//!
//! A [`PortProxy`] listens on one `(host_ip, host_port, proto)` and forwards every connection
//! (TCP) or flow (UDP) to its current [`Target`], usually `127.0.0.1:<port>` inside the
//! container's network namespace: the proxy creates its upstream sockets from a helper thread
//! that entered that namespace, so containers need no address reachable from the host.
//!
//! The target can be switched atomically ([`PortProxy::switch`]): connections accepted after
//! `switch` returns go to the new target; connections already open stay on the old one until
//! they end, and [`PortProxy::drain`] waits for that. This is the primitive of a zero-downtime
//! swap: start the new container, probe it ([`probe_tcp`]), switch, drain, stop the old one.
//!
//! Connections that carry HTTP/1.x ([`Protocol`]: detected from the client's first bytes, or
//! declared) do not wait for their clients to leave: after a switch each one ends at a
//! request boundary, its last response marked `Connection: close`, so kept-alive clients
//! move to the new target without a failed request. Upgraded (WebSocket) and plain TCP
//! connections stay until they end or the grace period is over; [`PortProxy::cut_connections`]
//! then closes them and says what they were ([`Cut`]). [`raise_fd_limit`] lets a supervisor
//! hold thousands of connections.
//!
//! The process using this crate must not die on SIGPIPE: Rust binaries ignore it by default,
//! and the relay threads block it for themselves as well.

mod error;
mod http;
mod inspect;
mod netns;
mod pool;
mod relay;
mod routing;
mod set;
mod sys;
mod target;
mod tcp;
mod udp;

use std::fmt;
use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

pub use error::ProxyError;
pub use netns::NetnsError;
pub use routing::{Cut, ProxyStats};
pub use set::{ProxySet, Publish};
pub use target::{probe_tcp, Target};

use routing::Routing;
use sys::SockKind;
use target::Route;
use tcp::TcpProxy;
use udp::UdpProxy;

/// The transport protocol of a published port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    Tcp,
    Udp,
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        })
    }
}

/// An unknown protocol name in a port specification.
#[derive(Debug, thiserror::Error)]
#[error("unknown protocol {0:?}: expected tcp or udp")]
pub struct UnknownProto(pub String);

impl FromStr for Proto {
    type Err = UnknownProto;

    fn from_str(s: &str) -> Result<Proto, UnknownProto> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" => Ok(Proto::Tcp),
            "udp" => Ok(Proto::Udp),
            _ => Err(UnknownProto(s.to_string())),
        }
    }
}

/// What a published TCP port carries, which decides how a switch drains its connections.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// Decided per connection: HTTP/1.x when the client's first bytes are a request line,
    /// plain TCP when they are not or when the server speaks first.
    #[default]
    Auto,
    /// HTTP/1.x: after a switch, kept-alive connections end at a request boundary
    /// (`Connection: close` on the response in flight), so no request is cut or refused.
    /// Unlike `Auto`, a connection that has sent nothing yet counts as idle HTTP (a browser's
    /// pre-opened connection) and is closed by a drain; a connection that turns out not to
    /// follow HTTP/1.x is still relayed as plain TCP, so declaring it never breaks one.
    Http,
    /// Plain TCP: connections stay on the old target until they end or are closed.
    Tcp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Auto => "auto",
            Protocol::Http => "http",
            Protocol::Tcp => "tcp",
        })
    }
}

/// An unknown application protocol name (`x-berth: {protocol: ...}`).
#[derive(Debug, thiserror::Error)]
#[error("unknown protocol {0:?}: expected http, tcp or auto")]
pub struct UnknownProtocol(pub String);

impl FromStr for Protocol {
    type Err = UnknownProtocol;

    fn from_str(s: &str) -> Result<Protocol, UnknownProtocol> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Protocol::Auto),
            "http" => Ok(Protocol::Http),
            "tcp" => Ok(Protocol::Tcp),
            _ => Err(UnknownProtocol(s.to_string())),
        }
    }
}

/// Tunables of a proxy; the defaults suit published ports of a compose project.
#[derive(Clone, Debug)]
pub struct ProxyOptions {
    /// How long a connect to the target may take before the client is closed. Targets are
    /// local (a namespace on this host), so a connect either succeeds or is refused at once;
    /// the timeout only bounds a target that dropped packets.
    pub connect_timeout: Duration,
    /// A UDP flow quiet in both directions this long is closed (docker-proxy: 90 s).
    pub udp_idle_timeout: Duration,
    /// At most this many UDP flows (one fd each) at once; datagrams from further clients are
    /// dropped until flows expire.
    pub udp_max_flows: usize,
    /// What TCP connections carry (UDP ignores it).
    pub protocol: Protocol,
}

impl Default for ProxyOptions {
    fn default() -> ProxyOptions {
        ProxyOptions {
            connect_timeout: Duration::from_secs(5),
            udp_idle_timeout: Duration::from_secs(90),
            udp_max_flows: 4096,
            protocol: Protocol::Auto,
        }
    }
}

/// This process's open-file limit, from [`raise_fd_limit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FdLimit {
    pub soft: u64,
    pub hard: u64,
}

/// Raises this process's soft open-file limit (`RLIMIT_NOFILE`) to its hard limit, and reads
/// it back to check it took; returns the limit now in force. A supervisor calls it at start:
/// every relayed connection holds 2 fds (HTTP) to 6 (plain TCP: two sockets, two splice
/// pipes), so the usual soft limit of 1,024 would refuse connections long before 1,000
/// kept-alive clients; the hard limit (often 524,288) does not. Never lowers the limit.
pub fn raise_fd_limit() -> Result<FdLimit, ProxyError> {
    let (soft, hard) = sys::nofile_limit().map_err(ProxyError::Setup)?;
    if soft < hard {
        sys::set_nofile_soft(hard, hard).map_err(|source| ProxyError::FdLimit {
            soft,
            hard,
            source,
        })?;
    }
    let (now, hard_now) = sys::nofile_limit().map_err(ProxyError::Setup)?;
    if now < hard {
        return Err(ProxyError::FdLimit {
            soft,
            hard,
            source: std::io::Error::other(format!("the limit is still {now}")),
        });
    }
    Ok(FdLimit {
        soft: now,
        hard: hard_now,
    })
}

enum Engine {
    Tcp(TcpProxy),
    Udp(UdpProxy),
}

/// One published port: a listener on the host side forwarding to a switchable target.
///
/// Dropping it is `close(Duration::ZERO)`: the port is freed, open connections are cut, and
/// every thread and fd it made is gone when the drop returns.
pub struct PortProxy {
    local: SocketAddr,
    proto: Proto,
    routing: Arc<Routing>,
    engine: Engine,
}

impl fmt::Debug for PortProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PortProxy")
            .field("local", &self.local)
            .field("proto", &self.proto)
            .field("target", &self.target())
            .finish()
    }
}

impl PortProxy {
    /// Listens on `host_ip:host_port` (`0.0.0.0`, `::`, or one address of this host; port 0
    /// picks a free one, see [`local_addr`](Self::local_addr)) and forwards to `target`.
    ///
    /// Fails with [`ProxyError::PortInUse`] ("port 8080 is already in use on 127.0.0.1")
    /// when something else listens there, or a [`NetnsError`] when the target's namespace
    /// cannot be entered.
    pub fn bind(
        host_ip: IpAddr,
        host_port: u16,
        proto: Proto,
        target: Target,
    ) -> Result<PortProxy, ProxyError> {
        Self::bind_with(host_ip, host_port, proto, target, &ProxyOptions::default())
    }

    /// [`bind`](Self::bind) with explicit options.
    pub fn bind_with(
        host_ip: IpAddr,
        host_port: u16,
        proto: Proto,
        target: Target,
        options: &ProxyOptions,
    ) -> Result<PortProxy, ProxyError> {
        let route = Route::resolve(target)?;
        let addr = SocketAddr::new(host_ip, host_port);
        let bind_err = |e| ProxyError::from_bind(host_ip, host_port, proto, e);
        let start_err = |source| ProxyError::Start {
            ip: host_ip,
            port: host_port,
            proto,
            source,
        };
        let routing = Routing::new(route);
        let (local, engine) = match proto {
            Proto::Tcp => {
                let listener =
                    TcpListener::from(sys::bind(&addr, SockKind::Stream).map_err(bind_err)?);
                let local = listener.local_addr().map_err(start_err)?;
                let engine =
                    TcpProxy::start(listener, routing.clone(), options).map_err(start_err)?;
                (local, Engine::Tcp(engine))
            }
            Proto::Udp => {
                let listener =
                    UdpSocket::from(sys::bind(&addr, SockKind::Datagram).map_err(bind_err)?);
                let local = listener.local_addr().map_err(start_err)?;
                let engine =
                    UdpProxy::start(listener, routing.clone(), options).map_err(start_err)?;
                (local, Engine::Udp(engine))
            }
        };
        Ok(PortProxy {
            local,
            proto,
            routing,
            engine,
        })
    }

    /// The address actually listened on (the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    pub fn proto(&self) -> Proto {
        self.proto
    }

    /// Where new connections go now.
    pub fn target(&self) -> Target {
        self.routing.current()
    }

    /// Sends every connection accepted from now on to `target`; returns the previous target.
    ///
    /// Atomic: a connection is routed under the same lock, so once this returns no new
    /// connection reaches the old target. Open connections stay on the old target; wait for
    /// them with [`drain`](Self::drain). Those carrying HTTP/1.x end by themselves at their
    /// next request boundary (see [`Protocol`]); the others stay until they end or are cut
    /// ([`cut_connections`](Self::cut_connections)). Fails, leaving the target unchanged, only when the new
    /// target's namespace cannot be entered. No connect is retried across a switch: a swap
    /// switches only to a target it has seen accept ([`probe_tcp`]), so a refused connect means
    /// the target really is down, and the client is told at once.
    pub fn switch(&self, target: Target) -> Result<Target, ProxyError> {
        let route = Route::resolve(target)?;
        Ok(self.routing.switch(route))
    }

    /// Connections (TCP) or flows (UDP) open now to `target`.
    pub fn active_connections(&self, target: &Target) -> usize {
        self.routing.active(Some(target))
    }

    /// Waits until no connection to `target` is open, or `timeout` passes; returns how many
    /// are still open (0: drained). UDP flows end by idling out, or with
    /// [`close_connections`](Self::close_connections).
    pub fn drain(&self, target: &Target, timeout: Duration) -> usize {
        self.routing.wait(Some(target), timeout)
    }

    /// Cuts every open connection to `target` (both sockets shut down); returns how many
    /// there were. What a swap does after its grace period, before stopping the old container.
    pub fn close_connections(&self, target: &Target) -> usize {
        self.cut_connections(target).total()
    }

    /// [`close_connections`](Self::close_connections), telling what the cut connections
    /// carried (WebSocket, plain TCP, an HTTP response still in progress), for the swap's
    /// report.
    pub fn cut_connections(&self, target: &Target) -> Cut {
        self.routing.abort(Some(target))
    }

    pub fn stats(&self) -> ProxyStats {
        self.routing.stats()
    }

    /// Stops listening at once (the port is free when this returns), gives open TCP
    /// connections up to `grace` to finish, then cuts the rest. UDP flows end immediately:
    /// their replies leave through the listening socket, which is gone.
    pub fn close(mut self, grace: Duration) {
        self.shutdown(grace);
    }

    /// Frees the port without touching open connections (closing several ports together).
    pub(crate) fn stop_listening(&mut self) {
        match &mut self.engine {
            Engine::Tcp(tcp) => tcp.stop_listening(),
            Engine::Udp(udp) => udp.close(),
        }
    }

    fn shutdown(&mut self, grace: Duration) {
        match &mut self.engine {
            Engine::Tcp(tcp) => tcp.close(grace),
            Engine::Udp(udp) => udp.close(),
        }
    }
}

impl Drop for PortProxy {
    fn drop(&mut self) {
        self.shutdown(Duration::ZERO);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proto_parses_like_compose() {
        assert_eq!("tcp".parse::<Proto>().unwrap(), Proto::Tcp);
        assert_eq!("UDP".parse::<Proto>().unwrap(), Proto::Udp);
        assert_eq!(
            "sctp".parse::<Proto>().unwrap_err().to_string(),
            "unknown protocol \"sctp\": expected tcp or udp"
        );
    }

    #[test]
    fn protocol_names_as_in_x_berth() {
        assert_eq!("http".parse::<Protocol>().unwrap(), Protocol::Http);
        assert_eq!("TCP".parse::<Protocol>().unwrap(), Protocol::Tcp);
        assert_eq!("auto".parse::<Protocol>().unwrap(), Protocol::Auto);
        assert_eq!(Protocol::default(), Protocol::Auto);
        assert_eq!(Protocol::Http.to_string(), "http");
        assert_eq!(
            "h2".parse::<Protocol>().unwrap_err().to_string(),
            "unknown protocol \"h2\": expected http, tcp or auto"
        );
    }

    #[test]
    fn fd_limit_is_raised_to_the_hard_limit() {
        let (_, hard) = sys::nofile_limit().unwrap();
        // From the usual default, as a supervisor started from a login shell has it.
        sys::set_nofile_soft(hard.min(1024), hard).unwrap();
        let limit = raise_fd_limit().unwrap();
        assert_eq!(limit, FdLimit { soft: hard, hard });
        assert_eq!(sys::nofile_limit().unwrap(), (hard, hard));
    }

    #[test]
    fn targets_display_and_move_namespace() {
        let t = Target::InNetns {
            netns: "/proc/42/ns/net".into(),
            port: 3000,
        };
        assert_eq!(
            t.to_string(),
            "127.0.0.1:3000 in network namespace /proc/42/ns/net"
        );
        assert_eq!(
            t.with_netns("/proc/43/ns/net"),
            Target::InNetns {
                netns: "/proc/43/ns/net".into(),
                port: 3000
            }
        );
        let addr = Target::Addr("127.0.0.1:9".parse().unwrap());
        assert_eq!(addr.with_netns("/x"), addr);
    }
}
