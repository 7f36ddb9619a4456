//! The shutdown sequence and accept loop every server shares: accept under
//! the connection limit, and on a shutdown trigger (a [`Control`] from the
//! process shell, the embedding program's shutdown future, a `--reload`
//! change) drain, close the listener, let connections finish for up to
//! `stop_timeout`, abort the rest, then return. The core knows no signals:
//! the shell (`signals.rs`) maps them onto [`Control`]s.

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tracing::{debug, error, info, warn};

use super::listener::Listener;
use super::shutdown::{self, Shutdown};
use super::tracker::Tracker;
use super::{ConnectionHandler, ServerOptions};
use crate::health::Health;

/// Why serving stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Running,
    Shutdown,
    Reload,
    /// A second shutdown signal: stop waiting for anything.
    Abort,
}

/// How [`run`] ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Shut down gracefully: the process may exit 0.
    Stopped,
    /// A second shutdown signal came during the shutdown: connections still
    /// open were abandoned. The process should exit 1.
    Interrupted,
    /// `--reload` saw a change, or SIGHUP came: connections are drained,
    /// and the listener is still open, to be passed to the next run.
    Reload(Listener),
}

/// A future the embedding program completes to shut the server down.
pub(crate) type ShutdownFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The files that changed (`--reload`), shared with the process shell: a
/// run waits on it, and the run after it (or the shell, between runs) goes
/// on where it left off.
pub(crate) type ReloadTrigger = Arc<tokio::sync::Mutex<UnboundedReceiver<PathBuf>>>;

/// What the process shell asks of a running server (it maps signals onto
/// these; an in-process server gets none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Control {
    /// Shut down gracefully; the name says what asked (`SIGTERM`). A second
    /// one during the shutdown abandons what is left.
    Shutdown(&'static str),
    /// Log a report of connections and requests (at most one a second).
    Dump,
    /// Drain, keep the listener open, and return it for the next run.
    Restart,
}

/// The [`Control`]s of one run, in the order they came.
pub(crate) type Controls = UnboundedReceiver<Control>;

/// What may stop a run.
pub(crate) struct Triggers {
    /// The process shell's controls, if any.
    pub controls: Option<Controls>,
    /// With `--reload`: the files that changed.
    pub reload: Option<ReloadTrigger>,
    /// The embedding program's shutdown, a graceful one like SIGTERM.
    pub shutdown: ShutdownFuture,
}

