//! systemd integration without a wrapper: a listening socket from socket
//! activation (`LISTEN_PID`/`LISTEN_FDS`), and `READY=1` / `STOPPING=1`
//! over `NOTIFY_SOCKET`.

use std::os::fd::RawFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

use tracing::warn;

use crate::error::Error;

/// The first descriptor systemd passes.
const SD_LISTEN_FDS_START: RawFd = 3;

/// The socket systemd passed, if `LISTEN_PID` is this process and
/// `LISTEN_FDS` is at least 1 (only the first is served).
pub(crate) fn listen_fd() -> Result<Option<RawFd>, Error> {
    let Ok(pid) = std::env::var("LISTEN_PID") else {
        return Ok(None);
    };
    let pid: u32 = pid
        .trim()
        .parse()
        .map_err(|_| Error::new(format!("LISTEN_PID={pid:?} is not a process id")))?;
    if pid != std::process::id() {
        return Ok(None);
    }
    let count = std::env::var("LISTEN_FDS").unwrap_or_default();
    let count: u32 = count.trim().parse().map_err(|_| {
        Error::new(format!(
            "LISTEN_FDS={count:?} is not a count of file descriptors"
        ))
    })?;
    if count == 0 {
        return Ok(None);
    }
    if count > 1 {
        warn!("systemd passed {count} sockets; serving the first (fd 3) only");
    }
    Ok(Some(SD_LISTEN_FDS_START))
}

/// Sends a state line (`READY=1`, `STOPPING=1`) to `NOTIFY_SOCKET`, if set.
/// A failure is logged, never fatal.
pub(crate) fn notify(state: &str) {
    let Ok(path) = std::env::var("NOTIFY_SOCKET") else {
        return;
    };
    let sent = UnixDatagram::unbound().and_then(|socket| {
        let address = match path.strip_prefix('@') {
            Some(name) => SocketAddr::from_abstract_name(name.as_bytes())?,
            None => SocketAddr::from_pathname(&path)?,
        };
        socket.send_to_addr(state.as_bytes(), &address)
    });
    if let Err(e) = sent {
        warn!("cannot notify systemd at NOTIFY_SOCKET={path}: {e}");
    }
}
