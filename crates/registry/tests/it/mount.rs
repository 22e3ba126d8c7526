//! Cross-repository blob mounts: a layer the registry already holds under
//! another repository (one the store has an image from) is mounted, not
//! uploaded; a mount that does not happen never fails the push.

use crate::fake::{FakeServer, Reply, Request};
use crate::images::{self, OCI};
use crate::registry::TestRegistry;
use crate::{assert_clean, client, quick, store, Recorder};
use berth_oci::{media, Descriptor, Digest, ImageConfig, ImageManifest, Store};
use berth_registry::{
    Client, ClientOptions, DockerConfig, NoProgress, PullOptions, Reference, RegistryConfig,
};
use std::sync::{Arc, Mutex};

fn r(s: &str) -> Reference {
    Reference::parse(s).unwrap()
}

/// `base` plus one new gzip'd layer (and a config that says so).
fn on_top(store: &Store, base: &Descriptor, seed: &str) -> Descriptor {
    let mut manifest: ImageManifest = store.read_manifest(&base.digest).unwrap();
    let mut config: ImageConfig =
        serde_json::from_slice(&store.read_blob(&manifest.config.digest).unwrap()).unwrap();
    let tar = images::tar(&[("app/new.bin", &images::noise(50_000, seed))]);
    let blob = images::gzip(&tar);
    let digest = store.write_blob(&blob).unwrap();
    manifest.layers.push(Descriptor::new(
        media::OCI_LAYER_GZIP,
        digest,
        blob.len() as u64,
    ));
    config.rootfs.diff_ids.push(Digest::of(&tar));
    config.config.cmd = Some(vec!["/bin/hello".into(), seed.into()]);
    manifest.config = store.put_json(media::OCI_CONFIG, &config).unwrap();
    store.put_json(media::OCI_MANIFEST, &manifest).unwrap()
}

/// Pull `reference` into a fresh store with a fresh client and check that
/// every blob of `desc` came back byte for byte.
fn pull_back_complete(reference: &Reference, src: &Store, desc: &Descriptor) {
    let (_d, dst) = store();
    let pulled = client()
        .pull(&dst, reference, &PullOptions::default(), &NoProgress)
        .unwrap();
    assert_eq!(pulled.manifest_digest, desc.digest);
    let manifest = src.read_manifest(&desc.digest).unwrap();
    assert_eq!(pulled.layers_downloaded, manifest.layers.len());
    for d in manifest.layers.iter().chain([&manifest.config]) {
        let bytes = dst.read_blob(&d.digest).unwrap();
        assert_eq!(Digest::of(&bytes), d.digest);
        assert_eq!(bytes.len() as u64, d.size);
    }
    assert_clean(&dst);
}

#[test]
fn shared_layers_are_mounted_from_the_repository_the_store_pulled_them_from() {
    let reg = TestRegistry::start();
    // Image A goes to repository `a`...
    let (_d1, builder) = store();
    let a = images::image(&builder, &OCI, "amd64", "mount-a");
    let a_ref = r(&format!("{}/a:1", reg.addr));
    client()
        .push_descriptor(&builder, &a, &a_ref, &NoProgress)
        .unwrap();

    // ...and another store pulls it from there (so it knows A as
    // `host:port/a:1`), builds B on top of it and pushes B to `b`.
    let (_d2, src) = store();
    client()
        .pull(&src, &a_ref, &PullOptions::default(), &NoProgress)
        .unwrap();
    let b = on_top(&src, &a, "mount-b");
    let a_layers = src.read_manifest(&a.digest).unwrap().layers;
    let b_manifest = src.read_manifest(&b.digest).unwrap();
    let new_layer = b_manifest.layers.last().unwrap().clone();
    assert_eq!(a_layers.len(), 4);

    let b_ref = r(&format!("{}/b:1", reg.addr));
    let progress = Recorder::default();
    let pushed = client()
        .push_descriptor(&src, &b, &b_ref, &progress)
        .unwrap();
    assert_eq!(pushed.digest, b.digest);
    assert_eq!(pushed.blobs_mounted, 4, "A's layers");
    assert_eq!(pushed.blobs_uploaded, 2, "the new layer and B's config");
    assert_eq!(pushed.blobs_existing, 0);

    // Progress: each shared layer shows as mounted from `a` with no bytes
    // sent; the new layer's bytes all went out.
    let mut mounted = progress.mounted();
    mounted.sort();
    let mut want: Vec<(Digest, String)> = a_layers
        .iter()
        .map(|l| (l.digest.clone(), "a".to_string()))
        .collect();
    want.sort();
    assert_eq!(mounted, want);
    for l in &a_layers {
        assert_eq!(progress.bytes_for(&l.digest), 0, "{}", l.digest);
    }
    assert_eq!(progress.bytes_for(&new_layer.digest), new_layer.size);
    assert_eq!(progress.done(), [(new_layer.digest.clone(), false)]);

    // The registry now holds B whole under `b`.
    pull_back_complete(&b_ref, &src, &b);

    // Pushing again finds everything in `b`.
    let again = client()
        .push_descriptor(&src, &b, &b_ref, &NoProgress)
        .unwrap();
    assert_eq!(
        (
            again.blobs_mounted,
            again.blobs_uploaded,
            again.blobs_existing
        ),
        (0, 0, 6)
    );
}

