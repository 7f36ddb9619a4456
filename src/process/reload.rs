//! `--reload`, for development: watch the config file, the executable and
//! any `--reload-watch` paths; on a change, drain like a shutdown but keep
//! the listening socket, and `exec` the same executable with the same
//! arguments, passing the socket in `BASEPLATE_LISTEN_FD`. The port never
//! closes, so clients queue in the backlog instead of being refused.

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use notify::{RecommendedWatcher, RecursiveMode};
use notify_debouncer_mini::{new_debouncer, DebounceEventResult, Debouncer};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use crate::error::{io_reason, Error};
use crate::server::lifecycle::ReloadTrigger;

/// The variable naming the listening socket passed across a reload.
pub(crate) const LISTEN_FD_VAR: &str = "BASEPLATE_LISTEN_FD";

/// Changes settle for this long before a reload starts (editors and cargo
/// write files in several steps).
const DEBOUNCE: Duration = Duration::from_millis(300);

/// How long the new build's `--check` may take before a restart.
const PREFLIGHT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a start that fails with ETXTBSY (the file is still being
/// written) is retried.
const BUSY_RETRY_FOR: Duration = Duration::from_secs(1);

/// The file watcher.
pub(crate) struct Reloader {
    _debouncer: Debouncer<RecommendedWatcher>,
    /// Changed paths, as they settle.
    changes: ReloadTrigger,
}

fn absolute(path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    }
}

/// The files and the directories to watch: the config, the executable,
/// and the `--reload-watch` paths.
fn watch_list(config: &Path, extra: &[PathBuf], exe: PathBuf) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let mut files = vec![absolute(config), exe];
    let mut dirs = Vec::new();
    for path in extra {
        let path = absolute(path);
        if path.is_dir() {
            dirs.push(path);
        } else {
            files.push(path);
        }
    }
    (files, dirs)
}

/// Watches each file's directory (files are replaced by rename: cargo,
/// editors) and each directory's whole tree.
fn watch_directories(
    watcher: &mut dyn notify::Watcher,
    files: &[PathBuf],
    dirs: &[PathBuf],
) -> Result<(), Error> {
    let mut parents: Vec<PathBuf> = files
        .iter()
        .filter_map(|f| f.parent().map(Path::to_path_buf))
        .collect();
    parents.sort();
    parents.dedup();
    let parents = parents.iter().map(|d| (d, RecursiveMode::NonRecursive));
    let trees = dirs.iter().map(|d| (d, RecursiveMode::Recursive));
    for (dir, mode) in parents.chain(trees) {
        watcher
            .watch(dir, mode)
            .map_err(|e| Error::new(format!("--reload: cannot watch {}: {e}", dir.display())))?;
    }
    Ok(())
}

/// The changes that may reload: a change counts only once the build as it
/// is now has shown that it starts with the config as it is now. A broken
/// build or config leaves the running one serving, and the next change
/// tries again.
fn checked_changes(
    mut changed: UnboundedReceiver<PathBuf>,
    args: Vec<OsString>,
) -> UnboundedReceiver<PathBuf> {
    let (checked_tx, checked) = unbounded_channel();
    tokio::spawn(async move {
        while let Some(path) = changed.recv().await {
            let check = match running_exe() {
                Ok(exe) => preflight(&exe, &args).await,
                Err(e) => Err(e.to_string()),
            };
            match check {
                Ok(()) => {
                    if checked_tx.send(path).is_err() {
                        return;
                    }
                }
                Err(why) => tracing::error!(
                    "not reloading ({} changed): {why}; serving on until the next change",
                    path.display()
                ),
            }
        }
    });
    checked
}

