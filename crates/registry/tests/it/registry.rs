//! A real registry (Debian's `docker-registry`, the CNCF distribution
//! server) on a free loopback port, with its storage in a temp dir; killed
//! on drop.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_oci::Digest;

const BINARY: &str = "/usr/bin/docker-registry";

pub struct TestRegistry {
    child: Child,
    /// `127.0.0.1:<port>`
    pub addr: String,
    /// The registry's `storage.filesystem.rootdirectory`.
    pub root: PathBuf,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free loopback port")
}

impl TestRegistry {
    pub fn start() -> TestRegistry {
        assert!(
            Path::new(BINARY).exists(),
            "{BINARY} is missing: these tests run a real registry on loopback; \
             install it with `apt-get install -y docker-registry`"
        );
        // Another test may take the port between our probe and the
        // registry's bind: try a few.
        let mut last_log = String::new();
        for _ in 0..5 {
            match Self::try_start() {
                Ok(r) => return r,
                Err(log) => last_log = log,
            }
        }
        panic!("docker-registry did not start; its last log:\n{last_log}");
    }

    fn try_start() -> Result<TestRegistry, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let root = dir.path().join("data");
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\n\
                 log:\n  level: warn\n  accesslog:\n    disabled: true\n\
                 storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n  \
                 maintenance:\n    uploadpurging:\n      enabled: false\n\
                 http:\n  addr: {addr}\n",
                root.display()
            ),
        )
        .map_err(|e| e.to_string())?;
        let log = dir.path().join("registry.log");
        let log_file = std::fs::File::create(&log).map_err(|e| e.to_string())?;
        let err_file = log_file.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new(BINARY)
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(err_file)
            .spawn()
            .map_err(|e| format!("cannot run {BINARY}: {e}"))?;
        let mut registry = TestRegistry {
            child,
            addr,
            root,
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = registry.child.try_wait() {
                return Err(registry.log());
            }
            if http_status(&registry.addr, "/v2/") == Some(200) {
                return Ok(registry);
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        Err(format!(
            "no answer on {} within 20 s\n{}",
            registry.addr,
            registry.log()
        ))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Where the registry keeps a blob's bytes.
    pub fn blob_data(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.root
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A bare HTTP/1.0 GET, independent of the client under test.
pub fn http_status(addr: &str, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).ok()?;
    let head = String::from_utf8_lossy(&buf[..n]);
    head.split_whitespace().nth(1)?.parse().ok()
}
