//! Failures: unreachable registries, corrupted and truncated blobs, and the
//! token dance, each leaving the store as it was.

use crate::fake::{FakeServer, Reply, Request};
use crate::images::{self, OCI};
use crate::registry::{free_port, TestRegistry};
use crate::{assert_clean, client, quick, snapshot, store, Recorder};
use berth_oci::{Descriptor, Digest, Store};
use berth_registry::{
    Client, DockerConfig, Error, NoProgress, PullOptions, Reference, RegistryConfig,
};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

fn r(s: &str) -> Reference {
    Reference::parse(s).unwrap()
}

#[test]
fn a_closed_port_fails_clearly() {
    let port = free_port();
    let (_d, dst) = store();
    let before = snapshot(&dst);
    let reference = r(&format!("127.0.0.1:{port}/test/app:1"));
    let err = client()
        .pull(&dst, &reference, &PullOptions::default(), &NoProgress)
        .unwrap_err();
    let msg = err.to_string();
    // Refused, not timed out: the error says which, and names the address.
    assert!(matches!(err, Error::Unreachable { .. }), "{msg}");
    assert!(msg.contains(&format!("127.0.0.1:{port}")), "{msg}");
    assert!(msg.to_lowercase().contains("refused"), "{msg}");
    assert_eq!(snapshot(&dst), before);
    assert_clean(&dst);
}

#[test]
fn a_corrupted_blob_in_the_registry_is_rejected() {
    let reg = TestRegistry::start();
    let (_d1, src) = store();
    let desc = images::image(&src, &OCI, "amd64", "corrupt");
    let reference = r(&format!("{}/test/corrupt:1", reg.addr));
    src.tag(&reference.to_string(), &desc).unwrap();
    client().push(&src, &reference, &NoProgress).unwrap();

    // Same length, different bytes: only the digest can tell.
    let manifest = src.read_manifest(&desc.digest).unwrap();
    let victim = &manifest.layers[1];
    let path = reg.blob_data(&victim.digest);
    let mut data = std::fs::read(&path).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0xff;
    std::fs::write(&path, &data).unwrap();

    let (_d2, dst) = store();
    let before = snapshot(&dst);
    let err = client()
        .pull(&dst, &reference, &PullOptions::default(), &NoProgress)
        .unwrap_err();
    let msg = err.to_string();
    match &err {
        Error::DigestMismatch {
            expected, actual, ..
        } => {
            assert_eq!(expected, &victim.digest);
            assert_eq!(actual, &Digest::of(&data));
        }
        _ => panic!("expected a digest mismatch, got: {msg}"),
    }
    assert!(
        msg.contains("digest mismatch") && msg.contains(victim.digest.as_str()),
        "{msg}"
    );
    assert!(!dst.has_blob(&victim.digest));
    assert!(!dst.has_blob(&Digest::of(&data)));
    assert!(!dst.has_blob(&desc.digest), "no manifest without its blobs");
    let (refs, _) = snapshot(&dst);
    assert_eq!(refs, before.0, "no tag");
    assert_clean(&dst);
}

