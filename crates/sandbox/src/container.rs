//! Running one container with libcontainer: create, start, wait, kill,
//! delete.
//!
//! ```text
//! <state>/bundles/<id>/config.json   the OCI runtime spec
//! <state>/bundles/<id>/rootfs/       see `rootfs`
//! <state>/bundles/<id>/init.pid      the init's host pid, written by libcontainer
//! <state>/runtime/<id>/              libcontainer's own state
//! ```
//!
//! libcontainer 0.7 as a library has process-wide side effects that shape
//! this module:
//! - `build()` and `start()` `chdir()` the whole process (to bind the notify
//!   socket) and clone it without exec: they run under one process-wide
//!   mutex, and every fd this crate opens is `O_CLOEXEC`;
//! - `build()` clears `PR_SET_DUMPABLE` on the caller; it is restored;
//! - the container's init is a child of the calling process (an intermediate
//!   process clones it with `CLONE_PARENT`), so this process reaps it: through
//!   a pidfd, which also makes `kill` immune to pid reuse. The caller must not
//!   reap children it does not know (no `waitpid(-1)`, SIGCHLD not ignored);
//! - the init is cloned from this (possibly multi-threaded) process without
//!   exec: any lock another thread held at that moment stays held in the
//!   init forever. libcontainer's default executor takes std's environment
//!   lock; `executor::EnvExecutor` replaces it. Allocation in the init still
//!   goes through malloc, which glibc keeps per thread arena;
//! - a failed `build()` leaves the init and the intermediate process as
//!   zombies of the caller; they are reaped here.

use crate::executor::EnvExecutor;
use crate::rootfs::{self, RootfsKind, RootfsMode};
use crate::spec::{
    self, ContainerSpec, Ipc, MountKind, MountSpec, Namespace, Network, Resolved, Stdio,
};
use crate::{cgroups, reaper, sys, user, LayerCache, SandboxError};
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use std::fs::{self, File};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// Where a shareable IPC namespace's `/dev/shm` tmpfs is mounted on the
/// host, in the container's bundle dir (see `rootfs::teardown`).
pub(crate) const SHM_DIR: &str = "shm";

/// Where a container's `/dev/shm` comes from.
enum ShmPlan {
    /// A tmpfs of its own, mounted by the runtime.
    Own,
    /// A tmpfs berth mounts on the host first, for others to join.
    Shareable,
    /// This host directory (another container's, the host's).
    Bind(PathBuf),
}

/// Serializes libcontainer's build/start/delete within this process.
static RUNTIME_LOCK: Mutex<()> = Mutex::new(());

pub(crate) fn runtime_lock() -> std::sync::MutexGuard<'static, ()> {
    // A panic while holding the lock leaves nothing inconsistent behind it.
    RUNTIME_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Where berth-init appears in `init: true` containers.
const INIT_PATH: &str = "/sbin/berth-init";
/// The static berth-init binary (see build.rs and init/main.rs).
static INIT_BINARY: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/berth-init"));

/// How a container's init ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// `exit(code)`.
    Exited(i32),
    /// Killed by this signal.
    Signaled(i32),
    /// It ended while another process was its parent (an adopted
    /// container): only that parent could learn how.
    Unknown,
}

impl ExitStatus {
    /// The code docker reports: the exit code, or 128 + the signal.
    pub fn code(&self) -> i32 {
        match *self {
            ExitStatus::Exited(c) => c,
            ExitStatus::Signaled(s) => 128 + s,
            ExitStatus::Unknown => 255,
        }
    }

    pub fn success(&self) -> bool {
        *self == ExitStatus::Exited(0)
    }
}

impl From<sys::Reaped> for ExitStatus {
    fn from(r: sys::Reaped) -> ExitStatus {
        match r {
            sys::Reaped::Exited(c) => ExitStatus::Exited(c),
            sys::Reaped::Signaled(s) => ExitStatus::Signaled(s),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Created,
    Running,
    Exited(ExitStatus),
}

/// Where containers live, and how their root filesystems are made.
#[derive(Debug, Clone)]
pub struct Sandbox {
    root: PathBuf,
    layers: LayerCache,
    rootfs_mode: RootfsMode,
}

impl Sandbox {
    /// Open (creating if needed) the sandbox state under `state_dir`:
    /// `layers/`, `bundles/` and `runtime/` in it.
    pub fn open(state_dir: impl AsRef<Path>) -> Result<Sandbox, SandboxError> {
        let state_dir = state_dir.as_ref();
        fs::create_dir_all(state_dir).map_err(io_err(state_dir))?;
        // Absolute and symlink-free: libcontainer chdirs, and overlay
        // options and pid files must not depend on the cwd.
        let root = fs::canonicalize(state_dir).map_err(io_err(state_dir))?;
        for d in ["bundles", "runtime"] {
            let p = root.join(d);
            fs::create_dir_all(&p).map_err(io_err(&p))?;
            // Containers' root filesystems (set-ID binaries included) are
            // mounted under these: for root only.
            fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o700))
                .map_err(io_err(&p))?;
        }
        Ok(Sandbox {
            layers: LayerCache::open(root.join("layers"))?,
            root,
            rootfs_mode: RootfsMode::default(),
        })
    }

