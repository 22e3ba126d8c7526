//! The relay threads of one TCP proxy, kept for reuse.
//!
//! Spawning two threads per connection made short connections slow here in a way the
//! averages hide: a brand-new thread is scheduled behind whatever already runs, so on a busy
//! machine one connection in ten waited a whole scheduler slice (3–4 ms) in a benchmark next
//! to a CPU-bound process. An idle thread that is woken up runs at once. So finished relay
//! threads wait a while for the next job, and a new thread is spawned only when none is idle:
//! a job never queues behind a busy one, since each job may block for a connection's life.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::sys;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// An idle thread exits after this long without work.
const KEEP_IDLE: Duration = Duration::from_secs(10);
/// More idle threads than this exit at once: a burst does not leave hundreds parked.
const MAX_IDLE: usize = 32;
/// Relay jobs run a splice loop and a connect; they need little stack.
const STACK: usize = 128 * 1024;

struct State {
    jobs: VecDeque<Job>,
    /// Threads waiting for a job, minus jobs already queued for them.
    idle: usize,
    shutdown: bool,
    threads: Vec<JoinHandle<()>>,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub(crate) struct Pool {
    shared: Arc<Shared>,
}

impl Pool {
    pub(crate) fn new() -> Pool {
        Pool {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    jobs: VecDeque::new(),
                    idle: 0,
                    shutdown: false,
                    threads: Vec::new(),
                }),
                wake: Condvar::new(),
            }),
        }
    }

    /// Runs `job` on an idle thread, or a new one. Fails (dropping the job) only when the
    /// pool is shut down or no thread can be created.
    pub(crate) fn submit(&self, job: impl FnOnce() + Send + 'static) -> io::Result<()> {
        let job: Job = Box::new(job);
        let mut state = self.shared.lock();
        if state.shutdown {
            return Err(io::Error::other("proxy is closing"));
        }
        if state.idle > 0 {
            state.idle -= 1;
            state.jobs.push_back(job);
            drop(state);
            self.shared.wake.notify_one();
            return Ok(());
        }
        // Joining finished threads here keeps the list from growing over a long life.
        let (done, running): (Vec<_>, Vec<_>) =
            state.threads.drain(..).partition(|t| t.is_finished());
        state.threads = running;
        let shared = self.shared.clone();
        let thread = std::thread::Builder::new()
            .name("berth-relay".into())
            .stack_size(STACK)
            .spawn(move || work(&shared, job))?;
        state.threads.push(thread);
        drop(state);
        for t in done {
            let _ = t.join();
        }
        Ok(())
    }

    /// Stops idle threads and waits for every thread to finish. The caller first makes the
    /// running jobs end (by shutting their sockets down); queued jobs are dropped.
    pub(crate) fn shutdown(&self) {
        let (threads, jobs) = {
            let mut state = self.shared.lock();
            state.shutdown = true;
            (
                std::mem::take(&mut state.threads),
                std::mem::take(&mut state.jobs),
            )
        };
        self.shared.wake.notify_all();
        drop(jobs);
        for t in threads {
            let _ = t.join();
        }
    }
}

fn work(shared: &Shared, first: Job) {
    sys::block_sigpipe();
    first();
    let mut state = shared.lock();
    if state.idle >= MAX_IDLE {
        return;
    }
    state.idle += 1;
    loop {
        if let Some(job) = state.jobs.pop_front() {
            drop(state);
            job();
            state = shared.lock();
            if state.idle >= MAX_IDLE {
                return;
            }
            state.idle += 1;
            continue;
        }
        if state.shutdown {
            // Saturating: shutdown dropped queued jobs that had reserved idle threads.
            state.idle = state.idle.saturating_sub(1);
            return;
        }
        let (next, timeout) = shared
            .wake
            .wait_timeout(state, KEEP_IDLE)
            .unwrap_or_else(|e| e.into_inner());
        state = next;
        if timeout.timed_out() && state.jobs.is_empty() && !state.shutdown {
            state.idle = state.idle.saturating_sub(1);
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn idle_threads_are_reused() {
        let pool = Pool::new();
        let (tx, rx) = mpsc::channel();
        for _ in 0..5 {
            let tx = tx.clone();
            pool.submit(move || tx.send(std::thread::current().id()).unwrap())
                .unwrap();
            rx.recv().unwrap();
            // Let the thread park before the next job.
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(pool.shared.lock().threads.len(), 1);
        pool.shutdown();
        assert!(pool.submit(|| ()).is_err());
    }

    #[test]
    fn concurrent_jobs_never_queue_behind_each_other() {
        let pool = Pool::new();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let release_rx = Arc::new(Mutex::new(release_rx));
        // A job blocked "for a connection's life", then another: the second must run now.
        let blocked = release_rx.clone();
        pool.submit(move || {
            let _ = blocked.lock().unwrap().recv();
        })
        .unwrap();
        let (done_tx, done_rx) = mpsc::channel();
        pool.submit(move || done_tx.send(()).unwrap()).unwrap();
        done_rx.recv_timeout(Duration::from_secs(5)).unwrap();
        release_tx.send(()).unwrap();
        pool.shutdown();
    }
}
