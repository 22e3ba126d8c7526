//! The engine's entry point: networks and endpoints made in the kernel *and*
//! recorded in the state directory, with subnets and addresses from the pool.
//!
//! Every change is recorded before the kernel work it reserves (a subnet, an
//! address) and undone if that work fails, so after a crash the state lists
//! everything that might exist, and `remove`/`detach` (which find kernel
//! objects by derived names, not by state) clean it up.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use crate::host;
use crate::network::Network;
use crate::pool::{self, PoolConfig};
use crate::state::{NetworkRecord, StateStore};
use crate::subnet::Subnet;
use crate::veth::{self, AttachOptions, Endpoint};
use crate::Error;

/// Settings of a network to create.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkOptions {
    /// compose `internal: true`: no outbound access.
    pub internal: bool,
    /// compose `ipam.config[].subnet`; from the pool when `None`.
    pub subnet: Option<Subnet>,
    /// The bridge driver's options (compose `driver_opts`).
    pub bridge: BridgeOptions,
    /// compose `enable_ipv6`: `Some` with the subnet from `ipam.config`, or
    /// `Some(None)` for a unique local one derived from the name.
    pub ipv6: Option<Option<crate::subnet6::Subnet6>>,
    /// compose `ipam.config[].ip_range` (inside `subnet`).
    pub ip_range: Option<Subnet>,
    /// compose `ipam.config[].aux_addresses` (inside `subnet`).
    pub aux_addresses: Vec<Ipv4Addr>,
}

/// What compose's bridge `driver_opts` may ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeOptions {
    /// `com.docker.network.bridge.name`: the bridge's interface name,
    /// instead of `brth-<hash>`.
    pub name: Option<String>,
    /// `com.docker.network.bridge.enable_ip_masquerade`.
    pub masquerade: bool,
    /// `com.docker.network.bridge.enable_icc`.
    pub icc: bool,
    /// `com.docker.network.driver.mtu`; the host uplink's when `None`.
    pub mtu: Option<u32>,
}

impl Default for BridgeOptions {
    fn default() -> Self {
        BridgeOptions {
            name: None,
            masquerade: true,
            icc: true,
            mtu: None,
        }
    }
}

/// berth's networks on this host, as seen through one state directory.
#[derive(Debug, Clone)]
pub struct Networks {
    store: StateStore,
    pool: PoolConfig,
}

impl Networks {
    /// Uses `state_dir` (created on first use) for the record of networks and
    /// endpoints, and `pool` for new subnets. Touches nothing yet.
    pub fn open(state_dir: impl Into<PathBuf>, pool: PoolConfig) -> Networks {
        Networks {
            store: StateStore::new(state_dir),
            pool,
        }
    }

    pub fn pool(&self) -> &PoolConfig {
        &self.pool
    }

    pub fn state_dir(&self) -> &Path {
        self.store.dir()
    }