    /// Choose how root filesystems are made (default: overlay, else copy).
    pub fn with_rootfs_mode(mut self, mode: RootfsMode) -> Sandbox {
        self.rootfs_mode = mode;
        self
    }

    /// The shared cache of unpacked layers.
    /// berth-init on the host, written from the copy built into berth the
    /// first time a container needs it.
    fn init_binary(&self) -> Result<PathBuf, SandboxError> {
        let path = self.root.join("berth-init");
        let same = fs::metadata(&path).is_ok_and(|m| m.len() == INIT_BINARY.len() as u64);
        if !same {
            let tmp = self.root.join(format!("berth-init.{}", std::process::id()));
            fs::write(&tmp, INIT_BINARY).map_err(io_err(&tmp))?;
            fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .map_err(io_err(&tmp))?;
            fs::rename(&tmp, &path).map_err(io_err(&path))?;
        }
        Ok(path)
    }

    /// The sandbox's state directory (absolute).
    pub(crate) fn state_root(&self) -> &Path {
        &self.root
    }

    pub fn layers(&self) -> &LayerCache {
        &self.layers
    }

    fn bundle_dir(&self, id: &str) -> PathBuf {
        self.root.join("bundles").join(id)
    }

    pub(crate) fn runtime_root(&self) -> PathBuf {
        self.root.join("runtime")
    }

