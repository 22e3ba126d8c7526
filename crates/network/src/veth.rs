//! Plugging a container's network namespace into a network: a veth pair,
//! one end on the bridge, the other inside the namespace.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::bridge::{self, short_hash, IFNAME_MAX};
use crate::cmd::{self, CommandError, Tool};
use crate::host;
use crate::netns::{self, NetnsError};
use crate::network::{validate_name, Network, NetworkError};

/// Host-side veth ends start with this (and must not start with "brth", the
/// bridges' firewall wildcard).
pub const VETH_PREFIX: &str = "brv-";

#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("invalid container id `{0}`: use 1-128 characters from [A-Za-z0-9_.-]")]
    InvalidContainerId(String),
    #[error("invalid interface name `{0}`: use 1-15 characters from [A-Za-z0-9_.-], not `lo`")]
    InvalidIfname(String),
    #[error("address {ip} cannot be given to a container on {network} ({subnet})")]
    BadAddress {
        ip: Ipv4Addr,
        network: String,
        subnet: crate::Subnet,
    },
    #[error("network namespace path `{0}` must be absolute")]
    RelativeNetns(PathBuf),
    #[error("network namespace {path} is not usable: {source}")]
    Netns { path: PathBuf, source: NetnsError },
    #[error("bridge `{bridge}` of network `{network}` does not exist; create the network first")]
    NoBridge { network: String, bridge: String },
    // Boxed: these two would otherwise make every Result in the crate large.
    #[error("cannot connect container `{container}` to network `{network}`: {source}")]
    Setup {
        container: String,
        network: String,
        source: Box<CommandError>,
    },
    #[error("cannot disconnect container `{container}` from network `{network}`: {source}")]
    Teardown {
        container: String,
        network: String,
        source: Box<CommandError>,
    },
    #[error(transparent)]
    Network(#[from] NetworkError),
}

/// A container's place on a network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub network: String,
    pub container_id: String,
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
    pub mac: String,
    /// Name inside the container, e.g. `eth0`.
    pub ifname: String,
    /// Name of the end on the bridge, in the host namespace.
    pub host_ifname: String,
    pub netns: PathBuf,
    /// On a network with IPv6: the container's IPv6 address.
    #[serde(default)]
    pub ipv6: Option<std::net::Ipv6Addr>,
    /// compose `link_local_ips`: extra addresses on the interface.
    #[serde(default)]
    pub link_local: Vec<std::net::IpAddr>,
}

/// How to plug in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachOptions {
    /// The interface name inside the container: `eth0` for the first network,
    /// the engine picks `eth1`… for further ones.
    pub ifname: String,
    /// Whether this network carries the container's default route. Exactly
    /// one of a container's networks should (the first non-internal one).
    pub default_route: bool,
    /// compose `ipv6_address`; on a network with IPv6 without it, the
    /// address derived from the IPv4 one (`Networks::attach` decides).
    pub ipv6: Option<std::net::Ipv6Addr>,
    /// compose `link_local_ips`.
    pub link_local: Vec<std::net::IpAddr>,
    /// compose `mac_address` (lower-case, colon-separated); derived from
    /// the IPv4 address when `None` (see [`mac_for`]).
    pub mac: Option<String>,
}

impl Default for AttachOptions {
    fn default() -> AttachOptions {
        AttachOptions {
            ifname: "eth0".to_string(),
            default_route: true,
            ipv6: None,
            link_local: Vec::new(),
            mac: None,
        }
    }
}

/// The host-side veth name for a container on a network: derived from both
/// so that detach, and cleanup after a crash, find it without any state.
pub fn host_ifname(network: &str, container_id: &str) -> String {
    let digits = IFNAME_MAX - VETH_PREFIX.len();
    format!(
        "{VETH_PREFIX}{}",
        short_hash(&[network, container_id], digits)
    )
}

/// The MAC for an address: locally administered (02), a berth marker (b7),
/// then the four address bytes. Like docker's 02:42:…, deriving it from the
/// address means neighbours' ARP caches stay right when an address is reused
/// by a new container.
pub fn mac_for(ip: Ipv4Addr) -> String {
    let [a, b, c, d] = ip.octets();
    format!("02:b7:{a:02x}:{b:02x}:{c:02x}:{d:02x}")
}

