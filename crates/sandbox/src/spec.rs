//! What a container runs ([`ContainerSpec`]) and its translation into an OCI
//! runtime spec with docker's defaults.
//!
//! The defaults follow Docker 20.10 for an unprivileged container: its
//! capability set, `/proc` `/dev` `/dev/pts` `/dev/shm` `/dev/mqueue` `/sys`
//! (read-only) and `/sys/fs/cgroup` (read-only) mounts, masked and read-only
//! `/proc` paths, a device cgroup that only allows the standard nodes, and
//! PID, IPC, UTS, mount and network namespaces (no cgroup namespace, as
//! docker on a cgroup v1 host), and a seccomp profile with docker's policy
//! (see `seccomp`). `privileged` lifts all of that as docker does.
//!
//! Resource limits go into `linux.resources`, which libcgroups writes for
//! cgroup v1 (this machine: a hybrid layout) and v2 alike; rlimits,
//! sysctls, devices and added groups into the spec's own fields.

use crate::seccomp::{self, Profile, SeccompError};
use crate::user::ResolvedUser;
use berth_oci::spec::ContainerConfig;
use berth_oci::store::Image;
use libcontainer::oci_spec::runtime::Spec;
use serde_json::{json, Value};
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

/// One container to run.
#[derive(Debug, Default)]
pub struct ContainerSpec {
    /// `[A-Za-z0-9_.+-]`, at most 128 bytes; names state dirs and the cgroup.
    pub id: String,
    /// The image's runtime defaults: Entrypoint, Cmd, Env, WorkingDir, User.
    pub image: ContainerConfig,
    /// Replaces the image's Entrypoint (and then drops its Cmd, as docker).
    pub entrypoint: Option<Vec<String>>,
    /// Replaces the image's Cmd.
    pub cmd: Option<Vec<String>>,
    /// `KEY=VALUE` entries applied over the image's Env; a bare `KEY` unsets.
    pub env: Vec<String>,
    /// Replaces the image's WorkingDir; created in the rootfs if missing.
    pub working_dir: Option<String>,
    /// `user[:group]`, names or numbers, resolved in the image's files.
    pub user: Option<String>,
    /// Defaults to the container id (cut to 63 bytes).
    pub hostname: Option<String>,
    /// The NIS domain name of its UTS namespace (compose `domainname`).
    pub domainname: Option<String>,
    pub mounts: Vec<MountSpec>,
    pub read_only_rootfs: bool,
    /// Run the command under berth-init (compose's `init: true`): a minimal
    /// PID 1 that forwards signals to it and reaps orphans.
    pub init: bool,
    pub network: Network,
    /// Capabilities added to docker's default set: `NET_ADMIN` or
    /// `CAP_NET_ADMIN`, any case; `ALL` adds every one.
    pub cap_add: Vec<String>,
    /// Capabilities removed from the set; `ALL` leaves only `cap_add`.
    pub cap_drop: Vec<String>,
    /// Every capability, every host device, no seccomp profile (unless
    /// [`SeccompChoice::Profile`]), no masked or read-only paths, and a
    /// writable `/sys`.
    pub privileged: bool,
    /// The process and its children can never gain privileges (setuid
    /// binaries, file capabilities).
    pub no_new_privileges: bool,
    pub seccomp: SeccompChoice,
    /// Memory limit in bytes (`mem_limit`), at least 6 MiB.
    pub memory: Option<u64>,
    /// Memory plus swap in bytes (`memswap_limit`), at least `memory`; -1
    /// is unlimited. Needs `memory`; unset, it is twice `memory` (where
    /// the kernel accounts swap), as docker does.
    pub memory_swap: Option<i64>,
    /// CPUs the container may use in each period (`cpus: 1.5`).
    pub cpus: Option<f64>,
    /// Relative CPU weight (docker's default is 1024).
    pub cpu_shares: Option<u64>,
    /// The most processes and threads at once; 0 or -1 is unlimited.
    pub pids_limit: Option<i64>,
    /// `(name, soft, hard)`: `nofile`, `nproc`, `core`, ... as docker's
    /// `--ulimit`.
    pub ulimits: Vec<(String, u64, u64)>,
    /// Size of the `/dev/shm` tmpfs in bytes (docker's default: 64 MiB).
    pub shm_size: Option<u64>,
    /// Kernel parameters: only namespaced ones, as docker allows: `net.*`
    /// (not with [`Network::Host`]), `kernel.msg*`, `kernel.sem`,
    /// `kernel.shm*`, `fs.mqueue.*`.
    pub sysctls: Vec<(String, String)>,
    /// Host devices given to the container.
    pub devices: Vec<DeviceSpec>,
    /// Supplementary groups, names (from the image's `/etc/group`) or gids.
    pub group_add: Vec<String>,
    /// The IPC namespace (System V IPC, POSIX message queues) and `/dev/shm`.
    pub ipc: Ipc,
    /// The PID namespace. Outside a private one the command is not PID 1.
    pub pid: Namespace,
    /// The UTS namespace. Outside a private one the container has the
    /// hostname of the namespace it is in, and [`ContainerSpec::hostname`]
    /// must be unset.
    pub uts: Namespace,
    /// A cgroup namespace of its own (compose's `cgroup: private`): the
    /// container sees its cgroup as the root. Unset, it shares the host's,
    /// as docker's default on cgroup v1.
    pub cgroup_private: bool,
    /// CPUs the container may run on, as `cpuset.cpus` reads: `0-2,5`.
    pub cpuset_cpus: Option<String>,
    /// Memory (NUMA) nodes the container may use: `0`, `0-1`.
    pub cpuset_mems: Option<String>,
    /// The CFS period in µs (`cpu_period`), 1000 to 1000000. Not with
    /// `cpus`, which sets its own period.
    pub cpu_period: Option<u64>,
    /// The CFS quota in µs per period (`cpu_quota`), at least 1000; -1 is
    /// unlimited. Not with `cpus`.
    pub cpu_quota: Option<i64>,
    /// Real-time runtime in µs per real-time period (`cpu_rt_runtime`).
    /// cgroup v1 only; berth raises the real-time budget of the parent
    /// cgroups as far as needed (docker leaves that to its daemon's
    /// `--cpu-rt-runtime`).
    pub cpu_rt_runtime: Option<i64>,
    /// The real-time period in µs (`cpu_rt_period`). cgroup v1 only.
    pub cpu_rt_period: Option<u64>,
    /// Soft memory limit in bytes (`mem_reservation`): what the kernel
    /// reclaims down to under memory pressure. v1 `memory.soft_limit_in_bytes`,
    /// v2 `memory.low`. At most `memory`.
    pub memory_reservation: Option<u64>,
    /// 0 to 100 (`mem_swappiness`). cgroup v1 only: v2 has no
    /// per-cgroup swappiness.
    pub memory_swappiness: Option<u64>,
    /// Processes over the memory limit wait instead of being killed
    /// (`oom_kill_disable`). cgroup v1 only.
    pub oom_kill_disable: bool,
    /// -1000 (never chosen by the OOM killer) to 1000 (chosen first).
    pub oom_score_adj: Option<i32>,
    /// Block I/O weights and throttles (`blkio_config`).
    pub blkio: Blkio,
    /// The cgroup the container's own is made in, instead of `/berth`
    /// (`cgroup_parent`): a path from each hierarchy's root.
    pub cgroup_parent: Option<String>,
    /// Device cgroup rules in docker's syntax (`device_cgroup_rules`):
    /// `c 1:3 mr`, `b 8:* rw`, `a *:* rwm`. They allow access to nodes
    /// the container makes itself (with `mknod`), not give it any.
    pub device_cgroup_rules: Vec<String>,
    pub stdin: Stdio,
    pub stdout: Stdio,
    pub stderr: Stdio,
}

