//! Container log files: how the supervisor stamps lines, and how `logs` and
//! an attached `up` read and follow them with `name | ` prefixes.
//!
//! Each line of `logs/<container>.log` is `<RFC 3339 UTC time> <text>`.

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Now as `2026-11-28T00:23:14.123456789Z`.
pub fn timestamp_now() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format_time(d.as_secs() as i64, d.subsec_nanos())
}

/// Seconds since the epoch as RFC 3339 UTC with nanoseconds.
pub fn format_time(secs: i64, nanos: u32) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian
/// calendar (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
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

const COLOURS: &[&str] = &["36", "33", "32", "35", "34", "96", "93", "92", "95", "94"];

/// How lines are printed.
pub struct Printer {
    pub colour: bool,
    pub timestamps: bool,
}

/// Follows every `*.log` in a directory, picking up new ones as they appear.
pub struct Follower {
    dir: PathBuf,
    /// (container, file, colour index)
    files: Vec<(String, fs::File, usize)>,
    /// Only containers of these services (all when empty).
    services: Vec<String>,
    project: String,
    /// Lines of files found later start at their beginning; files present
    /// at the start start at these offsets.
    start: std::collections::HashMap<String, u64>,
    width: usize,
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
            width: 0,
        }
    }

    /// The service of container `<project>-<service>-<n>`.
    fn service_of(&self, container: &str) -> String {
        container
            .strip_prefix(&format!("{}-", self.project))
            .and_then(|r| r.rsplit_once('-').map(|(s, _)| s.to_string()))
            .unwrap_or_else(|| container.to_string())
    }

    fn discover(&mut self) {
        for (name, path) in log_files(&self.dir) {
            if self.files.iter().any(|(n, _, _)| *n == name) {
                continue;
            }
            if !self.services.is_empty() && !self.services.contains(&self.service_of(&name)) {
                continue;
            }
            let Ok(mut f) = fs::File::open(&path) else {
                continue;
            };
            if let Some(&off) = self.start.get(&name) {
                let _ = f.seek(SeekFrom::Start(off));
            }
            let i = self.files.len();
            self.width = self.width.max(name.len());
            self.files.push((name, f, i));
        }
    }

    /// Every whole line written since the last call, per container in turn.
    /// False once stdout is closed (`berth logs | head`).
    pub fn pump(&mut self, printer: &Printer, tail: Option<usize>) -> bool {
        self.discover();
        let width = self.width;
        for (name, f, i) in &mut self.files {
            let Ok(pos) = f.stream_position() else {
                continue;
            };
            let mut text = String::new();
            if f.read_to_string(&mut text).is_err() {
                continue;
            }
            // Only whole lines; a partial one is read again next time.
            let Some(end) = text.rfind('\n') else {
                let _ = f.seek(SeekFrom::Start(pos));
                continue;
            };
            let _ = f.seek(SeekFrom::Start(pos + end as u64 + 1));
            let lines: Vec<&str> = text[..end].lines().collect();
            let skip = tail.map(|t| lines.len().saturating_sub(t)).unwrap_or(0);
            for l in &lines[skip..] {
                if !print(printer, name, width, *i, l) {
                    return false;
                }
            }
        }
        true
    }
}

fn print(p: &Printer, name: &str, width: usize, i: usize, stored: &str) -> bool {
    let (time, text) = split(stored);
    let mut o = std::io::stdout().lock();
    let stamp = if p.timestamps && !time.is_empty() {
        format!("{time} ")
    } else {
        String::new()
    };
    if p.colour {
        writeln!(
            o,
            "\x1b[{}m{name:<width$} | \x1b[0m{stamp}{text}",
            COLOURS[i % COLOURS.len()]
        )
        .is_ok()
    } else {
        writeln!(o, "{name:<width$} | {stamp}{text}").is_ok()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_format_as_rfc3339() {
        assert_eq!(format_time(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            format_time(1_795_825_394, 5),
            "2026-11-28T00:23:14.000000005Z"
        );
        assert_eq!(
            format_time(951_782_400, 0),
            "2000-02-29T00:00:00.000000000Z"
        );
    }

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
