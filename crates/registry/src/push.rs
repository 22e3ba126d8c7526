//! Push: upload the blobs a registry lacks, then the manifest(s) under the
//! tag. Manifests go last because registries refuse a manifest whose
//! blobs they do not have (and an index whose manifests they do not have).
//!
//! A layer the registry holds under another repository is mounted rather
//! than uploaded, as docker does (`POST …/blobs/uploads/?mount=&from=`).
//! Which repositories may hold it comes from the store: the images it has
//! under names on the same registry (`mount_sources`).

use crate::client::{encode_component, header, manifest_media_type, Client, Repo, Req, ReqBody};
use crate::parallel;
use crate::progress::Progress;
use crate::reference::Reference;
use crate::{Error, Result};
use berth_oci::{media, Descriptor, Digest, ImageIndex, ImageManifest, Store, StoreError};
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use ureq::http::Method;

/// Repositories a layer is tried to be mounted from, at most, before it
/// is uploaded.
const MOUNT_TRIES: usize = 2;

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
    /// Blobs whose bytes were sent (mounted ones are not counted here).
    pub blobs_uploaded: usize,
    /// Blobs the registry already had in the target repository.
    pub blobs_existing: usize,
    /// Layers the registry mounted from another of its repositories
    /// instead of receiving their bytes.
    pub blobs_mounted: usize,
}

struct UploadJob {
    desc: Descriptor,
    layer: bool,
}

/// What happened to one blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sent {
    Existing,
    Mounted,
    Uploaded,
}

/// Where layers may be mounted from during one push.
struct Mounts {
    sources: HashMap<Digest, Vec<String>>,
    /// Source repositories that refused a mount (401/403, or a token
    /// that could not be had): not asked again during this push.
    refused: Mutex<HashSet<String>>,
}

impl Mounts {
    /// Up to [`MOUNT_TRIES`] repositories to mount `digest` from.
    fn candidates(&self, digest: &Digest) -> Vec<String> {
        let refused = self.refused.lock().unwrap_or_else(|e| e.into_inner());
        self.sources
            .get(digest)
            .into_iter()
            .flatten()
            .filter(|r| !refused.contains(*r))
            .take(MOUNT_TRIES)
            .cloned()
            .collect()
    }

    fn refuse(&self, repository: &str) {
        self.refused
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(repository.to_string());
    }
}

/// Where the registry of `target` may already hold each layer: blob
/// digest → repositories on the same registry (other than the target's
/// own) that the store has images from, in the order the store's
/// references were tagged, each repository once. The layers of index
/// entries count too. It only saves uploads, so anything unreadable (a
/// name that does not parse, a manifest the store lacks) is skipped.
pub(crate) fn mount_sources(store: &Store, target: &Reference) -> HashMap<Digest, Vec<String>> {
    let mut sources: HashMap<Digest, Vec<String>> = HashMap::new();
    let Ok(references) = store.references() else {
        return sources;
    };
    for (name, desc) in references {
        let Ok(reference) = Reference::parse(&name) else {
            continue;
        };
        if reference.registry() != target.registry()
            || reference.repository() == target.repository()
        {
            continue;
        }
        let repository = reference.repository();
        for manifest in manifests_under(store, &desc) {
            for layer in manifest.layers {
                let repos = sources.entry(layer.digest).or_default();
                if !repos.iter().any(|r| r == repository) {
                    repos.push(repository.to_string());
                }
            }
        }
    }
    sources
}

/// The manifest `desc` names, or the manifests of the index it names that
/// the store has.
fn manifests_under(store: &Store, desc: &Descriptor) -> Vec<ImageManifest> {
    if media::is_manifest(&desc.media_type) {
        store.read_manifest(&desc.digest).ok().into_iter().collect()
    } else if media::is_index(&desc.media_type) {
        let Ok(index) = store.read_index_blob(&desc.digest) else {
            return Vec::new();
        };
        index
            .manifests
            .iter()
            .filter(|c| media::is_manifest(&c.media_type))
            .filter_map(|c| store.read_manifest(&c.digest).ok())
            .collect()
    } else {
        Vec::new()
    }
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
        let mounts = Mounts {
            sources: mount_sources(store, target),
            refused: Mutex::new(HashSet::new()),
        };
        let results = parallel::run(jobs, self.options.parallel_transfers, |job, stop| {
            if stop.load(std::sync::atomic::Ordering::Relaxed) {
                return Ok(Sent::Existing);
            }
            upload_blob(&repo, store, &job, &mounts, progress)
        })?;
        let count = |what: Sent| results.iter().filter(|s| **s == what).count();

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
            blobs_uploaded: count(Sent::Uploaded),
            blobs_existing: count(Sent::Existing),
            blobs_mounted: count(Sent::Mounted),
        })
    }
}

