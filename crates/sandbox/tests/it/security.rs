//! Docker's security defaults: capabilities, seccomp, masked and read-only
//! paths, a pid namespace; and what cap_add, cap_drop, privileged,
//! no_new_privileges and seccomp change.

use crate::support::*;
use berth_sandbox::{ContainerSpec, SandboxError, SeccompChoice, SpecError};

/// Docker's default capability set as a /proc/PID/status mask.
const DOCKER_CAPS: &str = "00000000a80425fb";

fn status_line(out: &str, field: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(field).map(|v| v.trim().to_string()))
        .unwrap_or_else(|| panic!("{field} missing from {out}"))
}

const MOUNT: &str = "mkdir -p /mnt && mount -t tmpfs x /mnt && echo mounted";

#[test]
fn a_default_container_is_confined_like_dockers() {
    let out = run(sh(
        "confined",
        "echo junk > /tmp/m.ko; insmod /tmp/m.ko 2>&1; \
         mount -t tmpfs x /tmp 2>&1; \
         unshare -U true 2>&1; \
         echo x > /proc/sys/kernel/hostname; \
         echo x > /sys/kernel/uevent_helper; \
         echo pids: $(ls /proc | grep -E '^[0-9]+$'); \
         cat /proc/self/status",
    ));
    let o = &out.stdout;
    assert!(!o.contains("mounted"), "{o}");
    // init_module, mount and a new user namespace: EPERM.
    assert!(
        o.contains("insmod: can't insert '/tmp/m.ko': Operation not permitted"),
        "{o}"
    );
    assert!(o.contains("mount: permission denied"), "{o}");
    assert!(
        o.contains("unshare(0x10000000): Operation not permitted"),
        "{o}"
    );
    // Redirection errors go to the shell's stderr.
    let e = &out.stderr;
    assert!(
        e.contains("/proc/sys/kernel/hostname: Read-only file system"),
        "{e}"
    );
    assert!(
        e.contains("/sys/kernel/uevent_helper: Read-only file system"),
        "{e}"
    );
    let pids: Vec<u32> = o
        .lines()
        .find_map(|l| l.strip_prefix("pids:"))
        .unwrap()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert!(
        pids.contains(&1) && pids.iter().all(|p| *p < 10),
        "{pids:?}"
    );
    assert_eq!(status_line(o, "CapEff:"), DOCKER_CAPS);
    assert_eq!(status_line(o, "CapBnd:"), DOCKER_CAPS);
    assert_eq!(status_line(o, "Seccomp:"), "2");
    assert_eq!(status_line(o, "NoNewPrivs:"), "0");
}

#[test]
fn sys_admin_and_unconfined_allow_a_mount() {
    let mut spec = sh(
        "sysadmin-unconfined",
        &format!("{MOUNT}; grep Seccomp: /proc/self/status"),
    );
    spec.cap_add = vec!["SYS_ADMIN".into()];
    spec.seccomp = SeccompChoice::Unconfined;
    let out = run(spec);
    assert!(
        out.stdout.contains("mounted"),
        "{}{}",
        out.stdout,
        out.stderr
    );
    assert_eq!(status_line(&out.stdout, "Seccomp:"), "0");

    // The default profile allows mount to a container holding CAP_SYS_ADMIN.
    let mut spec = sh("sysadmin-default", MOUNT);
    spec.cap_add = vec!["cap_sys_admin".into()];
    let out = run(spec);
    assert!(
        out.stdout.contains("mounted"),
        "{}{}",
        out.stdout,
        out.stderr
    );
}

#[test]
fn privileged_lifts_the_confinement() {
    let mut spec = sh(
        "privileged",
        &format!("{MOUNT}; cat /proc/self/status; grep ' /sys ' /proc/mounts; ls /dev"),
    );
    spec.privileged = true;
    let out = run(spec);
    let o = &out.stdout;
    assert!(o.contains("mounted"), "{o}{}", out.stderr);
    assert_eq!(status_line(o, "Seccomp:"), "0");
    // Every capability this process may hand out.
    let ours = std::fs::read_to_string("/proc/self/status").unwrap();
    assert_eq!(status_line(o, "CapEff:"), status_line(&ours, "CapBnd:"));
    assert!(o.contains("sysfs /sys sysfs rw"), "{o}");
    // Host devices are there (the host's own device list varies; /dev/kmsg
    // exists wherever /dev is populated).
    assert!(o.lines().any(|l| l == "kmsg"), "{o}");
}

