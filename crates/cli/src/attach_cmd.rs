//! `berth attach SERVICE`: this terminal's stdin, stdout and stderr joined
//! to a running service container's, as `docker compose attach` does.

use crate::options::load_options;
use crate::GlobalArgs;
use anyhow::{bail, Context, Result};
use berth_engine::backend::{AttachOutcome, AttachRequest};
use clap::Args;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct AttachArgs {
    /// Override the key sequence for detaching from the container
    #[arg(long, value_name = "KEYS", default_value = "ctrl-p,ctrl-q")]
    detach_keys: String,
    /// Which container of a scaled service (1-based)
    #[arg(long, default_value_t = 1)]
    index: usize,
    /// Do not attach stdin
    #[arg(long)]
    no_stdin: bool,
    /// Proxy the signals this process gets to the container's main process
    #[arg(long, value_name = "BOOL", default_value_t = true, num_args = 0..=1,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    sig_proxy: bool,
    service: String,
}

/// Docker's detach-key syntax: comma-separated keys, each `ctrl-X` (X one
/// of a–z, @, [, \, ], ^, _) or a single character.
pub fn detach_keys(text: &str) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for key in text.split(',') {
        let lower = key.to_ascii_lowercase();
        let byte = match lower.strip_prefix("ctrl-") {
            Some(k) if k.len() == 1 => match k.as_bytes()[0] {
                c @ b'a'..=b'z' => c - b'a' + 1,
                b'@' => 0,
                c @ (b'[' | b'\\' | b']' | b'^' | b'_') => c - b'[' + 27,
                _ => bail!("--detach-keys: {key:?} is not a key (ctrl-a … ctrl-z, ctrl-@, ctrl-[, ctrl-\\, ctrl-], ctrl-^, ctrl-_, or one character)"),
            },
            _ if key.len() == 1 => key.as_bytes()[0],
            _ => bail!("--detach-keys: {key:?} is not a key (ctrl-a … ctrl-z, ctrl-@, ctrl-[, ctrl-\\, ctrl-], ctrl-^, ctrl-_, or one character)"),
        };
        out.push(byte);
    }
    Ok(out)
}

pub fn attach(global: &GlobalArgs, args: AttachArgs) -> Result<ExitCode> {
    let detach_keys = detach_keys(&args.detach_keys)?;
    let loaded = berth_compose::load(&load_options(global)?)?;
    let project = loaded.project.name.clone();
    if !loaded.project.services.contains_key(&args.service) {
        bail!("no such service: {}", args.service);
    }
    let backend = crate::engine::backend(global)?;
    let state = backend
        .observe(&project)?
        .with_context(|| format!("project {project} is not running"))?;
    let Some(container) = state.running(&args.service, args.index) else {
        bail!(
            "service {:?} has no running container #{}",
            args.service,
            args.index
        );
    };
    let request = AttachRequest {
        container: container.clone(),
        stdin: !args.no_stdin,
        sig_proxy: args.sig_proxy,
        detach_keys,
    };
    match backend.attach(&project, &request)? {
        AttachOutcome::Exited(code) => Ok(ExitCode::from(code.clamp(0, 255) as u8)),
        AttachOutcome::Detached => {
            eprintln!("read escape sequence");
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_keys_parse_as_docker_reads_them() {
        assert_eq!(detach_keys("ctrl-p,ctrl-q").unwrap(), [16, 17]);
        assert_eq!(detach_keys("ctrl-@,ctrl-[,ctrl-_").unwrap(), [0, 27, 31]);
        assert_eq!(detach_keys("ctrl-A,x").unwrap(), [1, b'x']);
        for bad in ["ctrl-", "ctrl-pq", "ab", "", "ctrl-1"] {
            assert!(detach_keys(bad).is_err(), "{bad}");
        }
    }
}
