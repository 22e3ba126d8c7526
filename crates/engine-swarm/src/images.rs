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
    pub blobs_existing: usize,
}

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
        Ok(Shipped {
            reference: format!("{}/{repo}@{}", self.address, pushed.digest),
            digest: pushed.digest,
            blobs_uploaded: pushed.blobs_uploaded,
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
    let read = |d: &Descriptor| -> Result<(Value, Value), BackendError> {
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
    };
    let (base_manifest, mut config) = read(runtime)?;
    let mut layers: Vec<Value> = base_manifest["layers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
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
        layers.extend(code_layers);
        if let Some(ids) = config["rootfs"]["diff_ids"].as_array_mut() {
            ids.extend(diff_ids);
        }
        // History must count one non-empty entry per layer when it is there.
        if let Some(history) = config.get_mut("history").and_then(Value::as_array_mut) {
            for _ in 0..m["layers"].as_array().map_or(0, Vec::len) {
                history.push(json!({"created_by": format!("berth: code of service {service} ({})", desc.digest)}));
            }
        }
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
}
