//! Compose keys the embedded engine cannot honour. A valid compose file
//! may use them (`config -q` passes), but `up` refuses them before it makes
//! anything, with one line naming the key path, instead of running the
//! service without what the key asked for.

use berth_compose::model::Service;
use berth_compose::Project;
use serde_json::Value;

/// The first key of `project` the embedded engine cannot honour, as
/// `key.path: why`.
pub fn check(project: &Project) -> Result<(), String> {
    // Docker's model runner has no counterpart here: a service would start
    // without the endpoint and model variables it expects.
    if project.extra.get("models").is_some_and(non_empty) {
        return Err("models: model runners are not supported by the embedded engine".into());
    }
    for (name, svc) in &project.services {
        check_service(project, name, svc)?;
    }
    for (key, v) in &project.volumes {
        if let Some(driver) = v.driver.as_deref().filter(|d| *d != "local") {
            return Err(format!(
                "volumes.{key}.driver: {driver:?} is not available (the embedded engine has the local driver only)"
            ));
        }
        local_volume(key, v)?;
    }
    for (key, n) in &project.networks {
        if n.external == Some(true) {
            continue;
        }
        if let Some(driver) = n.driver.as_deref().filter(|d| *d != "bridge") {
            return Err(format!(
                "networks.{key}.driver: {driver:?} is not available (the embedded engine has the bridge driver only)"
            ));
        }
        bridge_options(key, &n.extra)?;
        check_network(key, &n.extra)?;
    }
    Ok(())
}

/// What a project network may ask of the bridge driver: an IPv4 subnet
/// and, with `enable_ipv6`, an IPv6 one; berth's own address allocation.
fn check_network(key: &str, n: &berth_compose::model::Extra) -> Result<(), String> {
    let at = |k: &str| format!("networks.{key}.{k}");
    let ipv6 = n.get("enable_ipv6").and_then(Value::as_bool) == Some(true);
    if ipv6 {
        // Networks are kept apart by the host not routing IPv6 between
        // bridges (berth has no ip6tables rules); a host that routes it
        // would carry traffic between them.
        let forwarding = std::fs::read_to_string("/proc/sys/net/ipv6/conf/all/forwarding")
            .is_ok_and(|v| v.trim() == "1");
        if forwarding {
            return Err(format!(
                "{}: this host routes IPv6 (net.ipv6.conf.all.forwarding=1), so berth could not keep IPv6 networks apart",
                at("enable_ipv6")
            ));
        }
        if bridge_options(key, n).is_ok_and(|b| !b.icc) {
            return Err(format!(
                "{}: false is not supported with enable_ipv6 (IPv6 between containers of the bridge could not be blocked)",
                at("driver_opts.com.docker.network.bridge.enable_icc")
            ));
        }
    }
    if n.get("enable_ipv4").and_then(Value::as_bool) == Some(false) {
        return Err(format!(
            "{}: the embedded engine's networks are IPv4 (IPv6-only networks are not supported)",
            at("enable_ipv4")
        ));
    }
    let Some(ipam) = n.get("ipam") else {
        return Ok(());
    };
    if let Some(driver) = ipam
        .get("driver")
        .and_then(Value::as_str)
        .filter(|d| *d != "default")
    {
        return Err(format!(
            "{}: {driver:?} is not available (addresses come from berth's own allocator)",
            at("ipam.driver")
        ));
    }
    if ipam.get("options").is_some_and(non_empty) {
        return Err(format!(
            "{}: IPAM options are not supported",
            at("ipam.options")
        ));
    }
    let configs = ipam
        .get("config")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let (mut v4, mut v6) = (false, false);
    for (i, config) in configs.iter().enumerate() {
        let subnet = config.get("subnet").and_then(Value::as_str);
        let is_v6 = subnet.is_some_and(|s| s.contains(':'));
        if is_v6 {
            if !ipv6 {
                return Err(format!(
                    "{}: an IPv6 subnet needs enable_ipv6: true",
                    at(&format!("ipam.config[{i}].subnet"))
                ));
            }
            if let Err(e) = subnet.unwrap_or_default().parse::<berth_network::Subnet6>() {
                return Err(format!("{}: {e}", at(&format!("ipam.config[{i}].subnet"))));
            }
        }
        let seen = if is_v6 { &mut v6 } else { &mut v4 };
        if std::mem::replace(seen, true) {
            return Err(format!(
                "{}: one IPv4 and one IPv6 subnet per network (the embedded engine's bridges have no more)",
                at(&format!("ipam.config[{i}]"))
            ));
        }
        if is_v6 {
            for k in ["ip_range", "aux_addresses"] {
                if config.get(k).is_some_and(non_empty) {
                    return Err(format!(
                        "{}: not supported for an IPv6 subnet (its addresses follow the IPv4 ones)",
                        at(&format!("ipam.config[{i}].{k}"))
                    ));
                }
            }
        } else {
            ipv4_ranges(key, i, config)?;
        }
        if let Some(gateway) = config.get("gateway").and_then(Value::as_str) {
            // The bridge always takes the subnet's first address: a gateway
            // that says so is honoured, any other could not be.
            let first = if is_v6 {
                subnet
                    .and_then(|s| s.parse::<berth_network::Subnet6>().ok())
                    .map(|s| s.gateway().to_string())
            } else {
                subnet.and_then(first_address)
            };
            let same = match (gateway.parse::<std::net::IpAddr>(), first.as_deref()) {
                (Ok(g), Some(f)) => f.parse::<std::net::IpAddr>().is_ok_and(|f| f == g),
                _ => false,
            };
            if !same {
                return Err(format!(
                    "{}: {gateway} is not supported (the gateway is the subnet's first address{})",
                    at(&format!("ipam.config[{i}].gateway")),
                    first.map(|f| format!(", {f}")).unwrap_or_default()
                ));
            }
        }
    }
    Ok(())
}

