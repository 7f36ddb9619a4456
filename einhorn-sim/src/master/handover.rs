//! What a master hands the master it execs (Einhorn's `--with-state-fd`):
//! its own command line, the descriptors it keeps (the `-b` sockets, the
//! command socket, each client connection) and everything the event loop
//! knows (workers, settings, upgrade, pacing, timers, subscriptions).
//!
//! It travels as JSON in a memfd whose number the new master gets with
//! `--with-state-fd`. Monotonic times do not survive an exec, so each
//! `Instant` travels as "this long ago" (or "in this long", for timers).

use std::collections::BTreeSet;
use std::io::{Read, Seek, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use super::*;

/// The most state a new master reads: far more than any pool needs.
const MAX_STATE: u64 = 64 << 20;

/// The whole handover.
#[derive(Debug, Serialize, Deserialize)]
pub struct Handover {
    /// einhorn-sim's own arguments, as first given (without argv[0]).
    pub argv: Vec<String>,
    /// The executable to re-exec next time, as resolved at first start.
    pub exe: PathBuf,
    /// The `-b` sockets, in `-b` order.
    pub sockets: Vec<SocketState>,
    /// The command socket's listening descriptor.
    pub command_fd: RawFd,
    /// The client connections kept open.
    pub clients: Vec<ClientState>,
    /// The next connection id.
    pub next_conn: ConnId,
    /// Connections streaming an upgrade, and their request ids.
    pub subscribers: Vec<(ConnId, serde_json::Value)>,
    /// The workers, in spawn order.
    pub workers: Vec<WorkerState>,
    /// What the command socket changed.
    pub settings: SettingsState,
    /// The version new workers get.
    pub version: u64,
    /// Upgrades.
    upgrade: UpgradeState,
    /// Spawn pacing.
    pub spinup: SpinupState,
    /// Timers, with the time left.
    pub timers: Vec<(f64, TimerState)>,
    /// The upgrade the exec was for (smooth or fleet), if any.
    pub upgrade_after: Option<bool>,
    /// Command lines read during the re-exec, for the new master to run:
    /// each request as YAML (`None`: it could not be parsed).
    pub lines: Vec<(ConnId, Option<String>)>,
    /// `--watch`: what the watcher had seen, so that a change made while
    /// no master watches still counts.
    #[serde(default)]
    pub watch: Option<crate::watch::Carried>,
}

/// A `-b` socket.
#[derive(Debug, Serialize, Deserialize)]
pub struct SocketState {
    /// Its descriptor, kept across the exec.
    pub fd: RawFd,
    /// The port bound.
    pub port: u16,
    /// `AF_INET`, `AF_INET6` or `AF_UNIX`.
    pub family: String,
}

/// A command-socket client.
#[derive(Debug, Serialize, Deserialize)]
pub struct ClientState {
    /// Its id, kept so subscriptions still name it.
    pub id: ConnId,
    /// Its descriptor, kept across the exec.
    pub fd: RawFd,
    /// Who it is.
    pub peer: String,
    /// What it sent that was read and not run yet: the rest of its
    /// pipelined commands, and a line it was halfway through.
    #[serde(default)]
    pub unread: Vec<u8>,
}

/// A worker.
#[derive(Debug, Serialize, Deserialize)]
pub struct WorkerState {
    pid: i32,
    version: u64,
    acked: bool,
    signaled: BTreeSet<String>,
    last_signaled_ago: Option<f64>,
    last_signaled_wall: Option<SystemTime>,
    index: u32,
    spinup_ago: f64,
    spinup_wall: SystemTime,
    pinged_at: Option<SystemTime>,
    pinged_request_id: Option<serde_json::Value>,
}

/// [`Settings`], but the ACK mode (the command line's).
#[derive(Debug, Serialize, Deserialize)]
pub struct SettingsState {
    number: u32,
    seconds: f64,
    seconds_integer: bool,
    max_unacked: u32,
    max_upgrade_additional: Option<u32>,
    verbosity: u8,
}

/// [`Spinup`].
#[derive(Debug, Serialize, Deserialize)]
pub struct SpinupState {
    last_ago: Option<f64>,
    last_wall: Option<SystemTime>,
    deaths_before_ack: u32,
    last_quick_exit_ago: Option<f64>,
}

/// A [`Timer`]; its workers' spawn times as "this long ago".
#[derive(Debug, Serialize, Deserialize)]
pub enum TimerState {
    Ack(i32, f64),
    AckDeadline(i32, f64),
    Spinup,
    SignalTimeout(Vec<(i32, f64)>),
    UpgradeDeadline(u64),
}

impl WorkerState {
    fn of(w: &Worker, now: Instant) -> WorkerState {
        WorkerState {
            pid: w.pid,
            version: w.version,
            acked: w.acked,
            signaled: w.signaled.clone(),
            last_signaled_ago: w.last_signaled_at.map(|t| ago(now, t)),
            last_signaled_wall: w.last_signaled_wall,
            index: w.index,
            spinup_ago: ago(now, w.spinup_time),
            spinup_wall: w.spinup_wall,
            pinged_at: w.pinged_at,
            pinged_request_id: w.pinged_request_id.as_ref().map(to_json),
        }
    }
}

impl TimerState {
    /// A timer due at `at`: the seconds left, and what it is.
    fn of(at: Instant, timer: &Timer, now: Instant) -> (f64, TimerState) {
        let left = at.saturating_duration_since(now).as_secs_f64();
        let state = match timer {
            Timer::Ack(pid, t) => TimerState::Ack(*pid, ago(now, *t)),
            Timer::AckDeadline(pid, t) => TimerState::AckDeadline(*pid, ago(now, *t)),
            Timer::Spinup => TimerState::Spinup,
            Timer::SignalTimeout(targets) => {
                TimerState::SignalTimeout(targets.iter().map(|(p, t)| (*p, ago(now, *t))).collect())
            }
            Timer::UpgradeDeadline(v) => TimerState::UpgradeDeadline(*v),
        };
        (left, state)
    }
}

/// A request as YAML, which keeps any key a client sent.
fn request_yaml(request: &Request) -> Option<String> {
    serde_norway::to_string(&Value::Mapping(request.fields.clone())).ok()
}

/// An `Instant` as seconds before `now`.
fn ago(now: Instant, t: Instant) -> f64 {
    now.saturating_duration_since(t).as_secs_f64()
}

/// Seconds before `now` as an `Instant` (never before the clock's start).
fn since(now: Instant, seconds: f64) -> Instant {
    let back = Duration::try_from_secs_f64(seconds.max(0.0)).unwrap_or_default();
    now.checked_sub(back).unwrap_or(now)
}

fn to_json(value: &Value) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}

