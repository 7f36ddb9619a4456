//! Signals the master handles. Each becomes a message to the event loop.

use tokio::signal::unix::{signal, Signal, SignalKind};

/// A signal sent to the master.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MasterSignal {
    /// Smooth upgrade.
    Hup,
    /// USR2 to all workers, stop respawning, exit when they are gone.
    Usr2,
    /// The same as USR2 (workers get USR2, not INT).
    Int,
    /// TERM to all workers, stop respawning, exit when they are gone.
    Term,
    /// QUIT to all workers and exit 1 at once.
    Quit,
    /// Fanned out to the workers (Einhorn itself would die of it).
    Usr1,
    /// A child changed state: reap.
    Chld,
}

/// The installed handlers.
pub struct MasterSignals {
    hup: Signal,
    usr2: Signal,
    int: Signal,
    term: Signal,
    quit: Signal,
    usr1: Signal,
    chld: Signal,
}

impl MasterSignals {
    /// Installs the handlers (needs a tokio runtime).
    pub fn install() -> std::io::Result<MasterSignals> {
        Ok(MasterSignals {
            hup: signal(SignalKind::hangup())?,
            usr2: signal(SignalKind::user_defined2())?,
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            quit: signal(SignalKind::quit())?,
            usr1: signal(SignalKind::user_defined1())?,
            chld: signal(SignalKind::child())?,
        })
    }

    /// The next signal.
    pub async fn recv(&mut self) -> MasterSignal {
        tokio::select! {
            _ = self.chld.recv() => MasterSignal::Chld,
            _ = self.hup.recv() => MasterSignal::Hup,
            _ = self.usr2.recv() => MasterSignal::Usr2,
            _ = self.int.recv() => MasterSignal::Int,
            _ = self.term.recv() => MasterSignal::Term,
            _ = self.quit.recv() => MasterSignal::Quit,
            _ = self.usr1.recv() => MasterSignal::Usr1,
        }
    }
}