/// Send one blob unless the registry has it: a layer by a mount when the
/// store knows another repository there that holds it, else its bytes.
fn upload_blob(
    repo: &Repo<'_>,
    store: &Store,
    job: &UploadJob,
    mounts: &Mounts,
    progress: &dyn Progress,
) -> Result<Sent> {
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
            return Ok(Sent::Existing);
        }
        404 => {}
        _ => return Err(repo.status_error(&head, resp)),
    }

    let mount = if job.layer {
        try_mount(repo, mounts, digest)
    } else {
        Mount::No
    };
    let session = match mount {
        Mount::Done(from) => {
            progress.on_layer_mounted(digest, &from);
            return Ok(Sent::Mounted);
        }
        Mount::Session(url) => url,
        Mount::No => start_upload(repo)?,
    };
    let target = with_digest(&session, digest);
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
    Ok(Sent::Uploaded)
}

/// Open an upload session; returns its URL.
fn start_upload(repo: &Repo<'_>) -> Result<String> {
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
    Ok(resolve_location(&repo.base, &start.url, &location))
}

/// How a mount attempt ended.
#[derive(Debug)]
enum Mount {
    /// Mounted from this repository.
    Done(String),
    /// Not mounted, but the registry opened an upload session (this URL)
    /// for the bytes, as the spec says it does instead.
    Session(String),
    /// Not mounted and no session: upload the ordinary way.
    No,
}

/// Ask the registry to mount `digest` from the store's candidate
/// repositories. Never an error: a refusal (or any failure) only means
/// the bytes are uploaded after all.
fn try_mount(repo: &Repo<'_>, mounts: &Mounts, digest: &Digest) -> Mount {
    let candidates = mounts.candidates(digest);
    for (i, from) in candidates.iter().enumerate() {
        let last = i + 1 == candidates.len();
        let url = repo.url(&format!(
            "blobs/uploads/?mount={}&from={}",
            encode_component(digest.as_str()),
            encode_component(from)
        ));
        let req = Req::new(Method::POST, url).body(ReqBody::Bytes(&[]));
        // A mount reads `from`: the token must allow pulling it too.
        match repo.with_pull_of(from).send(&req) {
            Ok(resp) => match resp.status().as_u16() {
                201 => return Mount::Done(from.clone()),
                202 => {
                    let Some(location) = header(&resp, "location") else {
                        continue;
                    };
                    let session = resolve_location(&repo.base, &req.url, &location);
                    if last {
                        return Mount::Session(session);
                    }
                    // The next candidate may hold it: drop this session.
                    cancel_upload(repo, &session);
                }
                401 | 403 => mounts.refuse(from),
                _ => {}
            },
            Err(Error::Unauthorized { .. } | Error::Denied { .. } | Error::Auth(_)) => {
                mounts.refuse(from)
            }
            Err(_) => {}
        }
    }
    Mount::No
}

