//! Reading every worker's file at scrape time, and compacting the files of
//! dead workers into one archive so that the directory does not grow with
//! every restart while their counters stay in the sum.
//!
//! A worker holds an exclusive `flock` on its own file for its whole life
//! (the kernel drops it when the process dies, `kill -9` included), so a
//! file whose lock can be taken is a dead worker's. Scrapes and compactions
//! run one at a time under an exclusive lock on the directory's `lock`
//! file, so no scrape sees a dead worker's values both in its file and in
//! the archive.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;
use std::time::{Duration, SystemTime};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use super::file::{self, Entry, EntryKind, Mapping};
use super::store::{TEMP_PREFIX, WORKER_PREFIX};

/// The archive of dead workers' counters and histograms.
const ARCHIVE: &str = "archive.db";
const ARCHIVE_TEMP: &str = "archive.tmp";
const LOCK: &str = "lock";

/// A file being created that was never renamed (its creator died at once)
/// is removed after this long.
const TEMP_MAX_AGE: Duration = Duration::from_secs(60);

/// The sum over every worker: each series' kind and values, by key.
pub(crate) type Totals = BTreeMap<Vec<u8>, (EntryKind, Vec<u64>)>;

/// What one scrape found.
#[derive(Debug, Default)]
pub(crate) struct Scrape {
    /// Counters and histograms of every worker, dead ones included; gauges
    /// of live workers only.
    pub totals: Totals,
    /// Worker files read, live ones.
    pub live_workers: usize,
    /// Dead workers' files merged into the archive by this scrape.
    pub compacted: usize,
}

/// Sums every file in `dir`, compacting dead workers' files first.
///
/// Anything planted in the directory is distrusted: every file is opened
/// without following symlinks and without blocking, and only regular files
/// are read; one that cannot be read is skipped with one WARN. Without the
/// `lock` file (say the directory is read-only), the scrape sums what is
/// there without compacting.
pub(crate) fn scrape(dir: &Path) -> io::Result<Scrape> {
    let lock = match open_lock(dir) {
        Ok(lock) => Some(lock),
        Err(e) => {
            warn_once(
                &dir.join(LOCK),
                &format!("cannot lock it ({e}); scrapes sum the files without compacting"),
            );
            None
        }
    };
    let mut archive = read_archive(dir);
    let mut scrape = Scrape::default();
    let mut live: Vec<Vec<Entry>> = Vec::new();
    let mut dead: Vec<(String, Vec<Entry>)> = Vec::new();
    for dirent in std::fs::read_dir(dir)? {
        let dirent = dirent?;
        let name = dirent.file_name().to_string_lossy().into_owned();
        if name.starts_with(TEMP_PREFIX) {
            if lock.is_some() {
                remove_stale_temp(&dirent.path());
            }
            continue;
        }
        if !name.starts_with(WORKER_PREFIX) || !name.ends_with(".db") {
            continue;
        }
        if archive.merged.contains_key(&name) {
            // Merged by a compaction that stopped before removing it.
            if lock.is_some() {
                let _ = std::fs::remove_file(dirent.path());
            }
            continue;
        }
        let Some((alive, entries)) = read_worker(&dirent.path()) else {
            continue;
        };
        if alive {
            live.push(entries);
        } else {
            dead.push((name, entries));
        }
    }

    if !dead.is_empty() {
        scrape.compacted = compact(dir, &mut archive, &dead, lock.is_some());
    }

    scrape.totals = archive.totals;
    scrape.live_workers = live.len();
    for entries in &live {
        for entry in entries {
            add(&mut scrape.totals, entry, entry.kind);
        }
    }
    Ok(scrape)
}

