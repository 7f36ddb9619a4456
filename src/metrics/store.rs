//! This worker's side of the multiprocess metrics: its own file in the
//! shared directory, held locked for as long as the worker lives (the lock
//! is how other workers tell a live worker's file from a dead one's), and
//! the value slots of every series it has recorded.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use nix::fcntl::{Flock, FlockArg};

use super::file::{self, EntryKind, Mapping};

/// The size a new file starts at; it doubles when full.
const INITIAL_SIZE: usize = 64 * 1024;

/// Worker files are named `w-ID-PID-NANOS.db`.
pub(crate) const WORKER_PREFIX: &str = "w-";
/// Files being created are named `tmp-PID-NANOS.db` until they are locked
/// and initialized.
pub(crate) const TEMP_PREFIX: &str = "tmp-";

/// The value slots of one series: `len` words from `offset` of a mapping.
#[derive(Clone)]
pub(crate) struct Slots {
    mapping: Arc<Mapping>,
    offset: usize,
    len: usize,
}

impl Slots {
    /// Adds `n` to slot `i`.
    #[inline]
    pub(crate) fn add(&self, i: usize, n: u64) {
        debug_assert!(i < self.len);
        self.mapping
            .word(self.offset + i * 8)
            .fetch_add(n, Ordering::Relaxed);
    }

    /// Subtracts `n` from slot `i` (a gauge going down).
    #[inline]
    pub(crate) fn sub(&self, i: usize, n: u64) {
        debug_assert!(i < self.len);
        self.mapping
            .word(self.offset + i * 8)
            .fetch_sub(n, Ordering::Relaxed);
    }

    /// Sets slot `i` (a gauge, or a counter this process samples).
    pub(crate) fn set(&self, i: usize, value: u64) {
        debug_assert!(i < self.len);
        self.mapping
            .word(self.offset + i * 8)
            .store(value, Ordering::Relaxed);
    }
}

/// The file being appended to.
struct Writer {
    /// Open and locked (exclusively) for the life of the store.
    file: Flock<File>,
    /// A mapping of the whole file; a larger one replaces it when the file
    /// grows (older ones stay mapped for the slots that point into them).
    current: Arc<Mapping>,
    /// Where the next entry goes.
    next: usize,
}

/// One worker's metrics file and the series in it.
pub(crate) struct Store {
    path: PathBuf,
    writer: Mutex<Writer>,
    /// Every series recorded, by key (a key names its metric, so its kind).
    series: RwLock<HashMap<Box<[u8]>, Slots>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Creates this worker's file in `dir` (made if missing), named after
    /// `worker_id`, and locks it.
    pub(crate) fn create(dir: &Path, worker_id: &str) -> io::Result<Store> {
        std::fs::create_dir_all(dir)?;
        let pid = std::process::id();
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let temp = dir.join(format!("{TEMP_PREFIX}{pid}-{nanos}.db"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)?;
        let file = Flock::lock(file, FlockArg::LockExclusiveNonblock)
            .map_err(|(_, errno)| io::Error::from(errno))?;
        file.set_len(INITIAL_SIZE as u64)?;
        let mapping = Mapping::new(&file, INITIAL_SIZE, true)?;
        file::init_header(&mapping, pid);
        let safe_id: String = worker_id
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let path = dir.join(format!("{WORKER_PREFIX}{safe_id}-{pid}-{nanos}.db"));
        // Only a whole, locked file appears under a worker name, so a
        // scrape never mistakes a file being made for a dead worker's.
        std::fs::rename(&temp, &path)?;
        Ok(Store {
            path,
            writer: Mutex::new(Writer {
                file,
                current: Arc::new(mapping),
                next: file::HEADER,
            }),
            series: RwLock::new(HashMap::new()),
        })
    }

    /// The file's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The slots of the series `key`, added to the file the first time.
    pub(crate) fn slots(&self, kind: EntryKind, key: &[u8], len: usize) -> io::Result<Slots> {
        if let Some(slots) = self
            .series
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
        {
            return Ok(slots.clone());
        }
        let mut series = self.series.write().unwrap_or_else(|e| e.into_inner());
        if let Some(slots) = series.get(key) {
            return Ok(slots.clone());
        }
        let mut writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let size = file::entry_size(key.len(), len);
        if writer.next + size > writer.current.len() {
            let grown = (writer.current.len() * 2).max(writer.next + size);
            writer.file.set_len(grown as u64)?;
            let mapping = Mapping::new(&writer.file, grown, true)?;
            writer.current = Arc::new(mapping);
        }
        let offset = file::append(&writer.current, writer.next, kind, key, len);
        writer.next += size;
        let slots = Slots {
            mapping: Arc::clone(&writer.current),
            offset,
            len,
        };
        series.insert(key.into(), slots.clone());
        Ok(slots)
    }
}
