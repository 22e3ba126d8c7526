//! Images for the nodes: every node pulls from the cluster's registry, so
//! `up` pushes each service's image there from berth's store and deploys it
//! by digest.
//!
//! The seed's code/runtime split survives swarm, which has no
//! `volumes_from`: a service that mounts the volumes of a code service runs
//! one image whose layers are the runtime image's followed by the code
//! image's, composed as a new manifest and config without rebuilding or
//! repacking anything (each layer keeps its digest). The registry already
//! has every layer it was sent before, so a runtime bump uploads the new
//! runtime layers (if any), a config and a manifest, and a code change
//! uploads the code layer, a config and a manifest.

use berth_engine::BackendError;
use berth_oci::{media, Descriptor, Digest, Store};
use berth_registry::{Client, NoProgress, Reference, RegistryConfig};
use serde_json::{json, Value};

/// An image ready for the nodes: where they pull it and what went over
/// the wire to put it there.
#[derive(Debug, Clone)]
pub struct Shipped {
    /// `registry/repo@sha256:…`.
    pub reference: String,
    pub digest: Digest,
    pub blobs_uploaded: usize,
    /// Layers the registry had under another repository (not sent).
    pub blobs_mounted: usize,
    pub blobs_existing: usize,
}

/// The tag under which berth's store names what it last pushed to a
/// repository of the cluster's registry.
const SHIPPED_TAG: &str = "berth-shipped";

/// The cluster's registry, as the nodes and this machine both reach it.
pub struct ClusterRegistry {
    /// `host:port`.
    pub address: String,
    client: Client,
}

fn err(doing: impl std::fmt::Display, e: impl std::fmt::Display) -> BackendError {
    BackendError::engine(format!("{doing}: {e}"))
}

impl ClusterRegistry {
    /// `address` is `host:port`; plain HTTP is allowed to it (the nodes are
    /// told it is insecure the same way, by their daemon's configuration).
    pub fn new(address: &str) -> ClusterRegistry {
        let mut registries = RegistryConfig::new();
        registries.set_insecure(address, true);
        let docker_config = berth_registry::DockerConfig::load_default().unwrap_or_default();
        ClusterRegistry {
            address: address.to_string(),
            client: Client::new(registries, docker_config),
        }
    }

    /// Push the manifest `desc` (in `store`) as `<registry>/<repo>`, tagged
    /// with its short digest, and name it by digest for the nodes.
    pub fn ship(
        &self,
        store: &Store,
        desc: &Descriptor,
        repo: &str,
    ) -> Result<Shipped, BackendError> {
        let tag = &desc.digest.hex()[..12];
        let text = format!("{}/{repo}:{tag}", self.address);
        let target: Reference = text
            .parse()
            .map_err(|e| err(format!("image name {text}"), e))?;
        let pushed = self
            .client
            .push_descriptor(store, desc, &target, &NoProgress)
            .map_err(|e| err(format!("pushing {text}"), e))?;
        // Named in the store as what the registry holds in `repo`, so the
        // next push of one of its layers to another repository (a second
        // service on the same x-runtime) is a mount, not an upload. One
        // name per repository, replaced each time.
        let shipped_name = format!("{}/{repo}:{SHIPPED_TAG}", self.address);
        store
            .tag(&shipped_name, desc)
            .map_err(|e| err(format!("naming {shipped_name} in berth's store"), e))?;
        Ok(Shipped {
            reference: format!("{}/{repo}@{}", self.address, pushed.digest),
            digest: pushed.digest,
            blobs_uploaded: pushed.blobs_uploaded,
            blobs_mounted: pushed.blobs_mounted,
            blobs_existing: pushed.blobs_existing,
        })
    }
}

