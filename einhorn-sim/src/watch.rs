//! `--watch`: PROGRAM's executable and any paths given, watched for
//! rebuilds. A change that has settled reaches the master as
//! [`Input::Rebuilt`], which starts a smooth upgrade.
//!
//! Builds replace files by rename (cargo, linkers, editors), so each file's
//! directory is watched rather than the file itself, and only a file whose
//! inode, size or times differ from what was last seen counts: the kernel
//! opening the executable to spawn a worker is an event too.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use notify::{RecommendedWatcher, RecursiveMode};
use notify_debouncer_mini::{new_debouncer, DebounceEventResult, Debouncer};
use tokio::sync::mpsc::UnboundedSender;

use crate::master::Input;

/// A change must be followed by this much quiet before it counts: a build
/// writes its output in several steps.
pub const DEBOUNCE: Duration = Duration::from_millis(300);

/// How often the file events are gathered; the quiet time is measured
/// from the last change seen, whatever the batches.
const GATHER: Duration = Duration::from_millis(50);

/// The running watcher; dropping it stops watching.
pub struct Watch {
    _debouncer: Debouncer<RecommendedWatcher>,
    settle: Arc<Settle>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.settle.stop();
    }
}

/// Changes waiting for [`DEBOUNCE`] of quiet, and the thread that sends
/// them once it has passed: a change during a continuous write restarts
/// the wait, so a build that writes for seconds upgrades once, after it.
#[derive(Default)]
struct Settle {
    state: Mutex<SettleState>,
    changed: Condvar,
}

#[derive(Default)]
struct SettleState {
    pending: Vec<PathBuf>,
    last_change: Option<Instant>,
    stopped: bool,
}

impl Settle {
    fn lock(&self) -> std::sync::MutexGuard<'_, SettleState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Notes changed paths; the quiet time starts again.
    fn note(&self, changed: Vec<PathBuf>) {
        let mut state = self.lock();
        state.pending.extend(changed);
        state.last_change = Some(Instant::now());
        self.changed.notify_one();
    }

    fn stop(&self) {
        self.lock().stopped = true;
        self.changed.notify_one();
    }

    /// Sends each settled batch until stopped.
    fn run(&self, inputs: UnboundedSender<Input>) {
        let mut state = self.lock();
        loop {
            if state.stopped {
                return;
            }
            let Some(last) = state.last_change else {
                state = self
                    .changed
                    .wait(state)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                continue;
            };
            let settled_at = last + DEBOUNCE;
            let now = Instant::now();
            if now < settled_at {
                state = self
                    .changed
                    .wait_timeout(state, settled_at - now)
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .0;
                continue;
            }
            let mut changed = std::mem::take(&mut state.pending);
            state.last_change = None;
            changed.sort();
            changed.dedup();
            if inputs.send(Input::Rebuilt(changed)).is_err() {
                return;
            }
        }
    }
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch").finish_non_exhaustive()
    }
}

/// What identifies a version of a file.
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

/// Starts watching `paths` (files, or directories watched recursively) and
/// sends one [`Input::Rebuilt`] per batch of changes followed by
/// [`DEBOUNCE`] of quiet.
pub fn start(paths: &[PathBuf], inputs: UnboundedSender<Input>) -> Result<Watch, String> {
    let (mut files, mut dirs) = (Vec::new(), Vec::new());
    for path in paths {
        let path = std::path::absolute(path)
            .map_err(|e| format!("--watch: cannot use {}: {e}", path.display()))?;
        if path.is_dir() {
            dirs.push(path);
        } else if path.parent().is_some_and(Path::is_dir) {
            files.push(path);
        } else {
            return Err(format!(
                "--watch: cannot watch {}: its directory does not exist",
                path.display()
            ));
        }
    }
    let mut seen: HashMap<PathBuf, Fingerprint> = files
        .iter()
        .filter_map(|f| Some((f.clone(), fingerprint(f)?)))
        .collect();
    let (watched_files, watched_dirs) = (files.clone(), dirs.clone());
    let settle = Arc::new(Settle::default());
    let noted = Arc::clone(&settle);
    let mut debouncer = new_debouncer(GATHER, move |result: DebounceEventResult| {
        let Ok(events) = result else { return };
        let mut changed: Vec<PathBuf> = Vec::new();
        for event in events {
            let path = event.path;
            if watched_dirs.iter().any(|d| path.starts_with(d)) {
                changed.push(path);
            } else if watched_files.contains(&path) {
                // Gone (mid-replacement) is not a change yet; the new file's
                // own event follows.
                if let Some(now) = fingerprint(&path) {
                    if seen.insert(path.clone(), now) != Some(now) {
                        changed.push(path);
                    }
                }
            }
        }
        if !changed.is_empty() {
            noted.note(changed);
        }
    })
    .map_err(|e| format!("--watch: cannot watch files: {e}"))?;
    let mut parents: Vec<PathBuf> = files
        .iter()
        .filter_map(|f| f.parent().map(Path::to_path_buf))
        .collect();
    parents.sort();
    parents.dedup();
    let watches = parents
        .iter()
        .map(|d| (d, RecursiveMode::NonRecursive))
        .chain(dirs.iter().map(|d| (d, RecursiveMode::Recursive)));
    for (dir, mode) in watches {
        debouncer
            .watcher()
            .watch(dir, mode)
            .map_err(|e| format!("--watch: cannot watch {}: {e}", dir.display()))?;
    }
    let sender = Arc::clone(&settle);
    std::thread::Builder::new()
        .name("watch-settle".into())
        .spawn(move || sender.run(inputs))
        .map_err(|e| format!("--watch: cannot start its thread: {e}"))?;
    Ok(Watch {
        _debouncer: debouncer,
        settle,
    })
}
