//! `Sandbox::exec`: another process in a running container.

use crate::support::*;
use berth_sandbox::{Container, ExecSpec, ExitStatus, SandboxError, Stdio};
use std::fs;
use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};

/// A started busybox container that sleeps until deleted.
fn sleeper(name: &str, edit: impl FnOnce(&mut berth_sandbox::ContainerSpec)) -> Container {
    let mut spec = sh(name, "exec sleep 1000");
    edit(&mut spec);
    let mut c = create(spec);
    c.start().unwrap();
    c
}

fn exec_args(args: &[&str]) -> ExecSpec {
    ExecSpec {
        args: args.iter().map(|a| a.to_string()).collect(),
        ..Default::default()
    }
}

/// Exec `spec` into `id`, wait, and capture stdout and stderr.
fn exec_output(id: &str, mut spec: ExecSpec) -> Output {
    let out = tempfile::tempdir().unwrap();
    spec.stdout = Stdio::File(out.path().join("stdout"));
    spec.stderr = Stdio::File(out.path().join("stderr"));
    let mut p = fixture().sandbox.exec(id, spec).unwrap();
    let status = p.wait().unwrap();
    Output {
        status,
        stdout: fs::read_to_string(out.path().join("stdout")).unwrap_or_default(),
        stderr: fs::read_to_string(out.path().join("stderr")).unwrap_or_default(),
    }
}

fn status_field(pid: i32, field: &str) -> String {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(field).map(|v| v.trim().to_string()))
        .unwrap()
}

#[test]
fn exec_captures_output_and_passes_the_exit_code_through() {
    let c = sleeper("exec-echo", |_| {});
    let out = exec_output(
        c.id(),
        exec_args(&["sh", "-c", "echo hello; echo oops >&2; hostname; exit 3"]),
    );
    assert_eq!(out.status, ExitStatus::Exited(3));
    assert_eq!(out.stdout, format!("hello\n{}\n", c.id()));
    assert_eq!(out.stderr, "oops\n");
    let out = exec_output(c.id(), exec_args(&["echo", "plain"]));
    assert_eq!(
        (out.status, out.stdout.as_str()),
        (ExitStatus::Exited(0), "plain\n")
    );
    c.delete().unwrap();
}

#[test]
fn exec_joins_the_containers_namespaces_cgroup_and_capabilities() {
    let c = sleeper("exec-ns", |_| {});
    let mut p = fixture()
        .sandbox
        .exec(c.id(), exec_args(&["sleep", "1000"]))
        .unwrap();
    for ns in ["pid", "mnt", "net", "ipc", "uts"] {
        let inode = |pid: i32| fs::read_link(format!("/proc/{pid}/ns/{ns}")).unwrap();
        assert_eq!(inode(p.pid()), inode(c.pid()), "{ns}");
    }
    assert_eq!(
        fs::read_to_string(format!("/proc/{}/cgroup", p.pid())).unwrap(),
        fs::read_to_string(format!("/proc/{}/cgroup", c.pid())).unwrap()
    );
    for field in [
        "CapEff:",
        "CapBnd:",
        "CapPrm:",
        "CapInh:",
        "CapAmb:",
        "Seccomp:",
        "NoNewPrivs:",
    ] {
        assert_eq!(
            status_field(p.pid(), field),
            status_field(c.pid(), field),
            "{field}"
        );
    }
    assert_eq!(status_field(c.pid(), "Seccomp:"), "2");
    // As docker: setuid binaries work in exec'd processes too.
    assert_eq!(status_field(p.pid(), "NoNewPrivs:"), "0");
    assert_eq!(p.try_wait().unwrap(), None);
    p.kill(libc::SIGKILL).unwrap();
    assert_eq!(p.wait().unwrap(), ExitStatus::Signaled(libc::SIGKILL));
    assert_eq!(p.wait().unwrap(), ExitStatus::Signaled(libc::SIGKILL));
    p.kill(libc::SIGKILL).unwrap();
    // The container itself is untouched.
    let mut c = c;
    assert_eq!(c.try_wait().unwrap(), None);
    c.delete().unwrap();
}

#[test]
fn exec_gets_the_containers_env_cwd_and_user_by_default() {
    let c = sleeper("exec-defaults", |s| {
        s.env = vec!["EXTRA=1".into()];
        s.working_dir = Some("/work/dir".into());
        s.user = Some("app".into());
    });
    let out = exec_output(c.id(), exec_args(&["sh", "-c", "env; pwd; id"]));
    assert!(out.status.success(), "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    for want in [
        "IMAGE_VAR=from-image",
        "EXTRA=1",
        "HOME=/home/app",
        "/work/dir",
        "uid=1000(app) gid=1000(app) groups=50(staff)",
    ] {
        assert!(lines.contains(&want), "{want} missing from {lines:?}");
    }
    c.delete().unwrap();
}