/// The single-platform manifest `reference` names in the store.
pub fn manifest_of(store: &Store, reference: &str) -> Result<Descriptor, BackendError> {
    let desc = store
        .resolve(reference)
        .map_err(|e| err(format!("image {reference}"), e))?
        .ok_or_else(|| {
            BackendError::not_found(format!("image {reference} is not in berth's store"))
        })?;
    if media::is_index(&desc.media_type) {
        let platform = berth_oci::Platform::host();
        let image = store
            .image_from(reference, &desc, &platform)
            .map_err(|e| err(format!("image {reference}"), e))?;
        let bytes = store
            .read_blob(&image.manifest_digest)
            .map_err(|e| err(format!("image {reference}"), e))?;
        let media_type = image
            .manifest
            .media_type
            .as_deref()
            .unwrap_or(media::OCI_MANIFEST);
        return Ok(Descriptor::new(
            media_type,
            image.manifest_digest,
            bytes.len() as u64,
        ));
    }
    Ok(desc)
}

/// OCI's name for a layer media type (Docker's schema 2 names the same bytes
/// differently); one manifest must not mix the two vocabularies.
fn oci_layer_type(t: &str) -> &str {
    match t {
        media::DOCKER_LAYER_GZIP => media::OCI_LAYER_GZIP,
        "application/vnd.docker.image.rootfs.diff.tar" => media::OCI_LAYER,
        other => other,
    }
}

/// The runtime image with the code images' layers on top: a new config
/// (the runtime's, its layer list extended) and manifest in `store`. No
/// layer is read, unpacked or rewritten.
pub fn compose(
    store: &Store,
    runtime: &Descriptor,
    code: &[(String, Descriptor)],
) -> Result<Descriptor, BackendError> {
    compose_layers(store, runtime, &[], code, &[])
}

/// A layer berth made itself (an `x-runtime`, the CA bundle), to ride on a
/// base image, with what it adds to the image's environment.
#[derive(Debug, Clone)]
pub struct Layer {
    /// The gzip blob in the store.
    pub desc: Descriptor,
    /// The sha256 of the uncompressed tar.
    pub diff_id: Digest,
    pub created_by: String,
    /// Put in front of the image's `PATH`.
    pub path_prepend: Option<String>,
    /// Set in the image's environment (replacing the base's).
    pub env: Vec<(String, String)>,
}

/// Where an `x-runtime` appears in a task, as on the other engines.
pub const RUNTIME_DIR: &str = "/opt/berth/runtime";
/// Where the CA bundle an `x-runtime` trusts appears, as on the other engines.
pub const CA_BUNDLE: &str = "/opt/berth/ca-certificates.crt";
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The manifest `d` names and its image config, as JSON.
fn read_image(store: &Store, d: &Descriptor) -> Result<(Value, Value), BackendError> {
    let manifest: Value = serde_json::from_slice(
        &store
            .read_blob(&d.digest)
            .map_err(|e| err("reading a manifest", e))?,
    )?;
    let cfg_digest: Digest = manifest["config"]["digest"]
        .as_str()
        .unwrap_or_default()
        .parse()
        .map_err(|e| err("a manifest's config digest", e))?;
    let config: Value = serde_json::from_slice(
        &store
            .read_blob(&cfg_digest)
            .map_err(|e| err("reading an image config", e))?,
    )?;
    Ok((manifest, config))
}

