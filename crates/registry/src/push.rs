//! Push: upload the blobs a registry lacks, then the manifest(s) under the
//! tag. Manifests go last because registries refuse a manifest whose
//! blobs they do not have (and an index whose manifests they do not have).

use crate::client::{header, manifest_media_type, Client, Repo, Req, ReqBody};
use crate::parallel;
use crate::progress::Progress;
use crate::reference::Reference;
use crate::{Error, Result};
use berth_oci::{media, Descriptor, Digest, ImageIndex, ImageManifest, Store, StoreError};
use std::collections::HashSet;
use ureq::http::Method;

/// What a push did.
#[derive(Debug, Clone)]
pub struct Pushed {
    pub reference: Reference,
    /// The digest of what the tag now names on the registry (the manifest,
    /// or the index for a multi-platform image).
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    /// The endpoint pushed to, e.g. `http://127.0.0.1:5000`.
    pub destination: String,
    pub blobs_uploaded: usize,
    /// Blobs the registry already had.
    pub blobs_existing: usize,
}

struct UploadJob {
    desc: Descriptor,
    layer: bool,
}

impl Client {
    /// Push the store's image named `reference.to_string()` to its registry
    /// (never to a mirror).
    pub fn push(
        &self,
        store: &Store,
        reference: &Reference,
        progress: &dyn Progress,
    ) -> Result<Pushed> {
        let name = reference.to_string();
        let desc = store
            .resolve(&name)?
            .ok_or_else(|| Error::NotInStore(name.clone()))?;
        self.push_descriptor(store, &desc, reference, progress)
    }

    /// Push the manifest or index `desc` (and everything it reaches) from
    /// the store to `target`, whatever name the store has it under.
    pub fn push_descriptor(
        &self,
        store: &Store,
        desc: &Descriptor,
        target: &Reference,
        progress: &dyn Progress,
    ) -> Result<Pushed> {
        if let Some(pinned) = target.digest() {
            if *pinned != desc.digest {
                return Err(Error::PinnedDigest {
                    reference: target.to_string(),
                    pinned: pinned.clone(),
                    actual: desc.digest.clone(),
                });
            }
        }
        let display = target.to_string();
        let source = self.registries().upstream(target);
        let repo = self.open_repo(&source, true)?;

        let mut children: Vec<(Descriptor, Vec<u8>)> = Vec::new();
        let mut manifests: Vec<ImageManifest> = Vec::new();
        if media::is_index(&desc.media_type) {
            let index: ImageIndex = store.read_index_blob(&desc.digest)?;
            for child in index.manifests {
                if !media::is_manifest(&child.media_type) {
                    return Err(Error::UnsupportedMediaType {
                        reference: format!("{display} (entry {})", child.digest),
                        media_type: child.media_type,
                    });
                }
                manifests.push(store.read_manifest(&child.digest)?);
                let bytes = store.read_blob(&child.digest)?;
                children.push((child, bytes));
            }
        } else if media::is_manifest(&desc.media_type) {
            manifests.push(store.read_manifest(&desc.digest)?);
        } else {
            return Err(Error::UnsupportedMediaType {
                reference: display,
                media_type: desc.media_type.clone(),
            });
        }

        let mut seen = HashSet::new();
        let mut jobs = Vec::new();
        for m in &manifests {
            let blobs =
                std::iter::once((&m.config, false)).chain(m.layers.iter().map(|l| (l, true)));
            for (d, layer) in blobs {
                if !store.has_blob(&d.digest) {
                    return Err(StoreError::MissingBlob(d.digest.clone()).into());
                }
                if seen.insert(d.digest.clone()) {
                    jobs.push(UploadJob {
                        desc: d.clone(),
                        layer,
                    });
                }
            }
        }
        let results = parallel::run(jobs, self.options.parallel_transfers, |job, stop| {
            if stop.load(std::sync::atomic::Ordering::Relaxed) {
                return Ok(true);
            }
            upload_blob(&repo, store, &job, progress)
        })?;
        let existing = results.iter().filter(|e| **e).count();

        for (child, bytes) in &children {
            put_manifest(
                &repo,
                child.digest.as_str(),
                &child.media_type,
                bytes,
                &child.digest,
            )?;
        }
        let top = store.read_blob(&desc.digest)?;
        let tag = match target.tag() {
            Some(t) => t.to_string(),
            None => desc.digest.to_string(),
        };
        let media_type = put_manifest(&repo, &tag, &desc.media_type, &top, &desc.digest)?;
        Ok(Pushed {
            reference: target.clone(),
            digest: desc.digest.clone(),
            media_type,
            size: top.len() as u64,
            destination: repo.base.clone(),
            blobs_uploaded: results.len() - existing,
            blobs_existing: existing,
        })
    }
}

