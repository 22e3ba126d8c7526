//! IPv4 CIDR arithmetic: the one value type every other module speaks.
//!
//! Written here rather than pulled from a crate because berth needs only a
//! handful of operations and wants its own error messages for user input.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An IPv4 network: address with all host bits zero, and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subnet {
    network: Ipv4Addr,
    prefix_len: u8,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SubnetError {
    #[error("`{0}` is not an IPv4 subnet in CIDR form (like 172.31.0.0/24)")]
    Syntax(String),
    #[error("prefix length {0} is out of range 0..=32")]
    PrefixLength(u32),
    #[error("`{given}` has host bits set; did you mean {suggested}?")]
    HostBitsSet { given: String, suggested: Subnet },
}

impl Subnet {
    /// Builds a subnet, refusing an address with host bits set so that a typo
    /// like `172.31.1.5/16` is reported instead of silently meaning `172.31.0.0/16`.
    pub fn new(network: Ipv4Addr, prefix_len: u8) -> Result<Subnet, SubnetError> {
        if prefix_len > 32 {
            return Err(SubnetError::PrefixLength(prefix_len.into()));
        }
        let masked = Ipv4Addr::from(u32::from(network) & mask(prefix_len));
        if masked != network {
            return Err(SubnetError::HostBitsSet {
                given: format!("{network}/{prefix_len}"),
                suggested: Subnet {
                    network: masked,
                    prefix_len,
                },
            });
        }
        Ok(Subnet {
            network,
            prefix_len,
        })
    }

    /// For constants in berth's own code: host bits and prefix are masked
    /// rather than checked, so it cannot fail.
    pub(crate) const fn constant(network: Ipv4Addr, prefix_len: u8) -> Subnet {
        let prefix_len = if prefix_len > 32 { 32 } else { prefix_len };
        let mask = if prefix_len == 0 {
            0
        } else {
            u32::MAX << (32 - prefix_len as u32)
        };
        Subnet {
            network: Ipv4Addr::from_bits(network.to_bits() & mask),
            prefix_len,
        }
    }

    /// The subnet that contains `addr` at this prefix length (host bits dropped).
    pub fn containing(addr: Ipv4Addr, prefix_len: u8) -> Result<Subnet, SubnetError> {
        if prefix_len > 32 {
            return Err(SubnetError::PrefixLength(prefix_len.into()));
        }
        Ok(Subnet {
            network: Ipv4Addr::from(u32::from(addr) & mask(prefix_len)),
            prefix_len,
        })
    }

    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) | !mask(self.prefix_len))
    }

    /// The bridge's own address: the first host address, as docker does.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network).wrapping_add(1))
    }

    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        u32::from(addr) & mask(self.prefix_len) == u32::from(self.network)
    }

    pub fn overlaps(&self, other: &Subnet) -> bool {
        let shorter = self.prefix_len.min(other.prefix_len);
        u32::from(self.network) & mask(shorter) == u32::from(other.network) & mask(shorter)
    }

    /// Number of addresses in the subnet, as u64 so /0 does not overflow.
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix_len))
    }

    /// Whether `addr` may be given to a container: inside, and neither the
    /// network address, the gateway nor the broadcast address.
    pub fn is_assignable(&self, addr: Ipv4Addr) -> bool {
        self.contains(addr)
            && addr != self.network
            && addr != self.gateway()
            && addr != self.broadcast()
    }

    /// Container addresses in allocation order: .2 upward, broadcast excluded.
    pub fn assignable(&self) -> impl Iterator<Item = Ipv4Addr> {
        let first = u64::from(u32::from(self.network)) + 2;
        let last = u64::from(u32::from(self.broadcast()));
        // `last` is at most u32::MAX, so every value in range converts back.
        (first..last).filter_map(|n| u32::try_from(n).ok().map(Ipv4Addr::from))
    }

    /// The consecutive subnets of `prefix_len` inside this one, in address order.
    /// Empty when `prefix_len` is shorter than this subnet's own prefix.
    pub fn split(&self, prefix_len: u8) -> impl Iterator<Item = Subnet> {
        let (count, step) = if prefix_len >= self.prefix_len && prefix_len <= 32 {
            (
                1u64 << u32::from(prefix_len - self.prefix_len),
                1u64 << (32 - u32::from(prefix_len)),
            )
        } else {
            (0, 0)
        };
        let base = u64::from(u32::from(self.network));
        (0..count).filter_map(move |i| {
            let net = u32::try_from(base + i * step).ok()?;
            Some(Subnet {
                network: Ipv4Addr::from(net),
                prefix_len,
            })
        })
    }
}