/// An IPv4 `ipam.config` entry's `ip_range` and `aux_addresses`, checked
/// against its subnet: `(ip_range, aux_addresses)`.
pub(crate) fn ipv4_ranges(
    key: &str,
    i: usize,
    config: &Value,
) -> Result<(Option<berth_network::Subnet>, Vec<std::net::Ipv4Addr>), String> {
    let at = |k: &str| format!("networks.{key}.ipam.config[{i}].{k}");
    let subnet = config
        .get("subnet")
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<berth_network::Subnet>().ok());
    let range = match config.get("ip_range").and_then(Value::as_str) {
        Some(text) => {
            let range: berth_network::Subnet = text
                .parse()
                .map_err(|e| format!("{}: {e}", at("ip_range")))?;
            let Some(subnet) = subnet else {
                return Err(format!("{}: needs the entry's subnet", at("ip_range")));
            };
            if !subnet.contains(range.network()) || range.prefix_len() < subnet.prefix_len() {
                return Err(format!(
                    "{}: {range} is not inside {subnet}",
                    at("ip_range")
                ));
            }
            Some(range)
        }
        None => None,
    };
    let mut aux = Vec::new();
    if let Some(map) = config.get("aux_addresses").and_then(Value::as_object) {
        for (host, v) in map {
            let k = at(&format!("aux_addresses.{host}"));
            let ip: std::net::Ipv4Addr = v
                .as_str()
                .and_then(|a| a.parse().ok())
                .ok_or_else(|| format!("{k}: {v} is not an IPv4 address"))?;
            match subnet {
                Some(s) if s.contains(ip) => aux.push(ip),
                Some(s) => return Err(format!("{k}: {ip} is not inside {s}")),
                None => return Err(format!("{k}: needs the entry's subnet")),
            }
        }
    }
    Ok((range, aux))
}

/// `10.1.2.1` for `10.1.2.0/24`: the address berth's bridges take.
fn first_address(subnet: &str) -> Option<String> {
    let (addr, bits) = subnet.split_once('/')?;
    let addr: std::net::Ipv4Addr = addr.parse().ok()?;
    let bits: u32 = bits.parse().ok().filter(|b| *b <= 30)?;
    let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
    Some(std::net::Ipv4Addr::from((u32::from(addr) & mask) + 1).to_string())
}

/// Per-service settings of the networks a service joins.
fn check_attachments(project: &Project, name: &str, svc: &Service) -> Result<(), String> {
    for (net, settings) in svc.networks.iter().flatten() {
        let Some(settings) = settings else { continue };
        let at = |k: &str| format!("services.{name}.networks.{net}.{k}");
        for (k, why) in [("driver_opts", "endpoint driver options are not supported")] {
            if settings
                .get(k)
                .is_some_and(|v| non_empty(v) && v != &Value::from(0))
            {
                return Err(format!("{}: {why}", at(k)));
            }
        }
        if let Some(v) = settings.get("interface_name").filter(|v| non_empty(v)) {
            let text = v.as_str().unwrap_or_default();
            let ok = text.len() <= 15
                && !matches!(text, "lo" | "." | "..")
                && text
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
            if !ok {
                return Err(format!(
                    "{}: {v} cannot be an interface name (up to 15 characters from [A-Za-z0-9_.-], not lo)",
                    at("interface_name")
                ));
            }
            // The other networks take eth<n> by their place in order.
            let names = crate::runtime::interface_names(svc);
            if names.iter().filter(|n| n.as_str() == text).count() > 1 {
                return Err(format!(
                    "{}: {text} is the interface of another of the service's networks",
                    at("interface_name")
                ));
            }
        }
        if let Some(v) = settings.get("mac_address").filter(|v| non_empty(v)) {
            mac_address(v).map_err(|e| format!("{}: {e}", at("mac_address")))?;
        }
        let ipv6 = project
            .networks
            .get(net)
            .and_then(|n| n.extra.get("enable_ipv6"))
            .and_then(Value::as_bool)
            == Some(true);
        if let Some(v) = settings.get("ipv6_address").filter(|v| non_empty(v)) {
            if !ipv6 {
                return Err(format!(
                    "{}: network {net} does not enable IPv6 (enable_ipv6: true)",
                    at("ipv6_address")
                ));
            }
            if v.as_str()
                .and_then(|a| a.parse::<std::net::Ipv6Addr>().ok())
                .is_none()
            {
                return Err(format!(
                    "{}: {v} is not an IPv6 address",
                    at("ipv6_address")
                ));
            }
        }
        for (i, v) in settings
            .get("link_local_ips")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let key = at(&format!("link_local_ips[{i}]"));
            match v.as_str().and_then(|a| a.parse::<std::net::IpAddr>().ok()) {
                Some(std::net::IpAddr::V4(a)) if a.is_link_local() => {}
                Some(std::net::IpAddr::V6(a)) if a.segments()[0] & 0xffc0 == 0xfe80 => {
                    if !ipv6 {
                        return Err(format!(
                            "{key}: an IPv6 address needs a network with enable_ipv6: true"
                        ));
                    }
                }
                _ => {
                    return Err(format!(
                        "{key}: {v} is not a link-local address (169.254.0.0/16 or fe80::/10)"
                    ))
                }
            }
        }
    }
    Ok(())
}

/// A MAC address as `ip` takes it (lower-case, colon-separated), from
/// docker's forms (`02:42:ac:11:00:09`, `02-42-…`); a multicast one could
/// not be an interface's.
pub(crate) fn mac_address(v: &Value) -> Result<String, String> {
    let text = v.as_str().unwrap_or_default();
    let bytes: Vec<u8> = text
        .split([':', '-'])
        .map(|b| u8::from_str_radix(b, 16).ok().filter(|_| b.len() == 2))
        .collect::<Option<_>>()
        .filter(|b: &Vec<u8>| b.len() == 6)
        .ok_or_else(|| format!("{v} is not a MAC address (like 02:42:ac:11:00:09)"))?;
    if bytes[0] & 1 == 1 {
        return Err(format!("{v} is a multicast address"));
    }
    Ok(bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":"))
}

