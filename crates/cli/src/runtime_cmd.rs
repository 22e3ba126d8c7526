//! Runtime commands: `audit`, `upgrade`, `runtime ls|pull|rm|prune`.

use crate::{GlobalArgs, ListFormat};
use anyhow::{bail, Context, Result};
use berth_runtimes::audit::{self, Origin, ServiceAudit};
use berth_runtimes::rewrite;
use berth_runtimes::upgrade::{self, Strategy};
use berth_runtimes::vulns::{Severity, VulnDb};
use berth_runtimes::{Progress, RuntimeSpec, Runtimes, Version, VersionReq};
use clap::{Args, Subcommand, ValueEnum};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailOn {
    /// Any vulnerability, ungraded ones included (the default)
    Unknown,
    Low,
    Medium,
    High,
    Critical,
    /// Never fail on vulnerabilities
    None,
}

#[derive(Args, Debug)]
pub struct AuditArgs {
    /// Services to audit (default: all)
    services: Vec<String>,
    /// Output format
    #[arg(long, value_enum, default_value_t = ListFormat::Table)]
    format: ListFormat,
    /// Exit 1 when a vulnerability of this severity or above is found
    /// (`unknown`: any at all; `low`..`critical` count graded ones only)
    #[arg(long, value_enum, default_value_t = FailOn::Unknown, value_name = "SEVERITY")]
    fail_on: FailOn,
    /// Update the vulnerability data first (npm registry's
    /// is-my-node-vulnerable, or BERTH_NODE_VULNS_URL), into the state dir
    #[arg(long)]
    refresh: bool,
}

#[derive(Args, Debug)]
pub struct UpgradeArgs {
    /// Services to upgrade (default: every service with a recognised runtime)
    services: Vec<String>,
    /// The lowest release of the same line with every fix that line got (default)
    #[arg(long, conflicts_with_all = ["latest_patch", "to"])]
    security: bool,
    /// The newest release of the same line
    #[arg(long, conflicts_with = "to")]
    latest_patch: bool,
    /// Exactly this version
    #[arg(long, value_name = "VERSION")]
    to: Option<String>,
    /// Show the diff, change nothing
    #[arg(long)]
    dry_run: bool,
}

#[derive(Subcommand, Debug)]
pub enum RuntimeCommand {
    /// List runtimes in the store
    Ls {
        #[arg(long, value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
    },
    /// Fetch, verify and store a runtime (e.g. node@4.2, node@lts)
    Pull { spec: String },
    /// Remove runtimes from the store (node@4.2.2, or a range: node@4)
    Rm {
        #[arg(required = true)]
        specs: Vec<String>,
    },
    /// Remove runtimes that the compose project in the current directory
    /// (or -f) does not reference, and leftovers of interrupted installs.
    /// Other projects' runtimes are not known to berth: run it where the
    /// projects you keep live, or use `rm`.
    Prune {
        /// Show what would go, remove nothing
        #[arg(long)]
        dry_run: bool,
    },
}

fn state() -> PathBuf {
    berth_oci::store::state_dir()
}

fn open_runtimes() -> Result<Runtimes> {
    Runtimes::open(&state()).context("opening the runtime store")
}

/// Progress on stderr: steps as lines, download counts in place on a terminal.
pub fn progress_printer() -> impl FnMut(&Progress<'_>) {
    let tty = std::io::stderr().is_terminal();
    move |p: &Progress<'_>| match p {
        Progress::Step(s) => eprintln!("{s}"),
        Progress::Download { url, done, total } => {
            let name = url.rsplit('/').next().unwrap_or(url);
            let mib = |b: u64| b as f64 / (1 << 20) as f64;
            let line = match total {
                Some(t) => format!("  {name}: {:.1}/{:.1} MiB", mib(*done), mib(*t)),
                None => format!("  {name}: {:.1} MiB", mib(*done)),
            };
            if tty {
                eprint!("\r{line}");
                if Some(*done) == *total {
                    eprintln!();
                }
            } else if Some(*done) == *total || total.is_none() {
                eprintln!("{line}");
            }
        }
    }
}

fn load(global: &GlobalArgs) -> Result<berth_compose::Loaded> {
    let opts = crate::options::load_options(global)?;
    Ok(berth_compose::load(&opts)?)
}

