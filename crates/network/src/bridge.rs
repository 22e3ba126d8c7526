//! The Linux bridge behind a network.

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::cmd::{self, CommandError, Tool};
use crate::host;
use crate::subnet::Subnet;
use crate::veth::VETH_PREFIX;

/// Every berth bridge starts with this, so one firewall rule (`brth+`) can
/// name them all and `ip link` shows at a glance which bridges are berth's.
pub const BRIDGE_PREFIX: &str = "brth-";

/// Interface names are at most 15 bytes (IFNAMSIZ - 1).
pub(crate) const IFNAME_MAX: usize = 15;

/// The bridge of network `network`: the prefix and 10 hex digits of a hash of
/// the name, so the same network always gets the same bridge (cleanup after a
/// crash can find it without any state) and any name fits in 15 bytes.
pub fn bridge_name(network: &str) -> String {
    format!("{BRIDGE_PREFIX}{}", short_hash(&[network], 10))
}

/// Hex digits of SHA-256 over `parts`, each ended by a NUL so that ("ab","c")
/// and ("a","bc") differ.
pub(crate) fn short_hash(parts: &[&str], digits: usize) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0u8]);
    }
    let digest = hasher.finalize();
    let mut hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    hex.truncate(digits);
    hex
}

/// Whether `name` can be a bridge's interface name that berth's firewall
/// rules and `ip` take verbatim (compose's `com.docker.network.bridge.name`).
pub(crate) fn check_name(name: &str) -> Result<(), BridgeError> {
    let ok = !name.is_empty()
        && name.len() <= IFNAME_MAX
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        // iptables' wildcard character, and berth's veth and bridge names.
        && !name.starts_with(crate::veth::VETH_PREFIX)
        && !name.starts_with(BRIDGE_PREFIX);
    if ok {
        Ok(())
    } else {
        Err(BridgeError::BadName(name.to_string()))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error("`{0}` cannot be a bridge name: use up to 15 characters from [A-Za-z0-9_.-], not starting with berth's own prefixes")]
    BadName(String),
    #[error("network interface `{0}` already exists; if it is left over from an earlier berth run, remove the network first")]
    Exists(String),
    #[error("cannot create bridge `{bridge}`: {source}")]
    Create {
        bridge: String,
        source: CommandError,
    },
    #[error("cannot remove bridge `{bridge}`: {source}")]
    Remove {
        bridge: String,
        source: CommandError,
    },
}

/// Creates the bridge with the subnet's gateway address and brings it up.
/// On failure nothing is left: a half-configured bridge is deleted again.
pub(crate) fn create(bridge: &str, subnet: Subnet, mtu: u32) -> Result<(), BridgeError> {
    if host::link_exists(bridge) {
        return Err(BridgeError::Exists(bridge.to_string()));
    }
    let mtu = mtu.to_string();
    cmd::run(
        Tool::Ip,
        &["link", "add", "name", bridge, "mtu", &mtu, "type", "bridge"],
        None,
    )
    .map_err(|source| {
        if source.stderr().contains("File exists") {
            BridgeError::Exists(bridge.to_string())
        } else {
            BridgeError::Create {
                bridge: bridge.to_string(),
                source,
            }
        }
    })?;
    let gateway = format!("{}/{}", subnet.gateway(), subnet.prefix_len());
    let batch = format!("addr add {gateway} brd + dev {bridge}\nlink set dev {bridge} up\n");
    if let Err(source) = cmd::run(Tool::Ip, &["-batch", "-"], Some(&batch)) {
        // Best effort: the creation error is the one worth reporting.
        let _ = delete_link(bridge);
        return Err(BridgeError::Create {
            bridge: bridge.to_string(),
            source,
        });
    }
    Ok(())
}

/// Gives the bridge its IPv6 gateway address (IPv6 switched on for it, no
/// duplicate address detection: the address is berth's to give), if it
/// has not got it yet.
pub(crate) fn add_ipv6(bridge: &str, subnet: crate::subnet6::Subnet6) -> Result<(), BridgeError> {
    let err = |source| BridgeError::Create {
        bridge: bridge.to_string(),
        source,
    };
    let sysctl = format!("/proc/sys/net/ipv6/conf/{bridge}/disable_ipv6");
    if std::fs::read_to_string(&sysctl).is_ok_and(|v| v.trim() != "0") {
        let _ = std::fs::write(&sysctl, "0");
    }
    let gateway = format!("{}/{}", subnet.gateway(), subnet.prefix_len());
    cmd::run(
        Tool::Ip,
        &["-6", "addr", "replace", &gateway, "dev", bridge, "nodad"],
        None,
    )
    .map(|_| ())
    .map_err(err)
}

