//! Runtime commands: `audit`, `upgrade`, `runtime ls|pull|rm|prune`.

use crate::{GlobalArgs, ListFormat};
use anyhow::{bail, Context, Result};
use berth_runtimes::audit::{self, Origin, ServiceAudit};
use berth_runtimes::index::ReleaseIndex;
use berth_runtimes::rewrite;
use berth_runtimes::upgrade::{self, Strategy};
use berth_runtimes::vulns::{self, DataInfo, Severity, VulnDb};
use berth_runtimes::{Progress, RuntimeSpec, Runtimes, Version, VersionReq};
use clap::{Args, Subcommand, ValueEnum};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailOn {
    /// Any vulnerability, ungraded ones included, and any release the
    /// vulnerability data does not cover ("not assessed"); the default
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
    /// (`unknown`: any at all, or a release the data does not assess;
    /// `low`..`critical` count graded ones only)
    #[arg(long, value_enum, default_value_t = FailOn::Unknown, value_name = "SEVERITY")]
    fail_on: FailOn,
    /// Update the vulnerability data first, into the state dir: the security
    /// working group's vuln/core files, then a mirror of them
    /// (BERTH_NODE_VULNS_URL), then the npm package is-my-node-vulnerable;
    /// data older than berth's is refused
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
    /// Output format (json: every choice with its reason, and the diff)
    #[arg(long, value_enum, default_value_t = ListFormat::Table)]
    format: ListFormat,
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

/// The release index when it can be had (a cached copy will do): publish
/// dates and published releases. Without it the data decides alone.
fn release_index(runtimes: &Result<Runtimes>) -> Option<ReleaseIndex> {
    runtimes.as_ref().ok()?.index(&mut |_| {}).ok()
}

fn eol_data() -> serde_json::Value {
    serde_json::json!({ "source": vulns::EOL_SOURCE, "as_of": vulns::EOL_AS_OF })
}

pub fn audit(global: &GlobalArgs, args: AuditArgs) -> Result<ExitCode> {
    let loaded = load(global)?;
    check_services(&loaded.project, &args.services)?;
    let state = state();
    let runtimes = open_runtimes();
    let current = VulnDb::load(&state);
    let db = if args.refresh {
        let rt = runtimes.as_ref().map_err(|e| anyhow::anyhow!("{e:#}"))?;
        let (db, from, path) = VulnDb::refresh(
            rt.http(),
            rt.config(),
            &state,
            &current,
            &mut |note| eprintln!("refresh: {note}"),
            &mut progress_printer(),
        )
        .context("refreshing vulnerability data")?;
        eprintln!(
            "refresh: {} entries from {from}, as of {} ({})",
            db.vulnerabilities.len(),
            db.as_of,
            path.display()
        );
        db
    } else {
        current
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
    let index = release_index(&runtimes);
    let mut audits = audit::audit_project(
        &loaded.project,
        &db,
        images.as_ref(),
        index.as_ref(),
        &mut resolve,
    );
    // The dist index's `security` flags, when the runtime source is a dist index.
    if let Some(index) = index
        .as_ref()
        .filter(|i| i.source == berth_runtimes::SourceKind::Dist)
    {
        audit::add_security_releases(&mut audits, index);
    }
    if !args.services.is_empty() {
        audits.retain(|a| args.services.contains(&a.service));
    }
    let info = db.info(&berth_runtimes::date::today());
    match args.format {
        ListFormat::Json => {
            let doc = serde_json::json!({
                "data": info,
                "data_source": db.source,
                "end_of_life_data": eol_data(),
                "services": audits,
            });
            emit(&format!("{}\n", serde_json::to_string_pretty(&doc)?))?;
        }
        ListFormat::Table => emit(&audit_table(&audits, &info))?,
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

/// `, line 22.x supported until 2027-04-30 (source)`, when berth knows the line.
fn eol_words(line: Option<&str>, end_of_life: Option<bool>, date: Option<&str>) -> String {
    let line = line.unwrap_or("?");
    let source = format!("Node.js release schedule as of {}", vulns::EOL_AS_OF);
    match (end_of_life, date) {
        (Some(true), Some(d)) => format!(", line {line} end-of-life since {d} ({source})"),
        (Some(true), None) => format!(", line {line} end-of-life ({source})"),
        (Some(false), Some(d)) => format!(", line {line} supported until {d} ({source})"),
        _ => String::new(),
    }
}

fn audit_table(audits: &[ServiceAudit], info: &DataInfo) -> String {
    let mut out = format!("{}\n", info.summary());
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
            "{}: {} {} ({} {}){}\n",
            a.service,
            a.runtime,
            version,
            origin_name(a.origin),
            a.declared,
            eol_words(
                a.line.as_deref(),
                a.end_of_life,
                a.end_of_life_date.as_deref()
            )
        ));
        if let Some(e) = &a.error {
            out.push_str(&format!("  cannot tell the version: {e}\n"));
        } else if !a.coverage.assessed {
            out.push_str(&format!("  NOT ASSESSED: {}\n", a.coverage.reason));
        }
        if a.vulnerabilities.is_empty() && a.version.is_some() && a.coverage.assessed {
            out.push_str(&format!(
                "  no vulnerabilities known as of {} (newer ones are not known to berth)\n",
                info.as_of
            ));
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
                "  {} known vulnerabilities as of {}",
                a.vulnerabilities.len(),
                info.as_of
            ));
            if let Some(to) = &a.upgrade_to {
                out.push_str(&format!(
                    "; `berth upgrade --security {}` moves to {to}",
                    a.service
                ));
            }
            out.push('\n');
        }
        if let Some(p) = &a.latest_patch {
            out.push_str(&format!(
                "  {}: {}; `berth upgrade --latest-patch {}` takes it\n",
                p.version, p.note, a.service
            ));
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
        if args.format == ListFormat::Json {
            emit("{\"services\": []}\n")?;
        } else {
            eprintln!("no service runs a runtime berth recognises");
        }
        return Ok(ExitCode::SUCCESS);
    }
    // The published releases, when the index can be had; the security
    // choice works without them (from the fixes the data names).
    let index = runtimes
        .as_ref()
        .map_err(|e| format!("{e:#}"))
        .and_then(|rt| rt.index(&mut |_| {}).map_err(|e| e.to_string()));
    let published: Result<Vec<Version>, String> =
        index.as_ref().map(|i| i.versions()).map_err(String::clone);
    let info = db.info(&berth_runtimes::date::today());
    let table = args.format == ListFormat::Table;
    if table {
        eprintln!("{}", info.summary());
    }
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
    let mut choices = Vec::new();
    for t in &targets {
        let to = upgrade::choose(
            &t.current,
            &strategy,
            &db,
            published.as_deref().map_err(String::clone),
        )
        .with_context(|| format!("service {}", t.service))?;
        let choice = upgrade::explain(
            &t.service,
            &t.current,
            &to,
            &strategy,
            &db,
            index.as_ref().ok(),
        );
        if table {
            if to == t.current {
                eprintln!("{}: node {} stays: {}", t.service, t.current, choice.reason);
            } else {
                eprintln!(
                    "{}: node {} -> {to}: {}",
                    t.service, t.current, choice.reason
                );
            }
            if !choice.coverage.assessed {
                eprintln!("{}: NOT ASSESSED: {}", t.service, choice.coverage.reason);
            }
            if let Some(p) = &choice.latest_patch {
                eprintln!(
                    "{}: {}: {}; `berth upgrade --latest-patch {}` takes it",
                    t.service, p.version, p.note, t.service
                );
            }
        }
        choices.push(choice);
        if to == t.current {
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
    }
    let mut diff = String::new();
    for ((path, text), original) in files.iter().zip(&originals) {
        if text == original {
            continue;
        }
        diff.push_str(&rewrite::diff(path, original, text));
        if !args.dry_run {
            write_in_place(path, text)?;
        }
    }
    if table {
        emit(&diff)?;
    } else {
        let doc = serde_json::json!({
            "data": info,
            "dry_run": args.dry_run,
            "services": choices,
            "diff": diff,
        });
        emit(&format!("{}\n", serde_json::to_string_pretty(&doc)?))?;
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
            let db = VulnDb::load(&state());
            let info = db.info(&berth_runtimes::date::today());
            // No network for a listing: publish dates from the cached index only.
            let index = rt.cached_index();
            let today = berth_runtimes::date::today();
            let status = |v: &Version| {
                let coverage = db.coverage(v, index.as_ref().and_then(|i| i.published(v)));
                let known: Vec<String> = db.affecting(v).iter().map(|x| x.id.clone()).collect();
                let line = v.line();
                let eol_date = vulns::eol_date(line).filter(|d| !d.is_empty());
                (coverage, known, line, vulns::is_eol(line, &today), eol_date)
            };
            if format == ListFormat::Json {
                let items: Vec<_> = list
                    .iter()
                    .map(|r| {
                        let (coverage, known, _, eol, eol_date) = status(&r.version);
                        serde_json::json!({
                            "id": r.id(),
                            "path": r.root,
                            "meta": r.meta,
                            "coverage": coverage,
                            "vulnerabilities": known,
                            "vulnerability_data": info,
                            "end_of_life": eol,
                            "end_of_life_date": eol_date,
                            "end_of_life_data": eol_data(),
                        })
                    })
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
                println!("{}", info.summary());
                for r in &list {
                    let (coverage, known, line, eol, eol_date) = status(&r.version);
                    let verdict = if !coverage.assessed {
                        format!("NOT ASSESSED: {}", coverage.reason)
                    } else if known.is_empty() {
                        format!("no vulnerabilities known as of {}", db.as_of)
                    } else {
                        format!(
                            "{} known vulnerabilities as of {} ({})",
                            known.len(),
                            db.as_of,
                            known.join(", ")
                        )
                    };
                    let line = line.to_string();
                    println!(
                        "{} {}: {verdict}{}",
                        r.meta.kind.name(),
                        r.version,
                        eol_words(Some(&line), eol, eol_date)
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
                .filter_map(|s| s.runtime()?.parse().ok())
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
