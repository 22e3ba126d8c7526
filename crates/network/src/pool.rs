//! Address allocation: which subnet a new network gets, which address a
//! container gets. Pure functions over what is taken; `networks.rs` supplies
//! the persisted state and the host's routes, under a lock.

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use crate::host::Occupied;
use crate::subnet::{Subnet, SubnetError};

/// 172.31.0.0/16 was free on every machine seen so far, and sits at the far
/// end of 172.16.0.0/12 from Docker's 172.17+ defaults.
pub const DEFAULT_POOL_BASE: &str = "172.31.0.0/16";
/// One /24 per network: 253 containers, and 256 networks in the default pool.
pub const DEFAULT_SUBNET_PREFIX: u8 = 24;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PoolError {
    #[error("invalid address pool `{text}`: {reason} (expected like `172.31.0.0/16` or `base=172.31.0.0/16,size=24`)")]
    Config { text: String, reason: String },
    #[error("address pool {pool} has no free subnet: {in_use} used by berth networks, {host} overlap the host's routes or addresses; remove unused networks or configure a larger pool")]
    Exhausted {
        pool: PoolConfig,
        in_use: usize,
        host: usize,
    },
    #[error("subnet {subnet} overlaps the host's {what}")]
    OverlapsHost { subnet: Subnet, what: String },
    #[error("subnet {subnet} overlaps {other} of berth network `{network}`")]
    InUse {
        subnet: Subnet,
        other: Subnet,
        network: String,
    },
    #[error("subnet {0} is too small for a gateway and a container (use /30 or larger)")]
    TooSmall(Subnet),
    #[error("address {ip} is not in subnet {subnet}")]
    OutsideSubnet { ip: Ipv4Addr, subnet: Subnet },
    #[error("address {ip} is reserved in subnet {subnet} (network, gateway or broadcast address)")]
    Reserved { ip: Ipv4Addr, subnet: Subnet },
    #[error("address {ip} is already used by container `{container}`")]
    AddressInUse { ip: Ipv4Addr, container: String },
    #[error("subnet {0} has no free address left")]
    Full(Subnet),
}

/// Where network subnets come from: `base` carved into subnets of `/size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolConfig {
    base: Subnet,
    size: u8,
}

impl PoolConfig {
    pub fn new(base: Subnet, size: u8) -> Result<PoolConfig, PoolError> {
        let err = |reason: String| PoolError::Config {
            text: format!("base={base},size={size}"),
            reason,
        };
        if size < base.prefix_len() {
            return Err(err(format!(
                "size /{size} is larger than the base /{}",
                base.prefix_len()
            )));
        }
        if size > 30 {
            return Err(err(format!(
                "size /{size} leaves no room for a gateway and a container"
            )));
        }
        Ok(PoolConfig { base, size })
    }

    pub fn base(&self) -> Subnet {
        self.base
    }

    pub fn size(&self) -> u8 {
        self.size
    }

    /// Candidate subnets in the order they are handed out.
    pub fn subnets(&self) -> impl Iterator<Item = Subnet> {
        self.base.split(self.size)
    }
}

impl Default for PoolConfig {
    fn default() -> PoolConfig {
        PoolConfig {
            base: Subnet::constant(Ipv4Addr::new(172, 31, 0, 0), 16),
            size: DEFAULT_SUBNET_PREFIX,
        }
    }
}

impl fmt::Display for PoolConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "base={},size={}", self.base, self.size)
    }
}

/// Accepts `CIDR` (subnets of /24, or the whole base when it is smaller),
/// `CIDR,size=N`, or docker's `default-address-pools` spelling
/// `base=CIDR,size=N`.
impl FromStr for PoolConfig {
    type Err = PoolError;

    fn from_str(text: &str) -> Result<PoolConfig, PoolError> {
        let err = |reason: String| PoolError::Config {
            text: text.to_string(),
            reason,
        };
        let mut base = None;
        let mut size = None;
        for (i, part) in text.split(',').map(str::trim).enumerate() {
            let (key, value) = match part.split_once('=') {
                Some((k, v)) => (k.trim(), v.trim()),
                None if i == 0 => ("base", part),
                None => return Err(err(format!("unexpected `{part}`"))),
            };
            match key {
                "base" if base.is_none() => {
                    base = Some(
                        value
                            .parse::<Subnet>()
                            .map_err(|e: SubnetError| err(e.to_string()))?,
                    )
                }
                "size" if size.is_none() => {
                    let n = value.trim_start_matches('/');
                    size = Some(
                        n.parse::<u8>()
                            .map_err(|_| err(format!("size `{value}` is not a prefix length")))?,
                    )
                }
                _ => return Err(err(format!("unexpected `{part}`"))),
            }
        }
        let base = base.ok_or_else(|| err("no base subnet".to_string()))?;
        let size = size.unwrap_or(DEFAULT_SUBNET_PREFIX.max(base.prefix_len()));
        PoolConfig::new(base, size).map_err(|e| match e {
            PoolError::Config { reason, .. } => err(reason),
            other => other,
        })
    }
}

