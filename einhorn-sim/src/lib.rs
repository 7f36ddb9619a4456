//! `einhorn-sim`: a pure-Rust Einhorn master, wire-compatible with Einhorn
//! 1.1.1's workers and command-socket clients (see `docs/einhorn-sim.md`).
//!
//! The master (`master`) is one event loop that owns the pool state;
//! signals, child exits, command-socket lines (`command_server`) and
//! timers all reach it as messages. [`protocol`] is the line format, shared
//! with the `einhornsh` client ([`client`]).

// The API is what the binaries, the conformance kit and the tests use:
// the command line, the client, the conformance kit, the events file, the
// protocol and the test worker's report. The master itself stays inside.
mod bind;
pub mod cli;
pub mod client;
mod command_server;
pub mod conformance;
pub mod events;
mod master;
mod private_file;
pub mod protocol;
mod report;
mod ruby_yaml;
mod spawn;
mod watch;
pub mod worker_report;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use clap::Parser;
use tokio::sync::mpsc::UnboundedSender;

use cli::Options;
use events::{Bound, Event, Events};
use master::signals::MasterSignals;
use master::{Config, Handover, Input, Master};
use report::{Level, Log};

/// Runs the master until it exits; returns the exit status, or the one-line
/// reason it could not start. With `--with-state-fd`, this process is a
/// master that an earlier one re-exec'd: it carries on from its state.
pub fn run(options: Options) -> Result<u8, String> {
    match options.with_state_fd {
        Some(fd) => resume(fd),
        None => run_with(options, None, MasterSignals::install),
    }
}

/// A current-thread runtime whose helper threads block the master's
/// signals (see [`master::signals::block`]).
fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .on_thread_start(master::signals::block)
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
}

/// Runs a master embedded in another program: events also go to `events`,
/// and `signals` chooses which signals it handles
/// ([`MasterSignals::children_only`] leaves the host's own handlers alone).
/// Only a master of its own process (no `events`) re-execs itself.
pub(crate) fn run_with(
    options: Options,
    events: Option<std::sync::mpsc::Sender<events::Record>>,
    signals: fn() -> std::io::Result<MasterSignals>,
) -> Result<u8, String> {
    close_inherited_fds_on_exec();
    let program = spawn::resolve_program(&options.command[0])?;
    let (sock_path, pidfile, lockfile) = master_files(&options);
    let can_reexec = events.is_none();
    let events_channel = events;
    runtime()?.block_on(async move {
        let signals = signals().map_err(|e| format!("cannot install signal handlers: {e}"))?;
        let log = Log::new(options.verbosity());
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        // --watch: PROGRAM's executable and the PATHs given, watched before
        // anything is bound or written, so a bad PATH leaves nothing behind.
        let watch = start_watch(&options, &program, &tx, None, &log)?;
        let sockets = bind_sockets(&options, &log)?;
        if let Some(nice) = &options.nice {
            renice_master(nice, &log);
        }
        let mut events = Events::open(options.events.as_deref())?;
        if let Some(channel) = events_channel {
            events = events.with_channel(channel);
        }
        let listener = command_server::open(
            &sock_path,
            &lockfile,
            options.command_socket_group.as_deref(),
            &log,
        )?;
        log.write(
            Level::Info,
            &format!("Writing PID to {}", pidfile.display()),
        );
        if let Err(e) = private_file::write_pidfile(&pidfile, std::process::id()) {
            let _ = std::fs::remove_file(&sock_path);
            return Err(e);
        }
        events.emit(ready(&sockets, &sock_path));
        let next_conn = Arc::new(AtomicU64::new(0));
        let config = Config {
            sock_path,
            pidfile,
            lockfile,
            argv: std::env::args().skip(1).collect(),
            exe: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("einhorn-sim")),
            command_fd: listener.as_raw_fd(),
            next_conn: Arc::clone(&next_conn),
            can_reexec,
            watch,
            options,
        };
        tokio::spawn(command_server::serve(listener, tx, next_conn));
        let status = Master::new(config, sockets, program, events)
            .run(rx, signals)
            .await;
        Ok(status as u8)
    })
}

