//! Integration tests of the compose loader against the peer suites in
//! `../shared/conformance` (read in place) and berth's own examples.
//! One binary, so the suite links once.

mod common;
mod compare;
mod coverage;
mod fixtures;
mod full_example;
mod hostile;
mod include;
mod seed;
mod v1_config;
