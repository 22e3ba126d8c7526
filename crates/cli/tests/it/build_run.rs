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

#[test]
fn a_python_app_with_apt_pip_a_cache_mount_and_a_secret_builds_and_answers() {
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
    let dir = tmp.path().join(format!("pyapp{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
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
    fs::write(tmp.path().join("none.toml"), "").unwrap();
    let state = tmp.path().join("state");
    let berth = |args: &[&str]| -> Output {
        Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(args)
            .current_dir(&dir)
            .env("BERTH_STATE_DIR", &state)
            .env("BERTH_CONFIG", tmp.path().join("none.toml"))
            .env(
                "BERTH_REGISTRY_MIRRORS",
                format!("docker.io=http://127.0.0.1:{}", registry.port),
            )
            .output()
            .unwrap()
    };

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

    let _down = DownOnDrop {
        dir: dir.clone(),
        state: state.clone(),
    };
    let up = berth(&["up", "-d"]);
    assert!(up.status.success(), "up -d: {}", text(&up.stderr));
    let want = format!("bottle 0.12.25, token {}", sha12(SECRET));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let body = http_get(port).unwrap_or_default();
        if body.contains(&want) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the app never answered {want:?}; last: {body:?}; logs: {}",
            text(&berth(&["logs"]).stdout)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let down = berth(&["down", "-t", "1"]);
    assert!(down.status.success(), "down: {}", text(&down.stderr));
}
