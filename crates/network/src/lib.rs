//! Project networks for berth's embedded engine.
//!
//! - [`pool`]: which subnet a network gets and which address a container gets.
//! - [`network`] ([`bridge`], [`firewall`]): a Linux bridge with the gateway
//!   address, and berth's iptables rules (see `firewall.rs` for the layout).
//! - [`veth`], [`netns`]: plugging a container's network namespace in.
//! - [`hosts`], [`resolv`]: the `/etc/hosts` and `/etc/resolv.conf` the engine
//!   bind-mounts into containers; service names resolve through the former.
//! - [`networks`]: all of the above recorded in a state directory ([`state`]),
//!   which is what the engine uses.
//!
//! Everything needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN for namespaces) and the
//! `iproute2` and `iptables` packages. IPv4 only for now.

pub mod bridge;
pub mod cmd;
pub mod firewall;
pub mod host;
pub mod hosts;
pub mod netns;
pub mod network;
pub mod networks;
pub mod pool;
pub mod resolv;
pub mod state;
pub mod subnet;
pub mod subnet6;
pub mod veth;

pub use cmd::{check_tools, CommandError};
pub use hosts::{render_hosts, HostsError, HostsFile};
pub use netns::{create_netns, delete_netns, disable_ipv6, netns_path, run_in_netns, NetnsError};
pub use network::{Network, NetworkError};
pub use networks::{BridgeOptions, NetworkOptions, Networks};
pub use pool::{PoolConfig, PoolError};
pub use resolv::{ResolvConf, ResolvError};
pub use subnet::{Subnet, SubnetError};
pub use subnet6::{Subnet6, Subnet6Error};
pub use veth::{attach, detach, AttachError, AttachOptions, Endpoint};

/// Errors of [`Networks`], which combines every other module's.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Network(#[from] NetworkError),
    #[error(transparent)]
    Attach(#[from] AttachError),
    #[error(transparent)]
    Pool(#[from] PoolError),
    #[error(transparent)]
    State(#[from] state::StateError),
    #[error(transparent)]
    Host(#[from] host::HostError),
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error(transparent)]
    Subnet6(#[from] Subnet6Error),
    #[error("network `{0}` does not exist")]
    NotFound(String),
    #[error(
        "network `{name}` already exists with different settings ({existing}); remove it first"
    )]
    Conflict { name: String, existing: String },
    #[error("network `{network}` still has containers attached: {containers}")]
    InUse { network: String, containers: String },
    #[error("MAC address {mac} is taken on network `{network}` by container `{container}`")]
    MacTaken {
        mac: String,
        container: String,
        network: String,
    },
    #[error("container `{container}` is already attached to network `{network}`")]
    AlreadyAttached { container: String, network: String },
    #[error(
        "network `{0}` was left half-made by an interrupted run; create it again to repair it"
    )]
    NotReady(String),
}