/// A worker's file: whether its worker is alive (holds its lock), and its
/// entries. `None` for a file being written, or one that cannot be read
/// (after one WARN).
fn read_worker(path: &Path) -> Option<(bool, Vec<Entry>)> {
    let file = open_regular(path).or_else(|e| skip(path, e)).ok()?;
    let (alive, file) = match Flock::lock(file, FlockArg::LockSharedNonblock) {
        Ok(locked) => (false, locked.unlock().or_else(|(_, e)| skip(path, e)).ok()?),
        Err((file, Errno::EWOULDBLOCK)) => (true, file),
        Err((_, e)) => return skip(path, format!("cannot lock it ({e})")).ok(),
    };
    let entries = read_file(&file).or_else(|e| skip(path, e)).ok()?;
    entries.map(|entries| (alive, entries))
}

/// Warns once that `path` was skipped, and why.
fn skip<T>(path: &Path, why: impl std::fmt::Display) -> Result<T, ()> {
    warn_once(path, &format!("skipped: {why}"));
    Err(())
}

/// Merges dead workers' counters and histograms into the archive and, once
/// it is written (only under the directory's lock), removes their files.
/// Returns how many were removed.
fn compact(
    dir: &Path,
    archive: &mut Archive,
    dead: &[(String, Vec<Entry>)],
    locked: bool,
) -> usize {
    for (name, entries) in dead {
        for entry in entries {
            if entry.kind != EntryKind::Gauge {
                add(&mut archive.totals, entry, entry.kind);
            }
        }
        archive.merged.insert(name.clone(), ());
    }
    // Names merged earlier whose files are gone need no record.
    archive.merged.retain(|name, _| dir.join(name).exists());
    // Dead files are removed only once the archive holding them is in
    // place; until then every scrape counts them from their files.
    let written = locked
        && write_archive(dir, archive)
            .map_err(|e| warn_once(&dir.join(ARCHIVE), &format!("cannot write it ({e})")))
            .is_ok();
    if !written {
        return 0;
    }
    for (name, _) in dead {
        let _ = std::fs::remove_file(dir.join(name));
    }
    dead.len()
}

/// Whether a live worker holds its file in `dir` (its lock is taken).
pub(crate) fn has_live_worker(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|entry| {
        let name = entry.file_name();
        let is_worker = name
            .to_str()
            .is_some_and(|n| n.starts_with(WORKER_PREFIX) && n.ends_with(".db"));
        is_worker
            && open_regular(&entry.path()).is_ok_and(|file| {
                matches!(
                    Flock::lock(file, FlockArg::LockSharedNonblock),
                    Err((_, Errno::EWOULDBLOCK))
                )
            })
    })
}

/// The directory's `lock` file, created if missing, held exclusively.
fn open_lock(dir: &Path) -> io::Result<Flock<File>> {
    let lock = crate::lock_file::open(&dir.join(LOCK))?;
    Flock::lock(lock, FlockArg::LockExclusive).map_err(|(_, e)| io::Error::from(e))
}

/// Opens `path` for reading if it is a regular file: never through a
/// symlink, and never waiting (a FIFO would block an open for reading).
fn open_regular(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(nix::libc::ELOOP) => io::Error::other("a symlink"),
            _ => e,
        })?;
    let kind = file.metadata()?.file_type();
    if !kind.is_file() {
        return Err(io::Error::other(format!(
            "not a regular file ({})",
            if kind.is_dir() {
                "a directory"
            } else if kind.is_fifo() {
                "a FIFO"
            } else {
                "a special file"
            }
        )));
    }
    Ok(file)
}

/// Logs one WARN for `path`, the first time only: a planted file would
/// otherwise be logged at every scrape. At most [`MAX_WARNED`] paths are
/// remembered.
fn warn_once(path: &Path, what: &str) {
    static WARNED: std::sync::Mutex<Vec<std::path::PathBuf>> = std::sync::Mutex::new(Vec::new());
    let mut warned = WARNED.lock().unwrap_or_else(|e| e.into_inner());
    if warned.iter().any(|p| p == path) || warned.len() >= MAX_WARNED {
        return;
    }
    warned.push(path.to_path_buf());
    tracing::warn!("metrics file {}: {what}", path.display());
}