/// `base` with `extra` layers (berth's own: a runtime, the CA bundle), the
/// code images' layers, and `top` (berth's readiness probe) on top. See
/// [`compose`].
pub fn compose_layers(
    store: &Store,
    base: &Descriptor,
    extra: &[Layer],
    code: &[(String, Descriptor)],
    top: &[Layer],
) -> Result<Descriptor, BackendError> {
    let read = |d: &Descriptor| read_image(store, d);
    let (base_manifest, mut config) = read(base)?;
    let mut layers: Vec<Value> = base_manifest["layers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut add = |config: &mut Value, layer: Value, diff_id: Value, created_by: String| {
        layers.push(layer);
        if let Some(ids) = config["rootfs"]["diff_ids"].as_array_mut() {
            ids.push(diff_id);
        }
        // History must count one non-empty entry per layer when it is there.
        if let Some(history) = config.get_mut("history").and_then(Value::as_array_mut) {
            history.push(json!({ "created_by": created_by }));
        }
    };
    for l in extra {
        add(
            &mut config,
            json!({"mediaType": l.desc.media_type, "digest": l.desc.digest.to_string(), "size": l.desc.size}),
            Value::String(l.diff_id.to_string()),
            l.created_by.clone(),
        );
        set_env(&mut config, l);
    }
    for (service, desc) in code {
        let (m, c) = read(desc)?;
        let code_layers = m["layers"].as_array().cloned().unwrap_or_default();
        let diff_ids = c["rootfs"]["diff_ids"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if code_layers.len() != diff_ids.len() {
            return Err(BackendError::invalid(format!(
                "service {service:?}: its image lists {} layers and {} diff_ids",
                code_layers.len(),
                diff_ids.len()
            )));
        }
        for (layer, diff_id) in code_layers.into_iter().zip(diff_ids) {
            add(
                &mut config,
                layer,
                diff_id,
                format!("berth: code of service {service} ({})", desc.digest),
            );
        }
    }
    for l in top {
        add(
            &mut config,
            json!({"mediaType": l.desc.media_type, "digest": l.desc.digest.to_string(), "size": l.desc.size}),
            Value::String(l.diff_id.to_string()),
            l.created_by.clone(),
        );
        set_env(&mut config, l);
    }
    for l in &mut layers {
        if let Some(t) = l
            .get("mediaType")
            .and_then(Value::as_str)
            .map(oci_layer_type)
        {
            l["mediaType"] = Value::String(t.to_string());
        }
    }
    let cfg = store
        .put_json(media::OCI_CONFIG, &config)
        .map_err(|e| err("writing the composed config", e))?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "config": {"mediaType": media::OCI_CONFIG, "digest": cfg.digest.to_string(), "size": cfg.size},
        "layers": layers,
    });
    store
        .put_json(media::OCI_MANIFEST, &manifest)
        .map_err(|e| err("writing the composed manifest", e))
}

