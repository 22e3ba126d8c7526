//! Container log files: how the supervisor writes each container's output
//! and how `logs` (and an attached `up`) read and follow them.
//!
//! Each line of `logs/<container>.log` is `<RFC 3339 UTC time> <text>`.

use berth_engine::backend::LogLine;
use berth_engine::time::timestamp_now;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Where container output goes (the supervisor writes it to log files, an
/// attached `up` prefixes and colours it).
pub trait LogSink: Send + Sync {
    fn line(&self, container: &str, line: &str);
    /// Several lines of one container at once (what a poll read).
    fn lines(&self, container: &str, lines: &[String]) {
        for l in lines {
            self.line(container, l);
        }
    }
    /// The service's `logging:` settings for `container`, before its first
    /// line (checked already: the driver is json-file, local or none).
    fn configure(&self, _container: &str, _logging: Option<&serde_json::Value>) {}
}

/// A stored line → (time, text). Lines without a stamp are all text.
pub fn split(line: &str) -> (&str, &str) {
    match line.split_once(' ') {
        Some((t, rest)) if t.len() >= 20 && t.ends_with('Z') && t.as_bytes()[4] == b'-' => {
            (t, rest)
        }
        _ => ("", line),
    }
}

/// A container's `logging:` settings that berth acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    pub driver: String,
    /// Rotate once the file would pass this many bytes.
    pub max_size: Option<u64>,
    /// Files kept, the current one included (at least 1).
    pub max_file: u32,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            driver: "json-file".into(),
            max_size: None,
            max_file: 1,
        }
    }
}

impl LogConfig {
    /// From compose's `logging: {driver, options: {max-size, max-file}}`;
    /// `local` rotates by default as docker's does (20 MB × 5).
    pub fn from_compose(logging: Option<&serde_json::Value>) -> LogConfig {
        let driver = logging
            .and_then(|l| l.get("driver"))
            .and_then(|d| d.as_str())
            .unwrap_or("json-file")
            .to_string();
        let option = |k: &str| {
            logging
                .and_then(|l| l.get("options"))
                .and_then(|o| o.get(k))
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string())
                })
        };
        let local = driver == "local";
        let max_size = option("max-size")
            .and_then(|s| berth_compose::units::parse_bytes(&s))
            .or(local.then_some(20 << 20));
        let max_file = option("max-file")
            .and_then(|s| s.parse().ok())
            .unwrap_or(if local { 5 } else { 1 })
            .max(1);
        LogConfig {
            driver,
            max_size,
            max_file,
        }
    }
}

/// Which lines [`Follower::pump`] passes on.
#[derive(Debug, Default)]
pub struct LineFilter {
    /// The last N lines of each container (the first pump only).
    pub tail: Option<usize>,
    pub since: Option<String>,
    pub until: Option<String>,
}

/// The service of container `<project>-<service>-<n>`.
fn service_of(project: &str, container: &str) -> String {
    container
        .strip_prefix(&format!("{project}-"))
        .and_then(|r| r.rsplit_once('-').map(|(s, _)| s.to_string()))
        .unwrap_or_else(|| container.to_string())
}

fn emit(
    filter: &LineFilter,
    service: &str,
    container: &str,
    stored: &str,
    sink: &mut dyn FnMut(LogLine),
) {
    let (time, text) = split(stored);
    if filter.since.as_deref().is_some_and(|s| time < s)
        || filter.until.as_deref().is_some_and(|u| time >= u)
    {
        return;
    }
    sink(LogLine {
        container: container.to_string(),
        service: service.to_string(),
        stderr: false,
        time: (!time.is_empty()).then(|| time.to_string()),
        text: text.to_string(),
    });
}

/// Shift `<path>.1`… up by one, dropping what passes `max_file`, and move
/// the current file to `<path>.1`. With `max_file` 1 the current file just
/// starts over, as docker's json-file does.
pub fn rotate(path: &Path, max_file: u32) {
    let numbered = |n: u32| PathBuf::from(format!("{}.{n}", path.display()));
    if max_file <= 1 {
        let _ = fs::remove_file(path);
        return;
    }
    let _ = fs::remove_file(numbered(max_file - 1));
    for n in (1..max_file - 1).rev() {
        let _ = fs::rename(numbered(n), numbered(n + 1));
    }
    let _ = fs::rename(path, numbered(1));
}

/// The rotated files of `path`, oldest first.
fn rotated(path: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for n in 1.. {
        let p = PathBuf::from(format!("{}.{n}", path.display()));
        if !p.exists() {
            break;
        }
        out.push(p);
    }
    out.reverse();
    out
}

