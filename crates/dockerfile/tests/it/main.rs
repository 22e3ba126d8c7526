//! Conformance of the Dockerfile parser and shell-word expansion against
//! BuildKit's own test data in `../shared/conformance/dockerfile` (read in
//! place), plus behaviour the tables do not cover. One binary, so the suite
//! links once.

mod common;
mod conformance_parser;
mod conformance_shell;
mod heredocs;
mod typed;
