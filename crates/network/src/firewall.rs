//! berth's iptables rules.
//!
//! Layout (every rule carries `-m comment --comment berth:<network>`, the
//! jump carries `berth`):
//!
//! ```text
//! filter FORWARD      -I 1: -j BERTH-FORWARD            (once, shared by all networks)
//! filter BERTH-FORWARD, per network with bridge B:
//!   -i B -o B -j ACCEPT                                  traffic inside the network
//!   -o B -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT   replies (not internal)
//!   -i B -o brth+ -j DROP                                to other berth networks
//!   -i B -j ACCEPT                                       outbound (internal: DROP)
//!   -o B -j DROP                                         nothing else comes in
//! nat POSTROUTING:    -s SUBNET ! -o B -j MASQUERADE    (not internal)
//! ```
//!
//! Each network's verdicts are final (ACCEPT or DROP), so the outcome never
//! depends on FORWARD's policy: Docker sets it to DROP, other hosts leave
//! ACCEPT. The jump goes to the top of FORWARD rather than into DOCKER-USER
//! so berth works without Docker too; if dockerd restarts it re-inserts its
//! own jumps above berth's, which only return for berth's traffic.
//! Traffic between two containers on one bridge also passes FORWARD when
//! br_netfilter is loaded (`bridge-nf-call-iptables=1`), hence the first rule.
//! Published ports need no rule: berth's proxy connects from the host side
//! (or from inside the container's namespace), never by forwarding.
//!
//! Rules are added and removed in `iptables-restore --noflush` batches, so a
//! table's part of a network's rules lands all at once or not at all, and
//! removal matches rules by their full text (never by position, which
//! another program such as dockerd could shift between listing and deleting).
//! A machine-wide lock serialises berth processes around the shared chain.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::bridge::BRIDGE_PREFIX;
use crate::cmd::{self, CommandError, Tool};
use crate::network::Network;

/// The filter chain holding every berth network's forwarding rules.
pub const CHAIN: &str = "BERTH-FORWARD";
/// Comment on the FORWARD → BERTH-FORWARD jump.
pub const JUMP_COMMENT: &str = "berth";

/// The comment marking network `network`'s rules.
pub fn comment(network: &str) -> String {
    format!("berth:{network}")
}

#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    #[error("cannot take the firewall lock {path}: {source}")]
    Lock {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot install firewall rules for network `{network}`: {source}")]
    Install {
        network: String,
        source: CommandError,
    },
    #[error("cannot remove firewall rules for network `{network}`: {source}")]
    Remove {
        network: String,
        source: CommandError,
    },
}

/// The rules of one network as `iptables-restore` lines, filter then nat.
pub(crate) fn rules(network: &Network) -> (Vec<String>, Vec<String>) {
    let b = &network.bridge;
    let c = comment(&network.name);
    // `enable_icc: false`: containers of the network cannot reach each other.
    let icc = if network.icc { "ACCEPT" } else { "DROP" };
    let mut filter = vec![format!(
        "-A {CHAIN} -i {b} -o {b} -m comment --comment {c} -j {icc}"
    )];
    if !b.starts_with(BRIDGE_PREFIX) {
        // A bridge named by the user escapes other networks' `-o brth+`
        // drop, and their outbound accept comes before this network's
        // final drop: this rule, first in the chain, keeps them out.
        filter.insert(
            0,
            format!(
                "-I {CHAIN} 1 ! -i {b} -o {b} -m conntrack ! --ctstate RELATED,ESTABLISHED -m comment --comment {c} -j DROP"
            ),
        );
    }
    if !network.internal {
        filter.push(format!(
            "-A {CHAIN} -o {b} -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment {c} -j ACCEPT"
        ));
    }
    // iptables' interface wildcard for every berth bridge: `brth+`.
    let all_bridges = format!("{}+", BRIDGE_PREFIX.trim_end_matches('-'));
    filter.push(format!(
        "-A {CHAIN} -i {b} -o {all_bridges} -m comment --comment {c} -j DROP"
    ));
    let outbound = if network.internal { "DROP" } else { "ACCEPT" };
    filter.push(format!(
        "-A {CHAIN} -i {b} -m comment --comment {c} -j {outbound}"
    ));
    filter.push(format!(
        "-A {CHAIN} -o {b} -m comment --comment {c} -j DROP"
    ));
    let mut nat = Vec::new();
    if !network.internal && network.masquerade {
        nat.push(format!(
            "-A POSTROUTING -s {} ! -o {b} -m comment --comment {c} -j MASQUERADE",
            network.subnet
        ));
    }
    (filter, nat)
}

/// Installs the network's rules (replacing any leftovers of the same network)
/// and the shared chain and jump if missing. On failure, rules added by this
/// call are removed again.
pub(crate) fn install(network: &Network) -> Result<(), FirewallError> {
    let _lock = lock()?;
    let err = |source| FirewallError::Install {
        network: network.name.clone(),
        source,
    };
    ensure_chain_and_jump().map_err(err)?;
    let result = delete_rules_of(&network.name).and_then(|()| {
        let (filter, nat) = rules(network);
        restore(&filter, &nat)
    });
    if let Err(source) = result {
        let _ = delete_rules_of(&network.name);
        let _ = drop_chain_if_unused();
        return Err(err(source));
    }
    Ok(())
}

