//! Container output through a file, not a pipe: a container writes its
//! stdout and stderr to `<container dir>/output` (appending), and the
//! supervisor reads what is new on every poll and hands whole lines to the
//! log sink. Nothing in the container's path depends on the supervisor
//! being alive, so a supervisor that dies neither kills the containers
//! (a pipe with no reader would) nor loses their output: the next one
//! carries on from the position saved in `output.pos`. Read bytes are
//! punched out of the file so it takes no space once consumed.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// A container's output file, read up to `offset`.
pub struct OutputTail {
    file: File,
    offset: u64,
    /// The start of a line whose end has not been written yet.
    partial: Vec<u8>,
    /// After dropping output, the rest of the line cut in two is skipped.
    skip_partial_line: bool,
    pos: File,
}

impl OutputTail {
    /// The output file in `dir`, created if missing, read from where a
    /// previous reader stopped.
    pub fn open(dir: &Path) -> io::Result<OutputTail> {
        let path = dir.join("output");
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)?;
        let pos = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join("output.pos"))?;
        let mut saved = [0u8; 8];
        let offset = match pos.read_exact_at(&mut saved, 0) {
            Ok(()) => u64::from_le_bytes(saved),
            Err(_) => 0,
        };
        Ok(OutputTail {
            file,
            offset,
            partial: Vec::new(),
            skip_partial_line: false,
            pos,
        })
    }

    /// Whole lines written since the last call, at most about
    /// `READ_LIMIT` bytes of them per call. With `flush` (the container
    /// ended), an unfinished last line is returned too. A file has no
    /// back-pressure the way a pipe has: when a container writes faster than
    /// its output is read, the unread part is kept to `BACKLOG_LIMIT` bytes
    /// by dropping the oldest, and a line says how much was dropped.
    pub fn read_lines(&mut self, flush: bool) -> Vec<String> {
        let mut lines = Vec::new();
        let size = self.file.metadata().map(|m| m.len()).unwrap_or(0);
        if size > self.offset + BACKLOG_LIMIT {
            let skip_to = size - BACKLOG_LIMIT;
            let dropped = skip_to - self.offset + self.partial.len() as u64;
            self.offset = skip_to;
            self.partial.clear();
            self.skip_partial_line = true;
            lines.push(format!(
                "[berth: {dropped} bytes of output dropped: written faster than they could be logged]"
            ));
        }
        let mut buf = vec![0u8; READ_LIMIT.min(size.saturating_sub(self.offset)) as usize];
        let n = self.file.read_at(&mut buf, self.offset).unwrap_or(0);
        buf.truncate(n);
        if buf.is_empty() && (!flush || self.partial.is_empty()) {
            self.save(lines.is_empty());
            return lines;
        }
        self.offset += buf.len() as u64;
        let mut data = buf.as_slice();
        if self.skip_partial_line {
            // After a drop, start at the next whole line.
            match data.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    data = &data[i + 1..];
                    self.skip_partial_line = false;
                }
                None => data = &[],
            }
        }
        self.partial.extend_from_slice(data);
        let mut start = 0;
        for (i, &b) in self.partial.iter().enumerate() {
            if b == b'\n' {
                lines.push(String::from_utf8_lossy(&self.partial[start..i]).into_owned());
                start = i + 1;
            }
        }
        self.partial.drain(..start);
        if flush && !self.partial.is_empty() {
            lines.push(String::from_utf8_lossy(&self.partial).into_owned());
            self.partial.clear();
        }
        self.save(false);
        lines
    }

    /// Record where the next reader starts (after the last whole line) and
    /// free what is read.
    fn save(&mut self, unchanged: bool) {
        if unchanged {
            return;
        }
        let consumed = self.offset - self.partial.len() as u64;
        let _ = self.pos.write_all_at(&consumed.to_le_bytes(), 0);
        // `berth attach` follows this file too: the last stretch stays for
        // it to read.
        punch(&self.file, consumed.saturating_sub(ATTACH_MARGIN));
    }
}

/// Read at most this much per container per poll, so one chatty container
/// cannot hold up the supervisor.
const READ_LIMIT: u64 = 4 << 20;
/// Logged output kept in the file for `berth attach` to read.
const ATTACH_MARGIN: u64 = 64 << 10;
/// Unread output kept at most; older output is dropped beyond it.
const BACKLOG_LIMIT: u64 = 64 << 20;

/// Free the blocks before `upto` (the file keeps its size and offsets).
fn punch(file: &File, upto: u64) {
    let blocks = upto / 4096 * 4096;
    if blocks > 0 {
        // SAFETY: an fallocate on an fd we own; failure only costs space.
        unsafe {
            libc::fallocate(
                file.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                0,
                blocks as libc::off_t,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::io::Write;

    #[test]
    fn lines_come_once_across_readers() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = OutputTail::open(dir.path()).unwrap();
        let mut w = OpenOptions::new()
            .append(true)
            .open(dir.path().join("output"))
            .unwrap();
        w.write_all(b"one\ntw").unwrap();
        assert_eq!(t.read_lines(false), ["one"]);
        w.write_all(b"o\nthree\n").unwrap();
        assert_eq!(t.read_lines(false), ["two", "three"]);
        w.write_all(b"four\nfiv").unwrap();
        drop(t);
        // A new reader (a new supervisor) starts after the last whole line.
        let mut t = OutputTail::open(dir.path()).unwrap();
        assert_eq!(t.read_lines(false), ["four"]);
        assert_eq!(t.read_lines(true), ["fiv"]);
        assert!(t.read_lines(true).is_empty());
    }

    #[test]
    fn a_backlog_past_the_limit_is_dropped_at_a_line_boundary() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = OutputTail::open(dir.path()).unwrap();
        let mut w = OpenOptions::new()
            .append(true)
            .open(dir.path().join("output"))
            .unwrap();
        let line = [b'y'; 99];
        let mut written = 0u64;
        while written < BACKLOG_LIMIT + (1 << 20) {
            w.write_all(&line).unwrap();
            w.write_all(b"\n").unwrap();
            written += 100;
        }
        w.write_all(b"last\n").unwrap();
        let first = t.read_lines(false);
        assert!(first[0].contains("bytes of output dropped"), "{}", first[0]);
        assert!(
            first[1..].iter().all(|l| l.len() == 99),
            "a cut line came through"
        );
        let mut rest = Vec::new();
        loop {
            let more = t.read_lines(false);
            if more.is_empty() {
                break;
            }
            rest.extend(more);
        }
        assert_eq!(rest.last().map(String::as_str), Some("last"));
        assert!(first.len() + rest.len() <= (BACKLOG_LIMIT / 100) as usize + 2);
    }

    #[test]
    fn read_bytes_stop_taking_space() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = OutputTail::open(dir.path()).unwrap();
        let mut w = OpenOptions::new()
            .append(true)
            .open(dir.path().join("output"))
            .unwrap();
        let line = vec![b'x'; 1023];
        for _ in 0..256 {
            w.write_all(&line).unwrap();
            w.write_all(b"\n").unwrap();
        }
        assert_eq!(t.read_lines(false).len(), 256);
        use std::os::unix::fs::MetadataExt;
        let meta = fs::metadata(dir.path().join("output")).unwrap();
        assert_eq!(meta.len(), 256 * 1024);
        assert!(
            meta.blocks() * 512 < 16 * 1024 + ATTACH_MARGIN,
            "{} bytes still allocated",
            meta.blocks() * 512
        );
    }
}