/// The long syntax of `volumes:` beyond what the sandbox's bind, tmpfs
/// and volume mounts do.
fn check_mounts(name: &str, svc: &Service) -> Result<(), String> {
    for (i, m) in svc.volumes.iter().enumerate() {
        let at = |k: &str| format!("services.{name}.volumes[{i}].{k}");
        if !matches!(m.kind.as_str(), "bind" | "volume" | "tmpfs") {
            // Taken for a named volume otherwise: refused, not guessed at.
            return Err(format!(
                "{}: {:?} mounts are not supported by the embedded engine (bind, volume, tmpfs)",
                at("type"),
                m.kind
            ));
        }
        if m.extra.get("image").is_some_and(non_empty) {
            return Err(format!(
                "{}: image mounts are not supported by the embedded engine",
                at("image")
            ));
        }
        if let Some(mode) = m.extra.get("tmpfs").and_then(|t| t.get("mode")) {
            if tmpfs_mode(mode).is_none() {
                return Err(format!("{}: {mode} is not a file mode", at("tmpfs.mode")));
            }
        }
        let bind = m.extra.get("bind");
        if let Some(p) = bind
            .and_then(|b| b.get("propagation"))
            .and_then(Value::as_str)
            .filter(|p| !matches!(*p, "private" | "rprivate"))
        {
            return Err(format!(
                "{}: {p:?} is not supported (binds are rprivate)",
                at("bind.propagation")
            ));
        }
        if let Some(r) = bind
            .and_then(|b| b.get("recursive"))
            .and_then(Value::as_str)
            .filter(|r| *r != "enabled")
        {
            return Err(format!(
                "{}: {r:?} is not supported (binds are always recursive)",
                at("bind.recursive")
            ));
        }
        // docker fails the container's creation on a missing source when
        // it may not create it; here before anything is made.
        if m.kind == "bind"
            && bind
                .and_then(|b| b.get("create_host_path"))
                .and_then(Value::as_bool)
                == Some(false)
        {
            let source = m.source.as_deref().unwrap_or_default();
            if !std::path::Path::new(source).exists() {
                return Err(format!(
                    "{}: the host path {source} does not exist (create_host_path is false)",
                    at("source")
                ));
            }
        }
    }
    Ok(())
}

fn non_empty(v: &Value) -> bool {
    match v {
        Value::Object(m) => !m.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Null => false,
        _ => true,
    }
}

