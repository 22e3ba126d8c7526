//! Integration tests: real containers (root), on images built here from
//! Debian's `busybox-static`. One binary, so the suite links once.

mod cp;
mod exec;
mod hostile;
mod layers;
mod lifecycle;
mod mounts;
mod netns;
mod pause;
mod resources;
mod run;
mod security;
mod share;
mod support;
