//! What `einhorn-test-worker` reports about itself (`TEST_WORKER_REPORT`, one
//! JSON object per line, tag `event`), for the tests that drive it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One line of a worker's report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerReport {
    /// The worker's pid.
    pub pid: i32,
    /// `TEST_WORKER_TAG`, to tell builds apart in upgrade tests.
    #[serde(default)]
    pub tag: String,
    /// What happened.
    #[serde(flatten)]
    pub event: WorkerEvent,
}

/// What a worker reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum WorkerEvent {
    /// It started.
    Start {
        /// Its parent (the master).
        ppid: i32,
        /// Its process group.
        pgid: i32,
        /// Its `EINHORN_*` variables.
        env: BTreeMap<String, String>,
        /// The variables named in `TEST_WORKER_WATCH`, if set.
        watched: BTreeMap<String, Option<String>>,
        /// Its open file descriptors.
        fds: Vec<i32>,
    },
    /// It crashed on purpose before its ACK (`TEST_WORKER_CRASH_BEFORE_ACK`).
    Crash,
    /// It received a signal (`USR1`, `USR2`, `TERM`...).
    Signal {
        /// The signal's name without `SIG`.
        signal: String,
    },
    /// It is exiting 0 after a graceful stop.
    Exit,
}

impl WorkerReport {
    /// Reads one line of a report file.
    pub fn parse(line: &str) -> Result<WorkerReport, String> {
        serde_json::from_str(line).map_err(|e| format!("not a worker report ({e}): {line}"))
    }

    /// Reads a whole report file; lines that do not parse are skipped (a
    /// line being written may be incomplete).
    pub fn read_file(path: &std::path::Path) -> Vec<WorkerReport> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| WorkerReport::parse(l).ok())
            .collect()
    }

    /// The pids of the workers that reported starting, in order.
    pub fn started(reports: &[WorkerReport]) -> Vec<i32> {
        reports
            .iter()
            .filter(|r| matches!(r.event, WorkerEvent::Start { .. }))
            .map(|r| r.pid)
            .collect()
    }
}
