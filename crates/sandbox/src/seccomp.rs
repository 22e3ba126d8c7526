//! Seccomp profiles: berth's default (the policy of docker's default
//! profile: deny with EPERM unless allowed, an allowlist of ordinary
//! syscalls, more of them for containers holding the capability a syscall
//! needs) and docker-format JSON profiles, both rendered into the OCI
//! spec's `linux.seccomp` for one container's capabilities and the host's
//! architecture.

mod bpf;
mod install;
mod syscalls_x86_64;

pub use install::{transient_caps, FilterError, SeccompFilter, TRANSIENT_CAPS};

use serde::Deserialize;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("seccomp profile {}: {message}", path.display())]
    Profile { path: PathBuf, message: String },
    #[error(transparent)]
    Filter(#[from] FilterError),
}

/// A profile: the default action and rules, each applying only to
/// containers with (or without) some capabilities, on some architectures,
/// from some kernel version.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    default_action: String,
    #[serde(default)]
    default_errno_ret: Option<u32>,
    #[serde(default)]
    syscalls: Vec<Rule>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    #[serde(default)]
    names: Vec<String>,
    /// The older docker format names one syscall per rule.
    #[serde(default)]
    name: Option<String>,
    action: String,
    #[serde(default)]
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Option<Vec<Value>>,
    #[serde(default)]
    includes: Filter,
    #[serde(default)]
    excludes: Filter,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Filter {
    #[serde(default)]
    caps: Vec<String>,
    /// Go's names: `amd64`, `arm64`, `x32`, `386`, `arm`, ...
    #[serde(default)]
    arches: Vec<String>,
    #[serde(default)]
    min_kernel: Option<String>,
}

const EPERM: u32 = 1;
const ENOSYS: u32 = 38;

/// Syscalls any container may make.
const ALLOWED: &[&str] = &[
    "accept",
    "accept4",
    "access",
    "adjtimex",
    "alarm",
    "bind",
    "brk",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "clock_adjtime",
    "clock_adjtime64",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futex",
    "futex_requeue",
    "futex_time64",
    "futex_wait",
    "futex_waitv",
    "futex_wake",
    "futimesat",
    "get_robust_list",
    "get_thread_area",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "gettid",
    "gettimeofday",
    "getuid",
    "getuid32",
    "getxattr",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "io_setup",
    "io_submit",
    "ioctl",
    "ioprio_get",
    "ioprio_set",
    "ipc",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listxattr",
    "llistxattr",
    "_llseek",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "lstat64",
    "madvise",
    "map_shadow_stack",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "mremap",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "nanosleep",
    "newfstatat",
    "_newselect",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "ppoll_time64",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_mrelease",
    "pselect6",
    "pselect6_time64",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "send",
    "sendfile",
    "sendfile64",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "set_robust_list",
    "set_thread_area",
    "set_tid_address",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setrlimit",
    "setsid",
    "setsockopt",
    "setuid",
    "setuid32",
    "setxattr",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "sigprocmask",
    "sigreturn",
    "socket",
    "socketcall",
    "socketpair",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    "times",
    "tkill",
    "truncate",
    "truncate64",
    "ugetrlimit",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vfork",
    "vmsplice",
    "wait4",
    "waitid",
    "waitpid",
    "write",
    "writev",
    // Harmless since Linux 4.8, where a seccomp filter can no longer be
    // bypassed through ptrace.
    "kcmp",
    "process_vm_readv",
    "process_vm_writev",
    "ptrace",
];

/// Syscalls allowed to containers holding a capability, as the kernel would
/// otherwise refuse them anyway.
const BY_CAPABILITY: &[(&str, &[&str])] = &[
    (
        "CAP_SYS_ADMIN",
        &[
            "bpf",
            "clone",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "mount",
            "mount_setattr",
            "move_mount",
            "name_to_handle_at",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount",
            "umount2",
            "unshare",
        ],
    ),
    ("CAP_SYS_BOOT", &["reboot"]),
    ("CAP_SYS_CHROOT", &["chroot"]),
    (
        "CAP_SYS_MODULE",
        &["delete_module", "init_module", "finit_module"],
    ),
    ("CAP_SYS_PACCT", &["acct"]),
    ("CAP_SYS_PTRACE", &["pidfd_getfd", "process_madvise"]),
    ("CAP_SYS_RAWIO", &["iopl", "ioperm"]),
    (
        "CAP_SYS_TIME",
        &["settimeofday", "stime", "clock_settime", "clock_settime64"],
    ),
    ("CAP_SYS_TTY_CONFIG", &["vhangup"]),
    (
        "CAP_SYS_NICE",
        &[
            "get_mempolicy",
            "mbind",
            "set_mempolicy",
            "set_mempolicy_home_node",
        ],
    ),
    ("CAP_SYSLOG", &["syslog"]),
    ("CAP_BPF", &["bpf"]),
    ("CAP_PERFMON", &["perf_event_open"]),
];

