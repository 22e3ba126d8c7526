//! Round trips through a real registry.

use crate::images::{self, DOCKER, OCI};
use crate::registry::{free_port, TestRegistry};
use crate::{assert_clean, client, client_with, snapshot, store, Recorder};
use berth_oci::{media, Platform};
use berth_registry::{Error, NoProgress, PullOptions, Reference, RegistryConfig};

fn r(s: &str) -> Reference {
    Reference::parse(s).unwrap()
}

#[test]
fn push_then_pull_round_trips_an_oci_image() {
    let reg = TestRegistry::start();
    let (_d1, src) = store();
    let desc = images::image(&src, &OCI, "amd64", "round-trip");
    let reference = r(&format!("{}/test/app:1.0", reg.addr));
    src.tag(&reference.to_string(), &desc).unwrap();

    let c = client();
    let progress = Recorder::default();
    let pushed = c.push(&src, &reference, &progress).unwrap();
    assert_eq!(pushed.digest, desc.digest);
    assert_eq!(pushed.media_type, media::OCI_MANIFEST);
    assert_eq!(pushed.destination, format!("http://{}", reg.addr));
    assert_eq!(pushed.blobs_uploaded, 5, "4 layers + config");
    assert_eq!(pushed.blobs_existing, 0);
    let manifest = src.read_manifest(&desc.digest).unwrap();
    for l in &manifest.layers {
        assert_eq!(
            progress.bytes_for(&l.digest),
            l.size,
            "upload bytes of {}",
            l.digest
        );
    }
    assert_eq!(progress.done().len(), 4);
    assert!(progress.done().iter().all(|(_, cached)| !cached));

    // Pushing again moves no blob.
    let again = c.push(&src, &reference, &NoProgress).unwrap();
    assert_eq!((again.blobs_uploaded, again.blobs_existing), (0, 5));

    // Pull into a fresh store with a fresh client.
    let (_d2, dst) = store();
    let progress = Recorder::default();
    let pulled = client()
        .pull(&dst, &reference, &PullOptions::default(), &progress)
        .unwrap();
    assert_eq!(pulled.manifest_digest, desc.digest);
    assert_eq!(pulled.digest(), &desc.digest);
    assert_eq!(pulled.index_digest, None);
    assert_eq!(pulled.source, format!("http://{}", reg.addr));
    assert_eq!(pulled.mirror_of, None);
    assert_eq!((pulled.layers_downloaded, pulled.layers_cached), (4, 0));
    let total: u64 = manifest.layers.iter().map(|l| l.size).sum::<u64>() + manifest.config.size;
    assert_eq!(pulled.bytes_downloaded, total);
    for l in &manifest.layers {
        assert_eq!(progress.bytes_for(&l.digest), l.size);
        // Stored byte for byte, compressed or not.
        assert_eq!(
            dst.read_blob(&l.digest).unwrap(),
            src.read_blob(&l.digest).unwrap()
        );
    }
    let tagged = dst.resolve(&reference.to_string()).unwrap().unwrap();
    assert_eq!(tagged.digest, desc.digest);
    assert_eq!(
        dst.read_blob(&desc.digest).unwrap(),
        src.read_blob(&desc.digest).unwrap()
    );
    let image = dst
        .image(&reference.to_string(), &Platform::host())
        .unwrap();
    assert_eq!(image.config.config.working_dir.as_deref(), Some("/app"));
    assert_clean(&dst);

    // A second pull finds every layer in place.
    let progress = Recorder::default();
    let again = client()
        .pull(&dst, &reference, &PullOptions::default(), &progress)
        .unwrap();
    assert_eq!((again.layers_downloaded, again.layers_cached), (0, 4));
    assert!(progress.done().iter().all(|(_, cached)| *cached));
    assert_clean(&dst);
}

