//! The current target of one proxy, and the bookkeeping that makes switching it safe.
//!
//! Every relayed connection (TCP) or flow (UDP) holds a [`Lease`] on the target it was routed
//! to, taken under the same lock that [`Routing::switch`] takes. So once `switch` returns, no
//! lease on the old target can be taken any more, and the per-target count of leases is
//! exactly what a swap must wait for before stopping the old container.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::target::{Route, Target};

/// Something that can cut a relayed connection short from another thread.
pub(crate) trait Abort: Send + Sync {
    fn abort(&self);
}

/// Counters of one proxy since it was bound.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Connections accepted (TCP) or flows opened (UDP).
    pub accepted: u64,
    /// Connections or flows that could not reach their target; the client was closed at once
    /// (TCP) or its datagram dropped (UDP).
    pub connect_errors: u64,
    /// Connections or flows open now, whatever their target.
    pub active: usize,
    /// The most recent connect failure, for logs ("127.0.0.1:3000 in network namespace …:
    /// Connection refused").
    pub last_connect_error: Option<String>,
}

/// What a relayed connection carries, as far as the proxy has seen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Plain TCP, UDP, or nothing recognisable yet.
    #[default]
    Tcp,
    /// HTTP/1.x: it ends by itself at a request boundary once its target is switched away.
    Http,
    /// HTTP upgraded to another protocol (WebSocket) or a CONNECT tunnel.
    Upgraded,
}

/// The connections cut at the end of a drain, by what they carried: what a swap reports
/// ("2 connections still open at the grace period were closed: 1 websocket, 1 tcp").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cut {
    /// HTTP connections with a response still in progress (a long download or a stream).
    pub http: usize,
    /// Upgraded connections: WebSocket, or another protocol after `Upgrade`, or CONNECT.
    pub upgraded: usize,
    /// Plain TCP connections (and UDP flows).
    pub tcp: usize,
}

impl Cut {
    pub fn total(&self) -> usize {
        self.http + self.upgraded + self.tcp
    }

    fn add(&mut self, kind: Kind) {
        match kind {
            Kind::Tcp => self.tcp += 1,
            Kind::Http => self.http += 1,
            Kind::Upgraded => self.upgraded += 1,
        }
    }
}

impl std::ops::AddAssign for Cut {
    fn add_assign(&mut self, other: Cut) {
        self.http += other.http;
        self.upgraded += other.upgraded;
        self.tcp += other.tcp;
    }
}

impl std::fmt::Display for Cut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let total = self.total();
        write!(
            f,
            "{total} connection{} still open",
            if total == 1 { "" } else { "s" }
        )?;
        let parts: Vec<String> = [
            (self.upgraded, "websocket/upgraded"),
            (self.tcp, "tcp"),
            (self.http, "http response in progress"),
        ]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
        if !parts.is_empty() {
            write!(f, " ({})", parts.join(", "))?;
        }
        Ok(())
    }
}

struct Entry {
    target: Target,
    abort: Option<Arc<dyn Abort>>,
    aborted: bool,
    kind: Kind,
}

struct State {
    current: Arc<Route>,
    active: HashMap<Target, usize>,
    conns: HashMap<u64, Entry>,
    next_id: u64,
    closing: bool,
    last_connect_error: Option<String>,
}

pub(crate) struct Routing {
    state: Mutex<State>,
    /// Notified whenever a lease ends, for `wait`.
    released: Condvar,
    accepted: AtomicU64,
    connect_errors: AtomicU64,
}

impl Routing {
    pub(crate) fn new(route: Route) -> Arc<Routing> {
        Arc::new(Routing {
            state: Mutex::new(State {
                current: Arc::new(route),
                active: HashMap::new(),
                conns: HashMap::new(),
                next_id: 0,
                closing: false,
                last_connect_error: None,
            }),
            released: Condvar::new(),
            accepted: AtomicU64::new(0),
            connect_errors: AtomicU64::new(0),
        })
    }