/// The registry's upload sessions still open for `repository`: those with
/// their `data` or `startedat` file (a cancelled session leaves only an
/// empty `hashstates` directory behind in distribution 2.8).
fn open_uploads(reg: &TestRegistry, repository: &str) -> Vec<String> {
    let dir = reg
        .root
        .join("docker/registry/v2/repositories")
        .join(repository)
        .join("_uploads");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("data").exists() || p.join("startedat").exists())
        .map(|p| p.display().to_string())
        .collect()
}

#[test]
fn a_stale_source_in_the_store_means_an_upload_not_a_failed_push() {
    let reg = TestRegistry::start();
    let (_d, src) = store();
    // The store names images on this registry that the registry does not
    // hold there: `a` holds something else, `ghost` does not exist.
    let a = images::image(&src, &OCI, "amd64", "stale-a");
    let b = on_top(&src, &a, "stale-b");
    let other = images::image(&src, &OCI, "amd64", "stale-other");
    client()
        .push_descriptor(&src, &other, &r(&format!("{}/a:1", reg.addr)), &NoProgress)
        .unwrap();
    src.tag(&format!("{}/a:1", reg.addr), &a).unwrap();
    src.tag(&format!("{}/ghost:1", reg.addr), &a).unwrap();

    let b_ref = r(&format!("{}/b:1", reg.addr));
    let progress = Recorder::default();
    let pushed = client()
        .push_descriptor(&src, &b, &b_ref, &progress)
        .unwrap();
    assert_eq!(
        (
            pushed.blobs_mounted,
            pushed.blobs_uploaded,
            pushed.blobs_existing
        ),
        (0, 6, 0)
    );
    assert!(progress.mounted().is_empty());
    let manifest = src.read_manifest(&b.digest).unwrap();
    for l in &manifest.layers {
        assert_eq!(progress.bytes_for(&l.digest), l.size, "{}", l.digest);
    }
    // Both refused mounts opened sessions; the first was cancelled, the
    // second carried the upload: none is left open.
    assert_eq!(open_uploads(&reg, "b"), Vec::<String>::new());
    pull_back_complete(&b_ref, &src, &b);
}

#[test]
fn a_stale_first_source_is_passed_over_for_one_that_holds_the_layer() {
    let reg = TestRegistry::start();
    let (_d, src) = store();
    let a = images::image(&src, &OCI, "amd64", "second-a");
    let b = on_top(&src, &a, "second-b");
    // Tagged first, so tried first: a repository that does not exist.
    src.tag(&format!("{}/ghost:1", reg.addr), &a).unwrap();
    let a_ref = r(&format!("{}/a:1", reg.addr));
    src.tag(&a_ref.to_string(), &a).unwrap();
    client().push(&src, &a_ref, &NoProgress).unwrap();

    let b_ref = r(&format!("{}/b:1", reg.addr));
    let progress = Recorder::default();
    let pushed = client()
        .push_descriptor(&src, &b, &b_ref, &progress)
        .unwrap();
    assert_eq!(
        (
            pushed.blobs_mounted,
            pushed.blobs_uploaded,
            pushed.blobs_existing
        ),
        (4, 2, 0)
    );
    assert!(progress.mounted().iter().all(|(_, from)| from == "a"));
    assert_eq!(open_uploads(&reg, "b"), Vec::<String>::new());
    pull_back_complete(&b_ref, &src, &b);
}

/// What the fake token-auth registry below saw.
#[derive(Default)]
struct Seen {
    /// Query strings of mount requests, in order.
    mounts: Vec<String>,
    /// Digests whose bytes were PUT.
    uploaded: Vec<String>,
}

