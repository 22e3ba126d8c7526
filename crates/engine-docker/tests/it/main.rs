//! The docker backend against the real Docker Engine (and docker-compose
//! 1.29.2, and a registry on loopback). Each test has its own project name
//! and takes its project down when it ends, passing or failing.

mod common;
mod multi;
mod ops;
mod remote;
mod runtime;
mod swap;
mod up;
