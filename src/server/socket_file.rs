//! A UNIX socket's file: who may remove it, and when.
//!
//! A socket file outlives its listener, so a process binding a path first
//! removes a file nobody listens on. Two processes doing that at once can
//! remove each other's: one has bound but not yet listened, the other
//! finds the file refusing connections and unlinks it, and the first is
//! left listening on a socket no client can reach. When it stops, it
//! unlinks the second one's file too.
//!
//! Two guards close that race:
//! - [`OwnerLock`]: the processes that share a path (the workers of one
//!   service, for a UNIX `metrics.bind`) take `PATH.lock` with `flock`
//!   before they touch the path, and hold it for as long as they listen.
//!   Only the holder removes, binds and listens; the kernel frees the
//!   lock when the holder exits, however it exits.
//! - [`SocketFile`]: a listener removes its file when it closes only if
//!   the path still names the socket it bound (same device and inode).

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// The file a UNIX listener created, removed when the listener closes if
/// it is still the one this process bound.
#[derive(Debug)]
pub(crate) struct SocketFile {
    /// `None` once the file is to be kept (handed to a new process).
    path: Option<PathBuf>,
    /// The bound socket's device and inode.
    identity: (u64, u64),
    /// Released after the file is removed (fields drop after `drop`).
    _lock: Option<OwnerLock>,
}

impl SocketFile {
    /// The file this process just bound at `path`, with the lock that
    /// made it the path's owner, if any.
    pub(crate) fn bound(path: &Path, lock: Option<OwnerLock>) -> io::Result<SocketFile> {
        let meta = std::fs::symlink_metadata(path)?;
        Ok(SocketFile {
            path: Some(path.to_path_buf()),
            identity: (meta.dev(), meta.ino()),
            _lock: lock,
        })
    }

    /// Keeps the file when the listener closes: its socket lives on in
    /// another process.
    pub(crate) fn keep(&mut self) {
        self.path = None;
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        let Some(path) = &self.path else {
            return;
        };
        let still_ours = std::fs::symlink_metadata(path)
            .is_ok_and(|meta| (meta.dev(), meta.ino()) == self.identity);
        if still_ours {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// An exclusive `flock` on `PATH.lock`: the right to remove, bind and
/// listen on the UNIX socket at `PATH`. The file holds its holder's pid.
/// It is never removed (removing a lock file reopens the race it closes).
#[derive(Debug)]
pub(crate) struct OwnerLock {
    /// Locked while held; the kernel unlocks it when it closes.
    _file: Flock<File>,
}

impl OwnerLock {
    /// Takes the lock for the socket at `socket`, or `None` when another
    /// process holds it. Refuses a lock file that is a symlink or not a
    /// regular file.
    pub(crate) fn take(socket: &Path) -> io::Result<Option<OwnerLock>> {
        let file = crate::lock_file::open(&lock_path(socket))?;
        let mut file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(locked) => locked,
            Err((_, Errno::EWOULDBLOCK)) => return Ok(None),
            Err((_, e)) => return Err(e.into()),
        };
        file.set_len(0)?;
        writeln!(*file, "{}", std::process::id())?;
        Ok(Some(OwnerLock { _file: file }))
    }

    /// The pid the holder of `socket`'s lock wrote, if it can be read.
    pub(crate) fn holder(socket: &Path) -> Option<i32> {
        let mut file = crate::lock_file::open(&lock_path(socket)).ok()?;
        let mut text = String::new();
        Read::by_ref(&mut file)
            .take(32)
            .read_to_string(&mut text)
            .ok()?;
        text.trim().parse().ok()
    }
}

/// `PATH.lock`, beside the socket.
fn lock_path(socket: &Path) -> PathBuf {
    let mut name = socket.as_os_str().to_os_string();
    name.push(".lock");
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_process_holds_the_lock_and_others_read_its_pid() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("s.sock");
        let held = OwnerLock::take(&socket)
            .unwrap()
            .expect("the first takes it");
        // flock conflicts between open file descriptions, even in one process.
        assert!(OwnerLock::take(&socket).unwrap().is_none());
        assert_eq!(OwnerLock::holder(&socket), Some(std::process::id() as i32));
        drop(held);
        assert!(OwnerLock::take(&socket).unwrap().is_some());
    }

    #[test]
    fn a_planted_lock_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("s.sock");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        std::os::unix::fs::symlink(&victim, lock_path(&socket)).unwrap();
        assert!(OwnerLock::take(&socket).is_err());
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        std::fs::remove_file(lock_path(&socket)).unwrap();
        nix::unistd::mkfifo(&lock_path(&socket), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let err = OwnerLock::take(&socket).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }

    #[test]
    fn a_closing_listener_leaves_a_file_bound_by_someone_else() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let first = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let first_file = SocketFile::bound(&path, None).unwrap();
        // Another process replaced the file with its own socket.
        std::fs::remove_file(&path).unwrap();
        let second = std::os::unix::net::UnixListener::bind(&path).unwrap();
        drop((first, first_file));
        assert!(path.exists(), "the second socket's file was removed");
        let second_file = SocketFile::bound(&path, None).unwrap();
        drop((second, second_file));
        assert!(!path.exists());
    }
}