/// Connects the network namespace at `netns` (a `/run/netns/…` path from
/// `create_netns`, or `/proc/<pid>/ns/net`) to `network` with address `ip`:
/// a veth pair whose inner end becomes `opts.ifname` with the address, `lo`
/// is brought up, a default route via the gateway is added if asked, and the
/// outer end joins the bridge. On any failure the pair is deleted again, so
/// nothing is left half-made (the namespace itself is the caller's).
pub fn attach(
    network: &Network,
    container_id: &str,
    netns: &Path,
    ip: Ipv4Addr,
    opts: &AttachOptions,
) -> Result<Endpoint, AttachError> {
    validate_name(&network.name)?;
    validate_container_id(container_id)?;
    validate_ifname(&opts.ifname)?;
    if !network.subnet.is_assignable(ip) {
        return Err(AttachError::BadAddress {
            ip,
            network: network.name.clone(),
            subnet: network.subnet,
        });
    }
    // iproute2 reads a `netns` argument without a '/' as a name under
    // /run/netns: only an absolute path is unambiguous.
    if !netns.is_absolute() {
        return Err(AttachError::RelativeNetns(netns.to_path_buf()));
    }
    // Entering the namespace once before creating anything turns a missing
    // or wrong path into a clear error with nothing to undo.
    netns::run_in_netns(netns, || ()).map_err(|source| AttachError::Netns {
        path: netns.to_path_buf(),
        source,
    })?;
    if !host::link_exists(&network.bridge) {
        return Err(AttachError::NoBridge {
            network: network.name.clone(),
            bridge: network.bridge.clone(),
        });
    }
    let host_if = host_ifname(&network.name, container_id);
    let setup_err = |source| AttachError::Setup {
        container: container_id.to_string(),
        network: network.name.clone(),
        source: Box::new(source),
    };
    // A veth of this name can only be a leftover of this very container on
    // this network (the caller's state says it is not attached): replace it.
    bridge::delete_link(&host_if).map_err(setup_err)?;

    let mac = opts.mac.clone().unwrap_or_else(|| mac_for(ip));
    let mtu = network.mtu.to_string();
    let ns_arg = netns.to_string_lossy();
    cmd::run(
        Tool::Ip,
        &[
            "link",
            "add",
            "name",
            &host_if,
            "mtu",
            &mtu,
            "type",
            "veth",
            "peer",
            "name",
            &opts.ifname,
            "mtu",
            &mtu,
            "address",
            &mac,
            "netns",
            &ns_arg,
        ],
        None,
    )
    .map_err(setup_err)?;

    let configured = configure(network, container_id, &host_if, netns, ip, opts);
    if let Err(e) = configured {
        // Deleting one end of a veth pair deletes both.
        let _ = bridge::delete_link(&host_if);
        return Err(e);
    }
    Ok(Endpoint {
        network: network.name.clone(),
        container_id: container_id.to_string(),
        ip,
        prefix_len: network.subnet.prefix_len(),
        gateway: network.gateway,
        mac,
        ifname: opts.ifname.clone(),
        host_ifname: host_if,
        netns: netns.to_path_buf(),
        ipv6: opts.ipv6.filter(|_| network.ipv6.is_some()),
        link_local: opts.link_local.clone(),
    })
}

