//! Errors of the port proxy, worded for the user who published the port.

use std::io;
use std::net::IpAddr;

use crate::netns::NetnsError;
use crate::target::Target;
use crate::Proto;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("port {} is already in use on {ip}", port_label(*.port, *.proto))]
    PortInUse { ip: IpAddr, port: u16, proto: Proto },
    #[error("cannot publish port {} on {ip}: permission denied", port_label(*.port, *.proto))]
    PermissionDenied { ip: IpAddr, port: u16, proto: Proto },
    #[error("cannot publish port {} on {ip}: the address is not assigned to this host", port_label(*.port, *.proto))]
    AddressNotAvailable { ip: IpAddr, port: u16, proto: Proto },
    #[error("cannot publish port {} on {ip}: {source}", port_label(*.port, *.proto))]
    Bind {
        ip: IpAddr,
        port: u16,
        proto: Proto,
        source: io::Error,
    },
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error("cannot connect to {target}: {source}")]
    Connect { target: Target, source: io::Error },
    #[error("cannot set up the port proxy: {0}")]
    Setup(io::Error),
    #[error("cannot raise the open-file limit (RLIMIT_NOFILE) from {soft} to {hard}: {source}")]
    FdLimit {
        soft: u64,
        hard: u64,
        source: io::Error,
    },
    #[error("cannot start the proxy for port {} on {ip}: {source}", port_label(*.port, *.proto))]
    Start {
        ip: IpAddr,
        port: u16,
        proto: Proto,
        source: io::Error,
    },
}

/// `8080` for TCP, as users write it in `ports:`; `53/udp` otherwise.
fn port_label(port: u16, proto: Proto) -> String {
    match proto {
        Proto::Tcp => port.to_string(),
        Proto::Udp => format!("{port}/udp"),
    }
}

impl ProxyError {
    /// Maps a bind failure to the error a user can act on.
    pub(crate) fn from_bind(ip: IpAddr, port: u16, proto: Proto, source: io::Error) -> ProxyError {
        match source.raw_os_error() {
            Some(libc::EADDRINUSE) => ProxyError::PortInUse { ip, port, proto },
            Some(libc::EACCES) => ProxyError::PermissionDenied { ip, port, proto },
            Some(libc::EADDRNOTAVAIL) => ProxyError::AddressNotAvailable { ip, port, proto },
            _ => ProxyError::Bind {
                ip,
                port,
                proto,
                source,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bind_error(ip: &str, port: u16, proto: Proto, errno: i32) -> String {
        let source = io::Error::from_raw_os_error(errno);
        ProxyError::from_bind(ip.parse().unwrap(), port, proto, source).to_string()
    }

    #[test]
    fn messages_name_address_and_port() {
        assert_eq!(
            bind_error("127.0.0.1", 8080, Proto::Tcp, libc::EADDRINUSE),
            "port 8080 is already in use on 127.0.0.1"
        );
        assert_eq!(
            bind_error("0.0.0.0", 53, Proto::Udp, libc::EADDRINUSE),
            "port 53/udp is already in use on 0.0.0.0"
        );
        assert_eq!(
            bind_error("::", 80, Proto::Tcp, libc::EACCES),
            "cannot publish port 80 on ::: permission denied"
        );
        assert_eq!(
            bind_error("10.9.9.9", 80, Proto::Tcp, libc::EADDRNOTAVAIL),
            "cannot publish port 80 on 10.9.9.9: the address is not assigned to this host"
        );
    }
}
