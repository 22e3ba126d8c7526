//! All the published ports of one container, bound and switched together.
//!
//! A service's `ports:` (ranges expanded, one entry per host IP, port and protocol) become one
//! [`PortProxy`] each. Binding is all-or-nothing, so a port in use leaves nothing half-made,
//! and a swap moves every port of the service to the new container at once.

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::target::Route;
use crate::{Cut, PortProxy, Proto, Protocol, ProxyError, ProxyOptions, Target};

/// One published port: `host_ip:host_port/proto` forwarding to `target`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Publish {
    pub host_ip: IpAddr,
    pub host_port: u16,
    pub proto: Proto,
    pub target: Target,
}

/// The proxies of one container's published ports.
#[derive(Debug, Default)]
pub struct ProxySet {
    proxies: Vec<PortProxy>,
}

impl ProxySet {
    /// Binds every port, or none: on the first failure the ports already bound are released
    /// and that failure is returned.
    pub fn bind(
        publishes: impl IntoIterator<Item = Publish>,
        options: &ProxyOptions,
    ) -> Result<ProxySet, ProxyError> {
        let mut proxies = Vec::new();
        for p in publishes {
            // On error, `proxies` is dropped here, closing what was bound.
            proxies.push(PortProxy::bind_with(
                p.host_ip,
                p.host_port,
                p.proto,
                p.target,
                options,
            )?);
        }
        Ok(ProxySet { proxies })
    }

    /// [`bind`](Self::bind) with each port's own protocol (`x-berth: {protocol: http|tcp}`),
    /// in place of `options.protocol`.
    pub fn bind_each(
        publishes: impl IntoIterator<Item = (Publish, Protocol)>,
        options: &ProxyOptions,
    ) -> Result<ProxySet, ProxyError> {
        let mut proxies = Vec::new();
        for (p, protocol) in publishes {
            let options = ProxyOptions {
                protocol,
                ..options.clone()
            };
            proxies.push(PortProxy::bind_with(
                p.host_ip,
                p.host_port,
                p.proto,
                p.target,
                &options,
            )?);
        }
        Ok(ProxySet { proxies })
    }

    pub fn proxies(&self) -> &[PortProxy] {
        &self.proxies
    }

    /// Moves every namespace target to the same port inside `netns` (the new container);
    /// returns the previous targets, in order, for [`drain`](Self::drain). All or nothing:
    /// the namespace is entered before any proxy switches.
    pub fn switch_netns(&self, netns: &Path) -> Result<Vec<Target>, ProxyError> {
        let routes = self
            .proxies
            .iter()
            .map(|p| Route::resolve(p.target().with_netns(netns)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(self
            .proxies
            .iter()
            .zip(routes)
            .map(|(proxy, route)| proxy.routing.switch(route))
            .collect())
    }

    /// Waits, up to `timeout` in total, until no proxy has a connection open to any of `old`;
    /// returns how many are still open.
    pub fn drain(&self, old: &[Target], timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        let mut open = 0;
        for proxy in &self.proxies {
            for target in distinct(old) {
                let left = deadline.saturating_duration_since(Instant::now());
                open += proxy.drain(target, left);
            }
        }
        open
    }

    /// Cuts the connections still open to any of `old`; returns how many there were.
    pub fn close_connections(&self, old: &[Target]) -> usize {
        self.cut_connections(old).total()
    }

    /// [`close_connections`](Self::close_connections), telling what the cut connections
    /// carried: what a swap reports after its grace period ("2 connections still open
    /// (1 websocket/upgraded, 1 tcp)").
    pub fn cut_connections(&self, old: &[Target]) -> Cut {
        let mut cut = Cut::default();
        for proxy in &self.proxies {
            for target in distinct(old) {
                cut += proxy.cut_connections(target);
            }
        }
        cut
    }

    /// Frees every port at once, then gives open connections up to `grace` in total.
    pub fn close(mut self, grace: Duration) {
        let deadline = Instant::now() + grace;
        for proxy in &mut self.proxies {
            proxy.stop_listening();
        }
        for proxy in self.proxies.drain(..) {
            proxy.close(deadline.saturating_duration_since(Instant::now()));
        }
    }
}

/// Each target once: two ports publishing the same container port (on two host addresses,
/// say) give the same old target twice, and its connections must not be counted twice.
fn distinct(targets: &[Target]) -> impl Iterator<Item = &Target> {
    targets
        .iter()
        .enumerate()
        .filter(|(i, t)| !targets[..*i].contains(t))
        .map(|(_, t)| t)
}
