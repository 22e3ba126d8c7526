//! Running iproute2 and iptables.
//!
//! berth drives the kernel through the `ip` and `iptables` binaries rather than
//! netlink crates:
//! - iptables must be the same binary Docker uses, so that berth's rules land in
//!   the very FORWARD chain whose DROP policy Docker sets (a separate nftables
//!   table would not help: a packet must be accepted by every base chain on the
//!   hook). Speaking the iptables-nft wire format by hand would be fragile.
//! - `ip` is then the consistent choice: synchronous, no async runtime, and each
//!   failure arrives as a readable message that can be passed to the user.
//!
//! Each call costs a process spawn (~1–3 ms); a network create or an attach is a
//! handful of calls, and batches (`ip -batch`, `iptables-restore`) keep it small.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("`{program}` was not found (looked in PATH, /usr/sbin, /sbin); install the `{package}` package (apt-get install {package})")]
    Missing {
        program: &'static str,
        package: &'static str,
    },
    #[error("could not run `{command}`: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        command: String,
        status: String,
        stderr: String,
    },
}

impl CommandError {
    /// The program's own complaint, for callers that tolerate a specific one
    /// (e.g. "Cannot find device" while removing something already gone).
    pub(crate) fn stderr(&self) -> &str {
        match self {
            CommandError::Failed { stderr, .. } => stderr,
            _ => "",
        }
    }
}

/// The external programs berth needs, with the Debian package that ships them.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Tool {
    Ip,
    Iptables,
    IptablesRestore,
}

impl Tool {
    fn program(self) -> &'static str {
        match self {
            Tool::Ip => "ip",
            Tool::Iptables => "iptables",
            Tool::IptablesRestore => "iptables-restore",
        }
    }

    fn package(self) -> &'static str {
        match self {
            Tool::Ip => "iproute2",
            Tool::Iptables | Tool::IptablesRestore => "iptables",
        }
    }

    /// Finds the binary. The sbin directories are searched even when PATH
    /// lacks them: CI and `sudo`-less shells often run with a user PATH.
    fn locate(self) -> Result<PathBuf, CommandError> {
        let program = self.program();
        let from_path = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .unwrap_or_default();
        let fallbacks = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from);
        from_path
            .into_iter()
            .chain(fallbacks)
            .map(|dir| dir.join(program))
            .find(|p| is_executable(p))
            .ok_or(CommandError::Missing {
                program,
                package: self.package(),
            })
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Checks that every external program is installed, naming the package to
/// install for the first one missing.
pub fn check_tools() -> Result<(), CommandError> {
    for tool in [Tool::Ip, Tool::Iptables, Tool::IptablesRestore] {
        tool.locate()?;
    }
    Ok(())
}

/// Runs `tool args…`, feeding `stdin` if given, and returns its stdout.
pub(crate) fn run(tool: Tool, args: &[&str], stdin: Option<&str>) -> Result<String, CommandError> {
    let path = tool.locate()?;
    let command = describe(tool, args, stdin);
    let mut cmd = Command::new(&path);
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Messages are parsed for "File exists"/"Cannot find device": keep them English.
        .env("LC_ALL", "C");
    let mut child = cmd.spawn().map_err(|source| CommandError::Spawn {
        command: command.clone(),
        source,
    })?;
    if let Some(input) = stdin {
        // Dropping the handle after writing closes the pipe so the tool sees EOF.
        if let Some(mut pipe) = child.stdin.take() {
            pipe.write_all(input.as_bytes())
                .map_err(|source| CommandError::Spawn {
                    command: command.clone(),
                    source,
                })?;
        }
    }
    let output = child
        .wait_with_output()
        .map_err(|source| CommandError::Spawn {
            command: command.clone(),
            source,
        })?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        let mut stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
        if stderr.is_empty() {
            stderr = String::from_utf8_lossy(&output.stdout).trim().to_string();
        }
        Err(CommandError::Failed {
            command,
            status: output.status.to_string(),
            stderr,
        })
    }
}

fn describe(tool: Tool, args: &[&str], stdin: Option<&str>) -> String {
    let mut text = std::iter::once(tool.program())
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ");
    if let Some(input) = stdin {
        // A batch's lines are the useful part of the message when one fails.
        let lines: Vec<&str> = input.lines().filter(|l| !l.trim().is_empty()).collect();
        text.push_str(&format!(" <<< [{}]", lines.join("; ")));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_includes_batch_lines() {
        let d = describe(
            Tool::Ip,
            &["-batch", "-"],
            Some("link set lo up\n\naddr add x\n"),
        );
        assert_eq!(d, "ip -batch - <<< [link set lo up; addr add x]");
    }

    #[test]
    fn missing_names_the_package() {
        let e = CommandError::Missing {
            program: "iptables",
            package: "iptables",
        };
        assert!(e.to_string().contains("apt-get install iptables"));
    }
}
