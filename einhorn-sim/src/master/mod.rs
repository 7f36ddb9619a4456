//! The master: one event loop that owns the pool. Signals, child exits,
//! command-socket lines and timers all arrive here, and every pass runs
//! Einhorn's reap → replenish → cull.

mod clients;
mod commands;
mod handover;
pub mod pool;
mod reexec;
pub mod signals;
mod spawning;
mod state;
mod timers;
mod upgrades;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use serde_norway::Value;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::sync::Notify;

use crate::bind::BoundSocket;
use crate::cli::{AckMode, Options};
use crate::events::{Event, Events};
use crate::protocol::{self, Request};
use crate::report::{Level, Log};
use crate::spawn::{inspect_argv, resolve_program, Spawn};
pub use handover::Handover;
use pool::{Pool, Worker};
use reexec::Reexec;
use signals::{MasterSignal, MasterSignals};

/// The Einhorn version whose behaviour this master reproduces.
pub const EINHORN_VERSION: &str = "1.1.1";

/// A command-socket connection's id.
pub type ConnId = u64;

/// What a connection task tells the master.
#[derive(Debug)]
pub enum Input {
    /// A client connected; replies go through the handle. The text says
    /// who it is (peer credentials).
    Connected(ConnId, ClientHandle, String),
    /// A complete line, decoded (`None`: not a request). The connection
    /// sends its next line only once the master has handled this one.
    Line(ConnId, Option<Request>),
    /// The client sent a line longer than the limit.
    TooLong(ConnId),
    /// The client will send nothing more.
    ReadDone(ConnId),
    /// The connection is gone.
    Closed(ConnId),
    /// `--watch`: these paths changed and have settled.
    Rebuilt(Vec<std::path::PathBuf>),
}

/// The most reply bytes a client may leave unread. Past it the client is
/// disconnected, so one that sends commands and never reads cannot grow
/// the master's memory.
pub const MAX_PENDING_OUTPUT: usize = 8 << 20;

/// The master's side of a client connection.
#[derive(Debug, Clone)]
pub struct ClientHandle {
    /// The connection's descriptor, kept across a re-exec.
    pub fd: std::os::fd::RawFd,
    /// Its socket's inode: the descriptor is still this connection's only
    /// while they match.
    pub inode: u64,
    /// Replies to write.
    pub tx: UnboundedSender<Outgoing>,
    /// Bytes sent to `tx` and not yet written.
    pub pending: Arc<AtomicUsize>,
    /// Ends the connection at once, whatever is queued.
    pub abort: Arc<Notify>,
    /// Signalled after each line is handled: the connection's next may come.
    pub handled: Arc<Notify>,
    /// What was read and not yet sent to the master as a line: a re-exec
    /// passes it on. A line leaves it in the same step as it is sent.
    pub unread: Arc<std::sync::Mutex<protocol::LineReader>>,
}

/// What the master tells a connection task.
#[derive(Debug)]
pub enum Outgoing {
    /// Write this line.
    Line(String),
    /// Close the connection.
    Close,
}

/// Things the master waits for.
#[derive(Debug, Clone)]
enum Timer {
    /// Timer ACK mode: the worker counts as alive.
    Ack(i32, Instant),
    /// `--ack-timeout`: the worker must have ACKed by now.
    AckDeadline(i32, Instant),
    /// The gradual-spawn timer.
    Spinup,
    /// `-t`: KILL these workers (pid, spinup time) if still alive.
    SignalTimeout(Vec<(i32, Instant)>),
    /// `--ack-timeout` × 3: abandon the upgrade to this version if unfinished.
    UpgradeDeadline(u64),
}

/// The static configuration, from the command line.
pub struct Config {
    /// Everything the user passed.
    pub options: Options,
    /// The command socket path (`EINHORN_SOCK_PATH`).
    pub sock_path: PathBuf,
    /// The pidfile path.
    pub pidfile: PathBuf,
    /// The lockfile path.
    pub lockfile: PathBuf,
    /// einhorn-sim's own arguments as first given, for a re-exec.
    pub argv: Vec<String>,
    /// The executable to re-exec, as resolved when the first master started.
    pub exe: PathBuf,
    /// The command socket's listening descriptor.
    pub command_fd: std::os::fd::RawFd,
    /// The next command-socket connection id (shared with the accept loop).
    pub next_conn: Arc<std::sync::atomic::AtomicU64>,
    /// Whether the master may re-exec its process (not when embedded).
    pub can_reexec: bool,
    /// `--watch`'s watcher, whose view a re-exec carries on.
    pub watch: Option<crate::watch::Watch>,
}