/// Serves connections from `listener` with `handler` until a trigger, then
/// shuts down gracefully. Connection tasks still running after
/// `stop_timeout` are aborted, so nothing outlives the run in the caller's
/// runtime.
pub(crate) async fn run<H: ConnectionHandler>(
    listener: Listener,
    handler: H,
    options: &ServerOptions,
    tracker: Tracker,
    health: Health,
    triggers: Triggers,
) -> Outcome {
    let (stop_tx, mut stop_rx) = watch::channel(Stop::Running);
    let stop_tx = Arc::new(stop_tx);
    let mut watchers = JoinSet::new();
    if let Some(controls) = triggers.controls {
        watchers.spawn(watch_controls(
            controls,
            tracker.clone(),
            Arc::clone(&stop_tx),
        ));
    }
    {
        let stop = Arc::clone(&stop_tx);
        let shutdown = triggers.shutdown;
        watchers.spawn(async move {
            shutdown.await;
            if *stop.borrow() == Stop::Running {
                info!("Shutdown triggered by the embedding program.");
                stop.send_replace(Stop::Shutdown);
            }
        });
    }
    if let Some(changes) = triggers.reload {
        let stop = Arc::clone(&stop_tx);
        watchers.spawn(async move {
            if let Some(path) = changes.lock().await.recv().await {
                if *stop.borrow() == Stop::Running {
                    info!("Reloading, {} changed", path.display());
                    stop.send_replace(Stop::Reload);
                }
            }
        });
    }

    let (trigger, shutdown) = shutdown::channel();
    let limit = options.max_concurrency.map(|n| Arc::new(Semaphore::new(n)));
    let acceptor = tokio::spawn(accept_loop(
        listener,
        handler,
        limit,
        tracker.clone(),
        shutdown,
    ));

    let reason = stop_rx
        .wait_for(|&stop| stop != Stop::Running)
        .await
        .map_or(Stop::Shutdown, |stop| *stop);
    let mut abort = stop_rx.clone();
    let aborted = async move {
        let _ = abort.wait_for(|&stop| stop == Stop::Abort).await;
    };
    tokio::pin!(aborted);
    // Set once `aborted` has completed (it must not be polled again).
    let mut interrupted = false;
    if reason == Stop::Shutdown {
        // Readiness fails from now on, so that load balancers stop routing
        // here while the listener is still open (during drain_time).
        health.start_shutdown();
    }
    if reason == Stop::Shutdown && !options.drain_time.is_zero() {
        info!(
            "Draining inbound requests for {}...",
            seconds(options.drain_time)
        );
        tokio::select! {
            _ = tokio::time::sleep(options.drain_time) => {}
            _ = &mut aborted => interrupted = true,
        }
    }
    trigger.trigger();
    // The accept loop hands the listener and its connections back when it
    // returns. A reload keeps the listener open, so clients queue in the
    // backlog meanwhile.
    let (listener, mut connections) = match acceptor.await {
        Ok((listener, connections)) => (Some(listener), connections),
        Err(_) => (None, JoinSet::new()),
    };
    let kept = match reason {
        Stop::Reload => listener,
        _ => {
            drop(listener);
            None
        }
    };
    info!(
        "Gracefully shutting down: {}, waiting up to {} for {} open connection(s)",
        if kept.is_some() {
            "not accepting (the listener stays open for the reload)"
        } else {
            "listener closed"
        },
        seconds(options.stop_timeout),
        tracker.open_connections()
    );
    if !interrupted {
        let all_done = async { while connections.join_next().await.is_some() {} };
        tokio::select! {
            finished = tokio::time::timeout(options.stop_timeout, all_done) => {
                if finished.is_err() {
                    warn!(
                        "{} connection(s) still open after stop_timeout ({}); closing them",
                        tracker.open_connections(),
                        seconds(options.stop_timeout)
                    );
                }
            }
            _ = &mut aborted => interrupted = true,
        }
    }
    // Dropping the set aborts what is left; the watchers end with the run.
    drop(connections);
    drop(watchers);
    if interrupted {
        return Outcome::Interrupted;
    }
    // A SIGTERM, SIGINT or SIGUSR2 during a restart's drain wins: the
    // process exits rather than run again (and serve on past a
    // supervisor's stop).
    let kept = match kept {
        Some(_) if *stop_rx.borrow() == Stop::Shutdown => {
            info!("A shutdown was asked for during the restart: exiting instead of restarting");
            None
        }
        kept => kept,
    };
    match kept {
        Some(listener) => {
            info!("Handing the listener to the new process");
            Outcome::Reload(listener)
        }
        None => {
            info!("Exiting");
            Outcome::Stopped
        }
    }
}

fn seconds(d: Duration) -> String {
    format!("{:.3}s", d.as_secs_f64())
}

/// The least time between two SIGUSR1 reports: requests in between are
/// answered by one report at the end of the interval.
const DUMP_INTERVAL: Duration = Duration::from_secs(1);

