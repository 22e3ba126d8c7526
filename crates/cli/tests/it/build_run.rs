//! Real Dockerfiles with `RUN`, built by `berth build` on a Debian base and
//! run by `berth up`. The base (`debian:bookworm-slim`) is made by
//! `scripts/seed-registry.sh` (mmdebstrap, cached) and served by a loopback
//! registry; `apt-get` reaches Debian's mirror and `pip` PyPI through the
//! host's network, which `RUN` steps share.
//!
//! Needs root, overlayfs, mmdebstrap and `docker-registry`.

use crate::common::{repo, text};
use crate::up::{free_port, http_get, DownOnDrop, Registry};
use std::fs;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const SECRET: &str = "pypi-token-7c1d0e55aa";

/// A Python app: Debian's python3 from `apt-get` (a heredoc, apt's caches
/// as cache mounts), `pip install -r requirements.txt` (with the usual
/// cache mount, though this machine's HTTPS proxy makes pip's responses
/// uncacheable), a build secret, `berth up`.
const DOCKERFILE: &str = r#"FROM debian:bookworm-slim
# The host's HTTPS proxy CA (in the base) outlives ca-certificates' rewrite.
RUN cp /etc/ssl/certs/ca-certificates.crt /etc/ssl/host-ca.pem
RUN --mount=type=cache,target=/var/cache/apt,sharing=locked --mount=type=cache,target=/var/lib/apt,sharing=locked <<EOF
set -e
apt-get update -q
apt-get install -y -q --no-install-recommends python3 python3-pip
EOF
ENV PIP_CERT=/etc/ssl/host-ca.pem PIP_BREAK_SYSTEM_PACKAGES=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY requirements.txt .
RUN --mount=type=cache,target=/root/.cache/pip pip install -r requirements.txt
RUN --mount=type=secret,id=token sha256sum /run/secrets/token | cut -c1-12 > /app/token.sum
COPY app.py .
CMD ["python3", "app.py"]
"#;

const APP: &str = r#"import bottle

@bottle.route("/")
def index():
    with open("/app/token.sum") as f:
        return "bottle %s, token %s\n" % (bottle.__version__, f.read().strip())

bottle.run(host="0.0.0.0", port=8000, quiet=True)
"#;

