//! The metrics file one worker writes and every worker reads: a header and
//! append-only entries, each a series key and its 8-byte value slots,
//! memory-mapped so that recording is an atomic add in shared memory and a
//! scrape by any worker sees the values as they are.
//!
//! Layout (little-endian, every part 8-byte aligned):
//!
//! ```text
//! header  magic u64 | version u32 | pid u32 | used u64 (bytes committed) | 40 bytes reserved
//! entry   total_len u32 | kind u8 | 0 u8 | slots u16 | key_len u32 | 0 u32 | key (padded) | slots × u64
//! ```
//!
//! The writer fills an entry beyond `used`, then publishes it by storing the
//! new `used` (release); readers load `used` (acquire) and parse up to it.

use std::fs::File;
use std::io;
use std::num::NonZeroUsize;
use std::os::fd::AsFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

use nix::sys::mman::{mmap, munmap, MapFlags, ProtFlags};

/// "BPMETRIC", little-endian.
const MAGIC: u64 = u64::from_le_bytes(*b"BPMETRIC");
/// The format version; files of another version are skipped.
const VERSION: u32 = 1;
/// The header's size; the first entry starts here.
pub(crate) const HEADER: usize = 64;
const USED_AT: usize = 16;
const ENTRY_HEADER: usize = 16;

/// What an entry holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum EntryKind {
    /// A counter: summed over every file, dead workers' included.
    Counter,
    /// A gauge: summed over the files of live workers only.
    Gauge,
    /// A histogram's buckets, sum and count: summed like a counter.
    Histogram,
    /// In the archive only: a file already merged into it.
    Merged,
}

impl EntryKind {
    fn code(self) -> u8 {
        match self {
            EntryKind::Counter => 1,
            EntryKind::Gauge => 2,
            EntryKind::Histogram => 3,
            EntryKind::Merged => 4,
        }
    }

    fn from_code(code: u8) -> Option<EntryKind> {
        Some(match code {
            1 => EntryKind::Counter,
            2 => EntryKind::Gauge,
            3 => EntryKind::Histogram,
            4 => EntryKind::Merged,
            _ => return None,
        })
    }
}

fn padded(n: usize) -> usize {
    n.div_ceil(8) * 8
}

/// The bytes an entry with this key and slot count takes.
pub(crate) fn entry_size(key_len: usize, slots: usize) -> usize {
    ENTRY_HEADER + padded(key_len) + slots * 8
}

/// A shared, writable mapping of a whole file; unmapped on drop.
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// The mapping is plain shared memory; every access to the value slots goes
// through atomics, and entries are written only under the store's lock.
unsafe impl Send for Mapping {}
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps the first `len` bytes of `file`, which must be that long.
    pub(crate) fn new(file: &File, len: usize, writable: bool) -> io::Result<Mapping> {
        let size = NonZeroUsize::new(len).ok_or_else(|| io::Error::other("an empty file"))?;
        let prot = if writable {
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE
        } else {
            ProtFlags::PROT_READ
        };
        // SAFETY: a new mapping at an address the kernel picks, of a file
        // this process keeps open; it is only unmapped on drop.
        let ptr = unsafe { mmap(None, size, prot, MapFlags::MAP_SHARED, file.as_fd(), 0) }
            .map_err(io::Error::from)?;
        Ok(Mapping {
            ptr: ptr.cast(),
            len,
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The 8-byte word at `offset` (8-aligned, within the mapping).
    pub(crate) fn word(&self, offset: usize) -> &AtomicU64 {
        assert!(
            offset.is_multiple_of(8) && offset + 8 <= self.len,
            "slot {offset}"
        );
        // SAFETY: in bounds and aligned (mappings are page-aligned); the
        // memory lives as long as `self`, and is only accessed atomically.
        unsafe { &*(self.ptr.as_ptr().add(offset) as *const AtomicU64) }
    }

    /// Copies `bytes` to `offset`: only for parts of an entry no reader
    /// looks at yet (beyond `used`).
    pub(crate) fn write(&self, offset: usize, bytes: &[u8]) {
        assert!(offset + bytes.len() <= self.len, "write at {offset}");
        // SAFETY: in bounds; the range is not yet published, so nothing
        // else reads or writes it.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                self.ptr.as_ptr().add(offset),
                bytes.len(),
            )
        }
    }

    fn read_u32(&self, offset: usize) -> u32 {
        let word = self.word(offset & !7).load(Ordering::Relaxed).to_le_bytes();
        let at = offset & 7;
        u32::from_le_bytes([word[at], word[at + 1], word[at + 2], word[at + 3]])
    }

    fn read_bytes(&self, offset: usize, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len);
        let start = offset & !7;
        let mut at = start;
        while at < offset + len {
            let word = self.word(at).load(Ordering::Relaxed).to_le_bytes();
            for (i, b) in word.iter().enumerate() {
                let pos = at + i;
                if pos >= offset && pos < offset + len {
                    out.push(*b);
                }
            }
            at += 8;
        }
        out
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: mapped by `new` with this length; no reference into it
        // outlives `self`.
        let _ = unsafe { munmap(self.ptr.cast(), self.len) };
    }
}

