//! Handler threads: where synchronous Thrift processors run, apart from the
//! async workers that accept, read and write.
//!
//! The isolation rule, kept by construction: a job is never queued behind a
//! busy thread. [`HandlerThreads::run`] hands it to an idle thread, or
//! starts a new one, so a handler that sleeps or blocks delays only its own
//! call. Only at `max_threads` busy threads do calls wait for one to free up.
//! Idle threads exit after [`KEEP_ALIVE`].

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// How long an idle handler thread waits for work before it exits.
pub(crate) const KEEP_ALIVE: Duration = Duration::from_secs(10);

/// The default `max_handler_threads`.
pub(crate) const DEFAULT_MAX_THREADS: usize = 512;

type Job = Box<dyn FnOnce() + Send>;

/// A pool of handler threads that grows as calls block (see the module docs).
#[derive(Clone)]
pub(crate) struct HandlerThreads {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for HandlerThreads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.shared.lock();
        f.debug_struct("HandlerThreads")
            .field("threads", &state.threads)
            .field("idle", &state.idle)
            .field("queued", &state.queue.len())
            .field("max_threads", &self.shared.max_threads)
            .finish()
    }
}

struct Shared {
    state: Mutex<State>,
    /// Signalled once per job handed to an idle thread.
    work: Condvar,
    /// The most threads ever running at once.
    max_threads: usize,
}

struct State {
    /// Jobs not yet taken by a thread.
    queue: VecDeque<Job>,
    /// Threads running, busy or idle.
    threads: usize,
    /// Idle threads waiting for work and not yet claimed by a job.
    idle: usize,
    /// Wake-ups owed to claimed idle threads (so a spurious or timed-out
    /// wake-up is told apart from a real one).
    wakeups: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A job never runs with the lock held, so no panic can poison it in
        // a way that leaves the state half-updated.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl HandlerThreads {
    /// A pool that runs at most `max_threads` jobs at once.
    pub(crate) fn new(max_threads: usize) -> HandlerThreads {
        HandlerThreads {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    queue: VecDeque::new(),
                    threads: 0,
                    idle: 0,
                    wakeups: 0,
                }),
                work: Condvar::new(),
                max_threads: max_threads.max(1),
            }),
        }
    }

    /// Runs `job` on an idle thread, or on a new one.
    pub(crate) fn run(&self, job: impl FnOnce() + Send + 'static) {
        let mut state = self.shared.lock();
        state.queue.push_back(Box::new(job));
        if state.idle > 0 {
            state.idle -= 1;
            state.wakeups += 1;
            drop(state);
            self.shared.work.notify_one();
        } else if state.threads < self.shared.max_threads {
            state.threads += 1;
            drop(state);
            let shared = Arc::clone(&self.shared);
            let started = std::thread::Builder::new()
                .name("thrift-handler".into())
                .spawn(move || work(&shared));
            if let Err(e) = started {
                // The job stays queued for the next thread that frees up.
                self.shared.lock().threads -= 1;
                tracing::error!("cannot start a Thrift handler thread: {e}");
            }
        }
        // Else every thread is busy and the limit is reached: the job waits
        // for the first thread to finish.
    }

    /// Threads running now (busy or idle).
    #[cfg(test)]
    pub(crate) fn threads(&self) -> usize {
        self.shared.lock().threads
    }

    /// Idle threads not yet claimed by a job.
    #[cfg(test)]
    fn idle(&self) -> usize {
        self.shared.lock().idle
    }
}

/// A handler thread: runs queued jobs, waits while there are none, and
/// exits after [`KEEP_ALIVE`] without work.
fn work(shared: &Shared) {
    let mut state = shared.lock();
    loop {
        if let Some(job) = state.queue.pop_front() {
            drop(state);
            job();
            state = shared.lock();
            continue;
        }
        state.idle += 1;
        loop {
            let (next, timeout) = shared
                .work
                .wait_timeout(state, KEEP_ALIVE)
                .unwrap_or_else(PoisonError::into_inner);
            state = next;
            if state.wakeups > 0 {
                // Claimed by a job (idle was decremented for us).
                state.wakeups -= 1;
                break;
            }
            if timeout.timed_out() {
                state.idle -= 1;
                state.threads -= 1;
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Instant;

    #[test]
    fn a_blocked_job_never_delays_the_next() {
        let threads = HandlerThreads::new(64);
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let release_rx = Arc::new(Mutex::new(release_rx));
        for _ in 0..8 {
            let rx = Arc::clone(&release_rx);
            threads.run(move || {
                let _ = rx.lock().unwrap().recv();
            });
        }
        // Eight jobs block; a ninth runs at once on a thread of its own.
        let (done_tx, done_rx) = mpsc::channel();
        threads.run(move || done_tx.send(()).unwrap());
        done_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the ninth job ran while eight blocked");
        assert!(threads.threads() >= 9);
        drop(release_tx);
    }

    #[test]
    fn idle_threads_are_reused() {
        let threads = HandlerThreads::new(64);
        for _ in 0..50 {
            let (tx, rx) = mpsc::channel();
            threads.run(move || tx.send(()).unwrap());
            rx.recv_timeout(Duration::from_secs(10)).unwrap();
            // A job that comes while its thread is still finishing the last
            // one gets a new thread (never a wait): wait until it is idle.
            let started = Instant::now();
            while threads.idle() == 0 {
                assert!(started.elapsed() < Duration::from_secs(10));
                std::thread::yield_now();
            }
        }
        assert_eq!(threads.threads(), 1, "{threads:?}");
    }

    #[test]
    fn at_the_limit_jobs_wait_for_a_free_thread() {
        let threads = HandlerThreads::new(1);
        let (tx, rx) = mpsc::channel();
        let started = Instant::now();
        for i in 0..3 {
            let tx = tx.clone();
            threads.run(move || {
                std::thread::sleep(Duration::from_millis(20));
                tx.send(i).unwrap();
            });
        }
        let order: Vec<i32> = (0..3)
            .map(|_| rx.recv_timeout(Duration::from_secs(10)).unwrap())
            .collect();
        assert_eq!(order, vec![0, 1, 2]);
        assert!(started.elapsed() >= Duration::from_millis(60));
        assert_eq!(threads.threads(), 1);
    }
}
