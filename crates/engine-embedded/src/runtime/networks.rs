//! The project's networks (bridges from berth's address pool), each
//! service's attachments and aliases, `/etc/hosts`.

use super::*;

/// The pool project networks take their subnets from: 172.31.0.0/16 cut
/// into /24s unless `BERTH_ADDRESS_POOL` (`base/bits[,size]`) says
/// otherwise, for hosts where that range is taken.
pub(super) fn address_pool() -> Result<PoolConfig> {
    let Ok(text) = std::env::var("BERTH_ADDRESS_POOL") else {
        return Ok(PoolConfig::default());
    };
    let bad = |why: String| svc_err("-", format!("BERTH_ADDRESS_POOL={text:?}: {why}"));
    let (base, size) = match text.split_once(',') {
        Some((b, s)) => (b, s.trim().parse::<u8>().map_err(|e| bad(e.to_string()))?),
        None => (text.as_str(), 24),
    };
    let base = base.trim().parse().map_err(|e| bad(format!("{e}")))?;
    PoolConfig::new(base, size).map_err(|e| bad(e.to_string()))
}

/// The networks a service joins: its `networks:`, or the project's default
/// one when it names none (v1 files say `network_mode: bridge`, docker's
/// default bridge, which for a project is its default network).
pub(super) fn effective_networks(svc: &Service) -> Vec<(&str, Option<&serde_json::Value>)> {
    match (&svc.networks, svc.network_mode.as_deref()) {
        (Some(nets), _) => nets.iter().map(|(k, v)| (k.as_str(), v.as_ref())).collect(),
        (None, None | Some("bridge")) => vec![("default", None)],
        (None, _) => Vec::new(),
    }
}

/// The network a service's own `mac_address` goes to: its first in
/// compose's order (see [`service_networks`]).
pub(crate) fn first_network(svc: &Service) -> Option<(&str, Option<&serde_json::Value>)> {
    let priority = |s: Option<&serde_json::Value>| {
        s.and_then(|s| s.get("priority"))
            .and_then(|p| p.as_i64())
            .unwrap_or(0)
    };
    effective_networks(svc)
        .into_iter()
        .min_by(|a, b| priority(b.1).cmp(&priority(a.1)).then_with(|| a.0.cmp(b.0)))
}

/// The interface names of a service's networks, in network order (see
/// [`service_networks`]): `interface_name`, else `eth<n>`.
pub(crate) fn interface_names(svc: &Service) -> Vec<String> {
    let priority = |s: Option<&serde_json::Value>| {
        s.and_then(|s| s.get("priority"))
            .and_then(|p| p.as_i64())
            .unwrap_or(0)
    };
    let mut nets = effective_networks(svc);
    nets.sort_by(|a, b| priority(b.1).cmp(&priority(a.1)).then_with(|| a.0.cmp(b.0)));
    nets.iter()
        .enumerate()
        .map(|(n, (_, s))| {
            s.and_then(|s| s.get("interface_name"))
                .and_then(|v| v.as_str())
                .filter(|v| !v.is_empty())
                .map(str::to_string)
                .unwrap_or_else(|| format!("eth{n}"))
        })
        .collect()
}

/// One network a service asks for.
pub(super) struct WantedNetwork {
    pub(super) key: String,
    pub(super) network: String,
    pub(super) internal: bool,
    pub(super) ipv4_address: Option<String>,
    pub(super) ipv6_address: Option<String>,
    pub(super) link_local_ips: Vec<String>,
    pub(super) mac_address: Option<String>,
    /// compose `interface_name`; `eth<n>` in network order otherwise.
    pub(super) interface_name: Option<String>,
    /// compose `gw_priority`: the highest takes the default route.
    pub(super) gw_priority: i64,
    pub(super) aliases: Vec<String>,
}

/// The engine-level name of network `key`: its `name:`, else `<project>_<key>`.
pub(super) fn network_name(project: &Project, key: &str) -> String {
    project
        .networks
        .get(key)
        .and_then(|n| n.name.clone())
        .unwrap_or_else(|| format!("{}_{key}", project.name))
}

