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

/// A `berth attach` running in the background, its output collected.
pub struct Attached {
    pub child: std::process::Child,
    output: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl Attached {
    /// Start `cmd` (a `berth attach …`) with `tty`'s slave as its stdin,
    /// stdout and stderr and its output read from the master, or a pipe
    /// each when `None`.
    pub fn spawn(
        mut cmd: std::process::Command,
        tty: Option<(std::fs::File, std::fs::File)>,
    ) -> Attached {
        use std::process::Stdio;
        let output = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut reader: Box<dyn std::io::Read + Send> = match tty {
            Some((slave, master)) => {
                cmd.stdin(Stdio::from(slave.try_clone().unwrap()))
                    .stdout(Stdio::from(slave.try_clone().unwrap()))
                    .stderr(Stdio::from(slave));
                Box::new(master)
            }
            None => {
                cmd.stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped());
                Box::new(std::io::empty())
            }
        };
        let mut child = cmd.spawn().unwrap();
        if let Some(out) = child.stdout.take() {
            reader = Box::new(out);
        }
        let sink = output.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Attached { child, output }
    }

    pub fn seen(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }

    /// Waits (bounded) until the output contains `needle`.
    pub fn wait_for(&self, needle: &str) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !self.seen().contains(needle) {
            assert!(
                std::time::Instant::now() < deadline,
                "{needle:?} not in {:?}",
                self.seen()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        use std::io::Write;
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(bytes).unwrap();
        stdin.flush().unwrap();
    }

    /// Its exit code, waiting (bounded) for it to end.
    pub fn code(&mut self) -> i32 {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(
                std::time::Instant::now() < deadline,
                "attach did not end: {}",
                self.seen()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
