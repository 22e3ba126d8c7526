//! What the docker backend's tests share: the daemon, small images made
//! here (busybox from Debian's busybox-static, no registry needed to make
//! them), a loopback registry, projects that go down when a test ends.

use berth_compose::Loaded;
use berth_engine::backend::{DownOptions, LoadRequest, PlanFlags, UpRequest};
use berth_engine::Backend;
use berth_engine_docker::DockerBackend;
use berth_oci::{Descriptor, Store};
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

pub fn backend() -> DockerBackend {
    DockerBackend::connect()
        .expect("the Docker Engine must answer (scripts/test.sh starts dockerd)")
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A layer: busybox at /bin/busybox (with a few applets linked) plus `files`.
fn layer(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let busybox = std::fs::read("/bin/busybox").expect("busybox-static installs /bin/busybox");
    let dir = |b: &mut tar::Builder<Vec<u8>>, p: &str| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        h.set_mtime(0);
        b.append_data(&mut h, p, std::io::empty()).unwrap();
    };
    for d in ["bin", "tmp", "app"] {
        dir(&mut b, d);
    }
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o755);
    h.set_size(busybox.len() as u64);
    h.set_mtime(0);
    b.append_data(&mut h, "bin/busybox", &busybox[..]).unwrap();
    for applet in ["sh", "sleep", "httpd", "true", "cat", "echo", "grep"] {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        h.set_mtime(0);
        b.append_link(&mut h, format!("bin/{applet}"), "busybox")
            .unwrap();
    }
    for (path, content) in files {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(content.len() as u64);
        h.set_mtime(0);
        b.append_data(&mut h, path, *content).unwrap();
    }
    b.into_inner().unwrap()
}

/// An image in berth's store, as berth's builder leaves one: one layer,
/// an OCI config and manifest, tagged `reference`.
pub fn make_image(
    store: &Store,
    reference: &str,
    files: &[(&str, &[u8])],
    config: serde_json::Value,
) -> Descriptor {
    let tar = layer(files);
    let digest = store.write_blob(&tar).unwrap();
    let cfg = json!({
        "architecture": "amd64",
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [digest.to_string()]},
    });
    let cfg_desc = store.put_json(berth_oci::media::OCI_CONFIG, &cfg).unwrap();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": berth_oci::media::OCI_MANIFEST,
        "config": {"mediaType": berth_oci::media::OCI_CONFIG, "digest": cfg_desc.digest.to_string(), "size": cfg_desc.size},
        "layers": [{"mediaType": berth_oci::media::OCI_LAYER, "digest": digest.to_string(), "size": tar.len()}],
    });
    let desc = store
        .put_json(berth_oci::media::OCI_MANIFEST, &manifest)
        .unwrap();
    store.tag(reference, &desc).unwrap();
    desc
}

