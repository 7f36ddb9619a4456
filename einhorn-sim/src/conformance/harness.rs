//! The pool under test: an einhorn-sim master embedded in this process (on
//! its own thread), its events, its command socket, and cleanup that kills
//! every worker it started, whatever happens.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::events::{Event, Record};
use clap::Parser;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::cli::Options;
use crate::client::Client;
use crate::master::signals::MasterSignals;

/// Everything the master has reported, shared with the cleanup paths.
pub type EventLog = Arc<Mutex<Vec<Record>>>;

/// How a worker exited, from its `exit` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exited {
    /// The worker.
    pub pid: i32,
    /// Its exit status, if it exited.
    pub status: Option<i32>,
    /// The signal that killed it, if one did.
    pub signal: Option<String>,
}

impl Exited {
    /// The exit of `pid` in `events`, if it has exited.
    pub fn find(events: &[Record], pid: i32) -> Option<Exited> {
        events.iter().find_map(|r| match &r.event {
            Event::Exit {
                pid: p,
                status,
                signal,
                ..
            } if *p == pid => Some(Exited {
                pid,
                status: *status,
                signal: signal.clone(),
            }),
            _ => None,
        })
    }

    /// Whether it exited with status 0.
    pub fn is_clean(&self) -> bool {
        self.status == Some(0)
    }
}

impl std::fmt::Display for Exited {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.status, &self.signal) {
            (Some(status), _) => write!(f, "status {status}"),
            (None, Some(signal)) => write!(f, "killed by {signal}"),
            (None, None) => f.write_str("no status"),
        }
    }
}

