//! Ctrl-C and SIGTERM as a flag: a command (or the supervisor) checks it
//! between steps and undoes what it started; the handler only sets it,
//! since nothing else is async-signal-safe.

use std::sync::atomic::{AtomicBool, Ordering};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// True once Ctrl-C or SIGTERM arrived.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Set in a command a user runs (not the supervisor): a second Ctrl-C
/// leaves at once instead of waiting for a graceful stop.
static SECOND_EXITS: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    if INTERRUPTED.swap(true, Ordering::SeqCst) && SECOND_EXITS.load(Ordering::SeqCst) {
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(130) };
    }
}

/// [`install_signal_handlers`] for a user's command: as there, and a second
/// Ctrl-C exits at once (130).
pub fn install_client_signal_handlers() {
    SECOND_EXITS.store(true, Ordering::SeqCst);
    install_signal_handlers();
}

/// Ctrl-C and SIGTERM set the flag [`interrupted`] reads.
pub fn install_signal_handlers() {
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
}