impl ContainerSpec {
    /// A container of `image` running its default command.
    pub fn new(id: impl Into<String>, image: &Image) -> ContainerSpec {
        ContainerSpec {
            id: id.into(),
            image: image.config.config.clone(),
            ..ContainerSpec::default()
        }
    }
}

/// A filesystem mounted into the container at `target` (absolute).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MountSpec {
    pub target: String,
    pub kind: MountKind,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum MountKind {
    /// A host path (which must exist), recursively bound, private propagation.
    Bind { source: PathBuf, read_only: bool },
    /// A fresh tmpfs: `nosuid,nodev,noexec` like docker's `--tmpfs`, mode
    /// 1777 unless given, size in bytes (the kernel's default: half of RAM).
    Tmpfs {
        size: Option<u64>,
        mode: Option<u32>,
    },
}

/// A host device node made available in the container (`--device`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSpec {
    /// A character or block device on the host (symlinks followed).
    pub host_path: PathBuf,
    /// Where it appears, under `/dev`.
    pub container_path: String,
    /// Some of `rwm` (read, write, mknod); empty means `rwm`.
    pub permissions: String,
}

/// The seccomp profile a container runs under.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum SeccompChoice {
    /// berth's default profile (docker's policy), adjusted to the
    /// container's capabilities.
    #[default]
    Default,
    /// No profile.
    Unconfined,
    /// A docker-format JSON profile.
    Profile(PathBuf),
}

/// A namespace of the container: its own, the host's, or one it joins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Namespace {
    /// A new one.
    #[default]
    Private,
    /// The host's (that is, this process's).
    Host,
    /// Join the namespace at this path (`/proc/PID/ns/pid`, a bind-mounted
    /// namespace file).
    Path(PathBuf),
    /// Join the namespace of this sandbox's container with this id (created,
    /// running or paused).
    Container(String),
}

/// The container's IPC namespace and `/dev/shm`, as docker's `--ipc`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Ipc {
    /// A new namespace and a `/dev/shm` of its own that nobody can join.
    #[default]
    Private,
    /// A new namespace whose `/dev/shm` other containers can join with
    /// [`Ipc::Container`]: the tmpfs is mounted on the host (in the
    /// container's bundle) and bound in, as docker does.
    Shareable,
    /// The host's namespace and the host's `/dev/shm`.
    Host,
    /// Join the namespace at this path; `/dev/shm` stays the container's own
    /// (POSIX shared memory is then not shared, System V IPC is).
    Path(PathBuf),
    /// Join the namespace and the `/dev/shm` of this sandbox's container,
    /// which must be [`Ipc::Shareable`].
    Container(String),
}

/// Block I/O settings (`blkio_config`). Devices are host block devices,
/// given by path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Blkio {
    /// Relative weight, 10 to 1000. Needs a weight in the host's block I/O
    /// cgroup (a device using the BFQ scheduler on a current kernel).
    pub weight: Option<u16>,
    /// Per-device weights, 10 to 1000.
    pub weight_device: Vec<(PathBuf, u16)>,
    /// Bytes per second read from a device, at most.
    pub read_bps: Vec<(PathBuf, u64)>,
    /// Bytes per second written to a device, at most.
    pub write_bps: Vec<(PathBuf, u64)>,
    /// Read operations per second on a device, at most.
    pub read_iops: Vec<(PathBuf, u64)>,
    /// Write operations per second on a device, at most.
    pub write_iops: Vec<(PathBuf, u64)>,
}

impl Blkio {
    pub fn is_empty(&self) -> bool {
        *self == Blkio::default()
    }
}

/// Which network namespace the container gets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Network {
    /// A new namespace with only `lo` (up), like docker's `--network none`.
    #[default]
    None,
    /// The host's namespace.
    Host,
    /// Join the namespace at this path (`/run/netns/NAME`, `/proc/PID/ns/net`).
    Netns(PathBuf),
}

