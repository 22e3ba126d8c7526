//! A project network in the kernel: bridge + gateway address + firewall rules.
//!
//! These functions know nothing of the pool or the state file; `networks.rs`
//! decides the subnet and records the result.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::bridge::{self, BridgeError};
use crate::firewall::{self, FirewallError};
use crate::host;
use crate::subnet::Subnet;

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("invalid network name `{0}`: use 1-200 characters from [A-Za-z0-9_.-], starting with a letter or digit")]
    InvalidName(String),
    #[error("subnet {0} is too small for a gateway and a container (use /30 or larger)")]
    SubnetTooSmall(Subnet),
    #[error("cannot enable IPv4 forwarding ({path}): {source}")]
    Forwarding {
        path: &'static str,
        source: std::io::Error,
    },
    #[error(transparent)]
    Bridge(#[from] BridgeError),
    #[error(transparent)]
    Firewall(#[from] FirewallError),
}

/// A network as berth made it. Serialised into the state file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    /// berth's full name for it, e.g. `myproject_default`.
    pub name: String,
    pub bridge: String,
    pub subnet: Subnet,
    pub gateway: Ipv4Addr,
    /// No route out: no MASQUERADE, outbound dropped (compose `internal: true`).
    pub internal: bool,
    /// Given to the bridge and every veth on it.
    pub mtu: u32,
    /// Outbound traffic leaves with the host's address (compose driver
    /// option `com.docker.network.bridge.enable_ip_masquerade`); without it
    /// it is forwarded with the container's own address.
    #[serde(default = "yes")]
    pub masquerade: bool,
    /// Containers on the bridge reach each other
    /// (`com.docker.network.bridge.enable_icc`).
    #[serde(default = "yes")]
    pub icc: bool,
    /// compose `enable_ipv6`: the bridge's IPv6 subnet (its gateway is the
    /// subnet's first address). Containers get IPv6 only on such networks.
    #[serde(default)]
    pub ipv6: Option<crate::subnet6::Subnet6>,
    /// compose `ipam.config[].ip_range`: where addresses are taken from
    /// when none is asked for.
    #[serde(default)]
    pub ip_range: Option<Subnet>,
    /// compose `ipam.config[].aux_addresses`: addresses never given out.
    #[serde(default)]
    pub aux_addresses: Vec<Ipv4Addr>,
}

fn yes() -> bool {
    true
}

const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

impl Network {
    /// Describes a network without touching the kernel: checks the name and
    /// derives the bridge name and gateway.
    pub fn describe(
        name: &str,
        subnet: Subnet,
        internal: bool,
        mtu: u32,
    ) -> Result<Network, NetworkError> {
        validate_name(name)?;
        if subnet.prefix_len() > 30 {
            return Err(NetworkError::SubnetTooSmall(subnet));
        }
        Ok(Network {
            name: name.to_string(),
            bridge: bridge::bridge_name(name),
            subnet,
            gateway: subnet.gateway(),
            internal,
            mtu,
            masquerade: true,
            icc: true,
            ipv6: None,
            ip_range: None,
            aux_addresses: Vec::new(),
        })
    }

    /// Makes the network: the bridge `brth-<hash>` with the gateway address,
    /// up; IPv4 forwarding on; firewall rules in place. The MTU follows the
    /// host's uplink (see `host::uplink_mtu`). Fails without leaving anything
    /// behind if the bridge already exists or any step fails.
    pub fn create(name: &str, subnet: Subnet, internal: bool) -> Result<Network, NetworkError> {
        let network = Network::describe(name, subnet, internal, host::uplink_mtu())?;
        network.install()?;
        Ok(network)
    }

    /// Makes this described network in the kernel (see [`Network::create`]).
    pub fn install(&self) -> Result<(), NetworkError> {
        enable_forwarding()?;
        bridge::create(&self.bridge, self.subnet, self.mtu)?;
        if let Some(v6) = self.ipv6 {
            if let Err(e) = bridge::add_ipv6(&self.bridge, v6) {
                let _ = bridge::remove(&self.bridge);
                return Err(e.into());
            }
        }
        if let Err(e) = firewall::install(self) {
            let _ = bridge::remove(&self.bridge);
            return Err(e.into());
        }
        Ok(())
    }

    /// Whether the bridge (up, with the gateway address) and all of its
    /// firewall rules are in place.
    pub fn is_installed(&self) -> Result<bool, NetworkError> {
        Ok(bridge::is_configured(&self.bridge, self.subnet) && firewall::is_installed(self)?)
    }

    /// Brings the network back to what [`Network::install`] makes after a
    /// crash, a reboot or someone flushing the firewall. An existing bridge is
    /// kept, with the containers plugged into it; only what is missing is
    /// redone.
    pub fn repair(&self) -> Result<(), NetworkError> {
        if !host::link_exists(&self.bridge) {
            return self.install();
        }
        enable_forwarding()?;
        bridge::ensure_configured(&self.bridge, self.subnet)?;
        if let Some(v6) = self.ipv6 {
            bridge::add_ipv6(&self.bridge, v6)?;
        }
        firewall::install(self)?;
        Ok(())
    }

    /// Removes the network's rules and bridge (see [`Network::remove_by_name`]),
    /// also when the bridge has a name of its own.
    pub fn remove(&self) -> Result<(), NetworkError> {
        Network::remove_by_name(&self.name)?;
        bridge::remove(&self.bridge)?;
        Ok(())
    }

    /// Removes whatever exists of network `name`: its firewall rules (found by
    /// comment), its bridge (found by its derived name) with any berth veth
    /// still plugged in, and the shared chain if no network needs it any more.
    /// Needs no state, so it also cleans up after a crash, and it succeeds when
    /// there is nothing left to remove.
    pub fn remove_by_name(name: &str) -> Result<(), NetworkError> {
        validate_name(name)?;
        // Rules first: with the bridge gone first, a crash in between would
        // leave rules naming an interface that no longer exists.
        firewall::uninstall(name)?;
        bridge::remove(&bridge::bridge_name(name))?;
        Ok(())
    }
}

/// Forwarding is host-wide and Docker needs it too, so it is switched on
/// when needed and never switched back off.
fn enable_forwarding() -> Result<(), NetworkError> {
    if std::fs::read_to_string(IP_FORWARD)
        .map(|v| v.trim() == "1")
        .unwrap_or(false)
    {
        return Ok(());
    }
    std::fs::write(IP_FORWARD, "1").map_err(|source| NetworkError::Forwarding {
        path: IP_FORWARD,
        source,
    })
}

/// Network names go into interface-name hashes, iptables comments and state
/// keys; restricting them keeps every one of those unambiguous and unquoted.
pub(crate) fn validate_name(name: &str) -> Result<(), NetworkError> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(NetworkError::InvalidName(name.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_derives_bridge_and_gateway() {
        let n =
            Network::describe("p_default", "172.31.0.0/24".parse().unwrap(), false, 1400).unwrap();
        assert_eq!(n.gateway, Ipv4Addr::new(172, 31, 0, 1));
        assert_eq!(n.bridge, bridge::bridge_name("p_default"));
        assert!(Network::describe("p", "10.0.0.0/31".parse().unwrap(), false, 1500).is_err());
    }

    #[test]
    fn names_are_checked() {
        for bad in ["", "_x", "-x", "a b", "a/b", "a\"b", "ä", &"n".repeat(201)] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
        validate_name("my-project_default.v2").unwrap();
    }
}