fn configure(
    network: &Network,
    container_id: &str,
    host_if: &str,
    netns: &Path,
    ip: Ipv4Addr,
    opts: &AttachOptions,
) -> Result<(), AttachError> {
    let setup_err = |source| AttachError::Setup {
        container: container_id.to_string(),
        network: network.name.clone(),
        source: Box::new(source),
    };
    cmd::run(
        Tool::Ip,
        &[
            "link",
            "set",
            "dev",
            host_if,
            "master",
            &network.bridge,
            "up",
        ],
        None,
    )
    .map_err(setup_err)?;

    let ifname = &opts.ifname;
    let ipv6 = network.ipv6.zip(opts.ipv6);
    if ipv6.is_some() || opts.link_local.iter().any(|a| a.is_ipv6()) {
        // The namespace was made with IPv6 off (see `disable_ipv6`): on for
        // it and this interface now, since this network has IPv6.
        let ifname = ifname.clone();
        netns::run_in_netns(netns, move || -> std::io::Result<()> {
            for conf in ["all", "default", "lo", ifname.as_str()] {
                let file = format!("/proc/sys/net/ipv6/conf/{conf}/disable_ipv6");
                std::fs::write(file, "0")?;
            }
            Ok(())
        })
        .map_err(|source| AttachError::Netns {
            path: netns.to_path_buf(),
            source,
        })?
        .map_err(|source| {
            setup_err(CommandError::Spawn {
                command: "sysctl net.ipv6.conf.*.disable_ipv6=0".into(),
                source,
            })
        })?;
    }
    let mut batch = format!(
        "link set dev lo up\naddr add {ip}/{len} brd + dev {ifname}\nlink set dev {ifname} up\n",
        len = network.subnet.prefix_len()
    );
    if opts.default_route {
        batch.push_str(&format!(
            "route add default via {} dev {ifname}\n",
            network.gateway
        ));
    }
    if let Some((subnet, addr)) = ipv6 {
        batch.push_str(&format!(
            "addr add {addr}/{} dev {ifname} nodad\n",
            subnet.prefix_len()
        ));
        if opts.default_route {
            batch.push_str(&format!(
                "route add default via {} dev {ifname}\n",
                subnet.gateway()
            ));
        }
    }
    for addr in &opts.link_local {
        match addr {
            std::net::IpAddr::V4(a) => batch.push_str(&format!("addr add {a}/16 dev {ifname}\n")),
            std::net::IpAddr::V6(a) => {
                batch.push_str(&format!("addr add {a}/64 dev {ifname} nodad\n"))
            }
        }
    }
    // `ip -n` only takes names under /run/netns; running `ip` from a thread
    // inside the namespace works for any path.
    netns::run_in_netns(netns, || cmd::run(Tool::Ip, &["-batch", "-"], Some(&batch)))
        .map_err(|source| AttachError::Netns {
            path: netns.to_path_buf(),
            source,
        })?
        .map_err(setup_err)?;
    Ok(())
}

/// Disconnects a container from a network by deleting the host-side veth
/// (its peer inside the namespace goes with it). Succeeds if it is gone
/// already, e.g. because the container's namespace was destroyed.
pub fn detach(network: &str, container_id: &str) -> Result<(), AttachError> {
    validate_name(network)?;
    validate_container_id(container_id)?;
    bridge::delete_link(&host_ifname(network, container_id)).map_err(|source| {
        AttachError::Teardown {
            container: container_id.to_string(),
            network: network.to_string(),
            source: Box::new(source),
        }
    })
}

fn validate_container_id(id: &str) -> Result<(), AttachError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(AttachError::InvalidContainerId(id.to_string()))
    }
}

fn validate_ifname(name: &str) -> Result<(), AttachError> {
    let ok = !name.is_empty()
        && name.len() <= IFNAME_MAX
        && name != "lo"
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(AttachError::InvalidIfname(name.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_fit_and_differ() {
        let a = host_ifname("p_default", "c1");
        assert_eq!(a.len(), IFNAME_MAX);
        assert!(a.starts_with(VETH_PREFIX) && !a.starts_with("brth"));
        assert_eq!(a, host_ifname("p_default", "c1"));
        assert_ne!(a, host_ifname("p_default", "c2"));
        assert_ne!(a, host_ifname("p_other", "c1"));
    }

    #[test]
    fn mac_follows_address() {
        assert_eq!(mac_for(Ipv4Addr::new(172, 31, 0, 2)), "02:b7:ac:1f:00:02");
    }

    #[test]
    fn bad_input_is_refused_before_touching_anything() {
        let net =
            Network::describe("p_default", "172.31.4.0/24".parse().unwrap(), false, 1500).unwrap();
        let ok_ip = Ipv4Addr::new(172, 31, 4, 2);
        let opts = AttachOptions::default();
        let ns = Path::new("/run/netns/x");
        assert!(matches!(
            attach(&net, "bad id", ns, ok_ip, &opts),
            Err(AttachError::InvalidContainerId(_))
        ));
        assert!(matches!(
            attach(&net, "c", ns, Ipv4Addr::new(172, 31, 4, 1), &opts),
            Err(AttachError::BadAddress { .. })
        ));
        assert!(matches!(
            attach(&net, "c", Path::new("relative"), ok_ip, &opts),
            Err(AttachError::RelativeNetns(_))
        ));
        for bad in ["", "lo", "waytoolonginterface", "e th0", "a/b"] {
            let o = AttachOptions {
                ifname: bad.into(),
                default_route: true,
                ..Default::default()
            };
            assert!(
                matches!(
                    attach(&net, "c", ns, ok_ip, &o),
                    Err(AttachError::InvalidIfname(_))
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            attach(&net, "c", Path::new("/nonexistent/ns"), ok_ip, &opts),
            Err(AttachError::Netns { .. })
        ));
    }
}