#[test]
fn no_new_privileges_is_set() {
    let mut spec = sh("nnp", "grep NoNewPrivs: /proc/self/status");
    spec.no_new_privileges = true;
    let out = run(spec);
    assert_eq!(
        status_line(&out.stdout, "NoNewPrivs:"),
        "1",
        "{}",
        out.stderr
    );
}

#[test]
fn cap_drop_all_and_cap_add_leave_only_the_added() {
    let mut spec = sh(
        "capdrop",
        "grep CapEff: /proc/self/status; chown 1 /tmp 2>&1",
    );
    spec.cap_drop = vec!["ALL".into()];
    spec.cap_add = vec!["NET_ADMIN".into()];
    let out = run(spec);
    assert_eq!(status_line(&out.stdout, "CapEff:"), "0000000000001000");
    assert!(
        out.stdout.contains("Operation not permitted"),
        "{}",
        out.stdout
    );

    let mut spec = sh("capdrop-one", "grep CapEff: /proc/self/status");
    spec.cap_drop = vec!["chown".into()];
    let out = run(spec);
    assert_eq!(status_line(&out.stdout, "CapEff:"), "00000000a80425fa");
}

#[test]
fn bad_capabilities_and_profiles_are_clear_errors() {
    let f = fixture();
    let layers = f
        .sandbox
        .layers()
        .unpack_image(&f.store, &f.busybox)
        .unwrap();
    let mut spec = sh("badcap", "true");
    spec.cap_add = vec!["NET_WIZARD".into()];
    let err = f.sandbox.create(&layers, spec).unwrap_err();
    assert!(
        matches!(err, SandboxError::Spec(SpecError::UnknownCapability(ref c)) if c == "NET_WIZARD"),
        "{err}"
    );
    let mut spec = sh("badprofile", "true");
    spec.seccomp = SeccompChoice::Profile("/nonexistent/profile.json".into());
    let err = f.sandbox.create(&layers, spec).unwrap_err();
    assert!(
        err.to_string().contains("/nonexistent/profile.json"),
        "{err}"
    );
}

#[test]
fn a_docker_format_profile_is_applied() {
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("profile.json");
    std::fs::write(
        &profile,
        r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}"#,
    )
    .unwrap();
    let mut spec: ContainerSpec = sh("profile", "touch /tmp/f && echo touched; mkdir /tmp/d 2>&1");
    spec.seccomp = SeccompChoice::Profile(profile);
    let out = run(spec);
    assert!(out.stdout.contains("touched"), "{}", out.stdout);
    assert!(
        out.stdout.contains("Operation not permitted"),
        "{}",
        out.stdout
    );
}