/// The most paths [`warn_once`] remembers.
const MAX_WARNED: usize = 64;

/// Adds `entry`'s values into `totals`. Slots are summed as 64-bit
/// integers (gauges are two's-complement, so negative steps sum right). A
/// series whose slot count differs from the one already there (another
/// version's layout) is skipped.
fn add(totals: &mut Totals, entry: &Entry, kind: EntryKind) {
    match totals.get_mut(&entry.key) {
        Some((_, values)) if values.len() == entry.values.len() => {
            for (total, value) in values.iter_mut().zip(&entry.values) {
                *total = total.wrapping_add(*value);
            }
        }
        Some(_) => {}
        None => {
            totals.insert(entry.key.clone(), (kind, entry.values.clone()));
        }
    }
}

fn read_file(file: &File) -> io::Result<Option<Vec<Entry>>> {
    let len = file.metadata()?.len() as usize;
    if len < file::HEADER {
        return Ok(None);
    }
    let mapping = Mapping::new(file, len, false)?;
    Ok(file::read(&mapping).map(|(_, entries)| entries))
}

fn remove_stale_temp(path: &Path) {
    let old = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .is_some_and(|age| age > TEMP_MAX_AGE);
    if old {
        let _ = std::fs::remove_file(path);
    }
}

/// The archive's contents.
#[derive(Default)]
struct Archive {
    totals: Totals,
    /// Worker files already merged (a `HashMap` for the lookup).
    merged: HashMap<String, ()>,
}