/// Writes a new file's header into `mapping`.
pub(crate) fn init_header(mapping: &Mapping, pid: u32) {
    let mut header = [0u8; HEADER];
    header[0..8].copy_from_slice(&MAGIC.to_le_bytes());
    header[8..12].copy_from_slice(&VERSION.to_le_bytes());
    header[12..16].copy_from_slice(&pid.to_le_bytes());
    mapping.write(0, &header);
    mapping
        .word(USED_AT)
        .store(HEADER as u64, Ordering::Release);
}

/// The bytes committed so far.
pub(crate) fn used(mapping: &Mapping) -> usize {
    mapping.word(USED_AT).load(Ordering::Acquire) as usize
}

/// Writes an entry at `offset` (beyond `used`) and publishes it. Returns
/// the offset of its first value slot.
pub(crate) fn append(
    mapping: &Mapping,
    offset: usize,
    kind: EntryKind,
    key: &[u8],
    slots: usize,
) -> usize {
    let size = entry_size(key.len(), slots);
    let mut head = [0u8; ENTRY_HEADER];
    head[0..4].copy_from_slice(&(size as u32).to_le_bytes());
    head[4] = kind.code();
    head[6..8].copy_from_slice(&(slots as u16).to_le_bytes());
    head[8..12].copy_from_slice(&(key.len() as u32).to_le_bytes());
    mapping.write(offset, &head);
    mapping.write(offset + ENTRY_HEADER, key);
    let values = offset + ENTRY_HEADER + padded(key.len());
    // The file was extended with zeros, so the slots start at 0; a reused
    // region cannot happen (the file only grows).
    mapping
        .word(USED_AT)
        .store((offset + size) as u64, Ordering::Release);
    values
}

/// One entry as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub kind: EntryKind,
    pub key: Vec<u8>,
    pub values: Vec<u64>,
}

/// A whole file as read back: the writer's pid and its entries. `None` for
/// a file that is not one of ours (or of another version).
pub(crate) fn read(mapping: &Mapping) -> Option<(u32, Vec<Entry>)> {
    if mapping.len() < HEADER
        || mapping.word(0).load(Ordering::Relaxed) != MAGIC
        || mapping.read_u32(8) != VERSION
    {
        return None;
    }
    let pid = mapping.read_u32(12);
    let used = used(mapping).min(mapping.len());
    let mut entries = Vec::new();
    let mut at = HEADER;
    while at + ENTRY_HEADER <= used {
        let size = mapping.read_u32(at) as usize;
        let head = mapping.word(at).load(Ordering::Relaxed).to_le_bytes();
        let slots = usize::from(u16::from_le_bytes([head[6], head[7]]));
        let key_len = mapping.read_u32(at + 8) as usize;
        if size != entry_size(key_len, slots) || at + size > used {
            // Not a whole entry: the file is damaged from here on.
            break;
        }
        if let Some(kind) = EntryKind::from_code(head[4]) {
            let key = mapping.read_bytes(at + ENTRY_HEADER, key_len);
            let first = at + ENTRY_HEADER + padded(key_len);
            let values = (0..slots)
                .map(|i| mapping.word(first + i * 8).load(Ordering::Relaxed))
                .collect();
            entries.push(Entry { kind, key, values });
        }
        at += size;
    }
    Some((pid, entries))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_written_are_read_back_with_their_values() {
        let dir = std::env::temp_dir().join(format!("bp-metrics-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.db");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        file.set_len(4096).unwrap();
        let mapping = Mapping::new(&file, 4096, true).unwrap();
        init_header(&mapping, 42);
        let first = append(&mapping, HEADER, EntryKind::Counter, b"a\0b", 1);
        mapping.word(first).fetch_add(7, Ordering::Relaxed);
        let next = HEADER + entry_size(3, 1);
        let second = append(&mapping, next, EntryKind::Histogram, b"histogram", 3);
        mapping.word(second + 16).fetch_add(5, Ordering::Relaxed);

        let reader = Mapping::new(&file, 4096, false).unwrap();
        let (pid, entries) = read(&reader).unwrap();
        assert_eq!(pid, 42);
        assert_eq!(
            entries,
            vec![
                Entry {
                    kind: EntryKind::Counter,
                    key: b"a\0b".to_vec(),
                    values: vec![7]
                },
                Entry {
                    kind: EntryKind::Histogram,
                    key: b"histogram".to_vec(),
                    values: vec![0, 0, 5]
                },
            ]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
