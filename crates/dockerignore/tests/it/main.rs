//! berth-dockerignore integration tests: moby's conformance tables (read in
//! place from `shared/conformance/dockerignore/`) and the build-context
//! helper on real directories.

mod conformance;
mod context;
