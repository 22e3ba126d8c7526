//! Pull: resolve a reference to a manifest (through an index when the
//! image is multi-platform), fetch the blobs the store lacks, then tag.
//!
//! Order matters for crash and failure safety: layers and config first,
//! then the manifest (and index) documents, then the tag. A reference
//! therefore never points at content that is not all there, and a failure
//! at any step leaves every existing reference as it was.

use crate::client::{Client, FetchedManifest, Repo};
use crate::mirrors::Source;
use crate::parallel;
use crate::progress::Progress;
use crate::reference::Reference;
use crate::{Error, Result};
use berth_oci::{
    media, Descriptor, Digest, ImageIndex, ImageManifest, Platform, Store, StoreError,
};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    /// The platform to pull from a multi-platform image; `None` means the
    /// host's ([`Platform::host`]).
    pub platform: Option<Platform>,
    /// Fetch every platform of an index and tag the index itself (for
    /// mirroring images on); otherwise only the chosen platform is fetched
    /// and the name is tagged to its manifest.
    pub all_platforms: bool,
}

/// What a pull did.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// The reference as pulled (normalized); the store name is its
    /// `to_string()`.
    pub reference: Reference,
    /// What the store name now points at: the platform's manifest (its
    /// descriptor carries the index entry's platform), or the index when
    /// all platforms were pulled.
    pub tagged: Descriptor,
    /// The single-platform manifest (with `all_platforms`, the one for the
    /// requested platform if the index has it, else the first).
    pub manifest_digest: Digest,
    /// The index the manifest was chosen from, if the tag named one.
    pub index_digest: Option<Digest>,
    /// The endpoint that served the image, e.g. `http://127.0.0.1:5000`.
    pub source: String,
    /// `Some(registry)` when `source` is a mirror of that registry.
    pub mirror_of: Option<String>,
    /// Mirrors that failed before `source` answered, with their errors.
    pub mirror_failures: Vec<String>,
    pub layers_downloaded: usize,
    pub layers_cached: usize,
    pub bytes_downloaded: u64,
}

impl Pulled {
    /// The digest `docker pull` prints: the index's when there is one,
    /// else the manifest's. Pulling `name@<this>` gives the same image.
    pub fn digest(&self) -> &Digest {
        self.index_digest.as_ref().unwrap_or(&self.manifest_digest)
    }
}

/// Where a reference points on its registry right now.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The manifest's or index's digest: compare with the store's to see
    /// whether a pull would change anything.
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    /// The endpoint that answered.
    pub source: String,
    pub mirror_of: Option<String>,
}

/// Largest image config pulled. Real configs are kilobytes (a long history
/// makes tens of them); the limit is far above that and far below memory.
pub(crate) const MAX_CONFIG_BYTES: u64 = 8 << 20;

struct BlobJob {
    desc: Descriptor,
    /// Layers are reported to the progress callback; the config is not.
    layer: bool,
}

enum Fetched {
    Cached,
    Downloaded(u64),
}

/// How one download attempt ended badly.
enum Failure {
    /// The connection broke or the body was short: worth another try.
    Retry(Error),
    Fatal(Error),
    /// Another job failed; this one gave up.
    Stopped,
}

impl Client {
    /// Pull `reference` into `store` and tag it as `reference.to_string()`.
    /// Mirrors of its registry are tried first, in order, then the registry.
    pub fn pull(
        &self,
        store: &Store,
        reference: &Reference,
        options: &PullOptions,
        progress: &dyn Progress,
    ) -> Result<Pulled> {
        let (mut pulled, failures) = self.each_source(reference, |source| {
            self.pull_from(store, reference, source, options, progress)
        })?;
        pulled.mirror_failures = failures;
        Ok(pulled)
    }

    /// Look `reference` up (mirrors first) without fetching any blob.
    pub fn resolve(&self, reference: &Reference) -> Result<Resolved> {
        let display = reference.to_string();
        let (resolved, _) = self.each_source(reference, |source| {
            let repo = self.open_repo(source, false)?;
            let doc =
                repo.fetch_manifest(&reference.manifest_ref(), reference.digest(), &display)?;
            Ok(Resolved {
                digest: doc.digest,
                media_type: doc.media_type,
                size: doc.bytes.len() as u64,
                source: repo.base.clone(),
                mirror_of: repo.mirror_of.clone(),
            })
        })?;
        Ok(resolved)
    }