    /// Create the container `spec` over `layers` (unpacked, bottom first: see
    /// [`LayerCache::unpack_image`]). On return its init process exists, in
    /// its namespaces and cgroup, and waits for [`Container::start`]. A
    /// command missing from the image fails here, with
    /// [`SandboxError::CommandNotFound`]. On any error nothing is left behind.
    pub fn create(
        &self,
        layers: &[PathBuf],
        spec: ContainerSpec,
    ) -> Result<Container, SandboxError> {
        validate_id(&spec.id)?;
        let dir = self.bundle_dir(&spec.id);
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(SandboxError::Exists(spec.id))
            }
            Err(e) => return Err(io_err(&dir)(e)),
        }
        match self.create_in(&dir, layers, spec) {
            Ok(c) => Ok(c),
            Err(e) => {
                let _ = rootfs::teardown(&dir);
                Err(e)
            }
        }
    }

    fn create_in(
        &self,
        dir: &Path,
        layers: &[PathBuf],
        mut spec: ContainerSpec,
    ) -> Result<Container, SandboxError> {
        // Pure checks first: a bad spec should cost no mount.
        let command = spec::command(&spec)?;
        let args = if spec.init {
            spec.mounts.push(MountSpec {
                target: INIT_PATH.into(),
                kind: MountKind::Bind {
                    source: self.init_binary()?,
                    read_only: true,
                },
            });
            let mut a = vec![INIT_PATH.to_string(), "--".to_string()];
            a.extend(command.iter().cloned());
            a
        } else {
            command.clone()
        };
        let cwd = spec::working_dir(&spec)?;
        let hostname = spec::hostname(&spec)?;
        let cgroups_path = spec::cgroups_path(&spec)?;
        let pid_ns = self.namespace_plan("pid", &spec.pid)?;
        // The init whose PID namespace this one joins, when it is ours.
        let pid_donor = match &spec.pid {
            Namespace::Container(other) => Some(self.init_to_join("pid", other)?),
            _ => None,
        };
        let uts_ns = self.namespace_plan("uts", &spec.uts)?;
        let (ipc_ns, shm) = self.ipc_plan(&spec)?;

        let rootfs = rootfs::rootfs_dir(dir);
        let kind = rootfs::prepare(dir, layers, self.rootfs_mode)?;
        let shm = match shm {
            ShmPlan::Own => None,
            ShmPlan::Bind(path) => Some(path),
            ShmPlan::Shareable => {
                // On the host, so that containers joining this one's IPC
                // namespace can bind the same tmpfs (docker's shareable mode).
                let path = dir.join(SHM_DIR);
                fs::create_dir_all(&path).map_err(io_err(&path))?;
                let size = spec.shm_size.unwrap_or(64 << 20);
                sys::mount_tmpfs(&path, &format!("mode=1777,size={size}"))
                    .map_err(io_err(&path))?;
                Some(path)
            }
        };
        // HOSTNAME is the name the container has, its own or the one of the
        // namespace it shares.
        let env_hostname = match (&hostname, &uts_ns) {
            (Some(h), _) => h.clone(),
            (None, spec::NamespacePlan::Join(path)) => {
                sys::uts_nodename(Some(path)).map_err(io_err(path))?
            }
            (None, _) => sys::uts_nodename(None).map_err(io_err(Path::new("uname")))?,
        };
        // Users and the working dir are looked up in the image's files.
        let mut user = user::resolve(&rootfs, spec.user.as_deref().unwrap_or(""))?;
        for gid in user::group_ids(&rootfs, &spec.group_add)? {
            if !user.additional_gids.contains(&gid) {
                user.additional_gids.push(gid);
            }
        }
        let env = spec::environment(&spec, &env_hostname, &user.home)?;
        make_working_dir(&rootfs, &cwd)?;
        // The runtime would follow an image's dangling absolute links
        // and fail; a bad target is left for the spec to report.
        for m in &mut spec.mounts {
            if let Ok(clean) = spec::clean_target(&m.target) {
                m.target = rootfs::resolve_in_root(&rootfs, &clean)?;
            }
        }
        let oci = spec::runtime_spec(
            &spec,
            &Resolved {
                args: args.clone(),
                env,
                cwd,
                hostname,
                ipc: ipc_ns,
                pid: pid_ns,
                uts: uts_ns,
                shm,
                user: &user,
                rootfs: &rootfs,
                cgroups_path: cgroups_path.clone(),
                readonly_cgroups: spec::host_cgroup_mounts(),
            },
        )?;
        let rt_runtime = spec.cpu_rt_runtime.filter(|r| *r > 0);
        if let Some(runtime) = rt_runtime {
            // Serialized: each reservation counts the budgets of the
            // cgroups already there.
            let _guard = runtime_lock();
            cgroups::reserve_rt(
                &cgroups_path,
                runtime,
                spec.cpu_rt_period.unwrap_or(1_000_000),
            )?;
        }
        let seccomp = crate::seccomp::SeccompFilter::of_spec(&oci)
            .map_err(|e| spec::SpecError::Seccomp(e.into()))?;
        let config = dir.join("config.json");
        oci.save(&config).map_err(|e| SandboxError::Io {
            path: config.clone(),
            source: io::Error::other(e.to_string()),
        })?;

        let stdin = open_stdin(std::mem::take(&mut spec.stdin))?;
        let stdout = open_stdio(std::mem::take(&mut spec.stdout), io::stdout().as_fd())?;
        let stderr = open_stdio(std::mem::take(&mut spec.stderr), io::stderr().as_fd())?;
        let pid_file = dir.join("init.pid");

        let built = {
            let _guard = runtime_lock();
            let dumpable = sys::dumpable().unwrap_or(true);
            // libcontainer writes the container's oom_score_adj into this
            // process (for its clones to inherit) and leaves it there.
            let oom_score_adj = sys::oom_score_adj().ok();
            let result = ContainerBuilder::new(spec.id.clone(), SyscallType::default())
                .with_root_path(self.runtime_root())
                .and_then(|b| b.with_pid_file(Some(&pid_file)))
                .map(|b| {
                    b.with_executor(EnvExecutor {
                        seccomp,
                        ..EnvExecutor::default()
                    })
                    .with_stdin(stdin)
                    .with_stdout(stdout)
                    .with_stderr(stderr)
                    .as_init(dir)
                    .with_systemd(false)
                    .with_detach(true)
                })
                .and_then(|b| b.build());
            // libcontainer clears it for the clone; a non-dumpable process
            // cannot be inspected through /proc by its own user.
            let _ = sys::set_dumpable(dumpable);
            if let Some(adj) = oom_score_adj.filter(|_| spec.oom_score_adj.is_some()) {
                let _ = sys::set_oom_score_adj(adj);
            }
            if result.is_err() {
                reap_failed_create(&pid_file);
            }
            result
        };
        let inner = built.map_err(|e| {
            if rt_runtime.is_some() {
                cgroups::remove_rt_leaf(&cgroups_path);
            }
            create_error(&spec.id, "create", &args[0], &e)
        })?;

        let pid = inner
            .pid()
            .map(|p| p.as_raw())
            .ok_or_else(|| SandboxError::Runtime {
                id: spec.id.clone(),
                op: "create",
                message: "libcontainer reported no init pid".into(),
            })?;
        let mut container = Container {
            id: spec.id.clone(),
            dir: dir.to_path_buf(),
            kind,
            pid,
            pidfd: None,
            inner,
            state: State::Created,
            adopted: false,
        };
        if let Some(donor) = pid_donor {
            reaper::register(donor, pid);
        }
        let setup = (|| {
            container.pidfd = Some(sys::pidfd_open(pid).map_err(io_err(Path::new("pidfd")))?);
            if spec.network == Network::None {
                let ns = PathBuf::from(format!("/proc/{pid}/ns/net"));
                sys::loopback_up(&ns).map_err(io_err(&ns))?;
            }
            cgroups::apply_after_build(&spec, &cgroups_path).map_err(|message| {
                SandboxError::Runtime {
                    id: spec.id.clone(),
                    op: "set up the cgroup of",
                    message,
                }
            })?;
            Ok(())
        })();
        match setup {
            Ok(()) => Ok(container),
            Err(e) => {
                // Tear down through the normal path, but keep the bundle dir
                // for `create` to remove.
                let _ = container.delete_runtime();
                Err(e)
            }
        }
    }

    /// How the runtime gets the container's `kind` namespace.
    fn namespace_plan(
        &self,
        kind: &'static str,
        mode: &Namespace,
    ) -> Result<spec::NamespacePlan, SandboxError> {
        Ok(match mode {
            Namespace::Private => spec::NamespacePlan::New,
            Namespace::Host => spec::NamespacePlan::Host,
            Namespace::Path(path) => spec::NamespacePlan::Join(path.clone()),
            Namespace::Container(other) => {
                let pid = self.init_to_join(kind, other)?;
                spec::NamespacePlan::Join(PathBuf::from(format!("/proc/{pid}/ns/{kind}")))
            }
        })
    }

    /// The IPC namespace and where `/dev/shm` comes from.
    fn ipc_plan(
        &self,
        spec: &ContainerSpec,
    ) -> Result<(spec::NamespacePlan, ShmPlan), SandboxError> {
        if spec.shm_size.is_some() && !matches!(spec.ipc, Ipc::Private | Ipc::Shareable) {
            return Err(spec::SpecError::Conflict(
                "shm_size cannot be set: the container shares another IPC namespace's /dev/shm"
                    .into(),
            )
            .into());
        }
        Ok(match &spec.ipc {
            Ipc::Private => (spec::NamespacePlan::New, ShmPlan::Own),
            Ipc::Shareable => (spec::NamespacePlan::New, ShmPlan::Shareable),
            Ipc::Host => (
                spec::NamespacePlan::Host,
                ShmPlan::Bind(PathBuf::from("/dev/shm")),
            ),
            Ipc::Path(path) => (spec::NamespacePlan::Join(path.clone()), ShmPlan::Own),
            Ipc::Container(other) => {
                let pid = self.init_to_join("ipc", other)?;
                let shm = self.bundle_dir(other).join(SHM_DIR);
                if !sys::is_mountpoint(&shm).unwrap_or(false) {
                    return Err(SandboxError::Join {
                        kind: "ipc",
                        id: other.clone(),
                        message: "its IPC namespace is not shareable".into(),
                    });
                }
                (
                    spec::NamespacePlan::Join(PathBuf::from(format!("/proc/{pid}/ns/ipc"))),
                    ShmPlan::Bind(shm),
                )
            }
        })
    }

    /// The init pid of container `other`, whose `kind` namespace a new
    /// container joins: created, running or paused, not stopped.
    fn init_to_join(&self, kind: &'static str, other: &str) -> Result<i32, SandboxError> {
        validate_id(other)?;
        let join_err = |message: &str| SandboxError::Join {
            kind,
            id: other.to_string(),
            message: message.to_string(),
        };
        let state = self.runtime_root().join(other);
        if !state.is_dir() {
            return Err(join_err("no such container"));
        }
        let container = libcontainer::container::Container::load(state)
            .map_err(|e| runtime_error(other, "load the state of", &e))?;
        use libcontainer::container::ContainerStatus as S;
        match (container.status(), container.pid()) {
            (S::Created | S::Running | S::Paused, Some(pid)) => Ok(pid.as_raw()),
            _ => Err(join_err("it is not running")),
        }
    }

    /// The cgroup of container `id`, from each hierarchy's root (as
    /// `/proc/<pid>/cgroup` shows it): `/berth/<id>` unless it was created
    /// with a [`ContainerSpec::cgroup_parent`].
    pub fn cgroup_path(&self, id: &str) -> Result<String, SandboxError> {
        validate_id(id)?;
        let config = self.bundle_dir(id).join("config.json");
        if !config.exists() {
            return Err(SandboxError::NoSuchContainer(id.to_string()));
        }
        let oci =
            libcontainer::oci_spec::runtime::Spec::load(&config).map_err(|e| SandboxError::Io {
                path: config.clone(),
                source: io::Error::other(e.to_string()),
            })?;
        Ok(oci
            .linux()
            .as_ref()
            .and_then(|l| l.cgroups_path().clone())
            .map_or_else(
                || format!("/berth/{id}"),
                |p| p.to_string_lossy().into_owned(),
            ))
    }

    /// Freeze every process of the running container `id` (the freezer
    /// cgroup, as `docker pause`). It can be paused from any process.
    pub fn pause(&self, id: &str) -> Result<(), SandboxError> {
        self.freeze(id, true)
    }

    /// Thaw the paused container `id`.
    pub fn resume(&self, id: &str) -> Result<(), SandboxError> {
        self.freeze(id, false)
    }

    fn freeze(&self, id: &str, frozen: bool) -> Result<(), SandboxError> {
        validate_id(id)?;
        let state = self.runtime_root().join(id);
        if !state.is_dir() {
            return Err(SandboxError::NoSuchContainer(id.to_string()));
        }
        let (op, wrong_state) = if frozen {
            ("pause", "it is not running")
        } else {
            ("resume", "it is not paused")
        };
        let _guard = runtime_lock();
        let mut c = libcontainer::container::Container::load(state)
            .map_err(|e| runtime_error(id, op, &e))?;
        let result = if frozen { c.pause() } else { c.resume() };
        result.map_err(|e| match e {
            libcontainer::error::LibcontainerError::IncorrectStatus(_) => SandboxError::State {
                id: id.to_string(),
                message: wrong_state,
            },
            e => runtime_error(id, op, &e),
        })
    }

    /// Take over the running container `id` that another process created
    /// (a supervisor that died): a handle that can signal, wait for (its
    /// exit code is lost: [`ExitStatus::Unknown`]) and delete it.
    pub fn adopt(&self, id: &str) -> Result<Container, SandboxError> {
        validate_id(id)?;
        let state = self.runtime_root().join(id);
        if !state.is_dir() {
            return Err(SandboxError::NoSuchContainer(id.to_string()));
        }
        let inner = {
            let _guard = runtime_lock();
            libcontainer::container::Container::load(state)
                .map_err(|e| runtime_error(id, "load the state of", &e))?
        };
        let not_running = || SandboxError::State {
            id: id.to_string(),
            message: "it is not running",
        };
        if !matches!(
            inner.status(),
            libcontainer::container::ContainerStatus::Running
                | libcontainer::container::ContainerStatus::Paused
        ) {
            return Err(not_running());
        }
        let pid = inner.pid().ok_or_else(not_running)?.as_raw();
        let pidfd = sys::pidfd_open(pid).map_err(|_| not_running())?;
        let dir = self.bundle_dir(id);
        let upper = dir.join("upper");
        Ok(Container {
            id: id.to_string(),
            kind: if upper.is_dir() {
                RootfsKind::Overlay { upper }
            } else {
                RootfsKind::Copy
            },
            dir,
            pid,
            pidfd: Some(pidfd),
            inner,
            state: State::Running,
            adopted: true,
        })
    }

    /// Remove whatever is left of container `id` after its handle was lost
    /// (a crash): kills its processes, removes its cgroup, its runtime state
    /// and its rootfs. Not an error if nothing is there.
    pub fn remove(&self, id: &str) -> Result<(), SandboxError> {
        validate_id(id)?;
        let state = self.runtime_root().join(id);
        if state.exists() {
            let _guard = runtime_lock();
            match libcontainer::container::Container::load(state.clone()) {
                Ok(mut c) => {
                    let pid = c.pid().map(|p| p.as_raw());
                    c.delete(true)
                        .map_err(|e| runtime_error(id, "delete", &e))?;
                    // If it was our child, do not leave a zombie. It was
                    // SIGKILLed and its cgroup is gone, so it exits at once.
                    if let Some(pid) = pid {
                        for _ in 0..100 {
                            if !matches!(sys::reap_nohang(pid), Ok(false)) {
                                break;
                            }
                            std::thread::sleep(Duration::from_millis(2));
                        }
                    }
                }
                Err(_) => {
                    let _ = fs::remove_dir_all(&state);
                }
            }
        }
        rootfs::teardown(&self.bundle_dir(id))?;
        Ok(())
    }
}

