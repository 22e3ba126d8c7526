//! start / wait / kill / delete, and what delete must leave behind: nothing.

use crate::support::*;
use berth_sandbox::ExitStatus;
use std::fs;
use std::path::Path;
use std::time::Duration;

#[test]
fn the_init_is_our_child_and_runs_only_after_start() {
    let out = tempfile::tempdir().unwrap();
    let marker = out.path().join("started");
    let mut spec = sh("child", "echo started");
    spec.stdout = berth_sandbox::Stdio::File(marker.clone());
    let mut c = create(spec);
    let stat = fs::read_to_string(format!("/proc/{}/stat", c.pid())).unwrap();
    let ppid = stat[stat.rfind(')').unwrap() + 1..]
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string();
    assert_eq!(ppid, std::process::id().to_string());
    // libcontainer clears PR_SET_DUMPABLE for its clone; it is restored
    // (once no create runs in a parallel test: the flag is process-wide).
    wait_for("the process to be dumpable again", || unsafe {
        libc::prctl(libc::PR_GET_DUMPABLE) == 1
    });
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(c.try_wait().unwrap(), None);
    assert_eq!(fs::read_to_string(&marker).unwrap_or_default(), "");
    c.start().unwrap();
    assert!(c.start().is_err(), "a second start must fail");
    assert_eq!(c.wait().unwrap(), ExitStatus::Exited(0));
    // Reaped once; the status is remembered.
    assert_eq!(c.wait().unwrap(), ExitStatus::Exited(0));
    assert_eq!(fs::read_to_string(&marker).unwrap(), "started\n");
    c.delete().unwrap();
}

#[test]
fn sigterm_reaches_a_handler_and_sigkill_always_kills() {
    // A shell with a TERM trap exits with the trap's code.
    // The signal is sent once the trap is set (the marker says so), and a
    // missed one fails the test at a deadline instead of hanging it.
    let mut c = create(sh(
        "term",
        "trap 'exit 42' TERM; touch /trapped; while true; do sleep 0.05; done",
    ));
    c.start().unwrap();
    let marker = format!("/proc/{}/root/trapped", c.pid());
    wait_for("the TERM trap", || Path::new(&marker).exists());
    c.kill(libc::SIGTERM).unwrap();
    assert_eq!(wait_exit(&mut c, "exit on TERM"), ExitStatus::Exited(42));
    c.delete().unwrap();

    // PID 1 without a handler ignores SIGTERM (as in docker); SIGKILL works.
    let mut c = create(sh("kill", "exec sleep 1000"));
    c.start().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    c.kill(libc::SIGTERM).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(c.try_wait().unwrap(), None, "PID 1 ignores SIGTERM");
    c.kill(libc::SIGKILL).unwrap();
    let status = c.wait().unwrap();
    assert_eq!(status, ExitStatus::Signaled(libc::SIGKILL));
    assert_eq!(status.code(), 137);
    // Killing an exited container is a no-op, not an error.
    c.kill(libc::SIGKILL).unwrap();
    c.delete().unwrap();
}

#[test]
fn delete_leaves_no_mount_cgroup_process_or_file() {
    let f = fixture();
    let mut c = create(sh("clean", "sleep 1000 & sleep 1000 & wait"));
    let id = c.id().to_string();
    c.start().unwrap();
    let bundle = f.dir.join("bundles").join(&id);
    assert_eq!(
        mounts_under(&bundle).len(),
        1,
        "{:?}",
        mounts_under(&bundle)
    );
    let cgroups = cgroup_dirs(&id);
    assert!(!cgroups.is_empty(), "the container has no cgroup");
    let procs_file = cgroups
        .iter()
        .find(|p| p.join("cgroup.procs").exists())
        .unwrap()
        .join("cgroup.procs");
    let mut pids = Vec::new();
    wait_for("three processes in the cgroup", || {
        pids = fs::read_to_string(&procs_file)
            .unwrap()
            .lines()
            .map(|l| l.parse::<i32>().unwrap())
            .collect();
        pids.len() == 3
    });
    c.delete().unwrap();
    assert!(
        mounts_under(&bundle).is_empty(),
        "{:?}",
        mounts_under(&bundle)
    );
    assert!(cgroup_dirs(&id).is_empty(), "{:?}", cgroup_dirs(&id));
    for pid in pids {
        wait_for("the container's processes to go", || !process_exists(pid));
    }
    assert!(!bundle.exists());
    assert!(!f.dir.join("runtime").join(&id).exists());
}

#[test]
fn a_container_never_started_can_be_deleted() {
    let f = fixture();
    let c = create(sh("unstarted", "true"));
    let (id, pid) = (c.id().to_string(), c.pid());
    c.delete().unwrap();
    assert!(!process_exists(pid));
    assert!(cgroup_dirs(&id).is_empty());
    assert!(!f.dir.join("bundles").join(&id).exists());
}

#[test]
fn remove_cleans_up_after_a_lost_handle() {
    let f = fixture();
    let mut c = create(sh("lost", "exec sleep 1000"));
    c.start().unwrap();
    let (id, pid) = (c.id().to_string(), c.pid());
    drop(c); // the handle is gone; the container is not
    assert!(process_exists(pid));
    f.sandbox.remove(&id).unwrap();
    wait_for("the lost container's init to go", || !process_exists(pid));
    assert!(cgroup_dirs(&id).is_empty());
    assert!(!f.dir.join("bundles").join(&id).exists());
    assert!(mounts_under(&f.dir.join("bundles").join(&id)).is_empty());
    // Removing what is not there is fine.
    f.sandbox.remove(&id).unwrap();
}

#[test]
fn the_default_mounts_follow_docker() {
    let out = run(sh("mounts", "cat /proc/mounts; ls /dev"));
    assert!(out.status.success(), "{}", out.stderr);
    let mounts: Vec<(&str, &str, &str)> = out
        .stdout
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f.len() > 3).then(|| (f[1], f[2], f[3]))
        })
        .collect();
    // The last mount on a path is the one in effect (read-only paths are
    // bind mounts stacked over the first).
    let find = |dest: &str| {
        mounts
            .iter()
            .rfind(|m| m.0 == dest)
            .unwrap_or_else(|| panic!("{dest} is not mounted: {mounts:?}"))
    };
    assert_eq!(find("/").1, "overlay");
    assert_eq!(find("/proc").1, "proc");
    assert_eq!(find("/dev").1, "tmpfs");
    assert_eq!(find("/dev/pts").1, "devpts");
    assert_eq!(find("/dev/mqueue").1, "mqueue");
    assert_eq!(find("/dev/shm").1, "tmpfs");
    let sys = find("/sys");
    assert!(sys.2.starts_with("ro,"), "{sys:?}");
    // Every cgroup hierarchy is read-only too, not only the tmpfs holding them.
    let cgroups: Vec<&str> = mounts
        .iter()
        .filter(|m| m.0.starts_with("/sys/fs/cgroup"))
        .map(|m| m.0)
        .collect();
    assert!(cgroups.len() > 1, "{cgroups:?}");
    for dest in cgroups {
        let m = find(dest);
        assert!(m.2.starts_with("ro,"), "{m:?} is writable");
    }
    assert!(
        !mounts.iter().any(|m| m.0 == "/run"),
        "docker has no /run tmpfs"
    );
    for dev in [
        "null", "zero", "full", "random", "urandom", "tty", "pts", "shm", "ptmx",
    ] {
        assert!(out.stdout.lines().any(|l| l == dev), "/dev/{dev} missing");
    }
}