/// Removes every rule of the named network, and the shared chain and jump
/// once no network uses them. Succeeds when there is nothing to remove.
pub(crate) fn uninstall(network: &str) -> Result<(), FirewallError> {
    let _lock = lock()?;
    let err = |source| FirewallError::Remove {
        network: network.to_string(),
        source,
    };
    delete_rules_of(network).map_err(err)?;
    drop_chain_if_unused().map_err(err)
}

/// Whether all of the network's rules and the jump are in place (they vanish
/// on reboot, or when someone flushes the tables).
pub(crate) fn is_installed(network: &Network) -> Result<bool, FirewallError> {
    let err = |source| FirewallError::Install {
        network: network.name.clone(),
        source,
    };
    let filter = list("filter", None).map_err(err)?;
    let nat = list("nat", Some("POSTROUTING")).map_err(err)?;
    let (want_filter, want_nat) = rules(network);
    let c = comment(&network.name);
    let have_filter = filter.iter().filter(|l| has_comment(l, &c)).count();
    let have_nat = nat.iter().filter(|l| has_comment(l, &c)).count();
    Ok(jump_present(&filter) && have_filter == want_filter.len() && have_nat == want_nat.len())
}

/// The machine-wide berth firewall lock. Separate from each state
/// directory's lock: the chain is shared by every berth on the host.
fn lock() -> Result<File, FirewallError> {
    let dir = if Path::new("/run/lock").is_dir() {
        "/run/lock"
    } else {
        "/run"
    };
    let path = Path::new(dir).join("berth-firewall.lock");
    let err = |source| FirewallError::Lock {
        path: path.clone(),
        source,
    };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(err)?;
    loop {
        // SAFETY: flock on a descriptor owned by `file` for the whole call.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
            return Ok(file);
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(err(e));
        }
    }
}

fn ensure_chain_and_jump() -> Result<(), CommandError> {
    let filter = list("filter", None)?;
    if !filter.iter().any(|l| l == &format!("-N {CHAIN}")) {
        iptables(&["-t", "filter", "-N", CHAIN])?;
    }
    if !jump_present(&filter) {
        iptables(&[
            "-t",
            "filter",
            "-I",
            "FORWARD",
            "1",
            "-m",
            "comment",
            "--comment",
            JUMP_COMMENT,
            "-j",
            CHAIN,
        ])?;
    }
    Ok(())
}

fn jump_present(filter: &[String]) -> bool {
    filter.iter().any(|l| is_jump(l))
}

fn is_jump(line: &str) -> bool {
    let t = tokens(line);
    t.len() >= 2
        && t[0] == "-A"
        && t[1] == "FORWARD"
        && t.windows(2).any(|w| w[0] == "-j" && w[1] == CHAIN)
}

/// Deletes the jump and the chain when the chain holds no rule any more.
fn drop_chain_if_unused() -> Result<(), CommandError> {
    let filter = list("filter", None)?;
    let chain_exists = filter.iter().any(|l| l == &format!("-N {CHAIN}"));
    let in_use = filter
        .iter()
        .any(|l| l.starts_with(&format!("-A {CHAIN} ")));
    if in_use {
        return Ok(());
    }
    let jumps: Vec<String> = filter
        .iter()
        .filter(|l| is_jump(l))
        .map(|l| l.replacen("-A ", "-D ", 1))
        .collect();
    let mut lines = jumps;
    if chain_exists {
        lines.push(format!("-X {CHAIN}"));
    }
    restore(&lines, &[])
}

fn delete_rules_of(network: &str) -> Result<(), CommandError> {
    let c = comment(network);
    let deletions = |lines: Vec<String>| -> Vec<String> {
        lines
            .into_iter()
            .filter(|l| l.starts_with("-A ") && has_comment(l, &c))
            .map(|l| l.replacen("-A ", "-D ", 1))
            .collect()
    };
    let chain_exists = list("filter", None)?
        .iter()
        .any(|l| l == &format!("-N {CHAIN}"));
    let filter = if chain_exists {
        deletions(list("filter", Some(CHAIN))?)
    } else {
        Vec::new()
    };
    let nat = deletions(list("nat", Some("POSTROUTING"))?);
    restore(&filter, &nat)
}

/// `iptables -S` of a table or one chain, one rule per line.
fn list(table: &str, chain: Option<&str>) -> Result<Vec<String>, CommandError> {
    let mut args = vec!["-t", table, "-S"];
    args.extend(chain);
    Ok(iptables(&args)?.lines().map(str::to_string).collect())
}

fn iptables(args: &[&str]) -> Result<String, CommandError> {
    // `-w`: wait for the xtables lock instead of failing when dockerd or
    // another tool holds it (legacy backend; harmless with nf_tables).
    let mut all = vec!["-w"];
    all.extend_from_slice(args);
    cmd::run(Tool::Iptables, &all, None)
}