/// A created container. Dropping the handle leaves the container as it is
/// (running or not); [`Container::delete`] removes it, and
/// [`Sandbox::remove`] cleans up after a lost handle.
#[derive(Debug)]
pub struct Container {
    id: String,
    dir: PathBuf,
    kind: RootfsKind,
    pid: i32,
    pidfd: Option<OwnedFd>,
    inner: libcontainer::container::Container,
    state: State,
    /// Not our child (see [`Sandbox::adopt`]): its end is seen, not reaped.
    adopted: bool,
}

impl Container {
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The init's pid in the host's pid namespace. Stays valid (never
    /// reused) until [`Container::wait`] has reaped it.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// A pidfd of the init: readable (in `poll`/`epoll`) once it has exited,
    /// for a supervisor that waits on many containers at once.
    pub fn pidfd(&self) -> Option<BorrowedFd<'_>> {
        self.pidfd.as_ref().map(|f| f.as_fd())
    }

    /// The container's root filesystem as seen from the host.
    pub fn rootfs(&self) -> PathBuf {
        rootfs::rootfs_dir(&self.dir)
    }

    /// Where the container's writes land, when its rootfs is an overlay.
    pub fn upper_dir(&self) -> Option<&Path> {
        match &self.kind {
            RootfsKind::Overlay { upper } => Some(upper),
            RootfsKind::Copy => None,
        }
    }