/// Where a process's stdin comes from, or its stdout or stderr goes.
#[derive(Debug, Default)]
pub enum Stdio {
    /// `/dev/null`.
    #[default]
    Null,
    /// The calling process's own stream.
    Inherit,
    /// For stdin, this file read from the start; for output, appended to
    /// this file, created if missing.
    File(PathBuf),
    /// This fd (a pipe, a socket, a file), which the container then holds.
    Fd(OwnedFd),
}

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("no command specified: the image has no Entrypoint or Cmd and none was given")]
    NoCommand,
    #[error("no command given to exec")]
    NoExecCommand,
    #[error("the working directory {0:?} is invalid, it needs to be an absolute path")]
    RelativeWorkingDir(String),
    #[error("invalid mount target {0:?}: it needs to be an absolute path without `..`")]
    BadMountTarget(String),
    #[error("{what} contains a NUL byte: {value:?}")]
    Nul { what: &'static str, value: String },
    #[error("hostname {0:?} is longer than 64 bytes")]
    LongHostname(String),
    #[error("unknown capability {0:?}")]
    UnknownCapability(String),
    #[error("capability {0} is not in berth's own bounding set, so no container can have it")]
    UnavailableCapability(String),
    #[error(transparent)]
    Seccomp(#[from] SeccompError),
    #[error("invalid {what}: {message}")]
    Resource { what: &'static str, message: String },
    #[error("sysctl {name:?} is not allowed in a container: {reason}")]
    Sysctl { name: String, reason: &'static str },
    #[error("device {}: {message}", path.display())]
    Device { path: PathBuf, message: String },
    #[error("{0}")]
    Conflict(String),
    #[error("invalid cgroup_parent {0:?}: it needs to be a path without `..`")]
    BadCgroupParent(String),
    #[error("invalid device cgroup rule {rule:?}: {message}")]
    DeviceRule { rule: String, message: String },
    #[error("{what} is not available on this host: {reason}")]
    Unavailable { what: &'static str, reason: String },
    #[error("building the runtime spec: {0}")]
    Invalid(String),
}

/// The default `PATH`, as docker sets it when the image has none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Docker's default capability set for unprivileged containers.
const CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability, by number.
const ALL_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The capabilities a container can be given: those of this process's
/// bounding set (which also leaves out any the kernel does not know). A
/// privileged container gets these, not more: asking libcontainer for one
/// outside the set fails the whole container.
pub(crate) fn available_capabilities() -> Vec<&'static str> {
    let bounding = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapBnd:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(u64::MAX);
    ALL_CAPABILITIES
        .iter()
        .enumerate()
        .filter(|(bit, _)| bounding & (1 << bit) != 0)
        .map(|(_, c)| *c)
        .collect()
}

/// `net_admin`, `CAP_NET_ADMIN` → `CAP_NET_ADMIN`; `all` → `ALL`.
fn capability_name(name: &str) -> Result<String, SpecError> {
    let upper = name.trim().to_ascii_uppercase();
    if upper == "ALL" {
        return Ok(upper);
    }
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    if ALL_CAPABILITIES.contains(&full.as_str()) {
        Ok(full)
    } else {
        Err(SpecError::UnknownCapability(name.to_string()))
    }
}

/// The container's capability set, as docker computes it: all of them
/// when `cap_add` has `ALL` (less `cap_drop`), only `cap_add` when
/// `cap_drop` has `ALL`, else the default set (every capability when
/// privileged) plus `cap_add` less `cap_drop`.
pub fn capabilities(spec: &ContainerSpec) -> Result<Vec<String>, SpecError> {
    let names = |v: &[String]| {
        v.iter()
            .map(|n| capability_name(n))
            .collect::<Result<Vec<_>, _>>()
    };
    let add = names(&spec.cap_add)?;
    let drop = names(&spec.cap_drop)?;
    let all = available_capabilities();
    if let Some(missing) = add
        .iter()
        .find(|c| *c != "ALL" && !all.contains(&c.as_str()))
    {
        return Err(SpecError::UnavailableCapability(missing.clone()));
    }
    let base: Vec<&str> = if spec.privileged {
        all.to_vec()
    } else {
        CAPABILITIES.to_vec()
    };
    let has = |v: &[String], c: &str| v.iter().any(|x| x == c);
    Ok(all
        .iter()
        .filter(|c| {
            if has(&add, "ALL") {
                !has(&drop, c)
            } else if has(&drop, "ALL") {
                has(&add, c)
            } else {
                (base.contains(c) || has(&add, c)) && !has(&drop, c)
            }
        })
        .map(|c| c.to_string())
        .collect())
}

const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The cgroup hierarchies mounted under `/sys/fs/cgroup` on this host.
///
/// On a cgroup v1 host libcontainer does not mount the container's
/// `/sys/fs/cgroup` itself but a tmpfs with a bind of each hierarchy, and
/// ignores the `ro` asked for: these paths go into `readonlyPaths` so that,
/// as in docker, the container cannot rewrite its own limits.
pub fn host_cgroup_mounts() -> Vec<String> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut out = vec!["/sys/fs/cgroup".to_string()];
    for line in mountinfo.lines() {
        // `id parent dev root mountpoint opts [optional...] - fstype ...`
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let fstype = right.split(' ').next().unwrap_or("");
        let mountpoint = left.split(' ').nth(4).unwrap_or("");
        if (fstype == "cgroup" || fstype == "cgroup2")
            && mountpoint.starts_with("/sys/fs/cgroup/")
            && !mountpoint["/sys/fs/cgroup/".len()..].contains('/')
            && !out.iter().any(|m| m == mountpoint)
        {
            out.push(mountpoint.to_string());
        }
    }
    out
}

/// The command line: docker's Entrypoint/Cmd rules.
pub fn command(spec: &ContainerSpec) -> Result<Vec<String>, SpecError> {
    let (entrypoint, cmd) = match &spec.entrypoint {
        // A new entrypoint discards the image's Cmd.
        Some(ep) => (ep.clone(), spec.cmd.clone().unwrap_or_default()),
        None => (
            spec.image.entrypoint.clone().unwrap_or_default(),
            spec.cmd
                .clone()
                .or_else(|| spec.image.cmd.clone())
                .unwrap_or_default(),
        ),
    };
    let args: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if args.first().is_none_or(|a| a.is_empty()) {
        return Err(SpecError::NoCommand);
    }
    for a in &args {
        no_nul("an argument", a)?;
    }
    Ok(args)
}

/// The environment: PATH and HOSTNAME defaults, then the image's Env, then
/// the overrides (later entries replace earlier ones of the same key), then
/// HOME from the user's passwd entry if still unset.
pub fn environment(
    spec: &ContainerSpec,
    hostname: &str,
    home: &str,
) -> Result<Vec<String>, SpecError> {
    let defaults = [
        format!("PATH={DEFAULT_PATH}"),
        format!("HOSTNAME={hostname}"),
    ];
    let image_env = spec.image.env.iter().flatten();
    let mut env = merge_env(defaults.iter().chain(image_env).chain(&spec.env))?;
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={home}"));
    }
    Ok(env)
}

/// Apply `KEY=VALUE` entries in order: a later entry replaces an earlier one
/// of the same key in place, a bare `KEY` removes it.
pub fn merge_env<'a>(
    entries: impl IntoIterator<Item = &'a String>,
) -> Result<Vec<String>, SpecError> {
    let mut env: Vec<(String, String)> = Vec::new();
    for entry in entries {
        no_nul("an environment variable", entry)?;
        match entry.split_once('=') {
            Some((k, v)) if !k.is_empty() => match env.iter_mut().find(|(ek, _)| ek == k) {
                Some(slot) => slot.1 = v.to_string(),
                None => env.push((k.to_string(), v.to_string())),
            },
            Some(_) => {} // `=value` names nothing
            None => env.retain(|(k, _)| k != entry),
        }
    }
    Ok(env.into_iter().map(|(k, v)| format!("{k}={v}")).collect())
}

/// The working directory: the override, the image's, or `/`.
pub fn working_dir(spec: &ContainerSpec) -> Result<String, SpecError> {
    let cwd = spec
        .working_dir
        .clone()
        .filter(|d| !d.is_empty())
        .or_else(|| spec.image.working_dir.clone().filter(|d| !d.is_empty()))
        .unwrap_or_else(|| "/".to_string());
    no_nul("the working directory", &cwd)?;
    if !cwd.starts_with('/') {
        return Err(SpecError::RelativeWorkingDir(cwd));
    }
    Ok(cwd)
}

/// The hostname: the override or the id, cut to a valid length. `None`
/// when the container is in a UTS namespace that is not its own: it then
/// has that namespace's name, which it cannot change.
pub fn hostname(spec: &ContainerSpec) -> Result<Option<String>, SpecError> {
    if let Some(d) = &spec.domainname {
        no_nul("the domain name", d)?;
        if d.len() > 64 || spec.uts != Namespace::Private {
            return Err(SpecError::Conflict(format!(
                "the domain name {d:?} cannot be set: it is longer than 64 bytes or the container shares another UTS namespace"
            )));
        }
    }
    if spec.uts != Namespace::Private {
        if let Some(h) = &spec.hostname {
            return Err(SpecError::Conflict(format!(
                "the hostname {h:?} cannot be set: the container shares another UTS namespace"
            )));
        }
        return Ok(None);
    }
    private_hostname(spec).map(Some)
}

fn private_hostname(spec: &ContainerSpec) -> Result<String, SpecError> {
    match &spec.hostname {
        Some(h) => {
            no_nul("the hostname", h)?;
            if h.len() > 64 {
                return Err(SpecError::LongHostname(h.clone()));
            }
            Ok(h.clone())
        }
        None => {
            let mut end = spec.id.len().min(63);
            while !spec.id.is_char_boundary(end) {
                end -= 1;
            }
            Ok(spec.id[..end].to_string())
        }
    }
}

pub fn no_nul(what: &'static str, value: &str) -> Result<(), SpecError> {
    if value.contains('\0') {
        return Err(SpecError::Nul {
            what,
            value: value.replace('\0', "\\0"),
        });
    }
    Ok(())
}

/// A mount target as a clean absolute path (so `/a/../b` cannot disguise
/// where it lands, and mounts sort parents first).
pub(crate) fn clean_target(target: &str) -> Result<String, SpecError> {
    let bad = || SpecError::BadMountTarget(target.to_string());
    if !target.starts_with('/') || target.contains('\0') {
        return Err(bad());
    }
    let mut out = PathBuf::from("/");
    for c in Path::new(target).components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => out.push(n),
            Component::ParentDir | Component::Prefix(_) => return Err(bad()),
        }
    }
    if out == Path::new("/") {
        return Err(bad());
    }
    Ok(out.to_string_lossy().into_owned())
}

fn default_mounts(privileged: bool, shm_size: Option<u64>) -> Vec<Value> {
    let shm_size = shm_size.map_or("size=65536k".to_string(), |b| format!("size={b}"));
    // Docker gives a privileged container a writable /sys and cgroupfs.
    let sys = if privileged { "rw" } else { "ro" };
    vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
               "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs",
               "options": ["nosuid", "noexec", "nodev", sys]}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
               "options": [sys, "nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
               "options": ["nosuid", "noexec", "nodev", "mode=1777", shm_size]}),
    ]
}