    /// Run `attempt` on each source of `reference` until one succeeds;
    /// returns its result and the failures of the mirrors before it.
    fn each_source<T>(
        &self,
        reference: &Reference,
        mut attempt: impl FnMut(&Source) -> Result<T>,
    ) -> Result<(T, Vec<String>)> {
        let sources = self.registries().sources(reference)?;
        let mut failures: Vec<String> = Vec::new();
        for (i, source) in sources.iter().enumerate() {
            let last = i + 1 == sources.len();
            match attempt(source) {
                Ok(t) => return Ok((t, failures)),
                Err(e) if !last && e.try_next_source() => {
                    failures.push(format!("{}: {e}", source.authority));
                }
                Err(e) if failures.is_empty() => return Err(e),
                Err(e) => {
                    return Err(Error::AllSourcesFailed {
                        error: Box::new(e),
                        mirrors: failures,
                    })
                }
            }
        }
        // `sources` always ends with the registry itself.
        Err(Error::ManifestUnknown(reference.to_string()))
    }

    fn pull_from(
        &self,
        store: &Store,
        reference: &Reference,
        source: &Source,
        options: &PullOptions,
        progress: &dyn Progress,
    ) -> Result<Pulled> {
        let display = reference.to_string();
        let repo = self.open_repo(source, false)?;
        let top = repo.fetch_manifest(&reference.manifest_ref(), reference.digest(), &display)?;
        let platform = options.platform.clone().unwrap_or_else(Platform::host);

        // (descriptor as the parent names it, document) for each manifest
        // to store; the first is the one `manifest_digest` reports.
        let mut manifests: Vec<(Descriptor, FetchedManifest, ImageManifest)> = Vec::new();
        let mut index: Option<(FetchedManifest, ImageIndex)> = None;
        if media::is_index(&top.media_type) {
            let parsed: ImageIndex = parse_doc(&top, "image index")?;
            let chosen = choose(&parsed, &platform);
            let wanted: Vec<&Descriptor> = if options.all_platforms {
                // The requested platform's manifest first, so it is the one
                // reported; every entry is fetched.
                let mut all: Vec<&Descriptor> = parsed.manifests.iter().collect();
                if let Some(pos) = chosen.and_then(|c| all.iter().position(|d| std::ptr::eq(*d, c)))
                {
                    all.swap(0, pos);
                }
                all
            } else {
                vec![chosen.ok_or_else(|| no_platform(&display, &parsed, &platform))?]
            };
            for entry in wanted {
                if !media::is_manifest(&entry.media_type) {
                    return Err(Error::UnsupportedMediaType {
                        reference: format!("{display} (entry {})", entry.digest),
                        media_type: entry.media_type.clone(),
                    });
                }
                let child =
                    repo.fetch_manifest(entry.digest.as_str(), Some(&entry.digest), &display)?;
                if !media::is_manifest(&child.media_type) {
                    return Err(Error::UnsupportedMediaType {
                        reference: format!("{display} (entry {})", entry.digest),
                        media_type: child.media_type.clone(),
                    });
                }
                let parsed_child: ImageManifest = parse_doc(&child, "image manifest")?;
                let mut desc = entry.clone();
                desc.media_type = child.media_type.clone();
                desc.size = child.bytes.len() as u64;
                manifests.push((desc, child, parsed_child));
            }
            if manifests.is_empty() {
                return Err(no_platform(&display, &parsed, &platform));
            }
            index = Some((top, parsed));
        } else if media::is_manifest(&top.media_type) {
            let parsed: ImageManifest = parse_doc(&top, "image manifest")?;
            let desc = Descriptor::new(&top.media_type, top.digest.clone(), top.bytes.len() as u64);
            manifests.push((desc, top, parsed));
        } else {
            return Err(Error::UnsupportedMediaType {
                reference: display,
                media_type: top.media_type,
            });
        }

        let mut jobs: Vec<BlobJob> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (_, _, m) in &manifests {
            // A config is read whole into memory wherever it is used: a
            // manifest promising a huge one is refused before any download.
            if m.config.size > MAX_CONFIG_BYTES {
                return Err(Error::ConfigTooLarge {
                    reference: display,
                    digest: m.config.digest.clone(),
                    size: m.config.size,
                    limit: MAX_CONFIG_BYTES,
                });
            }
            if seen.insert(m.config.digest.clone()) {
                jobs.push(BlobJob {
                    desc: m.config.clone(),
                    layer: false,
                });
            }
            for l in &m.layers {
                if seen.insert(l.digest.clone()) {
                    jobs.push(BlobJob {
                        desc: l.clone(),
                        layer: true,
                    });
                }
            }
        }
        let results = parallel::run(jobs, self.options.parallel_transfers, |job, stop| {
            self.fetch_blob(&repo, store, &job, progress, stop)
                .map(|f| (job.layer, f))
        })?;
        let (mut downloaded, mut cached, mut bytes) = (0, 0, 0);
        for (layer, fetched) in results {
            match fetched {
                Fetched::Cached if layer => cached += 1,
                Fetched::Downloaded(n) => {
                    bytes += n;
                    if layer {
                        downloaded += 1;
                    }
                }
                Fetched::Cached => {}
            }
        }

        for (desc, doc, _) in &manifests {
            put_document(store, doc, &desc.digest)?;
        }
        let tagged = match &index {
            Some((doc, _)) if options.all_platforms => {
                put_document(store, doc, &doc.digest)?;
                Descriptor::new(&doc.media_type, doc.digest.clone(), doc.bytes.len() as u64)
            }
            // Only this platform's blobs are here: the name points at its
            // manifest (the index would promise platforms the store lacks).
            _ => manifests[0].0.clone(),
        };
        let mut tagged = tagged;
        // The store writes its own name annotation; the registry's
        // annotations on the index entry are not the store's business.
        tagged.annotations.clear();
        store.tag(&display, &tagged)?;

        Ok(Pulled {
            reference: reference.clone(),
            tagged,
            manifest_digest: manifests[0].0.digest.clone(),
            index_digest: index.map(|(doc, _)| doc.digest),
            source: repo.base.clone(),
            mirror_of: repo.mirror_of.clone(),
            mirror_failures: Vec::new(),
            layers_downloaded: downloaded,
            layers_cached: cached,
            bytes_downloaded: bytes,
        })
    }