    /// Let the init exec the container's command.
    pub fn start(&mut self) -> Result<(), SandboxError> {
        if self.state != State::Created {
            return Err(SandboxError::State {
                id: self.id.clone(),
                message: "it was already started",
            });
        }
        {
            let _guard = runtime_lock();
            self.inner
                .start()
                .map_err(|e| runtime_error(&self.id, "start", &e))?;
        }
        self.state = State::Running;
        Ok(())
    }

    /// Block until the init exits; reaps it. Once reaped, returns the same
    /// status again.
    pub fn wait(&mut self) -> Result<ExitStatus, SandboxError> {
        self.reap(true)?.ok_or_else(|| SandboxError::State {
            id: self.id.clone(),
            message: "it is still running after a blocking wait",
        })
    }

    /// The exit status if the init has exited (reaping it), else `None`.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>, SandboxError> {
        self.reap(false)
    }

    fn reap(&mut self, block: bool) -> Result<Option<ExitStatus>, SandboxError> {
        match self.state {
            State::Exited(s) => return Ok(Some(s)),
            // A created init waits for `start` forever.
            State::Created if block => {
                return Err(SandboxError::State {
                    id: self.id.clone(),
                    message: "it was never started",
                })
            }
            _ => {}
        }
        let Some(pidfd) = &self.pidfd else {
            return Ok(None);
        };
        if self.adopted {
            // A pidfd turns readable when its process ends, child or not.
            if sys::pidfd_exited(pidfd, block).map_err(|e| SandboxError::Runtime {
                id: self.id.clone(),
                op: "wait",
                message: e.to_string(),
            })? {
                self.state = State::Exited(ExitStatus::Unknown);
                return Ok(Some(ExitStatus::Unknown));
            }
            return Ok(None);
        }
        let wait_err = |e: std::io::Error| SandboxError::Runtime {
            id: self.id.clone(),
            op: "wait",
            message: e.to_string(),
        };
        let status = if let Some(status) = reaper::take(self.pid) {
            Some(status)
        } else if block && reaper::has_members(self.pid) {
            // Others in its PID namespace must be reaped for it to finish
            // exiting (see `reaper`): poll, reaping them meanwhile.
            loop {
                if let Some(r) = sys::wait_pidfd(pidfd, false).map_err(wait_err)? {
                    break Some(ExitStatus::from(r));
                }
                reaper::reap_members(self.pid);
                std::thread::sleep(Duration::from_millis(5));
            }
        } else {
            match sys::wait_pidfd(pidfd, block) {
                Ok(r) => r.map(ExitStatus::from),
                // Reaped meanwhile on its behalf (see `reaper`).
                Err(e) if e.raw_os_error() == Some(libc::ECHILD) => {
                    Some(reaper::take(self.pid).ok_or_else(|| wait_err(e))?)
                }
                Err(e) => return Err(wait_err(e)),
            }
        };
        if let Some(status) = status {
            reaper::forget(self.pid);
            self.state = State::Exited(status);
        }
        Ok(status)
    }

    /// Send `signal` to the init (as `docker kill`). A no-op once it exited.
    /// Note that the init is PID 1 of its namespace: signals it has no
    /// handler for are ignored, except SIGKILL.
    pub fn kill(&self, signal: i32) -> Result<(), SandboxError> {
        if matches!(self.state, State::Exited(_)) {
            return Ok(());
        }
        let Some(pidfd) = &self.pidfd else {
            return Ok(());
        };
        match sys::pidfd_send_signal(pidfd, signal) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Ok(()),
            Err(e) => {
                return Err(SandboxError::Runtime {
                    id: self.id.clone(),
                    op: "kill",
                    message: e.to_string(),
                })
            }
        }
        if signal == libc::SIGKILL {
            self.thaw()?;
        }
        Ok(())
    }

    /// Resume the container if it was paused (by [`Sandbox::pause`], maybe
    /// from another process): under the cgroup v1 freezer a frozen process
    /// acts on no signal, not even SIGKILL, and would never be reaped.
    fn thaw(&self) -> Result<(), SandboxError> {
        let _guard = runtime_lock();
        let Ok(mut saved) = libcontainer::container::Container::load(self.inner.root.clone())
        else {
            return Ok(());
        };
        if saved.status() == libcontainer::container::ContainerStatus::Paused {
            saved
                .resume()
                .map_err(|e| runtime_error(&self.id, "resume", &e))?;
        }
        Ok(())
    }

    /// Kill what still runs, reap the init, and remove the container's
    /// cgroup, runtime state, rootfs mount and directory.
    pub fn delete(mut self) -> Result<(), SandboxError> {
        let result = self.delete_runtime();
        let teardown = rootfs::teardown(&self.dir);
        result?;
        teardown?;
        Ok(())
    }

    /// [`Container::delete`], handing the overlay's upper directory to
    /// `keep` once the container is gone and nothing is mounted on it
    /// (`keep` may move it away); the rest is removed as usual.
    pub fn delete_keeping_upper(mut self, keep: &mut dyn FnMut(&Path)) -> Result<(), SandboxError> {
        let result = self.delete_runtime();
        if result.is_ok() && rootfs::unmount_all(&self.dir).is_ok() {
            if let Some(upper) = self.upper_dir() {
                keep(upper);
            }
        }
        let teardown = rootfs::teardown(&self.dir);
        result?;
        teardown?;
        Ok(())
    }

    fn delete_runtime(&mut self) -> Result<(), SandboxError> {
        if !matches!(self.state, State::Exited(_)) {
            if self.pidfd.is_some() {
                self.kill(libc::SIGKILL)?;
                // Killed: the blocking wait cannot hang, even before `start`.
                self.state = State::Running;
                self.wait()?;
            } else {
                // No pidfd (it could not be opened): still our unreaped
                // child, so the pid is still its own.
                let _ = sys::kill(self.pid, libc::SIGKILL);
                sys::reap_blocking(self.pid);
                self.state = State::Exited(ExitStatus::Signaled(libc::SIGKILL));
            }
        }
        let _guard = runtime_lock();
        self.inner
            .delete(true)
            .map_err(|e| runtime_error(&self.id, "delete", &e))
    }
}