fn user_mount(m: &MountSpec) -> Result<Value, SpecError> {
    let target = clean_target(&m.target)?;
    Ok(match &m.kind {
        MountKind::Bind { source, read_only } => {
            let mut options = vec!["rbind", "rprivate"];
            if *read_only {
                options.push("ro");
            }
            json!({"destination": target, "type": "bind", "source": source, "options": options})
        }
        MountKind::Tmpfs { size, mode } => {
            let mut options: Vec<String> = ["nosuid", "nodev", "noexec"]
                .iter()
                .map(|s| s.to_string())
                .collect();
            options.push(format!("mode={:o}", mode.unwrap_or(0o1777)));
            if let Some(size) = size {
                options.push(format!("size={size}"));
            }
            json!({"destination": target, "type": "tmpfs", "source": "tmpfs", "options": options})
        }
    })
}

/// Docker's device cgroup: nothing but the standard nodes (and mknod of any,
/// which is harmless without access).
fn device_rules() -> Vec<Value> {
    let allow = |typ: &str, major: Option<i64>, minor: Option<i64>, access: &str| json!({"allow": true, "type": typ, "major": major, "minor": minor, "access": access});
    vec![
        json!({"allow": false, "access": "rwm"}),
        allow("c", None, None, "m"),
        allow("b", None, None, "m"),
        allow("c", Some(1), Some(3), "rwm"),    // null
        allow("c", Some(1), Some(5), "rwm"),    // zero
        allow("c", Some(1), Some(7), "rwm"),    // full
        allow("c", Some(1), Some(8), "rwm"),    // random
        allow("c", Some(1), Some(9), "rwm"),    // urandom
        allow("c", Some(5), Some(0), "rwm"),    // tty
        allow("c", Some(5), Some(1), "rwm"),    // console
        allow("c", Some(5), Some(2), "rwm"),    // ptmx
        allow("c", Some(136), None, "rwm"),     // pts/*
        allow("c", Some(10), Some(200), "rwm"), // net/tun
    ]
}

/// Docker's names for rlimits.
const RLIMITS: &[(&str, &str)] = &[
    ("as", "RLIMIT_AS"),
    ("core", "RLIMIT_CORE"),
    ("cpu", "RLIMIT_CPU"),
    ("data", "RLIMIT_DATA"),
    ("fsize", "RLIMIT_FSIZE"),
    ("locks", "RLIMIT_LOCKS"),
    ("memlock", "RLIMIT_MEMLOCK"),
    ("msgqueue", "RLIMIT_MSGQUEUE"),
    ("nice", "RLIMIT_NICE"),
    ("nofile", "RLIMIT_NOFILE"),
    ("nproc", "RLIMIT_NPROC"),
    ("rss", "RLIMIT_RSS"),
    ("rtprio", "RLIMIT_RTPRIO"),
    ("rttime", "RLIMIT_RTTIME"),
    ("sigpending", "RLIMIT_SIGPENDING"),
    ("stack", "RLIMIT_STACK"),
];

fn rlimits(spec: &ContainerSpec) -> Result<Vec<Value>, SpecError> {
    spec.ulimits
        .iter()
        .map(|(name, soft, hard)| {
            let bad = |message: String| SpecError::Resource {
                what: "ulimit",
                message,
            };
            let typ = RLIMITS
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, t)| *t)
                .ok_or_else(|| bad(format!("unknown ulimit {name:?}")))?;
            if soft > hard {
                return Err(bad(format!(
                    "{name}: the soft limit {soft} is above the hard limit {hard}"
                )));
            }
            Ok(json!({"type": typ, "soft": soft, "hard": hard}))
        })
        .collect()
}