/// Follows every `*.log` in a directory, picking up new ones as they appear.
pub struct Follower {
    dir: PathBuf,
    /// (container, file, colour index)
    files: Vec<(String, fs::File, usize)>,
    /// Lines read from rotated files when a container's log was first
    /// opened from its start, printed before the current file's.
    backlog: Vec<(usize, String)>,
    /// Only containers of these services (all when empty).
    services: Vec<String>,
    project: String,
    /// Lines of files found later start at their beginning; files present
    /// at the start start at these offsets.
    start: std::collections::HashMap<String, u64>,
}

impl Follower {
    /// `from_end`: skip what the files already hold (an attached `up` shows
    /// only new output).
    pub fn new(dir: &Path, project: &str, services: &[String], from_end: bool) -> Follower {
        let mut start = std::collections::HashMap::new();
        if from_end {
            for (name, path) in log_files(dir) {
                let len = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                start.insert(name, len);
            }
        }
        Follower {
            dir: dir.to_path_buf(),
            files: Vec::new(),
            services: services.to_vec(),
            project: project.to_string(),
            start,
            backlog: Vec::new(),
        }
    }

    fn discover(&mut self) {
        for (name, path) in log_files(&self.dir) {
            if self.files.iter().any(|(n, _, _)| *n == name) {
                continue;
            }
            if !self.services.is_empty()
                && !self.services.contains(&service_of(&self.project, &name))
            {
                continue;
            }
            let Ok(mut f) = fs::File::open(&path) else {
                continue;
            };
            let i = self.files.len();
            match self.start.get(&name) {
                Some(&off) => {
                    let _ = f.seek(SeekFrom::Start(off));
                }
                None => {
                    for r in rotated(&path) {
                        let text = fs::read_to_string(&r).unwrap_or_default();
                        self.backlog
                            .extend(text.lines().map(|l| (i, l.to_string())));
                    }
                }
            }
            self.files.push((name, f, i));
        }
    }

    /// Every whole line written since the last call, per container in
    /// turn, within `since`/`until` (canonical stamps).
    pub fn pump(&mut self, filter: &mut LineFilter, sink: &mut dyn FnMut(LogLine)) {
        self.discover();
        let tail = filter.tail.take();
        let dir = self.dir.clone();
        let project = self.project.clone();
        for (name, f, i) in &mut self.files {
            // Rotated under us: finish the old file, then follow the new one.
            let path = dir.join(format!("{name}.log"));
            let replaced = match (fs::metadata(&path), f.metadata()) {
                (Ok(now), Ok(open)) => {
                    use std::os::unix::fs::MetadataExt;
                    now.ino() != open.ino()
                }
                _ => false,
            };
            if replaced {
                let mut rest = String::new();
                let _ = f.read_to_string(&mut rest);
                for l in rest.lines() {
                    emit(filter, &service_of(&project, name), name, l, sink);
                }
                if let Ok(new) = fs::File::open(&path) {
                    *f = new;
                }
            }
            let Ok(pos) = f.stream_position() else {
                continue;
            };
            let mut text = String::new();
            if f.read_to_string(&mut text).is_err() {
                continue;
            }
            // Only whole lines; a partial one is read again next time.
            let end = match text.rfind('\n') {
                Some(end) => {
                    let _ = f.seek(SeekFrom::Start(pos + end as u64 + 1));
                    end
                }
                None => {
                    let _ = f.seek(SeekFrom::Start(pos));
                    0
                }
            };
            let earlier: Vec<String> = self
                .backlog
                .iter()
                .filter(|(j, _)| j == i)
                .map(|(_, l)| l.clone())
                .collect();
            let mut lines: Vec<&str> = earlier.iter().map(String::as_str).collect();
            lines.extend(text[..end].lines());
            let skip = tail.map(|t| lines.len().saturating_sub(t)).unwrap_or(0);
            for l in &lines[skip..] {
                emit(filter, &service_of(&project, name), name, l, sink);
            }
        }
        self.backlog.clear();
    }
}

