//! A hostile registry: bodies that never end, lengths that lie, documents
//! that promise too much. Each pull must end with a clear error after
//! reading a bounded amount, and leave the store as it was.

use crate::fake::{FakeServer, Reply, Request};
use crate::faults::serve_store;
use crate::images::{self, OCI};
use crate::{assert_clean, client, snapshot, store};
use berth_oci::{media, Store};
use berth_registry::{Error, NoProgress, PullOptions, Reference};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

const TEN_GB: u64 = 10 << 30;

/// What a hostile server may push at most before the test calls the client
/// unbounded: far above any limit the client has, far below a 10 GB body.
const ENDLESS_BOUND: u64 = 1 << 30;

/// Bytes a bounded client may have let through beyond its own limit: what
/// the kernel's socket buffers on both ends hold.
const SOCKET_SLACK: u64 = 32 << 20;

fn r(s: &str) -> Reference {
    Reference::parse(s).unwrap()
}

fn pull(store: &Store, reference: &str) -> Error {
    client()
        .pull(store, &r(reference), &PullOptions::default(), &NoProgress)
        .expect_err("a hostile registry's image was pulled")
}

/// A manifest answer with a 10 GB Content-Length and an endless body is cut at the 4 MiB manifest limit.
#[test]
fn an_endless_manifest_is_cut_at_the_manifest_limit() {
    let sent = Arc::new(AtomicU64::new(0));
    let sent2 = sent.clone();
    let server = FakeServer::start(move |req: &Request| {
        if req.path == "/v2/" {
            return Reply::new(200, "{}");
        }
        Reply::new(200, "{")
            .header("Content-Type", media::OCI_MANIFEST)
            .endless(Some(TEN_GB), ENDLESS_BOUND, &sent2)
    });
    let (_d, dst) = store();
    let before = snapshot(&dst);
    let err = pull(&dst, &format!("{}/test/endless:1", server.addr));
    let msg = err.to_string();
    assert!(matches!(err, Error::TooLarge { .. }), "{msg}");
    assert!(msg.contains("manifest") && msg.contains("4194304"), "{msg}");
    let sent = sent.load(Ordering::SeqCst);
    assert!(
        sent < (4 << 20) + SOCKET_SLACK,
        "the client read {sent} bytes"
    );
    assert_eq!(snapshot(&dst), before);
    assert_clean(&dst);
}

/// The same without any Content-Length: a manifest streamed until the connection ends.
#[test]
fn an_unsized_endless_manifest_is_cut_at_the_manifest_limit() {
    let sent = Arc::new(AtomicU64::new(0));
    let sent2 = sent.clone();
    let server = FakeServer::start(move |req: &Request| {
        if req.path == "/v2/" {
            return Reply::new(200, "{}");
        }
        Reply::new(200, "{")
            .header("Content-Type", media::OCI_MANIFEST)
            .endless(None, ENDLESS_BOUND, &sent2)
    });
    let (_d, dst) = store();
    let before = snapshot(&dst);
    let err = pull(&dst, &format!("{}/test/endless:1", server.addr));
    assert!(matches!(err, Error::TooLarge { .. }), "{err}");
    let sent = sent.load(Ordering::SeqCst);
    assert!(
        sent < (4 << 20) + SOCKET_SLACK,
        "the client read {sent} bytes"
    );
    assert_eq!(snapshot(&dst), before);
    assert_clean(&dst);
}

/// A layer answered with a 10 GB Content-Length and an endless body is cut at the size its manifest declares.
#[test]
fn an_endless_blob_is_cut_at_its_declared_size() {
    let (_d1, src) = store();
    let desc = images::image(&src, &OCI, "amd64", "endless-blob");
    let victim = src.read_manifest(&desc.digest).unwrap().layers[1].clone();
    let victim_path = format!("/v2/test/endless/blobs/{}", victim.digest);
    let sent = Arc::new(AtomicU64::new(0));
    let hits = Arc::new(AtomicUsize::new(0));
    let (sent2, hits2, src2, digest) = (
        sent.clone(),
        hits.clone(),
        src.clone(),
        victim.digest.clone(),
    );
    let server = serve_store(src, "test/endless", vec![("1", desc)], move |req| {
        (req.path == victim_path).then(|| {
            hits2.fetch_add(1, Ordering::SeqCst);
            Reply::new(200, src2.read_blob(&digest).unwrap()).endless(
                Some(TEN_GB),
                ENDLESS_BOUND,
                &sent2,
            )
        })
    });
    let (_d2, dst) = store();
    let before = snapshot(&dst);
    let err = pull(&dst, &format!("{}/test/endless:1", server.addr));
    let msg = err.to_string();
    assert!(matches!(err, Error::TooLarge { .. }), "{msg}");
    assert!(msg.contains(victim.digest.as_str()), "{msg}");
    // Too much is not a glitch to retry: one request.
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    let sent = sent.load(Ordering::SeqCst);
    assert!(
        sent < victim.size + SOCKET_SLACK,
        "the client read {sent} bytes of a {}-byte blob",
        victim.size
    );
    assert!(!dst.has_blob(&victim.digest));
    assert_eq!(snapshot(&dst).0, before.0, "no tag");
    assert_clean(&dst);
}