/// The master's state, by concern.
pub struct Master {
    /// The command line and the paths chosen from it.
    config: Config,
    /// This process.
    pid: u32,
    /// PROGRAM, as last resolved (again at each upgrade).
    program: PathBuf,
    /// The `-b` sockets every worker gets.
    sockets: Vec<BoundSocket>,
    /// What the master writes: its log, and the `--events` file.
    log: Log,
    events: Events,
    /// What the command socket can change.
    settings: Settings,
    /// The workers.
    pool: Pool,
    /// The version new workers are spawned at.
    version: u64,
    /// False once the master is shutting down: no more spawns.
    respawn: bool,
    /// The upgrade in progress, and what is left of past ones.
    upgrade_state: UpgradeState,
    /// When workers may be spawned.
    spinup: Spinup,
    /// What the master waits for, and when.
    timers: Vec<(Instant, Timer)>,
    /// The command-socket connections.
    clients: Clients,
    /// A re-exec asked for, run at the top of the next loop pass.
    pending_reexec: Option<Reexec>,
    /// Command lines read while a re-exec was under way, for the new master.
    deferred_lines: Vec<(ConnId, Option<Request>)>,
}

/// The settings the command socket can change (`config`, `inc`, `dec`,
/// `set_workers`, `louder`, `quieter`), first taken from the command line.
struct Settings {
    /// `-n`: how many workers to run.
    number: u32,
    /// `-s`: the base spawn interval, in seconds.
    seconds: f64,
    /// Whether Ruby would hold `seconds` as an Integer (Einhorn's default,
    /// or a whole number given to `config`), not a Float (`-s`).
    seconds_integer: bool,
    /// `--max-unacked`.
    max_unacked: u32,
    /// `--max-upgrade-additional`.
    max_upgrade_additional: Option<u32>,
    /// `-m`.
    ack_mode: AckMode,
}

/// An upgrade in progress.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Upgrade {
    /// It is smooth (one old worker goes per new ACK), not a fleet one.
    smooth: bool,
    /// The version it replaces.
    from: u64,
}

/// Upgrades: the one in progress, and the counters that outlive it (a
/// re-exec'd master gets them as they are).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct UpgradeState {
    /// The upgrade in progress, if any.
    current: Option<Upgrade>,
    /// Whether the last upgrade started was smooth (`state` reports it, in
    /// progress or not, as Einhorn does).
    last_smooth: bool,
    /// The highest version ever started.
    newest_version: u64,
    /// Reloads so far (each upgrade reloads first).
    generation: u64,
    /// When the last upgrade started.
    last_upgraded: Option<SystemTime>,
    /// `--drop-env-var` applies: the first upgrade has happened.
    drop_env_active: bool,
    /// `--watch`: a rebuild arrived during an upgrade; one more upgrade
    /// starts when it ends.
    queued: bool,
}

/// Spawn pacing: when the last worker started, and the deaths that slow
/// the next ones down.
#[derive(Default)]
struct Spinup {
    /// When the last worker was spawned (`None`: not yet, so the first N
    /// start at once).
    last: Option<Instant>,
    /// The same, as wall-clock time for `state`.
    last_wall: Option<SystemTime>,
    /// New workers in a row that died before their ACK: the backoff
    /// exponent, and the end of ACK pacing until the next ACK.
    deaths_before_ack: u32,
    /// When an ACKed worker last died on its own within `-s` of its start:
    /// ACK pacing then waits `-s` too, so a worker that ACKs and crashes is
    /// not respawned in a tight loop.
    last_quick_exit: Option<Instant>,
    /// A `Timer::Spinup` is armed.
    timer_armed: bool,
}

/// The command-socket connections.
#[derive(Default)]
struct Clients {
    /// Where each connection's replies go.
    connections: HashMap<ConnId, ClientHandle>,
    /// Who each connection is (peer credentials).
    peers: HashMap<ConnId, String>,
    /// Connections streaming an upgrade, with the request id to answer.
    subscribers: Vec<(ConnId, Value)>,
}

