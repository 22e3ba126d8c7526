//! Hostile documents and blobs: a digest can never name a path outside
//! `blobs/`, a blob that is not what it claims never enters the store, and
//! a damaged store is an error, never a panic.

use berth_oci::{
    media, Descriptor, Digest, ImageIndex, ImageManifest, Platform, Store, StoreError,
};
use std::fs;
use std::io::Write;

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("images")).unwrap();
    (dir, store)
}

fn leftovers(store: &Store) -> (usize, usize) {
    let count = |d: &str| fs::read_dir(store.root().join(d)).unwrap().count();
    (count("blobs/sha256"), count("ingest"))
}

/// A manifest whose digests are paths (`../`, absolute, other algorithms) does not parse.
#[test]
fn digests_that_name_paths_are_refused_when_parsed() {
    for digest in [
        "sha256:../../../../etc/passwd",
        "/etc/passwd",
        "sha256:/etc/passwd",
        "sha512:0000",
        "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855/..",
    ] {
        let doc = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{digest}","size":1}},"layers":[]}}"#,
            media::OCI_MANIFEST,
            media::OCI_CONFIG
        );
        let err = serde_json::from_str::<ImageManifest>(&doc).unwrap_err();
        assert!(
            err.to_string().contains("invalid digest"),
            "{digest}: {err}"
        );
    }
}

/// A blob whose content does not match the digest or size it was promised never appears.
#[test]
fn a_blob_that_is_not_what_it_claims_leaves_nothing() {
    let (_d, s) = store();
    let mut w = s.blob_writer().unwrap();
    w.write_all(b"what the server sent").unwrap();
    let err = w
        .commit(Some(&Digest::of(b"what the manifest named")), None)
        .unwrap_err();
    assert!(matches!(err, StoreError::DigestMismatch { .. }), "{err}");
    assert_eq!(leftovers(&s), (0, 0));

    let mut w = s.blob_writer().unwrap();
    w.write_all(b"short").unwrap();
    let err = w
        .commit(Some(&Digest::of(b"short")), Some(1 << 40))
        .unwrap_err();
    assert!(matches!(err, StoreError::SizeMismatch { .. }), "{err}");
    assert_eq!(leftovers(&s), (0, 0));
    assert!(s.fsck().unwrap().problems.is_empty());
}

/// A reference to a document of an unknown media type is a clear error, not a guess.
#[test]
fn an_unknown_media_type_is_a_clear_error() {
    let (_d, s) = store();
    let digest = s.write_blob(b"{}").unwrap();
    s.tag(
        "odd",
        &Descriptor::new("application/x-not-an-image", digest.clone(), 2),
    )
    .unwrap();
    let err = s.image("odd", &Platform::host()).unwrap_err();
    assert!(matches!(err, StoreError::UnsupportedMediaType(..)), "{err}");
    assert!(
        err.to_string().contains("application/x-not-an-image"),
        "{err}"
    );
}

/// Documents in the store that are not what their media type says are errors naming the blob.
#[test]
fn malformed_documents_are_errors_not_panics() {
    let (_d, s) = store();
    for (media_type, bytes) in [
        (media::OCI_MANIFEST, &b"not json"[..]),
        (media::OCI_INDEX, &b"{\"manifests\": 7}"[..]),
        (media::OCI_MANIFEST, &b"[]"[..]),
    ] {
        let digest = s.write_blob(bytes).unwrap();
        s.tag(
            "bad",
            &Descriptor::new(media_type, digest.clone(), bytes.len() as u64),
        )
        .unwrap();
        let err = s.image("bad", &Platform::host()).unwrap_err();
        assert!(matches!(err, StoreError::BadDocument { .. }), "{err}");
        assert!(err.to_string().contains(digest.as_str()), "{err}");
    }
    // An index whose entry names a blob the store does not have.
    let index = ImageIndex {
        manifests: vec![Descriptor::new(
            media::OCI_MANIFEST,
            Digest::of(b"absent"),
            6,
        )],
        ..Default::default()
    };
    let desc = s.put_json(media::OCI_INDEX, &index).unwrap();
    s.tag("hollow", &desc).unwrap();
    let err = s.image("hollow", &Platform::host()).unwrap_err();
    assert!(matches!(err, StoreError::MissingBlob(_)), "{err}");
}

/// A damaged store index is reported with its path; nothing panics.
#[test]
fn a_corrupt_store_index_is_reported() {
    let (_d, s) = store();
    fs::write(s.root().join("index.json"), b"{\"manifests\": [").unwrap();
    let err = s.references().unwrap_err();
    assert!(matches!(err, StoreError::BadIndex { .. }), "{err}");
    assert!(err.to_string().contains("index.json"), "{err}");
    assert!(s.resolve("any").is_err());
}
