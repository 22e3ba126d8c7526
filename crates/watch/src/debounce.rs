//! Bursts of file events into batches.
//!
//! An editor's save is several events (create a temp file, write, rename,
//! chmod), and `git checkout` is thousands: acting on each would copy the
//! same file many times and restart a service once per file. A batch is
//! released once no event came for `quiet`, or `max_wait` after its first
//! event so a never-ending stream (a build writing into the tree) still
//! gets synced. Time is passed in, so the logic is tested without sleeping.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Debouncer {
    quiet: Duration,
    max_wait: Duration,
    pending: BTreeSet<PathBuf>,
    first: Option<Instant>,
    last: Option<Instant>,
}

impl Debouncer {
    pub fn new(quiet: Duration, max_wait: Duration) -> Debouncer {
        Debouncer {
            quiet,
            max_wait: max_wait.max(quiet),
            pending: BTreeSet::new(),
            first: None,
            last: None,
        }
    }

    /// Record a change at `path`, seen at `now`.
    pub fn push(&mut self, path: PathBuf, now: Instant) {
        self.pending.insert(path);
        self.first.get_or_insert(now);
        self.last = Some(now);
    }

    /// When the pending batch is due; `None` when nothing is pending.
    pub fn deadline(&self) -> Option<Instant> {
        let (first, last) = (self.first?, self.last?);
        Some((last + self.quiet).min(first + self.max_wait))
    }

    /// The pending paths, sorted and each once, when the batch is due.
    pub fn take_ready(&mut self, now: Instant) -> Option<Vec<PathBuf>> {
        if self.deadline()? > now {
            return None;
        }
        self.first = None;
        self.last = None;
        Some(std::mem::take(&mut self.pending).into_iter().collect())
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_burst_becomes_one_batch_after_the_quiet_period() {
        let t0 = Instant::now();
        let mut d = Debouncer::new(100 * MS, 1000 * MS);
        d.push("/p/a.js".into(), t0);
        d.push("/p/b.js".into(), t0 + 10 * MS);
        d.push("/p/a.js".into(), t0 + 20 * MS);
        assert_eq!(
            d.take_ready(t0 + 119 * MS),
            None,
            "released while still busy"
        );
        assert_eq!(d.deadline(), Some(t0 + 120 * MS));
        assert_eq!(
            d.take_ready(t0 + 120 * MS),
            Some(vec![PathBuf::from("/p/a.js"), PathBuf::from("/p/b.js")])
        );
        assert!(d.is_empty());
        assert_eq!(d.deadline(), None);
        assert_eq!(d.take_ready(t0 + 10_000 * MS), None);
    }

    #[test]
    fn a_steady_stream_is_still_released_after_max_wait() {
        let t0 = Instant::now();
        let mut d = Debouncer::new(100 * MS, 300 * MS);
        let mut released = Vec::new();
        for i in 0..50u32 {
            let now = t0 + i * 20 * MS;
            d.push(format!("/p/{i}").into(), now);
            if let Some(batch) = d.take_ready(now) {
                released.push((i, batch.len()));
            }
        }
        // A stream with no 100 ms pause is cut every 300 ms: events 0..=15
        // (0 to 300 ms), then 16..=31 (320 to 620 ms), ...
        assert_eq!(released, [(15, 16), (31, 16), (47, 16)]);
    }

    #[test]
    fn separate_edits_make_separate_batches() {
        let t0 = Instant::now();
        let mut d = Debouncer::new(50 * MS, 1000 * MS);
        d.push("/p/a".into(), t0);
        assert_eq!(d.take_ready(t0 + 60 * MS).map(|b| b.len()), Some(1));
        d.push("/p/b".into(), t0 + 500 * MS);
        assert_eq!(d.take_ready(t0 + 520 * MS), None);
        assert_eq!(
            d.take_ready(t0 + 550 * MS),
            Some(vec![PathBuf::from("/p/b")])
        );
    }
}
