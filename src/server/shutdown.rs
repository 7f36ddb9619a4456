//! The one shutdown signal of a run, watched by everything that stops: the
//! run itself (what was asked), the accept loop and every connection (when
//! to close), as hyper-util's `GracefulShutdown` and tokio's mini-redis
//! do. The health state is told by the run when a shutdown begins.

use tokio::sync::watch;

use std::time::Duration;

/// How long a connection that has not finished a first request is given,
/// at shutdown, before it counts as idle. A client that just connected has
/// its first request on the wire or unread in the socket; closing now would
/// reset it, and such requests are exactly the ones a deploy must not drop.
pub(crate) const FIRST_REQUEST_GRACE: Duration = Duration::from_millis(250);

/// What has been asked of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// Nothing yet: serving.
    Running,
    /// Shut down gracefully.
    Shutdown,
    /// Drain and return the listener for the next run.
    Reload,
    /// A second shutdown: stop waiting for anything.
    Abort,
}

/// The state every holder watches.
#[derive(Debug, Clone, Copy)]
struct State {
    asked: Stop,
    /// Set once the listener stops accepting: connections finish up.
    closing: bool,
}

/// The sending side, held by the run and the triggers that ask it to stop.
/// Cheap to clone.
#[derive(Clone)]
pub(crate) struct ShutdownTrigger {
    tx: std::sync::Arc<watch::Sender<State>>,
}

/// Tells a task that the server is shutting down. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Shutdown {
    rx: watch::Receiver<State>,
}

/// A connected trigger and token.
pub(crate) fn channel() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(State {
        asked: Stop::Running,
        closing: false,
    });
    let trigger = ShutdownTrigger {
        tx: std::sync::Arc::new(tx),
    };
    (trigger, Shutdown { rx })
}

impl ShutdownTrigger {
    /// What has been asked so far.
    pub(crate) fn asked(&self) -> Stop {
        self.tx.borrow().asked
    }

    /// Asks the run to stop as `stop` says (a later ask replaces it).
    pub(crate) fn ask(&self, stop: Stop) {
        self.tx.send_modify(|state| state.asked = stop);
    }

    /// Asks for `stop` only if nothing was asked before; returns whether it
    /// did.
    pub(crate) fn ask_first(&self, stop: Stop) -> bool {
        self.tx.send_if_modified(|state| {
            let first = state.asked == Stop::Running;
            if first {
                state.asked = stop;
            }
            first
        })
    }

    /// Tells the accept loop and every connection to close; later calls do
    /// nothing.
    pub(crate) fn close(&self) {
        self.tx.send_modify(|state| state.closing = true);
    }

    /// A token for a task to watch.
    pub(crate) fn subscribe(&self) -> Shutdown {
        Shutdown {
            rx: self.tx.subscribe(),
        }
    }
}

impl Shutdown {
    /// Whether closing has started.
    pub(crate) fn is_triggered(&self) -> bool {
        self.rx.borrow().closing
    }

    /// Waits until closing starts (or the trigger is gone).
    pub(crate) async fn wait(&mut self) {
        let _ = self.rx.wait_for(|state| state.closing).await;
    }

    /// Waits until a stop is asked for, and says which (a shutdown if the
    /// trigger is gone).
    pub(crate) async fn asked(&mut self) -> Stop {
        match self.rx.wait_for(|state| state.asked != Stop::Running).await {
            Ok(state) => state.asked,
            Err(_) => Stop::Shutdown,
        }
    }

    /// Waits for a second shutdown that abandons what is left.
    pub(crate) async fn aborted(&mut self) {
        let _ = self.rx.wait_for(|state| state.asked == Stop::Abort).await;
    }
}