    /// Creates network `name`, or returns it if it already exists with the
    /// same settings (rebuilding its bridge and rules if a crash or a reboot
    /// took them). A new subnet never overlaps another berth network, a
    /// host route or address, or the host's nameservers.
    pub fn create(&self, name: &str, opts: &NetworkOptions) -> Result<Network, Error> {
        let mut locked = self.store.lock()?;
        if let Some(rec) = locked.state.networks.get(name) {
            let existing = rec.network.clone();
            let wanted = &opts.bridge;
            if existing.internal != opts.internal
                || opts.subnet.is_some_and(|s| s != existing.subnet)
                || wanted.name.as_ref().is_some_and(|b| *b != existing.bridge)
                || wanted.mtu.is_some_and(|m| m != existing.mtu)
                || wanted.masquerade != existing.masquerade
                || wanted.icc != existing.icc
                || opts.ipv6.is_some() != existing.ipv6.is_some()
                || opts
                    .ipv6
                    .flatten()
                    .is_some_and(|s| Some(s) != existing.ipv6)
                || opts.ip_range != existing.ip_range
                || opts.aux_addresses != existing.aux_addresses
            {
                return Err(Error::Conflict {
                    name: name.to_string(),
                    existing: format!(
                        "subnet {}, internal {}, bridge {}, mtu {}, masquerade {}, icc {}, ipv6 {}",
                        existing.subnet,
                        existing.internal,
                        existing.bridge,
                        existing.mtu,
                        existing.masquerade,
                        existing.icc,
                        existing
                            .ipv6
                            .map(|s| s.to_string())
                            .unwrap_or_else(|| "off".into())
                    ),
                });
            }
            if rec.ready && existing.is_installed()? {
                return Ok(existing);
            }
            // Half-made by an interrupted create, gone after a reboot, or its
            // rules flushed: redo what is missing, on the same subnet.
            existing.repair()?;
            if let Some(rec) = locked.state.networks.get_mut(name) {
                rec.ready = true;
            }
            locked.save()?;
            return Ok(existing);
        }

        let occupied = host::occupied()?;
        let in_use = locked.state.subnets();
        let subnet = match opts.subnet {
            Some(subnet) => {
                pool::check_subnet(subnet, &in_use, &occupied)?;
                subnet
            }
            None => pool::choose_subnet(&self.pool, &in_use, &occupied)?,
        };
        let mut network = Network::describe(
            name,
            subnet,
            opts.internal,
            opts.bridge.mtu.unwrap_or_else(host::uplink_mtu),
        )?;
        if let Some(bridge) = &opts.bridge.name {
            crate::bridge::check_name(bridge).map_err(crate::NetworkError::from)?;
            network.bridge = bridge.clone();
        }
        network.masquerade = opts.bridge.masquerade;
        network.icc = opts.bridge.icc;
        if let Some(range) = opts.ip_range {
            if !(subnet.contains(range.network()) && range.prefix_len() >= subnet.prefix_len()) {
                return Err(pool::PoolError::OutsideSubnet {
                    ip: range.network(),
                    subnet,
                }
                .into());
            }
        }
        if let Some(&ip) = opts.aux_addresses.iter().find(|a| !subnet.contains(**a)) {
            return Err(pool::PoolError::OutsideSubnet { ip, subnet }.into());
        }
        network.ip_range = opts.ip_range;
        network.aux_addresses = opts.aux_addresses.clone();
        if let Some(given) = opts.ipv6 {
            let v6 = given.unwrap_or_else(|| crate::subnet6::Subnet6::unique_local(name));
            crate::subnet6::check_host(v6)?;
            if let Some(other) = locked
                .state
                .networks
                .values()
                .find(|r| r.network.ipv6.is_some_and(|o| o.overlaps(&v6)))
            {
                return Err(crate::subnet6::Subnet6Error::Overlaps {
                    subnet: v6,
                    what: format!("network {}", other.network.name),
                }
                .into());
            }
            network.ipv6 = Some(v6);
        }
        locked.state.networks.insert(
            name.to_string(),
            NetworkRecord {
                network: network.clone(),
                ready: false,
                endpoints: BTreeMap::new(),
            },
        );
        locked.save()?;
        if let Err(e) = network.install() {
            locked.state.networks.remove(name);
            // The install error is the one to report; should this save fail
            // too, the record stays `ready: false` and the next create repairs.
            let _ = locked.save();
            return Err(e.into());
        }
        if let Some(rec) = locked.state.networks.get_mut(name) {
            rec.ready = true;
        }
        locked.save()?;
        Ok(network)
    }

    /// Removes network `name`: rules, bridge, record. Refuses while containers
    /// are attached. Removing a network that does not exist succeeds, and
    /// also clears kernel leftovers of a network the state no longer knows.
    pub fn remove(&self, name: &str) -> Result<(), Error> {
        let mut locked = self.store.lock()?;
        if let Some(rec) = locked.state.networks.get(name) {
            if !rec.endpoints.is_empty() {
                return Err(Error::InUse {
                    network: name.to_string(),
                    containers: rec.endpoints.keys().cloned().collect::<Vec<_>>().join(", "),
                });
            }
        }
        match locked.state.networks.get(name) {
            // A bridge named by the user is found through the record.
            Some(rec) => rec.network.remove()?,
            None => Network::remove_by_name(name)?,
        }
        if locked.state.networks.remove(name).is_some() {
            locked.save()?;
        }
        Ok(())
    }

    pub fn get(&self, name: &str) -> Result<Option<Network>, Error> {
        let locked = self.store.lock()?;
        Ok(locked.state.networks.get(name).map(|r| r.network.clone()))
    }

    pub fn list(&self) -> Result<Vec<Network>, Error> {
        let locked = self.store.lock()?;
        Ok(locked
            .state
            .networks
            .values()
            .map(|r| r.network.clone())
            .collect())
    }

    /// The containers on network `name`, by container id.
    pub fn endpoints(&self, name: &str) -> Result<Vec<Endpoint>, Error> {
        let locked = self.store.lock()?;
        let rec = locked
            .state
            .networks
            .get(name)
            .ok_or_else(|| Error::NotFound(name.to_string()))?;
        Ok(rec.endpoints.values().cloned().collect())
    }