fn mask(prefix_len: u8) -> u32 {
    if prefix_len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix_len.min(32)))
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}

impl FromStr for Subnet {
    type Err = SubnetError;

    fn from_str(s: &str) -> Result<Subnet, SubnetError> {
        let (addr, len) = s
            .trim()
            .split_once('/')
            .ok_or_else(|| SubnetError::Syntax(s.to_string()))?;
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| SubnetError::Syntax(s.to_string()))?;
        let len: u32 = len
            .parse()
            .map_err(|_| SubnetError::Syntax(s.to_string()))?;
        let len = u8::try_from(len)
            .ok()
            .filter(|l| *l <= 32)
            .ok_or(SubnetError::PrefixLength(len))?;
        Subnet::new(addr, len)
    }
}

// State files and `ip -j` output carry subnets as "a.b.c.d/n" strings; keep
// the on-disk form human-readable and identical to what users type.
impl Serialize for Subnet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Subnet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Subnet, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str) -> Subnet {
        text.parse().unwrap()
    }

    #[test]
    fn parses_and_displays() {
        assert_eq!(s("172.31.0.0/24").to_string(), "172.31.0.0/24");
        assert_eq!(s("0.0.0.0/0").size(), 1 << 32);
        assert!(matches!(
            "172.31.1.5/16".parse::<Subnet>(),
            Err(SubnetError::HostBitsSet { .. })
        ));
        assert!("172.31.0.0".parse::<Subnet>().is_err());
        assert!("172.31.0.0/33".parse::<Subnet>().is_err());
        assert!("172.31.0.0/x".parse::<Subnet>().is_err());
        assert!("300.1.0.0/8".parse::<Subnet>().is_err());
        assert!("".parse::<Subnet>().is_err());
    }

    #[test]
    fn gateway_broadcast_and_assignable() {
        let n = s("172.31.5.0/24");
        assert_eq!(n.gateway(), Ipv4Addr::new(172, 31, 5, 1));
        assert_eq!(n.broadcast(), Ipv4Addr::new(172, 31, 5, 255));
        let all: Vec<_> = n.assignable().collect();
        assert_eq!(all.len(), 253);
        assert_eq!(all[0], Ipv4Addr::new(172, 31, 5, 2));
        assert_eq!(all[252], Ipv4Addr::new(172, 31, 5, 254));
        assert!(!n.is_assignable(n.gateway()));
        assert!(!n.is_assignable(n.broadcast()));
        assert!(!n.is_assignable(n.network()));
        assert!(!n.is_assignable(Ipv4Addr::new(172, 31, 6, 2)));
        assert_eq!(s("10.0.0.0/30").assignable().count(), 1);
        assert_eq!(s("10.0.0.0/31").assignable().count(), 0);
        assert_eq!(s("255.255.255.0/24").assignable().count(), 253);
    }

    #[test]
    fn overlap_and_split() {
        assert!(s("172.31.0.0/16").overlaps(&s("172.31.7.0/24")));
        assert!(s("172.31.7.0/24").overlaps(&s("172.31.0.0/16")));
        assert!(!s("172.31.7.0/24").overlaps(&s("172.31.8.0/24")));
        assert!(s("0.0.0.0/0").overlaps(&s("1.2.3.4/32")));
        let parts: Vec<_> = s("172.31.0.0/16").split(24).collect();
        assert_eq!(parts.len(), 256);
        assert_eq!(parts[255], s("172.31.255.0/24"));
        assert_eq!(s("172.31.0.0/24").split(16).count(), 0);
        assert_eq!(s("0.0.0.0/0").split(1).count(), 2);
        assert_eq!(
            Subnet::containing(Ipv4Addr::new(10, 255, 255, 53), 32).unwrap(),
            s("10.255.255.53/32")
        );
    }

    #[test]
    fn serde_round_trip() {
        let json = serde_json::to_string(&s("172.31.9.0/24")).unwrap();
        assert_eq!(json, "\"172.31.9.0/24\"");
        assert_eq!(
            serde_json::from_str::<Subnet>(&json).unwrap(),
            s("172.31.9.0/24")
        );
        assert!(serde_json::from_str::<Subnet>("\"nope\"").is_err());
    }
}
