//! berth's OCI/Docker registry client: pulls images into berth's image
//! store ([`berth_oci::Store`]) and pushes them out.
//!
//! ```no_run
//! use berth_registry::{Client, NoProgress, PullOptions, Reference};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = berth_oci::Store::open(berth_oci::store::state_dir().join("images"))?;
//! let client = Client::from_env()?;
//! let reference: Reference = "quay.io/oddnetworks/alpine-nodejs:4.2.2".parse()?;
//! let pulled = client.pull(&store, &reference, &PullOptions::default(), &NoProgress)?;
//! println!("{} from {}: {}", reference.familiar(), pulled.source, pulled.digest());
//! # Ok(()) }
//! ```
//!
//! What a pull leaves in the store: the name (`reference.to_string()`, the
//! full normalized form) points at the single-platform manifest chosen for
//! the platform, unless [`PullOptions::all_platforms`] asked for every
//! platform, in which case it points at the index. Either way every blob
//! the tagged descriptor reaches is present and verified, so
//! `Store::image(name, platform)` and `Store::fsck()` work. A failed pull
//! changes no reference and leaves no partial blob; complete, verified
//! blobs it fetched stay (the next attempt reuses them, `gc` collects them
//! otherwise).

pub mod auth;
pub mod client;
pub mod mirrors;
mod parallel;
pub mod progress;
pub mod pull;
pub mod push;
pub mod reference;

pub use auth::{Credential, DockerConfig};
pub use client::{Client, ClientOptions};
pub use mirrors::{Endpoint, RegistryConfig, Scheme, Source};
pub use progress::{NoProgress, Progress};
pub use pull::{PullOptions, Pulled, Resolved};
pub use push::Pushed;
pub use reference::{Reference, ReferenceError};

use berth_oci::{Digest, StoreError};

/// Everything a pull or push can fail with. Messages are one line, name
/// the registry or reference involved, and say what to do where there is
/// something to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error(transparent)]
    Config(#[from] mirrors::ConfigError),
    #[error(transparent)]
    Auth(#[from] auth::AuthError),
    #[error("cannot reach registry at {url}: {message}")]
    Unreachable { url: String, message: String },
    #[error("manifest unknown: {0}")]
    ManifestUnknown(String),
    #[error("blob unknown: {repository}@{digest} is not on {registry}")]
    BlobUnknown {
        registry: String,
        repository: String,
        digest: Digest,
    },
    #[error("authentication required by {host}: {detail}")]
    Unauthorized { host: String, detail: String },
    #[error("access denied by {host}: {detail}")]
    Denied { host: String, detail: String },
    #[error("{method} {url}: HTTP {status}{detail}")]
    Status {
        method: String,
        url: String,
        status: u16,
        /// `: CODE: message` from the registry's error body, or empty.
        detail: String,
    },
    #[error("digest mismatch for {what} from {url}: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        url: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("download of {digest} from {url} was cut short: got {got} of {expected} bytes{cause}")]
    Truncated {
        url: String,
        digest: Digest,
        got: u64,
        expected: u64,
        /// `: <io error>` when the connection failed, or empty.
        cause: String,
    },
    #[error("{url}: the registry sent more than the {limit} bytes expected for {what}")]
    TooLarge {
        url: String,
        what: String,
        limit: u64,
    },
    #[error("{reference}: the manifest declares a {size}-byte image config {digest}; berth accepts at most {limit}")]
    ConfigTooLarge {
        reference: String,
        digest: Digest,
        size: u64,
        limit: u64,
    },
    #[error("{url}: invalid {what}: {message}")]
    BadResponse {
        url: String,
        what: String,
        message: String,
    },
    #[error("{reference}: unsupported manifest media type {media_type:?}")]
    UnsupportedMediaType {
        reference: String,
        media_type: String,
    },
    #[error("{reference}: no image for platform {platform} (the index has: {available})")]
    NoPlatform {
        reference: String,
        platform: String,
        available: String,
    },
    #[error("no such image in the store: {0}")]
    NotInStore(String),
    #[error("{reference} pins {pinned}, but the store has {actual} under that name")]
    PinnedDigest {
        reference: String,
        pinned: Digest,
        actual: Digest,
    },
    #[error("image store: {0}")]
    Store(#[from] StoreError),
    /// Every mirror failed and so did the registry itself; `error` is the
    /// registry's answer.
    #[error("{error} (mirrors tried first: {})", mirrors.join("; "))]
    AllSourcesFailed {
        error: Box<Error>,
        mirrors: Vec<String>,
    },
}

impl Error {
    /// The error of the registry itself when mirrors were tried first.
    pub fn root(&self) -> &Error {
        match self {
            Error::AllSourcesFailed { error, .. } => error.root(),
            e => e,
        }
    }

    /// The image (or tag) does not exist where it was looked for.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self.root(),
            Error::ManifestUnknown(_) | Error::BlobUnknown { .. }
        )
    }

    /// Does a failure on one source justify trying the next one? Local
    /// problems (the store, the configuration) would fail there too.
    fn try_next_source(&self) -> bool {
        !matches!(
            self,
            Error::Store(_)
                | Error::Config(_)
                | Error::Reference(_)
                | Error::Auth(_)
                | Error::NoPlatform { .. }
        )
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    /// The CLI shares one client between threads (pulls of several
    /// services at once).
    #[test]
    fn client_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<crate::Client>();
        check::<crate::Error>();
    }
}