    /// Connects a container's network namespace to network `name` with the
    /// requested address (compose `ipv4_address`) or the lowest free one.
    pub fn attach(
        &self,
        name: &str,
        container_id: &str,
        netns: &Path,
        ipv4_address: Option<Ipv4Addr>,
        opts: &AttachOptions,
    ) -> Result<Endpoint, Error> {
        // The lock is held only to reserve and to confirm, not across the
        // kernel work, so many containers can be attached in parallel.
        let (network, ip, opts) = {
            let mut locked = self.store.lock()?;
            let rec = locked
                .state
                .networks
                .get_mut(name)
                .ok_or_else(|| Error::NotFound(name.to_string()))?;
            if !rec.ready {
                return Err(Error::NotReady(name.to_string()));
            }
            if rec.endpoints.contains_key(container_id) {
                return Err(Error::AlreadyAttached {
                    container: container_id.to_string(),
                    network: name.to_string(),
                });
            }
            let mut used: BTreeMap<Ipv4Addr, String> = rec
                .endpoints
                .values()
                .map(|e| (e.ip, e.container_id.clone()))
                .collect();
            for &aux in &rec.network.aux_addresses {
                used.insert(aux, "aux_addresses".to_string());
            }
            let ip = pool::allocate_address_in(
                rec.network.subnet,
                rec.network.ip_range,
                &used,
                ipv4_address,
            )?;
            let network = rec.network.clone();
            let mut opts = opts.clone();
            opts.ipv6 = match network.ipv6 {
                Some(v6) => {
                    let addr = opts.ipv6.unwrap_or_else(|| v6.derived(ip, network.subnet));
                    if !v6.is_assignable(addr) {
                        return Err(crate::subnet6::Subnet6Error::NotAssignable {
                            address: addr,
                            subnet: v6,
                        }
                        .into());
                    }
                    if let Some(e) = rec.endpoints.values().find(|e| e.ipv6 == Some(addr)) {
                        return Err(crate::subnet6::Subnet6Error::Taken {
                            address: addr,
                            container: e.container_id.clone(),
                        }
                        .into());
                    }
                    Some(addr)
                }
                None => None,
            };
            if let Some(mac) = &opts.mac {
                if let Some(e) = rec.endpoints.values().find(|e| &e.mac == mac) {
                    return Err(Error::MacTaken {
                        mac: mac.clone(),
                        container: e.container_id.clone(),
                        network: name.to_string(),
                    });
                }
            }
            rec.endpoints.insert(
                container_id.to_string(),
                planned_endpoint(&network, container_id, netns, ip, &opts),
            );
            locked.save()?;
            (network, ip, opts)
        };
        match veth::attach(&network, container_id, netns, ip, &opts) {
            Ok(endpoint) => Ok(endpoint),
            Err(e) => {
                // The attach error is the one to report; a reservation that
                // cannot be dropped now is dropped by the next detach.
                let _ = self.forget_endpoint(name, container_id);
                Err(e.into())
            }
        }
    }

    /// Disconnects a container and frees its address. Succeeds when it is not
    /// attached (any more), so it can be repeated after a crash.
    pub fn detach(&self, name: &str, container_id: &str) -> Result<(), Error> {
        let mut locked = self.store.lock()?;
        veth::detach(name, container_id)?;
        let removed = locked
            .state
            .networks
            .get_mut(name)
            .and_then(|rec| rec.endpoints.remove(container_id))
            .is_some();
        if removed {
            locked.save()?;
        }
        Ok(())
    }

    /// Drops a reservation whose attach failed.
    fn forget_endpoint(&self, name: &str, container_id: &str) -> Result<(), Error> {
        let mut locked = self.store.lock()?;
        let removed = locked
            .state
            .networks
            .get_mut(name)
            .and_then(|rec| rec.endpoints.remove(container_id))
            .is_some();
        if removed {
            locked.save()?;
        }
        Ok(())
    }
}

/// The endpoint `veth::attach` will produce, recorded before it runs.
fn planned_endpoint(
    network: &Network,
    container_id: &str,
    netns: &Path,
    ip: Ipv4Addr,
    opts: &AttachOptions,
) -> Endpoint {
    Endpoint {
        network: network.name.clone(),
        container_id: container_id.to_string(),
        ip,
        prefix_len: network.subnet.prefix_len(),
        gateway: network.gateway,
        mac: opts.mac.clone().unwrap_or_else(|| veth::mac_for(ip)),
        ifname: opts.ifname.clone(),
        host_ifname: veth::host_ifname(&network.name, container_id),
        netns: netns.to_path_buf(),
        ipv6: opts.ipv6,
        link_local: opts.link_local.clone(),
    }
}
