//! `/etc/resolv.conf` for containers.
//!
//! Containers get the host's upstream resolvers. Loopback nameservers (a
//! systemd-resolved stub at 127.0.0.53, a local dnsmasq) answer only in the
//! host's namespace, so they are dropped; when nothing else is left, the real
//! upstreams are read from systemd-resolved's own list. Service names are
//! resolved through `/etc/hosts` (see `hosts.rs`), not DNS.
//!
//! Later improvement: a small DNS server per network on the gateway address,
//! so that names follow recreated containers without rewriting files and
//! `dns_search`/aliases behave exactly like docker's embedded 127.0.0.11.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// The host file containers' resolvers are normally taken from.
pub const HOST_RESOLV_CONF: &str = "/etc/resolv.conf";
/// systemd-resolved's list of real upstreams, used when the host file names
/// only its loopback stub.
pub const SYSTEMD_RESOLV_CONF: &str = "/run/systemd/resolve/resolv.conf";

#[derive(Debug, thiserror::Error)]
pub enum ResolvError {
    #[error("no nameserver usable from a container: {checked} name only loopback or IPv6 resolvers (or none); set `dns:` for the service")]
    NoUpstream { checked: String },
    #[error("invalid search domain `{0}`")]
    InvalidSearch(String),
    #[error("invalid resolver option `{0}`")]
    InvalidOption(String),
}

/// The parts of a resolv.conf that berth keeps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvConf {
    pub nameservers: Vec<IpAddr>,
    pub search: Vec<String>,
    pub options: Vec<String>,
}

impl ResolvConf {
    /// Parses resolv.conf text. Unknown or malformed lines are skipped, as the
    /// C library does; `domain` is treated as a one-entry `search`.
    pub fn parse(text: &str) -> ResolvConf {
        let mut conf = ResolvConf::default();
        for line in text.lines() {
            let line = line.split(['#', ';']).next().unwrap_or("");
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => {
                    // A scoped IPv6 address ("fe80::1%eth0") is host-only anyway.
                    if let Some(addr) = words.next().and_then(|w| w.parse().ok()) {
                        conf.nameservers.push(addr);
                    }
                }
                // The last search/domain line wins, as in glibc.
                Some("search") | Some("domain") => {
                    conf.search = words.map(str::to_string).collect();
                }
                Some("options") => conf.options.extend(words.map(str::to_string)),
                _ => {}
            }
        }
        conf
    }

    /// The nameservers a container on a berth (IPv4-only) network can reach.
    pub fn usable_nameservers(&self) -> Vec<IpAddr> {
        self.nameservers
            .iter()
            .copied()
            .filter(|ip| match ip {
                IpAddr::V4(v4) => !v4.is_loopback() && !v4.is_unspecified(),
                IpAddr::V6(_) => false,
            })
            .collect()
    }

    /// The host's configuration as containers should see it, read from the
    /// standard locations.
    pub fn for_containers() -> Result<ResolvConf, ResolvError> {
        ResolvConf::for_containers_from(&[
            PathBuf::from(HOST_RESOLV_CONF),
            PathBuf::from(SYSTEMD_RESOLV_CONF),
        ])
    }

    /// Like [`ResolvConf::for_containers`], trying `files` in order: the first
    /// with a usable nameserver supplies nameservers, search list and options.
    pub fn for_containers_from(files: &[PathBuf]) -> Result<ResolvConf, ResolvError> {
        for file in files {
            let Ok(text) = std::fs::read_to_string(file) else {
                continue;
            };
            let conf = ResolvConf::parse(&text);
            let nameservers = conf.usable_nameservers();
            if !nameservers.is_empty() {
                return Ok(ResolvConf {
                    nameservers,
                    ..conf
                });
            }
        }
        Err(ResolvError::NoUpstream {
            checked: files
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
                .join(" and "),
        })
    }

    /// Applies a service's `dns`, `dns_search` and `dns_opt`, each replacing
    /// the host's value when given (docker's behaviour).
    pub fn with_overrides(
        mut self,
        dns: &[IpAddr],
        dns_search: &[String],
        dns_opt: &[String],
    ) -> Result<ResolvConf, ResolvError> {
        if !dns.is_empty() {
            self.nameservers = dns.to_vec();
        }
        if !dns_search.is_empty() {
            for s in dns_search {
                if !is_word(s) {
                    return Err(ResolvError::InvalidSearch(s.clone()));
                }
            }
            self.search = dns_search.to_vec();
        }
        if !dns_opt.is_empty() {
            for o in dns_opt {
                if !is_word(o) {
                    return Err(ResolvError::InvalidOption(o.clone()));
                }
            }
            self.options = dns_opt.to_vec();
        }
        Ok(self)
    }

    /// resolv.conf text. `source` names where the values came from, in a
    /// comment, so someone reading the file inside a container knows.
    pub fn render(&self, source: Option<&Path>) -> String {
        let mut out = String::new();
        match source {
            Some(path) => {
                let _ = writeln!(out, "# Generated by berth from {}", path.display());
            }
            None => out.push_str("# Generated by berth\n"),
        }
        for ns in &self.nameservers {
            let _ = writeln!(out, "nameserver {ns}");
        }
        // Values were parsed from whitespace-split words or checked by
        // `with_overrides`, so none can smuggle in a line break.
        let search: Vec<&str> = self
            .search
            .iter()
            .map(String::as_str)
            .filter(|s| is_word(s))
            .collect();
        if !search.is_empty() {
            let _ = writeln!(out, "search {}", search.join(" "));
        }
        let options: Vec<&str> = self
            .options
            .iter()
            .map(String::as_str)
            .filter(|s| is_word(s))
            .collect();
        if !options.is_empty() {
            let _ = writeln!(out, "options {}", options.join(" "));
        }
        out
    }
}

