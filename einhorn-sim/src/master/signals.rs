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
    streams: Vec<(MasterSignal, Signal)>,
}

impl MasterSignals {
    /// Installs handlers for every signal the master reacts to (needs a
    /// tokio runtime).
    pub fn install() -> std::io::Result<MasterSignals> {
        Self::install_kinds(&[
            (MasterSignal::Chld, SignalKind::child()),
            (MasterSignal::Hup, SignalKind::hangup()),
            (MasterSignal::Usr2, SignalKind::user_defined2()),
            (MasterSignal::Int, SignalKind::interrupt()),
            (MasterSignal::Term, SignalKind::terminate()),
            (MasterSignal::Quit, SignalKind::quit()),
            (MasterSignal::Usr1, SignalKind::user_defined1()),
        ])
    }

    /// Watches only SIGCHLD, for a master embedded in another program that
    /// keeps its own signal handling.
    pub fn children_only() -> std::io::Result<MasterSignals> {
        Self::install_kinds(&[(MasterSignal::Chld, SignalKind::child())])
    }

    fn install_kinds(kinds: &[(MasterSignal, SignalKind)]) -> std::io::Result<MasterSignals> {
        let streams = kinds
            .iter()
            .map(|(name, kind)| signal(*kind).map(|s| (*name, s)))
            .collect::<std::io::Result<_>>()?;
        Ok(MasterSignals { streams })
    }

    /// The next signal.
    pub async fn recv(&mut self) -> MasterSignal {
        std::future::poll_fn(|cx| {
            for (name, stream) in &mut self.streams {
                if stream.poll_recv(cx).is_ready() {
                    return std::task::Poll::Ready(*name);
                }
            }
            std::task::Poll::Pending
        })
        .await
    }
}