/// A registry on a free loopback port (Debian's `docker-registry`), stopped
/// when dropped. The daemon pushes and pulls 127.0.0.1 registries over
/// plain HTTP without configuration.
pub struct Registry {
    pub port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Registry {
    pub fn start() -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("docker-registry (Debian's package) must be installed");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the registry did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Registry {
            port,
            child,
            _dir: dir,
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One GET on loopback: (status, body), or None when refused/reset.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

/// Poll until `port` serves `path` with a 200 whose body contains `want`.
pub fn wait_for_body(port: u16, path: &str, want: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some((200, body)) = http_get(port, path) {
            if body.contains(want) {
                return body;
            }
        }
        assert!(
            Instant::now() < deadline,
            "127.0.0.1:{port}{path} never served {want:?} (last: {:?})",
            http_get(port, path)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A project directory named after the project (so docker-compose derives
/// the same name from it), its compose file, and `down -v` on drop.
pub struct Project {
    pub name: String,
    pub dir: PathBuf,
    _root: tempfile::TempDir,
}

impl Project {
    pub fn new(name: &str, compose: &str) -> Project {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("docker-compose.yml"), compose).unwrap();
        let p = Project {
            name: name.to_string(),
            dir,
            _root: root,
        };
        p.clean();
        p
    }

    pub fn options(&self) -> berth_compose::Options {
        berth_compose::Options {
            cwd: self.dir.clone(),
            os_env: std::env::vars().filter(|(k, _)| k == "PATH").collect(),
            ..berth_compose::Options::default()
        }
    }

    pub fn load(&self) -> (LoadRequest, Loaded) {
        let options = self.options();
        let loaded = berth_compose::load(&options).expect("the compose file loads");
        assert_eq!(loaded.project.name, self.name);
        (LoadRequest::from(&options), loaded)
    }

    /// `up` with the images named in the file.
    pub fn up(&self, b: &DockerBackend) -> Result<(), berth_engine::BackendError> {
        self.up_with(b, &PlanFlags::default())
    }

    pub fn up_with(
        &self,
        b: &DockerBackend,
        flags: &PlanFlags,
    ) -> Result<(), berth_engine::BackendError> {
        self.up_full(b, flags, &BTreeMap::new())
    }

    /// `up` with the `x-runtime`s the CLI would have resolved.
    pub fn up_full(
        &self,
        b: &DockerBackend,
        flags: &PlanFlags,
        runtimes: &BTreeMap<String, berth_engine::backend::RuntimeMount>,
    ) -> Result<(), berth_engine::BackendError> {
        let (load, loaded) = self.load();
        let images = BTreeMap::new();
        let req = UpRequest {
            load: &load,
            loaded: &loaded,
            images: &images,
            runtimes,
            flags,
        };
        b.up(&req, &|line| eprintln!("{line}"))
    }

    pub fn plan(&self, b: &DockerBackend) -> berth_engine::Plan {
        self.plan_with(b, &BTreeMap::new())
    }

    pub fn plan_with(
        &self,
        b: &DockerBackend,
        runtimes: &BTreeMap<String, berth_engine::backend::RuntimeMount>,
    ) -> berth_engine::Plan {
        let (load, loaded) = self.load();
        let images = BTreeMap::new();
        let flags = PlanFlags::default();
        let req = UpRequest {
            load: &load,
            loaded: &loaded,
            images: &images,
            runtimes,
            flags: &flags,
        };
        b.plan(&req).expect("plan")
    }

    pub fn down(&self, b: &DockerBackend) -> bool {
        let (_, loaded) = self.load();
        b.down(
            &loaded.project,
            &DownOptions {
                timeout_secs: Some(1),
                volumes: true,
            },
            &|line| eprintln!("{line}"),
        )
        .expect("down")
    }

    /// Everything labelled with the project, through the daemon's own CLI.
    pub fn leftovers(&self) -> Vec<String> {
        let mut out = Vec::new();
        for kind in ["container", "network", "volume"] {
            let mut args = vec![kind, "ls", "-q", "--filter"];
            let filter = format!("label=com.docker.compose.project={}", self.name);
            args.push(&filter);
            if kind == "container" {
                args.push("-a");
            }
            let o = Command::new("docker").args(&args).output().unwrap();
            for line in String::from_utf8_lossy(&o.stdout).lines() {
                out.push(format!("{kind} {line}"));
            }
        }
        out
    }

    /// Remove whatever an earlier, interrupted run left.
    fn clean(&self) {
        let b = backend();
        if let Ok(loaded) = berth_compose::load(&self.options()) {
            let _ = b.down(
                &loaded.project,
                &DownOptions {
                    timeout_secs: Some(0),
                    volumes: true,
                },
                &|_| {},
            );
        }
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        self.clean();
    }
}

/// Run docker-compose 1.29.2 in the project directory.
pub fn docker_compose(dir: &Path, args: &[&str]) -> (bool, String) {
    let o = Command::new("docker-compose")
        .current_dir(dir)
        .args(args)
        .env_remove("COMPOSE_PROJECT_NAME")
        .output()
        .expect("docker-compose (1.29.2, Debian's) must be installed");
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

/// Images the tests share, loaded into the daemon through the backend:
/// `box` (busybox), `code` (busybox with /app/index.html and VOLUME /app).
pub fn images(
    b: &DockerBackend,
    store: &Store,
    tag: &str,
    code_text: &str,
) -> HashMap<&'static str, String> {
    let mut out = HashMap::new();
    let boxed = format!("berth-test/box:{tag}");
    make_image(
        store,
        &boxed,
        &[],
        json!({"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"]}),
    );
    b.import_image(store, &boxed, &|_| {}).expect("import box");
    out.insert("box", boxed);
    let code = images_code(b, store, tag, code_text);
    out.insert("code", code);
    out
}

/// The code image alone (`berth-test/code:TAG`), with new content.
pub fn images_code(b: &DockerBackend, store: &Store, tag: &str, code_text: &str) -> String {
    let code = format!("berth-test/code:{tag}");
    make_image(
        store,
        &code,
        &[("app/index.html", code_text.as_bytes())],
        json!({"Cmd": ["/bin/busybox", "true"], "Env": ["PATH=/bin"], "Volumes": {"/app": {}}}),
    );
    b.import_image(store, &code, &|_| {}).expect("import code");
    code
}

/// The daemon's socket relayed on a loopback TCP port: a `tcp://` Docker
/// host, which berth treats as remote (its containers unreachable from
/// here), without exposing the daemon beyond this machine.
pub struct TcpRelay {
    pub port: u16,
}

impl TcpRelay {
    pub fn start() -> TcpRelay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(daemon) = std::os::unix::net::UnixStream::connect("/var/run/docker.sock")
                else {
                    continue;
                };
                let (mut c2, mut d2) = (client.try_clone().unwrap(), daemon.try_clone().unwrap());
                let (mut c1, mut d1) = (client, daemon);
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c1, &mut d1);
                    let _ = d1.shutdown(std::net::Shutdown::Write);
                });
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut d2, &mut c2);
                    let _ = c2.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        TcpRelay { port }
    }
}

/// The anonymous volume at /app of the project's code container.
pub fn code_volume(project: &str) -> String {
    let o = std::process::Command::new("docker")
        .args([
            "inspect",
            "-f",
            "{{range .Mounts}}{{if eq .Destination \"/app\"}}{{.Name}}{{end}}{{end}}",
            &format!("{project}-code-1"),
        ])
        .output()
        .unwrap();
    let name = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert_eq!(name.len(), 64, "no /app volume: {name:?}");
    name
}

/// Whether the daemon still has volume `name`.
pub fn volume_exists(name: &str) -> bool {
    Command::new("docker")
        .args(["volume", "inspect", name])
        .output()
        .unwrap()
        .status
        .success()
}