fn is_word(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && !s
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '#')
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn parse_keeps_nameservers_search_options() {
        let conf = ResolvConf::parse(
            "# comment\nnameserver 127.0.0.53\nnameserver 10.255.255.53 # here\nnameserver ::1\n\
             nameserver fe80::1%eth0\nnameserver bogus\ndomain example.org\nsearch a.example b.example\n\
             options edns0 trust-ad\noptions ndots:2\n",
        );
        assert_eq!(conf.nameservers.len(), 3);
        assert_eq!(
            conf.usable_nameservers(),
            vec!["10.255.255.53".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(conf.search, ["a.example", "b.example"]);
        assert_eq!(conf.options, ["edns0", "trust-ad", "ndots:2"]);
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn loopback_only_falls_back_to_systemd_list() {
        let stub = file("nameserver 127.0.0.53\nsearch stub.example\noptions edns0 trust-ad\n");
        let real = file("nameserver 10.255.255.53\nnameserver 2001:db8::1\nsearch real.example\n");
        let conf =
            ResolvConf::for_containers_from(&[stub.path().into(), real.path().into()]).unwrap();
        assert_eq!(
            conf.nameservers,
            vec!["10.255.255.53".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(conf.search, ["real.example"]);
        assert_eq!(
            conf.render(None),
            "# Generated by berth\nnameserver 10.255.255.53\nsearch real.example\n"
        );
    }

    #[test]
    fn direct_file_used_when_it_has_upstreams() {
        let host = file("nameserver 10.255.255.53\n");
        let conf =
            ResolvConf::for_containers_from(&[host.path().into(), "/nonexistent".into()]).unwrap();
        assert_eq!(conf.nameservers.len(), 1);
    }

    #[test]
    fn nothing_usable_is_a_clear_error() {
        let stub = file("nameserver 127.0.0.53\n");
        let err = ResolvConf::for_containers_from(&[stub.path().into(), "/nonexistent".into()])
            .unwrap_err();
        assert!(err.to_string().contains("no nameserver usable"), "{err}");
    }

    #[test]
    fn overrides_replace_and_are_checked() {
        let conf = ResolvConf::parse("nameserver 10.255.255.53\nsearch x\n");
        let conf = conf
            .with_overrides(&["10.0.0.2".parse().unwrap()], &[], &["ndots:1".into()])
            .unwrap();
        assert_eq!(conf.render(Some(Path::new("/etc/resolv.conf"))),
            "# Generated by berth from /etc/resolv.conf\nnameserver 10.0.0.2\nsearch x\noptions ndots:1\n");
        let bad = ResolvConf::default().with_overrides(&[], &["a\nnameserver 1.1.1.1".into()], &[]);
        assert!(matches!(bad, Err(ResolvError::InvalidSearch(_))));
    }
}