/// A manifest declaring a 10 GB config is refused before the config is requested.
#[test]
fn a_huge_config_is_refused_before_it_is_fetched() {
    let (_d1, src) = store();
    let desc = images::image(&src, &OCI, "amd64", "huge-config");
    let mut manifest = src.read_manifest(&desc.digest).unwrap();
    manifest.config.size = TEN_GB;
    let config = manifest.config.digest.clone();
    let lying = src.put_json(media::OCI_MANIFEST, &manifest).unwrap();
    let config_path = format!("/v2/test/config/blobs/{config}");
    let config_requests = Arc::new(AtomicUsize::new(0));
    let counter = config_requests.clone();
    let server = serve_store(src, "test/config", vec![("1", lying)], move |req| {
        if req.path == config_path {
            counter.fetch_add(1, Ordering::SeqCst);
        }
        None
    });
    let (_d2, dst) = store();
    let before = snapshot(&dst);
    let err = pull(&dst, &format!("{}/test/config:1", server.addr));
    let msg = err.to_string();
    assert!(matches!(err, Error::ConfigTooLarge { .. }), "{msg}");
    assert!(
        msg.contains(config.as_str()) && msg.contains("10737418240"),
        "{msg}"
    );
    assert_eq!(config_requests.load(Ordering::SeqCst), 0);
    assert_eq!(snapshot(&dst), before);
    assert_clean(&dst);
}

/// An endless error body is read only as far as the error message needs.
#[test]
fn an_endless_error_body_is_bounded() {
    let sent = Arc::new(AtomicU64::new(0));
    let sent2 = sent.clone();
    let server = FakeServer::start(move |req: &Request| {
        if req.path == "/v2/" {
            return Reply::new(200, "{}");
        }
        Reply::new(403, "denied ").endless(Some(TEN_GB), ENDLESS_BOUND, &sent2)
    });
    let (_d, dst) = store();
    let before = snapshot(&dst);
    let err = pull(&dst, &format!("{}/test/error:1", server.addr));
    let msg = err.to_string();
    assert!(matches!(err, Error::Denied { .. }), "{msg}");
    // A snippet of what the server said, not all of it.
    assert!(msg.contains("denied") && msg.len() < 4096, "{msg}");
    let sent = sent.load(Ordering::SeqCst);
    assert!(sent < SOCKET_SLACK, "the client read {sent} bytes");
    assert_eq!(snapshot(&dst), before);
    assert_clean(&dst);
}

/// A layer whose bytes do not match its digest (same length) is refused; nothing half-written stays.
#[test]
fn a_layer_that_does_not_match_its_digest_is_refused() {
    let (_d1, src) = store();
    let desc = images::image(&src, &OCI, "amd64", "wrong-layer");
    let victim = src.read_manifest(&desc.digest).unwrap().layers[1].clone();
    let victim_path = format!("/v2/test/wrong/blobs/{}", victim.digest);
    let src2 = src.clone();
    let server = serve_store(src, "test/wrong", vec![("1", desc.clone())], move |req| {
        (req.path == victim_path).then(|| {
            let mut bytes = src2.read_blob(&victim.digest).unwrap();
            let last = bytes.len() - 1;
            bytes[last] ^= 0xff;
            Reply::new(200, bytes)
        })
    });
    let (_d2, dst) = store();
    let before = snapshot(&dst);
    let err = pull(&dst, &format!("{}/test/wrong:1", server.addr));
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
    assert!(
        !dst.has_blob(&desc.digest),
        "no manifest without its layers"
    );
    assert_eq!(snapshot(&dst).0, before.0, "no tag");
    assert_clean(&dst);
}
