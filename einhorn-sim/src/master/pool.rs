//! The workers and the sets Einhorn derives from them (its `WorkerPool`),
//! all in spawn order.

use std::collections::BTreeSet;
use std::time::{Instant, SystemTime};

use serde_norway::Value;

/// One worker process the master started.
#[derive(Debug, Clone)]
pub struct Worker {
    /// Its pid.
    pub pid: i32,
    /// The pool version current when it was spawned.
    pub version: u64,
    /// Whether it has ACKed (manually, or by its ACK timer).
    pub acked: bool,
    /// Signals sent to it by the master itself (USR2, TERM, KILL...), which
    /// make it "signaled": on its way out.
    pub signaled: BTreeSet<String>,
    /// When the last recorded signal was sent.
    pub last_signaled_at: Option<Instant>,
    /// Wall-clock time of the last recorded signal, for `state`.
    pub last_signaled_wall: Option<SystemTime>,
    /// `EINHORN_CHILD_INDEX`.
    pub index: u32,
    /// When it was spawned (also the pid-reuse guard).
    pub spinup_time: Instant,
    /// Wall-clock spawn time, for `state`.
    pub spinup_wall: SystemTime,
    /// The last `worker:ping`, if any.
    pub pinged_at: Option<SystemTime>,
    /// The `request_id` of the last ping.
    pub pinged_request_id: Option<Value>,
}

impl Worker {
    /// Whether the master has sent it no recorded signal.
    pub fn unsignaled(&self) -> bool {
        self.signaled.is_empty()
    }
}

/// The workers, in spawn order.
#[derive(Debug, Default)]
pub struct Pool {
    /// Live workers.
    pub workers: Vec<Worker>,
}

impl Pool {
    /// The worker with this pid.
    pub fn get(&self, pid: i32) -> Option<&Worker> {
        self.workers.iter().find(|w| w.pid == pid)
    }

    /// The worker with this pid, mutably.
    pub fn get_mut(&mut self, pid: i32) -> Option<&mut Worker> {
        self.workers.iter_mut().find(|w| w.pid == pid)
    }

    /// Forgets a worker; returns it.
    pub fn remove(&mut self, pid: i32) -> Option<Worker> {
        let i = self.workers.iter().position(|w| w.pid == pid)?;
        Some(self.workers.remove(i))
    }

    /// Workers of the current version.
    pub fn modern(&self, version: u64) -> impl Iterator<Item = &Worker> {
        self.workers.iter().filter(move |w| w.version == version)
    }

    /// Unsignaled workers of other versions.
    pub fn old(&self, version: u64) -> Vec<i32> {
        self.workers
            .iter()
            .filter(|w| w.unsignaled() && w.version != version)
            .map(|w| w.pid)
            .collect()
    }

    /// Current-version workers that are acked and unsignaled.
    pub fn ack_count(&self, version: u64) -> usize {
        self.modern(version)
            .filter(|w| w.acked && w.unsignaled())
            .count()
    }

    /// Current-version workers that are unsignaled.
    pub fn unsignaled_count(&self, version: u64) -> usize {
        self.modern(version).filter(|w| w.unsignaled()).count()
    }

    /// Current-version workers that are unsignaled and not yet acked.
    pub fn unacked_new(&self, version: u64) -> usize {
        self.modern(version)
            .filter(|w| !w.acked && w.unsignaled())
            .count()
    }

    /// How many current-version workers are missing from `target`
    /// (signaled but alive ones still count as present).
    pub fn missing(&self, version: u64, target: u32) -> i64 {
        i64::from(target) - self.modern(version).count() as i64
    }

    /// The smallest index not used by a live worker.
    pub fn free_index(&self) -> u32 {
        (0..)
            .find(|i| !self.workers.iter().any(|w| w.index == *i))
            .unwrap_or(0)
    }

    /// All pids, in spawn order.
    pub fn pids(&self) -> Vec<i32> {
        self.workers.iter().map(|w| w.pid).collect()
    }
}