/// Serve `images` (tag → descriptor) from `src` like a registry would,
/// with `hook` deciding first (auth, faults).
pub fn serve_store(
    src: Store,
    repository: &'static str,
    images: Vec<(&'static str, Descriptor)>,
    hook: impl Fn(&Request) -> Option<Reply> + Send + Sync + 'static,
) -> FakeServer {
    FakeServer::start(move |req| {
        if let Some(reply) = hook(req) {
            return reply;
        }
        if req.path == "/v2/" {
            return Reply::new(200, "{}");
        }
        let prefix = format!("/v2/{repository}/");
        let Some(rest) = req.path.strip_prefix(&prefix) else {
            return Reply::new(
                404,
                r#"{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry"}]}"#,
            );
        };
        if let Some(reference) = rest.strip_prefix("manifests/") {
            let desc = images
                .iter()
                .find(|(t, d)| *t == reference || d.digest.as_str() == reference)
                .map(|(_, d)| d.clone());
            return match desc {
                Some(d) => Reply::new(200, src.read_blob(&d.digest).unwrap())
                    .header("Content-Type", &d.media_type)
                    .header("Docker-Content-Digest", d.digest.as_str()),
                None => Reply::new(
                    404,
                    r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#,
                ),
            };
        }
        if let Some(digest) = rest.strip_prefix("blobs/") {
            if let Ok(d) = digest.parse::<Digest>() {
                if let Ok(bytes) = src.read_blob(&d) {
                    return Reply::new(200, bytes)
                        .header("Content-Type", "application/octet-stream");
                }
            }
        }
        Reply::new(
            404,
            r#"{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown to registry"}]}"#,
        )
    })
}

#[test]
fn a_connection_closed_mid_blob_is_an_error_and_changes_nothing() {
    let (_d1, src) = store();
    let desc = images::image(&src, &OCI, "amd64", "truncated");
    let manifest = src.read_manifest(&desc.digest).unwrap();
    let victim = manifest.layers[1].clone();
    assert!(victim.size > 100_000);
    let hits = Arc::new(AtomicUsize::new(0));
    let hits2 = hits.clone();
    let victim_path = format!("/v2/test/cut/blobs/{}", victim.digest);
    let cut = victim.size as usize / 2;
    let src2 = src.clone();
    let server = serve_store(
        src.clone(),
        "test/cut",
        vec![("1", desc.clone())],
        move |req| {
            (req.path == victim_path).then(|| {
                hits2.fetch_add(1, Ordering::SeqCst);
                let mut reply = Reply::new(200, src2.read_blob(&victim.digest).unwrap());
                reply.cut_after = Some(cut);
                reply
            })
        },
    );

    let (_d2, dst) = store();
    let before = snapshot(&dst);
    let reference = r(&format!("{}/test/cut:1", server.addr));
    let progress = Recorder::default();
    let c = client();
    let err = c
        .pull(&dst, &reference, &PullOptions::default(), &progress)
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Truncated { .. }), "{msg}");
    assert!(msg.contains(manifest.layers[1].digest.as_str()), "{msg}");
    // Interrupted downloads are retried from scratch, then given up.
    let tries = hits.load(Ordering::SeqCst);
    assert_eq!(tries, 1 + quick().retries as usize, "{msg}");
    let restarts = progress
        .events()
        .iter()
        .filter(|e| matches!(e, crate::Event::Restart(_)))
        .count();
    assert_eq!(restarts, tries - 1);
    assert!(!dst.has_blob(&manifest.layers[1].digest));
    let (refs, _) = snapshot(&dst);
    assert_eq!(refs, before.0);
    assert_clean(&dst);
}

