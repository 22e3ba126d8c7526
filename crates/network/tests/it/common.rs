//! Test fixtures: a scratch state directory, namespaces removed on drop,
//! TCP helpers that run inside a namespace, and probes of host state.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Once, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use berth_network::{Network, Networks, PoolConfig};

/// Tests take this shared; the one test that checks the shared chain is
/// gone once the last network goes takes it exclusively.
static FIREWALL: RwLock<()> = RwLock::new(());

pub fn shared() -> RwLockReadGuard<'static, ()> {
    FIREWALL.read().unwrap_or_else(|e| e.into_inner())
}

pub fn exclusive() -> RwLockWriteGuard<'static, ()> {
    FIREWALL.write().unwrap_or_else(|e| e.into_inner())
}

/// Fails (not skips) when the machine cannot run these tests, saying why.
pub fn require_root_and_tools() {
    static CHECK: Once = Once::new();
    CHECK.call_once(|| {
        // SAFETY: geteuid has no preconditions.
        let euid = unsafe { libc::geteuid() };
        assert_eq!(
            euid, 0,
            "berth-network's integration tests need root (network namespaces, bridges, iptables)"
        );
        if let Err(e) = berth_network::check_tools() {
            panic!("{e}");
        }
    });
}

/// A scratch state directory and a `Networks` over a test-only pool.
pub struct Fixture {
    pub networks: Networks,
    _dir: tempfile::TempDir,
}

impl Fixture {
    pub fn new(pool: &str) -> Fixture {
        require_root_and_tools();
        let dir = tempfile::tempdir().unwrap();
        let pool: PoolConfig = pool.parse().unwrap();
        Fixture {
            networks: Networks::open(dir.path().join("network"), pool),
            _dir: dir,
        }
    }
}

impl Drop for Fixture {
    /// A failing test still removes what it made, so the next run (and the
    /// host) starts clean.
    fn drop(&mut self) {
        for network in self.networks.list().unwrap_or_default() {
            for ep in self.networks.endpoints(&network.name).unwrap_or_default() {
                let _ = self.networks.detach(&network.name, &ep.container_id);
            }
            let _ = self.networks.remove(&network.name);
        }
    }
}

/// Removes a network made without state (the low-level API) on drop.
pub struct NetworkGuard(pub String);

impl Drop for NetworkGuard {
    fn drop(&mut self) {
        let _ = Network::remove_by_name(&self.0);
    }
}

/// A named namespace deleted on drop (even when the test fails).
pub struct Ns {
    pub name: String,
    pub path: PathBuf,
}

impl Ns {
    pub fn new(name: &str) -> Ns {
        // A previous run that crashed may have left it.
        berth_network::delete_netns(name).unwrap();
        let path = berth_network::create_netns(name).unwrap();
        Ns {
            name: name.to_string(),
            path,
        }
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = berth_network::delete_netns(&self.name);
    }
}

/// Listens on `addr` inside `ns` (or on the host when `None`), accepts one
/// connection and answers with the peer address it saw.
pub fn serve_once(ns: Option<&Path>, addr: SocketAddrV4) -> std::thread::JoinHandle<()> {
    let listener = match ns {
        Some(path) => berth_network::run_in_netns(path, move || TcpListener::bind(addr))
            .unwrap()
            .unwrap(),
        None => TcpListener::bind(addr).unwrap(),
    };
    // The socket stays in its namespace; accepting from any thread is fine.
    std::thread::spawn(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        listener.set_nonblocking(true).unwrap();
        loop {
            match listener.accept() {
                Ok((mut stream, peer)) => {
                    let _ = stream.write_all(peer.ip().to_string().as_bytes());
                    return;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if std::time::Instant::now() > deadline {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(_) => return,
            }
        }
    })
}

/// Connects from inside `ns` to `addr` and returns what the server said
/// (the source address it saw), or the error.
pub fn connect_from(ns: &Path, addr: SocketAddrV4, timeout: Duration) -> std::io::Result<String> {
    berth_network::run_in_netns(ns, move || {
        let mut stream = TcpStream::connect_timeout(&SocketAddr::V4(addr), timeout)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut seen = String::new();
        stream.read_to_string(&mut seen)?;
        Ok(seen)
    })
    .unwrap()
}

pub fn sock(ip: Ipv4Addr, port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(ip, port)
}

/// Finds a tool like the library does: PATH, then the sbin directories that
/// a non-login root shell (or CI) may lack in PATH.
pub fn which(program: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(program))
}

pub fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(which(program))
        .args(args)
        .env("LC_ALL", "C")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `ip ARGS` run inside the named namespace (`ip -n`).
pub fn in_ns(ns: &str, args: &[&str]) -> String {
    let mut all = vec!["-n", ns];
    all.extend_from_slice(args);
    run("ip", &all)
}

/// `ip -o link` as seen inside `ns` .
pub fn links_in(ns: &str) -> String {
    in_ns(ns, &["-o", "link"])
}

pub fn addrs_in(ns: &str) -> String {
    in_ns(ns, &["-o", "-4", "addr"])
}

pub fn routes_in(ns: &str) -> String {
    in_ns(ns, &["-4", "route"])
}

pub fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

pub fn filter_rules() -> String {
    run("iptables", &["-w", "-S"])
}

pub fn nat_rules() -> String {
    run("iptables", &["-w", "-t", "nat", "-S"])
}

/// Rules carrying exactly the comment of network `name`.
pub fn berth_rules(name: &str) -> Vec<String> {
    let quoted = format!("--comment \"berth:{name}\"");
    let bare = format!("--comment berth:{name} ");
    filter_rules()
        .lines()
        .chain(nat_rules().lines())
        .filter(|l| l.contains(&quoted) || l.contains(&bare))
        .map(str::to_string)
        .collect()
}

/// A unique-enough suffix so reruns and parallel tests do not share names.
pub fn unique(tag: &str) -> String {
    format!("t{}-{tag}", std::process::id() % 100_000)
}

/// Asserts the network left nothing: no bridge, no berth veth on it, no rule.
pub fn assert_network_gone(name: &str) {
    let bridge = berth_network::bridge::bridge_name(name);
    assert!(
        !link_exists(&bridge),
        "bridge {bridge} of {name} still exists"
    );
    let rules = berth_rules(name);
    assert!(rules.is_empty(), "rules of {name} left: {rules:#?}");
}

pub fn assert_no_veth(network: &str, container: &str) {
    let veth = berth_network::veth::host_ifname(network, container);
    // A veth whose peer sat in a just-deleted namespace is removed by the
    // kernel asynchronously: allow it a moment.
    for _ in 0..50 {
        if !link_exists(&veth) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("veth {veth} of {container} on {network} still exists");
}