/// `personality(2)` personas a container may switch to: Linux, with
/// `UNAME26`, `READ_IMPLIES_EXEC` or both, and the query `0xffffffff`.
const PERSONAS: &[u64] = &[0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

/// `CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET`:
/// without `CAP_SYS_ADMIN`, `clone` may create none of them.
const CLONE_NAMESPACE_FLAGS: u64 = 0x7E02_0000;

fn rule(names: &[&str], action: &str) -> Rule {
    Rule {
        names: names.iter().map(|n| n.to_string()).collect(),
        name: None,
        action: action.to_string(),
        errno_ret: None,
        args: None,
        includes: Filter::default(),
        excludes: Filter::default(),
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

impl Profile {
    /// berth's default profile.
    pub fn default_profile() -> Profile {
        let mut rules = vec![rule(ALLOWED, "SCMP_ACT_ALLOW")];
        for persona in PERSONAS {
            let mut r = rule(&["personality"], "SCMP_ACT_ALLOW");
            r.args = Some(vec![
                json!({"index": 0, "value": persona, "op": "SCMP_CMP_EQ"}),
            ]);
            rules.push(r);
        }
        let mut x86 = rule(&["arch_prctl", "modify_ldt"], "SCMP_ACT_ALLOW");
        x86.includes.arches = strings(&["amd64", "x32", "386"]);
        rules.push(x86);
        let mut arm = rule(
            &[
                "arm_fadvise64_64",
                "arm_sync_file_range",
                "sync_file_range2",
                "breakpoint",
                "cacheflush",
                "set_tls",
            ],
            "SCMP_ACT_ALLOW",
        );
        arm.includes.arches = strings(&["arm", "arm64"]);
        rules.push(arm);
        let mut clone = rule(&["clone"], "SCMP_ACT_ALLOW");
        clone.args = Some(vec![json!({"index": 0, "value": CLONE_NAMESPACE_FLAGS,
                                      "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"})]);
        clone.excludes.caps = strings(&["CAP_SYS_ADMIN"]);
        rules.push(clone);
        // clone3's flags live in memory a filter cannot read: ENOSYS makes
        // libc fall back to clone, whose flags it can.
        let mut clone3 = rule(&["clone3"], "SCMP_ACT_ERRNO");
        clone3.errno_ret = Some(ENOSYS);
        clone3.excludes.caps = strings(&["CAP_SYS_ADMIN"]);
        rules.push(clone3);
        let mut clone3_admin = rule(&["clone3"], "SCMP_ACT_ALLOW");
        clone3_admin.includes.caps = strings(&["CAP_SYS_ADMIN"]);
        rules.push(clone3_admin);
        for (cap, names) in BY_CAPABILITY {
            let mut r = rule(names, "SCMP_ACT_ALLOW");
            r.includes.caps = strings(&[cap]);
            rules.push(r);
        }
        Profile {
            default_action: "SCMP_ACT_ERRNO".into(),
            default_errno_ret: Some(EPERM),
            syscalls: rules,
        }
    }

    /// A docker-format JSON profile (`docker run --security-opt
    /// seccomp=FILE`): `defaultAction`, `defaultErrnoRet`, `syscalls` with
    /// `names` (or `name`), `action`, `errnoRet`, `args`, `includes` and
    /// `excludes` (`caps`, `arches`, `minKernel`). Its architecture list is
    /// not used: the host's native architectures are.
    pub fn load(path: &Path) -> Result<Profile, SeccompError> {
        let err = |message: String| SeccompError::Profile {
            path: path.to_path_buf(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let profile: Profile = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
        // Let a bad action or argument show here, not when the container
        // starts.
        let rendered = profile.render(&[], &host_arches(), (0, 0));
        let oci = serde_json::from_value::<libcontainer::oci_spec::runtime::LinuxSeccomp>(rendered)
            .map_err(|e| err(e.to_string()))?;
        bpf::compile(&oci).map_err(|e| err(e.to_string()))?;
        Ok(profile)
    }

    /// The OCI `linux.seccomp` for a container with `caps` (`CAP_*`
    /// names) on this host.
    pub fn to_oci(&self, caps: &[String]) -> Value {
        self.render(caps, &host_arches(), kernel_version())
    }

    fn render(&self, caps: &[String], arches: &HostArches, kernel: (u32, u32)) -> Value {
        let has = |c: &String| caps.iter().any(|have| have == c);
        let syscalls: Vec<Value> = self
            .syscalls
            .iter()
            .filter(|r| r.includes.caps.iter().all(has))
            .filter(|r| !r.excludes.caps.iter().any(has))
            .filter(|r| {
                r.includes.arches.is_empty() || r.includes.arches.contains(&arches.go.to_string())
            })
            .filter(|r| !r.excludes.arches.contains(&arches.go.to_string()))
            .filter(|r| {
                r.includes
                    .min_kernel
                    .as_deref()
                    .and_then(parse_kernel)
                    .is_none_or(|min| kernel >= min)
            })
            .map(|r| {
                let mut names = r.names.clone();
                names.extend(r.name.clone());
                let mut s = json!({"names": names, "action": r.action});
                if let Some(e) = r.errno_ret {
                    s["errnoRet"] = json!(e);
                }
                if let Some(args) = &r.args {
                    s["args"] = json!(args);
                }
                s
            })
            .collect();
        let mut out = json!({
            "defaultAction": self.default_action,
            "architectures": arches.scmp,
            "syscalls": syscalls,
        });
        if let Some(e) = self.default_errno_ret {
            out["defaultErrnoRet"] = json!(e);
        }
        out
    }
}

struct HostArches {
    /// The name docker profiles use in `includes.arches`.
    go: &'static str,
    /// The native architecture and the compatible ones a process may switch
    /// to, which the filter must cover too.
    scmp: &'static [&'static str],
}

fn host_arches() -> HostArches {
    match std::env::consts::ARCH {
        "aarch64" => HostArches {
            go: "arm64",
            scmp: &["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
        },
        _ => HostArches {
            go: "amd64",
            scmp: &["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        },
    }
}

fn parse_kernel(s: &str) -> Option<(u32, u32)> {
    let mut parts = s.split(['.', '-']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().and_then(|m| m.parse().ok()).unwrap_or(0);
    Some((major, minor))
}

fn kernel_version() -> (u32, u32) {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .and_then(|r| parse_kernel(r.trim()))
        .unwrap_or((0, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &Value) -> Vec<String> {
        v["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["action"] == "SCMP_ACT_ALLOW" && s.get("args").is_none())
            .flat_map(|s| s["names"].as_array().unwrap().clone())
            .map(|n| n.as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn capabilities_unlock_their_syscalls() {
        let p = Profile::default_profile();
        let plain = p.to_oci(&[]);
        assert_eq!(plain["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(plain["defaultErrnoRet"], 1);
        let allowed = names(&plain);
        assert!(allowed.contains(&"read".to_string()));
        for denied in ["mount", "init_module", "unshare", "reboot", "clone3"] {
            assert!(!allowed.contains(&denied.to_string()), "{denied}");
        }
        let admin = names(&p.to_oci(&["CAP_SYS_ADMIN".into()]));
        for name in ["mount", "umount2", "unshare", "setns", "clone", "clone3"] {
            assert!(admin.contains(&name.to_string()), "{name}");
        }
        assert!(!admin.contains(&"init_module".to_string()));
        // The masked clone rule is only for containers without CAP_SYS_ADMIN.
        let masked = |v: &Value| {
            v["syscalls"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["names"][0] == "clone" && s.get("args").is_some())
        };
        assert!(masked(&plain));
        assert!(!masked(&p.to_oci(&["CAP_SYS_ADMIN".into()])));
    }

    #[test]
    fn it_renders_into_a_valid_oci_seccomp() {
        let oci = Profile::default_profile().to_oci(&["CAP_SYS_ADMIN".into()]);
        serde_json::from_value::<libcontainer::oci_spec::runtime::LinuxSeccomp>(oci).unwrap();
    }

    #[test]
    fn docker_profiles_are_filtered_by_arch_caps_and_kernel() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.json");
        std::fs::write(
            &path,
            r#"{"defaultAction": "SCMP_ACT_ALLOW",
                "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": []}],
                "syscalls": [
                  {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
                  {"name": "chmod", "action": "SCMP_ACT_ERRNO", "includes": {"arches": ["s390x"]}},
                  {"names": ["chown"], "action": "SCMP_ACT_ERRNO", "excludes": {"caps": ["CAP_CHOWN"]}},
                  {"names": ["link"], "action": "SCMP_ACT_ERRNO", "includes": {"minKernel": "99.1"}}
                ]}"#,
        )
        .unwrap();
        let p = Profile::load(&path).unwrap();
        let arches = HostArches {
            go: "amd64",
            scmp: &["SCMP_ARCH_X86_64"],
        };
        let oci = p.render(&[], &arches, (6, 1));
        let rules = oci["syscalls"].as_array().unwrap();
        assert_eq!(rules.len(), 2, "{oci}");
        assert_eq!(rules[0]["errnoRet"], 13);
        assert_eq!(rules[1]["names"][0], "chown");
        let oci = p.render(&["CAP_CHOWN".into()], &arches, (99, 2));
        let rules = oci["syscalls"].as_array().unwrap();
        assert_eq!(rules.len(), 2, "{oci}");
        assert_eq!(rules[1]["names"][0], "link");

        std::fs::write(&path, r#"{"defaultAction": "SCMP_ACT_NOPE"}"#).unwrap();
        assert!(Profile::load(&path).is_err());
        assert!(Profile::load(&dir.path().join("missing.json")).is_err());
    }
}
