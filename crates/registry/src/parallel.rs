//! A small worker pool for blob transfers: a few threads take jobs from a
//! shared queue; the first error stops the others at their next check.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Run `work` over `jobs` on up to `threads` threads and collect the
/// results (in no particular order). `work` gets a flag to poll during
/// long transfers: once set, another job has failed and the result is
/// discarded anyway.
pub(crate) fn run<J, T, E>(
    jobs: Vec<J>,
    threads: usize,
    work: impl Fn(J, &AtomicBool) -> Result<T, E> + Sync,
) -> Result<Vec<T>, E>
where
    J: Send,
    T: Send,
    E: Send,
{
    let threads = threads.max(1).min(jobs.len());
    let queue = Mutex::new(VecDeque::from(jobs));
    let results = Mutex::new(Vec::new());
    let first_error: Mutex<Option<E>> = Mutex::new(None);
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let job = queue.lock().unwrap_or_else(|e| e.into_inner()).pop_front();
                let Some(job) = job else { break };
                match work(job, &stop) {
                    Ok(t) => results.lock().unwrap_or_else(|e| e.into_inner()).push(t),
                    Err(e) => {
                        let mut slot = first_error.lock().unwrap_or_else(|e| e.into_inner());
                        // Errors after the first are consequences of the stop.
                        if slot.is_none() {
                            *slot = Some(e);
                        }
                        stop.store(true, Ordering::Relaxed);
                        break;
                    }
                }
            });
        }
    });
    if let Some(e) = first_error.into_inner().unwrap_or_else(|e| e.into_inner()) {
        return Err(e);
    }
    Ok(results.into_inner().unwrap_or_else(|e| e.into_inner()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_all_jobs_and_stops_on_error() {
        let out = run((0..20).collect(), 3, |j: u32, _| Ok::<_, String>(j * 2)).unwrap();
        assert_eq!(out.len(), 20);
        assert_eq!(out.iter().sum::<u32>(), 380);
        let err = run((0..20).collect(), 3, |j: u32, _| {
            if j == 5 {
                Err(format!("job {j}"))
            } else {
                Ok(j)
            }
        })
        .unwrap_err();
        assert_eq!(err, "job 5");
        assert!(run(Vec::<u32>::new(), 3, |j, _| Ok::<_, ()>(j))
            .unwrap()
            .is_empty());
    }
}
