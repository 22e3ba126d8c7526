//! Test fixtures: network namespaces the test run creates (and always deletes), servers
//! running inside them, and counters of this process's fds and threads.
//!
//! Network rule: traffic goes only to 127.0.0.0/8 on the host or to loopback inside
//! namespaces created here.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Once, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Tests share the process; the leak test needs it to itself (fd and thread counts), so it
/// takes this exclusively and every other test takes it shared. Declare the guard first in a
/// test so it is dropped last, after everything the test made.
static PROCESS: RwLock<()> = RwLock::new(());

pub fn shared() -> RwLockReadGuard<'static, ()> {
    PROCESS.read().unwrap_or_else(|e| e.into_inner())
}

pub fn exclusive() -> RwLockWriteGuard<'static, ()> {
    PROCESS.write().unwrap_or_else(|e| e.into_inner())
}

static NEXT_NETNS: AtomicUsize = AtomicUsize::new(0);
static CLEAN_STALE: Once = Once::new();

const NETNS_PREFIX: &str = "berth-proxytest-";

/// A named network namespace with its loopback up; deleted on drop (also when a test fails).
pub struct TestNetns {
    pub name: String,
    pub path: PathBuf,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {args:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Namespaces left by an earlier run that was killed (its pid no longer exists).
fn delete_stale_namespaces() {
    let Ok(entries) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(NETNS_PREFIX) else {
            continue;
        };
        let pid = rest.split('-').next().unwrap_or("");
        if !Path::new("/proc").join(pid).exists() {
            let _ = ip(&["netns", "delete", &name]);
        }
    }
}

impl TestNetns {
    pub fn new() -> TestNetns {
        CLEAN_STALE.call_once(delete_stale_namespaces);
        let n = NEXT_NETNS.fetch_add(1, Ordering::SeqCst);
        let name = format!("{NETNS_PREFIX}{}-{n}", std::process::id());
        ip(&["netns", "add", &name]).expect("create network namespace");
        let ns = TestNetns {
            path: PathBuf::from("/run/netns").join(&name),
            name,
        };
        // A server bound to 127.0.0.1 inside the namespace needs its loopback up.
        ip(&["netns", "exec", &ns.name, "ip", "link", "set", "lo", "up"]).expect("lo up");
        ns
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = ip(&["netns", "delete", &self.name]);
    }
}

/// Moves the calling thread into the namespace at `path` (tests only: the proxy itself never
/// changes the namespace of its callers' threads).
pub fn enter_netns(path: &Path) {
    let file = File::open(path).expect("open netns");
    // SAFETY: plain syscall on an fd we hold open.
    let ret = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(ret, 0, "setns: {}", std::io::Error::last_os_error());
}

/// Runs `f` on a new thread, inside `netns` when given; the thread's result comes back on
/// join.
pub fn spawn_in<T: Send + 'static>(
    netns: Option<&Path>,
    f: impl FnOnce() -> T + Send + 'static,
) -> JoinHandle<T> {
    let netns = netns.map(Path::to_path_buf);
    std::thread::spawn(move || {
        if let Some(path) = netns {
            enter_netns(&path);
        }
        f()
    })
}

/// A TCP server on 127.0.0.1 (inside `netns` if given). For each connection it sends its
/// name and a newline, then echoes every byte until the client's FIN, then closes.
pub struct EchoServer {
    pub port: u16,
    pub accepted: Arc<AtomicUsize>,
    listener: Arc<TcpListener>,
    thread: Option<JoinHandle<()>>,
}

