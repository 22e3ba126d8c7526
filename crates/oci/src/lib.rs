//! OCI image types and berth's content-addressed image store.
//!
//! The store is an OCI image layout (blobs by sha256, an `index.json` of
//! references) under berth's state directory, written so that a crash or a
//! concurrent writer never leaves it inconsistent: blobs are written to a
//! temp file, fsynced, verified and renamed into place; the index is
//! rewritten the same way under an exclusive lock.

pub mod digest;
pub mod media;
pub mod spec;
pub mod store;

pub use digest::Digest;
pub use spec::{Descriptor, ImageConfig, ImageIndex, ImageManifest, Platform};
pub use store::{Store, StoreError};