fn from_json(value: &serde_json::Value) -> Value {
    serde_json::from_value(value.clone()).unwrap_or(Value::Null)
}

impl Handover {
    /// The state of `master`, whose descriptors it keeps, and `clients`.
    pub(super) fn of(
        master: &Master,
        clients: Vec<ClientState>,
        upgrade_after: Option<bool>,
        watch: Option<crate::watch::Carried>,
    ) -> Handover {
        let now = Instant::now();
        Handover {
            argv: master.config.argv.clone(),
            exe: master.config.exe.clone(),
            sockets: master
                .sockets
                .iter()
                .map(|s| SocketState {
                    fd: s.raw_fd(),
                    port: s.port,
                    family: s.family.to_string(),
                })
                .collect(),
            command_fd: master.config.command_fd,
            clients,
            next_conn: master.config.next_conn.load(Ordering::Relaxed),
            subscribers: master
                .clients
                .subscribers
                .iter()
                .map(|(c, id)| (*c, to_json(id)))
                .collect(),
            workers: master
                .pool
                .workers
                .iter()
                .map(|w| WorkerState::of(w, now))
                .collect(),
            settings: SettingsState {
                number: master.settings.number,
                seconds: master.settings.seconds,
                seconds_integer: master.settings.seconds_integer,
                max_unacked: master.settings.max_unacked,
                max_upgrade_additional: master.settings.max_upgrade_additional,
                verbosity: master.log.verbosity,
            },
            version: master.version,
            upgrade: master.upgrade_state.clone(),
            spinup: SpinupState {
                last_ago: master.spinup.last.map(|t| ago(now, t)),
                last_wall: master.spinup.last_wall,
                deaths_before_ack: master.spinup.deaths_before_ack,
                last_quick_exit_ago: master.spinup.last_quick_exit.map(|t| ago(now, t)),
            },
            timers: master
                .timers
                .iter()
                .map(|(at, t)| TimerState::of(*at, t, now))
                .collect(),
            upgrade_after,
            lines: master
                .deferred_lines
                .iter()
                .map(|(conn, request)| (*conn, request.as_ref().and_then(request_yaml)))
                .collect(),
            watch,
        }
    }

    /// The command lines to run first, decoded again.
    pub(super) fn lines(&self) -> Vec<(ConnId, Option<Request>)> {
        self.lines
            .iter()
            .map(|(conn, yaml)| {
                let request = yaml
                    .as_deref()
                    .and_then(|y| serde_norway::from_str(y).ok())
                    .and_then(Request::from_value);
                (*conn, request)
            })
            .collect()
    }

    /// Writes the handover into a new memfd (close-on-exec until the exec
    /// clears it) and rewinds it.
    pub(super) fn to_memfd(&self) -> std::io::Result<OwnedFd> {
        let fd = nix::sys::memfd::memfd_create(
            c"einhorn-sim-state",
            nix::sys::memfd::MFdFlags::MFD_CLOEXEC,
        )?;
        let mut file = std::fs::File::from(fd);
        serde_json::to_writer(&mut file, self)?;
        file.flush()?;
        file.rewind()?;
        Ok(OwnedFd::from(file))
    }