/// Cancel an upload session, as far as the registry cares to.
fn cancel_upload(repo: &Repo<'_>, session: &str) {
    let mut req = Req::new(Method::DELETE, session.to_string());
    req.auth = session.starts_with(&format!("{}/", repo.base));
    let _ = repo.send(&req);
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
    use berth_oci::{ImageConfig, Platform};

    fn r(s: &str) -> Reference {
        Reference::parse(s).unwrap()
    }

    /// A manifest over `layers` (named by content; the layer blobs need
    /// not exist for the map).
    fn manifest(store: &Store, layers: &[&str]) -> Descriptor {
        let config = store
            .put_json(media::OCI_CONFIG, &ImageConfig::default())
            .unwrap();
        let layers = layers
            .iter()
            .map(|l| Descriptor::new(media::OCI_LAYER_GZIP, Digest::of(l.as_bytes()), 1))
            .collect();
        let m = ImageManifest {
            schema_version: 2,
            media_type: Some(media::OCI_MANIFEST.into()),
            config,
            layers,
            annotations: Default::default(),
            extra: Default::default(),
        };
        store.put_json(media::OCI_MANIFEST, &m).unwrap()
    }

    fn repos(map: &HashMap<Digest, Vec<String>>, layer: &str) -> Vec<String> {
        map.get(&Digest::of(layer.as_bytes()))
            .cloned()
            .unwrap_or_default()
    }

    #[test]
    fn mount_sources_are_other_repositories_of_the_same_registry() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("images")).unwrap();
        let reg = "198.18.231.1:5231";
        let runtime = manifest(&store, &["base", "runtime-4.2.3"]);
        store
            .tag(&format!("{reg}/bench/runtime:4.2.3"), &runtime)
            .unwrap();
        // Another repository with a shared layer: both, in tagging order.
        let other = manifest(&store, &["base", "other"]);
        store.tag(&format!("{reg}/bench/other:1"), &other).unwrap();
        // The same repository again under another tag: listed once.
        store
            .tag(&format!("{reg}/bench/runtime:latest"), &runtime)
            .unwrap();
        // The target's own repository, another port and another host are
        // no sources.
        let own = manifest(&store, &["own"]);
        store.tag(&format!("{reg}/bench/app:old"), &own).unwrap();
        let port = manifest(&store, &["elsewhere-port"]);
        store
            .tag("198.18.231.1:5000/bench/runtime:1", &port)
            .unwrap();
        let hub = manifest(&store, &["hub"]);
        store.tag("docker.io/library/node:4", &hub).unwrap();
        // Unreadable: a name that is no reference, a manifest the store
        // lacks. Skipped silently.
        store.tag("Not A Reference", &runtime).unwrap();
        let ghost = Descriptor::new(media::OCI_MANIFEST, Digest::of(b"ghost"), 10);
        store.tag(&format!("{reg}/bench/ghost:1"), &ghost).unwrap();

        let map = mount_sources(&store, &r(&format!("{reg}/bench/app:2")));
        assert_eq!(repos(&map, "base"), ["bench/runtime", "bench/other"]);
        assert_eq!(repos(&map, "runtime-4.2.3"), ["bench/runtime"]);
        assert_eq!(repos(&map, "other"), ["bench/other"]);
        for absent in ["own", "elsewhere-port", "hub"] {
            assert!(repos(&map, absent).is_empty(), "{absent}");
        }
        assert_eq!(map.len(), 3, "{map:?}");
        // Configs are not mounted, so not listed.
        let config = store.read_manifest(&runtime.digest).unwrap().config;
        assert!(!map.contains_key(&config.digest));

        // Docker Hub under any of its names is one registry.
        let map = mount_sources(&store, &r("registry-1.docker.io/me/app"));
        assert_eq!(repos(&map, "hub"), ["library/node"]);
        assert_eq!(map.len(), 1);
    }

    #[test]
    fn mount_sources_read_the_entries_of_an_index_the_store_has() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("images")).unwrap();
        let amd = manifest(&store, &["amd-base", "amd-app"]);
        let mut amd_entry = amd.clone();
        amd_entry.platform = Platform::parse("linux/amd64");
        // An entry whose manifest was never pulled (single-platform pull).
        let mut arm_entry = Descriptor::new(media::OCI_MANIFEST, Digest::of(b"arm"), 10);
        arm_entry.platform = Platform::parse("linux/arm64");
        let index = ImageIndex {
            schema_version: 2,
            media_type: Some(media::OCI_INDEX.into()),
            manifests: vec![arm_entry, amd_entry],
            annotations: Default::default(),
            extra: Default::default(),
        };
        let index = store.put_json(media::OCI_INDEX, &index).unwrap();
        store.tag("localhost:5000/multi:1", &index).unwrap();

        let map = mount_sources(&store, &r("localhost:5000/copy:1"));
        assert_eq!(repos(&map, "amd-base"), ["multi"]);
        assert_eq!(repos(&map, "amd-app"), ["multi"]);
        assert_eq!(map.len(), 2);
    }

    #[test]
    fn mount_candidates_skip_refused_repositories_and_stop_at_two() {
        let d = Digest::of(b"layer");
        let mounts = Mounts {
            sources: HashMap::from([(
                d.clone(),
                vec!["a".to_string(), "b".to_string(), "c".to_string()],
            )]),
            refused: Mutex::new(HashSet::new()),
        };
        assert_eq!(mounts.candidates(&d), ["a", "b"]);
        mounts.refuse("a");
        assert_eq!(mounts.candidates(&d), ["b", "c"]);
        assert!(mounts.candidates(&Digest::of(b"other")).is_empty());
    }

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
