//! The signals `baseplate-serve` reacts to: SIGTERM, SIGINT and SIGUSR2
//! shut down gracefully, SIGUSR1 dumps what the server is doing, SIGHUP
//! restarts in place.

use std::io;

use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::mpsc;

use crate::server::lifecycle::{Control, Controls};

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

    /// The signals as the server core's [`Control`]s, for one run: SIGTERM,
    /// SIGINT and SIGUSR2 shut down (telling systemd `STOPPING=1` the first
    /// time), SIGUSR1 dumps, SIGHUP restarts. The mapping ends when the run
    /// drops its receiver.
    pub(crate) fn into_controls(mut self) -> Controls {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut stopping = false;
            loop {
                let event = tokio::select! {
                    event = self.recv() => event,
                    _ = tx.closed() => return,
                };
                let control = match event {
                    SignalEvent::Shutdown(name) => {
                        if !stopping {
                            stopping = true;
                            crate::process::systemd::notify("STOPPING=1");
                        }
                        Control::Shutdown(name)
                    }
                    SignalEvent::Dump => Control::Dump,
                    SignalEvent::Restart => Control::Restart,
                };
                if tx.send(control).is_err() {
                    return;
                }
            }
        });
        rx
    }
}