fn sha12(data: &str) -> String {
    let out = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(data.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    text(&out.stdout)[..12].to_string()
}

/// A loopback registry serving `debian:bookworm-slim`, a project dir and a
/// state dir; `run` is `berth` there with the mirror set.
struct Project {
    tmp: tempfile::TempDir,
    registry: Registry,
    dir: std::path::PathBuf,
    state: std::path::PathBuf,
}

impl Project {
    fn new(name: &str) -> Project {
        let tmp = tempfile::tempdir().unwrap();
        let registry = Registry {
            port: free_port(),
            storage: tmp.path().join("registry"),
        };
        let prep = Command::new("bash")
            .arg(repo().join("scripts/seed-registry.sh"))
            .arg(registry.port.to_string())
            .args(["--node-versions", "", "--storage"])
            .arg(&registry.storage)
            .env("BERTH", env!("CARGO_BIN_EXE_berth"))
            .output()
            .unwrap();
        assert!(
            prep.status.success(),
            "seed-registry.sh: {}",
            text(&prep.stderr)
        );
        let dir = tmp.path().join(format!("{name}{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(tmp.path().join("none.toml"), "").unwrap();
        Project {
            state: tmp.path().join("state"),
            dir,
            registry,
            tmp,
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(args)
            .current_dir(&self.dir)
            .env("BERTH_STATE_DIR", &self.state)
            .env("BERTH_CONFIG", self.tmp.path().join("none.toml"))
            .env(
                "BERTH_REGISTRY_MIRRORS",
                format!("docker.io=http://127.0.0.1:{}", self.registry.port),
            )
            .output()
            .unwrap()
    }

    /// `up -d`, then GET / on `port` until the body holds `want`.
    fn up_and_answer(&self, port: u16, want: &str) -> DownOnDrop {
        let down = DownOnDrop {
            dir: self.dir.clone(),
            state: self.state.clone(),
        };
        let up = self.run(&["up", "-d"]);
        assert!(up.status.success(), "up -d: {}", text(&up.stderr));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let body = http_get(port).unwrap_or_default();
            if body.contains(want) {
                return down;
            }
            assert!(
                Instant::now() < deadline,
                "the app never answered {want:?}; last: {body:?}; logs: {}",
                text(&self.run(&["logs"]).stdout)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

#[test]
fn a_python_app_with_apt_pip_a_cache_mount_and_a_secret_builds_and_answers() {
    let p = Project::new("pyapp");
    let dir = &p.dir;
    let state = &p.state;
    let berth = |args: &[&str]| p.run(args);
    let port = free_port();
    fs::write(dir.join("Dockerfile"), DOCKERFILE).unwrap();
    fs::write(dir.join("requirements.txt"), "bottle==0.12.25\n").unwrap();
    fs::write(dir.join("app.py"), APP).unwrap();
    fs::write(dir.join("token.txt"), SECRET).unwrap();
    fs::write(
        dir.join("compose.yaml"),
        format!(
            "services:\n  web:\n    build:\n      context: .\n      secrets: [token]\n    ports: [\"127.0.0.1:{port}:8000\"]\nsecrets:\n  token:\n    file: ./token.txt\n"
        ),
    )
    .unwrap();

    let built = berth(&["build"]);
    let log = text(&built.stderr);
    assert!(built.status.success(), "build: {log}");
    assert!(log.contains("Successfully installed bottle"), "{log}");
    assert!(!log.contains(SECRET), "the secret is in the build log");
    // The secret is in no blob: no layer, config or manifest.
    for b in fs::read_dir(state.join("images/blobs/sha256"))
        .unwrap()
        .flatten()
    {
        let bytes = fs::read(b.path()).unwrap();
        assert!(
            !bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
            "the secret is in blob {:?}",
            b.file_name()
        );
    }

    // Unchanged: every step is answered from the cache.
    let again = berth(&["build"]);
    let log = text(&again.stderr);
    assert!(again.status.success(), "build again: {log}");
    assert!(log.contains("(6 of "), "{log}");

    // Without the build cache, apt still finds the packages it fetched in
    // its cache mount.
    let fresh = berth(&["build", "--no-cache"]);
    let log = text(&fresh.stderr);
    assert!(fresh.status.success(), "build --no-cache: {log}");
    assert!(log.contains("Need to get 0 B/"), "{log}");

    let want = format!("bottle 0.12.25, token {}", sha12(SECRET));
    let _down = p.up_and_answer(port, &want);
    let down = berth(&["down", "-t", "1"]);
    assert!(down.status.success(), "down: {}", text(&down.stderr));
}

/// A Node backend as real projects write it: node and npm from the npm
/// registry (`ADD` of their tarballs), `COPY package*.json`, `RUN npm ci`
/// with npm's cache as a cache mount, `COPY . .`. A change to the sources
/// only reruns the last `COPY`: `npm ci` is `CACHED`.
#[test]
fn a_node_backend_builds_and_a_source_change_keeps_npm_ci_cached() {
    let p = Project::new("nodeapp");
    let fixture = repo().join("crates/cli/tests/fixtures/node-backend");
    for f in [
        "Dockerfile",
        ".dockerignore",
        "package.json",
        "package-lock.json",
        "server.js",
        "greeting.js",
    ] {
        fs::copy(fixture.join(f), p.dir.join(f)).unwrap();
    }
    let port = free_port();
    fs::write(
        p.dir.join("compose.yaml"),
        format!("services:\n  api:\n    build: .\n    ports: [\"127.0.0.1:{port}:3000\"]\n"),
    )
    .unwrap();
    let built = p.run(&["build"]);
    let log = text(&built.stderr);
    assert!(built.status.success(), "build: {log}");
    assert!(log.contains("added 72 packages"), "{log}");

    fs::write(
        p.dir.join("greeting.js"),
        "module.exports = \"hello again from node\";\n",
    )
    .unwrap();
    let rebuilt = p.run(&["build"]);
    let log = text(&rebuilt.stderr);
    assert!(rebuilt.status.success(), "rebuild: {log}");
    let lines: Vec<&str> = log.lines().collect();
    let step = |needle: &str| {
        lines
            .iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no step {needle:?} in {log}"))
    };
    let npm_ci = step("] RUN --mount=type=cache,target=/root/.npm npm ci");
    assert_eq!(lines[npm_ci + 1], "api | CACHED", "{log}");
    let copy_all = step("] COPY . .");
    assert_ne!(lines[copy_all + 1], "api | CACHED", "{log}");
    assert!(!log.contains("added 72 packages"), "{log}");

    let _down = p.up_and_answer(port, "\"greeting\":\"hello again from node\"");
    let body = http_get(port).unwrap_or_default();
    assert!(body.contains("\"node\":\"v20.20.2\""), "{body}");
    assert!(body.contains("\"express\":\"4.21.2\""), "{body}");
}
