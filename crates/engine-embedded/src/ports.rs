//! A service's `ports:` as the proxy's [`Publish`] entries.

use berth_compose::model::Port;
use berth_proxy::{Proto, Publish, Target};
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

/// Every published port of `ports`, ranges expanded, forwarding into the
/// namespace at `netns` (or to the host's loopback for `network_mode: host`).
/// Unpublished entries (`"3000"`) are skipped: docker gives those a random
/// host port, which berth does not do yet.
pub fn publishes(ports: &[Port], netns: Option<&Path>) -> Result<Vec<Publish>, String> {
    let mut out = Vec::new();
    for p in ports {
        let Some(published) = &p.published else {
            continue;
        };
        let range = |s: &str| -> Result<u16, String> {
            s.parse::<u16>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("invalid published port {published:?}"))
        };
        let (first, last) = match published.split_once('-') {
            Some((a, b)) => (range(a)?, range(b)?),
            None => (range(published)?, range(published)?),
        };
        if last < first {
            return Err(format!("invalid published port range {published:?}"));
        }
        let host_ip: IpAddr = p
            .host_ip
            .as_deref()
            .unwrap_or("0.0.0.0")
            .parse()
            .map_err(|_| format!("invalid host_ip {:?}", p.host_ip.as_deref().unwrap_or("")))?;
        let proto: Proto = p.protocol.parse().map_err(|e| format!("{e}"))?;
        let target = match netns {
            Some(ns) => Target::InNetns {
                netns: ns.to_path_buf(),
                port: p.target,
            },
            None => Target::Addr((Ipv4Addr::LOCALHOST, p.target).into()),
        };
        for host_port in first..=last {
            out.push(Publish {
                host_ip,
                host_port,
                proto,
                target: target.clone(),
            });
        }
    }
    Ok(out)
}

/// The distinct TCP ports a container listens on for its published ports:
/// what a start-first swap probes before it switches traffic.
pub fn tcp_targets(ports: &[Port]) -> Vec<u16> {
    let mut out: Vec<u16> = ports
        .iter()
        .filter(|p| p.published.is_some() && p.protocol == "tcp")
        .map(|p| p.target)
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(published: Option<&str>, target: u16, protocol: &str) -> Port {
        Port {
            name: None,
            mode: None,
            host_ip: None,
            target,
            published: published.map(str::to_string),
            protocol: protocol.into(),
            extra: Default::default(),
        }
    }

    #[test]
    fn ranges_expand_and_unpublished_are_skipped() {
        let ports = [port(Some("8000-8002"), 80, "tcp"), port(None, 90, "tcp")];
        let p = publishes(&ports, Some(Path::new("/run/netns/x"))).unwrap();
        assert_eq!(
            p.iter().map(|p| p.host_port).collect::<Vec<_>>(),
            [8000, 8001, 8002]
        );
        assert_eq!(tcp_targets(&ports), [80]);
    }

    #[test]
    fn bad_values_are_errors() {
        assert!(publishes(&[port(Some("9-8"), 80, "tcp")], None).is_err());
        assert!(publishes(&[port(Some("x"), 80, "tcp")], None).is_err());
        assert!(publishes(&[port(Some("8"), 80, "sctp-ish")], None).is_err());
    }

    #[test]
    fn udp_is_not_probed() {
        assert!(tcp_targets(&[port(Some("53"), 53, "udp")]).is_empty());
    }
}