impl EchoServer {
    pub fn start(netns: Option<&Path>, name: &str) -> EchoServer {
        let (tx, rx) = mpsc::channel();
        let accepted = Arc::new(AtomicUsize::new(0));
        let greeting = format!("{name}\n");
        let counter = accepted.clone();
        let thread = spawn_in(netns, move || {
            let listener = Arc::new(TcpListener::bind("127.0.0.1:0").expect("server bind"));
            tx.send(listener.clone()).unwrap();
            // Ends when the owner shuts the listener down.
            while let Ok((conn, _)) = listener.accept() {
                counter.fetch_add(1, Ordering::SeqCst);
                let greeting = greeting.clone();
                std::thread::spawn(move || echo(conn, &greeting));
            }
        });
        let listener = rx.recv().expect("server started");
        EchoServer {
            port: listener.local_addr().unwrap().port(),
            accepted,
            listener,
            thread: Some(thread),
        }
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

fn echo(mut conn: TcpStream, greeting: &str) {
    if conn.write_all(greeting.as_bytes()).is_err() {
        return;
    }
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if conn.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
    let _ = conn.shutdown(Shutdown::Write);
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        // shutdown(2) on a listening socket wakes its blocked accept(2) with an error.
        // SAFETY: plain syscall on a socket we hold.
        unsafe { libc::shutdown(self.listener.as_raw_fd(), libc::SHUT_RDWR) };
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A UDP server on 127.0.0.1 (inside `netns` if given) answering each datagram with
/// `<name>:<datagram>`.
pub struct UdpEchoServer {
    pub port: u16,
    socket: Arc<UdpSocket>,
    thread: Option<JoinHandle<()>>,
}

impl UdpEchoServer {
    pub fn start(netns: Option<&Path>, name: &str) -> UdpEchoServer {
        let (tx, rx) = mpsc::channel();
        let prefix = format!("{name}:").into_bytes();
        let thread = spawn_in(netns, move || {
            let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").expect("udp bind"));
            tx.send(socket.clone()).unwrap();
            let mut buf = vec![0u8; 65536];
            // Ends when the owner shuts the socket down (recv then returns 0 bytes from no one).
            while let Ok((n, from)) = socket.recv_from(&mut buf) {
                if n == 0 && from.port() == 0 {
                    break;
                }
                let mut reply = prefix.clone();
                reply.extend_from_slice(&buf[..n]);
                let _ = socket.send_to(&reply, from);
            }
        });
        let socket = rx.recv().expect("udp server started");
        UdpEchoServer {
            port: socket.local_addr().unwrap().port(),
            socket,
            thread: Some(thread),
        }
    }
}

impl Drop for UdpEchoServer {
    fn drop(&mut self) {
        // SAFETY: plain syscall on a socket we hold; wakes the blocked recvfrom.
        unsafe { libc::shutdown(self.socket.as_raw_fd(), libc::SHUT_RDWR) };
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Connects, reads the greeting, sends `msg`, reads it back; returns the server's name.
pub fn request(addr: SocketAddr, msg: &str) -> std::io::Result<String> {
    let conn = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut name = String::new();
    reader.read_line(&mut name)?;
    if !name.ends_with('\n') {
        return Err(std::io::Error::other(format!("short greeting {name:?}")));
    }
    (&conn).write_all(msg.as_bytes())?;
    let mut back = vec![0u8; msg.len()];
    reader.read_exact(&mut back)?;
    if back != msg.as_bytes() {
        return Err(std::io::Error::other("echo mismatch"));
    }
    name.pop();
    Ok(name)
}

/// Entries in /proc/self/fd.
pub fn fd_count() -> usize {
    // Unreadable must fail the test: a count of 0 before and after would prove nothing.
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
}

/// Threads of this process whose name starts with `berth-` (the proxy's own threads).
pub fn proxy_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.starts_with("berth-"))
        })
        .count()
}

/// Asserts that the connection behind `conn` was cut: it ends (end of stream or a reset)
/// with no further data. A read that times out fails: the connection is still open.
pub fn assert_cut(mut conn: impl Read) {
    let mut rest = Vec::new();
    match conn.read_to_end(&mut rest) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the connection was not cut: {e}"),
    }
    assert!(rest.is_empty(), "data after the cut: {rest:?}");
}

/// Polls `f` until it returns true or `timeout` passes; returns the last answer.
pub fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A port on 127.0.0.1 that nothing listens on (bound then released).
pub fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Names of this process's threads that are inside the network namespace at `netns`.
pub fn threads_in_namespace(netns: &Path) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let inode = |p: &Path| std::fs::metadata(p).map(|m| (m.dev(), m.ino())).ok();
    let Some(wanted) = inode(netns) else {
        return Vec::new();
    };
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter(|t| inode(&t.path().join("ns/net")) == Some(wanted))
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .map(|name| name.trim().to_string())
        .collect()
}

/// The calling thread's network namespace (`net:[inode]`).
pub fn own_namespace() -> PathBuf {
    std::fs::read_link("/proc/thread-self/ns/net").expect("own netns")
}