/// Docker's rule: only parameters of namespaces the container owns.
fn check_sysctl(name: &str, network: &Network, ipc: &Ipc) -> Result<(), SpecError> {
    const IPC: &[&str] = &[
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    let reason = if IPC.contains(&name) || name.starts_with("fs.mqueue.") {
        if *ipc == Ipc::Host {
            "the container shares the host's IPC namespace"
        } else {
            return Ok(());
        }
    } else if !name.starts_with("net.") {
        "only net.*, kernel.msg*, kernel.sem, kernel.shm* and fs.mqueue.* are namespaced"
    } else if *network == Network::Host {
        "the container shares the host's network namespace"
    } else {
        return Ok(());
    };
    Err(SpecError::Sysctl {
        name: name.to_string(),
        reason,
    })
}

fn sysctls(spec: &ContainerSpec) -> Result<serde_json::Map<String, Value>, SpecError> {
    let mut out = serde_json::Map::new();
    for (name, value) in &spec.sysctls {
        no_nul("a sysctl", name)?;
        no_nul("a sysctl", value)?;
        // `/` separators are accepted as by sysctl(8).
        let name = name.replace('/', ".");
        check_sysctl(&name, &spec.network, &spec.ipc)?;
        out.insert(name, json!(value));
    }
    Ok(out)
}

/// Is swap accounted, so that a memory+swap limit can be set? cgroup v1
/// has a file for it; on v2 the memory controller always accounts swap.
fn swap_accounting() -> bool {
    Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists()
        || std::fs::read_to_string("/sys/fs/cgroup/cgroup.subtree_control")
            .is_ok_and(|c| c.split_whitespace().any(|c| c == "memory"))
}

/// `linux.resources` less devices: memory, CPU and pids limits. libcgroups
/// writes them for cgroup v1 and v2 alike (translating shares to weights
/// and memory+swap to swap alone on v2).
fn resources(spec: &ContainerSpec) -> Result<Value, SpecError> {
    const MIN_MEMORY: u64 = 6 << 20;
    const PERIOD: i64 = 100_000;
    let bad = |what, message: String| SpecError::Resource { what, message };
    let mut out = json!({});
    match (spec.memory, spec.memory_swap) {
        (None, Some(_)) => {
            return Err(bad(
                "memory_swap",
                "a memory+swap limit needs a memory limit too".into(),
            ))
        }
        (Some(m), _) if m < MIN_MEMORY => {
            return Err(bad(
                "memory",
                format!("{m} bytes is below the minimum of 6 MiB"),
            ))
        }
        (Some(m), swap) => {
            let m = i64::try_from(m).map_err(|_| bad("memory", format!("{m} is too large")))?;
            out["memory"] = json!({ "limit": m });
            let swap = match swap {
                Some(-1) => Some(-1),
                Some(s) if s < m => {
                    return Err(bad(
                        "memory_swap",
                        format!("{s} is below the memory limit {m}: it counts memory plus swap"),
                    ))
                }
                Some(s) => Some(s),
                None if swap_accounting() => Some(m.saturating_mul(2)),
                None => None,
            };
            if let Some(s) = swap {
                out["memory"]["swap"] = json!(s);
            }
        }
        (None, None) => {}
    }
    memory_extras(spec, &mut out)?;
    let mut cpu = serde_json::Map::new();
    if let Some(cpus) = spec.cpus {
        let host = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        if !(0.01..=host).contains(&cpus) {
            return Err(bad(
                "cpus",
                format!("{cpus}: the range is from 0.01 to {host}"),
            ));
        }
        cpu.insert("quota".into(), json!((cpus * PERIOD as f64).round() as i64));
        cpu.insert("period".into(), json!(PERIOD));
    }
    if let Some(shares) = spec.cpu_shares {
        if !(2..=262_144).contains(&shares) {
            return Err(bad(
                "cpu_shares",
                format!("{shares}: the range is from 2 to 262144"),
            ));
        }
        cpu.insert("shares".into(), json!(shares));
    }
    cpu_extras(spec, &mut cpu)?;
    if !cpu.is_empty() {
        out["cpu"] = Value::Object(cpu);
    }
    if let Some(limit) = spec.pids_limit.filter(|l| *l > 0) {
        out["pids"] = json!({ "limit": limit });
    }
    if !spec.blkio.is_empty() {
        out["blockIO"] = block_io(&spec.blkio)?;
    }
    Ok(out)
}

/// Is this host's cgroup layout v2 only (one unified hierarchy with the
/// controllers)? A v1 or hybrid host (this machine: a `unified` mount with
/// no controllers) has per-controller hierarchies, which libcgroups uses.
pub(crate) fn cgroup_v2() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// A setting v2 has no file for: refused there rather than dropped (as
/// docker does with a warning nobody reads).
fn v1_only(what: &'static str, why: &str) -> Result<(), SpecError> {
    if cgroup_v2() {
        return Err(SpecError::Unavailable {
            what,
            reason: format!("this host has cgroup v2, {why}"),
        });
    }
    Ok(())
}

/// `mem_reservation`, `mem_swappiness` and `oom_kill_disable`.
fn memory_extras(spec: &ContainerSpec, out: &mut Value) -> Result<(), SpecError> {
    let bad = |what, message: String| SpecError::Resource { what, message };
    if let Some(r) = spec.memory_reservation {
        let r =
            i64::try_from(r).map_err(|_| bad("mem_reservation", format!("{r} is too large")))?;
        if r < 6 << 20 {
            return Err(bad(
                "mem_reservation",
                format!("{r} bytes is below the minimum of 6 MiB"),
            ));
        }
        if let Some(m) = spec.memory.filter(|m| (*m as i64) < r) {
            return Err(bad(
                "mem_reservation",
                format!(
                    "{r} is above the memory limit {m}: a soft limit must be below the hard one"
                ),
            ));
        }
        memory_object(out)["reservation"] = json!(r);
    }
    if let Some(swappiness) = spec.memory_swappiness {
        if swappiness > 100 {
            return Err(bad(
                "mem_swappiness",
                format!("{swappiness}: the range is from 0 to 100"),
            ));
        }
        v1_only("mem_swappiness", "which has no per-cgroup swappiness")?;
        memory_object(out)["swappiness"] = json!(swappiness);
    }
    if spec.oom_kill_disable {
        v1_only(
            "oom_kill_disable",
            "whose memory controller cannot turn the OOM killer off",
        )?;
        // libcontainer 0.7 ignores this field (it writes 0 to
        // memory.oom_control); berth writes the file itself once the cgroup
        // exists (see `cgroups::apply_after_build`). Kept here so
        // config.json says what the container has.
        out["disableOOMKiller"] = json!(true);
    }
    Ok(())
}

fn memory_object(out: &mut Value) -> &mut Value {
    if out.get("memory").is_none() {
        out["memory"] = json!({});
    }
    &mut out["memory"]
}

/// `cpuset`, `cpu_period`/`cpu_quota` and `cpu_rt_*`.
fn cpu_extras(
    spec: &ContainerSpec,
    cpu: &mut serde_json::Map<String, Value>,
) -> Result<(), SpecError> {
    let bad = |what, message: String| SpecError::Resource { what, message };
    if spec.cpus.is_some() && (spec.cpu_period.is_some() || spec.cpu_quota.is_some()) {
        return Err(SpecError::Conflict(
            "cpus and cpu_period/cpu_quota cannot both be set: cpus sets the CFS period and quota"
                .into(),
        ));
    }
    if let Some(period) = spec.cpu_period {
        if !(1000..=1_000_000).contains(&period) {
            return Err(bad(
                "cpu_period",
                format!("{period}: the range is from 1000 to 1000000 µs"),
            ));
        }
        cpu.insert("period".into(), json!(period));
    }
    if let Some(quota) = spec.cpu_quota {
        if quota != -1 && quota < 1000 {
            return Err(bad(
                "cpu_quota",
                format!("{quota}: the minimum is 1000 µs (or -1 for no limit)"),
            ));
        }
        cpu.insert("quota".into(), json!(quota));
    }
    if let Some(cpus) = &spec.cpuset_cpus {
        check_cpu_list("cpuset", cpus, "/sys/devices/system/cpu/online")?;
        cpu.insert("cpus".into(), json!(cpus.trim()));
    }
    if let Some(mems) = &spec.cpuset_mems {
        check_cpu_list("cpuset_mems", mems, "/sys/devices/system/node/online")?;
        cpu.insert("mems".into(), json!(mems.trim()));
    }
    if spec.cpu_rt_runtime.is_some() || spec.cpu_rt_period.is_some() {
        v1_only(
            "cpu_rt_runtime",
            "whose cpu controller has no real-time budget",
        )?;
        let period = spec.cpu_rt_period.unwrap_or(1_000_000);
        if !(1000..=1_000_000).contains(&period) {
            return Err(bad(
                "cpu_rt_period",
                format!("{period}: the range is from 1000 to 1000000 µs"),
            ));
        }
        if let Some(runtime) = spec.cpu_rt_runtime {
            if runtime < -1 || runtime > period as i64 {
                return Err(bad(
                    "cpu_rt_runtime",
                    format!("{runtime}: the range is from 0 to the real-time period, {period} µs"),
                ));
            }
            cpu.insert("realtimeRuntime".into(), json!(runtime));
        }
        cpu.insert("realtimePeriod".into(), json!(period));
    }
    Ok(())
}

/// `list` in cgroup cpuset syntax (`0-2,5`), every entry in `available`
/// (a file in the same syntax; missing means only 0, as without NUMA).
fn check_cpu_list(what: &'static str, list: &str, available: &str) -> Result<(), SpecError> {
    let bad = |message: String| SpecError::Resource { what, message };
    let have_text = std::fs::read_to_string(available).unwrap_or_else(|_| "0".into());
    let have = parse_cpu_list(have_text.trim()).unwrap_or_else(|| vec![0]);
    let want = parse_cpu_list(list.trim())
        .filter(|w| !w.is_empty())
        .ok_or_else(|| bad(format!("{list:?}: expected a list such as 0-2,5")))?;
    if let Some(missing) = want.iter().find(|n| !have.contains(n)) {
        return Err(bad(format!(
            "{list}: {missing} is not available, this host has {}",
            have_text.trim()
        )));
    }
    Ok(())
}

/// `0-2,5` → `[0, 1, 2, 5]`; `None` if malformed or absurdly large.
fn parse_cpu_list(list: &str) -> Option<Vec<u32>> {
    let mut out = Vec::new();
    for part in list.split(',').filter(|p| !p.is_empty()) {
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a.trim().parse::<u32>().ok()?, b.trim().parse::<u32>().ok()?),
            None => {
                let n = part.trim().parse::<u32>().ok()?;
                (n, n)
            }
        };
        if lo > hi || hi > 65_535 {
            return None;
        }
        out.extend(lo..=hi);
    }
    Some(out)
}

/// `(major, minor)` of a host block device.
fn block_device(what: &'static str, path: &Path) -> Result<(u32, u32), SpecError> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let err = |message: String| SpecError::Resource {
        what,
        message: format!("{}: {message}", path.display()),
    };
    let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
    if !meta.file_type().is_block_device() {
        return Err(err("not a block device".into()));
    }
    Ok((libc::major(meta.rdev()), libc::minor(meta.rdev())))
}

/// Does the host's block I/O cgroup have weights? Only with a
/// proportional scheduler: CFQ (gone since Linux 5.0) or BFQ, whose files
/// appear once some device uses it.
fn blkio_weight_available(per_device: bool) -> bool {
    if cgroup_v2() {
        // The weight files exist in child cgroups only; libcgroups reports
        // a missing one when it writes.
        return true;
    }
    let suffix = if per_device {
        "weight_device"
    } else {
        "weight"
    };
    ["", "bfq."].iter().any(|scheduler| {
        Path::new(&format!("/sys/fs/cgroup/blkio/blkio.{scheduler}{suffix}")).exists()
    })
}

