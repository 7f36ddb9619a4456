//! The one place that chooses the socket a run serves on.

use std::os::fd::OwnedFd;

use tracing::{debug, warn};

use super::einhorn::Worker;
use super::{reload, systemd};
use crate::config::values::Endpoint;
use crate::error::Error;
use crate::server::listener::Listener;

/// The listening socket for this run. The first source that has one wins:
/// the previous run's socket (a `--reload` or SIGHUP restart), the Einhorn
/// master's, systemd socket activation's, else `--bind`.
pub(crate) fn choose(
    inherited: Option<OwnedFd>,
    worker: Option<&Worker>,
    bind: &Endpoint,
) -> Result<Listener, Error> {
    if let Some(fd) = inherited {
        let raw = reload::release(fd);
        return Listener::adopt(raw, &format!("{}={raw}", reload::LISTEN_FD_VAR));
    }
    if let Some(worker) = worker {
        if let Some(listener) = worker.adopt_listener()? {
            debug!("serving on the socket inherited from Einhorn; --bind is ignored");
            return Ok(listener);
        }
        warn!(
            "running under Einhorn, but the master passed no socket: binding {bind} with \
             SO_REUSEPORT so sibling workers share it. Give the master `-b ADDR` instead: a \
             socket the master holds stays open while workers restart and upgrade, so no \
             connection is ever refused"
        );
        return Listener::bind_shared(bind, "--bind");
    }
    if let Some(fd) = systemd::listen_fd()? {
        debug!("serving on the socket from systemd (LISTEN_FDS); --bind is ignored");
        return Listener::adopt(fd, "LISTEN_FDS (fd 3)");
    }
    Listener::bind(bind)
}
