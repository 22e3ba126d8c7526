//! Images the tests make themselves.

use berth_image::layer::{LayerBuilder, Owner};
use berth_oci::spec::{ContainerConfig, ImageConfig, RootFs};
use berth_oci::{media, Descriptor, ImageManifest, Platform, Store};

/// A 129-byte static x86-64 ELF that exits 0 (what `tianon/true` ships):
/// one PT_LOAD segment mapping the file at 0x400000, entry at its code:
/// `mov eax, 60; xor edi, edi; syscall`.
pub fn true_elf() -> Vec<u8> {
    let mut f = Vec::with_capacity(129);
    f.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    f.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    f.extend_from_slice(&0x3eu16.to_le_bytes()); // x86-64
    f.extend_from_slice(&1u32.to_le_bytes());
    f.extend_from_slice(&0x400078u64.to_le_bytes()); // entry
    f.extend_from_slice(&64u64.to_le_bytes()); // phoff
    f.extend_from_slice(&0u64.to_le_bytes()); // shoff
    f.extend_from_slice(&0u32.to_le_bytes()); // flags
    f.extend_from_slice(&64u16.to_le_bytes()); // ehsize
    f.extend_from_slice(&56u16.to_le_bytes()); // phentsize
    f.extend_from_slice(&1u16.to_le_bytes()); // phnum
    f.extend_from_slice(&[0; 6]); // shentsize, shnum, shstrndx
    f.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    f.extend_from_slice(&5u32.to_le_bytes()); // R+X
    f.extend_from_slice(&0u64.to_le_bytes()); // offset
    f.extend_from_slice(&0x400000u64.to_le_bytes()); // vaddr
    f.extend_from_slice(&0x400000u64.to_le_bytes()); // paddr
    f.extend_from_slice(&129u64.to_le_bytes()); // filesz
    f.extend_from_slice(&129u64.to_le_bytes()); // memsz
    f.extend_from_slice(&0x1000u64.to_le_bytes()); // align
    f.extend_from_slice(&[0xb8, 0x3c, 0, 0, 0, 0x31, 0xff, 0x0f, 0x05]);
    f
}

/// `tianon/true` as the tests know it: `/true`, `CMD ["/true"]`.
pub fn make_true_image(store: &Store, name: &str) -> Descriptor {
    let mut l = LayerBuilder::new(store).unwrap();
    l.add_bytes("true", &true_elf(), 0o755, Owner::ROOT)
        .unwrap();
    let layer = l.finish().unwrap();
    let config = ImageConfig {
        created: Some("1970-01-01T00:00:00Z".into()),
        architecture: Platform::host().architecture,
        os: "linux".into(),
        config: ContainerConfig {
            cmd: Some(vec!["/true".into()]),
            ..Default::default()
        },
        rootfs: RootFs {
            kind: "layers".into(),
            diff_ids: vec![layer.diff_id.clone()],
        },
        ..Default::default()
    };
    let config = store.put_json(media::OCI_CONFIG, &config).unwrap();
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: Some(media::OCI_MANIFEST.into()),
        config,
        layers: vec![layer.descriptor],
        annotations: Default::default(),
        extra: Default::default(),
    };
    let desc = store.put_json(media::OCI_MANIFEST, &manifest).unwrap();
    store.tag(name, &desc).unwrap();
    desc
}