/// A running pool of workers under an embedded master.
pub struct Pool {
    events: EventLog,
    socket: PathBuf,
    /// The inherited listening socket's address.
    pub addr: SocketAddr,
    master: Option<JoinHandle<Result<u8, String>>>,
    _dir: TempDir,
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Pool {
    /// Starts `workers` copies of `command` (manual ACK, one socket on
    /// 127.0.0.1:0). `events` is filled as the master reports.
    pub fn start(workers: u32, command: &[String], events: EventLog) -> Result<Pool, String> {
        let dir = std::env::temp_dir().join(format!("einhorn-conformance-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let dir = TempDir(dir);
        let socket = dir.0.join("cmd.sock");
        let mut args: Vec<String> = vec!["einhorn-sim".into()];
        for a in [
            "-m",
            "manual",
            "-b",
            "127.0.0.1:0,r",
            "-s",
            "0.2",
            "-k",
            "-q",
        ] {
            args.push(a.into());
        }
        args.extend(["-n".into(), workers.to_string()]);
        args.extend(["-d".into(), socket.display().to_string()]);
        args.extend(["-e".into(), dir.0.join("pid").display().to_string()]);
        args.extend(["-f".into(), dir.0.join("lock").display().to_string()]);
        args.push("--".into());
        args.extend(command.iter().cloned());
        let mut options = Options::try_parse_from(&args).map_err(|e| e.to_string())?;
        // The master runs on a thread of this process: when the process
        // exits, however it exits, the kernel kills every worker, including
        // one that ignores SIGUSR2 and one respawned after the last cleanup.
        options.master_death_signal = Signal::SIGKILL;

        let (tx, rx) = mpsc::channel::<Record>();
        let log = Arc::clone(&events);
        std::thread::spawn(move || {
            for event in rx {
                log.lock().unwrap_or_else(|e| e.into_inner()).push(event);
            }
        });
        let master = std::thread::spawn(move || {
            crate::run_with(options, Some(tx), MasterSignals::children_only)
        });
        let mut pool = Pool {
            events,
            socket,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            master: Some(master),
            _dir: dir,
        };
        let port = pool
            .wait(Duration::from_secs(10), |events| {
                events.iter().find_map(|r| match &r.event {
                    Event::Ready { bound, .. } => bound.first().map(|b| b.port),
                    _ => None,
                })
            })
            .ok_or_else(|| match pool.master.take().map(JoinHandle::join) {
                Some(Ok(Err(e))) => format!("einhorn-sim could not start: {e}"),
                _ => "einhorn-sim did not start".to_string(),
            })?;
        pool.addr = SocketAddr::from(([127, 0, 0, 1], port));
        Ok(pool)
    }

    /// A copy of the events so far.
    pub fn events(&self) -> Vec<Record> {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Polls the events until `check` answers or `limit` passes.
    pub fn wait<T>(&self, limit: Duration, check: impl Fn(&[Record]) -> Option<T>) -> Option<T> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(found) = check(&self.events()) {
                return Some(found);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Workers spawned and not exited, in spawn order.
    pub fn live(&self) -> Vec<i32> {
        live(&self.events())
    }

    /// Live workers that have ACKed.
    pub fn acked(&self) -> Vec<i32> {
        acked(&self.events())
    }

    /// Waits until `n` live workers have all ACKed.
    pub fn settle(&self, n: usize, limit: Duration) -> bool {
        self.wait(limit, |e| {
            let live = live(e);
            let acked = acked(e);
            (live.len() == n && live.iter().all(|p| acked.contains(p))).then_some(())
        })
        .is_some()
    }

    /// The exit event of `pid`, once it has exited.
    pub fn exit_of(&self, pid: i32, limit: Duration) -> Option<Exited> {
        self.wait(limit, |e| Exited::find(e, pid))
    }

    /// Runs a command on the master; returns its reply messages.
    pub fn command(&self, command: &str, args: &[&str]) -> Result<Vec<String>, String> {
        self.command_within(command, args, Some(Duration::from_secs(30)))
    }

    /// [`Pool::command`], giving up when a reply takes longer than `limit`.
    pub fn command_within(
        &self,
        command: &str,
        args: &[&str],
        limit: Option<Duration>,
    ) -> Result<Vec<String>, String> {
        let mut client =
            Client::connect(&self.socket).map_err(|e| format!("command socket: {e}"))?;
        client.set_timeout(limit).map_err(|e| e.to_string())?;
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let mut messages = Vec::new();
        client
            .run(command, &args, |reply| {
                messages.push(reply["message"].as_str().unwrap_or_default().to_string())
            })
            .map_err(|e| format!("{command}: {e}"))?;
        Ok(messages)
    }

    /// Stops the pool: `die`, a bounded wait, then SIGKILL for what is left.
    pub fn shut_down(mut self) {
        let _ = self.command("die", &[]);
        let _ = self.wait(Duration::from_secs(15), |e| {
            live(e).is_empty().then_some(())
        });
        kill_all(&self.events);
        if let Some(master) = self.master.take() {
            let _ = master.join();
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // `die` first, so that the master stops respawning what we kill.
        let _ = self.command_within("die", &[], Some(Duration::from_secs(2)));
        kill_all(&self.events);
    }
}

/// Kills the workers of a pool that is still shared (a scenario timed out).
pub fn kill_all_from(pool: &Pool) {
    kill_all(&pool.events);
}

/// SIGKILLs every worker that has not exited (stopped ones too), again
/// until the master has reported them all gone (it may respawn meanwhile),
/// for at most 5 s. Workers left after that die with this process
/// (PDEATHSIG, see [`Pool::start`]).
pub fn kill_all(events: &EventLog) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let live = live(&events.lock().unwrap_or_else(|e| e.into_inner()));
        if live.is_empty() || Instant::now() >= deadline {
            return;
        }
        for pid in live {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Workers spawned and not exited.
pub fn live(events: &[Record]) -> Vec<i32> {
    let exited: std::collections::HashSet<i32> = events
        .iter()
        .filter_map(|r| match r.event {
            Event::Exit { pid, .. } => Some(pid),
            _ => None,
        })
        .collect();
    events
        .iter()
        .filter_map(|r| match r.event {
            Event::Spawn { pid, .. } if !exited.contains(&pid) => Some(pid),
            _ => None,
        })
        .collect()
}

/// Live workers that have ACKed.
pub fn acked(events: &[Record]) -> Vec<i32> {
    let live = live(events);
    events
        .iter()
        .filter_map(|r| match r.event {
            Event::Ack { pid } if live.contains(&pid) => Some(pid),
            _ => None,
        })
        .collect()
}

/// Stops every worker but `keep` (so new connections go to `keep`) until dropped.
pub struct OthersStopped(Vec<i32>);

impl OthersStopped {
    /// SIGSTOPs every live worker except `keep`.
    pub fn new(pool: &Pool, keep: i32) -> OthersStopped {
        let others: Vec<i32> = pool.live().into_iter().filter(|p| *p != keep).collect();
        for &pid in &others {
            let _ = kill(Pid::from_raw(pid), Signal::SIGSTOP);
        }
        // kill() returns before the process has stopped; an accept() it is
        // in the middle of could still take the next connection.
        let deadline = Instant::now() + Duration::from_secs(2);
        for &pid in &others {
            while !matches!(super::procfs::state(pid), Some('T') | Some('t') | None)
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        OthersStopped(others)
    }
}

impl Drop for OthersStopped {
    fn drop(&mut self) {
        for &pid in &self.0 {
            let _ = kill(Pid::from_raw(pid), Signal::SIGCONT);
        }
    }
}
