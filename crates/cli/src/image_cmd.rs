//! Image commands over berth's store: `images`, `rmi`, `image prune|fsck`,
//! `save`, `load`.

use crate::ListFormat;
use anyhow::{bail, Context, Result};
use berth_oci::store::{state_dir, Store};
use berth_oci::Platform;
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

pub fn open_store() -> Result<Store> {
    let root = state_dir().join("images");
    Store::open(&root).with_context(|| format!("opening the image store at {}", root.display()))
}

#[derive(Args, Debug)]
pub struct ImagesArgs {
    /// Output format
    #[arg(long, value_enum, default_value_t = ListFormat::Table)]
    format: ListFormat,
    /// Only show image IDs
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Args, Debug)]
pub struct RmiArgs {
    /// Images to remove (references as `berth images` shows them)
    #[arg(required = true)]
    images: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum ImageCommand {
    /// List images (same as `berth images`)
    Ls(ImagesArgs),
    /// Remove images (same as `berth rmi`)
    Rm(RmiArgs),
    /// Remove blobs no image uses
    Prune,
    /// Verify every blob's digest and that every image is complete
    Fsck,
}

#[derive(Args, Debug)]
pub struct SaveArgs {
    /// Write to this file (default: standard output, which must not be a terminal)
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    #[arg(required = true)]
    images: Vec<String>,
}

#[derive(Args, Debug)]
pub struct LoadArgs {
    /// Read from this file (default: standard input)
    #[arg(short, long, value_name = "FILE")]
    input: Option<PathBuf>,
}

/// Split a stored reference into repository and tag for listings, dropping
/// docker.io's implicit parts like `docker images` does.
pub fn familiar(reference: &str) -> (String, String) {
    let short = reference
        .strip_prefix("docker.io/library/")
        .or_else(|| reference.strip_prefix("docker.io/"))
        .unwrap_or(reference);
    if let Some((repo, digest)) = short.split_once('@') {
        return (repo.to_string(), digest.to_string());
    }
    match short.rfind(':') {
        Some(i) if !short[i..].contains('/') => {
            (short[..i].to_string(), short[i + 1..].to_string())
        }
        _ => (short.to_string(), "latest".to_string()),
    }
}

/// Find the stored reference a user means: exact, or with docker's defaults.
pub fn resolve_name(store: &Store, name: &str) -> Result<String> {
    let refs = store.references()?;
    let candidates = [
        name.to_string(),
        format!("{name}:latest"),
        format!("docker.io/library/{name}"),
        format!("docker.io/library/{name}:latest"),
        format!("docker.io/{name}"),
        format!("docker.io/{name}:latest"),
    ];
    for c in candidates {
        if refs.iter().any(|(r, _)| *r == c) {
            return Ok(c);
        }
    }
    // An image ID prefix, as `docker rmi 1a2b3c` accepts.
    let by_id: Vec<&String> = refs
        .iter()
        .filter(|(_, d)| {
            name.len() >= 4
                && d.digest
                    .hex()
                    .starts_with(name.trim_start_matches("sha256:"))
        })
        .map(|(r, _)| r)
        .collect();
    match by_id.as_slice() {
        [one] => Ok((*one).clone()),
        [] => bail!("no such image: {name}"),
        _ => bail!("{name} is ambiguous: it matches {} images", by_id.len()),
    }
}

pub fn images(args: ImagesArgs) -> Result<ExitCode> {
    let store = open_store()?;
    let platform = Platform::host();
    let mut rows = Vec::new();
    for (name, desc) in store.references()? {
        let (repo, tag) = familiar(&name);
        let (size, created) = match store.image_from(&name, &desc, &platform) {
            Ok(img) => (
                img.manifest.layers.iter().map(|l| l.size).sum::<u64>() + img.manifest.config.size,
                img.config.created.clone().unwrap_or_default(),
            ),
            Err(_) => (0, String::new()),
        };
        rows.push((name, repo, tag, desc.digest, size, created));
    }
    if args.quiet {
        for r in &rows {
            println!("{}", r.3.short());
        }
        return Ok(ExitCode::SUCCESS);
    }
    if args.format == ListFormat::Json {
        let list: Vec<serde_json::Value> = rows
            .iter()
            .map(|(name, repo, tag, id, size, created)| {
                serde_json::json!({
                    "Reference": name, "Repository": repo, "Tag": tag,
                    "ID": id.as_str(), "Size": size, "Created": created,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<40} {:<16} {:<14} {:>10}",
        "REPOSITORY", "TAG", "IMAGE ID", "SIZE"
    );
    for (_, repo, tag, id, size, _) in rows {
        println!(
            "{repo:<40} {tag:<16} {:<14} {:>10}",
            id.short(),
            human_size(size)
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn human_size(bytes: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1000.0 && i < units.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{bytes}B")
    } else {
        format!("{v:.3}{}", units[i]).replace(".000", "")
    }
}

pub fn rmi(args: RmiArgs) -> Result<ExitCode> {
    let store = open_store()?;
    for name in &args.images {
        let full = resolve_name(&store, name)?;
        store.untag(&full)?;
        println!("Untagged: {full}");
    }
    let report = store.gc()?;
    if report.removed_blobs > 0 {
        println!(
            "Deleted {} blobs ({})",
            report.removed_blobs,
            human_size(report.freed_bytes)
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn image(cmd: ImageCommand) -> Result<ExitCode> {
    match cmd {
        ImageCommand::Ls(a) => images(a),
        ImageCommand::Rm(a) => rmi(a),
        ImageCommand::Prune => {
            let report = open_store()?.gc()?;
            println!(
                "Deleted {} blobs, reclaimed {}",
                report.removed_blobs,
                human_size(report.freed_bytes)
            );
            Ok(ExitCode::SUCCESS)
        }
        ImageCommand::Fsck => {
            let report = open_store()?.fsck()?;
            for p in &report.problems {
                println!("{p}");
            }
            if report.problems.is_empty() {
                println!("{} blobs checked, no problems", report.blobs_checked);
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!(
                    "error: {} problem(s) in the image store",
                    report.problems.len()
                );
                Ok(ExitCode::FAILURE)
            }
        }
    }
}

pub fn save(args: SaveArgs) -> Result<ExitCode> {
    let store = open_store()?;
    let names = args
        .images
        .iter()
        .map(|n| resolve_name(&store, n))
        .collect::<Result<Vec<_>>>()?;
    match &args.output {
        Some(path) => {
            // Write beside the target and rename, so a failed save leaves no half file.
            let tmp = path.with_extension("berth-partial");
            let file = std::fs::File::create(&tmp)
                .with_context(|| format!("creating {}", tmp.display()))?;
            let result = berth_image::archive::save(&store, &names, std::io::BufWriter::new(file));
            if let Err(e) = result {
                let _ = std::fs::remove_file(&tmp);
                return Err(e.into());
            }
            std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
        }
        None => {
            use std::io::IsTerminal;
            if std::io::stdout().is_terminal() {
                bail!("refusing to write an archive to a terminal: use -o FILE or redirect");
            }
            berth_image::archive::save(&store, &names, std::io::stdout().lock())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn load(args: LoadArgs) -> Result<ExitCode> {
    let store = open_store()?;
    let tagged = match &args.input {
        Some(path) => {
            let f =
                std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
            let reader = berth_image::unpack::decompress(Box::new(std::io::BufReader::new(f)))?;
            berth_image::archive::load(&store, reader)?
        }
        None => {
            let reader = berth_image::unpack::decompress(Box::new(std::io::stdin().lock()))?;
            berth_image::archive::load(&store, reader)?
        }
    };
    for t in tagged {
        // Archives name images the familiar way (`tianon/true:latest`); the
        // store keeps full references, as pulls do.
        let full = match t.parse::<berth_registry::Reference>() {
            Ok(r) => r.to_string(),
            Err(_) => t.clone(),
        };
        if full != t {
            if let Some(desc) = store.resolve(&t)? {
                store.tag(&full, &desc)?;
                store.untag(&t)?;
            }
        }
        println!("Loaded image: {t}");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn familiar_names() {
        assert_eq!(
            familiar("docker.io/library/node:20"),
            ("node".into(), "20".into())
        );
        assert_eq!(
            familiar("docker.io/tianon/true:latest"),
            ("tianon/true".into(), "latest".into())
        );
        assert_eq!(
            familiar("127.0.0.1:5000/app"),
            ("127.0.0.1:5000/app".into(), "latest".into())
        );
        assert_eq!(
            familiar("quay.io/a/b:4.2.2"),
            ("quay.io/a/b".into(), "4.2.2".into())
        );
        assert_eq!(human_size(52_428_800), "52.429MB");
        assert_eq!(human_size(512), "512B");
    }
}