    /// A poisoned lock only means some thread panicked mid-update of plain counters; the
    /// proxy keeps serving rather than propagating the panic into every connection.
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Routes a new connection to the current target, or `None` once the proxy is closing.
    pub(crate) fn lease(self: &Arc<Self>) -> Option<Lease> {
        let mut state = self.state();
        if state.closing {
            return None;
        }
        let route = state.current.clone();
        let id = state.next_id;
        state.next_id += 1;
        *state.active.entry(route.target.clone()).or_insert(0) += 1;
        state.conns.insert(
            id,
            Entry {
                target: route.target.clone(),
                abort: None,
                aborted: false,
                kind: Kind::Tcp,
            },
        );
        drop(state);
        self.accepted.fetch_add(1, Ordering::Relaxed);
        Some(Lease {
            routing: self.clone(),
            id,
            route,
        })
    }

    pub(crate) fn current(&self) -> Target {
        self.state().current.target.clone()
    }

    /// Makes `route` the target of every connection leased from now on; returns the old one.
    /// The old target's HTTP connections are told to end at their next request boundary.
    pub(crate) fn switch(&self, route: Route) -> Target {
        let mut state = self.state();
        let old = std::mem::replace(&mut state.current, Arc::new(route));
        drop(state);
        old.drain.signal();
        // Dropped outside the lock: the last reference to a namespace target joins its helper.
        old.target.clone()
    }

    pub(crate) fn active(&self, target: Option<&Target>) -> usize {
        let state = self.state();
        match target {
            Some(t) => state.active.get(t).copied().unwrap_or(0),
            None => state.conns.len(),
        }
    }