fn check_service(project: &Project, name: &str, svc: &Service) -> Result<(), String> {
    let key = |k: &str| format!("services.{name}.{k}");
    if let Some(platform) = svc.extra.get("platform").and_then(Value::as_str) {
        let host = host_platform();
        let wanted = platform.trim_end_matches("/v1").to_ascii_lowercase();
        if wanted != host && !host.starts_with(&format!("{wanted}/")) {
            return Err(format!(
                "{}: {platform} cannot run on this {host} host",
                key("platform")
            ));
        }
    }
    // Windows-only, or hardware and storage this engine has no way to give.
    for (k, why) in [
        (
            "gpus",
            "GPU devices are not supported by the embedded engine",
        ),
        ("isolation", "isolation modes are a Windows feature"),
        ("credential_spec", "credential specs are a Windows feature"),
        (
            "storage_opt",
            "per-container storage options are not supported by the embedded engine's overlay",
        ),
        ("cpu_count", "cpu_count is a Windows setting"),
        ("cpu_percent", "cpu_percent is a Windows setting"),
        (
            "external_links",
            "links to containers outside the project are not supported",
        ),
        (
            "use_api_socket",
            "the embedded engine has no Docker API socket to give",
        ),
        (
            "models",
            "model runners are not supported by the embedded engine",
        ),
        (
            "provider",
            "provider services (a plugin that stands in for a container) are not supported",
        ),
        (
            "pre_start",
            "init containers are not supported by the embedded engine yet",
        ),
        (
            "pull_refresh_after",
            "not supported (pull_policy daily, weekly and every_<duration> are)",
        ),
    ] {
        if svc.extra.get(k).is_some_and(non_empty) {
            return Err(format!("{}: {why}", key(k)));
        }
    }
    // A memory reservation is the soft limit (resources.rs); a CPU one is
    // a swarm scheduling hint that docker compose drops too.
    if svc
        .extra
        .get("deploy")
        .and_then(|d| d.get("resources"))
        .and_then(|r| r.get("reservations"))
        .and_then(|r| r.get("devices"))
        .is_some_and(non_empty)
    {
        return Err(format!(
            "{}: device (GPU) reservations are not supported by the embedded engine",
            key("deploy.resources.reservations.devices")
        ));
    }
    for (i, m) in svc.volumes.iter().enumerate() {
        let Some(subpath) = m
            .extra
            .get("volume")
            .and_then(|v| v.get("subpath"))
            .filter(|v| non_empty(v))
        else {
            continue;
        };
        let at = format!("{}[{i}].volume.subpath", key("volumes"));
        let text = subpath.as_str().unwrap_or_default();
        let inside = !text.is_empty()
            && !text.contains('\0')
            && std::path::Path::new(text).components().all(|c| {
                matches!(
                    c,
                    std::path::Component::Normal(_) | std::path::Component::CurDir
                )
            });
        if !inside {
            return Err(format!(
                "{at}: {subpath} is not a relative path inside the volume"
            ));
        }
        let Some(named) = m.source.as_deref().filter(|_| m.kind == "volume") else {
            return Err(format!("{at}: only a named volume's part can be mounted"));
        };
        if project
            .volumes
            .get(named)
            .is_some_and(|v| v.extra.get("driver_opts").is_some_and(non_empty))
        {
            return Err(format!(
                "{at}: not supported for volume {named}, which has driver_opts"
            ));
        }
    }
    check_mounts(name, svc)?;
    check_attachments(project, name, svc)?;
    if let Some(v) = svc.extra.get("mac_address").filter(|v| non_empty(v)) {
        let mac = mac_address(v).map_err(|e| format!("{}: {e}", key("mac_address")))?;
        // docker compose gives it to the service's first network, and
        // refuses a different one set there.
        let first = crate::runtime::first_network(svc);
        let theirs = first.and_then(|(net, s)| {
            let v = s?.get("mac_address").filter(|v| non_empty(v))?;
            Some((net, mac_address(v).ok()?))
        });
        if let Some((net, other)) = theirs.filter(|(_, m)| *m != mac) {
            return Err(format!(
                "{}: {mac} differs from networks.{net}.mac_address ({other})",
                key("mac_address")
            ));
        }
        if first.is_none() {
            return Err(format!(
                "{}: the service joins no network (network_mode {:?})",
                key("mac_address"),
                svc.network_mode.as_deref().unwrap_or_default()
            ));
        }
    }
    // Containers are not user-namespaced (docker's default), which is what
    // `userns_mode: host` asks for.
    if let Some(mode) = svc
        .extra
        .get("userns_mode")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty() && *m != "host")
    {
        return Err(format!(
            "{}: {mode:?} is not supported (only \"host\": containers are not user-namespaced)",
            key("userns_mode")
        ));
    }
    if let Some(driver) = svc
        .extra
        .get("logging")
        .and_then(|l| l.get("driver"))
        .and_then(Value::as_str)
        // An empty driver is the default one (json-file), as in docker.
        .filter(|d| !d.is_empty() && !crate::runtime::LOG_DRIVERS.contains(d))
    {
        return Err(format!(
            "{}: {driver:?} is not available (the embedded engine writes {})",
            key("logging.driver"),
            crate::runtime::LOG_DRIVERS.join(", ")
        ));
    }
    if let Some(runtime) = svc.extra.get("runtime").and_then(Value::as_str) {
        if !matches!(runtime, "runc" | "io.containerd.runc.v2") {
            return Err(format!(
                "{}: {runtime:?} is not available (containers run through youki's libcontainer, runc-compatible)",
                key("runtime")
            ));
        }
    }
    if let Some(mode) = svc.network_mode.as_deref() {
        let known = matches!(mode, "host" | "none" | "bridge" | "default")
            || mode.starts_with("container:")
            || mode
                .strip_prefix("service:")
                .is_some_and(|s| project.services.contains_key(s));
        if !known {
            return Err(format!(
                "{}: {mode:?} is not supported (host, none, bridge, service:NAME of this project, container:NAME)",
                key("network_mode")
            ));
        }
    }
    super::restart::RestartPolicy::of_service(svc.restart.as_deref(), svc.extra.get("deploy"))
        .map_err(|e| format!("services.{name}.{e}"))?;
    if let Some(list) = svc.extra.get("tmpfs") {
        let entries: Vec<&str> = match list {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        for (i, t) in entries.iter().enumerate() {
            tmpfs_options(t).map_err(|e| format!("{}[{i}]: {e}", key("tmpfs")))?;
        }
    }
    // Namespace sharing: what docker accepts for each key.
    for (k, modes, sharing) in [
        ("ipc", &["", "private", "shareable", "host"][..], true),
        ("pid", &["", "host"][..], true),
        ("uts", &["", "host"][..], false),
        ("cgroup", &["", "host", "private"][..], false),
    ] {
        let Some(mode) = svc.extra.get(k).and_then(Value::as_str) else {
            continue;
        };
        let shared = sharing
            && (mode.starts_with("container:")
                || mode
                    .strip_prefix("service:")
                    .is_some_and(|s| project.services.contains_key(s) && s != name));
        if !modes.contains(&mode) && !shared {
            let allowed = modes[1..].join(", ");
            let also = if sharing {
                ", service:NAME of this project, container:NAME"
            } else {
                ""
            };
            return Err(format!(
                "{}: {mode:?} is not supported ({allowed}{also})",
                key(k)
            ));
        }
    }
    // A host UTS namespace keeps the host's name (docker refuses both too).
    if svc.extra.get("uts").and_then(Value::as_str) == Some("host") && svc.hostname.is_some() {
        return Err(format!(
            "{}: cannot be set with uts: host (the container has the host's name)",
            key("hostname")
        ));
    }
    if let Some(d) = svc.extra.get("domainname").filter(|d| non_empty(d)) {
        let text = d.as_str().unwrap_or_default();
        if svc.extra.get("uts").and_then(Value::as_str) == Some("host") {
            return Err(format!(
                "{}: cannot be set with uts: host (the container has the host's)",
                key("domainname")
            ));
        }
        if text.len() > 64 || text.contains('\0') {
            return Err(format!(
                "{}: {d} is not a domain name (at most 64 bytes)",
                key("domainname")
            ));
        }
    }
    // Only a shareable IPC namespace can be joined; berth's default is.
    if let Some(other) = svc
        .extra
        .get("ipc")
        .and_then(Value::as_str)
        .and_then(|m| m.strip_prefix("service:"))
    {
        let theirs = project
            .services
            .get(other)
            .and_then(|o| o.extra.get("ipc"))
            .and_then(Value::as_str);
        if let Some(mode @ ("private" | "host")) = theirs {
            return Err(format!(
                "{}: service {other:?} has ipc: {mode}, which cannot be joined (make it shareable)",
                key("ipc")
            ));
        }
    }
    for hook in ["post_start", "pre_stop"] {
        super::hooks::of(svc, hook).map_err(|e| key(&e))?;
    }
    host_limits(name, svc)
}