#[test]
fn exec_applies_its_own_env_cwd_and_user() {
    let c = sleeper("exec-override", |s| s.env = vec!["EXTRA=1".into()]);
    let mut spec = exec_args(&["sh", "-c", "env; pwd; id"]);
    spec.env = vec!["NEW=2".into(), "IMAGE_VAR=exec".into(), "EXTRA".into()];
    spec.cwd = Some("/tmp".into());
    spec.user = Some("app:staff".into());
    let out = exec_output(c.id(), spec);
    assert!(out.status.success(), "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    for want in [
        "NEW=2",
        "IMAGE_VAR=exec",
        "HOME=/home/app",
        "/tmp",
        "uid=1000(app) gid=50(staff) groups=50(staff)",
    ] {
        assert!(lines.contains(&want), "{want} missing from {lines:?}");
    }
    assert!(!lines.iter().any(|l| l.starts_with("EXTRA=")), "{lines:?}");

    let mut spec = exec_args(&["id"]);
    spec.user = Some("nobody-here".into());
    let err = fixture().sandbox.exec(c.id(), spec).unwrap_err();
    assert!(err.to_string().contains("nobody-here"), "{err}");
    c.delete().unwrap();
}

#[test]
fn exec_reads_stdin() {
    let c = sleeper("exec-stdin", |_| {});
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    fs::write(&input, "line one\nline two\n").unwrap();
    let mut spec = exec_args(&["wc", "-l"]);
    spec.stdin = Stdio::File(input);
    let out = exec_output(c.id(), spec);
    assert_eq!(out.stdout.trim(), "2");
    c.delete().unwrap();
}

#[test]
fn exec_into_an_unknown_or_stopped_container_is_a_clear_error() {
    let f = fixture();
    let err = f
        .sandbox
        .exec("it-no-such-container", exec_args(&["true"]))
        .unwrap_err();
    assert!(matches!(err, SandboxError::NoSuchContainer(_)), "{err}");
    assert!(err.to_string().contains("no such container"), "{err}");

    let created = create(sh("exec-created", "true"));
    let err = f
        .sandbox
        .exec(created.id(), exec_args(&["true"]))
        .unwrap_err();
    assert!(err.to_string().contains("not running"), "{err}");
    created.delete().unwrap();

    let mut exited = create(sh("exec-exited", "exit 0"));
    exited.start().unwrap();
    exited.wait().unwrap();
    let err = f
        .sandbox
        .exec(exited.id(), exec_args(&["true"]))
        .unwrap_err();
    assert!(err.to_string().contains("not running"), "{err}");
    exited.delete().unwrap();
}

#[test]
fn exec_of_a_missing_command_is_a_clear_error_and_leaves_nothing() {
    let f = fixture();
    let c = sleeper("exec-nocmd", |_| {});
    for cmd in ["nope", "/bin/nope"] {
        let err = f.sandbox.exec(c.id(), exec_args(&[cmd])).unwrap_err();
        match &err {
            SandboxError::CommandNotFound { command, .. } => assert_eq!(command, cmd),
            other => panic!("expected CommandNotFound, got {other}"),
        }
    }
    let err = f.sandbox.exec(c.id(), exec_args(&[])).unwrap_err();
    assert!(err.to_string().contains("no command"), "{err}");
    wait_for("no zombie left by libcontainer", || {
        youki_zombies().is_empty()
    });
    let bundle = f.dir.join("bundles").join(c.id());
    let leftovers: Vec<String> = fs::read_dir(&bundle)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("exec-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // The container still runs and still takes execs.
    assert!(exec_output(c.id(), exec_args(&["true"])).status.success());
    c.delete().unwrap();
}

/// Run `script` in `id` with `slave` as stdio and controlling terminal;
/// return what the master read.
fn exec_on_tty(id: &str, master: OwnedFd, slave: OwnedFd, script: &str) -> String {
    let dup = |fd: &OwnedFd| Stdio::Fd(fd.try_clone().unwrap());
    let mut spec = exec_args(&["sh", "-c", script]);
    spec.stdin = dup(&slave);
    spec.stdout = dup(&slave);
    spec.stderr = dup(&slave);
    spec.tty = true;
    let mut p = fixture().sandbox.exec(id, spec).unwrap();
    drop(slave);
    assert_eq!(p.wait().unwrap(), ExitStatus::Exited(0));
    // Once every slave fd is closed, reading the master ends (EIO).
    let mut master = fs::File::from(master);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n @ 1..) = master.read(&mut buf) {
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out).replace("\r\n", "\n")
}

