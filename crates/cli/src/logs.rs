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

const COLOURS: &[&str] = &["36", "33", "32", "35", "34", "96", "93", "92", "95", "94"];

/// How lines are printed.
#[derive(Default)]
pub struct Printer {
    pub colour: bool,
    pub timestamps: bool,
    /// Only lines stamped at or after / before these (canonical stamps).
    pub since: Option<String>,
    pub until: Option<String>,
}

/// A `--since`/`--until` value → a canonical stamp: RFC 3339 (`2026-11-28T00:23:14Z`,
/// with a fraction or an offset), a date, Unix seconds, or a duration back
/// from now (`10m`, `1h30m`).
pub fn parse_when(text: &str) -> Option<String> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    if let Some(d) = berth_compose::units::parse_duration(text) {
        if text.chars().any(|c| c.is_ascii_alphabetic()) {
            let t = now.saturating_sub(d);
            return Some(format_time(t.as_secs() as i64, t.subsec_nanos()));
        }
    }
    if let Ok(secs) = text.parse::<i64>() {
        return Some(format_time(secs, 0));
    }
    let (date, time) = text.split_once('T').unwrap_or((text, "00:00:00Z"));
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    if d.next().is_some() || !(1..=12).contains(&m) || !(1..=31).contains(&day) {
        return None;
    }
    // Split off the zone: Z, +HH:MM or -HH:MM.
    let (clock, offset) = if let Some(c) = time.strip_suffix('Z') {
        (c, 0)
    } else if let Some(i) = time.rfind(['+', '-']) {
        let (c, z) = time.split_at(i);
        let sign = if z.starts_with('-') { -1 } else { 1 };
        let (h, mi) = z[1..].split_once(':')?;
        (
            c,
            sign * (h.parse::<i64>().ok()? * 3600 + mi.parse::<i64>().ok()? * 60),
        )
    } else {
        (time, 0)
    };
    let (hms, frac) = clock.split_once('.').unwrap_or((clock, ""));
    let mut t = hms.split(':').map(|p| p.parse::<i64>().ok());
    let (h, mi, sec) = (t.next()??, t.next()??, t.next().unwrap_or(Some(0))?);
    let nanos = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}")[..9].parse::<u32>().ok()?
    };
    let secs =
        days_from_civil(y, m as u32, day as u32) * 86_400 + h * 3600 + mi * 60 + sec - offset;
    Some(format_time(secs, nanos))
}

/// (year, month, day) → days since 1970-01-01 (inverse of `civil_from_days`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
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
            backlog: Vec::new(),
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
            self.width = self.width.max(name.len());
            self.files.push((name, f, i));
        }
    }

    /// Every whole line written since the last call, per container in turn.
    /// False once stdout is closed (`berth logs | head`).
    pub fn pump(&mut self, printer: &Printer, tail: Option<usize>) -> bool {
        self.discover();
        let width = self.width;
        let dir = self.dir.clone();
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
                    if !print(printer, name, width, *i, l) {
                        return false;
                    }
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
                if !print(printer, name, width, *i, l) {
                    return false;
                }
            }
        }
        self.backlog.clear();
        true
    }
}

fn print(p: &Printer, name: &str, width: usize, i: usize, stored: &str) -> bool {
    let (time, text) = split(stored);
    if p.since.as_deref().is_some_and(|s| time < s) || p.until.as_deref().is_some_and(|u| time >= u)
    {
        return true;
    }
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
    fn when_values_parse() {
        assert_eq!(
            parse_when("2026-11-28T00:23:14Z").unwrap(),
            "2026-11-28T00:23:14.000000000Z"
        );
        assert_eq!(
            parse_when("2026-11-28T01:23:14.5+01:00").unwrap(),
            "2026-11-28T00:23:14.500000000Z"
        );
        assert_eq!(
            parse_when("2000-02-29").unwrap(),
            "2000-02-29T00:00:00.000000000Z"
        );
        assert_eq!(parse_when("0").unwrap(), "1970-01-01T00:00:00.000000000Z");
        let ten = parse_when("10m").unwrap();
        assert!(ten < timestamp_now(), "{ten}");
        assert!(parse_when("yesterday").is_none());
        assert!(parse_when("2026-13-01").is_none());
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