#[test]
fn docker_media_types_round_trip() {
    let reg = TestRegistry::start();
    let (_d1, src) = store();
    let desc = images::image(&src, &DOCKER, "amd64", "docker-v2");
    let reference = r(&format!("{}/test/docker-v2", reg.addr));
    assert_eq!(reference.tag(), Some("latest"));
    src.tag(&reference.to_string(), &desc).unwrap();
    let pushed = client().push(&src, &reference, &NoProgress).unwrap();
    assert_eq!(pushed.media_type, media::DOCKER_MANIFEST);

    let (_d2, dst) = store();
    let pulled = client()
        .pull(&dst, &reference, &PullOptions::default(), &NoProgress)
        .unwrap();
    assert_eq!(pulled.manifest_digest, desc.digest);
    assert_eq!(pulled.tagged.media_type, media::DOCKER_MANIFEST);
    assert_eq!(
        dst.read_blob(&desc.digest).unwrap(),
        src.read_blob(&desc.digest).unwrap()
    );
    assert_clean(&dst);
}

#[test]
fn pull_by_digest() {
    let reg = TestRegistry::start();
    let (_d1, src) = store();
    let desc = images::image(&src, &OCI, "amd64", "by-digest");
    let tagged = r(&format!("{}/test/pinned:v1", reg.addr));
    src.tag(&tagged.to_string(), &desc).unwrap();
    client().push(&src, &tagged, &NoProgress).unwrap();

    let (_d2, dst) = store();
    let pinned = r(&format!("{}/test/pinned@{}", reg.addr, desc.digest));
    let pulled = client()
        .pull(&dst, &pinned, &PullOptions::default(), &NoProgress)
        .unwrap();
    assert_eq!(pulled.manifest_digest, desc.digest);
    // The store name is the digest reference itself.
    assert_eq!(
        dst.resolve(&pinned.to_string()).unwrap().unwrap().digest,
        desc.digest
    );
    assert!(dst.resolve(&tagged.to_string()).unwrap().is_none());
    assert_clean(&dst);

    // name:tag@digest pulls by digest and keeps the full form as the name.
    let both = r(&format!("{}/test/pinned:v1@{}", reg.addr, desc.digest));
    client()
        .pull(&dst, &both, &PullOptions::default(), &NoProgress)
        .unwrap();
    assert!(dst.resolve(&both.to_string()).unwrap().is_some());

    // A digest the registry does not have is "manifest unknown".
    let other = r(&format!(
        "{}/test/pinned@{}",
        reg.addr,
        berth_oci::Digest::of(b"nothing")
    ));
    let err = client()
        .pull(&dst, &other, &PullOptions::default(), &NoProgress)
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
}