/// The capability sets a container's command starts with are exactly the
/// spec's: loading the seccomp filter without no_new_privileges borrows
/// CAP_SYS_ADMIN (and CAP_SETPCAP) and must give both back.
#[test]
fn capability_sets_are_the_specs_after_the_filter_is_loaded() {
    const STATUS: &str = "grep -E '^(Cap|Seccomp|NoNewPrivs)' /proc/self/status";
    /// name, no_new_privileges, cap_drop, user, [CapEff/CapPrm, CapBnd, NoNewPrivs]
    type Case<'a> = (&'a str, bool, &'a [&'a str], Option<&'a str>, [&'a str; 3]);
    let cases: &[Case] = &[
        (
            "caps-default",
            false,
            &[],
            None,
            [DOCKER_CAPS, DOCKER_CAPS, "0"],
        ),
        ("caps-nnp", true, &[], None, [DOCKER_CAPS, DOCKER_CAPS, "1"]),
        (
            "caps-nosetpcap",
            false,
            &["SETPCAP"],
            None,
            ["00000000a80424fb", "00000000a80424fb", "0"],
        ),
        (
            "caps-user",
            false,
            &[],
            Some("app"),
            // execve clears a non-root user's sets, as in docker.
            ["0000000000000000", DOCKER_CAPS, "0"],
        ),
    ];
    for (name, nnp, drop, user, [eff, bnd, nnp_field]) in cases {
        let mut spec = sh(name, STATUS);
        spec.no_new_privileges = *nnp;
        spec.cap_drop = drop.iter().map(|c| c.to_string()).collect();
        spec.user = user.map(str::to_string);
        let out = run(spec);
        let o = &out.stdout;
        assert_eq!(
            out.status,
            berth_sandbox::ExitStatus::Exited(0),
            "{name}: {o}{}",
            out.stderr
        );
        assert_eq!(status_line(o, "CapEff:"), *eff, "{name}: {o}");
        assert_eq!(status_line(o, "CapPrm:"), *eff, "{name}: {o}");
        assert_eq!(status_line(o, "CapBnd:"), *bnd, "{name}: {o}");
        assert_eq!(status_line(o, "CapInh:"), "0000000000000000", "{name}: {o}");
        assert_eq!(status_line(o, "CapAmb:"), "0000000000000000", "{name}: {o}");
        assert_eq!(status_line(o, "Seccomp:"), "2", "{name}: {o}");
        assert_eq!(status_line(o, "NoNewPrivs:"), *nnp_field, "{name}: {o}");
    }
}

/// A profile that keeps berth from giving back the capabilities it
/// borrowed to load the filter fails the start instead of leaving the
/// container with CAP_SYS_ADMIN.
#[test]
fn a_profile_denying_capset_fails_the_start_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("profile.json");
    std::fs::write(
        &profile,
        r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["capset"], "action": "SCMP_ACT_ERRNO"}]}"#,
    )
    .unwrap();
    let mut spec = sh("nocapset", "grep CapEff: /proc/self/status");
    spec.seccomp = SeccompChoice::Profile(profile.clone());
    let out = run(spec);
    assert_ne!(
        out.status,
        berth_sandbox::ExitStatus::Exited(0),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("CapEff:"), "{}", out.stdout);
    assert!(
        out.stderr.contains("seccomp") && out.stderr.contains("no_new_privileges"),
        "{}",
        out.stderr
    );

    // With no_new_privileges nothing is borrowed: the same profile runs.
    let mut spec = sh("nocapset-nnp", "grep CapEff: /proc/self/status");
    spec.seccomp = SeccompChoice::Profile(profile);
    spec.no_new_privileges = true;
    let out = run(spec);
    assert_eq!(
        status_line(&out.stdout, "CapEff:"),
        DOCKER_CAPS,
        "{}",
        out.stderr
    );
}

/// A docker-format profile's argument conditions, errno values and kill
/// actions take effect in the kernel as written: `kill` with SIGUSR1 gets
/// ESRCH while other signals pass, and `uname` kills the process.
#[test]
fn profile_conditions_errnos_and_kills_apply() {
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("profile.json");
    std::fs::write(
        &profile,
        r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
              {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": 3,
               "args": [{"index": 1, "value": 10, "op": "SCMP_CMP_EQ"}]},
              {"names": ["uname"], "action": "SCMP_ACT_KILL_PROCESS"}
            ]}"#,
    )
    .unwrap();
    let mut spec = sh(
        "profile-args",
        "kill -0 $$ && echo zero-ok; kill -USR1 $$ 2>&1; echo usr1=$?; \
         uname -r; echo uname=$?",
    );
    spec.seccomp = SeccompChoice::Profile(profile);
    let out = run(spec);
    let o = &out.stdout;
    assert!(o.contains("zero-ok"), "{o}{}", out.stderr);
    assert!(o.contains("No such process"), "{o}");
    assert!(o.contains("usr1=1"), "{o}");
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert!(!o.contains(release.trim()), "{o}");
    // 128 + SIGSYS
    assert!(o.contains("uname=159"), "{o}");
}

