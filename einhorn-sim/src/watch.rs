//! `--watch`: PROGRAM's executable and any paths given, watched for
//! rebuilds. A change that has settled reaches the master through the
//! callback given to [`start`], which starts a smooth upgrade.
//!
//! Builds replace files by rename (cargo, linkers, editors), so each file's
//! directory is watched rather than the file itself, and only a file whose
//! inode, size or times differ from what was last seen counts: the kernel
//! opening the executable to spawn a worker is an event too.
//!
//! A master that re-execs itself stops watching until the new master
//! starts again. What was last seen travels with it ([`Watch::carry`]), and
//! the new master compares it with the files once it watches them, so a
//! change made during the exec still upgrades.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use notify::{RecommendedWatcher, RecursiveMode};
use notify_debouncer_mini::{new_debouncer, DebounceEventResult, Debouncer};
use serde::{Deserialize, Serialize};

/// A change must be followed by this much quiet before it counts: a build
/// writes its output in several steps.
pub const DEBOUNCE: Duration = Duration::from_millis(300);

/// How often the file events are gathered; the quiet time is measured
/// from the last change seen, whatever the batches.
const GATHER: Duration = Duration::from_millis(50);

/// Files under watched directories whose versions are remembered: past
/// this many, a change made during a re-exec is seen only in the first
/// ones (and in the directories themselves, whose times change when an
/// entry is added or removed).
const MAX_REMEMBERED: usize = 10_000;

/// Where a settled batch of changed paths goes; false once nobody listens.
pub type Changed = Box<dyn Fn(Vec<PathBuf>) -> bool + Send>;

/// The running watcher; dropping it stops watching.
pub struct Watch {
    _debouncer: Debouncer<RecommendedWatcher>,
    settle: Arc<Settle>,
    seen: Arc<Mutex<Seen>>,
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

fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Settle {
    fn lock(&self) -> MutexGuard<'_, SettleState> {
        locked(&self.state)
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
    fn run(&self, changed_to: Changed) {
        let mut state = self.lock();
        loop {
            if state.stopped {
                return;
            }
            let Some(last) = state.last_change else {
                state = self
                    .changed
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
                continue;
            };
            let settled_at = last + DEBOUNCE;
            let now = Instant::now();
            if now < settled_at {
                state = self
                    .changed
                    .wait_timeout(state, settled_at - now)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
                continue;
            }
            let mut changed = std::mem::take(&mut state.pending);
            state.last_change = None;
            changed.sort();
            changed.dedup();
            // Sent under the lock: a re-exec's [`Watch::carry`] sees each
            // batch either still pending or already sent.
            if !changed_to(changed) {
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

/// The version last seen of each watched file, and of what is under each
/// watched directory (up to [`MAX_REMEMBERED`] entries).
#[derive(Debug, Clone, Default)]
struct Seen {
    versions: HashMap<PathBuf, Fingerprint>,
    /// Every entry under the directories is remembered.
    complete: bool,
}

impl Seen {
    /// The versions on disk now.
    fn now(targets: &Targets) -> Seen {
        let mut seen = Seen {
            versions: HashMap::new(),
            complete: true,
        };
        for file in &targets.files {
            if let Some(version) = fingerprint(file) {
                seen.versions.insert(file.clone(), version);
            }
        }
        let mut budget = MAX_REMEMBERED;
        let mut stack: Vec<PathBuf> = targets.dirs.clone();
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                if budget == 0 {
                    seen.complete = false;
                    return seen;
                }
                budget -= 1;
                let path = entry.path();
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(path.clone());
                }
                if let Some(version) = fingerprint(&path) {
                    seen.versions.insert(path, version);
                }
            }
        }
        seen
    }

    /// Notes `path`'s version now: whether it differs from the last seen,
    /// or `None` if the path is gone. Past twice [`MAX_REMEMBERED`], a path
    /// not seen before is not remembered.
    fn update(&mut self, path: &Path) -> Option<bool> {
        let now = fingerprint(path)?;
        if let Some(last) = self.versions.get_mut(path) {
            return Some(std::mem::replace(last, now) != now);
        }
        if self.versions.len() < 2 * MAX_REMEMBERED {
            self.versions.insert(path.to_path_buf(), now);
        } else {
            self.complete = false;
        }
        Some(true)
    }

    /// The paths whose version differs between `self` (what a master saw
    /// before it re-exec'd) and `now`.
    fn changed_in(&self, now: &Seen) -> Vec<PathBuf> {
        let mut changed: Vec<PathBuf> = self
            .versions
            .iter()
            .filter(|(path, version)| now.versions.get(*path) != Some(*version))
            .map(|(path, _)| path.clone())
            .collect();
        if self.complete && now.complete {
            changed.extend(
                now.versions
                    .keys()
                    .filter(|path| !self.versions.contains_key(*path))
                    .cloned(),
            );
        }
        changed.sort();
        changed
    }
}

/// What a watcher passes to the one of the master it re-execs: what it saw
/// last, and the changes still waiting for quiet.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Carried {
    versions: Vec<(PathBuf, Fingerprint)>,
    complete: bool,
    pending: Vec<PathBuf>,
}

impl Carried {
    fn seen(&self) -> Seen {
        Seen {
            versions: self.versions.iter().cloned().collect(),
            complete: self.complete,
        }
    }
}

/// The paths watched: files (through their directories) and directories
/// (recursively), absolute.
#[derive(Debug, Clone)]
struct Targets {
    files: Vec<PathBuf>,
    dirs: Vec<PathBuf>,
}

impl Targets {
    fn of(paths: &[PathBuf]) -> Result<Targets, String> {
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
        Ok(Targets { files, dirs })
    }