/// Checks an explicitly requested subnet (compose `ipam.config.subnet`)
/// against the host and other berth networks.
pub fn check_subnet(
    subnet: Subnet,
    in_use: &[(Subnet, &str)],
    host: &[Occupied],
) -> Result<(), PoolError> {
    if subnet.prefix_len() > 30 {
        return Err(PoolError::TooSmall(subnet));
    }
    if let Some((other, network)) = in_use.iter().find(|(s, _)| s.overlaps(&subnet)) {
        return Err(PoolError::InUse {
            subnet,
            other: *other,
            network: network.to_string(),
        });
    }
    if let Some(o) = host.iter().find(|o| o.subnet.overlaps(&subnet)) {
        return Err(PoolError::OverlapsHost {
            subnet,
            what: o.what.clone(),
        });
    }
    Ok(())
}

/// The first subnet of the pool that overlaps neither a berth network nor
/// anything on the host.
pub fn choose_subnet(
    pool: &PoolConfig,
    in_use: &[(Subnet, &str)],
    host: &[Occupied],
) -> Result<Subnet, PoolError> {
    let mut used_by_berth = 0;
    let mut used_by_host = 0;
    for candidate in pool.subnets() {
        match check_subnet(candidate, in_use, host) {
            Ok(()) => return Ok(candidate),
            Err(PoolError::InUse { .. }) => used_by_berth += 1,
            Err(_) => used_by_host += 1,
        }
    }
    Err(PoolError::Exhausted {
        pool: *pool,
        in_use: used_by_berth,
        host: used_by_host,
    })
}

/// A container address: `requested` if it is free and assignable, else the
/// lowest free one from .2 upward. `used` maps taken addresses to the
/// container holding each.
pub fn allocate_address(
    subnet: Subnet,
    used: &BTreeMap<Ipv4Addr, String>,
    requested: Option<Ipv4Addr>,
) -> Result<Ipv4Addr, PoolError> {
    allocate_address_in(subnet, None, used, requested)
}

