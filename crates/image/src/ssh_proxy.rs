//! The socket a `RUN --mount=type=ssh` step talks to: a listener of the
//! build's own, owned by the step's user, forwarding every connection to
//! the ssh agent's socket. The agent's socket itself belongs to whoever
//! started the agent (mode 0600), so a step running as another user could
//! not use it; BuildKit forwards the same way.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// How often the accept loop looks whether the step ended.
const POLL: Duration = Duration::from_millis(100);

/// Forwards until dropped; connections still open then end with their
/// step's processes.
pub struct SshProxy {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl SshProxy {
    /// Listen at `path` (owned by `uid`:`gid`, `mode`) and forward to `agent`.
    pub fn start(path: &Path, agent: &Path, uid: u32, gid: u32, mode: u32) -> io::Result<SshProxy> {
        let listener = UnixListener::bind(path)?;
        std::os::unix::fs::chown(path, Some(uid), Some(gid))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o777))?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let agent: PathBuf = agent.to_path_buf();
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name("ssh-forward".into())
            .spawn(move || accept_loop(listener, &agent, &stopped))?;
        Ok(SshProxy {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for SshProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: UnixListener, agent: &Path, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((client, _)) => {
                // A step's connection the agent refuses just closes.
                let Ok(upstream) = UnixStream::connect(agent) else {
                    continue;
                };
                if client.set_nonblocking(false).is_err() {
                    continue;
                }
                let _ = forward(client, upstream);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(POLL),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => std::thread::sleep(POLL),
        }
    }
}

/// Copy both ways until either side closes.
fn forward(client: UnixStream, upstream: UnixStream) -> io::Result<()> {
    let (mut c_read, mut u_write) = (client.try_clone()?, upstream.try_clone()?);
    let (mut u_read, mut c_write) = (upstream, client);
    std::thread::Builder::new()
        .name("ssh-forward-up".into())
        .spawn(move || {
            let _ = io::copy(&mut c_read, &mut u_write);
            let _ = u_write.shutdown(std::net::Shutdown::Write);
        })?;
    std::thread::Builder::new()
        .name("ssh-forward-down".into())
        .spawn(move || {
            let _ = io::copy(&mut u_read, &mut c_write);
            let _ = c_write.shutdown(std::net::Shutdown::Write);
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn forwards_both_ways_and_stops_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let agent_path = dir.path().join("agent");
        let agent = UnixListener::bind(&agent_path).unwrap();
        let echo = std::thread::spawn(move || {
            let (mut s, _) = agent.accept().unwrap();
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).unwrap();
            s.write_all(&buf).unwrap();
        });
        let proxy_path = dir.path().join("proxy");
        let uid = unsafe { libc::getuid() };
        let gid = unsafe { libc::getgid() };
        let proxy = SshProxy::start(&proxy_path, &agent_path, uid, gid, 0o600).unwrap();
        let mode = std::fs::metadata(&proxy_path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let mut c = UnixStream::connect(&proxy_path).unwrap();
        c.write_all(b"hello").unwrap();
        let mut back = [0u8; 5];
        c.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"hello");
        echo.join().unwrap();
        drop(proxy);
    }
}
