//! berth-runtimes against real sources: the npm registry, and servers the
//! tests run on 127.0.0.1. One test binary (links once).

mod local;
mod npm;
mod offline;
mod refresh;
mod server;
