//! `berth config`: the normalized project, or one facet of it.

use crate::{options::load_options, Format, GlobalArgs};
use anyhow::{bail, Context, Result};
use berth_compose::{emit, hash, Loaded};
use clap::Args;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct ConfigArgs {
    /// Only these services (and what they depend on)
    services_filter: Vec<String>,
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Yaml)]
    format: Format,
    /// Only validate; print nothing
    #[arg(short, long)]
    quiet: bool,
    /// Print the service names, one per line
    #[arg(long)]
    services: bool,
    /// Print the volume names, one per line
    #[arg(long)]
    volumes: bool,
    /// Print the network names, one per line
    #[arg(long)]
    networks: bool,
    /// Print the profile names, one per line
    #[arg(long)]
    profiles: bool,
    /// Print the models the project uses, one per line
    #[arg(long)]
    models: bool,
    /// Print the image names, one per line
    #[arg(long)]
    images: bool,
    /// Print the config hash of SERVICE (`*` for all), as `SERVICE HASH` lines
    #[arg(long, value_name = "SERVICE")]
    hash: Option<String>,
    /// Print the variables the files use, with their defaults
    #[arg(long)]
    variables: bool,
    /// Don't interpolate environment variables
    #[arg(long)]
    no_interpolate: bool,
    /// Don't check that references between services and resources resolve
    #[arg(long)]
    no_consistency: bool,
    /// Don't resolve `env_file` and bare variables into `environment`
    #[arg(long)]
    no_env_resolution: bool,
    /// Write to FILE instead of standard output
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
}

pub fn run(global: &GlobalArgs, args: ConfigArgs) -> Result<ExitCode> {
    let mut opts = load_options(global)?;
    opts.skip_interpolation = args.no_interpolate;
    opts.skip_consistency = args.no_consistency;
    opts.skip_env_resolution = args.no_env_resolution;
    let loaded = berth_compose::load(&opts)?;
    for w in &loaded.warnings {
        eprintln!("warning: {w}");
    }
    if args.quiet {
        return Ok(ExitCode::SUCCESS);
    }
    for (flag, set) in [
        ("--no-interpolate", args.no_interpolate),
        ("--variables", args.variables),
    ] {
        if set && !args.services_filter.is_empty() {
            eprintln!("warning: service filtering is not applied when {flag} is set");
        }
    }
    let text = render(&loaded, &args)?;
    match &args.output {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?
        }
        None => {
            let mut out = std::io::stdout().lock();
            // A closed pipe (`berth config | head`) is not an error worth a message.
            let _ = out.write_all(text.as_bytes());
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn lines(items: impl IntoIterator<Item = String>) -> String {
    items.into_iter().map(|s| s + "\n").collect()
}

fn render(loaded: &Loaded, args: &ConfigArgs) -> Result<String> {
    let project = &loaded.project;
    if args.services {
        return Ok(lines(project.services.keys().cloned()));
    }
    if args.volumes {
        return Ok(lines(project.volumes.keys().cloned()));
    }
    if args.networks {
        return Ok(lines(project.networks.keys().cloned()));
    }
    if args.profiles {
        return Ok(lines(loaded.all_profiles.iter().cloned()));
    }
    if args.models {
        let models = project.extra.get("models").and_then(|m| m.as_object());
        return Ok(lines(models.into_iter().flatten().map(|(name, def)| {
            def.get("model")
                .and_then(|m| m.as_str())
                .unwrap_or(name)
                .to_string()
        })));
    }
    if args.images {
        return Ok(lines(project.services.iter().map(|(name, svc)| {
            svc.image
                .clone()
                .unwrap_or_else(|| format!("{}-{}", project.name, name))
        })));
    }
    if let Some(which) = &args.hash {
        let names: Vec<&String> = if which == "*" {
            project.services.keys().collect()
        } else {
            let mut names = Vec::new();
            for n in which.split(',') {
                match project.services.get_key_value(n) {
                    Some((k, _)) => names.push(k),
                    None => bail!("no such service: {n}"),
                }
            }
            names
        };
        return Ok(lines(names.into_iter().map(|n| {
            format!("{n} {}", hash::service_hash(&project.services[n]))
        })));
    }
    if args.variables {
        return Ok(match args.format {
            Format::Json => {
                let map: serde_json::Map<String, serde_json::Value> = loaded
                    .variables
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            serde_json::json!({
                                "Name": v.name,
                                "DefaultValue": v.default_value,
                                "PresenceValue": v.presence_value,
                                "Required": v.required,
                            }),
                        )
                    })
                    .collect();
                pretty_json(&serde_json::Value::Object(map), b"    ")? + "\n"
            }
            Format::Yaml => {
                let mut out = String::new();
                for (k, v) in &loaded.variables {
                    out.push_str(&format!("{}:\n", emit::scalar_string(k)));
                    out.push_str(&format!("    name: {}\n", emit::scalar_string(&v.name)));
                    out.push_str(&format!(
                        "    defaultvalue: {}\n",
                        emit::scalar_string(&v.default_value)
                    ));
                    out.push_str(&format!(
                        "    presencevalue: {}\n",
                        emit::scalar_string(&v.presence_value)
                    ));
                    out.push_str(&format!("    required: {}\n", v.required));
                }
                out
            }
        });
    }
    if args.no_interpolate {
        // Without interpolation some values cannot be parsed: print the
        // document as loaded, keys sorted like compose's map output.
        let mut doc = loaded.document.clone();
        if let serde_json::Value::Object(m) = &mut doc {
            m.sort_keys();
        }
        return Ok(match args.format {
            Format::Yaml => emit::to_yaml(&doc),
            Format::Json => pretty_json(&doc, b"    ")? + "\n",
        });
    }
    let mut project = project.clone();
    if !args.services_filter.is_empty() {
        let keep = with_dependencies(&project, &args.services_filter)?;
        project.services.retain(|name, _| keep.contains(name));
    }
    let json = emit::ordered(&project);
    Ok(match args.format {
        Format::Yaml => emit::to_yaml(&json),
        Format::Json => pretty_json(&json, b"    ")? + "\n",
    })
}

fn with_dependencies(project: &berth_compose::Project, wanted: &[String]) -> Result<Vec<String>> {
    let mut keep: Vec<String> = Vec::new();
    let mut todo: Vec<String> = wanted.to_vec();
    while let Some(name) = todo.pop() {
        if keep.contains(&name) {
            continue;
        }
        let Some(svc) = project.services.get(&name) else {
            bail!("no such service: {name}");
        };
        todo.extend(svc.depends_on.keys().cloned());
        keep.push(name);
    }
    Ok(keep)
}

fn pretty_json(v: &serde_json::Value, indent: &[u8]) -> Result<String> {
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(indent);
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    serde::Serialize::serialize(v, &mut ser)?;
    Ok(String::from_utf8(buf)?)
}