pub(crate) fn validate_id(id: &str) -> Result<(), SandboxError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+-.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(SandboxError::InvalidId(id.to_string()))
    }
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SandboxError + '_ {
    move |source| SandboxError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Create the working directory inside the rootfs, as docker does (owned
/// by root, mode 0755), resolving every component inside the rootfs so an
/// image's symlinks cannot point the creation at the host.
fn make_working_dir(rootfs: &Path, cwd: &str) -> Result<(), SandboxError> {
    let err = |source| SandboxError::Io {
        path: PathBuf::from(cwd),
        source,
    };
    let root = File::open(rootfs).map_err(io_err(rootfs))?;
    let mut sofar = PathBuf::from("/");
    for c in Path::new(cwd).components() {
        let std::path::Component::Normal(name) = c else {
            continue;
        };
        let parent =
            sys::open_in_root(&root, &sofar, libc::O_PATH | libc::O_DIRECTORY).map_err(err)?;
        sofar.push(name);
        match sys::open_in_root(&root, &sofar, libc::O_PATH | libc::O_DIRECTORY) {
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(err(e)),
        }
        match sys::mkdir_at(&parent, name, 0o755) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(err(e)),
        }
    }
    // The component may have been a dangling symlink: check it resolves now.
    sys::open_in_root(&root, Path::new(cwd), libc::O_PATH | libc::O_DIRECTORY)
        .map(drop)
        .map_err(err)
}