/// What layer `l` adds to the image config's `Env`.
fn set_env(config: &mut Value, l: &Layer) {
    if !config["config"].is_object() {
        config["config"] = json!({});
    }
    let mut env: Vec<String> = config["config"]["Env"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let mut set = |key: &str, value: String| {
        let entry = format!("{key}={value}");
        match env.iter_mut().find(|e| e.split('=').next() == Some(key)) {
            Some(e) => *e = entry,
            None => env.push(entry),
        }
    };
    if let Some(dir) = &l.path_prepend {
        let path = config["config"]["Env"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or(DEFAULT_PATH)
            .to_string();
        set("PATH", format!("{dir}:{path}"));
    }
    for (k, v) in &l.env {
        set(k, v.clone());
    }
    config["config"]["Env"] = json!(env);
}

/// A deterministic tar stream: every entry owned by 0:0, mtime 0, no user
/// or group names, so the same files always make the same bytes.
struct LayerTar {
    tar: tar::Builder<Vec<u8>>,
}

impl LayerTar {
    fn new() -> LayerTar {
        let mut tar = tar::Builder::new(Vec::new());
        // Symlinks are written as links, never followed: the layer holds
        // what the runtime holds, not what its links point at on this host.
        tar.follow_symlinks(false);
        LayerTar { tar }
    }

    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        h
    }

    fn dir(&mut self, path: &str, mode: u32) -> Result<(), BackendError> {
        let mut h = Self::header(tar::EntryType::Directory, mode, 0);
        self.tar
            .append_data(&mut h, format!("{path}/"), std::io::empty())
            .map_err(|e| err(format!("packing {path}"), e))
    }

    fn file(&mut self, path: &str, mode: u32, bytes: &[u8]) -> Result<(), BackendError> {
        let mut h = Self::header(tar::EntryType::Regular, mode, bytes.len() as u64);
        self.tar
            .append_data(&mut h, path, bytes)
            .map_err(|e| err(format!("packing {path}"), e))
    }

    fn symlink(&mut self, path: &str, target: &std::path::Path) -> Result<(), BackendError> {
        let mut h = Self::header(tar::EntryType::Symlink, 0o777, 0);
        self.tar
            .append_link(&mut h, path, target)
            .map_err(|e| err(format!("packing {path}"), e))
    }

    /// The directory `root` under `prefix` (no leading slash), entries in
    /// byte order of their names.
    fn tree(&mut self, root: &std::path::Path, prefix: &str) -> Result<(), BackendError> {
        use std::os::unix::fs::PermissionsExt;
        let mut entries: Vec<std::fs::DirEntry> = std::fs::read_dir(root)
            .map_err(|e| err(root.display(), e))?
            .collect::<Result<_, _>>()
            .map_err(|e| err(root.display(), e))?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let path = entry.path();
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                return Err(BackendError::invalid(format!(
                    "{}: a file name that is not UTF-8",
                    path.display()
                )));
            };
            let inner = format!("{prefix}/{name}");
            // symlink_metadata: a link is looked at, not followed.
            let meta = std::fs::symlink_metadata(&path).map_err(|e| err(path.display(), e))?;
            let mode = meta.permissions().mode() & 0o7777;
            let kind = meta.file_type();
            if kind.is_symlink() {
                let target = std::fs::read_link(&path).map_err(|e| err(path.display(), e))?;
                self.symlink(&inner, &target)?;
            } else if kind.is_dir() {
                self.dir(&inner, mode)?;
                self.tree(&path, &inner)?;
            } else if kind.is_file() {
                let bytes = std::fs::read(&path).map_err(|e| err(path.display(), e))?;
                self.file(&inner, mode, &bytes)?;
            } else {
                return Err(BackendError::invalid(format!(
                    "{}: neither a file, a directory nor a symlink (a runtime holds only those)",
                    path.display()
                )));
            }
        }
        Ok(())
    }

    /// The tar's bytes gzipped into `store`: the layer's descriptor and diff_id.
    fn finish(self, store: &Store) -> Result<(Descriptor, Digest), BackendError> {
        use std::io::Write;
        let tar = self
            .tar
            .into_inner()
            .map_err(|e| err("packing a layer", e))?;
        let diff_id = Digest::of(&tar);
        // No name and mtime 0 in the gzip header: the same tar always
        // compresses to the same blob.
        let mut gz = flate2::GzBuilder::new()
            .mtime(0)
            .write(Vec::new(), flate2::Compression::default());
        gz.write_all(&tar)
            .and_then(|_| gz.try_finish())
            .map_err(|e| err("compressing a layer", e))?;
        let blob = gz.finish().map_err(|e| err("compressing a layer", e))?;
        let digest = store
            .write_blob(&blob)
            .map_err(|e| err("writing a layer", e))?;
        Ok((
            Descriptor::new(media::OCI_LAYER_GZIP, digest, blob.len() as u64),
            diff_id,
        ))
    }
}

/// The store reference under which a runtime's layer is kept: a
/// one-layer image, so the store's garbage collection keeps it and the
/// next `up` does not pack it again.
fn runtime_layer_ref(digest: &str) -> String {
    let hex: String = digest
        .rsplit(':')
        .next()
        .unwrap_or(digest)
        .chars()
        .filter(char::is_ascii_hexdigit)
        .collect();
    format!("berth.local/swarm-runtime-layer:{hex}")
}

