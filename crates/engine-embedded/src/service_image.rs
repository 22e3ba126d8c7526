//! What each service's container is made from, resolved to the digests
//! the planner compares. Needed by `--dry-run` as much as by `up`, so it
//! is outside the runtime.

use crate::error::{svc_err, Result};
pub use berth_engine::backend::RuntimeMount;
use berth_oci::{Platform, Store};
use std::collections::BTreeMap;

/// What a service's container is made from: an image from the store, a
/// language runtime (`x-runtime`), or both. `digest` is what the planner
/// compares: the image's single-platform manifest digest, the runtime's
/// digest, or both joined by `+`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceImage {
    /// The image's name in the store; `None`: the container is rooted on
    /// the host's filesystem (a runtime without an image).
    pub name: Option<String>,
    pub runtime: Option<RuntimeMount>,
    pub digest: String,
}

/// Where a runtime appears inside the container.
pub const RUNTIME_DIR: &str = "/opt/berth/runtime";

/// Resolve each service's image name to its digest in `store`, and join
/// the runtimes given for services.
pub fn service_images(
    store: &Store,
    names: &BTreeMap<String, String>,
    runtimes: &BTreeMap<String, RuntimeMount>,
) -> Result<BTreeMap<String, ServiceImage>> {
    let mut out = BTreeMap::new();
    for (service, name) in names {
        let image = store
            .image(name, &Platform::host())
            .map_err(|e| svc_err(service, e))?;
        let runtime = runtimes.get(service).cloned();
        let mut digest = image.manifest_digest.to_string();
        if let Some(r) = &runtime {
            digest = format!("{digest}+{}", r.digest);
        }
        out.insert(
            service.clone(),
            ServiceImage {
                name: Some(name.clone()),
                runtime,
                digest,
            },
        );
    }
    for (service, r) in runtimes {
        out.entry(service.clone()).or_insert_with(|| ServiceImage {
            name: None,
            runtime: Some(r.clone()),
            digest: r.digest.clone(),
        });
    }
    Ok(out)
}
