//! pause / resume: the freezer cgroup.

use crate::support::*;
use berth_sandbox::{ExecSpec, SandboxError};
use std::fs;
use std::time::Duration;

const COUNTER: &str = "i=0; while true; do i=$((i+1)); echo $i > /tmp/count; sleep 0.01; done";

fn count(c: &berth_sandbox::Container) -> u64 {
    fs::read_to_string(c.rootfs().join("tmp/count"))
        .unwrap_or_default()
        .trim()
        .parse()
        .unwrap_or(0)
}

#[test]
fn a_paused_container_stops_counting_until_resumed() {
    let sandbox = &fixture().sandbox;
    let mut c = create(sh("pause", COUNTER));
    c.start().unwrap();
    wait_for("the counter to start", || count(&c) > 3);
    sandbox.pause(c.id()).unwrap();
    // A write in flight may land just after the freeze.
    std::thread::sleep(Duration::from_millis(50));
    let frozen = count(&c);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(count(&c), frozen, "the counter advanced while paused");

    let err = sandbox.pause(c.id()).unwrap_err();
    assert!(err.to_string().contains("not running"), "{err}");
    let exec = ExecSpec {
        args: vec!["true".into()],
        ..Default::default()
    };
    let err = sandbox.exec(c.id(), exec).unwrap_err();
    assert!(err.to_string().contains("paused"), "{err}");

    sandbox.resume(c.id()).unwrap();
    wait_for("the counter to advance again", || count(&c) > frozen + 3);
    let err = sandbox.resume(c.id()).unwrap_err();
    assert!(err.to_string().contains("not paused"), "{err}");
    assert_eq!(c.try_wait().unwrap(), None);
    c.delete().unwrap();
}

#[test]
fn a_paused_container_can_be_killed_and_deleted() {
    let sandbox = &fixture().sandbox;
    let mut c = create(sh("pause-kill", COUNTER));
    c.start().unwrap();
    sandbox.pause(c.id()).unwrap();
    c.kill(libc::SIGKILL).unwrap();
    assert_eq!(
        c.wait().unwrap(),
        berth_sandbox::ExitStatus::Signaled(libc::SIGKILL)
    );
    c.delete().unwrap();

    let mut c = create(sh("pause-delete", COUNTER));
    c.start().unwrap();
    let id = c.id().to_string();
    sandbox.pause(&id).unwrap();
    c.delete().unwrap();
    assert!(cgroup_dirs(&id).is_empty(), "{:?}", cgroup_dirs(&id));

    let mut c = create(sh("pause-remove", COUNTER));
    c.start().unwrap();
    let (id, pid) = (c.id().to_string(), c.pid());
    sandbox.pause(&id).unwrap();
    drop(c);
    sandbox.remove(&id).unwrap();
    wait_for("the paused container's init to go", || !process_exists(pid));

    let err = sandbox.pause("it-no-such-container").unwrap_err();
    assert!(matches!(err, SandboxError::NoSuchContainer(_)), "{err}");
}
