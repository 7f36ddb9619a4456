//! The signals `baseplate-serve` reacts to: SIGTERM, SIGINT and SIGUSR2
//! shut down gracefully, SIGUSR1 dumps what the server is doing, SIGHUP
//! restarts in place.

use std::io;

use tokio::signal::unix::{signal, Signal, SignalKind};

/// What a received signal asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SignalEvent {
    /// Shut down gracefully; the name is the signal's (`SIGTERM`).
    Shutdown(&'static str),
    /// Log a report of connections and requests (SIGUSR1).
    Dump,
    /// Restart in place, as a `--reload` change does (SIGHUP).
    Restart,
}

/// The installed handlers. Installing them replaces the default actions, so
/// these signals no longer kill the process.
pub(crate) struct Signals {
    term: Signal,
    int: Signal,
    usr2: Signal,
    usr1: Signal,
    hup: Signal,
}

impl Signals {
    /// Installs the handlers; needs a tokio runtime.
    pub(crate) fn install() -> io::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            usr2: signal(SignalKind::user_defined2())?,
            usr1: signal(SignalKind::user_defined1())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// Waits for the next signal.
    pub(crate) async fn recv(&mut self) -> SignalEvent {
        tokio::select! {
            _ = self.term.recv() => SignalEvent::Shutdown("SIGTERM"),
            _ = self.int.recv() => SignalEvent::Shutdown("SIGINT"),
            _ = self.usr2.recv() => SignalEvent::Shutdown("SIGUSR2"),
            _ = self.usr1.recv() => SignalEvent::Dump,
            _ = self.hup.recv() => SignalEvent::Restart,
        }
    }
}