/// [`allocate_address`], taking a free address from `range` (compose
/// `ip_range`) when none is requested; a requested one may be anywhere in
/// the subnet, as with docker.
pub fn allocate_address_in(
    subnet: Subnet,
    range: Option<Subnet>,
    used: &BTreeMap<Ipv4Addr, String>,
    requested: Option<Ipv4Addr>,
) -> Result<Ipv4Addr, PoolError> {
    if let Some(ip) = requested {
        if !subnet.contains(ip) {
            return Err(PoolError::OutsideSubnet { ip, subnet });
        }
        if !subnet.is_assignable(ip) {
            return Err(PoolError::Reserved { ip, subnet });
        }
        if let Some(container) = used.get(&ip) {
            return Err(PoolError::AddressInUse {
                ip,
                container: container.clone(),
            });
        }
        return Ok(ip);
    }
    // Lowest-free reuse is safe because MACs derive from addresses (veth.rs):
    // neighbours' ARP entries for a reused address stay correct.
    subnet
        .assignable()
        .filter(|ip| range.is_none_or(|r| r.contains(*ip)))
        .find(|ip| !used.contains_key(ip))
        .ok_or(PoolError::Full(range.unwrap_or(subnet)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_limits_what_is_given_and_reserved_addresses_are_skipped() {
        let subnet: Subnet = "10.9.0.0/24".parse().unwrap();
        let range: Subnet = "10.9.0.128/25".parse().unwrap();
        let mut used = BTreeMap::new();
        used.insert(Ipv4Addr::new(10, 9, 0, 128), "aux_addresses".to_string());
        let ip = allocate_address_in(subnet, Some(range), &used, None).unwrap();
        assert_eq!(ip, Ipv4Addr::new(10, 9, 0, 129));
        // Asked for, an address outside the range is fine; a reserved one is not.
        let asked = Ipv4Addr::new(10, 9, 0, 7);
        assert_eq!(
            allocate_address_in(subnet, Some(range), &used, Some(asked)).unwrap(),
            asked
        );
        let reserved = Some(Ipv4Addr::new(10, 9, 0, 128));
        assert!(allocate_address_in(subnet, Some(range), &used, reserved).is_err());
    }

    fn s(t: &str) -> Subnet {
        t.parse().unwrap()
    }

    fn occ(t: &str) -> Occupied {
        Occupied {
            subnet: s(t),
            what: format!("route {t}"),
        }
    }

    #[test]
    fn default_pool() {
        let p = PoolConfig::default();
        assert_eq!(p.to_string(), "base=172.31.0.0/16,size=24");
        assert_eq!(p.subnets().count(), 256);
        assert_eq!(DEFAULT_POOL_BASE.parse::<PoolConfig>().unwrap(), p);
    }

    #[test]
    fn parse_forms() {
        let p: PoolConfig = "base=10.99.0.0/16,size=26".parse().unwrap();
        assert_eq!((p.base(), p.size()), (s("10.99.0.0/16"), 26));
        let p: PoolConfig = "172.31.250.0/24,size=/26".parse().unwrap();
        assert_eq!(p.subnets().count(), 4);
        let p: PoolConfig = "172.31.250.0/25".parse().unwrap();
        assert_eq!(p.size(), 25);
        for bad in [
            "",
            "size=24",
            "172.31.0.0/16,size=8",
            "172.31.0.0/16,size=31",
            "172.31.0.1/16",
            "172.31.0.0/16,colour=red",
            "base=1.0.0.0/8,base=2.0.0.0/8",
            "172.31.0.0/16,size=x",
            "172.31.0.0/16,24",
        ] {
            let e = bad.parse::<PoolConfig>().unwrap_err();
            assert!(matches!(e, PoolError::Config { .. }), "{bad}: {e}");
        }
    }

    #[test]
    fn choose_skips_berth_and_host() {
        let pool: PoolConfig = "172.31.0.0/16".parse().unwrap();
        let in_use = [(s("172.31.0.0/24"), "p_default")];
        let host = [occ("172.31.1.0/25"), occ("10.255.255.53/32")];
        assert_eq!(
            choose_subnet(&pool, &in_use, &host).unwrap(),
            s("172.31.2.0/24")
        );
        // A host route wider than the pool swallows it all.
        let err = choose_subnet(&pool, &in_use, &[occ("172.16.0.0/12")]).unwrap_err();
        assert_eq!(
            err,
            PoolError::Exhausted {
                pool,
                in_use: 1,
                host: 255
            }
        );
        assert!(err.to_string().contains("no free subnet"));
    }

    #[test]
    fn explicit_subnet_checks() {
        let in_use = [(s("172.31.0.0/24"), "p_default")];
        assert!(matches!(
            check_subnet(s("172.31.0.128/25"), &in_use, &[]),
            Err(PoolError::InUse { .. })
        ));
        let e = check_subnet(s("10.255.0.0/16"), &[], &[occ("10.255.255.53/32")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "subnet 10.255.0.0/16 overlaps the host's route 10.255.255.53/32"
        );
        assert_eq!(
            check_subnet(s("10.0.0.0/31"), &[], &[]),
            Err(PoolError::TooSmall(s("10.0.0.0/31")))
        );
        check_subnet(s("172.31.9.0/24"), &in_use, &[]).unwrap();
    }

    #[test]
    fn addresses() {
        let net = s("172.31.7.0/24");
        let mut used = BTreeMap::new();
        let ip = |d| Ipv4Addr::new(172, 31, 7, d);
        assert_eq!(allocate_address(net, &used, None).unwrap(), ip(2));
        used.insert(ip(2), "a".to_string());
        used.insert(ip(4), "b".to_string());
        assert_eq!(allocate_address(net, &used, None).unwrap(), ip(3));
        assert_eq!(allocate_address(net, &used, Some(ip(50))).unwrap(), ip(50));
        assert_eq!(
            allocate_address(net, &used, Some(ip(4))),
            Err(PoolError::AddressInUse {
                ip: ip(4),
                container: "b".into()
            })
        );
        for reserved in [0, 1, 255] {
            assert!(matches!(
                allocate_address(net, &used, Some(ip(reserved))),
                Err(PoolError::Reserved { .. })
            ));
        }
        assert!(matches!(
            allocate_address(net, &used, Some(Ipv4Addr::new(10, 0, 0, 2))),
            Err(PoolError::OutsideSubnet { .. })
        ));
        let tiny = s("10.0.0.0/30");
        let full: BTreeMap<_, _> = [(Ipv4Addr::new(10, 0, 0, 2), "x".to_string())].into();
        assert_eq!(
            allocate_address(tiny, &full, None),
            Err(PoolError::Full(tiny))
        );
    }
}
