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

/// The signals the master handles, as a set for the signal mask.
fn handled_set() -> nix::sys::signal::SigSet {
    use nix::sys::signal::Signal as S;
    let mut set = nix::sys::signal::SigSet::empty();
    for signal in [
        S::SIGCHLD,
        S::SIGHUP,
        S::SIGUSR2,
        S::SIGINT,
        S::SIGTERM,
        S::SIGQUIT,
        S::SIGUSR1,
    ] {
        set.add(signal);
    }
    set
}

/// Blocks the master's signals in the calling thread. Threads inherit the
/// mask they start with, and a blocked signal stays pending, also across
/// `exec`: so the helper threads the master starts (the runtime's
/// blocking pool, `--watch`) never take one, and a signal sent while the
/// master re-execs itself waits for the new master.
pub fn block() {
    let _ = handled_set().thread_block();
}

/// Unblocks them again, once their handlers are installed.
pub fn unblock() {
    let _ = handled_set().thread_unblock();
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
