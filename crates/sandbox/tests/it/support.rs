//! Shared fixture: a state dir with an image store holding test images built
//! here from Debian's `busybox-static`, and a sandbox over it.

use berth_image::layer::{Layer, LayerBuilder, Owner};
use berth_oci::spec::{ContainerConfig, RootFs};
use berth_oci::store::Image;
use berth_oci::{media, Descriptor, ImageConfig, ImageManifest, Platform, Store};
use berth_sandbox::{Container, ContainerSpec, ExitStatus, Sandbox, Stdio};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

pub struct Fixture {
    pub dir: PathBuf,
    pub store: Store,
    pub sandbox: Sandbox,
    /// busybox, users `root`, `app` (1000:1000, member of `staff` 50), a
    /// `/etc/motd` and `/opq/old`.
    pub busybox: Image,
    /// busybox plus a layer that whites out `/etc/motd`, makes `/opq`
    /// opaque and adds `/opq/new`.
    pub whiteouts: Image,
}

const APPLETS: &[&str] = &[
    "sh", "echo", "cat", "ls", "id", "sleep", "touch", "env", "pwd", "mkdir", "rm", "true",
    "false", "test", "grep", "hostname", "ip", "wc", "stat", "readlink", "mknod", "ps", "head",
];

/// The tests need root and real binaries; a missing one is a failure that
/// names what to install, never a skip.
pub fn require_environment() {
    let uid = fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2).map(str::to_string));
    assert_eq!(
        uid.as_deref(),
        Some("0"),
        "the sandbox tests run real containers and need root"
    );
    assert!(
        Path::new("/bin/busybox").is_file(),
        "/bin/busybox is missing: run `apt-get install -y busybox-static`"
    );
    // Debian's plain `busybox` package is dynamically linked and cannot run
    // in an image without a libc: the static one has no ELF interpreter.
    let head = fs::read("/bin/busybox").unwrap_or_default();
    let head = &head[..head.len().min(8192)];
    let dynamic = head.windows(7).any(|w| w == b"ld-linu" || w == b"ld-musl");
    assert!(
        !dynamic,
        "/bin/busybox is dynamically linked: run `apt-get install -y busybox-static`"
    );
}

pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        require_environment();
        // One directory per test process: nextest runs every test in a
        // process of its own, and they must not wipe each other's state.
        let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        clean_stale_dirs(&base);
        let dir = base.join(format!("sandbox-it-{}", std::process::id()));
        clean_dir(&dir);
        let store = Store::open(dir.join("images")).unwrap();
        let base = busybox_layer(&store);
        let config = ContainerConfig {
            env: Some(vec![
                "PATH=/usr/bin:/bin".into(),
                "IMAGE_VAR=from-image".into(),
            ]),
            cmd: Some(vec!["sh".into()]),
            ..Default::default()
        };
        let busybox = image(
            &store,
            "busybox:it",
            std::slice::from_ref(&base),
            config.clone(),
        );
        let mut top = LayerBuilder::new(&store).unwrap();
        top.add_dir("etc", 0o755, Owner::ROOT).unwrap();
        top.add_bytes("etc/.wh.motd", b"", 0o644, Owner::ROOT)
            .unwrap();
        top.add_dir("opq", 0o755, Owner::ROOT).unwrap();
        top.add_bytes("opq/.wh..wh..opq", b"", 0o644, Owner::ROOT)
            .unwrap();
        top.add_bytes("opq/new", b"new\n", 0o644, Owner::ROOT)
            .unwrap();
        let top = top.finish().unwrap();
        let whiteouts = image(&store, "whiteouts:it", &[base, top], config);
        let sandbox = Sandbox::open(&dir).unwrap();
        Fixture {
            dir,
            store,
            sandbox,
            busybox,
            whiteouts,
        }
    })
}

/// Remove the directories of test processes that are gone.
fn clean_stale_dirs(base: &Path) {
    let Ok(entries) = fs::read_dir(base) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix("sandbox-it-") else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            clean_dir(&e.path());
        }
    }
}

/// Remove a previous run's state, unmounting anything still mounted in it.
pub fn clean_dir(dir: &Path) {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<&str> = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| Path::new(p).starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = std::process::Command::new("umount")
            .args(["-l", p])
            .status();
    }
    let _ = fs::remove_dir_all(dir);
}

fn busybox_layer(store: &Store) -> Layer {
    let app = Owner {
        uid: 1000,
        gid: 1000,
    };
    let mut l = LayerBuilder::new(store).unwrap();
    for (d, mode, owner) in [
        ("bin", 0o755, Owner::ROOT),
        ("etc", 0o755, Owner::ROOT),
        ("home", 0o755, Owner::ROOT),
        ("home/app", 0o755, app),
        ("opq", 0o755, Owner::ROOT),
        ("root", 0o700, Owner::ROOT),
        ("tmp", 0o1777, Owner::ROOT),
    ] {
        l.add_dir(d, mode, owner).unwrap();
    }
    l.add_file("bin/busybox", Path::new("/bin/busybox"), 0o755, Owner::ROOT)
        .unwrap();
    for applet in APPLETS {
        l.add_symlink(&format!("bin/{applet}"), "busybox", Owner::ROOT)
            .unwrap();
    }
    let passwd = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:App:/home/app:/bin/sh\n";
    let group = "root:x:0:\nstaff:x:50:app\napp:x:1000:\n";
    l.add_bytes("etc/passwd", passwd.as_bytes(), 0o644, Owner::ROOT)
        .unwrap();
    l.add_bytes("etc/group", group.as_bytes(), 0o644, Owner::ROOT)
        .unwrap();
    l.add_bytes("etc/motd", b"lower motd\n", 0o644, Owner::ROOT)
        .unwrap();
    l.add_bytes("opq/old", b"old\n", 0o644, Owner::ROOT)
        .unwrap();
    l.finish().unwrap()
}