/// The settings the sandbox checks when it creates the container (ranges,
/// what this host's cgroups can do, device rules), checked now so that `up`
/// makes nothing before it fails.
fn host_limits(name: &str, svc: &Service) -> Result<(), String> {
    use berth_sandbox::SpecError;
    let key = |k: &str| format!("services.{name}.{k}");
    let mut spec = berth_sandbox::ContainerSpec::default();
    super::resources::apply(svc, &mut spec).map_err(|e| key(&e))?;
    if svc.network_mode.as_deref() == Some("host") {
        spec.network = berth_sandbox::Network::Host;
    }
    if svc.extra.get("ipc").and_then(Value::as_str) == Some("host") {
        spec.ipc = berth_sandbox::Ipc::Host;
    }
    berth_sandbox::validate_spec(&spec).map_err(|e| match e {
        // The sandbox's names for the compose keys it checks.
        SpecError::Resource { what, message } => {
            let k = match what {
                "memory" => "mem_limit",
                "memory_swap" => "memswap_limit",
                "ulimit" => "ulimits",
                "cpuset_mems" => "cpuset",
                other => other,
            };
            format!("{}: {message}", key(k))
        }
        SpecError::Unavailable { what, reason } => {
            format!("{}: not available on this host: {reason}", key(what))
        }
        SpecError::DeviceRule { .. } => format!("{}: {e}", key("device_cgroup_rules")),
        SpecError::BadCgroupParent(_) => format!("{}: {e}", key("cgroup_parent")),
        SpecError::Sysctl { .. } => format!("{}: {e}", key("sysctls")),
        SpecError::Device { .. } => format!("{}: {e}", key("devices")),
        SpecError::UnknownCapability(_) | SpecError::UnavailableCapability(_) => {
            format!("{}: {e}", key("cap_add"))
        }
        other => format!("services.{name}: {other}"),
    })
}

/// How the port proxy treats the service's published ports:
/// `x-berth: {protocol: http|tcp|auto}`, auto (detected per connection) by
/// default.
pub fn port_protocol(svc: &Service) -> berth_proxy::Protocol {
    use berth_compose::extensions::PortProtocol;
    match svc.berth().protocol {
        PortProtocol::Auto => berth_proxy::Protocol::Auto,
        PortProtocol::Http => berth_proxy::Protocol::Http,
        PortProtocol::Tcp => berth_proxy::Protocol::Tcp,
    }
}

/// A service-level `tmpfs` entry, `TARGET[:OPTIONS]`: its target, size
/// and mode. Mounts are always `nosuid,nodev,noexec`, as docker's are by
/// default; options that would change that are refused.
pub fn tmpfs_options(entry: &str) -> Result<(String, Option<u64>, Option<u32>), String> {
    let (target, opts) = entry.split_once(':').unwrap_or((entry, ""));
    let (mut size, mut mode) = (None, None);
    for opt in opts.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        match opt.split_once('=') {
            Some(("size", v)) => {
                size = Some(
                    berth_compose::units::parse_bytes(v)
                        .ok_or_else(|| format!("size {v:?} is not a size"))?,
                )
            }
            Some(("mode", v)) => {
                mode = Some(
                    u32::from_str_radix(v, 8)
                        .ok()
                        .filter(|m| *m <= 0o7777)
                        .ok_or_else(|| format!("mode {v:?} is not an octal mode"))?,
                )
            }
            None if matches!(opt, "rw" | "noexec" | "nosuid" | "nodev") => {}
            _ => {
                return Err(format!(
                    "tmpfs option {opt:?} is not supported (size=, mode=, rw)"
                ))
            }
        }
    }
    Ok((target.to_string(), size, mode))
}

/// The long syntax's `tmpfs.mode`: a number is the mode itself (YAML's
/// `0700` is already 448), a string is read as octal, as docker does.
pub fn tmpfs_mode(v: &Value) -> Option<u32> {
    match v {
        Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        Value::String(s) => u32::from_str_radix(s.trim_start_matches("0o"), 8).ok(),
        _ => None,
    }
    .filter(|m| *m <= 0o7777)
}

/// `linux/amd64`, `linux/arm64`, … for the machine berth runs on.
fn host_platform() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    };
    format!("linux/{arch}")
}

/// A local-driver volume with `driver_opts`: what docker's local driver
/// mounts at the volume's path instead of a directory of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LocalVolume {
    /// `type: none, o: bind, device: /path`: the host directory itself.
    /// berth never writes into it (no copy of the image's content, no
    /// removal by `down -v`): it belongs to whoever made it.
    Bind {
        device: std::path::PathBuf,
        read_only: bool,
    },
    /// `type: tmpfs`: one tmpfs, mounted at the volume's path while the
    /// project runs, shared by every container that mounts the volume.
    Tmpfs { flags: libc::c_ulong, data: String },
}