    /// Whether an event on `path` concerns what is watched.
    fn covers(&self, path: &Path) -> bool {
        self.dirs.iter().any(|d| path.starts_with(d)) || self.files.iter().any(|f| f == path)
    }

    /// What the notify watcher registers: each file's directory, and each
    /// directory with everything under it.
    fn registrations(&self) -> Vec<(PathBuf, RecursiveMode)> {
        let mut parents: Vec<PathBuf> = self
            .files
            .iter()
            .filter_map(|f| f.parent().map(Path::to_path_buf))
            .collect();
        parents.sort();
        parents.dedup();
        parents
            .into_iter()
            .map(|d| (d, RecursiveMode::NonRecursive))
            .chain(
                self.dirs
                    .iter()
                    .map(|d| (d.clone(), RecursiveMode::Recursive)),
            )
            .collect()
    }
}

/// Starts watching `paths` (files, or directories watched recursively) and
/// calls `changed_to` once per batch of changes followed by [`DEBOUNCE`]
/// of quiet. `carried` is what the master that re-exec'd this one saw:
/// whatever changed since counts as a change now.
pub fn start(
    paths: &[PathBuf],
    changed_to: Changed,
    carried: Option<Carried>,
) -> Result<Watch, String> {
    let targets = Targets::of(paths)?;
    let seen = Arc::new(Mutex::new(match &carried {
        Some(carried) => carried.seen(),
        None => Seen::now(&targets),
    }));
    let settle = Arc::new(Settle::default());
    let (noted, remembered, covered) = (Arc::clone(&settle), Arc::clone(&seen), targets.clone());
    let mut debouncer = new_debouncer(GATHER, move |result: DebounceEventResult| {
        let Ok(events) = result else { return };
        // The versions are updated and the changes noted under one lock, so
        // a re-exec carries either both or neither.
        let mut seen = locked(&remembered);
        let mut changed: Vec<PathBuf> = Vec::new();
        for event in events {
            let path = event.path;
            if !covered.covers(&path) {
                continue;
            }
            let version = seen.update(&path);
            if covered.files.contains(&path) {
                // A watched file gone (mid-replacement) is not a change yet:
                // the new file's own event follows.
                if version == Some(true) {
                    changed.push(path);
                }
            } else {
                // Under a directory, any event is.
                if version.is_none() {
                    seen.versions.remove(&path);
                }
                changed.push(path);
            }
        }
        if !changed.is_empty() {
            noted.note(changed);
        }
    })
    .map_err(|e| format!("--watch: cannot watch files: {e}"))?;
    for (dir, mode) in targets.registrations() {
        debouncer
            .watcher()
            .watch(&dir, mode)
            .map_err(|e| format!("--watch: cannot watch {}: {e}", dir.display()))?;
    }
    if let Some(carried) = carried {
        catch_up(&targets, &seen, &settle, carried);
    }
    let sender = Arc::clone(&settle);
    std::thread::Builder::new()
        .name("watch-settle".into())
        .spawn(move || sender.run(changed_to))
        .map_err(|e| format!("--watch: cannot start its thread: {e}"))?;
    Ok(Watch {
        _debouncer: debouncer,
        settle,
        seen,
    })
}

/// A re-exec'd master, now watching: what changed while no master watched
/// (and what was waiting for quiet) is noted as a change.
fn catch_up(targets: &Targets, seen: &Mutex<Seen>, settle: &Settle, carried: Carried) {
    let now = Seen::now(targets);
    let mut seen = locked(seen);
    let mut changed = carried.seen().changed_in(&now);
    changed.extend(carried.pending);
    *seen = now;
    if !changed.is_empty() {
        settle.note(changed);
    }
}

impl Watch {
    /// What the master this one execs needs to see what changes meanwhile.
    /// Paths that are not UTF-8 cannot travel (the state is JSON): they
    /// are left out, and an addition is then no longer told apart.
    pub fn carry(&self) -> Carried {
        let seen = locked(&self.seen);
        let pending = self.settle.lock().pending.clone();
        let versions: Vec<(PathBuf, Fingerprint)> = seen
            .versions
            .iter()
            .filter(|(path, _)| path.to_str().is_some())
            .map(|(path, version)| (path.clone(), *version))
            .collect();
        Carried {
            complete: seen.complete && versions.len() == seen.versions.len(),
            versions,
            pending: pending
                .into_iter()
                .filter(|path| path.to_str().is_some())
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets(dir: &Path, file: &Path) -> Targets {
        Targets {
            files: vec![file.to_path_buf()],
            dirs: vec![dir.join("src")],
        }
    }

    /// What one master saw, the files changed, and what the next one finds.
    #[test]
    fn a_carried_view_names_what_changed_after_it_and_only_that() {
        let tmp = tempfile::tempdir().unwrap();
        let (file, src) = (tmp.path().join("program"), tmp.path().join("src"));
        std::fs::create_dir_all(src.join("deep")).unwrap();
        std::fs::write(&file, "v1").unwrap();
        std::fs::write(src.join("kept.rs"), "same").unwrap();
        std::fs::write(src.join("deep/edited.rs"), "v1").unwrap();
        std::fs::write(src.join("removed.rs"), "x").unwrap();
        let targets = targets(tmp.path(), &file);
        let before = Seen::now(&targets);
        assert!(before.changed_in(&Seen::now(&targets)).is_empty());

        std::fs::write(&file, "version 2").unwrap();
        std::fs::write(src.join("deep/edited.rs"), "version 2").unwrap();
        std::fs::remove_file(src.join("removed.rs")).unwrap();
        std::fs::write(src.join("added.rs"), "new").unwrap();
        let changed = before.changed_in(&Seen::now(&targets));
        for path in [
            file.clone(),
            src.join("deep/edited.rs"),
            src.join("removed.rs"),
            src.join("added.rs"),
        ] {
            assert!(changed.contains(&path), "{path:?} not in {changed:?}");
        }
        assert!(!changed.contains(&src.join("kept.rs")), "{changed:?}");
    }

    /// Past the bound, what was not remembered cannot be told new; what
    /// was remembered still is compared.
    #[test]
    fn an_incomplete_view_reports_no_additions() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("program");
        std::fs::create_dir_all(tmp.path().join("src")).unwrap();
        std::fs::write(&file, "v1").unwrap();
        let targets = targets(tmp.path(), &file);
        let mut before = Seen::now(&targets);
        before.complete = false;
        std::fs::write(tmp.path().join("src/added.rs"), "new").unwrap();
        std::fs::write(&file, "version 2").unwrap();
        assert_eq!(before.changed_in(&Seen::now(&targets)), [file]);
    }

    /// The view travels as JSON (the re-exec's state) and back.
    #[test]
    fn a_watch_carries_its_view_through_json_to_the_next_watch() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("program");
        std::fs::write(&file, "v1").unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let first = start(std::slice::from_ref(&file), Box::new(|_| true), None).unwrap();
        let json = serde_json::to_string(&first.carry()).unwrap();
        drop(first);
        std::fs::write(&file, "version 2").unwrap();
        let carried: Carried = serde_json::from_str(&json).unwrap();
        let _second = start(
            std::slice::from_ref(&file),
            Box::new(move |paths| tx.send(paths).is_ok()),
            Some(carried),
        )
        .unwrap();
        let changed = rx.recv_timeout(Duration::from_secs(60)).unwrap();
        assert_eq!(changed, [file]);
    }
}
