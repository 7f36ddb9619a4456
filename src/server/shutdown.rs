//! The shutdown token passed to every connection (as in tokio's mini-redis).

use tokio::sync::watch;

use std::time::Duration;

/// How long a connection that has not finished a first request is given,
/// at shutdown, before it counts as idle. A client that just connected has
/// its first request on the wire or unread in the socket; closing now would
/// reset it, and such requests are exactly the ones a deploy must not drop.
pub(crate) const FIRST_REQUEST_GRACE: Duration = Duration::from_millis(250);

/// Fires the shutdown for everyone holding a [`Shutdown`].
pub(crate) struct ShutdownTrigger {
    tx: watch::Sender<bool>,
}

/// Tells a task that the server is shutting down. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Shutdown {
    rx: watch::Receiver<bool>,
}

/// A connected trigger and token.
pub(crate) fn channel() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger { tx }, Shutdown { rx })
}

impl ShutdownTrigger {
    /// Starts the shutdown; later calls do nothing.
    pub(crate) fn trigger(&self) {
        self.tx.send_replace(true);
    }
}

impl Shutdown {
    /// Whether shutdown has started.
    pub(crate) fn is_triggered(&self) -> bool {
        *self.rx.borrow()
    }

    /// Waits until shutdown starts (or the trigger is gone).
    pub(crate) async fn wait(&mut self) {
        let _ = self.rx.wait_for(|&triggered| triggered).await;
    }
}