/// The local driver's options of volume `key`, checked: `None` for a plain
/// volume. The error is one line naming the option's key path.
pub(crate) fn local_volume(
    key: &str,
    v: &berth_compose::model::Volume,
) -> std::result::Result<Option<LocalVolume>, String> {
    let Some(opts) = v
        .extra
        .get("driver_opts")
        .and_then(Value::as_object)
        .filter(|o| !o.is_empty())
    else {
        return Ok(None);
    };
    let at = |k: &str| format!("volumes.{key}.driver_opts.{k}");
    if let Some(k) = opts
        .keys()
        .find(|k| !matches!(k.as_str(), "type" | "o" | "device"))
    {
        return Err(format!(
            "{}: not an option of the local driver (type, o, device)",
            at(k)
        ));
    }
    // The schema allows numbers as option values.
    let get = |k: &str| {
        opts.get(k).map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    };
    let o = get("o").unwrap_or_default();
    let words: Vec<&str> = o
        .split(',')
        .map(str::trim)
        .filter(|w| !w.is_empty())
        .collect();
    match get("type").as_deref() {
        Some("none") => {
            if !words.iter().any(|w| matches!(*w, "bind" | "rbind")) {
                return Err(format!(
                    "{}: {o:?} is not supported (type none is a bind volume: o: bind)",
                    at("o")
                ));
            }
            if let Some(w) = words
                .iter()
                .find(|w| !matches!(**w, "bind" | "rbind" | "ro" | "rw"))
            {
                return Err(format!(
                    "{}: {w:?} is not supported for a bind volume (bind, rbind, ro, rw)",
                    at("o")
                ));
            }
            let Some(device) = get("device").filter(|d| !d.is_empty()) else {
                return Err(format!("{}: a bind volume needs the host path", at("device")));
            };
            let device = std::path::PathBuf::from(device);
            if !device.is_absolute() {
                return Err(format!(
                    "{}: {} is not an absolute path",
                    at("device"),
                    device.display()
                ));
            }
            // docker fails the mount on a missing device; here before
            // anything is made.
            if !device.is_dir() {
                return Err(format!(
                    "{}: {} does not exist or is not a directory",
                    at("device"),
                    device.display()
                ));
            }
            Ok(Some(LocalVolume::Bind {
                device,
                read_only: words.contains(&"ro"),
            }))
        }
        Some("tmpfs") => {
            let (flags, data) = tmpfs_volume_options(&words).map_err(|e| format!("{}: {e}", at("o")))?;
            Ok(Some(LocalVolume::Tmpfs { flags, data }))
        }
        Some(other) => Err(format!(
            "{}: {other:?} is not supported by the embedded engine (the local driver's bind volumes, type none, and tmpfs are)",
            at("type")
        )),
        None => Err(format!(
            "{}: missing (none with o: bind, or tmpfs)",
            at("type")
        )),
    }
}

/// Mount flags and tmpfs data of a tmpfs volume's `o:`, as docker's local
/// driver splits them; sizes in docker's units become bytes.
fn tmpfs_volume_options(words: &[&str]) -> std::result::Result<(libc::c_ulong, String), String> {
    let mut flags: libc::c_ulong = 0;
    let mut data = Vec::new();
    for w in words {
        match *w {
            "ro" => flags |= libc::MS_RDONLY,
            "nosuid" => flags |= libc::MS_NOSUID,
            "nodev" => flags |= libc::MS_NODEV,
            "noexec" => flags |= libc::MS_NOEXEC,
            "noatime" => flags |= libc::MS_NOATIME,
            "rw" | "suid" | "dev" | "exec" | "atime" => {}
            _ => {
                let Some((k, v)) = w.split_once('=') else {
                    return Err(format!("{w:?} is not a tmpfs option"));
                };
                let ok = match k {
                    "size" => berth_compose::units::parse_bytes(v).map(|b| b.to_string()),
                    "nr_inodes" => v.parse::<u64>().ok().map(|n| n.to_string()),
                    "mode" => u32::from_str_radix(v, 8)
                        .ok()
                        .filter(|m| *m <= 0o7777)
                        .map(|m| format!("{m:o}")),
                    "uid" | "gid" => v.parse::<u32>().ok().map(|n| n.to_string()),
                    _ => {
                        return Err(format!(
                            "{k:?} is not a tmpfs option (size, mode, uid, gid, nr_inodes)"
                        ))
                    }
                };
                let Some(v) = ok else {
                    return Err(format!("{w:?}: {v:?} is not a valid {k}"));
                };
                data.push(format!("{k}={v}"));
            }
        }
    }
    Ok((flags, data.join(",")))
}

