//! The one place listening sockets come from: bound here from `--bind`, or
//! adopted from a file descriptor a supervisor (Einhorn) passed down.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::sys::socket::{
    getsockname, getsockopt, sockopt, AddressFamily, SockaddrLike, SockaddrStorage,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream, UnixListener, UnixSocket, UnixStream};

use super::socket_file::{OwnerLock, SocketFile};
use crate::config::values::Endpoint;
use crate::error::{io_reason, Error};

/// The listen backlog for sockets bound here (the kernel caps it at
/// `net.core.somaxconn`).
const BACKLOG: u32 = 1024;

/// A listening socket, TCP or UNIX.
#[derive(Debug)]
pub(crate) enum Listener {
    /// A TCP socket.
    Tcp(TcpListener),
    /// A UNIX socket, with the guard that removes its file if this process
    /// created it (`None` for an inherited socket).
    Unix(UnixListener, Option<SocketFile>),
}

/// The address a listener is bound to, as logged in `Listening on ADDR`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ListenAddr {
    /// A TCP address.
    Tcp(SocketAddr),
    /// A UNIX socket path (empty for an unnamed socket).
    Unix(PathBuf),
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Tcp(addr) => write!(f, "{addr}"),
            ListenAddr::Unix(path) => write!(f, "{}", path.display()),
        }
    }
}

/// Who is on the other end of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PeerAddr {
    /// A TCP peer.
    Tcp(SocketAddr),
    /// A UNIX socket peer (they are normally unnamed).
    Unix,
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerAddr::Tcp(addr) => write!(f, "{addr}"),
            PeerAddr::Unix => f.write_str("unix"),
        }
    }
}

impl Listener {
    /// Binds `endpoint` with SO_REUSEADDR and a backlog of 1024. A UNIX socket
    /// file that nobody listens on any more is removed first.
    pub(crate) fn bind(endpoint: &Endpoint) -> Result<Listener, Error> {
        match endpoint {
            Endpoint::Tcp { host, port } => {
                let addr = resolve(host, *port, "--bind")?;
                bind_tcp(addr).map_err(|e| {
                    Error::io(format!("cannot listen on {addr} (--bind {endpoint})"), &e)
                })
            }
            Endpoint::Unix(path) => Listener::bind_unix(path, "--bind"),
        }
    }

    /// Binds a UNIX socket at `path` (`what` names the setting it came
    /// from), removing a file that nobody listens on any more first.
    fn bind_unix(path: &Path, what: &str) -> Result<Listener, Error> {
        remove_stale_socket(path, what)?;
        bind_unix(path, None).map_err(|e| unix_bind_error(path, what, &e))
    }

    /// Binds a UNIX socket at `path` shared by sibling processes, one at a
    /// time: if this process can take the path's [`OwnerLock`], which it
    /// then holds for as long as it listens. `None` while another holds it.
    /// Only the holder removes a stale file, so two siblings binding at once
    /// cannot remove each other's (see [`super::socket_file`]).
    pub(crate) fn bind_unix_owned(path: &Path, what: &str) -> Result<Option<Listener>, Error> {
        let lock = OwnerLock::take(path)
            .map_err(|e| Error::io(format!("cannot lock {}.lock ({what})", path.display()), &e))?;
        let Some(lock) = lock else {
            return Ok(None);
        };
        remove_stale_socket(path, what)?;
        bind_unix(path, Some(lock))
            .map(Some)
            .map_err(|e| unix_bind_error(path, what, &e))
    }

    /// Binds `endpoint` so that sibling processes may bind it too (TCP with
    /// `SO_REUSEPORT`): for Einhorn workers whose master passed no socket.
    /// `what` names the setting the endpoint came from, for messages.
    pub(crate) fn bind_shared(endpoint: &Endpoint, what: &str) -> Result<Listener, Error> {
        match endpoint {
            Endpoint::Tcp { host, port } => {
                let addr = resolve(host, *port, what)?;
                bind_tcp_with(addr, true).map_err(|e| {
                    Error::io(format!("cannot listen on {addr} ({what} {endpoint}, shared with sibling workers)"), &e)
                })
            }
            Endpoint::Unix(path) => Listener::bind_unix(path, what),
        }
    }

