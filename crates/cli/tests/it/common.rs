use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn conformance() -> PathBuf {
    berth_compose::normalize::clean_path(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance"),
    )
}

pub fn repo() -> PathBuf {
    berth_compose::normalize::clean_path(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
}

/// `berth` with a clean environment (only PATH and a fixed HOME) in `cwd`.
pub fn berth(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
    cmd.current_dir(cwd).args(args).env_clear();
    cmd.env("PATH", std::env::var("PATH").unwrap_or_default());
    cmd.env("HOME", "/home/tester");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run berth")
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub fn report(suite: &str, passed: usize, total: usize, notes: &[String]) {
    println!("conformance {suite}: {passed}/{total} passed");
    for n in notes {
        println!("  {n}");
    }
}

/// Cgroup directories named for a container of `project` (`<project>-…`)
/// in every mounted hierarchy, cgroup v1 and v2 alike: whatever path the
/// runtime chose, a leaked cgroup is found.
pub fn cgroups_left(project: &str) -> Vec<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let prefix = format!("{project}-");
    let mut left = Vec::new();
    for line in mounts.lines() {
        // "… mountpoint options … - fstype source superoptions"
        let mut halves = line.splitn(2, " - ");
        let (Some(head), Some(tail)) = (halves.next(), halves.next()) else {
            continue;
        };
        let fstype = tail.split_whitespace().next().unwrap_or_default();
        if fstype != "cgroup" && fstype != "cgroup2" {
            continue;
        }
        if let Some(point) = head.split_whitespace().nth(4) {
            find_named(Path::new(point), &prefix, 6, &mut left);
        }
    }
    left
}

fn find_named(dir: &Path, prefix: &str, depth: u32, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        if e.file_name().to_string_lossy().starts_with(prefix) {
            out.push(e.path());
        } else if depth > 0 {
            find_named(&e.path(), prefix, depth - 1, out);
        }
    }
}
