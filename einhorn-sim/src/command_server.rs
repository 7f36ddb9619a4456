//! The command socket: created safely (a lockfile while creating, stale
//! sockets replaced, live ones left alone, mode 0600), then one task per
//! connection that cuts bytes into lines for the master and writes its
//! replies back.

use std::io::ErrorKind;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use nix::sys::stat::{umask, Mode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::sync::Notify;

use crate::master::{ClientHandle, ConnId, Input, Outgoing};
use crate::protocol::{self, Line, LineReader, Request};
use crate::report::{Level, Log};

/// Creates the command socket at `path`, holding `lockfile` meanwhile. With
/// `group`, the socket belongs to that group and its members may use it
/// (mode 0660); otherwise only the owner may (0600).
pub fn open(
    path: &Path,
    lockfile: &Path,
    group: Option<&str>,
    log: &Log,
) -> Result<UnixListener, String> {
    let lock = crate::private_file::open_lockfile(lockfile)?;
    lock.try_lock().map_err(|_| {
        format!(
            "the lockfile {} is held by another process (another einhorn starting?)",
            lockfile.display()
        )
    })?;
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        let shown = path.display();
        if !meta.file_type().is_socket() {
            return Err(format!(
                "Non-socket file present at Einhorn command socket path {shown}. Either remove that file and restart Einhorn, or pass a `-d PATH_TO_SOCKET` to change the command socket location."
            ));
        }
        match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => {
                return Err(format!(
                    "Another process (probably another Einhorn) is listening on the Einhorn command socket at {shown}. If you'd like to run this Einhorn as well, pass a `-d PATH_TO_SOCKET` to change the command socket location."
                ))
            }
            Err(_) => {
                log.write(
                    Level::Info,
                    &format!("Blowing away old Einhorn command socket at {shown}. This likely indicates a previous Einhorn master which exited uncleanly."),
                );
                std::fs::remove_file(path)
                    .map_err(|e| format!("cannot remove the old command socket {shown}: {e}"))?;
            }
        }
    }
    // Only the owner may talk to the master.
    let previous = umask(Mode::from_bits_truncate(0o177));
    let bound = std::os::unix::net::UnixListener::bind(path);
    umask(previous);
    let listener =
        bound.map_err(|e| format!("cannot create the command socket {}: {e}", path.display()))?;
    if let Some(name) = group {
        let gid = match nix::unistd::Group::from_name(name) {
            Ok(Some(g)) => g.gid,
            _ => match name.parse::<u32>() {
                Ok(n) => nix::unistd::Gid::from_raw(n),
                Err(_) => {
                    let _ = std::fs::remove_file(path);
                    return Err(format!("--command-socket-group: no group {name:?}"));
                }
            },
        };
        let shared = nix::unistd::chown(path, None, Some(gid)).and_then(|_| {
            nix::sys::stat::fchmodat(
                nix::fcntl::AT_FDCWD,
                path,
                Mode::from_bits_truncate(0o660),
                nix::sys::stat::FchmodatFlags::FollowSymlink,
            )
        });
        if let Err(e) = shared {
            let _ = std::fs::remove_file(path);
            return Err(format!(
                "--command-socket-group {name}: cannot share the socket: {}",
                e.desc()
            ));
        }
    }
    listener
        .set_nonblocking(true)
        .and_then(|_| UnixListener::from_std(listener))
        .map_err(|e| format!("cannot use the command socket: {e}"))
}

/// The inode of the socket at descriptor `fd`, if it is open.
pub(crate) fn inode(fd: RawFd) -> Option<u64> {
    // SAFETY: fstat only reads; a number that is not open fails.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    nix::sys::stat::fstat(fd).ok().map(|st| st.st_ino)
}

/// Serves a connection a master before an exec accepted, as connection
/// `id`, starting with the bytes it had read and not run (`unread`): the
/// master's handle for it.
pub fn adopt(
    id: ConnId,
    fd: OwnedFd,
    unread: Vec<u8>,
    master: UnboundedSender<Input>,
) -> std::io::Result<ClientHandle> {
    let stream = std::os::unix::net::UnixStream::from(fd);
    stream.set_nonblocking(true)?;
    let stream = UnixStream::from_std(stream)?;
    let (client, rx) = handle(&stream);
    *locked(&client.unread) = LineReader::with_unread(unread);
    tokio::spawn(connection(id, stream, master, rx, client.clone()));
    Ok(client)
}

