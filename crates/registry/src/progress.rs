//! Progress reports for the CLI's bars.
//!
//! Calls come from several download threads at once, hence `Sync`; each
//! method has a do-nothing default so a caller implements only what it
//! shows. Only layers are reported (not configs or manifests, which are
//! small), as `docker pull` does.

use berth_oci::Digest;

pub trait Progress: Sync {
    /// A layer is about to be fetched (or found present: then
    /// `on_layer_done(digest, true)` follows at once). `size` is the
    /// descriptor's size in bytes.
    fn on_layer_start(&self, digest: &Digest, size: u64) {
        let _ = (digest, size);
    }

    /// `n` more bytes of the layer moved over the network.
    fn on_bytes(&self, digest: &Digest, n: u64) {
        let _ = (digest, n);
    }

    /// A download was interrupted and starts over from byte 0: bytes
    /// counted so far for this layer no longer count.
    fn on_layer_restart(&self, digest: &Digest) {
        let _ = digest;
    }

    /// The layer is in place: `cached` when nothing had to move (present
    /// in the store on pull, already on the registry on push).
    fn on_layer_done(&self, digest: &Digest, cached: bool) {
        let _ = (digest, cached);
    }

    /// Push only: the registry mounted the layer from its repository
    /// `from` (docker's "Mounted from …"); no bytes moved. In place of
    /// `on_layer_done`, which it calls (as cached) unless overridden.
    fn on_layer_mounted(&self, digest: &Digest, from: &str) {
        let _ = from;
        self.on_layer_done(digest, true);
    }
}

/// Reports nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {}
