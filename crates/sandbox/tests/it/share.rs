//! Sharing the IPC, PID and UTS namespaces: with the host, with another
//! container of the sandbox, or by a namespace file's path.

use crate::support::*;
use berth_sandbox::{Container, Ipc, Namespace, SandboxError, SpecError};
use std::fs;

/// A started container that runs `script` and then sleeps until deleted.
fn donor(
    name: &str,
    script: &str,
    edit: impl FnOnce(&mut berth_sandbox::ContainerSpec),
) -> Container {
    let mut spec = sh(name, &format!("{script}; exec sleep 1000"));
    edit(&mut spec);
    let mut c = create(spec);
    c.start().unwrap();
    c
}

fn ns_of(pid: &str, kind: &str) -> String {
    fs::read_link(format!("/proc/{pid}/ns/{kind}"))
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

fn lines(out: &Output) -> Vec<String> {
    assert!(out.status.success(), "{:?}: {}", out.status, out.stderr);
    out.stdout.lines().map(str::to_string).collect()
}

#[test]
fn a_shareable_ipc_namespace_and_its_dev_shm_are_joined_by_another_container() {
    let a = donor("ipc-donor", "echo from-donor > /dev/shm/marker", |s| {
        s.ipc = Ipc::Shareable;
        s.shm_size = Some(4 << 20);
    });
    wait_for("the donor's /dev/shm marker", || {
        fs::read_to_string(format!("/proc/{}/root/dev/shm/marker", a.pid())).is_ok()
    });
    let mut spec = sh(
        "ipc-joiner",
        "readlink /proc/self/ns/ipc; cat /dev/shm/marker; echo from-joiner > /dev/shm/back",
    );
    spec.ipc = Ipc::Container(a.id().to_string());
    let out = lines(&run(spec));
    assert_eq!(
        out,
        [ns_of(&a.pid().to_string(), "ipc"), "from-donor".into()]
    );
    // Both ways: the joiner's write is in the donor's /dev/shm.
    assert_eq!(
        fs::read_to_string(format!("/proc/{}/root/dev/shm/back", a.pid())).unwrap(),
        "from-joiner\n"
    );

    // A private container has neither.
    let out = run(sh(
        "ipc-private",
        "readlink /proc/self/ns/ipc; test -e /dev/shm/marker && echo shared; true",
    ));
    let out = lines(&out);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_ne!(out[0], ns_of(&a.pid().to_string(), "ipc"));
    a.delete().unwrap();
}

#[test]
fn joining_a_private_missing_or_stopped_ipc_namespace_is_a_clear_error() {
    let f = fixture();
    let layers = f
        .sandbox
        .layers()
        .unpack_image(&f.store, &f.busybox)
        .unwrap();
    let private = donor("ipc-private-donor", "true", |_| {});
    let mut spec = sh("ipc-join-private", "true");
    spec.ipc = Ipc::Container(private.id().to_string());
    let err = f.sandbox.create(&layers, spec).unwrap_err();
    assert!(
        matches!(&err, SandboxError::Join { kind: "ipc", .. }),
        "{err}"
    );
    assert!(err.to_string().contains("not shareable"), "{err}");
    private.delete().unwrap();

    let mut spec = sh("ipc-join-missing", "true");
    spec.pid = Namespace::Container("no-such-container".into());
    let err = f.sandbox.create(&layers, spec).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot join the pid namespace of container no-such-container: no such container"
    );

    let mut stopped = create(sh("ipc-stopped", "true"));
    stopped.start().unwrap();
    stopped.wait().unwrap();
    let mut spec = sh("ipc-join-stopped", "true");
    spec.pid = Namespace::Container(stopped.id().to_string());
    let err = f.sandbox.create(&layers, spec).unwrap_err();
    assert!(err.to_string().contains("it is not running"), "{err}");
    stopped.delete().unwrap();

    // Nothing was left of the refused containers.
    let bundles: Vec<String> = fs::read_dir(f.dir.join("bundles"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("ipc-join"))
        .collect();
    assert!(bundles.is_empty(), "{bundles:?}");
}

#[test]
fn the_hosts_ipc_namespace_comes_with_the_hosts_dev_shm() {
    let name = format!("berth-it-{}", std::process::id());
    let host_file = std::path::Path::new("/dev/shm").join(&name);
    fs::write(&host_file, "from-host\n").unwrap();
    let mut spec = sh(
        "ipc-host",
        &format!("readlink /proc/self/ns/ipc; cat /dev/shm/{name}"),
    );
    spec.ipc = Ipc::Host;
    let out = run(spec);
    let _ = fs::remove_file(&host_file);
    assert_eq!(lines(&out), [ns_of("self", "ipc"), "from-host".into()]);

    // A host IPC namespace's parameters are the host's: not to be set.
    let f = fixture();
    let layers = f
        .sandbox
        .layers()
        .unpack_image(&f.store, &f.busybox)
        .unwrap();
    let mut spec = sh("ipc-host-sysctl", "true");
    spec.ipc = Ipc::Host;
    spec.sysctls = vec![("kernel.shmmax".into(), "1".into())];
    let err = f.sandbox.create(&layers, spec).unwrap_err();
    assert!(
        matches!(err, SandboxError::Spec(SpecError::Sysctl { .. })),
        "{err}"
    );
    let mut spec = sh("ipc-host-shm", "true");
    spec.ipc = Ipc::Host;
    spec.shm_size = Some(1 << 20);
    let err = f.sandbox.create(&layers, spec).unwrap_err();
    assert!(err.to_string().contains("shm_size"), "{err}");
}

#[test]
fn a_pid_namespace_is_shared_with_another_container_or_the_host() {
    let a = donor("pid-donor", "true", |_| {});
    let mut spec = sh(
        "pid-joiner",
        "readlink /proc/self/ns/pid; ps -o pid,args | grep -c 'sleep 1000'",
    );
    spec.pid = Namespace::Container(a.id().to_string());
    let out = lines(&run(spec));
    assert_eq!(out[0], ns_of(&a.pid().to_string(), "pid"));
    // The donor's sleep is visible from the joiner (grep counts itself too).
    assert!(out[1].parse::<u32>().unwrap() >= 1, "{out:?}");

    // By path, the same namespace.
    let mut spec = sh("pid-path", "readlink /proc/self/ns/pid");
    spec.pid = Namespace::Path(format!("/proc/{}/ns/pid", a.pid()).into());
    assert_eq!(lines(&run(spec)), [ns_of(&a.pid().to_string(), "pid")]);
    a.delete().unwrap();

    // The host's: the command is not PID 1 and sees this test process.
    let me = std::process::id();
    let mut spec = sh(
        "pid-host",
        &format!("readlink /proc/self/ns/pid; echo $$; test -d /proc/{me} && echo sees-host"),
    );
    spec.pid = Namespace::Host;
    let out = lines(&run(spec));
    assert_eq!(out[0], ns_of("self", "pid"));
    assert_ne!(out[1], "1");
    assert_eq!(out[2], "sees-host");
}

#[test]
fn a_uts_namespace_is_shared_with_its_hostname() {
    let host = fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string();
    let mut spec = sh(
        "uts-host",
        "readlink /proc/self/ns/uts; hostname; echo $HOSTNAME",
    );
    spec.uts = Namespace::Host;
    assert_eq!(
        lines(&run(spec)),
        [ns_of("self", "uts"), host.clone(), host.clone()]
    );

    let a = donor("uts-donor", "true", |s| {
        s.hostname = Some("donor-host".into())
    });
    let mut spec = sh(
        "uts-joiner",
        "readlink /proc/self/ns/uts; hostname; echo $HOSTNAME",
    );
    spec.uts = Namespace::Container(a.id().to_string());
    assert_eq!(
        lines(&run(spec)),
        [
            ns_of(&a.pid().to_string(), "uts"),
            "donor-host".into(),
            "donor-host".into()
        ]
    );
    a.delete().unwrap();

    // A hostname cannot be given to a namespace that is not the container's.
    let f = fixture();
    let layers = f
        .sandbox
        .layers()
        .unpack_image(&f.store, &f.busybox)
        .unwrap();
    let mut spec = sh("uts-host-name", "true");
    spec.uts = Namespace::Host;
    spec.hostname = Some("mine".into());
    let err = f.sandbox.create(&layers, spec).unwrap_err();
    assert!(
        matches!(err, SandboxError::Spec(SpecError::Conflict(_))),
        "{err}"
    );
    assert!(err.to_string().contains("UTS namespace"), "{err}");
}

#[test]
fn a_private_cgroup_namespace_shows_the_containers_cgroup_as_the_root() {
    let mut spec = sh(
        "cgroupns",
        "readlink /proc/self/ns/cgroup; grep -c ':/$' /proc/self/cgroup; wc -l < /proc/self/cgroup",
    );
    spec.cgroup_private = true;
    let out = lines(&run(spec));
    assert_ne!(out[0], ns_of("self", "cgroup"));
    // Every hierarchy's line ends in `:/`.
    assert_eq!(out[1], out[2], "{out:?}");

    let spec = sh(
        "cgroupns-host",
        "readlink /proc/self/ns/cgroup; cat /proc/self/cgroup",
    );
    let id = spec.id.clone();
    let out = lines(&run(spec));
    assert_eq!(out[0], ns_of("self", "cgroup"));
    assert!(
        out.iter().any(|l| l.ends_with(&format!("/berth/{id}"))),
        "{out:?}"
    );
}

/// The init of a PID namespace does not finish exiting until every process
/// in it is reaped, our joined containers and exec'd processes included: a
/// blocking wait on it reaps them, and their handles still get their
/// statuses.
#[test]
fn waiting_on_a_pid_namespaces_init_reaps_the_containers_that_joined_it() {
    let mut a = donor("pid-wait-donor", "true", |_| {});
    let mut spec = sh("pid-wait-joiner", "exec sleep 1000");
    spec.pid = Namespace::Container(a.id().to_string());
    let mut b = create(spec);
    b.start().unwrap();
    let exec = berth_sandbox::ExecSpec {
        args: vec!["sleep".into(), "1000".into()],
        ..Default::default()
    };
    let mut p = fixture().sandbox.exec(a.id(), exec).unwrap();
    a.kill(libc::SIGKILL).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let status = a.wait();
        let _ = tx.send(());
        (a, status)
    });
    assert!(
        rx.recv_timeout(std::time::Duration::from_secs(10)).is_ok(),
        "the donor's init never finished exiting"
    );
    let (a, status) = waiter.join().unwrap();
    assert_eq!(
        status.unwrap(),
        berth_sandbox::ExitStatus::Signaled(libc::SIGKILL)
    );
    // The kernel killed the others with it; their handles see that.
    assert_eq!(
        b.wait().unwrap(),
        berth_sandbox::ExitStatus::Signaled(libc::SIGKILL)
    );
    assert_eq!(
        p.wait().unwrap(),
        berth_sandbox::ExitStatus::Signaled(libc::SIGKILL)
    );
    b.delete().unwrap();
    a.delete().unwrap();
    assert!(youki_zombies().is_empty());
}