/// The layer of an `x-runtime`: its directory at [`RUNTIME_DIR`], packed
/// once per runtime digest and kept in the store, so the same runtime is
/// always the same layer and a code change never ships it again.
pub fn runtime_layer(
    store: &Store,
    runtime: &berth_engine::backend::RuntimeMount,
) -> Result<Layer, BackendError> {
    let reference = runtime_layer_ref(&runtime.digest);
    let created_by = format!("berth: x-runtime {}", runtime.digest);
    let layer = |desc: Descriptor, diff_id: Digest| Layer {
        desc,
        diff_id,
        created_by: created_by.clone(),
        path_prepend: Some(format!("{RUNTIME_DIR}/bin")),
        env: Vec::new(),
    };
    if let Some(kept) = store
        .resolve(&reference)
        .map_err(|e| err(format!("image {reference}"), e))?
    {
        let m: Value = serde_json::from_slice(
            &store
                .read_blob(&kept.digest)
                .map_err(|e| err(format!("image {reference}"), e))?,
        )?;
        let cfg: Option<Digest> = m["config"]["digest"].as_str().and_then(|d| d.parse().ok());
        let c: Option<Value> = cfg
            .and_then(|d| store.read_blob(&d).ok())
            .and_then(|b| serde_json::from_slice(&b).ok());
        let desc: Option<Descriptor> = serde_json::from_value(m["layers"][0].clone()).ok();
        let diff_id: Option<Digest> = c
            .as_ref()
            .and_then(|c| c["rootfs"]["diff_ids"][0].as_str())
            .and_then(|d| d.parse().ok());
        if let (Some(desc), Some(diff_id)) = (desc, diff_id) {
            if store.has_blob(&desc.digest) {
                return Ok(layer(desc, diff_id));
            }
        }
    }
    let mut tar = LayerTar::new();
    let dir = RUNTIME_DIR.trim_start_matches('/');
    let mut at = String::new();
    for part in dir.split('/') {
        at = if at.is_empty() {
            part.to_string()
        } else {
            format!("{at}/{part}")
        };
        tar.dir(&at, 0o755)?;
    }
    tar.tree(&runtime.root, dir)?;
    let (desc, diff_id) = tar.finish(store)?;
    let config = json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [diff_id.to_string()]},
    });
    let cfg = store
        .put_json(media::OCI_CONFIG, &config)
        .map_err(|e| err("writing the runtime layer", e))?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "config": {"mediaType": media::OCI_CONFIG, "digest": cfg.digest.to_string(), "size": cfg.size},
        "layers": [desc],
    });
    let m = store
        .put_json(media::OCI_MANIFEST, &manifest)
        .map_err(|e| err("writing the runtime layer", e))?;
    store
        .tag(&reference, &m)
        .map_err(|e| err(format!("keeping {reference}"), e))?;
    Ok(layer(desc, diff_id))
}

/// A small layer of the CA bundle at [`CA_BUNDLE`], which node and npm are
/// told to trust (HTTPS through this machine's intercepting proxy works in
/// the tasks as in the other engines' containers). Apart from the
/// runtime's layer: a new bundle does not ship the runtime again.
pub fn ca_layer(store: &Store, bundle: &std::path::Path) -> Result<Layer, BackendError> {
    let bytes = std::fs::read(bundle).map_err(|e| err(bundle.display(), e))?;
    let mut tar = LayerTar::new();
    tar.dir("opt", 0o755)?;
    tar.dir("opt/berth", 0o755)?;
    tar.file(CA_BUNDLE.trim_start_matches('/'), 0o644, &bytes)?;
    let (desc, diff_id) = tar.finish(store)?;
    Ok(Layer {
        desc,
        diff_id,
        created_by: format!("berth: CA bundle {}", bundle.display()),
        path_prepend: None,
        env: vec![
            ("NODE_EXTRA_CA_CERTS".into(), CA_BUNDLE.into()),
            ("npm_config_cafile".into(), CA_BUNDLE.into()),
        ],
    })
}

/// One file of berth's at `path` (absolute; its parent directories are
/// made 0755) as a layer.
pub fn file_layer(
    store: &Store,
    path: &str,
    mode: u32,
    bytes: &[u8],
    created_by: String,
) -> Result<Layer, BackendError> {
    let rel = path.trim_start_matches('/');
    let mut tar = LayerTar::new();
    let mut parent = String::new();
    let parts: Vec<&str> = rel.split('/').collect();
    for dir in &parts[..parts.len() - 1] {
        if !parent.is_empty() {
            parent.push('/');
        }
        parent.push_str(dir);
        tar.dir(&parent, 0o755)?;
    }
    tar.file(rel, mode, bytes)?;
    let (desc, diff_id) = tar.finish(store)?;
    Ok(Layer {
        desc,
        diff_id,
        created_by,
        path_prepend: None,
        env: Vec::new(),
    })
}

