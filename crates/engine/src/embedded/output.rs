//! Container output through a file, not a pipe: a container writes its
//! stdout and stderr to `<container dir>/output` (appending), and the
//! supervisor reads what is new on every poll and hands whole lines to the
//! log sink. Nothing in the container's path depends on the supervisor
//! being alive, so a supervisor that dies neither kills the containers
//! (a pipe with no reader would) nor loses their output: the next one
//! carries on from the position saved in `output.pos`. Read bytes are
//! punched out of the file so it takes no space once consumed.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// A container's output file, read up to `offset`.
pub struct OutputTail {
    file: File,
    offset: u64,
    /// The start of a line whose end has not been written yet.
    partial: Vec<u8>,
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
            pos,
        })
    }

    /// Whole lines written since the last call. With `flush` (the container
    /// ended), an unfinished last line is returned too.
    pub fn read_lines(&mut self, flush: bool) -> Vec<String> {
        let mut buf = Vec::new();
        if self.file.seek(SeekFrom::Start(self.offset)).is_ok() {
            let _ = (&self.file).read_to_end(&mut buf);
        }
        if buf.is_empty() && (!flush || self.partial.is_empty()) {
            return Vec::new();
        }
        self.offset += buf.len() as u64;
        self.partial.extend_from_slice(&buf);
        let mut lines = Vec::new();
        while let Some(i) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=i).collect();
            lines.push(String::from_utf8_lossy(&line[..line.len() - 1]).into_owned());
        }
        if flush && !self.partial.is_empty() {
            lines.push(String::from_utf8_lossy(&self.partial).into_owned());
            self.partial.clear();
        }
        // Where the next reader starts: after the last whole line.
        let consumed = self.offset - self.partial.len() as u64;
        let _ = self.pos.write_all_at(&consumed.to_le_bytes(), 0);
        punch(&self.file, consumed);
        lines
    }
}

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
            meta.blocks() * 512 < 16 * 1024,
            "{} bytes still allocated",
            meta.blocks() * 512
        );
    }
}