    fn fetch_blob(
        &self,
        repo: &Repo<'_>,
        store: &Store,
        job: &BlobJob,
        progress: &dyn Progress,
        stop: &AtomicBool,
    ) -> Result<Fetched> {
        let digest = &job.desc.digest;
        let report = |f: &dyn Fn(&dyn Progress)| {
            if job.layer {
                f(progress)
            }
        };
        report(&|p| p.on_layer_start(digest, job.desc.size));
        if store.has_blob(digest) {
            report(&|p| p.on_layer_done(digest, true));
            return Ok(Fetched::Cached);
        }
        let mut delay = self.options.retry_backoff;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.download(repo, store, job, progress, stop) {
                Ok(n) => {
                    report(&|p| p.on_layer_done(digest, false));
                    return Ok(Fetched::Downloaded(n));
                }
                Err(Failure::Retry(e)) if attempt <= self.options.retries => {
                    let _ = e;
                    std::thread::sleep(delay);
                    delay *= 3;
                    if stop.load(Ordering::Relaxed) {
                        return Ok(Fetched::Cached);
                    }
                    report(&|p| p.on_layer_restart(digest));
                }
                Err(Failure::Retry(e)) | Err(Failure::Fatal(e)) => return Err(e),
                // The caller discards results once a job failed.
                Err(Failure::Stopped) => return Ok(Fetched::Cached),
            }
        }
    }

    /// One attempt: stream the blob into a store writer, which verifies
    /// digest and size before the blob appears; on any failure the writer
    /// is dropped and its temp file with it.
    fn download(
        &self,
        repo: &Repo<'_>,
        store: &Store,
        job: &BlobJob,
        progress: &dyn Progress,
        stop: &AtomicBool,
    ) -> std::result::Result<u64, Failure> {
        let digest = &job.desc.digest;
        let expected = job.desc.size;
        let (url, resp) = repo.get_blob(digest).map_err(|e| match e {
            // Transport errors were already retried at the request level.
            e @ Error::Status {
                status: 500..=599, ..
            } => Failure::Retry(e),
            e => Failure::Fatal(e),
        })?;
        let mut body = resp.into_body().into_reader();
        let mut writer = store
            .blob_writer()
            .map_err(|e| Failure::Fatal(Error::Store(e)))?;
        let mut buf = vec![0u8; 64 << 10];
        let mut got: u64 = 0;
        loop {
            if stop.load(Ordering::Relaxed) {
                return Err(Failure::Stopped);
            }
            let n = match body.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(Failure::Retry(Error::Truncated {
                        url,
                        digest: digest.clone(),
                        got,
                        expected,
                        cause: format!(": {e}"),
                    }))
                }
            };
            got += n as u64;
            if got > expected {
                // Never store more than the manifest promised: a server
                // streaming forever must not fill the disk.
                return Err(Failure::Fatal(Error::TooLarge {
                    url,
                    what: format!("blob {digest}"),
                    limit: expected,
                }));
            }
            writer.write_all(&buf[..n]).map_err(|e| {
                Failure::Fatal(Error::Store(StoreError::Io {
                    path: writer.tmp_path().to_path_buf(),
                    source: e,
                }))
            })?;
            if job.layer {
                progress.on_bytes(digest, n as u64);
            }
        }
        if got < expected {
            return Err(Failure::Retry(Error::Truncated {
                url,
                digest: digest.clone(),
                got,
                expected,
                cause: String::new(),
            }));
        }
        match writer.commit(Some(digest), Some(expected)) {
            Ok((_, n)) => Ok(n),
            Err(StoreError::DigestMismatch { expected, actual }) => {
                Err(Failure::Fatal(Error::DigestMismatch {
                    what: "blob".into(),
                    url,
                    expected,
                    actual,
                }))
            }
            Err(e) => Err(Failure::Fatal(Error::Store(e))),
        }
    }
}