/// Whether the image `desc` names declares a `HEALTHCHECK` of its own
/// (other than `NONE`): swarm runs it when the service sets none.
pub fn has_healthcheck(store: &Store, desc: &Descriptor) -> Result<bool, BackendError> {
    let (_, config) = read_image(store, desc)?;
    let test = &config["config"]["Healthcheck"]["Test"];
    Ok(test
        .as_array()
        .and_then(|t| t.first())
        .and_then(Value::as_str)
        .is_some_and(|first| first != "NONE"))
}

/// How the nodes run berth's port proxy: a program on this machine (this
/// binary with a hidden subcommand, or `berth-swarm-proxy`) and the
/// arguments before its routes.
#[derive(Debug, Clone)]
pub struct ProxyLaunch {
    pub exe: std::path::PathBuf,
    pub args: Vec<String>,
}

/// The shared libraries `exe` loads, as `ldd` lists them (absolute paths).
fn shared_libraries(exe: &std::path::Path) -> Result<Vec<std::path::PathBuf>, BackendError> {
    let out = std::process::Command::new("ldd")
        .arg(exe)
        .output()
        .map_err(|e| err(format!("ldd {}", exe.display()), e))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if text.contains("not a dynamic executable") || !out.status.success() {
        return Ok(Vec::new());
    }
    Ok(text
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let path = match l.split_once("=>") {
                Some((_, rest)) => rest.split_whitespace().next()?,
                None => l.split_whitespace().next()?,
            };
            path.starts_with('/')
                .then(|| std::path::PathBuf::from(path))
        })
        .collect())
}

