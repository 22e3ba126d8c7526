//! The `berth` binary, run as a user runs it. One test binary (links once).

mod build_run;
mod cli;
mod common;
mod config_v2;
mod docker_backend;
mod engine;
mod features;
mod hostile;
mod images;
mod keepalive;
mod keys;
mod multiservice;
mod newcomer;
mod peer_config;
#[allow(dead_code)]
#[path = "../../../registry/tests/it/registry.rs"]
mod registry;
mod runtime;
mod swap;
mod swarm;
mod up;
mod watch;