/// The first entry for `platform`, by the same rule as
/// [`Store::image`]: whatever the store will pick later must be what was
/// fetched now.
fn choose<'i>(index: &'i ImageIndex, platform: &Platform) -> Option<&'i Descriptor> {
    index
        .manifests
        .iter()
        .find(|m| m.platform.as_ref().is_none_or(|p| platform.matches(p)))
}

fn no_platform(display: &str, index: &ImageIndex, platform: &Platform) -> Error {
    let available: Vec<String> = index
        .manifests
        .iter()
        .filter_map(|m| m.platform.as_ref())
        .map(platform_string)
        .collect();
    Error::NoPlatform {
        reference: display.to_string(),
        platform: platform_string(platform),
        available: if available.is_empty() {
            "no platforms".into()
        } else {
            available.join(", ")
        },
    }
}

pub(crate) fn platform_string(p: &Platform) -> String {
    match &p.variant {
        Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
        None => format!("{}/{}", p.os, p.architecture),
    }
}

fn parse_doc<T: serde::de::DeserializeOwned>(doc: &FetchedManifest, what: &str) -> Result<T> {
    serde_json::from_slice(&doc.bytes).map_err(|e| Error::BadResponse {
        url: doc.url.clone(),
        what: what.to_string(),
        message: e.to_string(),
    })
}

/// Store a manifest or index exactly as served (its digest is over these
/// bytes, so re-serializing would break it).
fn put_document(store: &Store, doc: &FetchedManifest, expected: &Digest) -> Result<()> {
    let digest = store.write_blob(&doc.bytes)?;
    if &digest != expected {
        return Err(Error::DigestMismatch {
            what: "manifest".into(),
            url: doc.url.clone(),
            expected: expected.clone(),
            actual: digest,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(arch: &str, variant: Option<&str>) -> Descriptor {
        let mut d = Descriptor::new(media::OCI_MANIFEST, Digest::of(arch.as_bytes()), 1);
        d.platform = Some(Platform {
            architecture: arch.into(),
            os: "linux".into(),
            variant: variant.map(str::to_string),
            os_version: None,
        });
        d
    }

    #[test]
    fn chooses_like_the_store() {
        let index = ImageIndex {
            manifests: vec![
                entry("amd64", None),
                entry("arm64", Some("v8")),
                entry("arm", Some("v7")),
            ],
            ..Default::default()
        };
        let pick = |s: &str| choose(&index, &Platform::parse(s).unwrap()).map(|d| d.digest.clone());
        assert_eq!(pick("linux/amd64"), Some(Digest::of(b"amd64")));
        assert_eq!(pick("linux/arm64"), Some(Digest::of(b"arm64")));
        assert_eq!(pick("linux/arm/v7"), Some(Digest::of(b"arm")));
        assert_eq!(pick("linux/arm/v6"), None);
        assert_eq!(pick("linux/s390x"), None);
        let err = no_platform("x", &index, &Platform::parse("linux/s390x").unwrap()).to_string();
        assert!(
            err.contains("linux/s390x") && err.contains("linux/arm64/v8"),
            "{err}"
        );
    }
}