impl Reloader {
    /// Starts watching `config`, the running executable and `extra` paths;
    /// `args` are this run's (program name first), which a reload runs again.
    pub(crate) fn start(
        config: &Path,
        extra: &[PathBuf],
        args: Vec<OsString>,
    ) -> Result<Reloader, Error> {
        let exe = std::env::current_exe()
            .map_err(|e| Error::io("--reload: cannot find the running executable", &e))?;
        let (files, dirs) = watch_list(config, extra, exe);
        let (tx, changed_rx) = unbounded_channel::<PathBuf>();
        let (watched_files, watched_dirs) = (files.clone(), dirs.clone());
        let mut seen: HashMap<PathBuf, Fingerprint> = HashMap::new();
        for file in &files {
            if let Some(print) = fingerprint(file) {
                seen.insert(file.clone(), print);
            }
        }
        for dir in &dirs {
            snapshot(dir, &mut seen, 10_000);
        }
        let mut debouncer = new_debouncer(DEBOUNCE, move |result: DebounceEventResult| {
            let Ok(events) = result else { return };
            for event in events {
                let relevant = watched_files.contains(&event.path)
                    || watched_dirs.iter().any(|d| event.path.starts_with(d));
                // Reading a file (this process reads its config, the kernel
                // opens the executable) is an event too; only a file that is
                // not what it was when watching started counts.
                if relevant && changed(&event.path, &mut seen) {
                    let _ = tx.send(event.path.clone());
                }
            }
        })
        .map_err(|e| Error::new(format!("--reload: cannot watch files: {e}")))?;
        watch_directories(debouncer.watcher(), &files, &dirs)?;
        Ok(Reloader {
            _debouncer: debouncer,
            changes: Arc::new(tokio::sync::Mutex::new(checked_changes(changed_rx, args))),
        })
    }

    /// The changes, for a run to wait on.
    pub(crate) fn changes(&self) -> ReloadTrigger {
        Arc::clone(&self.changes)
    }

    /// While no run serves (its start failed): waits, the port open, for
    /// the next change (`Some`) or for SIGTERM or SIGINT (`None`).
    pub(crate) async fn next_change(&self) -> Result<Option<PathBuf>, Error> {
        use tokio::signal::unix::{signal, SignalKind};
        let signal_error = |e: std::io::Error| Error::io("cannot install signal handlers", &e);
        let mut term = signal(SignalKind::terminate()).map_err(signal_error)?;
        let mut int = signal(SignalKind::interrupt()).map_err(signal_error)?;
        eprintln!(
            "baseplate-serve: not serving; waiting for a change to reload (the port stays open)"
        );
        let mut changes = self.changes.lock().await;
        Ok(tokio::select! {
            path = changes.recv() => path,
            _ = term.recv() => None,
            _ = int.recv() => None,
        })
    }
}

/// Runs `exe --check ARGS` (the arguments of this run, program name first)
/// and waits for it, at most [`PREFLIGHT_TIMEOUT`]: whether the new build
/// starts at all (a file still being written, not executable, a truncated
/// ELF) and accepts the config, before this process is replaced by it.
/// `Err` says why not, in one line.
async fn preflight(exe: &Path, args: &[OsString]) -> Result<(), String> {
    let started = tokio::time::Instant::now();
    let child = loop {
        let spawned = tokio::process::Command::new(exe)
            .arg("--check")
            .args(args.iter().skip(1))
            .env_remove(LISTEN_FD_VAR)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn();
        match spawned {
            Err(e)
                if e.kind() == std::io::ErrorKind::ExecutableFileBusy
                    && started.elapsed() < BUSY_RETRY_FOR =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(format!("cannot run {}: {}", exe.display(), io_reason(&e))),
            Ok(child) => break child,
        }
    };
    let output = tokio::time::timeout(PREFLIGHT_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| {
            format!(
                "{} --check did not finish within {PREFLIGHT_TIMEOUT:?}",
                exe.display()
            )
        })?
        .map_err(|e| format!("cannot run {}: {}", exe.display(), io_reason(&e)))?;
    if output.status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&output.stderr);
    let last = said
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    let last: String = last.chars().take(300).collect();
    Err(format!(
        "{} --check failed ({}){}{last}",
        exe.display(),
        describe(output.status),
        if last.is_empty() { "" } else { ": " }
    ))
}

/// An exit status in words.
fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        _ => "no exit status".into(),
    }
}