    /// A TCP listener the caller bound (an in-process server's).
    pub(crate) fn from_std_tcp(listener: std::net::TcpListener) -> Result<Listener, Error> {
        listener
            .set_nonblocking(true)
            .and_then(|_| TcpListener::from_std(listener))
            .map(Listener::Tcp)
            .map_err(|e| Error::io("cannot serve on the listener given", &e))
    }

    /// Takes over an inherited listening socket. `what` names where the fd
    /// number came from (like `EINHORN_FD_0=7`) for error messages.
    pub(crate) fn adopt(fd: RawFd, what: &str) -> Result<Listener, Error> {
        let fail = |reason: String| Error::new(format!("{what}: {reason}"));
        if fd < 0 {
            return Err(fail("not a file descriptor number".into()));
        }
        // SAFETY: only used to query the fd; ownership is taken below after checks.
        let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        fcntl(borrowed, FcntlArg::F_GETFD)
            .map_err(|_| fail(format!("file descriptor {fd} is not open")))?;
        match getsockopt(&borrowed, sockopt::AcceptConn) {
            Ok(true) => {}
            Ok(false) => {
                return Err(fail(format!(
                    "file descriptor {fd} is a socket that is not listening"
                )))
            }
            Err(_) => return Err(fail(format!("file descriptor {fd} is not a socket"))),
        }
        let family = getsockname::<SockaddrStorage>(fd)
            .ok()
            .and_then(|a| a.family());
        // SAFETY: the fd is open, is a listening socket, and was handed to this
        // process to own; nothing else in the process refers to it.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        // Children this process starts must not inherit it.
        fcntl(&owned, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))
            .map_err(|e| fail(format!("cannot set close-on-exec: {e}")))?;
        let registered = match family {
            Some(AddressFamily::Inet) | Some(AddressFamily::Inet6) => {
                let std_listener = std::net::TcpListener::from(owned);
                std_listener
                    .set_nonblocking(true)
                    .and_then(|_| TcpListener::from_std(std_listener))
                    .map(Listener::Tcp)
            }
            Some(AddressFamily::Unix) => {
                let std_listener = std::os::unix::net::UnixListener::from(owned);
                std_listener
                    .set_nonblocking(true)
                    .and_then(|_| UnixListener::from_std(std_listener))
                    .map(|l| Listener::Unix(l, None))
            }
            other => {
                return Err(fail(format!(
                    "file descriptor {fd} has address family {other:?}; expected AF_INET, AF_INET6 or AF_UNIX"
                )))
            }
        };
        registered.map_err(|e| {
            fail(format!(
                "cannot use file descriptor {fd}: {}",
                io_reason(&e)
            ))
        })
    }

    /// The bound address.
    pub(crate) fn local_addr(&self) -> io::Result<ListenAddr> {
        match self {
            Listener::Tcp(l) => l.local_addr().map(ListenAddr::Tcp),
            Listener::Unix(l, _) => {
                let addr = l.local_addr()?;
                Ok(ListenAddr::Unix(
                    addr.as_pathname()
                        .map(Path::to_path_buf)
                        .unwrap_or_default(),
                ))
            }
        }
    }

    /// Accepts one connection.
    pub(crate) async fn accept(&self) -> io::Result<(Stream, PeerAddr)> {
        match self {
            Listener::Tcp(l) => {
                let (stream, peer) = l.accept().await?;
                // Small responses must not wait for Nagle's algorithm.
                let _ = stream.set_nodelay(true);
                Ok((Stream::Tcp(stream), PeerAddr::Tcp(peer)))
            }
            Listener::Unix(l, _) => {
                let (stream, _) = l.accept().await?;
                Ok((Stream::Unix(stream), PeerAddr::Unix))
            }
        }
    }
}

impl Listener {
    /// The socket itself, kept open (and its file kept) for a reload.
    pub(crate) fn into_fd(self) -> io::Result<OwnedFd> {
        match self {
            Listener::Tcp(l) => Ok(OwnedFd::from(l.into_std()?)),
            Listener::Unix(l, mut file) => {
                if let Some(file) = &mut file {
                    file.keep();
                }
                Ok(OwnedFd::from(l.into_std()?))
            }
        }
    }
}