/// Field 7 of /proc/self/stat: the controlling terminal's device number.
const TTY_NR: &str = "cut -d')' -f2 /proc/self/stat | cut -d' ' -f6";

#[test]
fn exec_with_a_tty_gets_it_as_controlling_terminal() {
    let c = sleeper("exec-tty", |_| {});
    // A pty of the container's own devpts: `tty` names it.
    let (master, slave) = fixture().sandbox.open_pty(c.id()).unwrap();
    let mut n: libc::c_uint = 0;
    // SAFETY: valid fd and a pointer to an unsigned int.
    let r = unsafe {
        libc::ioctl(
            std::os::fd::AsRawFd::as_raw_fd(&master),
            libc::TIOCGPTN,
            &mut n,
        )
    };
    assert_eq!(r, 0);
    let out = exec_on_tty(c.id(), master, slave, &format!("tty; {TTY_NR}"));
    let want_nr = (136u64 << 8) | (n as u64 & 0xff) | ((n as u64 & !0xff) << 12);
    assert_eq!(out, format!("/dev/pts/{n}\n{want_nr}\n"));

    // A pty of the host's (`openpty`) is a terminal inside too, but has no
    // name there.
    let (master, slave) = openpty();
    let out = exec_on_tty(
        c.id(),
        master,
        slave,
        &format!("test -t 0 && echo is-a-tty; {TTY_NR}"),
    );
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("is-a-tty"), "{out:?}");
    assert_ne!(lines.next(), Some("0"), "no controlling terminal: {out:?}");
    c.delete().unwrap();
}

fn openpty() -> (OwnedFd, OwnedFd) {
    let (mut master, mut slave) = (-1, -1);
    // SAFETY: out pointers to two ints; null name, termios and winsize.
    let r = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(r, 0, "openpty: {}", std::io::Error::last_os_error());
    for fd in [master, slave] {
        // SAFETY: valid fds we own; libcontainer clones without exec.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    // SAFETY: both fds were just opened and are owned here only.
    unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) }
}

#[test]
fn a_privileged_exec_has_every_capability_with_its_own_user_and_env() {
    let c = sleeper("exec-privileged", |_| {});
    let script = "grep CapEff /proc/self/status; id -u; echo $HOOK";
    let mut plain = exec_args(&["sh", "-c", script]);
    plain.env = vec!["HOOK=plain".into()];
    let out = exec_output(c.id(), plain);
    let container_caps = status_field(c.pid(), "CapEff:");
    assert_eq!(
        out.stdout,
        format!("CapEff:\t{container_caps}\n0\nplain\n"),
        "{}",
        out.stderr
    );
    let mut privileged = exec_args(&["sh", "-c", script]);
    privileged.privileged = true;
    privileged.env = vec!["HOOK=privileged".into()];
    let out = exec_output(c.id(), privileged);
    // Every capability this process may give, which is more than the
    // container's.
    let bounding = status_field(std::process::id() as i32, "CapBnd:");
    assert_ne!(bounding, container_caps);
    assert_eq!(
        out.stdout,
        format!("CapEff:\t{bounding}\n0\nprivileged\n"),
        "{}",
        out.stderr
    );
    // A privileged exec can do what the container cannot (CAP_NET_ADMIN).
    let mut privileged = exec_args(&["ip", "link", "set", "lo", "mtu", "1280"]);
    privileged.privileged = true;
    assert!(exec_output(c.id(), privileged).status.success());
    let out = exec_output(
        c.id(),
        exec_args(&["ip", "link", "set", "lo", "mtu", "1300"]),
    );
    assert!(!out.status.success(), "{}", out.stdout);

    // As another user, with privileges: the user's ids, still privileged.
    let mut as_app = exec_args(&["sh", "-c", "id -u; echo $HOME $HOOK"]);
    as_app.privileged = true;
    as_app.user = Some("app".into());
    as_app.env = vec!["HOOK=app".into()];
    let out = exec_output(c.id(), as_app);
    assert_eq!(out.stdout, "1000\n/home/app app\n", "{}", out.stderr);
    c.delete().unwrap();
}