/// The archive, or an empty one if there is none (or it cannot be read:
/// logged once).
fn read_archive(dir: &Path) -> Archive {
    let mut archive = Archive::default();
    let path = dir.join(ARCHIVE);
    let entries = match open_regular(&path).and_then(|file| read_file(&file)) {
        Ok(entries) => entries.unwrap_or_default(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return archive,
        Err(e) => {
            warn_once(&path, &format!("skipped: {e}"));
            return archive;
        }
    };
    for entry in entries {
        match entry.kind {
            EntryKind::Merged => {
                archive
                    .merged
                    .insert(String::from_utf8_lossy(&entry.key).into_owned(), ());
            }
            kind => add(&mut archive.totals, &entry, kind),
        }
    }
    archive
}

/// Writes the archive beside the old one and renames it into place, so a
/// scrape never reads half of one.
fn write_archive(dir: &Path, archive: &Archive) -> io::Result<()> {
    let size = file::HEADER
        + archive
            .totals
            .iter()
            .map(|(key, (_, values))| file::entry_size(key.len(), values.len()))
            .sum::<usize>()
        + archive
            .merged
            .keys()
            .map(|name| file::entry_size(name.len(), 0))
            .sum::<usize>();
    let temp = dir.join(ARCHIVE_TEMP);
    // A leftover (or planted) temp file or symlink is removed, never
    // written through: the new archive is a file of its own.
    match std::fs::remove_file(&temp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(&temp)?;
    file.set_len(size as u64)?;
    {
        let mapping = Mapping::new(&file, size, true)?;
        file::init_header(&mapping, 0);
        let mut at = file::HEADER;
        for (key, (kind, values)) in &archive.totals {
            let first = file::append(&mapping, at, *kind, key, values.len());
            for (i, value) in values.iter().enumerate() {
                mapping
                    .word(first + i * 8)
                    .store(*value, std::sync::atomic::Ordering::Relaxed);
            }
            at += file::entry_size(key.len(), values.len());
        }
        for name in archive.merged.keys() {
            file::append(&mapping, at, EntryKind::Merged, name.as_bytes(), 0);
            at += file::entry_size(name.len(), 0);
        }
    }
    std::fs::rename(&temp, dir.join(ARCHIVE))
}

#[cfg(test)]
mod tests {
    use super::super::store::Store;
    use super::*;

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("bp-scrape-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn value(scrape: &Scrape, key: &[u8]) -> Option<u64> {
        scrape.totals.get(key).map(|(_, v)| v[0])
    }

    #[test]
    fn dead_workers_keep_counters_lose_gauges_and_are_compacted() {
        let dir = temp_dir("compact");
        let a = Store::create(&dir, "a").unwrap();
        let b = Store::create(&dir, "b").unwrap();
        a.slots(EntryKind::Counter, b"c", 1).unwrap().add(0, 3);
        b.slots(EntryKind::Counter, b"c", 1).unwrap().add(0, 4);
        a.slots(EntryKind::Gauge, b"g", 1).unwrap().add(0, 1);
        b.slots(EntryKind::Gauge, b"g", 1).unwrap().add(0, 2);
        let s = scrape(&dir).unwrap();
        assert_eq!(
            (value(&s, b"c"), value(&s, b"g"), s.live_workers),
            (Some(7), Some(3), 2)
        );

        // b dies: its counter stays, its gauge goes, its file is merged.
        let b_path = b.path().to_path_buf();
        drop(b);
        let s = scrape(&dir).unwrap();
        assert_eq!(
            (value(&s, b"c"), value(&s, b"g"), s.compacted),
            (Some(7), Some(1), 1)
        );
        assert!(!b_path.exists());
        // Scraping again counts it once.
        a.slots(EntryKind::Counter, b"c", 1).unwrap().add(0, 1);
        let s = scrape(&dir).unwrap();
        assert_eq!((value(&s, b"c"), s.compacted), (Some(8), 0));
        // Every worker gone: only the archive and the lock file are left.
        drop(a);
        let s = scrape(&dir).unwrap();
        assert_eq!((value(&s, b"c"), value(&s, b"g")), (Some(8), None));
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["archive.db", "lock"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_file_merged_but_not_removed_is_not_counted_twice() {
        let dir = temp_dir("crash");
        let a = Store::create(&dir, "a").unwrap();
        a.slots(EntryKind::Counter, b"c", 1).unwrap().add(0, 5);
        let path = a.path().to_path_buf();
        let kept = std::fs::read(&path).unwrap();
        drop(a);
        assert_eq!(value(&scrape(&dir).unwrap(), b"c"), Some(5));
        // As if the compaction had stopped after writing the archive.
        std::fs::write(&path, kept).unwrap();
        assert_eq!(value(&scrape(&dir).unwrap(), b"c"), Some(5));
        assert!(!path.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn without_its_lock_file_a_scrape_sums_without_compacting() {
        let dir = temp_dir("nolock");
        let a = Store::create(&dir, "a").unwrap();
        let b = Store::create(&dir, "b").unwrap();
        a.slots(EntryKind::Counter, b"c", 1).unwrap().add(0, 3);
        b.slots(EntryKind::Counter, b"c", 1).unwrap().add(0, 4);
        // Something that is no lock file stands where it goes.
        std::fs::create_dir(dir.join(LOCK)).unwrap();
        let b_path = b.path().to_path_buf();
        drop(b);
        for _ in 0..2 {
            let s = scrape(&dir).unwrap();
            assert_eq!((value(&s, b"c"), s.compacted), (Some(7), 0));
        }
        assert!(b_path.exists(), "nothing is removed without the lock");
        drop(a);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn files_grow_past_their_first_size() {
        let dir = temp_dir("grow");
        let a = Store::create(&dir, "a").unwrap();
        let first = a.slots(EntryKind::Counter, b"first", 1).unwrap();
        for i in 0..3000 {
            a.slots(EntryKind::Counter, format!("series-{i}").as_bytes(), 1)
                .unwrap()
                .add(0, 1);
        }
        first.add(0, 9);
        let s = scrape(&dir).unwrap();
        assert_eq!(s.totals.len(), 3001);
        assert_eq!(value(&s, b"first"), Some(9));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
