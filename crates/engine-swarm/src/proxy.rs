//! berth's port proxy on a swarm: a global service that holds every
//! published port of the project in host mode on each node and forwards
//! each connection to a task of the service behind it, found through
//! swarm's DNS (`tasks.<service>` on their overlay network: the tasks swarm
//! counts as running, healthy when they have a healthcheck).
//!
//! Why: this kernel has no IPVS, so swarm's routing mesh cannot publish;
//! and a task's host-mode port would stop a new task from starting beside
//! it on its node, which rules out start-first updates. With the ports on
//! the proxy, the service's own tasks publish nothing and roll start-first.
//!
//! Swarm takes a task out of DNS before it stops it; a connection that
//! still races a stopping task (refused) is tried on the next task, and
//! while no task accepts (a rollout's gap, a node lost) the client's
//! connection is held and retried for [`HOLD`] rather than refused.

use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// How long a client's connection waits for some task to accept.
const HOLD: Duration = Duration::from_secs(30);
const RETRY: Duration = Duration::from_millis(50);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// One published port: where the proxy listens and what it forwards to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub listen: u16,
    /// `tasks.<service>` (a DNS name on the overlay network).
    pub host: String,
    pub port: u16,
}

impl std::str::FromStr for Route {
    type Err = String;

    /// `LISTEN:HOST:PORT`.
    fn from_str(s: &str) -> Result<Route, String> {
        let mut parts = s.splitn(3, ':');
        let (Some(l), Some(h), Some(p)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(format!("{s:?}: expected LISTEN:HOST:PORT"));
        };
        Ok(Route {
            listen: l
                .parse()
                .map_err(|_| format!("{s:?}: {l:?} is not a port"))?,
            host: h.to_string(),
            port: p
                .parse()
                .map_err(|_| format!("{s:?}: {p:?} is not a port"))?,
        })
    }
}

impl std::fmt::Display for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.listen, self.host, self.port)
    }
}

/// The tasks behind `route` now, rotated by `turn` so connections spread.
fn backends(route: &Route, turn: usize) -> Vec<SocketAddr> {
    let mut addrs: Vec<SocketAddr> = (route.host.as_str(), route.port)
        .to_socket_addrs()
        .map(|a| a.collect())
        .unwrap_or_default();
    if !addrs.is_empty() {
        let n = turn % addrs.len();
        addrs.rotate_left(n);
    }
    addrs
}

fn connect(route: &Route, turn: usize) -> io::Result<TcpStream> {
    let deadline = Instant::now() + HOLD;
    loop {
        for addr in backends(route, turn) {
            if let Ok(s) = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
                return Ok(s);
            }
        }
        if Instant::now() > deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "no task of {} accepted within {} s",
                    route.host,
                    HOLD.as_secs()
                ),
            ));
        }
        std::thread::sleep(RETRY);
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let _ = io::copy(&mut from, &mut to);
    let _ = to.shutdown(Shutdown::Write);
}

fn serve(route: Route) -> io::Result<()> {
    let listener = TcpListener::bind(("0.0.0.0", route.listen))?;
    let mut turn = 0usize;
    for client in listener.incoming() {
        let Ok(client) = client else { continue };
        turn = turn.wrapping_add(1);
        let route = route.clone();
        std::thread::spawn(move || {
            let Ok(upstream) = connect(&route, turn) else {
                return;
            };
            let (Ok(c2), Ok(u2)) = (client.try_clone(), upstream.try_clone()) else {
                return;
            };
            let back = std::thread::spawn(move || pipe(u2, c2));
            pipe(client, upstream);
            let _ = back.join();
        });
    }
    Ok(())
}

/// Serve `routes` until killed (the proxy service's main).
pub fn run(routes: Vec<Route>) -> io::Result<()> {
    let mut threads = Vec::new();
    for r in routes {
        threads.push(std::thread::spawn(move || serve(r)));
    }
    for t in threads {
        t.join()
            .map_err(|_| io::Error::other("a proxy thread panicked"))??;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_parse_and_print_back() {
        let r: Route = "8080:tasks.app:3000".parse().unwrap();
        assert_eq!(r.to_string(), "8080:tasks.app:3000");
        assert!("8080:tasks.app".parse::<Route>().is_err());
        assert!("x:tasks.app:3000".parse::<Route>().is_err());
    }

    #[test]
    fn a_connection_waits_for_a_backend_that_comes_later() {
        let probe = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = probe.local_addr().unwrap().port();
        drop(probe);
        let route = Route {
            listen: 0,
            host: "127.0.0.1".into(),
            port,
        };
        let late = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            let l = TcpListener::bind(("127.0.0.1", port)).unwrap();
            l.accept().unwrap();
        });
        assert!(connect(&route, 0).is_ok());
        late.join().unwrap();
    }
}