fn restore(filter: &[String], nat: &[String]) -> Result<(), CommandError> {
    if filter.is_empty() && nat.is_empty() {
        return Ok(());
    }
    let mut input = String::new();
    for (table, lines) in [("filter", filter), ("nat", nat)] {
        if lines.is_empty() {
            continue;
        }
        input.push_str(&format!("*{table}\n"));
        for line in lines {
            input.push_str(line);
            input.push('\n');
        }
        input.push_str("COMMIT\n");
    }
    cmd::run(Tool::IptablesRestore, &["-w", "--noflush"], Some(&input)).map(|_| ())
}

/// Whether an `iptables -S` line carries exactly this comment (iptables
/// prints it quoted).
fn has_comment(line: &str, comment: &str) -> bool {
    tokens(line)
        .windows(2)
        .any(|w| w[0] == "--comment" && w[1] == comment)
}

/// Splits an `iptables -S` line into words, undoing its double quotes and
/// backslash escapes.
fn tokens(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quoted = false;
    let mut chars = line.chars();
    while let Some(ch) = chars.next() {
        match ch {
            '\\' => {
                if let Some(next) = chars.next() {
                    cur.push(next);
                }
                in_word = true;
            }
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(internal: bool) -> Network {
        Network::describe(
            "proj_default",
            "172.31.4.0/24".parse().unwrap(),
            internal,
            1500,
        )
        .unwrap()
    }

    #[test]
    fn rules_for_a_normal_network() {
        let n = net(false);
        let b = &n.bridge;
        let (filter, nat) = rules(&n);
        assert_eq!(
            filter,
            [
                format!("-A BERTH-FORWARD -i {b} -o {b} -m comment --comment berth:proj_default -j ACCEPT"),
                format!("-A BERTH-FORWARD -o {b} -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment berth:proj_default -j ACCEPT"),
                format!("-A BERTH-FORWARD -i {b} -o brth+ -m comment --comment berth:proj_default -j DROP"),
                format!("-A BERTH-FORWARD -i {b} -m comment --comment berth:proj_default -j ACCEPT"),
                format!("-A BERTH-FORWARD -o {b} -m comment --comment berth:proj_default -j DROP"),
            ]
        );
        assert_eq!(
            nat,
            [format!("-A POSTROUTING -s 172.31.4.0/24 ! -o {b} -m comment --comment berth:proj_default -j MASQUERADE")]
        );
    }

    #[test]
    fn internal_network_has_no_way_out() {
        let (filter, nat) = rules(&net(true));
        assert!(nat.is_empty());
        assert!(!filter.iter().any(|r| r.contains("ESTABLISHED")));
        assert!(filter.iter().any(|r| r.contains("-i brth-")
            && r.ends_with(" -m comment --comment berth:proj_default -j DROP")
            && !r.contains(" -o ")));
        assert!(!filter
            .iter()
            .any(|r| !r.contains(" -o ") && r.ends_with("-j ACCEPT")));
    }

    #[test]
    fn driver_options_shape_the_rules() {
        let mut n = net(false);
        n.bridge = "mybr0".into();
        n.masquerade = false;
        n.icc = false;
        let (filter, nat) = rules(&n);
        assert!(nat.is_empty(), "{nat:?}");
        assert_eq!(
            filter[0],
            "-I BERTH-FORWARD 1 ! -i mybr0 -o mybr0 -m conntrack ! --ctstate RELATED,ESTABLISHED -m comment --comment berth:proj_default -j DROP"
        );
        assert_eq!(
            filter[1],
            "-A BERTH-FORWARD -i mybr0 -o mybr0 -m comment --comment berth:proj_default -j DROP"
        );
        // Outbound is still forwarded, with the containers' own addresses.
        assert!(filter
            .iter()
            .any(|r| r
                == "-A BERTH-FORWARD -i mybr0 -m comment --comment berth:proj_default -j ACCEPT"));
    }

    #[test]
    fn comment_matching_is_exact() {
        let line =
            r#"-A BERTH-FORWARD -i brth-1 -o brth-1 -m comment --comment "berth:a" -j ACCEPT"#;
        assert!(has_comment(line, "berth:a"));
        assert!(!has_comment(line, "berth:ab"));
        assert!(!has_comment(line, "berth"));
        assert!(has_comment(
            "-A X -m comment --comment berth:a -j ACCEPT",
            "berth:a"
        ));
        assert!(is_jump(
            r#"-A FORWARD -m comment --comment "berth" -j BERTH-FORWARD"#
        ));
        assert!(!is_jump("-A FORWARD -j DOCKER-USER"));
    }

    #[test]
    fn tokenizer_handles_quotes_and_escapes() {
        assert_eq!(
            tokens(r#"-A X --comment "two words" -j "A\"B"  "#),
            ["-A", "X", "--comment", "two words", "-j", "A\"B"]
        );
        assert_eq!(tokens(r#"--comment """#), ["--comment", ""]);
        assert!(tokens("   ").is_empty());
    }
}