fn block_io(b: &Blkio) -> Result<Value, SpecError> {
    let bad = |what, message: String| SpecError::Resource { what, message };
    let weight_range = |what, w: u16| {
        if (10..=1000).contains(&w) {
            Ok(w)
        } else {
            Err(bad(what, format!("{w}: the range is from 10 to 1000")))
        }
    };
    let unavailable = |what| SpecError::Unavailable {
        what,
        reason: "the block I/O cgroup has no weights: no device uses a proportional \
                 I/O scheduler (BFQ)"
            .into(),
    };
    let mut out = json!({});
    if let Some(w) = b.weight {
        weight_range("blkio_config.weight", w)?;
        if !blkio_weight_available(false) {
            return Err(unavailable("blkio_config.weight"));
        }
        out["weight"] = json!(w);
    }
    if !b.weight_device.is_empty() {
        let mut list = Vec::new();
        for (path, w) in &b.weight_device {
            weight_range("blkio_config.weight_device", *w)?;
            let (major, minor) = block_device("blkio_config.weight_device", path)?;
            list.push(json!({"major": major, "minor": minor, "weight": w}));
        }
        if !blkio_weight_available(true) {
            return Err(unavailable("blkio_config.weight_device"));
        }
        out["weightDevice"] = json!(list);
    }
    for (what, field, entries) in [
        (
            "blkio_config.device_read_bps",
            "throttleReadBpsDevice",
            &b.read_bps,
        ),
        (
            "blkio_config.device_write_bps",
            "throttleWriteBpsDevice",
            &b.write_bps,
        ),
        (
            "blkio_config.device_read_iops",
            "throttleReadIOPSDevice",
            &b.read_iops,
        ),
        (
            "blkio_config.device_write_iops",
            "throttleWriteIOPSDevice",
            &b.write_iops,
        ),
    ] {
        if entries.is_empty() {
            continue;
        }
        let mut list = Vec::new();
        for (path, rate) in entries {
            if *rate == 0 {
                return Err(bad(what, format!("{}: a rate of 0", path.display())));
            }
            let (major, minor) = block_device(what, path)?;
            list.push(json!({"major": major, "minor": minor, "rate": rate}));
        }
        out[field] = json!(list);
    }
    Ok(out)
}

/// Docker's `--device-cgroup-rule` syntax: `TYPE MAJOR:MINOR ACCESS`, with
/// `a` (all types) and `*` (any number).
pub(crate) fn device_cgroup_rule(rule: &str) -> Result<Value, SpecError> {
    let bad = |message: &str| SpecError::DeviceRule {
        rule: rule.to_string(),
        message: message.to_string(),
    };
    let parts: Vec<&str> = rule.split_whitespace().collect();
    let [typ, numbers, access] = parts.as_slice() else {
        return Err(bad("expected TYPE MAJOR:MINOR ACCESS, as `c 1:3 rwm`"));
    };
    if !["a", "b", "c"].contains(typ) {
        return Err(bad("the type is one of a, b, c"));
    }
    let (major, minor) = numbers
        .split_once(':')
        .ok_or_else(|| bad("expected MAJOR:MINOR, numbers or *"))?;
    let number = |n: &str| -> Result<Option<i64>, SpecError> {
        if n == "*" {
            Ok(None)
        } else {
            n.parse::<u32>()
                .map(|n| Some(i64::from(n)))
                .map_err(|_| bad("expected MAJOR:MINOR, numbers or *"))
        }
    };
    let (major, minor) = (number(major)?, number(minor)?);
    if access.is_empty() || !access.chars().all(|c| "rwm".contains(c)) {
        return Err(bad("the access is some of r, w, m"));
    }
    Ok(json!({"allow": true, "type": typ, "major": major, "minor": minor, "access": access}))
}

/// The container's cgroup path from each hierarchy's root: `/berth/<id>`,
/// or `<cgroup_parent>/<id>`.
pub fn cgroups_path(spec: &ContainerSpec) -> Result<String, SpecError> {
    let Some(parent) = spec.cgroup_parent.as_deref().filter(|p| !p.is_empty()) else {
        return Ok(format!("/berth/{}", spec.id));
    };
    let bad = || SpecError::BadCgroupParent(parent.to_string());
    if parent.contains('\0') {
        return Err(bad());
    }
    let mut out = String::new();
    for c in Path::new(parent).components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => {
                out.push('/');
                out.push_str(n.to_str().ok_or_else(bad)?);
            }
            Component::ParentDir | Component::Prefix(_) => return Err(bad()),
        }
    }
    Ok(format!("{out}/{}", spec.id))
}

/// The nodes and device-cgroup rules for [`ContainerSpec::devices`].
fn user_devices(spec: &ContainerSpec) -> Result<(Vec<Value>, Vec<Value>), SpecError> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let mut nodes = Vec::new();
    let mut rules = Vec::new();
    for d in &spec.devices {
        let err = |message: String| SpecError::Device {
            path: d.host_path.clone(),
            message,
        };
        let meta = std::fs::metadata(&d.host_path).map_err(|e| err(e.to_string()))?;
        let typ = if meta.file_type().is_char_device() {
            "c"
        } else if meta.file_type().is_block_device() {
            "b"
        } else {
            return Err(err("not a character or block device".into()));
        };
        let target = clean_target(&d.container_path)
            .map_err(|_| err(format!("bad container path {:?}", d.container_path)))?;
        if !target.starts_with("/dev/") {
            return Err(err(format!(
                "{target}: the container path must be under /dev"
            )));
        }
        let access = if d.permissions.is_empty() {
            "rwm"
        } else {
            d.permissions.as_str()
        };
        if !access.chars().all(|c| "rwm".contains(c)) {
            return Err(err(format!("permissions {access:?}: use some of rwm")));
        }
        let (major, minor) = (libc::major(meta.rdev()), libc::minor(meta.rdev()));
        nodes.push(json!({
            "path": target, "type": typ, "major": major, "minor": minor,
            "fileMode": meta.mode() & 0o7777, "uid": meta.uid(), "gid": meta.gid(),
        }));
        rules.push(
            json!({"allow": true, "type": typ, "major": major, "minor": minor, "access": access}),
        );
    }
    Ok((nodes, rules))
}

/// Every device node of the host's `/dev` (as docker gives a privileged
/// container), less the pseudo-terminals and mounts the container has its
/// own of.
fn host_devices() -> Vec<Value> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let mut out = Vec::new();
    let mut dirs = vec![PathBuf::from("/dev")];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            let ft = meta.file_type();
            if ft.is_dir() {
                if !["/dev/pts", "/dev/shm", "/dev/mqueue"]
                    .iter()
                    .any(|skip| path == Path::new(skip))
                {
                    dirs.push(path);
                }
                continue;
            }
            let typ = if ft.is_char_device() {
                "c"
            } else if ft.is_block_device() {
                "b"
            } else {
                continue;
            };
            if path == Path::new("/dev/ptmx") || path == Path::new("/dev/console") {
                continue;
            }
            let rdev = meta.rdev();
            out.push(json!({
                "path": path,
                "type": typ,
                "major": libc::major(rdev),
                "minor": libc::minor(rdev),
                "fileMode": meta.mode() & 0o7777,
                "uid": meta.uid(),
                "gid": meta.gid(),
            }));
        }
    }
    out
}

/// How the runtime gets one namespace, once [`Namespace::Container`] and
/// [`Ipc::Container`] are resolved to paths.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum NamespacePlan {
    #[default]
    New,
    Host,
    Join(PathBuf),
}

impl NamespacePlan {
    fn entry(&self, typ: &str) -> Option<Value> {
        match self {
            NamespacePlan::New => Some(json!({ "type": typ })),
            NamespacePlan::Host => None,
            NamespacePlan::Join(path) => Some(json!({ "type": typ, "path": path })),
        }
    }
}