/// Upload one blob unless the registry has it; true if it had it.
fn upload_blob(
    repo: &Repo<'_>,
    store: &Store,
    job: &UploadJob,
    progress: &dyn Progress,
) -> Result<bool> {
    let digest = &job.desc.digest;
    if job.layer {
        progress.on_layer_start(digest, job.desc.size);
    }
    let head = Req::new(Method::HEAD, repo.url(&format!("blobs/{digest}")));
    let resp = repo.send(&head)?;
    match resp.status().as_u16() {
        200 => {
            if job.layer {
                progress.on_layer_done(digest, true);
            }
            return Ok(true);
        }
        404 => {}
        _ => return Err(repo.status_error(&head, resp)),
    }

    let start = Req::new(Method::POST, repo.url("blobs/uploads/")).body(ReqBody::Bytes(&[]));
    let resp = repo.send(&start)?;
    if resp.status().as_u16() != 202 {
        return Err(repo.status_error(&start, resp));
    }
    let location = header(&resp, "location").ok_or_else(|| Error::BadResponse {
        url: start.url.clone(),
        what: "upload session".into(),
        message: "202 without a Location header".into(),
    })?;
    let target = with_digest(&resolve_location(&repo.base, &start.url, &location), digest);
    let mut put = Req::new(Method::PUT, target)
        .header("Content-Type", "application/octet-stream")
        .body(ReqBody::File {
            path: store.blob_path(digest),
            size: job.desc.size,
            digest,
            progress: job.layer.then_some(progress),
        });
    // Credentials go only where they came from: a location on another
    // host (storage behind the registry) gets none.
    put.auth = put.url.starts_with(&format!("{}/", repo.base));
    let resp = repo.send(&put)?;
    if !matches!(resp.status().as_u16(), 201 | 204) {
        return Err(repo.status_error(&put, resp));
    }
    if job.layer {
        progress.on_layer_done(digest, false);
    }
    Ok(false)
}

/// PUT a manifest or index; returns the media type it was sent as.
fn put_manifest(
    repo: &Repo<'_>,
    reference: &str,
    media_type: &str,
    bytes: &[u8],
    expected: &Digest,
) -> Result<String> {
    // The document's own mediaType must match the Content-Type, or the
    // registry rejects it; trust the document over the store's descriptor.
    let media_type = manifest_media_type(bytes, Some(media_type)).unwrap_or(media_type.to_string());
    let req = Req::new(Method::PUT, repo.url(&format!("manifests/{reference}")))
        .header("Content-Type", media_type.clone())
        .body(ReqBody::Bytes(bytes));
    let resp = repo.send(&req)?;
    if !matches!(resp.status().as_u16(), 200 | 201 | 202 | 204) {
        return Err(repo.status_error(&req, resp));
    }
    if let Some(served) =
        header(&resp, "docker-content-digest").and_then(|d| d.parse::<Digest>().ok())
    {
        if served != *expected {
            return Err(Error::DigestMismatch {
                what: format!("manifest pushed as {reference}"),
                url: req.url,
                expected: expected.clone(),
                actual: served,
            });
        }
    }
    Ok(media_type)
}

/// Where an upload continues: registries answer with an absolute URL, a
/// path on the same host, or (rarely) a path relative to the request.
pub(crate) fn resolve_location(base: &str, request_url: &str, location: &str) -> String {
    let location = location.trim();
    if location.starts_with("http://") || location.starts_with("https://") {
        return location.to_string();
    }
    if let Some(rest) = location.strip_prefix("//") {
        let scheme = base.split("://").next().unwrap_or("https");
        return format!("{scheme}://{rest}");
    }
    if location.starts_with('/') {
        return format!("{base}{location}");
    }
    let path = request_url.split(['?', '#']).next().unwrap_or(request_url);
    let dir = match path.rfind('/') {
        Some(i) => &path[..=i],
        None => path,
    };
    format!("{dir}{location}")
}

/// Add `digest=` to an upload URL that may carry its own query (the
/// session state registries keep there).
pub(crate) fn with_digest(url: &str, digest: &Digest) -> String {
    // A fragment is never sent to a server; drop it so the query is last.
    let url = url.split('#').next().unwrap_or(url);
    let sep = if url.contains('?') { '&' } else { '?' };
    format!(
        "{url}{sep}digest={}",
        crate::client::encode_component(digest.as_str())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        let base = "http://127.0.0.1:5000";
        let req = "http://127.0.0.1:5000/v2/a/b/blobs/uploads/";
        assert_eq!(
            resolve_location(base, req, "/v2/a/b/blobs/uploads/uuid?_state=xyz"),
            "http://127.0.0.1:5000/v2/a/b/blobs/uploads/uuid?_state=xyz"
        );
        assert_eq!(
            resolve_location(base, req, "https://storage.example/up/1?sig=abc"),
            "https://storage.example/up/1?sig=abc"
        );
        assert_eq!(
            resolve_location(base, req, "//other:1/up"),
            "http://other:1/up"
        );
        assert_eq!(
            resolve_location(base, req, "uuid"),
            "http://127.0.0.1:5000/v2/a/b/blobs/uploads/uuid"
        );
        let d = Digest::of(b"");
        assert_eq!(
            with_digest("http://h/u?_state=x", &d),
            format!("http://h/u?_state=x&digest=sha256%3A{}", d.hex())
        );
        assert_eq!(
            with_digest("http://h/u", &d),
            format!("http://h/u?digest=sha256%3A{}", d.hex())
        );
    }
}