/// A service's networks in compose's order (higher `priority` first, then
/// by name), each with its address and aliases.
pub(super) fn service_networks(
    project: &Project,
    svc: &Service,
    service: &str,
) -> Vec<WantedNetwork> {
    let mut out: Vec<(i64, WantedNetwork)> = effective_networks(svc)
        .into_iter()
        .map(|(key, settings)| {
            let get = |k: &str| settings.as_ref().and_then(|s| s.get(k));
            let mut aliases = string_list(get("aliases"));
            aliases.retain(|a| a != service);
            (
                get("priority").and_then(|p| p.as_i64()).unwrap_or(0),
                WantedNetwork {
                    key: key.to_string(),
                    network: network_name(project, key),
                    internal: project.networks.get(key).and_then(|n| n.internal) == Some(true),
                    ipv4_address: get("ipv4_address")
                        .and_then(|v| v.as_str())
                        .map(str::to_string),
                    ipv6_address: get("ipv6_address")
                        .and_then(|v| v.as_str())
                        .map(str::to_string),
                    link_local_ips: string_list(get("link_local_ips")),
                    mac_address: get("mac_address").and_then(|v| unsupported::mac_address(v).ok()),
                    interface_name: get("interface_name")
                        .and_then(|v| v.as_str())
                        .filter(|n| !n.is_empty())
                        .map(str::to_string),
                    gw_priority: get("gw_priority").and_then(|p| p.as_i64()).unwrap_or(0),
                    aliases,
                },
            )
        })
        .collect();
    out.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.key.cmp(&b.1.key)));
    out.into_iter().map(|(_, w)| w).collect()
}

impl ProjectRuntime {
    /// The hosts file of `live`: itself, then on every network it shares
    /// with others their container names, service names (the service's
    /// current container) and aliases, then `links` and `extra_hosts`.
    pub(super) fn hosts_for(&self, live: &Live) -> String {
        let mut names: BTreeMap<String, IpAddr> = BTreeMap::new();
        // `network_mode: service:x` shares x's namespace and so its networks.
        let own: Vec<&Attachment> = match &live.netns {
            Some(ns) => self
                .live
                .iter()
                .filter(|l| l.netns.as_ref() == Some(ns))
                .flat_map(|l| &l.attachments)
                .chain(&live.attachments)
                .collect(),
            None => Vec::new(),
        };
        for mine in &own {
            for other in &self.live {
                for theirs in other
                    .attachments
                    .iter()
                    .filter(|a| a.network == mine.network)
                {
                    names.entry(other.name.clone()).or_insert(theirs.ip);
                    for alias in &theirs.aliases {
                        names.entry(alias.clone()).or_insert(theirs.ip);
                    }
                }
            }
            for s in self.live.iter().map(|l| &l.service) {
                let current = self.current(s).and_then(|l| {
                    l.attachments
                        .iter()
                        .find(|a| a.network == mine.network)
                        .map(|a| a.ip)
                });
                if let Some(ip) = current {
                    names.insert(s.clone(), ip);
                }
            }
        }
        // v1 `links: [db, "db:database"]`: the alias names db's container.
        for link in &live.svc.links {
            let (target, alias) = link.split_once(':').unwrap_or((link, link));
            if let Some(ip) = self.current(target).and_then(|l| l.ip) {
                names.insert(alias.to_string(), ip);
            }
        }
        let hostname = live
            .svc
            .hostname
            .clone()
            .unwrap_or_else(|| live.service.clone());
        names.remove(&hostname);
        let mut text =
            berth_network::render_hosts(&hostname, live.ip, &names).unwrap_or_else(|_| {
                // A name that is not a valid host name: leave the others
                // out rather than refuse to run.
                berth_network::render_hosts("localhost", live.ip, &BTreeMap::new())
                    .unwrap_or_default()
            });
        for entry in string_list(live.svc.extra.get("extra_hosts")) {
            if let Some((host, ip)) = entry.split_once('=') {
                text.push_str(&format!("{ip}\t{host}\n"));
            }
        }
        text
    }