    /// Waits until no lease on `target` (any target for `None`) is left, or `timeout` passes.
    /// Returns how many are still open.
    pub(crate) fn wait(&self, target: Option<&Target>, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        let count = |state: &State| match target {
            Some(t) => state.active.get(t).copied().unwrap_or(0),
            None => state.conns.len(),
        };
        let mut state = self.state();
        loop {
            let open = count(&state);
            let now = Instant::now();
            if open == 0 || now >= deadline {
                return open;
            }
            state = self
                .released
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Cuts every connection to `target` (all for `None`) short. Returns what was open.
    pub(crate) fn abort(&self, target: Option<&Target>) -> Cut {
        let mut to_abort = Vec::new();
        let mut cut = Cut::default();
        {
            let mut state = self.state();
            for entry in state.conns.values_mut() {
                if target.is_some_and(|t| *t != entry.target) {
                    continue;
                }
                cut.add(entry.kind);
                entry.aborted = true;
                if let Some(abort) = &entry.abort {
                    to_abort.push(abort.clone());
                }
            }
        }
        // Outside the lock: an abort may make a relay thread finish and drop its lease.
        for abort in to_abort {
            abort.abort();
        }
        cut
    }

    /// Refuses new leases from now on, and tells HTTP connections to end at their next
    /// request boundary.
    pub(crate) fn close(&self) {
        let mut state = self.state();
        state.closing = true;
        state.current.drain.signal();
    }

    pub(crate) fn connect_failed(&self, target: &Target, err: &std::io::Error) {
        self.connect_errors.fetch_add(1, Ordering::Relaxed);
        self.state().last_connect_error = Some(format!("{target}: {err}"));
    }

    pub(crate) fn stats(&self) -> ProxyStats {
        let state = self.state();
        ProxyStats {
            accepted: self.accepted.load(Ordering::Relaxed),
            connect_errors: self.connect_errors.load(Ordering::Relaxed),
            active: state.conns.len(),
            last_connect_error: state.last_connect_error.clone(),
        }
    }
}

/// One connection's claim on the target it was routed to; ends when dropped.
pub(crate) struct Lease {
    routing: Arc<Routing>,
    id: u64,
    route: Arc<Route>,
}

impl Lease {
    pub(crate) fn route(&self) -> &Route {
        &self.route
    }

    pub(crate) fn routing(&self) -> &Routing {
        &self.routing
    }

    /// Records what the connection turned out to carry, for [`Cut`].
    pub(crate) fn set_kind(&self, kind: Kind) {
        if let Some(entry) = self.routing.state().conns.get_mut(&self.id) {
            entry.kind = kind;
        }
    }

    /// Registers how to cut this connection short. If an abort for its target already came
    /// (while it was still connecting), it is applied at once.
    pub(crate) fn set_abort(&self, abort: Arc<dyn Abort>) {
        let already = {
            let mut state = self.routing.state();
            match state.conns.get_mut(&self.id) {
                Some(entry) if entry.aborted => true,
                Some(entry) => {
                    entry.abort = Some(abort.clone());
                    false
                }
                None => false,
            }
        };
        if already {
            abort.abort();
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut state = self.routing.state();
        if let Some(entry) = state.conns.remove(&self.id) {
            if let Some(n) = state.active.get_mut(&entry.target) {
                *n -= 1;
                if *n == 0 {
                    state.active.remove(&entry.target);
                }
            }
        }
        drop(state);
        self.routing.released.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use std::sync::atomic::AtomicUsize;

    fn target(port: u16) -> Target {
        Target::Addr(SocketAddr::from(([127, 0, 0, 1], port)))
    }

    fn routing(port: u16) -> Arc<Routing> {
        Routing::new(Route::resolve(target(port)).unwrap())
    }

    struct Counted(AtomicUsize);

    impl Abort for Counted {
        fn abort(&self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn leases_follow_the_current_target() {
        let r = routing(1);
        let a = r.lease().unwrap();
        assert_eq!(a.route().target, target(1));
        assert_eq!(r.switch(Route::resolve(target(2)).unwrap()), target(1));
        let b = r.lease().unwrap();
        assert_eq!(b.route().target, target(2));
        assert_eq!(
            (r.active(Some(&target(1))), r.active(Some(&target(2)))),
            (1, 1)
        );
        assert_eq!(r.active(None), 2);
        drop(a);
        assert_eq!(r.active(Some(&target(1))), 0);
        assert_eq!(r.stats().accepted, 2);
    }

    #[test]
    fn wait_returns_when_the_last_lease_ends() {
        let r = routing(1);
        let lease = r.lease().unwrap();
        assert_eq!(r.wait(Some(&target(1)), Duration::from_millis(20)), 1);
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            drop(lease);
        });
        let start = Instant::now();
        assert_eq!(r.wait(Some(&target(1)), Duration::from_secs(5)), 0);
        assert!(start.elapsed() < Duration::from_secs(4));
        releaser.join().unwrap();
        // Another target is never waited for.
        let _other = r.lease().unwrap();
        assert_eq!(r.wait(Some(&target(9)), Duration::from_secs(5)), 0);
    }

    #[test]
    fn abort_reaches_registered_and_late_connections() {
        let r = routing(1);
        let registered = r.lease().unwrap();
        let late = r.lease().unwrap();
        let hits = Arc::new(Counted(AtomicUsize::new(0)));
        registered.set_abort(hits.clone());
        late.set_kind(Kind::Upgraded);
        assert_eq!(r.abort(Some(&target(2))).total(), 0);
        let cut = r.abort(Some(&target(1)));
        assert_eq!((cut.total(), cut.upgraded, cut.tcp), (2, 1, 1));
        assert_eq!(
            cut.to_string(),
            "2 connections still open (1 websocket/upgraded, 1 tcp)"
        );
        assert_eq!(hits.0.load(Ordering::SeqCst), 1);
        // A connection that registers after the abort (it was still connecting) is cut at once.
        late.set_abort(hits.clone());
        assert_eq!(hits.0.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn closing_refuses_new_leases() {
        let r = routing(1);
        r.close();
        assert!(r.lease().is_none());
    }
}