/// Reacts to the shell's controls for the whole run.
async fn watch_controls(mut controls: Controls, tracker: Tracker, stop: Arc<watch::Sender<Stop>>) {
    let mut last_dump: Option<Instant> = None;
    // A report asked for within DUMP_INTERVAL of the last one, due then.
    let mut dump_due: Option<Instant> = None;
    loop {
        let control = match dump_due {
            Some(due) => tokio::select! {
                control = controls.recv() => control,
                _ = tokio::time::sleep_until(due.into()) => {
                    dump_due = None;
                    last_dump = Some(Instant::now());
                    dump(&tracker);
                    continue;
                }
            },
            None => controls.recv().await,
        };
        // The shell is gone: no more controls.
        let Some(control) = control else { return };
        match control {
            Control::Dump => {
                let now = Instant::now();
                match last_dump.map(|at| at + DUMP_INTERVAL) {
                    Some(allowed) if allowed > now => {
                        // Coalesced with any other request until then.
                        dump_due.get_or_insert(allowed);
                    }
                    _ => {
                        last_dump = Some(now);
                        dump(&tracker);
                    }
                }
            }
            Control::Restart => {
                // A terminal hangup or a stray `kill -HUP` must not drop
                // requests: drain, keep the socket, and run again.
                if *stop.borrow() == Stop::Running {
                    info!("Received SIGHUP: restarting in place (same pid, the listening socket kept open)");
                    stop.send_replace(Stop::Reload);
                }
            }
            Control::Shutdown(name) => {
                if matches!(*stop.borrow(), Stop::Shutdown | Stop::Abort) {
                    error!("Received {name} again during shutdown; exiting now with status 1");
                    stop.send_replace(Stop::Abort);
                    continue;
                }
                // A shutdown during a reload's drain wins: no new process.
                info!(signal = name, "Shutdown triggered.");
                stop.send_replace(Stop::Shutdown);
            }
        }
    }
}

/// The SIGUSR1 report: connections, requests and runtime figures.
fn dump(tracker: &Tracker) {
    warn!("Received SIGUSR1, dumping stack trace:");
    for line in tracker.report() {
        warn!("{line}");
    }
    let metrics = tokio::runtime::Handle::current().metrics();
    warn!(
        "runtime: {} worker thread(s), {} task(s) alive, {} task(s) queued",
        metrics.num_workers(),
        metrics.num_alive_tasks(),
        metrics.global_queue_depth()
    );
    #[cfg(all(feature = "taskdump", tokio_unstable))]
    task_dump();
}

/// With the `taskdump` feature (and `--cfg tokio_unstable`): every task's
/// await chain, taken on its own task so serving is never blocked for longer
/// than the dump's timeout.
#[cfg(all(feature = "taskdump", tokio_unstable))]
fn task_dump() {
    let handle = tokio::runtime::Handle::current();
    tokio::spawn(async move {
        match tokio::time::timeout(Duration::from_secs(2), handle.dump()).await {
            Ok(dump) => {
                for (i, task) in dump.tasks().iter().enumerate() {
                    warn!("task {i}:\n{}", task.trace());
                }
            }
            Err(_) => warn!("the task dump did not finish within 2s; skipped"),
        }
    });
}

async fn accept_loop<H: ConnectionHandler>(
    listener: Listener,
    handler: H,
    limit: Option<Arc<Semaphore>>,
    tracker: Tracker,
    mut shutdown: Shutdown,
) -> (Listener, JoinSet<()>) {
    let mut last_warning: Option<Instant> = None;
    // Every connection's task, so that the shutdown can wait for them and
    // abort the ones past stop_timeout.
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        // Take a permit before accepting: at the limit, clients wait in the
        // kernel backlog (where an idle Einhorn sibling can take them).
        let permit = match &limit {
            Some(semaphore) => match Arc::clone(semaphore).try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => {
                    // At the limit: counted once per wait.
                    tracker.limited("max_concurrency");
                    tokio::select! {
                        permit = Arc::clone(semaphore).acquire_owned() => match permit {
                            Ok(permit) => Some(permit),
                            Err(_) => return (listener, connections),
                        },
                        _ = shutdown.wait() => return (listener, connections),
                    }
                }
            },
            None => None,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait() => return (listener, connections),
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                accept_failed(&e, &mut last_warning).await;
                continue;
            }
        };
        debug!(peer = %peer, "accepted connection");
        let connection = tracker.open(peer);
        let served = handler.handle(stream, connection, shutdown.clone());
        connections.spawn(async move {
            served.await;
            drop(permit);
        });
    }
}

/// Errors from accept(): a peer that gave up is nothing; running out of
/// file descriptors or memory is logged (at most once a second) and waited
/// out instead of spinning.
async fn accept_failed(e: &io::Error, last_warning: &mut Option<Instant>) {
    if matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    ) {
        return;
    }
    if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
        warn!("accept failed: {e}; retrying");
        *last_warning = Some(Instant::now());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
}