#[test]
fn platform_selection_from_an_index() {
    let reg = TestRegistry::start();
    let (_d1, src) = store();
    let (index, amd, arm) = images::two_platform_index(&src, &OCI, "multi");
    let reference = r(&format!("{}/test/multi:2", reg.addr));
    src.tag(&reference.to_string(), &index).unwrap();
    let pushed = client().push(&src, &reference, &NoProgress).unwrap();
    assert_eq!(pushed.digest, index.digest);
    assert_eq!(pushed.media_type, media::OCI_INDEX);
    assert_eq!(pushed.blobs_uploaded, 10);

    // One platform: the name points at that platform's manifest, and only
    // its blobs are fetched.
    let (_d2, dst) = store();
    let arm64 = Platform::parse("linux/arm64").unwrap();
    let opts = PullOptions {
        platform: Some(arm64.clone()),
        all_platforms: false,
    };
    let pulled = client().pull(&dst, &reference, &opts, &NoProgress).unwrap();
    assert_eq!(pulled.manifest_digest, arm.digest);
    assert_eq!(pulled.index_digest, Some(index.digest.clone()));
    assert_eq!(pulled.digest(), &index.digest);
    assert_eq!(pulled.tagged.digest, arm.digest);
    assert_eq!(
        pulled
            .tagged
            .platform
            .as_ref()
            .map(|p| p.architecture.as_str()),
        Some("arm64")
    );
    assert!(!dst.has_blob(&amd.digest));
    let image = dst.image(&reference.to_string(), &arm64).unwrap();
    assert_eq!(image.manifest_digest, arm.digest);
    assert_eq!(image.config.architecture, "arm64");
    assert_clean(&dst);

    // A platform the index lacks: a clear error, store unchanged.
    let before = snapshot(&dst);
    let opts = PullOptions {
        platform: Platform::parse("linux/s390x"),
        all_platforms: false,
    };
    let err = client()
        .pull(&dst, &reference, &opts, &NoProgress)
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, Error::NoPlatform { .. })
            && msg.contains("linux/s390x")
            && msg.contains("linux/amd64"),
        "{msg}"
    );
    assert_eq!(snapshot(&dst), before);

    // Every platform: the name points at the index; the store can serve
    // either platform.
    let (_d3, all) = store();
    let opts = PullOptions {
        platform: Some(arm64.clone()),
        all_platforms: true,
    };
    let pulled = client().pull(&all, &reference, &opts, &NoProgress).unwrap();
    assert_eq!(pulled.tagged.digest, index.digest);
    assert_eq!(pulled.tagged.media_type, media::OCI_INDEX);
    assert_eq!(pulled.manifest_digest, arm.digest);
    for (p, want) in [("linux/amd64", &amd), ("linux/arm64", &arm)] {
        let image = all
            .image(&reference.to_string(), &Platform::parse(p).unwrap())
            .unwrap();
        assert_eq!(&image.manifest_digest, &want.digest, "{p}");
    }
    assert_clean(&all);

    // And it pushes back out as an index under another repository: the
    // store pulled it from test/multi on the same registry, so the layers
    // of both platforms are mounted from there and only the two configs
    // are uploaded.
    let copy = r(&format!("{}/test/multi-copy:2", reg.addr));
    let pushed = client()
        .push_descriptor(&all, &pulled.tagged, &copy, &NoProgress)
        .unwrap();
    assert_eq!(pushed.digest, index.digest);
    assert_eq!(
        (
            pushed.blobs_mounted,
            pushed.blobs_uploaded,
            pushed.blobs_existing
        ),
        (8, 2, 0)
    );
}

#[test]
fn docker_manifest_list_selects_the_host_platform() {
    let reg = TestRegistry::start();
    let (_d1, src) = store();
    let (index, amd, arm) = images::two_platform_index(&src, &DOCKER, "list");
    let reference = r(&format!("{}/test/list", reg.addr));
    src.tag(&reference.to_string(), &index).unwrap();
    client().push(&src, &reference, &NoProgress).unwrap();

    let (_d2, dst) = store();
    let pulled = client()
        .pull(&dst, &reference, &PullOptions::default(), &NoProgress)
        .unwrap();
    let host = Platform::host();
    let want = if host.architecture == "arm64" {
        &arm
    } else {
        &amd
    };
    if host.architecture == "amd64" || host.architecture == "arm64" {
        assert_eq!(&pulled.manifest_digest, &want.digest);
        assert_eq!(pulled.tagged.media_type, media::DOCKER_MANIFEST);
        dst.image(&reference.to_string(), &host).unwrap();
    }
    assert_clean(&dst);
}