    /// Reads the handover from descriptor `fd` (inherited across the exec)
    /// and closes it.
    pub fn read(fd: RawFd) -> Result<Handover, String> {
        if fd < 0 || nix::fcntl::fcntl(unsafe_borrow(fd), nix::fcntl::FcntlArg::F_GETFD).is_err() {
            return Err(format!("--with-state-fd {fd}: not an open descriptor"));
        }
        // SAFETY: the descriptor is open and was handed to this process by
        // the master that exec'd it; nothing else here refers to it.
        let file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        // A memfd is a regular file; anything else (a terminal, a pipe) is
        // not a state, and reading it could block forever.
        if !file.metadata().is_ok_and(|m| m.is_file()) {
            return Err(format!(
                "--with-state-fd {fd}: not a state a master wrote (not a regular file)"
            ));
        }
        let mut text = Vec::new();
        file.take(MAX_STATE)
            .read_to_end(&mut text)
            .map_err(|e| format!("--with-state-fd {fd}: cannot read the state: {e}"))?;
        serde_json::from_slice(&text)
            .map_err(|e| format!("--with-state-fd {fd}: the state is not einhorn-sim's: {e}"))
    }

    /// The descriptors the exec must keep open, the state's own included.
    pub(super) fn descriptors(&self, state: &OwnedFd) -> Vec<RawFd> {
        let mut fds: Vec<RawFd> = self.sockets.iter().map(|s| s.fd).collect();
        fds.push(self.command_fd);
        fds.extend(self.clients.iter().map(|c| c.fd));
        fds.push(state.as_raw_fd());
        fds
    }

    /// The workers, as the pool holds them.
    pub(super) fn pool(&self, now: Instant) -> Pool {
        Pool {
            workers: self
                .workers
                .iter()
                .map(|w| Worker {
                    pid: w.pid,
                    version: w.version,
                    acked: w.acked,
                    signaled: w.signaled.clone(),
                    last_signaled_at: w.last_signaled_ago.map(|s| since(now, s)),
                    last_signaled_wall: w.last_signaled_wall,
                    index: w.index,
                    spinup_time: since(now, w.spinup_ago),
                    spinup_wall: w.spinup_wall,
                    pinged_at: w.pinged_at,
                    pinged_request_id: w.pinged_request_id.as_ref().map(from_json),
                })
                .collect(),
        }
    }

    /// Restores the loop's state into `master` (made from the same command
    /// line, with the adopted descriptors).
    pub(super) fn restore(&self, master: &mut Master) {
        let now = Instant::now();
        master.pool = self.pool(now);
        let s = &self.settings;
        master.settings.number = s.number;
        master.settings.seconds = s.seconds;
        master.settings.seconds_integer = s.seconds_integer;
        master.settings.max_unacked = s.max_unacked;
        master.settings.max_upgrade_additional = s.max_upgrade_additional;
        master.log.verbosity = s.verbosity;
        master.version = self.version;
        master.upgrade_state = self.upgrade.clone();
        let p = &self.spinup;
        master.spinup = Spinup {
            last: p.last_ago.map(|s| since(now, s)),
            last_wall: p.last_wall,
            deaths_before_ack: p.deaths_before_ack,
            last_quick_exit: p.last_quick_exit_ago.map(|s| since(now, s)),
            timer_armed: self
                .timers
                .iter()
                .any(|(_, t)| matches!(t, TimerState::Spinup)),
        };
        // A worker's timers name it by its spawn time, which must be the
        // very Instant the pool now holds.
        let spawned = |pid: i32| master.pool.get(pid).map(|w| w.spinup_time);
        master.timers = self
            .timers
            .iter()
            .filter_map(|(left, timer)| {
                let at = now + Duration::try_from_secs_f64(left.max(0.0)).unwrap_or_default();
                let timer = match timer {
                    TimerState::Ack(pid, _) => Timer::Ack(*pid, spawned(*pid)?),
                    TimerState::AckDeadline(pid, _) => Timer::AckDeadline(*pid, spawned(*pid)?),
                    TimerState::Spinup => Timer::Spinup,
                    TimerState::SignalTimeout(targets) => Timer::SignalTimeout(
                        targets
                            .iter()
                            .filter_map(|(pid, _)| Some((*pid, spawned(*pid)?)))
                            .collect(),
                    ),
                    TimerState::UpgradeDeadline(v) => Timer::UpgradeDeadline(*v),
                };
                Some((at, timer))
            })
            .collect();
        master.clients.subscribers = self
            .subscribers
            .iter()
            .map(|(c, id)| (*c, from_json(id)))
            .collect();
    }
}

/// A descriptor number to query, without taking it.
fn unsafe_borrow(fd: RawFd) -> std::os::fd::BorrowedFd<'static> {
    // SAFETY: only used for an F_GETFD query of a number that may not be
    // open, which fails harmlessly.
    unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }
}
