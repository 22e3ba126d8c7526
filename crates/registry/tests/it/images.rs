//! Small images built with the store API: real tar layers (gzip'd,
//! uncompressed and zstd-framed), a config, a manifest, an index.

use berth_oci::spec::RootFs;
use berth_oci::{
    media, Descriptor, Digest, ImageConfig, ImageIndex, ImageManifest, Platform, Store,
};
use std::io::Write;

pub fn tar(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_cksum();
        b.append_data(&mut h, path, *data).unwrap();
    }
    b.into_inner().unwrap()
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// A zstd frame holding `data` as raw blocks (no compression, which the
/// format allows), so no zstd library is needed to make one.
pub fn zstd_raw(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x28, 0xB5, 0x2F, 0xFD];
    // Single segment, 8-byte frame content size, no checksum.
    out.push(0b1110_0000);
    out.extend_from_slice(&(data.len() as u64).to_le_bytes());
    let chunks: Vec<&[u8]> = if data.is_empty() {
        vec![&[][..]]
    } else {
        data.chunks(128 << 10).collect()
    };
    for (i, chunk) in chunks.iter().enumerate() {
        let last = (i + 1 == chunks.len()) as u32;
        let header = last | ((chunk.len() as u32) << 3); // block type 0: raw
        out.extend_from_slice(&header.to_le_bytes()[..3]);
        out.extend_from_slice(chunk);
    }
    out
}

/// Incompressible bytes (xorshift), so gzip'd layers stay big.
pub fn noise(len: usize, seed: &str) -> Vec<u8> {
    let mut x: u64 =
        0x9E37_79B9_7F4A_7C15 ^ seed.bytes().fold(0u64, |h, b| h.rotate_left(5) ^ b as u64);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

pub struct Dialect {
    pub manifest: &'static str,
    pub config: &'static str,
    pub gzip_layer: &'static str,
    pub tar_layer: &'static str,
    pub index: &'static str,
}

pub const OCI: Dialect = Dialect {
    manifest: media::OCI_MANIFEST,
    config: media::OCI_CONFIG,
    gzip_layer: media::OCI_LAYER_GZIP,
    tar_layer: media::OCI_LAYER,
    index: media::OCI_INDEX,
};

pub const DOCKER: Dialect = Dialect {
    manifest: media::DOCKER_MANIFEST,
    config: media::DOCKER_CONFIG,
    gzip_layer: media::DOCKER_LAYER_GZIP,
    tar_layer: "application/vnd.docker.image.rootfs.diff.tar",
    index: media::DOCKER_MANIFEST_LIST,
};

/// An image whose content depends on `seed` (so different seeds share no
/// blobs): two gzip'd layers, an uncompressed one, and for OCI a zstd one.
pub fn image(store: &Store, dialect: &Dialect, arch: &str, seed: &str) -> Descriptor {
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    let mut add = |media_type: &str, tar: Vec<u8>, blob: Vec<u8>| {
        diff_ids.push(Digest::of(&tar));
        let digest = store.write_blob(&blob).unwrap();
        layers.push(Descriptor::new(media_type, digest, blob.len() as u64));
    };
    let base = tar(&[
        (
            "etc/os-release",
            format!("ID=berth-test\nSEED={seed}\n").as_bytes(),
        ),
        ("bin/hello", &[0x7f, b'E', b'L', b'F']),
    ]);
    add(dialect.gzip_layer, base.clone(), gzip(&base));
    // Big enough to need several reads and show progress.
    let big = noise(300_000, seed);
    let app = tar(&[
        ("app/index.js", format!("// {seed}\n").as_bytes()),
        ("app/data.bin", &big),
    ]);
    add(dialect.gzip_layer, app.clone(), gzip(&app));
    let plain = tar(&[("app/README", format!("plain layer {seed}\n").as_bytes())]);
    add(dialect.tar_layer, plain.clone(), plain);
    if dialect.manifest == media::OCI_MANIFEST {
        let z = tar(&[("app/zstd.txt", format!("zstd layer {seed}\n").as_bytes())]);
        add(media::OCI_LAYER_ZSTD, z.clone(), zstd_raw(&z));
    }
    let config = ImageConfig {
        architecture: arch.into(),
        os: "linux".into(),
        rootfs: RootFs {
            kind: "layers".into(),
            diff_ids,
        },
        config: berth_oci::spec::ContainerConfig {
            working_dir: Some("/app".into()),
            cmd: Some(vec!["/bin/hello".into(), seed.into()]),
            ..Default::default()
        },
        ..Default::default()
    };
    let config = store.put_json(dialect.config, &config).unwrap();
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: Some(dialect.manifest.into()),
        config,
        layers,
        annotations: Default::default(),
        extra: Default::default(),
    };
    store.put_json(dialect.manifest, &manifest).unwrap()
}

/// A two-platform index (amd64 and arm64/v8) over two images.
pub fn two_platform_index(
    store: &Store,
    dialect: &Dialect,
    seed: &str,
) -> (Descriptor, Descriptor, Descriptor) {
    let amd = image(store, dialect, "amd64", &format!("{seed}-amd64"));
    let arm = image(store, dialect, "arm64", &format!("{seed}-arm64"));
    let entry = |d: &Descriptor, p: &str| {
        let mut e = d.clone();
        e.platform = Platform::parse(p);
        e
    };
    let index = ImageIndex {
        schema_version: 2,
        media_type: Some(dialect.index.into()),
        manifests: vec![entry(&amd, "linux/amd64"), entry(&arm, "linux/arm64/v8")],
        annotations: Default::default(),
        extra: Default::default(),
    };
    let desc = store.put_json(dialect.index, &index).unwrap();
    (desc, amd, arm)
}
