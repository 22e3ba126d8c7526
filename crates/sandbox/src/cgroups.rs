//! The cgroup settings libcgroups 0.7 does not make on its own.
//!
//! libcgroups writes `linux.resources` into the container's cgroup, but:
//! - it never honours `disableOOMKiller` (it writes 0 to
//!   `memory.oom_control` whenever there is a memory section), nor v1's
//!   per-device block I/O weights: [`apply_after_build`] writes them once
//!   the cgroup exists, before the container starts;
//! - a real-time runtime can only be given to a cgroup whose parents hold
//!   that much real-time budget, and a new cgroup's is 0. Docker leaves
//!   that to its daemon's `--cpu-rt-runtime`; [`reserve_rt`] raises the
//!   parents' budget as far as the container needs, and writes the period
//!   before the runtime (libcgroups writes them the other way round, which
//!   fails when the runtime is longer than the old period).

use crate::spec::{ContainerSpec, SpecError};
use std::fs;
use std::path::{Path, PathBuf};

/// Where the v1 hierarchy holding `controller` is mounted, if any.
pub(crate) fn v1_mount(controller: &str) -> Option<PathBuf> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").ok()?;
    mountinfo.lines().find_map(|line| {
        // `id parent dev root mountpoint opts [optional...] - fstype source superopts`
        let (left, right) = line.split_once(" - ")?;
        let mut right = right.split(' ');
        let (fstype, _, superopts) = (right.next()?, right.next()?, right.next()?);
        let mountpoint = left.split(' ').nth(4)?;
        (fstype == "cgroup" && superopts.split(',').any(|o| o == controller))
            .then(|| PathBuf::from(mountpoint))
    })
}

fn read_number(path: &Path) -> Option<i64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The share of CPU time a cgroup may spend in real-time tasks.
fn rt_ratio(dir: &Path) -> f64 {
    let runtime = read_number(&dir.join("cpu.rt_runtime_us")).unwrap_or(0);
    let period = read_number(&dir.join("cpu.rt_period_us")).unwrap_or(1_000_000);
    if runtime <= 0 || period <= 0 {
        0.0
    } else {
        runtime as f64 / period as f64
    }
}

/// Give the cgroup at `cgroups_path` (from the hierarchy's root) a
/// real-time `runtime` per `period` µs, raising the budget of each parent
/// (top down, as the kernel requires) to what its children then hold.
pub(crate) fn reserve_rt(cgroups_path: &str, runtime: i64, period: u64) -> Result<(), SpecError> {
    let unavailable = |reason: String| SpecError::Unavailable {
        what: "cpu_rt_runtime",
        reason,
    };
    let root = v1_mount("cpu").ok_or_else(|| unavailable("no cgroup v1 cpu hierarchy".into()))?;
    let comps: Vec<&str> = cgroups_path.split('/').filter(|c| !c.is_empty()).collect();
    let dirs: Vec<PathBuf> = (1..=comps.len())
        .map(|n| root.join(comps[..n].join("/")))
        .collect();
    let Some(leaf) = dirs.last() else {
        return Ok(());
    };
    // What each cgroup on the path must hold: its other children's budget
    // plus what the next one down needs, bottom up.
    let mut need = vec![0.0; dirs.len()];
    need[dirs.len() - 1] = runtime.max(0) as f64 / period as f64;
    for i in (0..dirs.len() - 1).rev() {
        let others: f64 = fs::read_dir(&dirs[i])
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()) && e.path() != dirs[i + 1])
                    .map(|e| rt_ratio(&e.path()))
                    .sum()
            })
            .unwrap_or(0.0);
        need[i] = (others + need[i + 1]).max(rt_ratio(&dirs[i]));
    }
    let write = |path: PathBuf, value: i64| {
        fs::write(&path, value.to_string()).map_err(|e| {
            unavailable(format!(
                "writing {value} to {}: {e} (the host's real-time budget is smaller than asked)",
                path.display()
            ))
        })
    };
    for (dir, need) in dirs.iter().zip(&need).take(dirs.len() - 1) {
        fs::create_dir_all(dir).map_err(|e| unavailable(format!("{}: {e}", dir.display())))?;
        let period = read_number(&dir.join("cpu.rt_period_us")).unwrap_or(1_000_000);
        let want = (need * period as f64).ceil() as i64;
        if read_number(&dir.join("cpu.rt_runtime_us")).unwrap_or(0) < want {
            write(dir.join("cpu.rt_runtime_us"), want)?;
        }
    }
    fs::create_dir_all(leaf).map_err(|e| unavailable(format!("{}: {e}", leaf.display())))?;
    write(leaf.join("cpu.rt_period_us"), period as i64)?;
    write(leaf.join("cpu.rt_runtime_us"), runtime.max(0))
}

/// Remove the container's cpu cgroup if [`reserve_rt`] made it and the
/// container was never created in it. An rmdir, so a cgroup with tasks
/// stays.
pub(crate) fn remove_rt_leaf(cgroups_path: &str) {
    if let Some(root) = v1_mount("cpu") {
        let _ = fs::remove_dir(root.join(cgroups_path.trim_start_matches('/')));
    }
}

/// What libcgroups leaves unwritten (see the module doc), into the
/// container's existing cgroup.
pub(crate) fn apply_after_build(spec: &ContainerSpec, cgroups_path: &str) -> Result<(), String> {
    let rel = cgroups_path.trim_start_matches('/');
    if spec.oom_kill_disable {
        if let Some(root) = v1_mount("memory") {
            let path = root.join(rel).join("memory.oom_control");
            fs::write(&path, "1").map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    if !spec.blkio.weight_device.is_empty() && !crate::spec::cgroup_v2() {
        let root = v1_mount("blkio").ok_or("no cgroup v1 blkio hierarchy")?;
        let dir = root.join(rel);
        let file = ["blkio.weight_device", "blkio.bfq.weight_device"]
            .iter()
            .map(|f| dir.join(f))
            .find(|p| p.exists())
            .ok_or("the block I/O cgroup has no per-device weights")?;
        for (device, weight) in &spec.blkio.weight_device {
            use std::os::unix::fs::MetadataExt;
            let rdev = fs::metadata(device)
                .map_err(|e| format!("{}: {e}", device.display()))?
                .rdev();
            let line = format!("{}:{} {weight}", libc::major(rdev), libc::minor(rdev));
            fs::write(&file, &line).map_err(|e| format!("{}: {line}: {e}", file.display()))?;
        }
    }
    Ok(())
}
