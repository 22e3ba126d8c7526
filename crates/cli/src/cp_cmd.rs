//! `berth cp`: copy files between the host and a service container, like
//! `docker compose cp` (`SERVICE:PATH` on one side, a local path or `-`, a
//! tar stream on stdout or stdin, on the other).

use crate::options::load_options;
use crate::GlobalArgs;
use anyhow::{bail, Context, Result};
use berth_engine::backend::{CopyRequest, HostEnd};
use clap::Args;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct CpArgs {
    /// SERVICE:SRC_PATH, a local path, or `-` to read a tar stream from stdin
    src: String,
    /// SERVICE:DEST_PATH, a local path, or `-` to write a tar stream to stdout
    dest: String,
    /// Which container of a scaled service (1-based)
    #[arg(long, default_value_t = 1)]
    index: usize,
}

/// `service:path` when `service` names one; a local path otherwise (also
/// anything starting with `/` or `.`, as docker reads it).
fn split<'a>(arg: &'a str, project: &berth_compose::Project) -> Option<(&'a str, &'a str)> {
    if arg.starts_with('/') || arg.starts_with('.') {
        return None;
    }
    let (service, path) = arg.split_once(':')?;
    project
        .services
        .contains_key(service)
        .then_some((service, path))
}

pub fn cp(global: &GlobalArgs, args: CpArgs) -> Result<ExitCode> {
    let loaded = berth_compose::load(&load_options(global)?)?;
    let project = &loaded.project;
    let (service, inside, outside, out) =
        match (split(&args.src, project), split(&args.dest, project)) {
            (Some((s, p)), None) => (s, p, args.dest.as_str(), true),
            (None, Some((s, p))) => (s, p, args.src.as_str(), false),
            (Some(_), Some(_)) => {
                bail!("copying between containers is not supported: one side must be local")
            }
            (None, None) => bail!("one side must be SERVICE:PATH with a service of this project"),
        };
    if !inside.starts_with('/') {
        bail!("{service}:{inside}: the path inside the container must be absolute");
    }
    let backend = crate::engine::backend(global)?;
    let state = backend
        .observe(&project.name)?
        .with_context(|| format!("project {} is not running", project.name))?;
    let Some(container) = state.running(service, args.index) else {
        bail!(
            "service {service:?} has no running container #{}",
            args.index
        );
    };
    // `-` is a tar stream on stdout or stdin, as with `docker cp`.
    let request = CopyRequest {
        container: container.clone(),
        path: inside.to_string(),
        host: match outside {
            "-" => HostEnd::Stdio,
            path => HostEnd::Path(path.into()),
        },
        out,
    };
    backend
        .copy(&project.name, &request)
        .with_context(|| format!("copying {} to {}", args.src, args.dest))?;
    Ok(ExitCode::SUCCESS)
}
