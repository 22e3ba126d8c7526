//! `/etc/hosts` for containers: how service names resolve, for now.
//!
//! The engine renders one file per container and bind-mounts it. When a
//! service is recreated at a new address the engine re-renders and rewrites
//! the files of the containers that see it *in place* (truncate + write):
//! a rename would leave the bind mount pointing at the old inode.
//! A per-network DNS server is the later, more dynamic replacement (see
//! `resolv.rs`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HostsError {
    #[error(
        "invalid host name `{0}`: use letters, digits, `.`, `_` and `-`, at most 253 characters"
    )]
    InvalidName(String),
}

/// Lines every container gets, matching docker's so tools inside behave the
/// same (`ip6-localhost` and friends are expected by some images).
const STANDARD: &[(&str, &str)] = &[
    ("127.0.0.1", "localhost"),
    ("::1", "localhost ip6-localhost ip6-loopback"),
    ("fe00::0", "ip6-localnet"),
    ("ff00::0", "ip6-mcastprefix"),
    ("ff02::1", "ip6-allnodes"),
    ("ff02::2", "ip6-allrouters"),
];

/// A hosts file under construction: the standard loopback lines, then the
/// container's own name, then other entries in the order added.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostsFile {
    entries: Vec<(IpAddr, Vec<String>)>,
}

impl HostsFile {
    pub fn new() -> HostsFile {
        HostsFile::default()
    }

    /// Adds `names` for `ip`, merged into an existing line for the same
    /// address so reverse lookups return the first name given for it.
    pub fn add<S: AsRef<str>>(
        &mut self,
        ip: IpAddr,
        names: &[S],
    ) -> Result<&mut HostsFile, HostsError> {
        for name in names {
            validate_name(name.as_ref())?;
        }
        let idx = match self.entries.iter().position(|(addr, _)| *addr == ip) {
            Some(idx) => idx,
            None => {
                self.entries.push((ip, Vec::new()));
                self.entries.len() - 1
            }
        };
        let line = &mut self.entries[idx].1;
        for name in names {
            let name = name.as_ref();
            if !line.iter().any(|n| n == name) {
                line.push(name.to_string());
            }
        }
        Ok(self)
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        for (ip, names) in STANDARD {
            let _ = writeln!(out, "{ip}\t{names}");
        }
        for (ip, names) in &self.entries {
            if !names.is_empty() {
                let _ = writeln!(out, "{ip}\t{}", names.join(" "));
            }
        }
        out
    }
}

/// Renders a container's hosts file: loopback lines, `hostname` on the
/// container's own address (on 127.0.1.1 when it has none, e.g.
/// `network_mode: none`, so `hostname -i` still answers, as on Debian), then
/// every `name → address` pair sorted by name (stable output lets the engine
/// skip rewriting a file that did not change).
pub fn render_hosts(
    hostname: &str,
    own_ip: Option<IpAddr>,
    names: &BTreeMap<String, IpAddr>,
) -> Result<String, HostsError> {
    let mut file = HostsFile::new();
    let own = own_ip.unwrap_or(IpAddr::V4(Ipv4Addr::new(127, 0, 1, 1)));
    file.add(own, &[hostname])?;
    for (name, ip) in names {
        file.add(*ip, &[name])?;
    }
    Ok(file.render())
}

fn validate_name(name: &str) -> Result<(), HostsError> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && !name.starts_with(['-', '.'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(HostsError::InvalidName(name.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn renders_own_name_and_services() {
        let mut names = BTreeMap::new();
        names.insert("web".to_string(), ip("172.31.0.2"));
        names.insert("db".to_string(), ip("172.31.0.3"));
        names.insert("project-db-1".to_string(), ip("172.31.0.3"));
        names.insert("app".to_string(), ip("172.31.0.4"));
        let text = render_hosts("a1b2c3d4e5f6", Some(ip("172.31.0.4")), &names).unwrap();
        assert_eq!(
            text,
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n\
             ff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n\
             172.31.0.4\ta1b2c3d4e5f6 app\n172.31.0.3\tdb project-db-1\n172.31.0.2\tweb\n"
        );
    }

    #[test]
    fn no_address_uses_debian_style_loopback() {
        let text = render_hosts("box", None, &BTreeMap::new()).unwrap();
        assert!(text.ends_with("127.0.1.1\tbox\n"), "{text}");
    }

    #[test]
    fn bad_names_are_refused() {
        for bad in ["", "a b", "x\n1.2.3.4 evil", "-x", "#c", &"a".repeat(254)] {
            let mut names = BTreeMap::new();
            names.insert(bad.to_string(), ip("10.0.0.1"));
            assert!(render_hosts("ok", None, &names).is_err(), "{bad:?}");
            assert!(
                render_hosts(bad, None, &BTreeMap::new()).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn builder_merges_and_keeps_ipv6() {
        let mut f = HostsFile::new();
        f.add(ip("2001:db8::5"), &["v6host"]).unwrap();
        f.add(ip("10.1.1.1"), &["a", "b"])
            .unwrap()
            .add(ip("10.1.1.1"), &["b", "c"])
            .unwrap();
        assert!(f
            .render()
            .ends_with("2001:db8::5\tv6host\n10.1.1.1\ta b c\n"));
    }
}