/// The bridge driver options of network `key` (its `driver_opts`), checked;
/// unknown ones are refused by key path rather than ignored.
pub(crate) fn bridge_options(
    key: &str,
    n: &berth_compose::model::Extra,
) -> Result<berth_network::BridgeOptions, String> {
    let mut out = berth_network::BridgeOptions::default();
    let Some(opts) = n.get("driver_opts").and_then(Value::as_object) else {
        return Ok(out);
    };
    for (k, v) in opts {
        let at = || format!("networks.{key}.driver_opts.{k}");
        let text = match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        // What Go's strconv.ParseBool takes, as docker reads these.
        let flag = || match text.as_str() {
            "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
            "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
            _ => Err(format!("{}: {text:?} is not a boolean", at())),
        };
        match k.as_str() {
            "com.docker.network.bridge.name" => {
                let ok = !text.is_empty()
                    && text.len() <= 15
                    && text
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
                    && !text.starts_with("brth-")
                    && !text.starts_with("brv-");
                if !ok {
                    return Err(format!(
                        "{}: {text:?} cannot be a bridge name (up to 15 characters from [A-Za-z0-9_.-], not brth-… or brv-…, which are berth's)",
                        at()
                    ));
                }
                out.name = Some(text);
            }
            "com.docker.network.bridge.enable_ip_masquerade" => out.masquerade = flag()?,
            "com.docker.network.bridge.enable_icc" => out.icc = flag()?,
            "com.docker.network.driver.mtu" => {
                let mtu = text
                    .parse::<u32>()
                    .ok()
                    .filter(|m| (68..=65535).contains(m))
                    .ok_or_else(|| format!("{}: {text:?} is not an MTU (68 to 65535)", at()))?;
                out.mtu = Some(mtu);
            }
            _ => {
                return Err(format!(
                    "{}: not supported by the embedded engine's bridge (com.docker.network.bridge.name, .enable_ip_masquerade, .enable_icc and com.docker.network.driver.mtu are)",
                    at()
                ))
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err(doc: Value) -> String {
        let p: Project = serde_json::from_value(doc).unwrap();
        check(&p).unwrap_err()
    }

    #[test]
    fn refusals_name_the_key_path() {
        let other = if host_platform() == "linux/amd64" {
            "linux/arm64"
        } else {
            "linux/amd64"
        };
        let e = err(json!({"name": "p", "services": {"app": {"platform": other}}}));
        assert!(
            e.starts_with(&format!(
                "services.app.platform: {other} cannot run on this"
            )),
            "{e}"
        );
        let e =
            err(json!({"name": "p", "services": {"app": {"network_mode": "ns:/proc/1/ns/net"}}}));
        assert!(e.starts_with("services.app.network_mode:"), "{e}");
        let e = err(json!({"name": "p", "services": {"app": {"network_mode": "service:ghost"}}}));
        assert!(e.starts_with("services.app.network_mode:"), "{e}");
        let e = err(json!({"name": "p", "services": {"app": {"pid": "private"}}}));
        assert!(
            e.starts_with("services.app.pid: \"private\" is not supported"),
            "{e}"
        );
        let e = err(json!({"name": "p", "services": {"app": {"uts": "service:app"}}}));
        assert!(e.starts_with("services.app.uts:"), "{e}");
        let e = err(json!({"name": "p", "services": {"app": {"ipc": "service:ghost"}}}));
        assert!(e.starts_with("services.app.ipc:"), "{e}");
        let e = err(json!({"name": "p", "services": {
            "db": {"ipc": "private"}, "app": {"ipc": "service:db"}}}));
        assert!(
            e.starts_with("services.app.ipc: service \"db\" has ipc: private"),
            "{e}"
        );
        let e = err(json!({"name": "p", "services": {"app": {"uts": "host", "hostname": "x"}}}));
        assert!(
            e.starts_with("services.app.hostname: cannot be set with uts: host"),
            "{e}"
        );
        // What the sandbox would refuse at create time, refused up front.
        let e = err(json!({"name": "p", "services": {"app": {"cpuset": "4096"}}}));
        assert!(
            e.starts_with("services.app.cpuset: 4096: 4096 is not available"),
            "{e}"
        );
        let e = err(json!({"name": "p", "services": {"app": {"device_cgroup_rules": ["c 1:3"]}}}));
        assert!(
            e.starts_with("services.app.device_cgroup_rules: invalid"),
            "{e}"
        );
        let e = err(json!({"name": "p", "services": {"app": {"cpus": 0.5, "cpu_quota": 5000}}}));
        assert!(
            e.starts_with("services.app: cpus and cpu_period/cpu_quota"),
            "{e}"
        );
        let e = err(json!({"name": "p", "services": {"app": {"oom_score_adj": 5000}}}));
        assert!(e.starts_with("services.app.oom_score_adj: 5000"), "{e}");
        let e = err(json!({"name": "p", "services": {"app": {"post_start": [{"user": "x"}]}}}));
        assert!(
            e.starts_with("services.app.post_start[0].command: missing"),
            "{e}"
        );
        let e = err(json!({"name": "p", "services": {"app": {
            "deploy": {"resources": {"reservations": {"devices": [{"capabilities": ["gpu"]}]}}}}}}));
        assert!(
            e.starts_with("services.app.deploy.resources.reservations.devices:"),
            "{e}"
        );
        let e = err(json!({"name": "p", "services": {"app": {"tmpfs": ["/a:size=1m,exec"]}}}));
        assert!(
            e.starts_with("services.app.tmpfs[0]: tmpfs option \"exec\""),
            "{e}"
        );
        assert_eq!(
            tmpfs_options("/scratch:size=1m,mode=700"),
            Ok(("/scratch".to_string(), Some(1 << 20), Some(0o700)))
        );
        // Keys that would otherwise be dropped, or worse (an image mount
        // taken for a named volume), each refused by its path.
        for (doc, prefix) in [
            (
                json!({"volumes": [{"type": "image", "source": "a/b", "target": "/i"}]}),
                "services.app.volumes[0].type: \"image\" mounts",
            ),
            (
                json!({"volumes": [{"type": "npipe", "source": "x", "target": "/i"}]}),
                "services.app.volumes[0].type: \"npipe\"",
            ),
            (
                json!({"volumes": [{"type": "volume", "target": "/i", "image": {"subpath": "x"}}]}),
                "services.app.volumes[0].image:",
            ),
            (
                json!({"volumes": [{"type": "bind", "source": "/", "target": "/h", "bind": {"propagation": "rshared"}}]}),
                "services.app.volumes[0].bind.propagation: \"rshared\"",
            ),
            (
                json!({"volumes": [{"type": "bind", "source": "/", "target": "/h", "bind": {"recursive": "readonly"}}]}),
                "services.app.volumes[0].bind.recursive:",
            ),
            (
                json!({"volumes": [{"type": "bind", "source": "/nonexistent/berth", "target": "/h", "bind": {"create_host_path": false}}]}),
                "services.app.volumes[0].source: the host path /nonexistent/berth does not exist",
            ),
            (
                json!({"volumes": [{"type": "tmpfs", "target": "/t", "tmpfs": {"mode": "9z"}}]}),
                "services.app.volumes[0].tmpfs.mode:",
            ),
            (
                json!({"networks": {"default": {"interface_name": "lo"}}}),
                "services.app.networks.default.interface_name:",
            ),
            (
                json!({"networks": {"default": {"ipv6_address": "::1"}}}),
                "services.app.networks.default.ipv6_address:",
            ),
            (
                json!({"networks": {"default": {"link_local_ips": ["10.0.0.9"]}}}),
                "services.app.networks.default.link_local_ips[0]:",
            ),
            (
                json!({"networks": {"default": {"mac_address": "01:00:5e:00:00:01"}}}),
                "services.app.networks.default.mac_address:",
            ),
            (
                json!({"networks": {"default": {"driver_opts": {"a": "b"}}}}),
                "services.app.networks.default.driver_opts:",
            ),
            (
                json!({"networks": {"a": {"interface_name": "eth1"}, "b": {}}}),
                "services.app.networks.a.interface_name: eth1 is the interface of another",
            ),
            (json!({"models": ["m"]}), "services.app.models:"),
            (
                json!({"provider": {"type": "model"}}),
                "services.app.provider:",
            ),
            (
                json!({"pre_start": [{"image": "x"}]}),
                "services.app.pre_start:",
            ),
            (
                json!({"pull_refresh_after": "1h"}),
                "services.app.pull_refresh_after:",
            ),
            (
                json!({"userns_mode": "keep-id"}),
                "services.app.userns_mode: \"keep-id\"",
            ),
            (
                json!({"logging": {"driver": "syslog"}}),
                "services.app.logging.driver: \"syslog\"",
            ),
        ] {
            let e = err(json!({"name": "p", "services": {"app": doc}}));
            assert!(e.starts_with(prefix), "{prefix}: {e}");
        }
        for (net, prefix) in [
            (
                json!({"enable_ipv6": true, "driver_opts": {"com.docker.network.bridge.enable_icc": "false"}}),
                "networks.n.driver_opts.com.docker.network.bridge.enable_icc: false",
            ),
            (json!({"ipam": {"config": [{"subnet": "fd42::/64"}]}}), "networks.n.ipam.config[0].subnet: an IPv6 subnet needs"),
            (
                json!({"enable_ipv6": true, "ipam": {"config": [{"subnet": "fd42::/64"}, {"subnet": "fd43::/64"}]}}),
                "networks.n.ipam.config[1]:",
            ),
            (
                json!({"enable_ipv6": true, "ipam": {"config": [{"subnet": "fd42::/64", "gateway": "fd42::9"}]}}),
                "networks.n.ipam.config[0].gateway: fd42::9 is not supported (the gateway is the subnet's first address, fd42::1)",
            ),
            (json!({"enable_ipv4": false}), "networks.n.enable_ipv4:"),
            (json!({"ipam": {"driver": "dhcp"}}), "networks.n.ipam.driver: \"dhcp\""),
            (json!({"ipam": {"options": {"a": "b"}}}), "networks.n.ipam.options:"),
            (json!({"ipam": {"config": [{"subnet": "10.9.0.0/24"}, {"subnet": "10.9.1.0/24"}]}}), "networks.n.ipam.config[1]:"),
            (json!({"ipam": {"config": [{"subnet": "10.9.0.0/24", "ip_range": "10.9.1.0/25"}]}}), "networks.n.ipam.config[0].ip_range: 10.9.1.0/25 is not inside 10.9.0.0/24"),
            (json!({"ipam": {"config": [{"subnet": "10.9.0.0/24", "aux_addresses": {"h": "10.9.7.5"}}]}}), "networks.n.ipam.config[0].aux_addresses.h: 10.9.7.5 is not inside"),
            (json!({"ipam": {"config": [{"subnet": "10.9.0.0/24", "gateway": "10.9.0.254"}]}}), "networks.n.ipam.config[0].gateway: 10.9.0.254 is not supported (the gateway is the subnet's first address, 10.9.0.1)"),
        ] {
            let e = err(json!({"name": "p", "services": {"app": {}}, "networks": {"n": net}}));
            assert!(e.starts_with(prefix), "{prefix}: {e}");
        }
        let e =
            err(json!({"name": "p", "services": {"app": {}}, "models": {"m": {"model": "ai/x"}}}));
        assert!(e.starts_with("models: "), "{e}");
        let e = err(json!({"name": "p", "services": {"app": {"runtime": "nvidia"}}}));
        assert!(e.starts_with("services.app.runtime:"), "{e}");
        let e =
            err(json!({"name": "p", "services": {"app": {}}, "volumes": {"v": {"driver": "nfs"}}}));
        assert!(e.starts_with("volumes.v.driver:"), "{e}");
        let e = err(
            json!({"name": "p", "services": {"app": {}}, "networks": {"n": {"driver": "overlay"}}}),
        );
        assert!(e.starts_with("networks.n.driver:"), "{e}");
    }

    #[test]
    fn what_it_honours_passes() {
        let p: Project = serde_json::from_value(json!({
            "name": "p",
            "services": {
                "db": {"platform": host_platform(), "runtime": "runc", "ipc": "shareable",
                       "cpu_period": 50000, "cpu_quota": 25000, "mem_reservation": "33554432",
                       "oom_score_adj": 100, "device_cgroup_rules": ["c 1:3 r"], "cgroup": "private",
                       "deploy": {"resources": {"reservations": {"memory": "33554432", "cpus": "1"}}},
                       "post_start": [{"command": "true"}], "pre_stop": [{"command": ["true"]}]},
                "app": {"network_mode": "service:db", "ipc": "service:db", "pid": "service:db",
                        "uts": "host"},
                "host": {"pid": "host", "ipc": "host", "cgroup": "host"},
                "other": {"ipc": "container:p-db-1", "pid": "container:p-db-1",
                          "userns_mode": "host", "logging": {"driver": ""},
                          "networks": {"n": {"gw_priority": 0, "aliases": ["o"]}},
                          "volumes": [
                              {"type": "bind", "source": "/", "target": "/h",
                               "bind": {"propagation": "rprivate", "recursive": "enabled", "create_host_path": false}},
                              {"type": "tmpfs", "target": "/t", "tmpfs": {"mode": 448}}]}
            },
            "volumes": {"v": {"driver": "local"}},
            "networks": {"n": {"driver": "bridge", "enable_ipv4": true, "enable_ipv6": false,
                               "ipam": {"driver": "default", "config": [{"subnet": "10.9.0.0/24", "gateway": "10.9.0.1"}]}},
                         "ext": {"external": true, "driver": "overlay"}}
        }))
        .unwrap();
        assert_eq!(check(&p), Ok(()));
    }
}
