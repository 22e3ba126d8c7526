//! Integration tests of the port proxy (root: they create network namespaces).

mod http;
mod httpkit;
mod leaks;
mod support;
mod switch;
mod tcp;
mod udp;
