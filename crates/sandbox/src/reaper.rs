//! Our children that live in another container's PID namespace.
//!
//! When the init of a PID namespace exits, the kernel kills every other
//! process of the namespace and the init does not finish exiting (its
//! pidfd never turns ready, a blocking wait on it never returns) until all
//! of them are reaped. Some of them are this process's children: the init
//! of a container that joined the namespace (`pid: service:…`, created
//! with `CLONE_PARENT`) and processes exec'd into the container. Their own
//! handles reap them, but a caller blocked on the init's handle (stopping
//! the donor) would wait forever for a reap that only it could do.
//!
//! So each such child is registered under the init of the namespace it
//! lives in; a blocking wait on an init reaps its registered members
//! (recursively, for an exec into a joiner) while it waits, and keeps
//! their exit statuses for their own handles to take.

use crate::container::ExitStatus;
use crate::sys;
use std::collections::BTreeMap;
use std::sync::Mutex;

#[derive(Default)]
struct Registry {
    /// Init pid → our unreaped children in its PID namespace.
    members: BTreeMap<i32, Vec<i32>>,
    /// Statuses reaped on behalf of a member's handle.
    reaped: BTreeMap<i32, ExitStatus>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    members: BTreeMap::new(),
    reaped: BTreeMap::new(),
});

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    // Nothing is left half-updated by a panic while it is held.
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

/// `child` (our unreaped child) lives in the PID namespace of `init`.
pub(crate) fn register(init: i32, child: i32) {
    registry().members.entry(init).or_default().push(child);
}

/// `pid` was reaped by its own handle: it is no longer anyone's member, and
/// no member of its own can block anything now.
pub(crate) fn forget(pid: i32) {
    let mut r = registry();
    for list in r.members.values_mut() {
        list.retain(|p| *p != pid);
    }
    r.members.retain(|_, list| !list.is_empty());
}

/// The status of `pid` if it was reaped on its handle's behalf.
pub(crate) fn take(pid: i32) -> Option<ExitStatus> {
    registry().reaped.remove(&pid)
}

/// Does anything live in `init`'s namespace that a wait on it must reap?
pub(crate) fn has_members(init: i32) -> bool {
    registry().members.contains_key(&init)
}

/// Reap the members of `init`'s namespace that have exited (and theirs),
/// keeping their statuses for [`take`].
pub(crate) fn reap_members(init: i32) {
    let mut r = registry();
    let mut pending = r.members.get(&init).cloned().unwrap_or_default();
    while let Some(pid) = pending.pop() {
        if let Some(own) = r.members.get(&pid) {
            pending.extend(own.iter().copied());
        }
        // Registered and not yet reaped by its handle (which would have
        // called `forget`): still our child, so the pid is its own.
        if let Ok(Some(status)) = sys::wait_pid_nohang(pid) {
            r.reaped.insert(pid, ExitStatus::from(status));
            for list in r.members.values_mut() {
                list.retain(|p| *p != pid);
            }
        }
    }
    r.members.retain(|_, list| !list.is_empty());
}