fn check_services(project: &berth_compose::Project, names: &[String]) -> Result<()> {
    for n in names {
        if !project.services.contains_key(n) {
            bail!("no such service: {n}");
        }
    }
    Ok(())
}

pub fn audit(global: &GlobalArgs, args: AuditArgs) -> Result<ExitCode> {
    let loaded = load(global)?;
    check_services(&loaded.project, &args.services)?;
    let state = state();
    let runtimes = open_runtimes();
    let db = if args.refresh {
        let rt = runtimes.as_ref().map_err(|e| anyhow::anyhow!("{e:#}"))?;
        let db = VulnDb::fetch(
            rt.http(),
            rt.config(),
            &rt.root().join("node"),
            &mut progress_printer(),
        )
        .context("refreshing vulnerability data")?;
        let path = db.save_refreshed(&state)?;
        eprintln!(
            "vulnerability data: {} entries from {} ({})",
            db.vulnerabilities.len(),
            db.source,
            path.display()
        );
        db
    } else {
        VulnDb::load(&state)
    };
    let images_dir = state.join("images");
    let images = images_dir
        .is_dir()
        .then(|| berth_oci::Store::open(&images_dir).ok())
        .flatten();
    let mut resolve = |spec: &RuntimeSpec| -> Result<Version, String> {
        let rt = runtimes.as_ref().map_err(|e| format!("{e:#}"))?;
        rt.resolve(spec)
            .map(|r| r.version)
            .map_err(|e| e.to_string())
    };
    let mut audits = audit::audit_project(&loaded.project, &db, images.as_ref(), &mut resolve);
    // The dist index's `security` flags, when the runtime source is a dist
    // index that can be read (its cached copy will do).
    if let Ok(rt) = runtimes.as_ref() {
        if rt.config().node_source == berth_runtimes::SourceKind::Dist {
            if let Ok(index) = rt.index(&mut |_| {}) {
                audit::add_security_releases(&mut audits, &index);
            }
        }
    }
    if !args.services.is_empty() {
        audits.retain(|a| args.services.contains(&a.service));
    }
    match args.format {
        ListFormat::Json => {
            let doc = serde_json::json!({ "data_source": db.source, "services": audits });
            emit(&format!("{}\n", serde_json::to_string_pretty(&doc)?))?;
        }
        ListFormat::Table => emit(&audit_table(&audits))?,
    }
    let threshold = match args.fail_on {
        FailOn::None => return Ok(ExitCode::SUCCESS),
        FailOn::Unknown => Severity::Unknown,
        FailOn::Low => Severity::Low,
        FailOn::Medium => Severity::Medium,
        FailOn::High => Severity::High,
        FailOn::Critical => Severity::Critical,
    };
    Ok(if audit::fails(&audits, threshold) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn origin_name(o: Origin) -> &'static str {
    match o {
        Origin::XRuntime => "x-runtime",
        Origin::ImageEnv => "image env",
        Origin::ImageTag => "image tag",
    }
}

/// Write to stdout; a reader that went away (`| head`) is not an error.
fn emit(text: &str) -> Result<()> {
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

fn audit_table(audits: &[ServiceAudit]) -> String {
    let mut out = String::new();
    if audits.is_empty() {
        out.push_str("no service runs a runtime berth recognises\n");
    }
    for a in audits {
        let version = a
            .version
            .as_ref()
            .map(|v| v.to_string())
            .unwrap_or_else(|| "?".into());
        out.push_str(&format!(
            "{}: {} {} ({} {})",
            a.service,
            a.runtime,
            version,
            origin_name(a.origin),
            a.declared
        ));
        match (a.end_of_life, &a.end_of_life_date) {
            (Some(true), Some(d)) => out.push_str(&format!(
                ", line {} end-of-life since {d}",
                a.line.as_deref().unwrap_or("?")
            )),
            (Some(true), None) => out.push_str(&format!(
                ", line {} end-of-life",
                a.line.as_deref().unwrap_or("?")
            )),
            (Some(false), Some(d)) => out.push_str(&format!(
                ", line {} supported until {d}",
                a.line.as_deref().unwrap_or("?")
            )),
            _ => {}
        }
        out.push('\n');
        if let Some(e) = &a.error {
            out.push_str(&format!("  cannot tell the version: {e}\n"));
        }
        if a.vulnerabilities.is_empty() && a.version.is_some() {
            out.push_str("  no known vulnerabilities\n");
        } else if !a.vulnerabilities.is_empty() {
            out.push_str(&format!(
                "  {:<18} {:<9} {}\n",
                "ID", "SEVERITY", "FIXED IN LINE"
            ));
            for f in &a.vulnerabilities {
                let fixed = f
                    .fixed_in_line
                    .as_ref()
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "no fix in this line".into());
                out.push_str(&format!("  {:<18} {:<9} {}\n", f.id, f.severity, fixed));
            }
            out.push_str(&format!(
                "  {} known vulnerabilities",
                a.vulnerabilities.len()
            ));
            if let Some(to) = &a.upgrade_to {
                out.push_str(&format!(
                    "; `berth upgrade --security {}` moves to {to}",
                    a.service
                ));
            }
            out.push('\n');
        }
    }
    out
}

/// The value an upgrade edits, for one service.
struct Target {
    service: String,
    key: &'static str,
    declared: String,
    current: Version,
}

pub fn upgrade(global: &GlobalArgs, args: UpgradeArgs) -> Result<ExitCode> {
    let loaded = load(global)?;
    check_services(&loaded.project, &args.services)?;
    let strategy = match (&args.to, args.latest_patch) {
        (Some(v), _) => Strategy::To(v.parse().with_context(|| format!("--to {v}"))?),
        (None, true) => Strategy::LatestPatch,
        _ => Strategy::Security,
    };
    let state = state();
    let db = VulnDb::load(&state);
    let runtimes = open_runtimes();
    let mut targets = Vec::new();
    for (name, service) in &loaded.project.services {
        if !args.services.is_empty() && !args.services.contains(name) {
            continue;
        }
        let Some(d) = audit::detect(service, None) else {
            if args.services.contains(name) {
                bail!("service {name} runs no runtime berth recognises (x-runtime, or a node image with a version tag)");
            }
            continue;
        };
        let current = match (&d.version, &d.spec) {
            (Some(v), _) => v.clone(),
            (None, Some(Ok(spec))) => {
                let rt = runtimes.as_ref().map_err(|e| anyhow::anyhow!("{e:#}"))?;
                rt.resolve(spec)
                    .with_context(|| format!("service {name}"))?
                    .version
            }
            (None, Some(Err(e))) => bail!("service {name}: {e}"),
            (None, None) => continue,
        };
        targets.push(Target {
            service: name.clone(),
            key: if d.origin == Origin::XRuntime {
                "x-runtime"
            } else {
                "image"
            },
            declared: d.declared,
            current,
        });
    }
    if targets.is_empty() {
        eprintln!("no service runs a runtime berth recognises");
        return Ok(ExitCode::SUCCESS);
    }
    // The published releases, when the index can be had; the security
    // choice works without them (from the fixes the data names).
    let published: Result<Vec<Version>, String> = match (&strategy, &runtimes) {
        (_, Err(e)) => Err(format!("{e:#}")),
        (Strategy::Security, Ok(rt))
        | (Strategy::To(_), Ok(rt))
        | (Strategy::LatestPatch, Ok(rt)) => rt
            .index(&mut |_| {})
            .map(|i| i.versions())
            .map_err(|e| e.to_string()),
    };
    let mut files: Vec<(PathBuf, String)> = Vec::new();
    for f in &loaded.files {
        if f.as_os_str() == "-" {
            bail!("upgrade edits files; the compose file came from standard input");
        }
        let text =
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        files.push((f.clone(), text));
    }
    let originals: Vec<String> = files.iter().map(|(_, t)| t.clone()).collect();
    for t in &targets {
        let to = upgrade::choose(
            &t.current,
            &strategy,
            &db,
            published.as_deref().map_err(String::clone),
        )
        .with_context(|| format!("service {}", t.service))?;
        if to == t.current {
            eprintln!(
                "{}: node {} stays (nothing to change)",
                t.service, t.current
            );
            continue;
        }
        let at = rewrite::locate(&files, &t.service, t.key)?;
        let new_value = if t.key == "x-runtime" {
            let name = at.value.split('@').next().unwrap_or("node").trim_start();
            format!("{name}@{to}")
        } else {
            rewrite::image_with_version(&at.value, &to).with_context(|| {
                format!(
                    "service {}: cannot find the version in {}",
                    t.service, t.declared
                )
            })?
        };
        let (path, text) = &files[at.file];
        let new_text = rewrite::replace(text, path, &at, &new_value)?;
        files[at.file].1 = new_text;
        eprintln!("{}: node {} -> {to}", t.service, t.current);
    }
    for ((path, text), original) in files.iter().zip(&originals) {
        if text == original {
            continue;
        }
        emit(&rewrite::diff(path, original, text))?;
        if !args.dry_run {
            write_in_place(path, text)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Replace the file's content through a rename, keeping its permissions.
fn write_in_place(path: &std::path::Path, text: &str) -> Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.berth-upgrade.{}", std::process::id()));
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    if let Ok(meta) = std::fs::metadata(path) {
        let _ = std::fs::set_permissions(&tmp, meta.permissions());
    }
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))?;
    Ok(())
}

pub fn runtime(global: &GlobalArgs, cmd: RuntimeCommand) -> Result<ExitCode> {
    let rt = open_runtimes()?;
    match cmd {
        RuntimeCommand::Ls { format } => {
            let list = rt.installed()?;
            if format == ListFormat::Json {
                let items: Vec<_> = list
                    .iter()
                    .map(|r| serde_json::json!({ "id": r.id(), "path": r.root, "meta": r.meta }))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&items)?);
            } else {
                println!(
                    "{:<8} {:<10} {:<6} {:<6} {:<9} {:<14} PATH",
                    "RUNTIME", "VERSION", "ARCH", "SOURCE", "NPM", "DIGEST"
                );
                for r in &list {
                    let digest = r.digest.strip_prefix("sha256:").unwrap_or(&r.digest);
                    let npm = r
                        .meta
                        .npm
                        .as_ref()
                        .map(|v| v.to_string())
                        .unwrap_or_else(|| "-".into());
                    println!(
                        "{:<8} {:<10} {:<6} {:<6} {:<9} {:<14} {}",
                        r.meta.kind.name(),
                        r.version.to_string(),
                        r.meta.arch,
                        r.meta.source.name(),
                        npm,
                        &digest[..digest.len().min(12)],
                        r.root.display()
                    );
                }
            }
        }
        RuntimeCommand::Pull { spec } => {
            let spec: RuntimeSpec = spec.parse()?;
            let mut progress = progress_printer();
            let resolved = rt.resolve_with(&spec, &mut progress)?;
            let installed = rt.ensure(&resolved, &mut progress)?;
            println!(
                "{} {} {}",
                installed.meta.kind,
                installed.version,
                installed.root.display()
            );
        }
        RuntimeCommand::Rm { specs } => {
            let installed = rt.installed()?;
            for s in specs {
                let spec: RuntimeSpec = s.parse()?;
                let matching: Vec<_> = installed
                    .iter()
                    .filter(|r| spec_matches(&spec, &r.version))
                    .collect();
                if matching.is_empty() {
                    bail!("no runtime in the store matches {spec}");
                }
                for r in matching {
                    rt.remove(r)?;
                    println!("removed {} {} ({})", r.meta.kind, r.version, r.id());
                }
            }
        }
        RuntimeCommand::Prune { dry_run } => {
            let loaded = load(global).context(
                "prune keeps the runtimes of the compose project here; it could not be loaded",
            )?;
            let specs: Vec<RuntimeSpec> = loaded
                .project
                .services
                .values()
                .filter_map(|s| s.extra.get("x-runtime")?.as_str()?.parse().ok())
                .collect();
            let installed = rt.installed()?;
            let highest = installed.iter().map(|r| r.version.clone()).max();
            let keep = |v: &Version| {
                specs.iter().any(|s| match &s.req {
                    VersionReq::Lts(_) | VersionReq::Latest => Some(v) == highest.as_ref(),
                    _ => spec_matches(s, v),
                })
            };
            for r in installed.iter().filter(|r| !keep(&r.version)) {
                if !dry_run {
                    rt.remove(r)?;
                }
                println!(
                    "{} {} {} ({})",
                    if dry_run { "would remove" } else { "removed" },
                    r.meta.kind,
                    r.version,
                    r.id()
                );
            }
            if !dry_run {
                rt.remove_scratch()?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn spec_matches(spec: &RuntimeSpec, v: &Version) -> bool {
    match &spec.req {
        VersionReq::Exact(e) => e == v,
        VersionReq::Range(r) => r.matches(v),
        VersionReq::Lts(Some(code)) => berth_runtimes::spec::codename_major(code) == Some(v.major),
        VersionReq::Lts(None) | VersionReq::Latest => false,
    }
}
