//! The master's lifecycle events: one typed enum, written to the `--events`
//! file as JSON lines (`{"event": "spawn", "time": 1764590000.1, ...}`) and
//! handed to a program that embeds the master (the conformance kit). Tests
//! and the kit read them back with [`Record::parse`].

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::report::unix_seconds;

/// One event and when it happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Seconds since the epoch.
    pub time: f64,
    /// What happened.
    #[serde(flatten)]
    pub event: Event,
}

impl Record {
    /// Reads one line of an events file.
    pub fn parse(line: &str) -> Result<Record, String> {
        serde_json::from_str(line).map_err(|e| format!("not an einhorn-sim event ({e}): {line}"))
    }

    /// Reads a whole `--events` file; lines that do not parse are skipped
    /// (a line being written may be incomplete).
    pub fn read_file(path: &Path) -> Vec<Record> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| Record::parse(l).ok())
            .collect()
    }
}

/// Everything the master reports. The JSON tag is `event`; the names and
/// fields are documented in docs/einhorn-sim.md.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The sockets are bound and the command socket listens.
    Ready {
        /// The master's pid.
        master_pid: u32,
        /// The command socket.
        socket_path: String,
        /// The `-b` sockets, in order.
        bound: Vec<Bound>,
    },
    /// A worker was started.
    Spawn {
        /// Its pid.
        pid: i32,
        /// `EINHORN_CHILD_INDEX`.
        index: u32,
        /// The pool version it belongs to.
        version: u64,
        /// The program run.
        program: String,
    },
    /// A worker could not be started.
    SpawnFailed {
        /// Why.
        error: String,
        /// The pool version it would have belonged to.
        version: u64,
    },
    /// A worker counts as up: its manual ACK, or its ACK timer.
    Ack {
        /// Its pid.
        pid: i32,
    },
    /// A worker exited and was reaped.
    Exit {
        /// Its pid.
        pid: i32,
        /// Its exit status, if it exited.
        status: Option<i32>,
        /// The signal that killed it (`SIGKILL`), if one did.
        signal: Option<String>,
        /// Whether it had ACKed.
        acked: bool,
        /// Its pool version.
        version: u64,
        /// Its `EINHORN_CHILD_INDEX`.
        index: u32,
    },
    /// The master sent a worker a signal.
    Signal {
        /// The worker.
        pid: i32,
        /// `SIGUSR2`, `SIGKILL`...
        signal: String,
    },
    /// Respawning waits this long after workers died before their ACK.
    RespawnDelay {
        /// The wait.
        seconds: f64,
    },
    /// An upgrade began.
    UpgradeStart {
        /// The new version.
        version: u64,
        /// The version being replaced.
        from: u64,
        /// A smooth upgrade (one worker at a time) rather than a fleet one.
        smooth: bool,
    },
    /// An upgrade completed: every worker runs `version`.
    UpgradeDone {
        /// The new version.
        version: u64,
    },
    /// `--watch` saw a change settle: an upgrade starts, or is queued
    /// behind the one in progress.
    Rebuilt {
        /// The changed paths.
        paths: Vec<String>,
        /// Queued behind the upgrade in progress rather than started.
        queued: bool,
    },
    /// An upgrade was given up (its workers crashed or never ACKed); the
    /// old workers keep serving.
    UpgradeAbandoned {
        /// The abandoned version.
        version: u64,
        /// The version still serving.
        kept_version: u64,
    },
    /// A master re-exec'd by the last one carries on (same pid).
    Reexec {
        /// Reloads so far.
        generation: u64,
    },
    /// The master is exiting.
    MasterExit {},
}

/// One `-b` socket in [`Event::Ready`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bound {
    /// The address asked for.
    pub address: String,
    /// The port bound (0 for UNIX sockets).
    pub port: u16,
    /// The descriptor workers inherit.
    pub fd: i32,
    /// `AF_INET`, `AF_INET6` or `AF_UNIX`.
    pub family: String,
}

impl Event {
    /// The event's name, its `event` tag in JSON (`spawn`, `ack`...).
    pub fn name(&self) -> &'static str {
        match self {
            Event::Ready { .. } => "ready",
            Event::Spawn { .. } => "spawn",
            Event::SpawnFailed { .. } => "spawn_failed",
            Event::Ack { .. } => "ack",
            Event::Exit { .. } => "exit",
            Event::Signal { .. } => "signal",
            Event::RespawnDelay { .. } => "respawn_delay",
            Event::UpgradeStart { .. } => "upgrade_start",
            Event::UpgradeDone { .. } => "upgrade_done",
            Event::UpgradeAbandoned { .. } => "upgrade_abandoned",
            Event::Rebuilt { .. } => "rebuilt",
            Event::Reexec { .. } => "reexec",
            Event::MasterExit {} => "master_exit",
        }
    }

    /// The pid of the worker the event is about, if it is about one.
    pub fn pid(&self) -> Option<i32> {
        match self {
            Event::Spawn { pid, .. }
            | Event::Ack { pid }
            | Event::Exit { pid, .. }
            | Event::Signal { pid, .. } => Some(*pid),
            _ => None,
        }
    }
}

/// Where events go: the `--events` file (flushed at once), a channel for a
/// master embedded in-process, both or neither.
pub struct Events {
    file: Option<File>,
    channel: Option<std::sync::mpsc::Sender<Record>>,
}

impl Events {
    /// Opens (appends to) `path`, or records nothing without one.
    pub fn open(path: Option<&Path>) -> Result<Events, String> {
        let file = match path {
            None => None,
            Some(path) => Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| format!("cannot open the events file {}: {e}", path.display()))?,
            ),
        };
        Ok(Events {
            file,
            channel: None,
        })
    }

    /// Sends every event to `channel` as well.
    pub fn with_channel(mut self, channel: std::sync::mpsc::Sender<Record>) -> Events {
        self.channel = Some(channel);
        self
    }

    /// Records `event`, stamped now.
    pub fn emit(&mut self, event: Event) {
        if self.file.is_none() && self.channel.is_none() {
            return;
        }
        let record = Record {
            time: unix_seconds(SystemTime::now()),
            event,
        };
        if let Some(file) = &mut self.file {
            if let Ok(mut line) = serde_json::to_string(&record) {
                line.push('\n');
                // An unwritable events file must not stop the master.
                let _ = file.write_all(line.as_bytes()).and_then(|_| file.flush());
            }
        }
        if let Some(channel) = &self.channel {
            let _ = channel.send(record);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_form_is_flat_with_an_event_tag() {
        let record = Record {
            time: 1.5,
            event: Event::Exit {
                pid: 42,
                status: None,
                signal: Some("SIGKILL".into()),
                acked: true,
                version: 1,
                index: 0,
            },
        };
        let line = serde_json::to_string(&record).unwrap();
        assert_eq!(
            line,
            r#"{"time":1.5,"event":"exit","pid":42,"status":null,"signal":"SIGKILL","acked":true,"version":1,"index":0}"#
        );
        assert_eq!(Record::parse(&line).unwrap(), record);
        let exit = Record::parse(r#"{"event":"master_exit","time":2.0}"#).unwrap();
        assert_eq!(exit.event, Event::MasterExit {});
        assert!(Record::parse(r#"{"event":"nonsense","time":2.0}"#).is_err());
        // name() is the tag serde writes.
        let tag = serde_json::to_value(&record).unwrap()["event"].clone();
        assert_eq!(tag, record.event.name());
    }
}
