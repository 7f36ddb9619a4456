//! The master: one event loop that owns the pool. Signals, child exits,
//! command-socket lines and timers all arrive here, and every pass runs
//! Einhorn's reap → replenish → cull.

mod commands;
pub mod pool;
pub mod signals;
mod state;

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
use pool::{Pool, Worker};
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
    /// Replies to write.
    pub tx: UnboundedSender<Outgoing>,
    /// Bytes sent to `tx` and not yet written.
    pub pending: Arc<AtomicUsize>,
    /// Ends the connection at once, whatever is queued.
    pub abort: Arc<Notify>,
    /// Signalled after each line is handled: the connection's next may come.
    pub handled: Arc<Notify>,
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
}

/// The settings the command socket can change (`config`, `inc`, `dec`,
/// `set_workers`, `louder`, `quieter`), first taken from the command line.
struct Settings {
    /// `-n`: how many workers to run.
    number: u32,
    /// `-s`: the base spawn interval, in seconds.
    seconds: f64,
    /// `--max-unacked`.
    max_unacked: u32,
    /// `--max-upgrade-additional`.
    max_upgrade_additional: Option<u32>,
    /// `-m`.
    ack_mode: AckMode,
}

/// Upgrades: the one in progress, and the counters that outlive it.
#[derive(Default)]
struct UpgradeState {
    /// An upgrade is in progress.
    active: bool,
    /// It is smooth (one old worker goes per new ACK), not a fleet one.
    smooth: bool,
    /// The version it replaces.
    from: u64,
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
                seconds: options.seconds,
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
            config,
        }
    }

    /// Runs until every worker is gone after a shutdown (exit status 0) or
    /// SIGQUIT (exit status 1).
    pub async fn run(
        mut self,
        mut inputs: UnboundedReceiver<Input>,
        mut signals: MasterSignals,
    ) -> i32 {
        let status = loop {
            self.reap();
            self.replenish();
            self.cull();
            if self.upgrade_state.queued && !self.upgrade_state.active && self.respawn {
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

    fn next_wakeup(&self) -> Option<Instant> {
        let timer = self.timers.iter().map(|(at, _)| *at).min();
        let periodic = self
            .config
            .options
            .signal_timeout
            .map(|t| Instant::now() + Duration::from_secs(u64::from(t)));
        match (timer, periodic) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
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

    // ----- logging -----

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

    // ----- connections -----

    fn send(&mut self, conn: ConnId, value: Value) {
        let Some(client) = self.clients.connections.get(&conn) else {
            return;
        };
        let line = protocol::encode(&value);
        let pending = client.pending.fetch_add(line.len(), Ordering::Relaxed) + line.len();
        if pending > MAX_PENDING_OUTPUT {
            let who = self.clients.peers.get(&conn).cloned().unwrap_or_default();
            self.error(&format!(
                "Disconnecting command socket client {conn} ({who}): it left more than {} MiB of replies unread",
                MAX_PENDING_OUTPUT >> 20
            ));
            client.abort.notify_one();
            self.clients.connections.remove(&conn);
            self.clients.subscribers.retain(|(c, _)| *c != conn);
            return;
        }
        let _ = client.tx.send(Outgoing::Line(line));
    }

    fn close(&mut self, conn: ConnId) {
        if let Some(client) = self.clients.connections.remove(&conn) {
            let _ = client.tx.send(Outgoing::Close);
        }
        self.clients.subscribers.retain(|(c, _)| *c != conn);
    }

    fn on_input(&mut self, input: Input) {
        match input {
            Input::Connected(conn, client, peer) => {
                self.clients.connections.insert(conn, client);
                self.clients.peers.insert(conn, peer);
            }
            Input::Line(conn, request) => {
                // Lines after a worker:ack on the same connection are still
                // run, but nobody hears their replies (as in Einhorn).
                match request {
                    Some(request) => self.process(conn, request),
                    None => self.send(
                        conn,
                        protocol::reply("Could not parse command", None, false),
                    ),
                }
                if let Some(client) = self.clients.connections.get(&conn) {
                    client.handled.notify_one();
                }
            }
            Input::TooLong(conn) => {
                self.send(
                    conn,
                    protocol::reply("Could not parse command", None, false),
                );
                self.close(conn);
            }
            Input::ReadDone(conn) => {
                if !self.clients.subscribers.iter().any(|(c, _)| *c == conn) {
                    self.close(conn);
                }
            }
            Input::Closed(conn) => {
                self.clients.connections.remove(&conn);
                self.clients.peers.remove(&conn);
                self.clients.subscribers.retain(|(c, _)| *c != conn);
            }
            Input::Rebuilt(paths) => self.on_rebuilt(&paths),
        }
    }

    /// `--watch`: a rebuild upgrades smoothly. During an upgrade it queues
    /// one more, unless the upgrade in progress is failing (a new worker
    /// died before its ACK): then the new build replaces it at once, as a
    /// second `upgrade` does in Einhorn.
    fn on_rebuilt(&mut self, paths: &[std::path::PathBuf]) {
        if !self.respawn {
            return;
        }
        let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        let queued = self.upgrade_state.active && self.spinup.deaths_before_ack == 0;
        self.events.emit(Event::Rebuilt {
            paths: names.clone(),
            queued,
        });
        let what = names.join(", ");
        if queued {
            self.upgrade_state.queued = true;
            self.upgrade_log(
                Level::Info,
                &format!("{what} changed during the upgrade: one more upgrade is queued."),
            );
        } else {
            self.upgrade_log(Level::Info, &format!("{what} changed: upgrading."));
            self.upgrade(true);
        }
    }

    // ----- signals to the master -----

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

    // ----- workers -----

    fn reap(&mut self) {
        loop {
            let status = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(status) => status,
            };
            let (pid, code, signal) = match status {
                WaitStatus::Exited(pid, code) => (pid, Some(code), None),
                WaitStatus::Signaled(pid, signal, _) => (pid, None, Some(signal.as_str())),
                _ => continue,
            };
            let pid = pid.as_raw();
            let Some(worker) = self.pool.remove(pid) else {
                self.error(&format!(
                    "Could not find any config for exited child {pid}! This probably indicates a bug in Einhorn."
                ));
                continue;
            };
            let quick =
                worker.spinup_time.elapsed() < Duration::from_secs_f64(self.settings.seconds);
            if worker.acked && worker.unsignaled() && quick {
                self.spinup.last_quick_exit = Some(Instant::now());
            }
            let suffix = if worker.acked {
                ""
            } else {
                self.spinup.deaths_before_ack += 1;
                " before it was ACKed"
            };
            self.upgrade_log(Level::Info, &format!("===> Exited worker {pid}{suffix}"));
            self.events.emit(Event::Exit {
                pid,
                status: code,
                signal: signal.map(str::to_string),
                acked: worker.acked,
                version: worker.version,
                index: worker.index,
            });
            let deaths = self.spinup.deaths_before_ack;
            if self.config.options.watch.is_some()
                && self.upgrade_state.active
                && worker.version == self.version
                && deaths >= WATCH_CRASH_LIMIT
            {
                let version = self.version;
                self.abandon_upgrade(
                    version,
                    &format!("{deaths} workers of version {version} died before their ACK"),
                );
            }
        }
    }

    fn replenish(&mut self) {
        if !self.respawn {
            return;
        }
        if self.spinup.last.is_none() {
            self.replenish_immediately();
        } else {
            self.replenish_gradually();
        }
    }

    fn replenish_immediately(&mut self) {
        let missing = self.pool.missing(self.version, self.settings.number);
        if missing <= 0 {
            return;
        }
        self.info(&format!("Launching {missing} new workers"));
        for _ in 0..missing {
            self.spawn_worker();
        }
    }

    fn spinup_interval(&self) -> f64 {
        (self.settings.seconds * 1.5f64.powi(self.spinup.deaths_before_ack as i32)).min(30.0)
    }

    /// Whether the next spawn waits only for ACKs: manual ACK mode, unless
    /// `--einhorn-pacing`, while no new worker has died before its ACK (nor
    /// an ACKed one within `-s` of its start). After such a death, the `-s`
    /// interval and its backoff apply again, until an ACK breaks the streak.
    fn paced_by_acks(&self) -> bool {
        matches!(self.settings.ack_mode, AckMode::Manual)
            && !self.config.options.einhorn_pacing
            && self.spinup.deaths_before_ack == 0
            && self
                .spinup
                .last_quick_exit
                .is_none_or(|t| t.elapsed().as_secs_f64() >= self.settings.seconds)
    }

    /// Starts workers while any are missing and the limits allow
    /// (`--max-unacked`, `--max-upgrade-additional`). Each ACK runs the
    /// loop again, which starts the next ones: no timer is involved.
    fn replenish_on_acks(&mut self) {
        while self.paced_by_acks()
            && self.pool.missing(self.version, self.settings.number) > 0
            && self.spinup_blocked().is_none()
        {
            self.debug("Spinning up a new process: the previous new workers have ACKed.");
            self.spawn_worker();
        }
    }

    fn replenish_gradually(&mut self) {
        if self.paced_by_acks() {
            self.replenish_on_acks();
            return;
        }
        if self.spinup.timer_armed || self.pool.missing(self.version, self.settings.number) <= 0 {
            return;
        }
        let interval = self.spinup_interval();
        let ago = self
            .spinup
            .last
            .map_or(f64::INFINITY, |t| t.elapsed().as_secs_f64());
        if ago > interval {
            if self.trigger_spinup() {
                let message = format!(
                    "Last spinup was {ago}s ago, and spinup_interval is {interval}s, so spinning up a new process."
                );
                if self.spinup.deaths_before_ack > 0 {
                    let deaths = self.spinup.deaths_before_ack;
                    self.upgrade_log(
                        Level::Info,
                        &format!("{message} (there have been {deaths} consecutive unacked worker deaths)"),
                    );
                } else {
                    self.debug(&message);
                }
                self.spawn_worker();
            }
        } else {
            self.debug(&format!(
                "Last spinup was {ago}s ago, and spinup_interval is {interval}s, so not spinning up a new process."
            ));
        }
        self.spinup.timer_armed = true;
        self.events.emit(Event::RespawnDelay { seconds: interval });
        self.timers.push((
            Instant::now() + Duration::from_secs_f64(interval),
            Timer::Spinup,
        ));
    }

    /// Whether the limits allow a spawn now; logs why not.
    fn trigger_spinup(&self) -> bool {
        match self.spinup_blocked() {
            Some(reason) => {
                self.info(&reason);
                false
            }
            None => true,
        }
    }

    /// Why a spawn must wait: too many unacked new workers
    /// (`--max-unacked`), or too many workers during an upgrade
    /// (`--max-upgrade-additional`).
    fn spinup_blocked(&self) -> Option<String> {
        let unacked = self.pool.unacked_new(self.version);
        if unacked >= self.settings.max_unacked as usize {
            return Some(format!(
                "There are {unacked} unacked new workers, and max_unacked is {}, so not spinning up a new process.",
                self.settings.max_unacked
            ));
        }
        if let Some(extra) = self.settings.max_upgrade_additional {
            let total = self.pool.workers.len() as i64;
            let capacity = i64::from(self.settings.number) + i64::from(extra);
            if capacity - total < 0 {
                return Some(format!(
                    "Over worker capacity by {} during upgrade, {} new workers of {total} total. Waiting for old workers to exit before spinning up a process.",
                    total - capacity,
                    self.pool.modern(self.version).count()
                ));
            }
        }
        None
    }

    /// Spawns one worker at the current version.
    fn spawn_worker(&mut self) {
        let index = self.pool.free_index();
        let dropped: &[String] = if self.upgrade_state.drop_env_active {
            &self.config.options.drop_env_var
        } else {
            &[]
        };
        let args = &self.config.options.command[1..];
        let spawned = Spawn {
            program: &self.program,
            args,
            master_pid: self.pid,
            sock_path: &self.config.sock_path,
            sockets: &self.sockets,
            index,
            kill_on_master_death: self
                .config
                .options
                .kill_children_on_exit
                .then_some(self.config.options.master_death_signal),
            dropped_env: dropped,
        }
        .run();
        let now = Instant::now();
        self.spinup.last = Some(now);
        self.spinup.last_wall = Some(SystemTime::now());
        let pid = match spawned {
            Ok(pid) => pid as i32,
            Err(e) => {
                // Counts like a worker that died before its ACK, so the
                // respawn backoff applies.
                self.spinup.deaths_before_ack += 1;
                self.upgrade_log(
                    Level::Error,
                    &format!("Could not spawn {}: {e}", self.program.display()),
                );
                self.events.emit(Event::SpawnFailed {
                    error: e.to_string(),
                    version: self.version,
                });
                return;
            }
        };
        self.upgrade_log(
            Level::Info,
            &format!("===> Launched {pid} (index: {index})"),
        );
        if self.log.verbosity <= 1 {
            eprintln!(
                "[WORKER {pid}] INFO: About to exec {}",
                inspect_argv(&self.program, &self.config.options.command[1..])
            );
        }
        self.pool.workers.push(Worker {
            pid,
            version: self.version,
            acked: false,
            signaled: Default::default(),
            last_signaled_at: None,
            last_signaled_wall: None,
            index,
            spinup_time: now,
            spinup_wall: SystemTime::now(),
            pinged_at: None,
            pinged_request_id: None,
        });
        match &self.settings.ack_mode {
            AckMode::Timer { timeout, .. } => {
                self.timers.push((now + *timeout, Timer::Ack(pid, now)))
            }
            AckMode::Manual => {
                if let Some(limit) = self.config.options.ack_timeout() {
                    self.timers
                        .push((now + limit, Timer::AckDeadline(pid, now)));
                }
            }
        }
        self.events.emit(Event::Spawn {
            pid,
            index,
            version: self.version,
            program: self.program.display().to_string(),
        });
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

    fn register_ack(&mut self, pid: i32) {
        let count_before = self.spinup.deaths_before_ack;
        let Some(worker) = self.pool.get_mut(pid) else {
            self.error(&format!(
                "Could not find state for PID {pid}; ignoring ACK."
            ));
            return;
        };
        if worker.acked {
            self.error(&format!("Pid {pid} already ACKed; ignoring new ACK."));
            return;
        }
        worker.acked = true;
        self.spinup.deaths_before_ack = 0;
        let streak = if count_before > 0 {
            format!(", breaking the streak of {count_before} consecutive unacked workers dying")
        } else {
            String::new()
        };
        self.info(&format!(
            "Up to {} / {} {} ACKs{streak}",
            self.pool.ack_count(self.version),
            self.settings.number,
            self.settings.ack_mode.name()
        ));
        self.events.emit(Event::Ack { pid });
    }

    // ----- culling and upgrades -----

    fn cull(&mut self) {
        let acked = self.pool.ack_count(self.version);
        let unsignaled = self.pool.unsignaled_count(self.version);
        let target = self.settings.number as usize;
        if self.upgrade_state.active && acked >= target {
            self.upgrade_state.active = false;
            self.upgrade_log(
                Level::Info,
                &format!(
                    "Upgraded successfully to version {} (Einhorn {EINHORN_VERSION}).",
                    self.version
                ),
            );
            self.events.emit(Event::UpgradeDone {
                version: self.version,
            });
            self.finish_upgrade_streams("Upgrade done");
        }
        let old = self.pool.old(self.version);
        if !self.upgrade_state.active && !old.is_empty() {
            self.upgrade_log(
                Level::Info,
                &format!("Killing off {} old workers.", old.len()),
            );
            self.signal_all(Signal::SIGUSR2, &old, true);
        } else if self.upgrade_state.active && self.upgrade_state.smooth {
            let excess = (old.len() + acked) as i64 - target as i64;
            if excess > 0 {
                let victims: Vec<i32> = old.into_iter().take(excess as usize).collect();
                self.upgrade_log(
                    Level::Info,
                    &format!("Smooth upgrade: killing off {excess} old workers."),
                );
                self.signal_all(Signal::SIGUSR2, &victims, true);
            }
        }
        if unsignaled > target {
            let mut candidates: Vec<&Worker> = self
                .pool
                .modern(self.version)
                .filter(|w| w.unsignaled())
                .collect();
            candidates.sort_by_key(|w| w.acked);
            let victims: Vec<i32> = candidates
                .iter()
                .take(unsignaled - target)
                .map(|w| w.pid)
                .collect();
            self.info(&format!(
                "Have too many workers at the current version, so killing off {} of them.",
                victims.len()
            ));
            self.signal_all(Signal::SIGUSR2, &victims, true);
        }
        if self.config.options.signal_timeout.is_some() {
            self.kill_expired_signaled_workers();
        }
    }

    fn kill_expired_signaled_workers(&mut self) {
        let Some(t) = self.config.options.signal_timeout else {
            return;
        };
        let limit = Duration::from_secs(u64::from(t));
        let expired: Vec<(i32, Duration)> = self
            .pool
            .workers
            .iter()
            .filter(|w| w.signaled.contains("USR2") && !w.signaled.contains("KILL"))
            .filter_map(|w| {
                let ago = w.last_signaled_at?.elapsed();
                (ago >= limit).then_some((w.pid, ago))
            })
            .collect();
        if expired.is_empty() {
            return;
        }
        self.info(&format!(
            "{} expired signaled workers found.",
            expired.len()
        ));
        for (pid, ago) in expired {
            self.upgrade_log(
                Level::Info,
                &format!(
                    "Child {pid} was signaled {}s ago. Sending SIGKILL as it is still active after {t}s timeout.",
                    ago.as_secs()
                ),
            );
            self.escalate_to_kill(pid);
        }
    }

    /// `-t`: SIGKILL for a worker still alive after its graceful signal,
    /// recorded as that signal is (the `KILL` mark stops any further
    /// escalation; `last_signaled_at` is now).
    fn escalate_to_kill(&mut self, pid: i32) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        if let Some(w) = self.pool.get_mut(pid) {
            w.signaled.insert("KILL".to_string());
            w.last_signaled_at = Some(Instant::now());
            w.last_signaled_wall = Some(SystemTime::now());
        }
        self.events.emit(Event::Signal {
            pid,
            signal: "SIGKILL".to_string(),
        });
    }

    /// Starts a smooth or fleet upgrade: new workers of a new version, the
    /// old ones told to go as the new ones ACK. PROGRAM is looked up again,
    /// so a rebuilt binary is picked up.
    fn upgrade(&mut self, smooth: bool) {
        self.reload();
        self.upgrade_state.smooth = smooth;
        self.upgrade_state.drop_env_active = true;
        if self.upgrade_state.active {
            let msg = format!(
                "Currently upgrading ({} / {} ACKs; bumping version and starting over)...",
                self.pool.ack_count(self.version),
                self.settings.number
            );
            self.upgrade_log(Level::Info, &msg);
        } else {
            self.upgrade_state.active = true;
            self.upgrade_state.from = self.version;
            let kind = if smooth { "smooth" } else { "fleet" };
            let msg = format!("Starting {kind} upgrade from version {}...", self.version);
            self.upgrade_log(Level::Info, &msg);
        }
        self.spinup.deaths_before_ack = 0;
        self.upgrade_state.last_upgraded = Some(SystemTime::now());
        self.upgrade_state.newest_version += 1;
        self.version = self.upgrade_state.newest_version;
        self.events.emit(Event::UpgradeStart {
            version: self.version,
            from: self.upgrade_state.from,
            smooth,
        });
        if let Some(limit) = self.config.options.ack_timeout() {
            self.timers.push((
                Instant::now() + limit * 3,
                Timer::UpgradeDeadline(self.version),
            ));
        }
        if smooth {
            self.replenish_gradually();
        } else {
            self.replenish_immediately();
        }
    }

    /// Einhorn re-execs itself here; this master keeps running and only
    /// re-resolves PROGRAM and counts the generation.
    fn reload(&mut self) {
        self.upgrade_state.generation += 1;
        match resolve_program(&self.config.options.command[0]) {
            Ok(program) => self.program = program,
            Err(e) => self.error(&format!(
                "Could not resolve the program again, keeping {}: {e}",
                self.program.display()
            )),
        }
        self.info(&format!(
            "Reloaded (generation {}); einhorn-sim does not re-exec itself",
            self.upgrade_state.generation
        ));
    }

    fn finish_upgrade_streams(&mut self, message: &str) {
        for (conn, id) in std::mem::take(&mut self.clients.subscribers) {
            self.send(conn, protocol::reply(message, Some(&id), false));
        }
    }

    /// The new workers could not ACK in time (`--ack-timeout`), or kept
    /// crashing before their ACK (`--watch`): go back to the old version,
    /// keep its workers, and stop the new ones. `why` completes "upgrade
    /// abandoned: ...".
    fn abandon_upgrade(&mut self, version: u64, why: &str) {
        if !self.upgrade_state.active || self.version != version {
            return;
        }
        let message = format!(
            "upgrade abandoned: {why}; keeping version {}",
            self.upgrade_state.from
        );
        self.error(&message);
        self.events.emit(Event::UpgradeAbandoned {
            version,
            kept_version: self.upgrade_state.from,
        });
        self.upgrade_state.active = false;
        self.version = self.upgrade_state.from;
        self.finish_upgrade_streams(&format!("ERROR: {message}"));
        let failed: Vec<i32> = self
            .pool
            .workers
            .iter()
            .filter(|w| w.version == version)
            .map(|w| w.pid)
            .collect();
        if !failed.is_empty() {
            self.signal_all(Signal::SIGKILL, &failed, true);
        }
    }

    // ----- timers -----

    fn fire_timers(&mut self) {
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.timers)
            .into_iter()
            .partition(|(at, _)| *at <= now);
        self.timers = later;
        for (_, timer) in due {
            match timer {
                Timer::Ack(pid, spinup) => {
                    // Already counted: it sent a manual ACK first.
                    if self.pool.get(pid).is_some_and(|w| w.acked) {
                        continue;
                    }
                    if self.pool.get(pid).is_some_and(|w| w.spinup_time == spinup) {
                        if let AckMode::Timer { text, .. } = &self.settings.ack_mode {
                            self.info(&format!(
                                "Worker {pid} has been up for {text}s, so we are considering it alive."
                            ));
                        }
                        self.register_ack(pid);
                    } else {
                        self.debug(&format!("Worker {pid} died before its ACK timer fired"));
                    }
                }
                Timer::AckDeadline(pid, spinup) => {
                    let overdue = self.pool.get(pid).is_some_and(|w| {
                        w.spinup_time == spinup && !w.acked && !w.signaled.contains("KILL")
                    });
                    if overdue {
                        let limit = self.config.options.ack_timeout().unwrap_or_default();
                        self.upgrade_log(
                            Level::Error,
                            &format!(
                                "Worker {pid} did not ACK within {}s; killing it.",
                                limit.as_secs_f64()
                            ),
                        );
                        self.signal_all(Signal::SIGKILL, &[pid], true);
                    }
                }
                Timer::Spinup => {
                    self.spinup.timer_armed = false;
                    self.replenish();
                }
                Timer::SignalTimeout(targets) => {
                    let t = self.config.options.signal_timeout.unwrap_or_default();
                    for (pid, spinup) in targets {
                        match self.pool.get(pid) {
                            Some(w) if w.spinup_time == spinup => {
                                if w.signaled.contains("KILL") {
                                    continue;
                                }
                                self.info(&format!("Child {pid} is still active after {t}s. Sending SIGKILL."));
                                self.escalate_to_kill(pid);
                            }
                            Some(_) => self.info(&format!(
                                "Different spinup time recorded for {pid} after {t}s. This probably indicates a PID rollover."
                            )),
                            None => {}
                        }
                    }
                }
                Timer::UpgradeDeadline(version) => {
                    let limit = self.config.options.ack_timeout().unwrap_or_default() * 3;
                    let why = format!(
                        "the workers of version {version} did not ACK within {}s",
                        limit.as_secs_f64()
                    );
                    self.abandon_upgrade(version, &why);
                }
            }
        }
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