#[test]
fn bearer_tokens_are_fetched_with_credentials_and_cached() {
    let (_d1, src) = store();
    let desc = images::image(&src, &OCI, "amd64", "auth");
    let token_requests = Arc::new(AtomicUsize::new(0));
    let unauthorized = Arc::new(AtomicUsize::new(0));
    let (tr, un) = (token_requests.clone(), unauthorized.clone());
    let server = serve_store(
        src.clone(),
        "test/private",
        vec![("1", desc.clone())],
        move |req: &Request| {
            let host = req.header("host").unwrap_or("");
            let challenge =
                format!(r#"Bearer realm="http://{host}/token",service="fake-registry""#);
            if req.path.starts_with("/token") {
                tr.fetch_add(1, Ordering::SeqCst);
                let scope_ok = req
                    .path
                    .contains("scope=repository%3Atest%2Fprivate%3Apull")
                    && req.path.contains("service=fake-registry");
                // "u:p" in base64.
                let creds_ok = req.header("authorization") == Some("Basic dTpw");
                return Some(if scope_ok && creds_ok {
                    Reply::new(200, r#"{"token":"tok-123","expires_in":300}"#)
                } else {
                    Reply::new(
                        401,
                        r#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#,
                    )
                });
            }
            if req.header("authorization") != Some("Bearer tok-123") {
                un.fetch_add(1, Ordering::SeqCst);
                return Some(
                Reply::new(401, r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#)
                    .header("WWW-Authenticate", &challenge),
            );
            }
            None
        },
    );
    let reference = r(&format!("{}/test/private:1", server.addr));

    // With the credentials docker login would have saved.
    let config = format!(r#"{{"auths": {{"{}": {{"auth": "dTpw"}}}}}}"#, server.addr);
    let creds = DockerConfig::from_json(config.as_bytes(), Path::new("config.json")).unwrap();
    let c = Client::with_options(RegistryConfig::new(), creds, quick());
    let (_d2, dst) = store();
    let pulled = c
        .pull(&dst, &reference, &PullOptions::default(), &NoProgress)
        .unwrap();
    assert_eq!(pulled.manifest_digest, desc.digest);
    assert_clean(&dst);
    // One token for the scope, reused for the manifest and all 5 blobs;
    // the only 401 is the /v2/ probe's.
    assert_eq!(token_requests.load(Ordering::SeqCst), 1);
    assert_eq!(unauthorized.load(Ordering::SeqCst), 1);

    // Without credentials: a clear error, store unchanged.
    let (_d3, empty) = store();
    let before = snapshot(&empty);
    let err = client()
        .pull(&empty, &reference, &PullOptions::default(), &NoProgress)
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Unauthorized { .. }), "{msg}");
    assert!(msg.contains("docker login"), "{msg}");
    assert_eq!(snapshot(&empty), before);
}

#[test]
fn basic_auth_is_sent_when_asked_for() {
    let (_d1, src) = store();
    let desc = images::image(&src, &OCI, "amd64", "basic");
    let server = serve_store(
        src.clone(),
        "test/basic",
        vec![("1", desc.clone())],
        |req: &Request| {
            (req.header("authorization") != Some("Basic dTpw"))
                .then(|| Reply::new(401, "").header("WWW-Authenticate", r#"Basic realm="fake""#))
        },
    );
    let reference = r(&format!("{}/test/basic:1", server.addr));
    let config = format!(
        r#"{{"auths": {{"http://{}/v2/": {{"username": "u", "password": "p"}}}}}}"#,
        server.addr
    );
    let creds = DockerConfig::from_json(config.as_bytes(), Path::new("config.json")).unwrap();
    let c = Client::with_options(RegistryConfig::new(), creds, quick());
    let (_d2, dst) = store();
    c.pull(&dst, &reference, &PullOptions::default(), &NoProgress)
        .unwrap();
    assert_clean(&dst);

    let err = client()
        .pull(
            &dst,
            &r(&format!("{}/test/basic:1", server.addr)),
            &PullOptions::default(),
            &NoProgress,
        )
        .unwrap_err();
    assert!(matches!(err, Error::Unauthorized { .. }), "{err}");
}

#[test]
fn a_manifest_that_does_not_match_its_digest_is_rejected() {
    let (_d1, src) = store();
    let desc = images::image(&src, &OCI, "amd64", "lying");
    let other = images::image(&src, &OCI, "amd64", "lying-other");
    // Claims `desc`'s digest, serves `other`'s bytes.
    let src2 = src.clone();
    let (d, o) = (desc.clone(), other.clone());
    let server = serve_store(src.clone(), "test/lie", vec![], move |req: &Request| {
        req.path.contains("/manifests/").then(|| {
            Reply::new(200, src2.read_blob(&o.digest).unwrap())
                .header("Content-Type", &o.media_type)
                .header("Docker-Content-Digest", d.digest.as_str())
        })
    });
    let (_d2, dst) = store();
    let before = snapshot(&dst);
    for reference in [
        format!("{}/test/lie:1", server.addr),
        format!("{}/test/lie@{}", server.addr, desc.digest),
    ] {
        let err = client()
            .pull(&dst, &r(&reference), &PullOptions::default(), &NoProgress)
            .unwrap_err();
        assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
        assert_eq!(snapshot(&dst), before);
    }
}

#[test]
fn an_unreachable_mirror_falls_back_and_an_unreachable_everything_says_so() {
    let reg = TestRegistry::start();
    let (_d1, src) = store();
    let desc = images::image(&src, &OCI, "amd64", "fallback");
    let upstream = r(&format!("{}/test/fallback:1", reg.addr));
    src.tag(&upstream.to_string(), &desc).unwrap();
    client().push(&src, &upstream, &NoProgress).unwrap();

    // A mirror that is down, for a registry that is up.
    let mut config = RegistryConfig::new();
    config
        .add_mirror(&reg.addr, &format!("http://127.0.0.1:{}", free_port()))
        .unwrap();
    let (_d2, dst) = store();
    let pulled = client_for(config)
        .pull(&dst, &upstream, &PullOptions::default(), &NoProgress)
        .unwrap();
    assert_eq!(pulled.mirror_of, None, "served by the registry itself");
    assert_eq!(pulled.mirror_failures.len(), 1);

    // A mirror without the image, for a registry that is down.
    let dead = free_port();
    let mut config = RegistryConfig::new();
    config
        .add_mirror(
            &format!("127.0.0.1:{dead}"),
            &format!("http://{}", reg.addr),
        )
        .unwrap();
    let before = snapshot(&dst);
    let err = client_for(config)
        .pull(
            &dst,
            &r(&format!("127.0.0.1:{dead}/test/absent:1")),
            &PullOptions::default(),
            &NoProgress,
        )
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::AllSourcesFailed { .. }), "{msg}");
    assert!(matches!(err.root(), Error::Unreachable { .. }), "{msg}");
    assert!(
        msg.contains("manifest unknown") && msg.contains("mirrors tried first"),
        "{msg}"
    );
    assert_eq!(snapshot(&dst), before);
}

fn client_for(config: RegistryConfig) -> Client {
    Client::with_options(config, DockerConfig::empty(), quick())
}