/// The fd for a process's stdin.
pub(crate) fn open_stdin(stdio: Stdio) -> Result<OwnedFd, SandboxError> {
    let open = |p: &Path| File::open(p).map(OwnedFd::from).map_err(io_err(p));
    match stdio {
        Stdio::Null => open(Path::new("/dev/null")),
        // `try_clone_to_owned` dups with F_DUPFD_CLOEXEC.
        Stdio::Inherit => io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .map_err(io_err(Path::new("stdin"))),
        Stdio::File(path) => open(&path),
        Stdio::Fd(fd) => Ok(fd),
    }
}

/// The fd for a container's stdout or stderr.
///
/// libcontainer 0.7 re-opens `/dev/null` inside the container for any stdio
/// fd that is `/dev/null`, but read-only, so every write to it then fails
/// with EBADF (`cat: write error: Bad file descriptor`). Output meant for
/// `/dev/null` goes to `/dev/zero` instead: it discards writes just the same
/// and is left alone.
pub(crate) fn open_stdio(stdio: Stdio, inherit: BorrowedFd<'_>) -> Result<OwnedFd, SandboxError> {
    let fd = match stdio {
        Stdio::Null => return open_discard(),
        // `try_clone_to_owned` dups with F_DUPFD_CLOEXEC.
        Stdio::Inherit => inherit
            .try_clone_to_owned()
            .map_err(io_err(Path::new("stdio")))?,
        Stdio::File(path) => fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map(OwnedFd::from)
            .map_err(io_err(&path))?,
        Stdio::Fd(fd) => fd,
    };
    if is_dev_null(&fd) {
        return open_discard();
    }
    Ok(fd)
}

