//! The host side: `notify` on the rules' paths, debounced into batches,
//! and the loop that turns each batch into actions on a target.

use crate::debounce::Debouncer;
use crate::plan::{initial_sync, plan};
use crate::rules::WatchRule;
use crate::target::{apply, Outcome, WatchTarget};
use notify::event::{AccessKind, AccessMode};
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("{key}.path: {} does not exist", path.display())]
    Missing { key: String, path: PathBuf },
    #[error("watching {}: {source}", path.display())]
    Notify {
        path: PathBuf,
        #[source]
        source: notify::Error,
    },
    #[error("the file watcher stopped")]
    Disconnected,
}

/// How long a burst may settle, and how long at most it is held.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// No event for this long ends a batch. Short enough that a save
    /// reaches the container well under a second later; long enough to
    /// take an editor's write-rename-chmod sequence as one change.
    pub quiet: Duration,
    pub max_wait: Duration,
}

impl Default for Timing {
    fn default() -> Timing {
        Timing {
            quiet: Duration::from_millis(100),
            max_wait: Duration::from_secs(1),
        }
    }
}

/// The watched roots of a set of rules and the batches of changes below.
pub struct FileWatcher {
    // Dropping it ends the watch; kept for that.
    _watcher: RecommendedWatcher,
    rx: Receiver<notify::Result<Event>>,
    debouncer: Debouncer,
    /// The rules' paths: a lost-events notice re-syncs each.
    paths: Vec<PathBuf>,
    /// Non-fatal watcher errors since last asked, for the user.
    errors: Vec<String>,
}

impl FileWatcher {
    /// Start watching every rule's path (a directory recursively; a file
    /// through its directory, so an editor that saves by renaming a new
    /// file over it is still seen).
    pub fn new(rules: &[WatchRule], timing: Timing) -> Result<FileWatcher, WatchError> {
        let mut roots: Vec<(PathBuf, RecursiveMode)> = Vec::new();
        for rule in rules {
            let meta = std::fs::metadata(&rule.path).map_err(|_| WatchError::Missing {
                key: rule.key(),
                path: rule.path.clone(),
            })?;
            if meta.is_dir() {
                roots.push((rule.path.clone(), RecursiveMode::Recursive));
            } else {
                let parent = rule.path.parent().unwrap_or(&rule.path).to_path_buf();
                roots.push((parent, RecursiveMode::NonRecursive));
            }
        }
        // Recursive roots first, shortest first: anything under one is
        // already watched and would only double its events.
        roots.sort_by_key(|(p, mode)| (*mode != RecursiveMode::Recursive, p.clone()));
        let mut kept: Vec<(PathBuf, RecursiveMode)> = Vec::new();
        for (path, mode) in roots {
            let covered = kept.iter().any(|(k, kmode)| {
                (*kmode == RecursiveMode::Recursive && path.starts_with(k)) || *k == path
            });
            if !covered {
                kept.push((path, mode));
            }
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let mut watcher = notify::recommended_watcher(tx).map_err(|source| WatchError::Notify {
            path: PathBuf::new(),
            source,
        })?;
        for (path, mode) in &kept {
            watcher
                .watch(path, *mode)
                .map_err(|source| WatchError::Notify {
                    path: path.clone(),
                    source,
                })?;
        }
        Ok(FileWatcher {
            _watcher: watcher,
            rx,
            debouncer: Debouncer::new(timing.quiet, timing.max_wait),
            paths: rules.iter().map(|r| r.path.clone()).collect(),
            errors: Vec::new(),
        })
    }

    fn take(&mut self, event: notify::Result<Event>, now: Instant) {
        let event = match event {
            Ok(event) => event,
            Err(e) => {
                self.errors.push(e.to_string());
                return;
            }
        };
        if event.need_rescan() {
            // The kernel dropped events (queue overflow): what changed is
            // unknown, so everything watched is synced again.
            for path in &self.paths {
                self.debouncer.push(path.clone(), now);
            }
            return;
        }
        match event.kind {
            // Reads change nothing; a close after writing does.
            EventKind::Access(AccessKind::Close(AccessMode::Write)) => {}
            EventKind::Access(_) => return,
            _ => {}
        }
        for path in event.paths {
            self.debouncer.push(path, now);
        }
    }

    /// The next batch of changed paths, sorted and each once; `None` once
    /// `stop` says so or `give_up` passes with nothing ready.
    pub fn next_batch(
        &mut self,
        stop: &dyn Fn() -> bool,
        give_up: Option<Instant>,
    ) -> Result<Option<Vec<PathBuf>>, WatchError> {
        // Checked at least this often, so a stop request is seen promptly.
        const TICK: Duration = Duration::from_millis(50);
        loop {
            let now = Instant::now();
            if let Some(batch) = self.debouncer.take_ready(now) {
                return Ok(Some(batch));
            }
            if stop() || give_up.is_some_and(|g| now >= g) {
                return Ok(None);
            }
            let mut until = now + TICK;
            if let Some(d) = self.debouncer.deadline() {
                until = until.min(d);
            }
            if let Some(g) = give_up {
                until = until.min(g);
            }
            match self.rx.recv_timeout(until.saturating_duration_since(now)) {
                Ok(event) => {
                    self.take(event, Instant::now());
                    // Drain what is queued without waiting.
                    while let Ok(event) = self.rx.try_recv() {
                        self.take(event, Instant::now());
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Err(WatchError::Disconnected),
            }
        }
    }

    /// Watcher errors since the last call (each already skipped).
    pub fn take_errors(&mut self) -> Vec<String> {
        std::mem::take(&mut self.errors)
    }
}

/// What `run` has to tell the user.
#[derive(Debug)]
pub enum Progress<'a> {
    /// Watching started (after any initial sync).
    Watching {
        rules: &'a [WatchRule],
    },
    /// A batch of `changed` paths arrived (before its actions run).
    Changed {
        changed: &'a [PathBuf],
    },
    Done(&'a Outcome),
    /// A problem that did not stop watching.
    Warning(String),
}

/// Watch until `stop` says so (it is asked several times a second): the
/// initial syncs first, then each debounced
/// batch planned and applied to `target`.
pub fn run(
    rules: &[WatchRule],
    target: &mut dyn WatchTarget,
    timing: Timing,
    stop: &dyn Fn() -> bool,
    mut report: impl FnMut(Progress<'_>),
) -> Result<(), WatchError> {
    // Watching starts before the initial sync so that nothing saved while
    // it runs is missed.
    let mut watcher = FileWatcher::new(rules, timing)?;
    apply(target, initial_sync(rules), |o| report(Progress::Done(o)));
    report(Progress::Watching { rules });
    while let Some(changed) = watcher.next_batch(stop, None)? {
        for e in watcher.take_errors() {
            report(Progress::Warning(e));
        }
        let actions = plan(rules, &changed);
        if actions.is_empty() {
            continue;
        }
        report(Progress::Changed { changed: &changed });
        apply(target, actions, |o| report(Progress::Done(o)));
    }
    Ok(())
}
