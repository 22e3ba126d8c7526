//! Root-only tests against the real kernel: bridges, veths, namespaces,
//! iptables. Traffic goes only between namespaces and bridges these tests
//! create (inside 172.31.240.0/20, split per test so tests can run in
//! parallel), never anywhere else.

mod cleanup;
mod common;
mod connectivity;
mod netns;
mod pool;