fn open_discard() -> Result<OwnedFd, SandboxError> {
    let p = Path::new("/dev/zero");
    fs::OpenOptions::new()
        .write(true)
        .open(p)
        .map(OwnedFd::from)
        .map_err(io_err(p))
}

fn is_dev_null(fd: &OwnedFd) -> bool {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let Some(meta) = fd
        .try_clone()
        .ok()
        .and_then(|f| File::from(f).metadata().ok())
    else {
        return false;
    };
    meta.file_type().is_char_device() && meta.rdev() == libc::makedev(1, 3)
}

/// After a failed `build()`: the init (if libcontainer got as far as writing
/// its pid) and the intermediate process are our unreaped children.
pub(crate) fn reap_failed_create(pid_file: &Path) {
    if let Some(pid) = fs::read_to_string(pid_file)
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .filter(|p| *p > 0)
    {
        // Still our unreaped child, so the pid cannot have been reused.
        let _ = sys::kill(pid, libc::SIGKILL);
        sys::reap_blocking(pid);
    }
    // The intermediate exits right after reporting the init's pid; give it a
    // moment, then reap it. We hold the runtime lock, so no other create's
    // intermediate can be mistaken for it.
    for _ in 0..50 {
        let pending = intermediate_children();
        if pending.is_empty() {
            return;
        }
        for (pid, zombie) in pending {
            if zombie {
                let _ = sys::reap_nohang(pid);
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Our children named as libcontainer names its intermediate process, with
/// whether each is a zombie.
fn intermediate_children() -> Vec<(i32, bool)> {
    let me = std::process::id().to_string();
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // `pid (comm) state ppid ...`; comm may hold spaces and parens.
            let open = stat.find('(')?;
            let close = stat.rfind(')')?;
            let comm = &stat[open + 1..close];
            let mut rest = stat[close + 1..].split_whitespace();
            let state = rest.next()?;
            let ppid = rest.next()?;
            (ppid == me && comm.starts_with("youki:[1:INTER]")).then_some((pid, state == "Z"))
        })
        .collect()
}

/// libcontainer's error as one line: its chain of causes.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = s.source();
    }
    parts.join(": ")
}

pub(crate) fn runtime_error(
    id: &str,
    op: &'static str,
    e: &libcontainer::error::LibcontainerError,
) -> SandboxError {
    SandboxError::Runtime {
        id: id.to_string(),
        op,
        message: chain(e),
    }
}

pub(crate) fn create_error(
    id: &str,
    op: &'static str,
    command: &str,
    e: &libcontainer::error::LibcontainerError,
) -> SandboxError {
    let message = chain(e);
    // libcontainer checks the command inside the container, after its
    // mounts, and reports it as text only.
    if message.contains("not found in $PATH")
        || message.contains("does not have correct permissions")
    {
        return SandboxError::CommandNotFound {
            id: id.to_string(),
            command: command.to_string(),
        };
    }
    SandboxError::Runtime {
        id: id.to_string(),
        op,
        message,
    }
}
