//! What the host's own networking already occupies, and its uplink MTU.
//!
//! Read through `ip -j` (JSON output, iproute2 ≥ 4.14) instead of
//! /proc/net/route, because the latter shows only the main table: routes in
//! other tables (VPNs, policy routing) and addresses without a prefix route
//! would be missed, and a berth subnet on top of them would break the host.

use std::net::Ipv4Addr;
use std::path::Path;

use serde::Deserialize;

use crate::cmd::{self, CommandError, Tool};
use crate::resolv;
use crate::subnet::Subnet;

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error("cannot understand the output of `{command}`: {source}")]
    Parse {
        command: &'static str,
        source: serde_json::Error,
    },
}

/// A piece of address space the host uses, with a description for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Occupied {
    pub subnet: Subnet,
    pub what: String,
}

#[derive(Deserialize)]
struct RouteJson {
    dst: String,
    #[serde(default)]
    dev: Option<String>,
    #[serde(default)]
    table: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

#[derive(Deserialize)]
struct LinkJson {
    ifname: String,
    #[serde(default)]
    addr_info: Vec<AddrJson>,
}

#[derive(Deserialize)]
struct AddrJson {
    #[serde(default)]
    family: Option<String>,
    #[serde(default)]
    local: Option<String>,
    #[serde(default)]
    prefixlen: Option<u8>,
}

/// Every IPv4 route (all tables), every address with its subnet, and the
/// nameservers containers will be pointed at: a berth subnet covering the
/// host's resolver (10.255.255.53 on the machines seen so far) would cut
/// containers off from DNS.
pub fn occupied() -> Result<Vec<Occupied>, HostError> {
    let routes = cmd::run(
        Tool::Ip,
        &["-j", "-4", "route", "show", "table", "all"],
        None,
    )?;
    let links = cmd::run(Tool::Ip, &["-j", "-4", "addr", "show"], None)?;
    let mut out = parse_routes(&routes)?;
    out.extend(parse_addresses(&links)?);
    if let Ok(conf) = resolv::ResolvConf::for_containers() {
        for ns in conf.nameservers {
            if let std::net::IpAddr::V4(v4) = ns {
                out.extend(Subnet::containing(v4, 32).ok().map(|subnet| Occupied {
                    subnet,
                    what: format!("nameserver {v4}"),
                }));
            }
        }
    }
    Ok(out)
}

fn parse_routes(json: &str) -> Result<Vec<Occupied>, HostError> {
    let routes: Vec<RouteJson> = parse_json(json, "ip -j -4 route show table all")?;
    Ok(routes
        .into_iter()
        .filter_map(|r| {
            // The default route overlaps everything by definition; docker skips it too.
            let subnet = parse_dst(&r.dst).filter(|s| s.prefix_len() > 0)?;
            let mut what = match r.kind.as_deref() {
                Some(kind) if kind != "unicast" => format!("{kind} route {}", r.dst),
                _ => format!("route {}", r.dst),
            };
            if let Some(dev) = r.dev {
                what.push_str(&format!(" dev {dev}"));
            }
            if let Some(table) = r.table {
                what.push_str(&format!(" table {table}"));
            }
            Some(Occupied { subnet, what })
        })
        .collect())
}

fn parse_dst(dst: &str) -> Option<Subnet> {
    match dst.split_once('/') {
        Some((addr, len)) => Subnet::containing(addr.parse().ok()?, len.parse().ok()?).ok(),
        None => Subnet::containing(dst.parse().ok()?, 32).ok(),
    }
}

fn parse_addresses(json: &str) -> Result<Vec<Occupied>, HostError> {
    let links: Vec<LinkJson> = parse_json(json, "ip -j -4 addr show")?;
    let mut out = Vec::new();
    for link in links {
        for addr in link.addr_info {
            if addr.family.as_deref() != Some("inet") {
                continue;
            }
            let Some(local) = addr.local.and_then(|l| l.parse::<Ipv4Addr>().ok()) else {
                continue;
            };
            let len = addr.prefixlen.unwrap_or(32);
            let what = format!("address {local}/{len} on {}", link.ifname);
            // Both the address itself and its on-link subnet, in case the
            // address was added with `noprefixroute` and has no route.
            for l in [32, len] {
                if let Ok(subnet) = Subnet::containing(local, l) {
                    out.push(Occupied {
                        subnet,
                        what: what.clone(),
                    });
                }
            }
        }
    }
    Ok(out)
}

fn parse_json<T: serde::de::DeserializeOwned>(
    text: &str,
    command: &'static str,
) -> Result<T, HostError> {
    // Older iproute2 prints nothing at all for an empty list.
    let text = if text.trim().is_empty() { "[]" } else { text };
    serde_json::from_str(text).map_err(|source| HostError::Parse { command, source })
}

/// The MTU to give bridges and veths: that of the interface carrying the
/// default route (1400 on this VM's eth0), capped at 1500. Docker uses 1500
/// regardless, which relies on path-MTU discovery working through NAT; matching
/// the uplink avoids that dependency. 1500 when there is no default route.
pub fn uplink_mtu() -> u32 {
    let json = match cmd::run(Tool::Ip, &["-j", "-4", "route", "show", "default"], None) {
        Ok(json) => json,
        Err(_) => return DEFAULT_MTU,
    };
    let Ok(routes) = parse_json::<Vec<RouteJson>>(&json, "ip -j route show default") else {
        return DEFAULT_MTU;
    };
    routes
        .iter()
        .filter_map(|r| r.dev.as_deref())
        .filter_map(device_mtu)
        .min()
        .map(clamp_mtu)
        .unwrap_or(DEFAULT_MTU)
}

pub(crate) const DEFAULT_MTU: u32 = 1500;

fn clamp_mtu(mtu: u32) -> u32 {
    // IPv4 needs at least 576; below that (or above Ethernet's 1500, which a
    // jumbo-frame uplink would give) the standard value is safer.
    if (576..=DEFAULT_MTU).contains(&mtu) {
        mtu
    } else {
        DEFAULT_MTU
    }
}

fn device_mtu(dev: &str) -> Option<u32> {
    if dev.contains('/') || dev.starts_with('.') {
        return None;
    }
    std::fs::read_to_string(Path::new("/sys/class/net").join(dev).join("mtu"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Whether a network interface of this name exists in the caller's namespace.
pub(crate) fn link_exists(name: &str) -> bool {
    !name.contains('/') && Path::new("/sys/class/net").join(name).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTES: &str = r#"[{"dst":"default","gateway":"192.0.2.1","dev":"eth0","flags":[]},
      {"dst":"172.17.0.0/16","dev":"docker0","protocol":"kernel","scope":"link","prefsrc":"172.17.0.1","flags":["linkdown"]},
      {"type":"local","dst":"172.17.0.1","dev":"docker0","table":"local","protocol":"kernel","scope":"host","flags":[]},
      {"type":"blackhole","dst":"172.31.3.0/24","flags":[]},
      {"dst":"0.0.0.0/0","dev":"tun0","table":"vpn","flags":[]},
      {"dst":"garbage","flags":[]}]"#;

    #[test]
    fn routes_skip_default_and_keep_other_tables() {
        let occ = parse_routes(ROUTES).unwrap();
        let subnets: Vec<String> = occ.iter().map(|o| o.subnet.to_string()).collect();
        assert_eq!(subnets, ["172.17.0.0/16", "172.17.0.1/32", "172.31.3.0/24"]);
        assert_eq!(occ[0].what, "route 172.17.0.0/16 dev docker0");
        assert_eq!(
            occ[1].what,
            "local route 172.17.0.1 dev docker0 table local"
        );
        assert_eq!(occ[2].what, "blackhole route 172.31.3.0/24");
    }

    #[test]
    fn addresses_give_host_and_subnet() {
        let json = r#"[{"ifindex":4,"ifname":"eth0","mtu":1400,"addr_info":[
            {"family":"inet","local":"192.0.2.2","prefixlen":24},
            {"family":"inet6","local":"fe80::1","prefixlen":64}]}]"#;
        let occ = parse_addresses(json).unwrap();
        let subnets: Vec<String> = occ.iter().map(|o| o.subnet.to_string()).collect();
        assert_eq!(subnets, ["192.0.2.2/32", "192.0.2.0/24"]);
        assert_eq!(occ[0].what, "address 192.0.2.2/24 on eth0");
    }

    #[test]
    fn empty_and_bad_output() {
        assert!(parse_routes("").unwrap().is_empty());
        assert!(matches!(parse_routes("{"), Err(HostError::Parse { .. })));
    }

    #[test]
    fn mtu_is_clamped() {
        assert_eq!(clamp_mtu(1400), 1400);
        assert_eq!(clamp_mtu(9000), 1500);
        assert_eq!(clamp_mtu(100), 1500);
    }
}