/// The proxy's image: the program and the libraries it loads, nothing else
/// (no shell, no package manager), made in berth's store from this
/// machine's files. The nodes run the same architecture as this machine.
pub fn proxy_image(store: &Store, launch: &ProxyLaunch) -> Result<Descriptor, BackendError> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut add = |path: &str, bytes: &[u8], mode: u32| -> Result<(), BackendError> {
        let mut h = tar::Header::new_gnu();
        h.set_mode(mode);
        h.set_size(bytes.len() as u64);
        h.set_mtime(0);
        tar.append_data(&mut h, path.trim_start_matches('/'), bytes)
            .map_err(|e| err("packing the proxy image", e))
    };
    let exe = std::fs::read(&launch.exe).map_err(|e| err(launch.exe.display(), e))?;
    add("/berth-proxy", &exe, 0o755)?;
    for lib in shared_libraries(&launch.exe)? {
        // Symlinks are followed: the image gets the library under the name
        // the loader asks for.
        let bytes = std::fs::read(&lib).map_err(|e| err(lib.display(), e))?;
        add(&lib.to_string_lossy(), &bytes, 0o755)?;
    }
    let layer = tar
        .into_inner()
        .map_err(|e| err("packing the proxy image", e))?;
    let digest = store
        .write_blob(&layer)
        .map_err(|e| err("writing the proxy image", e))?;
    let mut cmd = vec!["/berth-proxy".to_string()];
    cmd.extend(launch.args.iter().cloned());
    let config = json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Entrypoint": cmd},
        "rootfs": {"type": "layers", "diff_ids": [digest.to_string()]},
    });
    let cfg = store
        .put_json(media::OCI_CONFIG, &config)
        .map_err(|e| err("writing the proxy image", e))?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "config": {"mediaType": media::OCI_CONFIG, "digest": cfg.digest.to_string(), "size": cfg.size},
        "layers": [{"mediaType": media::OCI_LAYER, "digest": digest.to_string(), "size": layer.len()}],
    });
    store
        .put_json(media::OCI_MANIFEST, &manifest)
        .map_err(|e| err("writing the proxy image", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(store: &Store, layer: &[u8], cfg_extra: Value) -> Descriptor {
        let digest = store.write_blob(layer).unwrap();
        let mut cfg = json!({"architecture": "amd64", "os": "linux", "config": {},
            "rootfs": {"type": "layers", "diff_ids": [digest.to_string()]},
            "history": [{"created_by": "x"}]});
        if let Value::Object(m) = cfg_extra {
            for (k, v) in m {
                cfg[k] = v;
            }
        }
        let c = store.put_json(media::OCI_CONFIG, &cfg).unwrap();
        store
            .put_json(
                media::OCI_MANIFEST,
                &json!({"schemaVersion": 2, "mediaType": media::OCI_MANIFEST,
                    "config": {"mediaType": media::OCI_CONFIG, "digest": c.digest.to_string(), "size": c.size},
                    "layers": [{"mediaType": media::DOCKER_LAYER_GZIP, "digest": digest.to_string(), "size": layer.len()}]}),
            )
            .unwrap()
    }

    #[test]
    fn the_code_layers_ride_on_the_runtime_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let runtime = image(
            &store,
            b"runtime layer",
            json!({"config": {"Env": ["PATH=/bin"]}}),
        );
        let code = image(
            &store,
            b"code layer",
            json!({"config": {"Volumes": {"/app": {}}}}),
        );
        let composed = compose(&store, &runtime, &[("code".into(), code.clone())]).unwrap();
        let m: Value = serde_json::from_slice(&store.read_blob(&composed.digest).unwrap()).unwrap();
        let layers: Vec<&str> = m["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["digest"].as_str().unwrap())
            .collect();
        assert_eq!(
            layers,
            [
                Digest::of(b"runtime layer").to_string(),
                Digest::of(b"code layer").to_string()
            ]
        );
        assert_eq!(m["layers"][0]["mediaType"], media::OCI_LAYER_GZIP);
        let cfg: Value = serde_json::from_slice(
            &store
                .read_blob(&m["config"]["digest"].as_str().unwrap().parse().unwrap())
                .unwrap(),
        )
        .unwrap();
        // The runtime's config (no code VOLUME), with both layers listed.
        assert_eq!(cfg["config"]["Env"][0], "PATH=/bin");
        assert!(cfg["config"].get("Volumes").is_none());
        assert_eq!(cfg["rootfs"]["diff_ids"].as_array().unwrap().len(), 2);
        assert_eq!(cfg["history"].as_array().unwrap().len(), 2);
        // A new runtime: a new manifest, the code layer's digest unchanged.
        let runtime2 = image(&store, b"runtime layer 2", json!({}));
        let again = compose(&store, &runtime2, &[("code".into(), code)]).unwrap();
        assert_ne!(again.digest, composed.digest);
        let m2: Value = serde_json::from_slice(&store.read_blob(&again.digest).unwrap()).unwrap();
        assert_eq!(m2["layers"][1]["digest"], m["layers"][1]["digest"]);
    }

    fn runtime_dir(version: &str) -> tempfile::TempDir {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::create_dir_all(dir.path().join("lib")).unwrap();
        let node = bin.join("node");
        std::fs::write(&node, format!("#!/bin/sh\necho v{version}\n")).unwrap();
        std::fs::set_permissions(&node, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(dir.path().join("lib/npm-cli.sh"), "#!/bin/sh\necho npm\n").unwrap();
        // A link out of the runtime: packed as a link, never followed.
        std::os::unix::fs::symlink("../lib/npm-cli.sh", bin.join("npm")).unwrap();
        std::os::unix::fs::symlink("/etc/shadow", bin.join("outside")).unwrap();
        dir
    }

    fn mount(dir: &std::path::Path, digest: &str) -> berth_engine::backend::RuntimeMount {
        berth_engine::backend::RuntimeMount {
            root: dir.to_path_buf(),
            digest: digest.into(),
            npm_cache: None,
            ca_bundle: None,
        }
    }

    fn entries(store: &Store, l: &Layer) -> Vec<(String, tar::EntryType, String, u64)> {
        let gz = store.read_blob(&l.desc.digest).unwrap();
        let mut raw = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut raw).unwrap();
        assert_eq!(Digest::of(&raw), l.diff_id);
        let mut a = tar::Archive::new(&raw[..]);
        a.entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                assert_eq!((h.uid().unwrap(), h.gid().unwrap()), (0, 0));
                let link = e
                    .link_name()
                    .unwrap()
                    .map(|l| l.to_string_lossy().into_owned())
                    .unwrap_or_default();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    h.entry_type(),
                    link,
                    h.mtime().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn a_runtime_is_one_deterministic_layer_with_links_kept_as_links() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (sa, sb) = (
            Store::open(a.path()).unwrap(),
            Store::open(b.path()).unwrap(),
        );
        let rt = runtime_dir("4.2.2");
        let la = runtime_layer(&sa, &mount(rt.path(), "sha256:aa")).unwrap();
        // Another store, another copy of the same files: the same bytes.
        let copy = runtime_dir("4.2.2");
        let lb = runtime_layer(&sb, &mount(copy.path(), "sha256:aa")).unwrap();
        assert_eq!(la.desc.digest, lb.desc.digest);
        assert_eq!(la.diff_id, lb.diff_id);
        let list = entries(&sa, &la);
        let names: Vec<&str> = list.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "opt/",
                "opt/berth/",
                "opt/berth/runtime/",
                "opt/berth/runtime/bin/",
                "opt/berth/runtime/bin/node",
                "opt/berth/runtime/bin/npm",
                "opt/berth/runtime/bin/outside",
                "opt/berth/runtime/lib/",
                "opt/berth/runtime/lib/npm-cli.sh",
            ]
        );
        assert!(list.iter().all(|e| e.3 == 0));
        let outside = list.iter().find(|e| e.0.ends_with("outside")).unwrap();
        assert_eq!(
            (outside.1, outside.2.as_str()),
            (tar::EntryType::Symlink, "/etc/shadow")
        );
        // Kept in the store: the same runtime digest is not packed again
        // (the files changed here; the layer did not).
        std::fs::write(rt.path().join("bin/node"), "changed").unwrap();
        let again = runtime_layer(&sa, &mount(rt.path(), "sha256:aa")).unwrap();
        assert_eq!(again.desc.digest, la.desc.digest);
        let other = runtime_layer(&sa, &mount(runtime_dir("4.2.3").path(), "sha256:bb")).unwrap();
        assert_ne!(other.desc.digest, la.desc.digest);
    }

    #[test]
    fn the_runtime_rides_between_base_and_code_and_leads_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let base = image(
            &store,
            b"base layer",
            json!({"config": {"Env": ["PATH=/bin", "A=1"]}}),
        );
        let code = image(&store, b"code layer", json!({}));
        let rt = runtime_dir("4.2.2");
        let ca = dir.path().join("ca.crt");
        std::fs::write(&ca, "CA").unwrap();
        let layers = [
            runtime_layer(&store, &mount(rt.path(), "sha256:aa")).unwrap(),
            ca_layer(&store, &ca).unwrap(),
        ];
        let composed = compose_layers(
            &store,
            &base,
            &layers,
            &[("code".into(), code.clone())],
            &[],
        )
        .unwrap();
        let m: Value = serde_json::from_slice(&store.read_blob(&composed.digest).unwrap()).unwrap();
        let digests: Vec<String> = m["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["digest"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(
            digests,
            [
                Digest::of(b"base layer").to_string(),
                layers[0].desc.digest.to_string(),
                layers[1].desc.digest.to_string(),
                Digest::of(b"code layer").to_string(),
            ]
        );
        let cfg: Value = serde_json::from_slice(
            &store
                .read_blob(&m["config"]["digest"].as_str().unwrap().parse().unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            cfg["config"]["Env"],
            json!([
                "PATH=/opt/berth/runtime/bin:/bin",
                "A=1",
                "NODE_EXTRA_CA_CERTS=/opt/berth/ca-certificates.crt",
                "npm_config_cafile=/opt/berth/ca-certificates.crt"
            ])
        );
        assert_eq!(cfg["rootfs"]["diff_ids"].as_array().unwrap().len(), 4);
        assert_eq!(cfg["history"].as_array().unwrap().len(), 4);
    }
}