fn log_files(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut out: Vec<(String, PathBuf)> = fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "log"))
                .filter_map(|p| {
                    let stem = p.file_stem()?.to_string_lossy().into_owned();
                    Some((stem, p))
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Container output to `logs/<container>.log`, one line per line,
/// prefixed with the time it was read (for `logs -t`), rotated to
/// `<container>.log.1`… by `logging.options` `max-size`/`max-file`.
pub struct FileLogs {
    dir: PathBuf,
    files: Mutex<std::collections::HashMap<String, LogFile>>,
    configs: Mutex<std::collections::HashMap<String, LogConfig>>,
    /// Lines that could not be written (a full disk), per container, and
    /// why: said in one marker line once writing works again.
    lost: Mutex<std::collections::HashMap<String, (u64, String)>>,
}

struct LogFile {
    file: fs::File,
    size: u64,
}

impl LogFile {
    /// Appends whole lines: a write cut short by a full disk is taken back
    /// to the last line it completed, so a reader never meets half a line.
    /// On failure, how many bytes of `text` stayed.
    fn append(&mut self, text: &str) -> Result<(), (std::io::Error, usize)> {
        let before = self.size;
        match self.file.write_all(text.as_bytes()) {
            Ok(()) => {
                self.size += text.len() as u64;
                Ok(())
            }
            Err(e) => {
                let now = self.file.metadata().map(|m| m.len()).unwrap_or(before);
                let written = (now.saturating_sub(before) as usize).min(text.len());
                let kept = text[..written].rfind('\n').map_or(0, |i| i + 1);
                let _ = self.file.set_len(before + kept as u64);
                self.size = before + kept as u64;
                Err((e, kept))
            }
        }
    }
}

impl FileLogs {
    pub fn new(dir: PathBuf) -> FileLogs {
        FileLogs {
            dir,
            files: Mutex::new(Default::default()),
            configs: Mutex::new(Default::default()),
            lost: Mutex::new(Default::default()),
        }
    }

    /// Write `batch` to `file`, after a marker line for the lines lost
    /// before it; what does not fit (a full disk) is lost and counted, to
    /// be said by the next marker.
    fn write_batch(&self, container: &str, file: &mut LogFile, batch: &str) {
        let mut lost = self.lost.lock().unwrap_or_else(|e| e.into_inner());
        let mut text = String::new();
        let earlier = lost.get(container).map(|(n, _)| *n);
        if let Some(n) = earlier {
            let why = &lost[container].1;
            text.push_str(&format!(
                "{} [berth: {n} lines lost: {why}]\n",
                timestamp_now()
            ));
        }
        let marker = text.len();
        text.push_str(batch);
        match file.append(&text) {
            Ok(()) => {
                lost.remove(container);
            }
            Err((e, kept)) => {
                // Once the marker is written its count is said.
                let still = if kept >= marker {
                    0
                } else {
                    earlier.unwrap_or(0)
                };
                let dropped = text[kept.max(marker)..].matches('\n').count() as u64;
                lost.insert(container.to_string(), (still + dropped, e.to_string()));
            }
        }
    }
}

impl LogSink for FileLogs {
    fn configure(&self, container: &str, logging: Option<&serde_json::Value>) {
        let config = LogConfig::from_compose(logging);
        let mut configs = self.configs.lock().unwrap_or_else(|e| e.into_inner());
        configs.insert(container.to_string(), config);
    }

    fn line(&self, container: &str, line: &str) {
        self.lines(container, &[line.to_string()]);
    }

    /// One lock, one clock reading and one write per batch: a chatty
    /// container must not cost a syscall per line.
    fn lines(&self, container: &str, lines: &[String]) {
        let config = self
            .configs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(container)
            .cloned()
            .unwrap_or_default();
        if config.driver == "none" {
            return;
        }
        let path = self.dir.join(format!("{container}.log"));
        let stamp = timestamp_now();
        let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        let mut batch = String::new();
        for line in lines {
            let entry = format!("{stamp} {line}\n");
            let full = config.max_size.is_some_and(|max| {
                files
                    .get(container)
                    .is_some_and(|f| f.size + (batch.len() + entry.len()) as u64 > max)
            });
            if full {
                // Write what fits in this file, then rotate.
                if let Some(f) = files.get_mut(container) {
                    self.write_batch(container, f, &batch);
                }
                batch.clear();
                files.remove(container);
                rotate(&path, config.max_file);
            }
            if !files.contains_key(container) {
                match fs::OpenOptions::new().create(true).append(true).open(&path) {
                    Ok(f) => {
                        let size = f.metadata().map(|m| m.len()).unwrap_or(0);
                        files.insert(container.to_string(), LogFile { file: f, size });
                    }
                    Err(_) => return,
                }
            }
            batch.push_str(&entry);
        }
        if let Some(f) = files.get_mut(container) {
            // A full disk loses lines, never the container.
            self.write_batch(container, f, &batch);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_lines_split() {
        assert_eq!(
            split("2026-11-28T00:23:14.000000005Z hello world"),
            ("2026-11-28T00:23:14.000000005Z", "hello world")
        );
        assert_eq!(split("no stamp here"), ("", "no stamp here"));
        assert_eq!(split(""), ("", ""));
    }
}
