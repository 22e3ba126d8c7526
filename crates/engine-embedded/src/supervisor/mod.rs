//! The per-project supervisor: the process `up -d` leaves behind. The
//! server ([`supervise`], with the `runtime` feature) runs the project; the
//! client and `state.json` are how commands reach and read it.

pub mod client;
pub mod protocol;
#[cfg(feature = "runtime")]
mod server;
pub mod state;

#[cfg(feature = "runtime")]
pub use server::supervise;