/// A registry that wants bearer tokens; a mount needs a token for pull
/// on `test/a` as well as push on `test/b`, which its token server grants
/// only when `grant_source` (and only when both scopes are asked for).
fn token_registry(grant_source: bool, seen: Arc<Mutex<Seen>>) -> FakeServer {
    FakeServer::start(move |req: &Request| {
        let host = req.header("host").unwrap_or("");
        let challenge = |scope: &str| {
            format!(r#"Bearer realm="http://{host}/token",service="fake",scope="{scope}""#)
        };
        let push_scope = "scope=repository%3Atest%2Fb%3Apull%2Cpush";
        let pull_a = "scope=repository%3Atest%2Fa%3Apull";
        if req.path.starts_with("/token") {
            let both = req.path.contains(push_scope) && req.path.contains(pull_a);
            return if both && grant_source {
                Reply::new(200, r#"{"token":"tok-mount"}"#)
            } else if req.path.contains(push_scope) {
                Reply::new(200, r#"{"token":"tok-push"}"#)
            } else {
                Reply::new(401, r#"{"errors":[{"code":"DENIED"}]}"#)
            };
        }
        let auth = req.header("authorization").unwrap_or("");
        let unauthorized = |scope: &str| {
            Reply::new(401, r#"{"errors":[{"code":"UNAUTHORIZED"}]}"#)
                .header("WWW-Authenticate", &challenge(scope))
        };
        if let Some(query) = req
            .path
            .strip_prefix("/v2/test/b/blobs/uploads/?")
            .filter(|q| q.contains("mount="))
        {
            seen.lock().unwrap().mounts.push(query.to_string());
            if auth != "Bearer tok-mount" {
                return unauthorized("repository:test/b:pull,push repository:test/a:pull");
            }
            let digest = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("mount="))
                .unwrap_or("")
                .replace("%3A", ":");
            return Reply::new(201, "")
                .header("Location", &format!("/v2/test/b/blobs/{digest}"))
                .header("Docker-Content-Digest", &digest);
        }
        if !matches!(auth, "Bearer tok-push" | "Bearer tok-mount") {
            return unauthorized("repository:test/b:pull,push");
        }
        match (req.method.as_str(), req.path.as_str()) {
            ("GET", "/v2/") => Reply::new(200, "{}"),
            ("HEAD", p) if p.starts_with("/v2/test/b/blobs/") => Reply::new(404, ""),
            ("POST", "/v2/test/b/blobs/uploads/") => {
                Reply::new(202, "").header("Location", "/v2/test/b/blobs/uploads/u1?_state=x")
            }
            ("PUT", p) if p.starts_with("/v2/test/b/blobs/uploads/u1?") => {
                let digest = p
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("digest="))
                    .unwrap_or("")
                    .replace("%3A", ":");
                seen.lock().unwrap().uploaded.push(digest);
                Reply::new(201, "")
            }
            ("PUT", "/v2/test/b/manifests/1") => Reply::new(201, ""),
            _ => Reply::new(404, r#"{"errors":[{"code":"NOT_FOUND"}]}"#),
        }
    })
}

#[test]
fn a_mount_asks_for_pull_on_the_source_and_a_refusal_falls_back_to_upload() {
    for grant_source in [true, false] {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let server = token_registry(grant_source, seen.clone());
        let (_d, src) = store();
        let a = images::image(&src, &OCI, "amd64", "token-a");
        let b = on_top(&src, &a, "token-b");
        src.tag(&format!("{}/test/a:1", server.addr), &a).unwrap();
        let b_ref = r(&format!("{}/test/b:1", server.addr));
        // One transfer at a time, so that the refusal of the first mount
        // is known before the next layer (no race in the counts below).
        let options = ClientOptions {
            parallel_transfers: 1,
            ..quick()
        };
        let c = Client::with_options(RegistryConfig::new(), DockerConfig::empty(), options);
        let pushed = c.push_descriptor(&src, &b, &b_ref, &NoProgress).unwrap();
        let seen = seen.lock().unwrap();
        let layers = src.read_manifest(&b.digest).unwrap().layers;
        assert!(
            seen.mounts.iter().all(|q| q.contains("from=test%2Fa")),
            "{:?}",
            seen.mounts
        );
        if grant_source {
            assert_eq!(
                (pushed.blobs_mounted, pushed.blobs_uploaded),
                (4, 2),
                "grant_source"
            );
            assert_eq!(seen.uploaded.len(), 2);
            // One request per layer of A: the token was asked for both
            // scopes up front, so no mount met a 401.
            assert_eq!(seen.mounts.len(), 4, "{:?}", seen.mounts);
            let new_layer = layers.last().unwrap().digest.to_string();
            assert!(seen.uploaded.contains(&new_layer));
        } else {
            assert_eq!(
                (pushed.blobs_mounted, pushed.blobs_uploaded),
                (0, 6),
                "refused"
            );
            assert_eq!(seen.uploaded.len(), 6);
            // Refused twice (the request and its retry with a fresh
            // token) for the first layer; not asked again after that.
            assert_eq!(seen.mounts.len(), 2, "{:?}", seen.mounts);
        }
    }
}
