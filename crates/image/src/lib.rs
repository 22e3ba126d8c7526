//! Images from build contexts: walking and hashing a context, reproducible
//! layers, safe unpacking of archives, and the Dockerfile builder.

pub mod archive;
pub mod builder;
pub mod cache_mount;
pub mod context;
pub mod copy;
pub mod diff;
pub mod fetch;
pub mod layer;
pub mod passwd;
pub mod ssh_proxy;
pub mod unpack;