#[test]
fn pulls_through_mirrors_in_order() {
    let reg = TestRegistry::start();
    let (_d1, src) = store();
    // The mirror holds images under the upstream repository paths, as a
    // pull-through cache would.
    let node = images::image(&src, &OCI, "amd64", "node-4.2.2");
    let library = images::image(&src, &DOCKER, "amd64", "library-node");
    let tianon = images::image(&src, &OCI, "amd64", "tianon-true");
    let c = client();
    for (desc, path) in [
        (&node, "oddnetworks/alpine-nodejs:4.2.2"),
        (&library, "library/node:4.2.3"),
        (&tianon, "tianon/true:latest"),
    ] {
        let on_mirror = r(&format!("{}/{path}", reg.addr));
        c.push_descriptor(&src, desc, &on_mirror, &NoProgress)
            .unwrap();
    }

    // Built explicitly (not from the process environment) so tests can
    // run in parallel; same syntax as BERTH_REGISTRY_MIRRORS. The first
    // mirror is a closed port: it is skipped, and the failure reported.
    let dead = free_port();
    let mut mirrors = RegistryConfig::new();
    mirrors
        .apply_mirror_overrides(&format!(
            "quay.io=http://127.0.0.1:{dead},quay.io=http://{0},docker.io=http://{0}",
            reg.addr
        ))
        .unwrap();
    let c = client_with(mirrors);

    let (_d2, dst) = store();
    let quay = r("quay.io/oddnetworks/alpine-nodejs:4.2.2");
    let pulled = c
        .pull(&dst, &quay, &PullOptions::default(), &NoProgress)
        .unwrap();
    assert_eq!(pulled.manifest_digest, node.digest);
    assert_eq!(pulled.source, format!("http://{}", reg.addr));
    assert_eq!(pulled.mirror_of.as_deref(), Some("quay.io"));
    assert_eq!(
        pulled.mirror_failures.len(),
        1,
        "{:?}",
        pulled.mirror_failures
    );
    assert!(pulled.mirror_failures[0].contains(&dead.to_string()));
    assert_eq!(
        dst.resolve("quay.io/oddnetworks/alpine-nodejs:4.2.2")
            .unwrap()
            .unwrap()
            .digest,
        node.digest
    );

    let pulled = c
        .pull(&dst, &r("node:4.2.3"), &PullOptions::default(), &NoProgress)
        .unwrap();
    assert_eq!(pulled.manifest_digest, library.digest);
    assert_eq!(pulled.mirror_of.as_deref(), Some("docker.io"));
    assert!(dst
        .resolve("docker.io/library/node:4.2.3")
        .unwrap()
        .is_some());

    let pulled = c
        .pull(
            &dst,
            &r("tianon/true"),
            &PullOptions::default(),
            &NoProgress,
        )
        .unwrap();
    assert_eq!(pulled.manifest_digest, tianon.digest);
    assert!(dst
        .resolve("docker.io/tianon/true:latest")
        .unwrap()
        .is_some());
    let names: Vec<String> = dst
        .references()
        .unwrap()
        .into_iter()
        .map(|(n, _)| Reference::parse(&n).unwrap().familiar())
        .collect();
    assert_eq!(
        names,
        [
            "quay.io/oddnetworks/alpine-nodejs:4.2.2",
            "node:4.2.3",
            "tianon/true:latest"
        ]
    );
    assert_clean(&dst);
}

#[test]
fn missing_tag_is_a_clear_error_and_changes_nothing() {
    let reg = TestRegistry::start();
    let (_d1, src) = store();
    let desc = images::image(&src, &OCI, "amd64", "missing");
    let present = r(&format!("{}/test/app:1", reg.addr));
    src.tag(&present.to_string(), &desc).unwrap();
    client().push(&src, &present, &NoProgress).unwrap();

    let (_d2, dst) = store();
    client()
        .pull(&dst, &present, &PullOptions::default(), &NoProgress)
        .unwrap();
    let before = snapshot(&dst);
    for missing in [
        format!("{}/test/app:nope", reg.addr),
        format!("{}/test/no-such-repo:1", reg.addr),
    ] {
        let reference = r(&missing);
        let err = client()
            .pull(&dst, &reference, &PullOptions::default(), &NoProgress)
            .unwrap_err();
        assert_eq!(err.to_string(), format!("manifest unknown: {missing}"));
        assert!(err.is_not_found());
        assert_eq!(snapshot(&dst), before);
        assert_clean(&dst);
    }

    // Pushing something the store does not have says so.
    let err = client()
        .push(
            &dst,
            &r(&format!("{}/test/app:absent", reg.addr)),
            &NoProgress,
        )
        .unwrap_err();
    assert!(matches!(err, Error::NotInStore(_)), "{err}");
}
