//! What runs the builder's `RUN` steps: berth's sandbox, on the build's
//! network. A berth built without the embedded runtime (no libcontainer)
//! still builds Dockerfiles without `RUN`, and says why when one has it.

use berth_image::builder::RunSteps;

#[cfg(feature = "runtime")]
mod network;

/// Call `f` with the runner for one build; it cleans up (the build's
/// network namespace) when `f` returns.
#[cfg(feature = "runtime")]
pub fn with_runner<T>(f: impl FnOnce(&(dyn RunSteps + Sync)) -> T) -> T {
    // Ctrl-C (once handlers are installed) stops the running step and
    // removes its container and mounts.
    let sandbox = berth_sandbox::BuildRunner::new(berth_oci::store::state_dir().join("sandbox"))
        .with_interrupt(crate::up_cmd::interrupted);
    let runner = network::BuildNetworkRunner::new(&sandbox);
    f(&runner)
}

#[cfg(not(feature = "runtime"))]
pub fn with_runner<T>(f: impl FnOnce(&(dyn RunSteps + Sync)) -> T) -> T {
    f(&berth_image::builder::NoRun)
}