/// Resolves a `--bind` host the way baseplate.py does: IPv4 for names
/// (IPv6 only when the name has no IPv4 address), every address for "".
pub(crate) fn resolve(host: &str, port: u16, what: &str) -> Result<SocketAddr, Error> {
    if host.is_empty() {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port));
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| Error::io(format!("cannot resolve host {host:?} ({what})"), &e))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| Error::new(format!("host {host:?} ({what}) has no addresses")))
}

fn bind_tcp(addr: SocketAddr) -> io::Result<Listener> {
    bind_tcp_with(addr, false)
}

fn bind_tcp_with(addr: SocketAddr, shared: bool) -> io::Result<Listener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    if shared {
        socket.set_reuseport(true)?;
    }
    socket.bind(addr)?;
    Ok(Listener::Tcp(socket.listen(BACKLOG)?))
}

fn bind_unix(path: &Path, lock: Option<OwnerLock>) -> io::Result<Listener> {
    let socket = UnixSocket::new_stream()?;
    socket.bind(path)?;
    let file = SocketFile::bound(path, lock)?;
    Ok(Listener::Unix(socket.listen(BACKLOG)?, Some(file)))
}

fn unix_bind_error(path: &Path, what: &str, e: &io::Error) -> Error {
    Error::io(
        format!("cannot listen on UNIX socket {} ({what})", path.display()),
        e,
    )
}

/// Removes a UNIX socket file left behind by a process that is gone;
/// refuses to touch a live socket or a file that is not a socket.
fn remove_stale_socket(path: &Path, what: &str) -> Result<(), Error> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !meta.file_type().is_socket() {
        return Err(Error::new(format!(
            "cannot listen on {} ({what}): the path exists and is not a socket",
            path.display()
        )));
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(Error::new(format!(
            "cannot listen on {} ({what}): another process is listening on it",
            path.display()
        ))),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => std::fs::remove_file(path)
            .map_err(|e| {
                Error::io(
                    format!("cannot remove stale socket {} ({what})", path.display()),
                    &e,
                )
            }),
        Err(_) => Ok(()),
    }
}

/// An accepted connection, TCP or UNIX.
#[derive(Debug)]
pub(crate) enum Stream {
    /// A TCP connection.
    Tcp(TcpStream),
    /// A UNIX socket connection.
    Unix(UnixStream),
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Stream::Tcp($s) => {
                let $s = Pin::new($s);
                $e
            }
            Stream::Unix($s) => {
                let $s = Pin::new($s);
                $e
            }
        }
    };
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_read(cx, buf))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => s.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => s.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Tcp(s) => s.is_write_vectored(),
            Stream::Unix(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_shutdown(cx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Barrier};

    /// Siblings released into binding one UNIX path at once, over a stale
    /// file each round: one listens, on a file clients reach, and the
    /// others wait (before the owner lock, several "succeeded", each
    /// unlinking the file of the one before).
    #[test]
    fn siblings_binding_one_unix_path_at_once_leave_one_reachable_listener() {
        const SIBLINGS: usize = 6;
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.sock");
        for round in 0..100 {
            // A file left by a worker that died.
            drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
            let start = Arc::new(Barrier::new(SIBLINGS));
            let siblings: Vec<_> = (0..SIBLINGS)
                .map(|_| {
                    let (start, path) = (Arc::clone(&start), path.clone());
                    let runtime = runtime.handle().clone();
                    std::thread::spawn(move || {
                        let _context = runtime.enter();
                        start.wait();
                        Listener::bind_unix_owned(&path, "metrics.bind")
                    })
                })
                .collect();
            let bound: Vec<Listener> = siblings
                .into_iter()
                .filter_map(|s| s.join().unwrap().expect("no sibling fails"))
                .collect();
            assert_eq!(bound.len(), 1, "round {round}: {} listeners", bound.len());
            let Listener::Unix(listener, _) = &bound[0] else {
                unreachable!()
            };
            let _client = std::os::unix::net::UnixStream::connect(&path).unwrap();
            let accepted = runtime.block_on(async {
                tokio::time::timeout(std::time::Duration::from_secs(10), listener.accept()).await
            });
            assert!(
                accepted.is_ok(),
                "round {round}: the file is not the listener's"
            );
            // The listener removes its file; the next round plants a stale one.
            drop(bound);
            assert!(!path.exists());
        }
    }
}