/// Everything the runtime spec needs that is not in [`ContainerSpec`].
pub struct Resolved<'a> {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    /// `None` outside a private UTS namespace.
    pub hostname: Option<String>,
    pub ipc: NamespacePlan,
    pub pid: NamespacePlan,
    pub uts: NamespacePlan,
    /// A host directory bound on `/dev/shm` instead of a tmpfs of its own
    /// (a shareable IPC namespace's, the host's).
    pub shm: Option<PathBuf>,
    pub user: &'a ResolvedUser,
    pub rootfs: &'a Path,
    pub cgroups_path: String,
    /// Extra read-only paths: [`host_cgroup_mounts`].
    pub readonly_cgroups: Vec<String>,
}

/// The checks [`Sandbox::create`](crate::Sandbox::create) makes of `spec`
/// that need no image and no other container: limits and their ranges,
/// what this host's cgroups can do, rlimits, sysctls, devices, device rules,
/// the cgroup parent, the hostname and capabilities. For a caller that
/// refuses a bad setting before it makes anything.
pub fn validate(spec: &ContainerSpec) -> Result<(), SpecError> {
    command(spec).or_else(|e| match e {
        // The image may supply the command.
        SpecError::NoCommand => Ok(Vec::new()),
        other => Err(other),
    })?;
    hostname(spec)?;
    cgroups_path(spec)?;
    capabilities(spec)?;
    resources(spec)?;
    rlimits(spec)?;
    sysctls(spec)?;
    user_devices(spec)?;
    for rule in &spec.device_cgroup_rules {
        device_cgroup_rule(rule)?;
    }
    if let Some(adj) = spec.oom_score_adj {
        oom_score_adj(adj)?;
    }
    Ok(())
}

fn oom_score_adj(adj: i32) -> Result<i32, SpecError> {
    if !(-1000..=1000).contains(&adj) {
        return Err(SpecError::Resource {
            what: "oom_score_adj",
            message: format!("{adj}: the range is from -1000 to 1000"),
        });
    }
    Ok(adj)
}