/// Gives an existing bridge its gateway address and brings it up, without
/// touching the ports (containers) on it. For repairing a bridge that a crash
/// left half-configured.
pub(crate) fn ensure_configured(bridge: &str, subnet: Subnet) -> Result<(), BridgeError> {
    let gateway = format!("{}/{}", subnet.gateway(), subnet.prefix_len());
    // `replace` rather than `add`: it succeeds when the address is there.
    let batch = format!("addr replace {gateway} brd + dev {bridge}\nlink set dev {bridge} up\n");
    cmd::run(Tool::Ip, &["-batch", "-"], Some(&batch))
        .map(|_| ())
        .map_err(|source| BridgeError::Create {
            bridge: bridge.to_string(),
            source,
        })
}

#[derive(Deserialize)]
struct AddrLinkJson {
    #[serde(default)]
    flags: Vec<String>,
    #[serde(default)]
    addr_info: Vec<AddrJson>,
}

#[derive(Deserialize)]
struct AddrJson {
    #[serde(default)]
    local: Option<String>,
    #[serde(default)]
    prefixlen: Option<u8>,
}

/// Whether the bridge exists, is up, and has the gateway address.
pub(crate) fn is_configured(bridge: &str, subnet: Subnet) -> bool {
    if !host::link_exists(bridge) {
        return false;
    }
    let Ok(json) = cmd::run(Tool::Ip, &["-j", "-4", "addr", "show", "dev", bridge], None) else {
        return false;
    };
    let gateway = subnet.gateway().to_string();
    serde_json::from_str::<Vec<AddrLinkJson>>(&json)
        .map(|links| {
            links.iter().any(|l| {
                l.flags.iter().any(|f| f == "UP")
                    && l.addr_info.iter().any(|a| {
                        a.local.as_deref() == Some(gateway.as_str())
                            && a.prefixlen == Some(subnet.prefix_len())
                    })
            })
        })
        .unwrap_or(false)
}

/// Deletes the bridge and any berth veth still plugged into it (left by a
/// container whose detach never ran). Succeeds if it is already gone.
pub(crate) fn remove(bridge: &str) -> Result<(), BridgeError> {
    let err = |source| BridgeError::Remove {
        bridge: bridge.to_string(),
        source,
    };
    for port in ports(bridge) {
        if port.starts_with(VETH_PREFIX) {
            delete_link(&port).map_err(err)?;
        }
    }
    delete_link(bridge).map_err(err)
}

#[derive(Deserialize)]
struct PortJson {
    ifname: String,
}

/// Names of the interfaces enslaved to `bridge`; empty if it does not exist.
pub(crate) fn ports(bridge: &str) -> Vec<String> {
    if !host::link_exists(bridge) {
        return Vec::new();
    }
    let Ok(json) = cmd::run(Tool::Ip, &["-j", "link", "show", "master", bridge], None) else {
        return Vec::new();
    };
    let json = if json.trim().is_empty() { "[]" } else { &json };
    serde_json::from_str::<Vec<PortJson>>(json)
        .map(|v| v.into_iter().map(|p| p.ifname).collect())
        .unwrap_or_default()
}

/// `ip link del`, treating "no such device" as success so that removal can
/// be repeated after a crash.
pub(crate) fn delete_link(name: &str) -> Result<(), CommandError> {
    if !host::link_exists(name) {
        return Ok(());
    }
    match cmd::run(Tool::Ip, &["link", "delete", "dev", name], None) {
        Ok(_) => Ok(()),
        Err(e) if !host::link_exists(name) || is_missing_device(&e) => Ok(()),
        Err(e) => Err(e),
    }
}

pub(crate) fn is_missing_device(e: &CommandError) -> bool {
    let s = e.stderr();
    s.contains("Cannot find device") || s.contains("does not exist")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stable_and_short() {
        let a = bridge_name("myproject_default");
        assert_eq!(a, bridge_name("myproject_default"));
        assert_ne!(a, bridge_name("myproject_backend"));
        assert!(a.starts_with("brth-") && a.len() == IFNAME_MAX, "{a}");
        assert!(a[5..].bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(short_hash(&["ab", "c"], 12), short_hash(&["a", "bc"], 12));
    }
}