/// A static probe, built here with rustc, that makes raw syscalls (busybox
/// has no applet for most of them) and prints `NR=RESULT/ERRNO` for each
/// `NR[,ARG0[,ARG1[,ARG2]]]` argument.
fn syscall_probe() -> std::path::PathBuf {
    static PROBE: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    PROBE
        .get_or_init(|| {
            // In the fixture's dir, which stale-run cleanup removes.
            let dir = fixture().dir.join("probe");
            std::fs::create_dir_all(&dir).unwrap();
            let src = dir.join("probe.rs");
            std::fs::write(
                &src,
                r#"
extern "C" { fn syscall(nr: i64, ...) -> i64; }
fn main() {
    for arg in std::env::args().skip(1) {
        let v: Vec<i64> = arg.split(',').map(|x| x.parse().unwrap()).collect();
        let a = |i: usize| v.get(i).copied().unwrap_or(0);
        let r = unsafe { syscall(v[0], a(1), a(2), a(3), 0i64, 0i64, 0i64) };
        let e = if r < 0 { std::io::Error::last_os_error().raw_os_error().unwrap_or(0) } else { 0 };
        println!("{}={}/{}", v[0], r, e);
    }
}
"#,
            )
            .unwrap();
            let bin = dir.join("probe");
            let status =
                std::process::Command::new(std::env::var("RUSTC").unwrap_or("rustc".into()))
                    .args(["--edition=2021", "-C", "target-feature=+crt-static", "-o"])
                    .arg(&bin)
                    .arg(&src)
                    .status()
                    .expect("rustc runs");
            assert!(status.success(), "building the syscall probe");
            bin
        })
        .clone()
}

fn probe(name: &str, calls: &[&str], edit: impl FnOnce(&mut ContainerSpec)) -> String {
    let mut spec = sh(name, "");
    spec.cmd = Some(
        std::iter::once("/probe".to_string())
            .chain(calls.iter().map(|c| c.to_string()))
            .collect(),
    );
    spec.mounts.push(berth_sandbox::MountSpec {
        target: "/probe".into(),
        kind: berth_sandbox::MountKind::Bind {
            source: syscall_probe(),
            read_only: true,
        },
    });
    edit(&mut spec);
    let out = run(spec);
    assert_eq!(
        out.status,
        berth_sandbox::ExitStatus::Exited(0),
        "{}{}",
        out.stdout,
        out.stderr
    );
    out.stdout
}

/// The default profile denies what docker's does, by syscall number and
/// argument, whatever the capabilities would allow: keyrings, new user
/// namespaces, bpf, userfaultfd, odd personalities; clone3 gets ENOSYS.
#[test]
fn the_default_profile_denies_dockers_syscalls() {
    // keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, create)
    const KEYCTL: &str = "250,0,-3,1";
    let calls = [
        KEYCTL,
        "248",            // add_key
        "272,268435456",  // unshare(CLONE_NEWUSER)
        "321",            // bpf
        "323",            // userfaultfd
        "135,4194304",    // personality(ADDR_COMPAT_LAYOUT)
        "135,4294967295", // personality(query)
        "435",            // clone3
        "39",             // getpid
    ];
    let out = probe("probe-default", &calls, |_| {});
    for denied in [
        "250=-1/1", "248=-1/1", "272=-1/1", "321=-1/1", "323=-1/1", "135=-1/1",
    ] {
        assert!(out.lines().any(|l| l == denied), "{denied}: {out}");
    }
    assert!(out.lines().any(|l| l == "435=-1/38"), "{out}");
    assert!(out.lines().any(|l| l == "39=1/0"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("135=") && l.ends_with("/0")),
        "the personality query is allowed: {out}"
    );

    // The positive control: unconfined, the same keyctl succeeds.
    let out = probe("probe-unconfined", &[KEYCTL], |s| {
        s.seccomp = SeccompChoice::Unconfined
    });
    assert!(
        out.lines()
            .any(|l| l.starts_with("250=") && l.ends_with("/0")),
        "{out}"
    );
}