/// Carries on as the master an earlier one re-exec'd (Einhorn's
/// `--with-state-fd`): its sockets, command socket, clients and workers.
fn resume(state_fd: i32) -> Result<u8, String> {
    let handover = Handover::read(state_fd)?;
    let options = Options::try_parse_from(
        std::iter::once("einhorn-sim".to_string()).chain(handover.argv.iter().cloned()),
    )
    .map_err(|e| {
        format!(
            "cannot read the first master's command line again: {}",
            e.kind()
        )
    })?;
    close_inherited_fds_on_exec();
    let program = spawn::resolve_program(&options.command[0])?;
    let (sock_path, pidfile, lockfile) = master_files(&options);
    runtime()?.block_on(async move {
        let signals =
            MasterSignals::install().map_err(|e| format!("cannot install signal handlers: {e}"))?;
        // Signals sent while the last master exec'd this one were blocked,
        // and are pending: they arrive now.
        master::signals::unblock();
        let log = Log::new(options.verbosity());
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let watch = start_watch(&options, &program, &tx, handover.watch.clone(), &log)?;
        let sockets = adopt_sockets(&options, &handover)?;
        let listener = adopt_listener(handover.command_fd)?;
        let events = Events::open(options.events.as_deref())?;
        let next_conn = Arc::new(AtomicU64::new(handover.next_conn));
        let config = Config {
            sock_path,
            pidfile,
            lockfile,
            argv: handover.argv.clone(),
            exe: handover.exe.clone(),
            command_fd: listener.as_raw_fd(),
            next_conn: Arc::clone(&next_conn),
            can_reexec: true,
            watch,
            options,
        };
        let mut clients = Vec::new();
        for client in &handover.clients {
            // SAFETY: the last master kept this descriptor open for this one,
            // and nothing else here refers to it.
            let fd = unsafe { OwnedFd::from_raw_fd(client.fd) };
            let unread = client.unread.clone();
            if let Ok(handle) = command_server::adopt(client.id, fd, unread, tx.clone()) {
                clients.push((client.id, handle, client.peer.clone()));
            }
        }
        tokio::spawn(command_server::serve(listener, tx, next_conn));
        let master = Master::resume(config, sockets, program, events, &handover, clients);
        Ok(master.run(rx, signals).await as u8)
    })
}

/// `--nice`: runs `RENICE_CMD LEVEL -p PID` on the master, as Einhorn
/// does; a failure is logged and the master runs on.
fn renice_master(nice: &cli::Nice, log: &Log) {
    let Some(level) = nice.master else {
        return;
    };
    let words = client::shell_words(&nice.renice_cmd).unwrap_or_default();
    let Some((program, args)) = words.split_first() else {
        return;
    };
    let ran = std::process::Command::new(program)
        .args(args)
        .arg(level.to_string())
        .arg("-p")
        .arg(std::process::id().to_string())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .status();
    match ran {
        Ok(status) if status.success() => {
            log.write(Level::Info, &format!("Reniced the master to {level}"))
        }
        Ok(status) => log.write(
            Level::Error,
            &format!(
                "Could not renice the master to {level}: {} {status}",
                nice.renice_cmd
            ),
        ),
        Err(e) => log.write(
            Level::Error,
            &format!("Could not renice the master to {level}: cannot run {program}: {e}"),
        ),
    }
}

/// The `-b` sockets the last master kept open, in `-b` order.
fn adopt_sockets(options: &Options, handover: &Handover) -> Result<Vec<bind::BoundSocket>, String> {
    if handover.sockets.len() != options.bind.len() {
        return Err(format!(
            "the last master passed {} sockets for {} -b options",
            handover.sockets.len(),
            options.bind.len()
        ));
    }
    Ok(options
        .bind
        .iter()
        .zip(&handover.sockets)
        .map(|(spec, kept)| bind::BoundSocket {
            spec: spec.clone(),
            // SAFETY: the last master kept this listening socket open for
            // this one; nothing else here refers to it.
            fd: unsafe { OwnedFd::from_raw_fd(kept.fd) },
            port: kept.port,
            family: match kept.family.as_str() {
                "AF_INET6" => "AF_INET6",
                "AF_UNIX" => "AF_UNIX",
                _ => "AF_INET",
            },
        })
        .collect())
}