impl Master {
    /// A master ready to run: sockets bound, program resolved.
    pub fn new(
        config: Config,
        sockets: Vec<BoundSocket>,
        program: PathBuf,
        events: Events,
    ) -> Master {
        let options = &config.options;
        let max_unacked = options
            .max_unacked
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get() as u32));
        Master {
            pid: std::process::id(),
            settings: Settings {
                number: options.number,
                seconds: options.seconds.unwrap_or(1.0),
                seconds_integer: options.seconds.is_none(),
                max_unacked,
                max_upgrade_additional: options.max_upgrade_additional,
                ack_mode: options.ack_mode(),
            },
            log: Log::new(options.verbosity()),
            events,
            program,
            sockets,
            pool: Pool::default(),
            version: 0,
            respawn: true,
            upgrade_state: UpgradeState::default(),
            spinup: Spinup::default(),
            timers: Vec::new(),
            clients: Clients::default(),
            pending_reexec: None,
            deferred_lines: Vec::new(),
            config,
        }
    }

    /// The master an earlier one re-exec'd: made as [`Master::new`] makes
    /// one, then given the state and the client connections it handed
    /// over. Workers that died during the exec are reaped on the first
    /// pass; an upgrade the exec was for starts now.
    pub fn resume(
        config: Config,
        sockets: Vec<BoundSocket>,
        program: PathBuf,
        events: Events,
        handover: &Handover,
        clients: Vec<(ConnId, ClientHandle, String)>,
    ) -> Master {
        let mut master = Master::new(config, sockets, program, events);
        handover.restore(&mut master);
        master.forget_lost_workers();
        for (id, handle, peer) in clients {
            master.clients.connections.insert(id, handle);
            master.clients.peers.insert(id, peer);
        }
        // Subscriptions of clients that did not come along end here.
        let connections = &master.clients.connections;
        master
            .clients
            .subscribers
            .retain(|(conn, _)| connections.contains_key(conn));
        master.info(&format!(
            "Using loaded state: {} workers, version {}, generation {}",
            master.pool.workers.len(),
            master.version,
            master.upgrade_state.generation
        ));
        master.events.emit(Event::Reexec {
            generation: master.upgrade_state.generation,
        });
        if let Some(smooth) = handover.upgrade_after {
            master.upgrade_workers(smooth);
        }
        for (conn, request) in handover.lines() {
            master.on_input(Input::Line(conn, request));
        }
        master
    }

    /// Runs until every worker is gone after a shutdown (exit status 0) or
    /// SIGQUIT (exit status 1).
    pub async fn run(
        mut self,
        mut inputs: UnboundedReceiver<Input>,
        mut signals: MasterSignals,
    ) -> i32 {
        let status = loop {
            if let Some(why) = self.pending_reexec.take() {
                self.reexec(why, &mut inputs).await;
                continue;
            }
            self.reap();
            self.replenish();
            self.cull();
            if self.upgrade_state.queued && self.upgrade_state.current.is_none() && self.respawn {
                self.upgrade_state.queued = false;
                self.upgrade_log(Level::Info, "Starting the upgrade queued by --watch.");
                self.upgrade(true);
                continue;
            }
            if !self.respawn && self.pool.workers.is_empty() {
                break 0;
            }
            let deadline = self.next_wakeup();
            let wake = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                Some(input) = inputs.recv() => self.on_input(input),
                signal = signals.recv() => {
                    if let Some(status) = self.on_signal(signal) {
                        break status;
                    }
                }
                _ = wake => self.fire_timers(),
            }
        };
        self.exit_cleanup();
        status
    }

    fn exit_cleanup(&mut self) {
        if self.config.options.kill_children_on_exit {
            let pids = self.pool.pids();
            self.signal_all(Signal::SIGUSR2, &pids, true);
        }
        let _ = std::fs::remove_file(&self.config.pidfile);
        let _ = std::fs::remove_file(&self.config.lockfile);
        let _ = std::fs::remove_file(&self.config.sock_path);
        self.events.emit(Event::MasterExit {});
    }

    fn info(&self, msg: &str) {
        self.log.write(Level::Info, msg);
    }

    fn debug(&self, msg: &str) {
        self.log.write(Level::Debug, msg);
    }

    fn error(&self, msg: &str) {
        self.log.write(Level::Error, msg);
    }

    /// Logs a message Einhorn tags `:upgrade`: it is also streamed to every
    /// client following an upgrade, whatever the verbosity.
    fn upgrade_log(&mut self, level: Level, msg: &str) {
        self.log.write(level, msg);
        let text = if level == Level::Error {
            format!("ERROR: {msg}")
        } else {
            msg.to_string()
        };
        for (conn, id) in self.clients.subscribers.clone() {
            self.send(conn, protocol::reply(&text, Some(&id), true));
        }
    }

    fn on_signal(&mut self, signal: MasterSignal) -> Option<i32> {
        match signal {
            MasterSignal::Hup => self.upgrade(true),
            MasterSignal::Usr2 | MasterSignal::Int => self.shut_down(Signal::SIGUSR2),
            MasterSignal::Term => self.shut_down(Signal::SIGTERM),
            MasterSignal::Quit => {
                let pids = self.pool.pids();
                self.signal_all(Signal::SIGQUIT, &pids, true);
                self.respawn = false;
                return Some(1);
            }
            MasterSignal::Usr1 => {
                let pids = self.pool.pids();
                self.signal_all(Signal::SIGUSR1, &pids, false);
            }
            MasterSignal::Chld => {}
        }
        None
    }

    /// Stops respawning and asks every worker to go.
    fn shut_down(&mut self, signal: Signal) {
        self.respawn = false;
        let pids = self.pool.pids();
        self.signal_all(signal, &pids, true);
    }

    /// Sends `signal` to `pids`. Recorded signals mark the workers as on
    /// their way out and arm the `-t` escalation.
    fn signal_all(&mut self, signal: Signal, pids: &[i32], record: bool) -> Vec<i32> {
        let name = signal.as_str().trim_start_matches("SIG");
        self.upgrade_log(
            Level::Info,
            &format!("Sending {name} to {}", inspect_pids(pids)),
        );
        let now = Instant::now();
        let mut sent = Vec::new();
        for &pid in pids {
            let Some(worker) = self.pool.get_mut(pid) else {
                self.upgrade_log(
                    Level::Error,
                    &format!("Trying to send {name} to dead child {pid}. The fact we tried this probably indicates a bug in Einhorn."),
                );
                continue;
            };
            if record {
                let again = !worker.signaled.insert(name.to_string());
                worker.last_signaled_at = Some(now);
                worker.last_signaled_wall = Some(SystemTime::now());
                if again {
                    self.upgrade_log(
                        Level::Error,
                        &format!("Re-sending {name} to already-signaled child {pid}. It may be slow to spin down, or it may be swallowing SIGs."),
                    );
                }
            }
            match kill(Pid::from_raw(pid), signal) {
                Ok(()) => {
                    sent.push(pid);
                    self.events.emit(Event::Signal {
                        pid,
                        signal: signal.as_str().to_string(),
                    });
                }
                Err(_) => self.upgrade_log(
                    Level::Debug,
                    &format!("Attempted to {name} child {pid} but the process does not exist"),
                ),
            }
        }
        if record {
            if let Some(t) = self.config.options.signal_timeout {
                let targets = pids
                    .iter()
                    .filter_map(|p| self.pool.get(*p).map(|w| (w.pid, w.spinup_time)))
                    .collect();
                self.timers.push((
                    now + Duration::from_secs(u64::from(t)),
                    Timer::SignalTimeout(targets),
                ));
            }
        }
        self.info(&format!(
            "Successfully sent {name}s to {} processes: {}",
            sent.len(),
            inspect_pids(&sent)
        ));
        sent
    }
}

/// `--watch`: an upgrade is abandoned once this many of its workers in a
/// row have died before their ACK (a build that crashes at start).
const WATCH_CRASH_LIMIT: u32 = 3;

/// Ruby's `inspect` of an array of pids: `[1, 2]`.
fn inspect_pids(pids: &[i32]) -> String {
    let parts: Vec<String> = pids.iter().map(i32::to_string).collect();
    format!("[{}]", parts.join(", "))
}
