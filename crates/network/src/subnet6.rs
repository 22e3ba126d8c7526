//! IPv6 subnets of networks that enable IPv6 (compose `enable_ipv6`): a
//! subnet from `ipam.config`, or a unique local one (`fd00::/8`, RFC 4193)
//! derived from the network's name. Containers take the subnet's prefix and
//! the host part of their IPv4 address (`172.31.0.3` → `…::3`), so two
//! containers of a network never derive the same address.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::bridge::short_hash;
use crate::cmd::{self, Tool};
use crate::subnet::Subnet;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Subnet6 {
    network: Ipv6Addr,
    prefix_len: u8,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Subnet6Error {
    #[error("`{0}` is not an IPv6 subnet in CIDR form (like fd42:1::/64)")]
    Syntax(String),
    #[error("prefix length {0} is out of range 1..=120 (a network needs room for its containers)")]
    PrefixLength(u32),
    #[error("`{0}` has host bits set")]
    HostBitsSet(String),
    #[error("{subnet} overlaps {what}")]
    Overlaps { subnet: Subnet6, what: String },
    #[error("{address} is not an address of {subnet} a container can have")]
    NotAssignable { address: Ipv6Addr, subnet: Subnet6 },
    #[error("{address} is taken by container {container}")]
    Taken {
        address: Ipv6Addr,
        container: String,
    },
}

fn mask(prefix_len: u8) -> u128 {
    if prefix_len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(prefix_len))
    }
}

impl Subnet6 {
    pub fn new(network: Ipv6Addr, prefix_len: u8) -> Result<Subnet6, Subnet6Error> {
        if !(1..=120).contains(&prefix_len) {
            return Err(Subnet6Error::PrefixLength(prefix_len.into()));
        }
        if network.to_bits() & !mask(prefix_len) != 0 {
            return Err(Subnet6Error::HostBitsSet(format!("{network}/{prefix_len}")));
        }
        Ok(Subnet6 {
            network,
            prefix_len,
        })
    }

    /// `fdXX:XXXX:XXXX::/64`: a unique local /64 whose global ID (40 bits)
    /// comes from a hash of `name`, so a network keeps its subnet across
    /// runs and two networks almost never share one.
    pub fn unique_local(name: &str) -> Subnet6 {
        let hex = short_hash(&["berth-ipv6", name], 10);
        let id = u128::from_str_radix(&hex, 16).unwrap_or(0);
        Subnet6 {
            network: Ipv6Addr::from_bits((0xfd_u128 << 120) | (id << 80)),
            prefix_len: 64,
        }
    }

    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// The bridge's own address: the first after the network's.
    pub fn gateway(&self) -> Ipv6Addr {
        Ipv6Addr::from_bits(self.network.to_bits() + 1)
    }

    pub fn contains(&self, addr: Ipv6Addr) -> bool {
        addr.to_bits() & mask(self.prefix_len) == self.network.to_bits()
    }

    pub fn overlaps(&self, other: &Subnet6) -> bool {
        let shorter = self.prefix_len.min(other.prefix_len);
        self.network.to_bits() & mask(shorter) == other.network.to_bits() & mask(shorter)
    }

    /// Whether a container may have `addr`: inside, and neither the
    /// network's nor the gateway's address.
    pub fn is_assignable(&self, addr: Ipv6Addr) -> bool {
        self.contains(addr) && addr != self.network && addr != self.gateway()
    }

    /// The address of the container that has `v4` on the network's IPv4
    /// subnet: this prefix and that host part.
    pub fn derived(&self, v4: Ipv4Addr, subnet: Subnet) -> Ipv6Addr {
        let host_mask = u32::MAX
            .checked_shr(u32::from(subnet.prefix_len()))
            .unwrap_or(0);
        let host = u128::from(u32::from(v4) & host_mask);
        Ipv6Addr::from_bits(self.network.to_bits() | (host & !mask(self.prefix_len)))
    }
}

impl fmt::Display for Subnet6 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}

impl FromStr for Subnet6 {
    type Err = Subnet6Error;

    fn from_str(s: &str) -> Result<Subnet6, Subnet6Error> {
        let syntax = || Subnet6Error::Syntax(s.to_string());
        let (addr, len) = s.split_once('/').ok_or_else(syntax)?;
        let addr: Ipv6Addr = addr.parse().map_err(|_| syntax())?;
        let len: u8 = len.parse().map_err(|_| syntax())?;
        Subnet6::new(addr, len)
    }
}

impl Serialize for Subnet6 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Subnet6 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Subnet6, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[derive(Deserialize)]
struct RouteJson {
    dst: String,
}

/// Refuses a subnet that overlaps a route of the host (its own addresses'
/// prefixes included) other than the default route.
pub(crate) fn check_host(subnet: Subnet6) -> Result<(), crate::Error> {
    let json = cmd::run(
        Tool::Ip,
        &["-j", "-6", "route", "show", "table", "all"],
        None,
    )
    .map_err(crate::host::HostError::from)?;
    let routes: Vec<RouteJson> =
        serde_json::from_str(if json.trim().is_empty() { "[]" } else { &json }).unwrap_or_default();
    for r in routes {
        let dst = if r.dst.contains('/') {
            r.dst.clone()
        } else {
            format!("{}/128", r.dst)
        };
        let Some((addr, len)) = dst.split_once('/') else {
            continue;
        };
        let (Ok(addr), Ok(len)) = (addr.parse::<Ipv6Addr>(), len.parse::<u8>()) else {
            continue;
        };
        // Multicast and link-local routes exist on every interface.
        if len == 0
            || addr.segments()[0] & 0xff00 == 0xff00
            || addr.segments()[0] & 0xffc0 == 0xfe80
        {
            continue;
        }
        let other = Subnet6 {
            network: Ipv6Addr::from_bits(addr.to_bits() & mask(len)),
            prefix_len: len.max(1),
        };
        if other.overlaps(&subnet) {
            return Err(crate::Error::Subnet6(Subnet6Error::Overlaps {
                subnet,
                what: format!("the host's route {}", r.dst),
            }));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_derive_and_overlap() {
        let s: Subnet6 = "fd42:b3:1::/64".parse().unwrap();
        assert_eq!(s.gateway(), "fd42:b3:1::1".parse::<Ipv6Addr>().unwrap());
        let v4: Subnet = "172.31.5.0/24".parse().unwrap();
        assert_eq!(
            s.derived("172.31.5.3".parse().unwrap(), v4),
            "fd42:b3:1::3".parse::<Ipv6Addr>().unwrap()
        );
        assert!(s.is_assignable("fd42:b3:1::99".parse().unwrap()));
        assert!(!s.is_assignable("fd42:b3:1::1".parse().unwrap()));
        assert!(!s.is_assignable("fd42:b3:2::9".parse().unwrap()));
        assert!(s.overlaps(&"fd42:b3::/32".parse().unwrap()));
        assert!(!s.overlaps(&"fd42:b3::/48".parse().unwrap()));
        assert!(!s.overlaps(&"fd00::/64".parse().unwrap()));
        assert!("fd42::1/64".parse::<Subnet6>().is_err());
        assert!("fd42::/128".parse::<Subnet6>().is_err());
        assert!("10.0.0.0/8".parse::<Subnet6>().is_err());
        let u = Subnet6::unique_local("p_default");
        assert_eq!(u, Subnet6::unique_local("p_default"));
        assert_ne!(u, Subnet6::unique_local("p_other"));
        assert_eq!(u.to_string().get(..2), Some("fd"));
        assert_eq!(u.prefix_len(), 64);
    }
}