/// The command socket's listener the last master kept open.
fn adopt_listener(fd: i32) -> Result<tokio::net::UnixListener, String> {
    // SAFETY: the last master kept its command socket open for this one;
    // nothing else here refers to it.
    let listener = unsafe { std::os::unix::net::UnixListener::from_raw_fd(fd) };
    listener
        .set_nonblocking(true)
        .and_then(|_| tokio::net::UnixListener::from_std(listener))
        .map_err(|e| format!("cannot use the command socket passed on: {e}"))
}

/// The command socket, pidfile and lockfile paths. With `-d`, the pidfile
/// and lockfile go beside the socket (a directory the user chose), not
/// into a shared `$TMPDIR`.
fn master_files(options: &Options) -> (PathBuf, PathBuf, PathBuf) {
    let sock_path = options
        .socket_path
        .clone()
        .unwrap_or_else(|| options.default_path("sock"));
    let beside_socket = |extension: &str| match &options.socket_path {
        Some(socket) => socket.with_extension(extension),
        None => options.default_path(extension),
    };
    let pidfile = options
        .pidfile
        .clone()
        .unwrap_or_else(|| beside_socket("pid"));
    let lockfile = options
        .lockfile
        .clone()
        .unwrap_or_else(|| beside_socket("lock"));
    (sock_path, pidfile, lockfile)
}

/// `--watch`: watches `program` and `paths` for rebuilds; `carried` is
/// what the master that re-exec'd this one had seen.
fn start_watch(
    options: &Options,
    program: &Path,
    inputs: &UnboundedSender<Input>,
    carried: Option<watch::Carried>,
    log: &Log,
) -> Result<Option<watch::Watch>, String> {
    let Some(paths) = &options.watch else {
        return Ok(None);
    };
    let mut paths = paths.clone();
    paths.insert(0, program.to_path_buf());
    let inputs = inputs.clone();
    let changed_to: watch::Changed =
        Box::new(move |paths| inputs.send(Input::Rebuilt(paths)).is_ok());
    // The watcher's threads start with the master's signals blocked.
    master::signals::block();
    let watch = watch::start(&paths, changed_to, carried);
    master::signals::unblock();
    let watch = watch?;
    let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    log.write(
        Level::Info,
        &format!(
            "Watching {} for rebuilds: a change upgrades smoothly",
            names.join(", ")
        ),
    );
    Ok(Some(watch))
}

/// Binds every `-b` socket, which the master holds and passes to workers.
fn bind_sockets(options: &Options, log: &Log) -> Result<Vec<bind::BoundSocket>, String> {
    if options.bind.is_empty() {
        log.write(
            Level::Info,
            "No -b given: workers bind their own sockets. With -b ADDR:PORT the master \
             holds the socket and passes it to every worker, so restarts and upgrades \
             never refuse a connection",
        );
    }
    let mut sockets = Vec::new();
    for spec in &options.bind {
        log.write(
            Level::Info,
            &format!("Binding to {} with flags {:?}", spec.address, spec.flags),
        );
        sockets.push(bind::bind_socket(spec, options.backlog)?);
    }
    Ok(sockets)
}

/// The `ready` event: the master's pid, its command socket, its sockets.
fn ready(sockets: &[bind::BoundSocket], sock_path: &Path) -> Event {
    let bound = sockets
        .iter()
        .map(|s| Bound {
            address: s.spec.address.to_string(),
            port: s.port,
            fd: s.raw_fd(),
            family: s.family.to_string(),
        })
        .collect();
    Event::Ready {
        master_pid: std::process::id(),
        socket_path: sock_path.display().to_string(),
        bound,
    }
}

/// Marks every descriptor above stderr that this process inherited as
/// close-on-exec, so workers get only 0, 1, 2 and the `-b` sockets.
fn close_inherited_fds_on_exec() {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    use std::os::fd::BorrowedFd;
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<i32> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd > 2)
        .collect();
    for fd in fds {
        // SAFETY: only flags are changed; a descriptor that is gone (the
        // directory listing's own) just fails.
        let _ = fcntl(
            unsafe { BorrowedFd::borrow_raw(fd) },
            FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC),
        );
    }
}