/// The OCI runtime spec for `spec`.
pub fn runtime_spec(spec: &ContainerSpec, r: &Resolved<'_>) -> Result<Spec, SpecError> {
    let mut user_mounts = spec
        .mounts
        .iter()
        .map(user_mount)
        .collect::<Result<Vec<_>, _>>()?;
    // Parents before children, as docker sorts them; the sort is stable so
    // equal depths keep the caller's order.
    user_mounts.sort_by_key(|m| {
        m["destination"]
            .as_str()
            .map_or(0, |d| d.matches('/').count())
    });
    // A user mount on a default destination (say a bigger /dev/shm) replaces it.
    let mut defaults = default_mounts(spec.privileged, spec.shm_size);
    if let Some(shm) = &r.shm {
        defaults.retain(|d| d["destination"] != "/dev/shm");
        defaults.push(
            json!({"destination": "/dev/shm", "type": "bind", "source": shm,
                              "options": ["rbind", "rprivate", "nosuid", "noexec", "nodev"]}),
        );
    }
    let mut mounts: Vec<Value> = defaults
        .into_iter()
        .filter(|d| {
            !user_mounts
                .iter()
                .any(|u| u["destination"] == d["destination"])
        })
        .collect();
    mounts.extend(user_mounts);

    let mut namespaces: Vec<Value> = [r.pid.entry("pid"), r.ipc.entry("ipc"), r.uts.entry("uts")]
        .into_iter()
        .flatten()
        .collect();
    namespaces.push(json!({"type": "mount"}));
    if spec.cgroup_private {
        namespaces.push(json!({"type": "cgroup"}));
    }
    match &spec.network {
        Network::None => namespaces.push(json!({"type": "network"})),
        Network::Host => {}
        Network::Netns(path) => namespaces.push(json!({"type": "network", "path": path})),
    }

    let caps = capabilities(spec)?;
    let seccomp = match (&spec.seccomp, spec.privileged) {
        (SeccompChoice::Default, false) => Some(Profile::default_profile().to_oci(&caps)),
        (SeccompChoice::Default, true) | (SeccompChoice::Unconfined, _) => None,
        (SeccompChoice::Profile(path), _) => Some(Profile::load(path)?.to_oci(&caps)),
    };
    // Loading the filter without noNewPrivileges needs capabilities the
    // container may not have: held until the filter is in (see
    // `seccomp::SeccompFilter`).
    let transient = match &seccomp {
        Some(_) if !spec.no_new_privileges => seccomp::transient_caps(&caps),
        _ => Vec::new(),
    };
    let mut runtime_caps = caps.clone();
    runtime_caps.extend(transient.iter().cloned());
    let (readonly, masked, mut devices, mut device_cgroup): (Vec<&str>, &[&str], _, _) =
        if spec.privileged {
            (
                Vec::new(),
                &[],
                host_devices(),
                vec![json!({"allow": true, "access": "rwm"})],
            )
        } else {
            let readonly = READONLY_PATHS
                .iter()
                .copied()
                .chain(r.readonly_cgroups.iter().map(String::as_str))
                .collect();
            (readonly, MASKED_PATHS, Vec::new(), device_rules())
        };
    let (nodes, rules) = user_devices(spec)?;
    // A given device replaces a host one of the same path.
    devices.retain(|d| !nodes.iter().any(|n| n["path"] == d["path"]));
    devices.extend(nodes);
    device_cgroup.extend(rules);
    for rule in &spec.device_cgroup_rules {
        device_cgroup.push(device_cgroup_rule(rule)?);
    }
    let mut resources = resources(spec)?;
    resources["devices"] = json!(device_cgroup);
    let mut doc = json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {
                "uid": r.user.uid,
                "gid": r.user.gid,
                "additionalGids": r.user.additional_gids,
            },
            "args": r.args,
            "env": r.env,
            "cwd": r.cwd,
            "rlimits": rlimits(spec)?,
            "capabilities": {
                "bounding": runtime_caps,
                "effective": runtime_caps,
                "permitted": runtime_caps,
            },
        },
        "root": {"path": r.rootfs, "readonly": spec.read_only_rootfs},
        "mounts": mounts,
        "linux": {
            "namespaces": namespaces,
            "cgroupsPath": r.cgroups_path,
            "resources": resources,
            "sysctl": sysctls(spec)?,
            "devices": devices,
            "maskedPaths": masked,
            "readonlyPaths": readonly,
        },
    });
    if spec.no_new_privileges {
        doc["process"]["noNewPrivileges"] = json!(true);
    }
    // libcontainer refuses a hostname without a UTS namespace of its own.
    if let Some(h) = &r.hostname {
        doc["hostname"] = json!(h);
        // Like the hostname, only in a UTS namespace of its own (checked
        // by `hostname`).
        if let Some(d) = &spec.domainname {
            doc["domainname"] = json!(d);
        }
    }
    if let Some(adj) = spec.oom_score_adj {
        doc["process"]["oomScoreAdj"] = json!(oom_score_adj(adj)?);
    }
    if let Some(seccomp) = seccomp {
        doc["linux"]["seccomp"] = seccomp;
    }
    if !transient.is_empty() {
        doc["annotations"] = json!({ seccomp::TRANSIENT_CAPS: transient.join(",") });
    }
    serde_json::from_value(doc).map_err(|e| SpecError::Invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ContainerSpec {
        ContainerSpec {
            id: "c1".into(),
            image: ContainerConfig {
                entrypoint: Some(vec!["/entry".into()]),
                cmd: Some(vec!["default".into()]),
                env: Some(vec![
                    "PATH=/image/bin".into(),
                    "A=image".into(),
                    "B=b".into(),
                ]),
                working_dir: Some("/srv".into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn entrypoint_and_cmd_follow_docker() {
        let mut s = spec();
        assert_eq!(command(&s).unwrap(), ["/entry", "default"]);
        s.cmd = Some(vec!["other".into()]);
        assert_eq!(command(&s).unwrap(), ["/entry", "other"]);
        s.entrypoint = Some(vec!["/new".into()]);
        s.cmd = None;
        assert_eq!(command(&s).unwrap(), ["/new"]);
        s.entrypoint = Some(vec![]);
        assert!(matches!(command(&s), Err(SpecError::NoCommand)));
        s.cmd = Some(vec!["a\0b".into()]);
        assert!(matches!(command(&s), Err(SpecError::Nul { .. })));
    }

    #[test]
    fn environment_layers_defaults_image_and_overrides() {
        let mut s = spec();
        s.env = vec!["A=override".into(), "C=c".into(), "B".into()];
        let env = environment(&s, "host", "/root").unwrap();
        assert_eq!(
            env,
            [
                "PATH=/image/bin",
                "HOSTNAME=host",
                "A=override",
                "C=c",
                "HOME=/root"
            ]
        );
        s.image.env = None;
        s.env = vec!["HOME=/custom".into()];
        let env = environment(&s, "h", "/root").unwrap();
        assert_eq!(env[0], format!("PATH={DEFAULT_PATH}"));
        assert!(env.contains(&"HOME=/custom".to_string()));
        assert!(!env.contains(&"HOME=/root".to_string()));
    }

    #[test]
    fn working_dir_and_hostname() {
        let mut s = spec();
        assert_eq!(working_dir(&s).unwrap(), "/srv");
        s.working_dir = Some("rel".into());
        assert!(matches!(
            working_dir(&s),
            Err(SpecError::RelativeWorkingDir(_))
        ));
        s.image.working_dir = None;
        s.working_dir = None;
        assert_eq!(working_dir(&s).unwrap(), "/");
        s.id = "x".repeat(100);
        assert_eq!(hostname(&s).unwrap().unwrap().len(), 63);
        s.hostname = Some("y".repeat(65));
        assert!(hostname(&s).is_err());
    }

    #[test]
    fn runtime_spec_has_docker_defaults_and_user_mounts() {
        let mut s = spec();
        s.read_only_rootfs = true;
        s.network = Network::Netns("/run/netns/x".into());
        s.mounts = vec![
            MountSpec {
                target: "/data/sub".into(),
                kind: MountKind::Tmpfs {
                    size: Some(1 << 20),
                    mode: None,
                },
            },
            MountSpec {
                target: "/data/".into(),
                kind: MountKind::Bind {
                    source: "/host".into(),
                    read_only: true,
                },
            },
            MountSpec {
                target: "/dev/shm".into(),
                kind: MountKind::Tmpfs {
                    size: None,
                    mode: None,
                },
            },
        ];
        let user = ResolvedUser {
            uid: 1000,
            gid: 1000,
            additional_gids: vec![50],
            home: "/home/app".into(),
        };
        let rootfs = PathBuf::from("/state/bundles/c1/rootfs");
        let r = Resolved {
            args: command(&s).unwrap(),
            env: vec!["PATH=/bin".into()],
            cwd: "/srv".into(),
            hostname: Some("c1".into()),
            ipc: NamespacePlan::New,
            pid: NamespacePlan::New,
            uts: NamespacePlan::New,
            shm: None,
            user: &user,
            rootfs: &rootfs,
            cgroups_path: "/berth/c1".into(),
            readonly_cgroups: vec!["/sys/fs/cgroup".into()],
        };
        let oci = runtime_spec(&s, &r).unwrap();
        let json = serde_json::to_value(&oci).unwrap();
        assert_eq!(json["root"]["readonly"], true);
        assert_eq!(json["process"]["user"]["additionalGids"][0], 50);
        let dests: Vec<&str> = json["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["destination"].as_str().unwrap())
            .collect();
        assert_eq!(
            dests,
            [
                "/proc",
                "/dev",
                "/dev/pts",
                "/sys",
                "/sys/fs/cgroup",
                "/dev/mqueue",
                "/data",
                "/data/sub",
                "/dev/shm"
            ]
        );
        let bind = &json["mounts"][6];
        assert_eq!(bind["options"], json!(["rbind", "rprivate", "ro"]));
        let ns = json["linux"]["namespaces"].as_array().unwrap();
        assert!(ns
            .iter()
            .any(|n| n["type"] == "network" && n["path"] == "/run/netns/x"));
        assert!(!ns.iter().any(|n| n["type"] == "cgroup"));
        // libcontainer holds CAP_SYS_ADMIN too, for the filter to load
        // without noNewPrivileges; the annotation says to drop it after.
        let bounding = json["process"]["capabilities"]["bounding"]
            .as_array()
            .unwrap();
        assert_eq!(bounding.len(), CAPABILITIES.len() + 1);
        assert!(bounding.contains(&json!("CAP_SYS_ADMIN")));
        assert_eq!(
            json["annotations"][seccomp::TRANSIENT_CAPS],
            "CAP_SYS_ADMIN"
        );
        s.no_new_privileges = true;
        let json = serde_json::to_value(runtime_spec(&s, &r).unwrap()).unwrap();
        let bounding = json["process"]["capabilities"]["bounding"]
            .as_array()
            .unwrap();
        assert_eq!(bounding.len(), CAPABILITIES.len());
        assert!(json.get("annotations").is_none(), "{json}");
        s.mounts[0].target = "/a/../etc".into();
        assert!(matches!(
            runtime_spec(&s, &r),
            Err(SpecError::BadMountTarget(_))
        ));
    }
    #[test]
    fn device_cgroup_rules_follow_dockers_syntax() {
        assert_eq!(
            device_cgroup_rule("c 1:3 mr").unwrap(),
            json!({"allow": true, "type": "c", "major": 1, "minor": 3, "access": "mr"})
        );
        assert_eq!(
            device_cgroup_rule("a *:* rwm").unwrap(),
            json!({"allow": true, "type": "a", "major": null, "minor": null, "access": "rwm"})
        );
        for bad in [
            "",
            "c 1:3",
            "c 1:3 rw extra",
            "d 1:3 r",
            "c 1 r",
            "c -1:3 r",
            "c 1:3 x",
        ] {
            assert!(device_cgroup_rule(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn cpu_lists_and_cgroup_parents_parse() {
        assert_eq!(parse_cpu_list("0-2,5"), Some(vec![0, 1, 2, 5]));
        assert_eq!(parse_cpu_list("3"), Some(vec![3]));
        for bad in ["2-1", "a", "0-", "1-99999999"] {
            assert_eq!(parse_cpu_list(bad), None, "{bad:?}");
        }
        let mut s = spec();
        assert_eq!(cgroups_path(&s).unwrap(), "/berth/c1");
        s.cgroup_parent = Some("apps/./web/".into());
        assert_eq!(cgroups_path(&s).unwrap(), "/apps/web/c1");
        s.cgroup_parent = Some("/".into());
        assert_eq!(cgroups_path(&s).unwrap(), "/c1");
        s.cgroup_parent = Some("a/../../b".into());
        assert!(matches!(
            cgroups_path(&s),
            Err(SpecError::BadCgroupParent(_))
        ));
    }

    #[test]
    fn shared_namespaces_are_joined_or_left_out_and_take_no_hostname() {
        let mut s = spec();
        s.uts = Namespace::Host;
        assert_eq!(hostname(&s).unwrap(), None);
        s.hostname = Some("h".into());
        assert!(matches!(hostname(&s), Err(SpecError::Conflict(_))));
        assert_eq!(NamespacePlan::Host.entry("pid"), None);
        assert_eq!(
            NamespacePlan::Join("/proc/7/ns/ipc".into()).entry("ipc"),
            Some(json!({"type": "ipc", "path": "/proc/7/ns/ipc"}))
        );
        assert_eq!(
            NamespacePlan::New.entry("uts"),
            Some(json!({"type": "uts"}))
        );
    }
}
