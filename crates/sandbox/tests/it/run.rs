//! What the container runs with: command, exit code, output, env, cwd, user.

use crate::support::*;
use berth_sandbox::{ExitStatus, SandboxError, UserError};

#[test]
fn exit_codes_reach_wait() {
    assert_eq!(run(sh("exit0", "exit 0")).status, ExitStatus::Exited(0));
    let out = run(sh("exit7", "exit 7"));
    assert_eq!(out.status, ExitStatus::Exited(7));
    assert_eq!(out.status.code(), 7);
    assert!(!out.status.success());
}

#[test]
fn stdout_and_stderr_are_captured_separately() {
    let out = run(sh("stdio", "echo to-out; echo to-err >&2; cat /etc/motd"));
    assert_eq!(out.stdout, "to-out\nlower motd\n");
    assert_eq!(out.stderr, "to-err\n");
}

#[test]
fn env_cwd_and_hostname_are_applied() {
    let mut spec = sh("env", "env; echo cwd=$(pwd); echo host=$(hostname)");
    spec.env = vec!["EXTRA=1".into(), "IMAGE_VAR=overridden".into()];
    spec.working_dir = Some("/work/dir".into());
    spec.hostname = Some("berth-test".into());
    let out = run(spec);
    assert!(out.status.success(), "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    for want in [
        "PATH=/usr/bin:/bin",
        "IMAGE_VAR=overridden",
        "EXTRA=1",
        "HOSTNAME=berth-test",
        "HOME=/root",
        "cwd=/work/dir",
        "host=berth-test",
    ] {
        assert!(lines.contains(&want), "{want} missing from {lines:?}");
    }
}

#[test]
fn default_hostname_is_the_id_and_default_cwd_is_root() {
    let spec = sh("defaults", "hostname; pwd");
    let id = spec.id.clone();
    let out = run(spec);
    assert_eq!(out.stdout, format!("{id}\n/\n"));
}

#[test]
fn user_by_name_and_by_number() {
    let mut spec = sh("user-name", "id; echo home=$HOME; touch /home/app/mine");
    spec.user = Some("app".into());
    let out = run(spec);
    assert!(out.status.success(), "{}", out.stderr);
    assert!(out.stdout.contains("uid=1000(app)"), "{}", out.stdout);
    assert!(out.stdout.contains("gid=1000(app)"), "{}", out.stdout);
    assert!(out.stdout.contains("50(staff)"), "{}", out.stdout);
    assert!(out.stdout.contains("home=/home/app"), "{}", out.stdout);

    let mut spec = sh("user-num", "id -u; id -g; touch /root/x");
    spec.user = Some("1234:5678".into());
    let out = run(spec);
    assert_eq!(out.stdout, "1234\n5678\n");
    // Not root any more: root's home (0700) is closed to it.
    assert_ne!(out.status, ExitStatus::Exited(0));

    let mut spec = sh("user-group", "id -g");
    spec.user = Some("app:staff".into());
    assert_eq!(run(spec).stdout, "50\n");
}

#[test]
fn an_unknown_user_name_is_an_error() {
    let f = fixture();
    let mut spec = sh("user-missing", "true");
    spec.user = Some("nobody-here".into());
    let id = spec.id.clone();
    let layers = f
        .sandbox
        .layers()
        .unpack_image(&f.store, &f.busybox)
        .unwrap();
    let err = f.sandbox.create(&layers, spec).unwrap_err();
    assert!(
        matches!(err, SandboxError::User(UserError::NoSuchUser(ref u)) if u == "nobody-here"),
        "{err}"
    );
    assert!(!f.dir.join("bundles").join(&id).exists());
}

#[test]
fn a_missing_command_is_a_clear_error_and_leaves_nothing() {
    let f = fixture();
    let layers = f
        .sandbox
        .layers()
        .unpack_image(&f.store, &f.busybox)
        .unwrap();
    for cmd in ["/bin/nope", "nope"] {
        let mut spec = sh("nocmd", "");
        spec.cmd = Some(vec![cmd.into()]);
        let id = spec.id.clone();
        let err = f.sandbox.create(&layers, spec).unwrap_err();
        match &err {
            SandboxError::CommandNotFound { command, .. } => assert_eq!(command, cmd),
            other => panic!("expected CommandNotFound, got {other}"),
        }
        assert!(err.to_string().contains("not found"), "{err}");
        assert!(!f.dir.join("bundles").join(&id).exists());
        assert!(!f.dir.join("runtime").join(&id).exists());
        assert!(cgroup_dirs(&id).is_empty(), "{:?}", cgroup_dirs(&id));
        assert!(mounts_under(&f.dir.join("bundles").join(&id)).is_empty());
    }
    // A test running in parallel may hold a zombie for a moment (a container
    // killed before start, about to be reaped); a leaked one stays forever.
    wait_for("no zombie left by libcontainer", || {
        youki_zombies().is_empty()
    });
}

#[test]
fn no_command_at_all_is_an_error() {
    let f = fixture();
    let mut spec = sh("nocmd2", "");
    spec.cmd = Some(vec![]);
    spec.image.cmd = None;
    let layers = f
        .sandbox
        .layers()
        .unpack_image(&f.store, &f.busybox)
        .unwrap();
    let err = f.sandbox.create(&layers, spec).unwrap_err();
    assert!(err.to_string().contains("no command"), "{err}");
}

#[test]
fn bad_ids_and_duplicates_are_refused() {
    let f = fixture();
    let layers = f
        .sandbox
        .layers()
        .unpack_image(&f.store, &f.busybox)
        .unwrap();
    for bad in ["", "..", "a/b", "x y"] {
        let mut spec = sh("bad", "true");
        spec.id = bad.into();
        let err = f.sandbox.create(&layers, spec).unwrap_err();
        assert!(matches!(err, SandboxError::InvalidId(_)), "{bad}: {err}");
    }
    let spec = sh("dup", "true");
    let mut dup = sh("dup", "true");
    dup.id = spec.id.clone();
    let c = f.sandbox.create(&layers, spec).unwrap();
    let err = f.sandbox.create(&layers, dup).unwrap_err();
    assert!(matches!(err, SandboxError::Exists(_)), "{err}");
    c.delete().unwrap();
}

#[test]
fn output_to_null_is_discarded_without_write_errors() {
    // libcontainer 0.7 turns a /dev/null stdout into a read-only one; the
    // sandbox must not let that make `echo` fail.
    let mut spec = sh("null", "echo discarded && echo also >&2 && exit 3");
    spec.stdout = berth_sandbox::Stdio::Null;
    spec.stderr = berth_sandbox::Stdio::File("/dev/null".into());
    let mut c = create(spec);
    c.start().unwrap();
    assert_eq!(c.wait().unwrap(), ExitStatus::Exited(3));
    c.delete().unwrap();
}