/// Replaces this process with a fresh run of `exe` with `args` (program name
/// first), `listener` passed across in [`LISTEN_FD_VAR`]. Returns only if
/// exec failed, handing the socket back.
fn exec_with_listener(exe: &Path, args: &[OsString], listener: OwnedFd) -> (OwnedFd, Error) {
    if let Err(e) = fcntl(&listener, FcntlArg::F_SETFD(FdFlag::empty())) {
        return (
            listener,
            Error::new(format!("cannot pass the listening socket on: {e}")),
        );
    }
    let fd = listener.as_raw_fd();
    // Across the exec and until the new run installs its handler, a SIGHUP
    // would kill the process (a caught signal's handler does not survive
    // exec; an ignored one stays ignored). A hangup meanwhile is a restart
    // already under way.
    let hangup = ignore_hangup();
    let error = Command::new(exe)
        .args(args.iter().skip(1))
        .env(LISTEN_FD_VAR, fd.to_string())
        .exec();
    restore_hangup(hangup);
    let _ = fcntl(&listener, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
    (
        listener,
        Error::io(format!("cannot run {} again", exe.display()), &error),
    )
}

/// Ignores SIGHUP, returning how it was handled.
fn ignore_hangup() -> Option<nix::sys::signal::SigAction> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let ignore = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
    // SAFETY: installing SIG_IGN runs no code in the signal context.
    unsafe { sigaction(Signal::SIGHUP, &ignore) }.ok()
}

/// Puts back SIGHUP's handling after an exec that failed.
fn restore_hangup(previous: Option<nix::sys::signal::SigAction>) {
    if let Some(previous) = previous {
        // SAFETY: the action is the one sigaction returned for this signal.
        let _ = unsafe { nix::sys::signal::sigaction(nix::sys::signal::Signal::SIGHUP, &previous) };
    }
}

/// Restarts in place: replaces this process with a fresh run of the
/// executable as it is now, with `args` (program name first) and
/// `listener` passed across, once that build has shown that it starts
/// (see [`preflight`]). Returns only if it could not, handing the socket
/// back after an ERROR line saying this process serves on until `retry`.
pub(crate) async fn restart(
    args: &[OsString],
    listener: OwnedFd,
    retry: &str,
) -> Result<OwnedFd, Error> {
    let exe = running_exe()?;
    match preflight(&exe, args).await {
        Ok(()) => {
            let (listener, e) = exec_with_listener(&exe, args, listener);
            tracing::error!("{e}; serving on with the running build until {retry}");
            Ok(listener)
        }
        Err(why) => {
            tracing::error!(
                "not restarting: {why}; serving on with the running build until {retry}"
            );
            Ok(listener)
        }
    }
}

/// The running executable's path as it is now. After a build replaced the
/// file by rename, Linux names the running (unlinked) inode `PATH
/// (deleted)`; the new build is at PATH, and that is what a restart runs.
fn running_exe() -> Result<PathBuf, Error> {
    let exe = std::env::current_exe()
        .map_err(|e| Error::io("cannot find the running executable to restart", &e))?;
    Ok(
        match exe.to_str().and_then(|s| s.strip_suffix(" (deleted)")) {
            Some(now) if !exe.exists() => PathBuf::from(now),
            _ => exe,
        },
    )
}

/// What identifies a version of a file: inode, size and times.
type Fingerprint = (u64, u64, i64, i64, i64, i64);

fn fingerprint(path: &Path) -> Option<Fingerprint> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((
        m.ino(),
        m.len(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec(),
    ))
}

/// Records the fingerprints of up to `limit` files under `dir`.
fn snapshot(dir: &Path, seen: &mut HashMap<PathBuf, Fingerprint>, limit: usize) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if seen.len() >= limit {
            return;
        }
        let path = entry.path();
        if path.is_dir() {
            snapshot(&path, seen, limit);
        } else if let Some(print) = fingerprint(&path) {
            seen.insert(path, print);
        }
    }
}

/// Whether `path` exists and differs from its recorded version (a file
/// not seen before counts as changed); records the new version.
fn changed(path: &Path, seen: &mut HashMap<PathBuf, Fingerprint>) -> bool {
    let Some(now) = fingerprint(path) else {
        return false;
    };
    seen.insert(path.to_path_buf(), now) != Some(now)
}

/// The socket passed by a previous run, if `BASEPLATE_LISTEN_FD` names an
/// open descriptor.
pub(crate) fn inherited_listener() -> Option<OwnedFd> {
    let fd: RawFd = std::env::var(LISTEN_FD_VAR).ok()?.parse().ok()?;
    // SAFETY: only queried; ownership is taken below once it is known open.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    fcntl(borrowed, FcntlArg::F_GETFD).ok()?;
    let _ = borrowed.as_fd();
    // SAFETY: the previous run handed this descriptor to us alone.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Gives up ownership without closing (the fd is adopted by the listener).
pub(crate) fn release(fd: OwnedFd) -> RawFd {
    fd.into_raw_fd()
}
