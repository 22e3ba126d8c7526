//! Compose files to one normalized, validated [`Project`].
//!
//! The pipeline: discover files → parse YAML (with marks) → interpolate →
//! v1 → spec → validate (schema) → include/extends → merge → profiles →
//! normalize → semantic checks → typed [`Project`] → config hash.

pub mod consistency;
pub mod coverage;
pub mod dotenv;
pub mod emit;
pub mod error;
pub mod extensions;
pub mod hash;
pub mod interpolate;
pub mod legacy;
pub mod loader;
pub mod merge;
pub mod model;
pub mod names;
pub mod normalize;
pub mod schema;
pub mod units;
pub mod yaml;

pub use error::LoadError;
pub use loader::{load, Loaded, Options};
pub use model::Project;