    /// Create the networks the project's services use; external ones must
    /// exist already.
    pub(super) fn ensure_networks(&mut self, project: &Project) -> Result<()> {
        let mut keys: Vec<&str> = Vec::new();
        for svc in project.services.values() {
            for (k, _) in effective_networks(svc) {
                if !keys.contains(&k) {
                    keys.push(k);
                }
            }
        }
        for key in keys {
            let decl = project.networks.get(key);
            let name = network_name(project, key);
            if self.networks.contains(&name) {
                continue;
            }
            // enable_ipv6, enable_ipv4: false and the IPAM keys beyond one
            // subnet were refused with the project (unsupported.rs).
            if decl.and_then(|d| d.external) == Some(true) {
                if self.engine.networks.get(&name)?.is_none() {
                    return Err(svc_err(
                        "-",
                        format!("network {name} is declared as external, but could not be found"),
                    ));
                }
                continue;
            }
            // compose's `ipam: {config: [{subnet: …}]}`: an IPv4 entry and,
            // with enable_ipv6, an IPv6 one (checked with the project).
            let subnets: Vec<(usize, &str)> = decl
                .and_then(|d| d.extra.get("ipam"))
                .and_then(|i| i.get("config"))
                .and_then(|c| c.as_array())
                .into_iter()
                .flatten()
                .enumerate()
                .filter_map(|(i, c)| Some((i, c.get("subnet")?.as_str()?)))
                .collect();
            let subnet = subnets
                .iter()
                .find(|(_, s)| !s.contains(':'))
                .map(|&(i, s)| {
                    s.parse::<berth_network::Subnet>().map_err(|e| {
                        svc_err("-", format!("networks.{key}.ipam.config[{i}].subnet: {e}"))
                    })
                })
                .transpose()?;
            let ipv6_subnet = subnets
                .iter()
                .find(|(_, s)| s.contains(':'))
                .map(|&(i, s)| {
                    s.parse::<berth_network::Subnet6>().map_err(|e| {
                        svc_err("-", format!("networks.{key}.ipam.config[{i}].subnet: {e}"))
                    })
                })
                .transpose()?;
            let (ip_range, aux_addresses) = decl
                .and_then(|d| d.extra.get("ipam"))
                .and_then(|i| i.get("config"))
                .and_then(|c| c.as_array())
                .and_then(|c| {
                    c.iter().enumerate().find(|(_, e)| {
                        e.get("subnet")
                            .and_then(|s| s.as_str())
                            .is_some_and(|s| !s.contains(':'))
                    })
                })
                .map(|(i, e)| unsupported::ipv4_ranges(key, i, e))
                .transpose()
                .map_err(EngineError::Unsupported)?
                .unwrap_or_default();
            let enable_ipv6 = decl
                .and_then(|d| d.extra.get("enable_ipv6"))
                .and_then(|v| v.as_bool())
                == Some(true);
            let bridge = match decl {
                Some(d) => {
                    unsupported::bridge_options(key, &d.extra).map_err(EngineError::Unsupported)?
                }
                None => Default::default(),
            };
            let options = NetworkOptions {
                internal: decl.and_then(|d| d.internal) == Some(true),
                subnet,
                bridge,
                ipv6: enable_ipv6.then_some(ipv6_subnet),
                ip_range,
                aux_addresses,
            };
            self.engine.networks.create(&name, &options)?;
            self.networks.push(name);
        }
        Ok(())
    }

    /// Rewrite every container's hosts file in place (the same inode, so
    /// the bind mount sees it) where it changed.
    pub(super) fn refresh_hosts(&self) {
        for l in &self.live {
            let path = l.files(&self.engine.state).join("hosts");
            let text = self.hosts_for(l);
            if fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
                let _ = fs::write(&path, text);
            }
        }
    }
}