/// A connection's handle, and the receiving end of its replies.
fn handle(stream: &UnixStream) -> (ClientHandle, UnboundedReceiver<Outgoing>) {
    let (tx, rx) = unbounded_channel();
    let fd = stream.as_raw_fd();
    let client = ClientHandle {
        fd,
        inode: inode(fd).unwrap_or_default(),
        tx,
        pending: Arc::new(AtomicUsize::new(0)),
        abort: Arc::new(Notify::new()),
        handled: Arc::new(Notify::new()),
        unread: Arc::default(),
    };
    (client, rx)
}

fn locked(reader: &Mutex<LineReader>) -> MutexGuard<'_, LineReader> {
    reader.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Accepts connections for the master's whole life, numbering them from
/// `next` (shared with the master, which hands it to a re-exec'd one).
pub async fn serve(listener: UnixListener, master: UnboundedSender<Input>, next: Arc<AtomicU64>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) if e.kind() == ErrorKind::ConnectionAborted => continue,
            Err(_) => {
                // Out of file descriptors or similar: wait instead of spinning.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let id = next.fetch_add(1, Ordering::Relaxed) + 1;
        let (client, rx) = handle(&stream);
        // Who is on the other end, for the log of commands that change the pool.
        let peer = stream
            .peer_cred()
            .map(|c| {
                format!(
                    "uid {} gid {} pid {}",
                    c.uid(),
                    c.gid(),
                    c.pid().map_or("?".to_string(), |p| p.to_string())
                )
            })
            .unwrap_or_else(|_| "an unknown peer".to_string());
        if master
            .send(Input::Connected(id, client.clone(), peer))
            .is_err()
        {
            return;
        }
        tokio::spawn(connection(id, stream, master.clone(), rx, client));
    }
}

/// Lines longer than this are decoded on a blocking thread, so that no
/// line holds up the master's event loop (SIGCHLD, respawns, other
/// clients) while it is parsed.
const DECODE_INLINE_MAX: usize = 16 * 1024;

/// Decodes one request line, refusing deep nesting before parsing.
async fn decode_line(bytes: Vec<u8>) -> Option<Request> {
    let inline = bytes.len() <= DECODE_INLINE_MAX;
    let run = move || {
        if protocol::too_deep(&bytes) {
            return None;
        }
        protocol::decode(&bytes).and_then(Request::from_value)
    };
    if inline {
        run()
    } else {
        tokio::task::spawn_blocking(run).await.ok().flatten()
    }
}

async fn connection(
    id: ConnId,
    stream: UnixStream,
    master: UnboundedSender<Input>,
    mut outgoing: UnboundedReceiver<Outgoing>,
    client: ClientHandle,
) {
    let (mut read, mut write) = stream.into_split();
    let reader = async {
        let mut buffer = vec![0u8; 64 * 1024];
        let last = 'reading: loop {
            // Lines are taken out of `unread` in the same step as they are
            // sent (no await between): a re-exec finds each one either
            // still unread or in the master's queue.
            loop {
                let line = locked(&client.unread).peek_line();
                match line {
                    None => break,
                    Some(Line::Complete(bytes)) => {
                        let request = decode_line(bytes).await;
                        let _ = master.send(Input::Line(id, request));
                        locked(&client.unread).consume_line();
                        // One line in the master's queue per client: a
                        // client that floods commands waits its turn.
                        client.handled.notified().await;
                    }
                    Some(Line::TooLong) => break 'reading Input::TooLong(id),
                }
            }
            match read.read(&mut buffer).await {
                Ok(0) | Err(_) => break 'reading Input::ReadDone(id),
                Ok(n) => locked(&client.unread).push(&buffer[..n]),
            }
        };
        // Replies to what was read still go out; the master closes after them.
        let _ = master.send(last);
        std::future::pending::<()>().await;
    };
    let writer = async {
        while let Some(message) = outgoing.recv().await {
            match message {
                Outgoing::Line(line) => {
                    let written = write.write_all(line.as_bytes()).await;
                    client.pending.fetch_sub(line.len(), Ordering::Relaxed);
                    if written.is_err() {
                        return;
                    }
                }
                Outgoing::Close => return,
            }
        }
    };
    tokio::select! {
        _ = reader => {}
        _ = writer => {}
        _ = client.abort.notified() => {}
    }
    let _ = write.shutdown().await;
    let _ = master.send(Input::Closed(id));
}