/// Store and tag an image of `layers` (bottom first) with `config`.
pub fn image(store: &Store, name: &str, layers: &[Layer], config: ContainerConfig) -> Image {
    image_of(
        store,
        name,
        layers.iter().map(|l| l.descriptor.clone()).collect(),
        layers.iter().map(|l| l.diff_id.clone()).collect(),
        config,
    )
}

/// An image whose diff IDs are given separately from its layer blobs (so a
/// test can make them disagree).
pub fn image_of(
    store: &Store,
    name: &str,
    blobs: Vec<Descriptor>,
    diff_ids: Vec<berth_oci::Digest>,
    config: ContainerConfig,
) -> Image {
    let platform = Platform::host();
    let config = ImageConfig {
        architecture: platform.architecture.clone(),
        os: "linux".into(),
        config,
        rootfs: RootFs {
            kind: "layers".into(),
            diff_ids,
        },
        ..Default::default()
    };
    let config = store.put_json(media::OCI_CONFIG, &config).unwrap();
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: Some(media::OCI_MANIFEST.into()),
        config,
        layers: blobs,
        annotations: Default::default(),
        extra: Default::default(),
    };
    let desc = store.put_json(media::OCI_MANIFEST, &manifest).unwrap();
    store.tag(name, &desc).unwrap();
    store.image(name, &platform).unwrap()
}

/// A container id unique to this test run.
pub fn id(name: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "it-{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A busybox container spec running `sh -c script`.
pub fn sh(name: &str, script: &str) -> ContainerSpec {
    let mut spec = ContainerSpec::new(id(name), &fixture().busybox);
    spec.cmd = Some(vec!["sh".into(), "-c".into(), script.into()]);
    spec
}

pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Create, start, wait for and delete a container of `image`, capturing
/// its output.
pub fn run_on(sandbox: &Sandbox, image: &Image, mut spec: ContainerSpec) -> Output {
    let out = tempfile::tempdir().unwrap();
    spec.stdout = Stdio::File(out.path().join("stdout"));
    spec.stderr = Stdio::File(out.path().join("stderr"));
    let mut c = create_on(sandbox, image, spec);
    c.start().unwrap();
    let status = c.wait().unwrap();
    c.delete().unwrap();
    Output {
        status,
        stdout: fs::read_to_string(out.path().join("stdout")).unwrap_or_default(),
        stderr: fs::read_to_string(out.path().join("stderr")).unwrap_or_default(),
    }
}

pub fn run(spec: ContainerSpec) -> Output {
    let f = fixture();
    run_on(&f.sandbox, &f.busybox, spec)
}

pub fn create_on(sandbox: &Sandbox, image: &Image, spec: ContainerSpec) -> Container {
    let f = fixture();
    let layers = sandbox.layers().unpack_image(&f.store, image).unwrap();
    sandbox.create(&layers, spec).unwrap()
}

pub fn create(spec: ContainerSpec) -> Container {
    let f = fixture();
    create_on(&f.sandbox, &f.busybox, spec)
}

/// Mount points under `dir` in our mount namespace.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| Path::new(p).starts_with(dir))
        .map(str::to_string)
        .collect()
}

/// The container's cgroup dirs that exist, in every cgroup hierarchy
/// mounted here: each v1 controller and the v2 (unified) one, wherever it
/// is mounted (`/sys/fs/cgroup` itself on a v2-only host).
pub fn cgroup_dirs(id: &str) -> Vec<PathBuf> {
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap();
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_, dir, kind) = (f.next()?, f.next()?, f.next()?);
            matches!(kind, "cgroup" | "cgroup2").then(|| PathBuf::from(dir))
        })
        .map(|r| r.join("berth").join(id))
        .filter(|p| p.exists())
        .collect()
}

/// Wait for `c` to exit, for up to 10 s; past that it is killed and the
/// test fails.
pub fn wait_exit(c: &mut Container, what: &str) -> ExitStatus {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Some(status) = c.try_wait().unwrap() {
            return status;
        }
        if std::time::Instant::now() > deadline {
            let _ = c.kill(libc::SIGKILL);
            panic!("timed out waiting for {what}");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Our zombie children left by libcontainer's own processes (still named
/// `youki:[1:INTER]` / `youki:[2:INIT]`: they never exec'd a command).
pub fn youki_zombies() -> Vec<i32> {
    let me = std::process::id().to_string();
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
                return false;
            };
            let mut rest = stat[close + 1..].split_whitespace();
            stat[open + 1..close].starts_with("youki:")
                && rest.next() == Some("Z")
                && rest.next() == Some(me.as_str())
        })
        .collect()
}

/// Poll `ok` for up to 10 s.
pub fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

pub fn process_exists(pid: i32) -> bool {
    // A zombie still has a /proc entry; only a live or unreaped one counts.
    Path::new(&format!("/proc/{pid}")).exists()
}
