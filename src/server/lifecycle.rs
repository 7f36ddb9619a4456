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
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::{debug, error, info, warn};

use super::listener::Listener;
use super::shutdown::{self, Shutdown, ShutdownTrigger, Stop};
use super::tracker::Tracker;
use super::{ConnectionServer, ServerOptions};
use crate::health::Health;

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

/// Serves connections from `listener` with `server` until a trigger, then
/// shuts down gracefully. Connection tasks still running after
/// `stop_timeout` are aborted, so nothing outlives the run in the caller's
/// runtime.
pub(crate) async fn run<H: ConnectionServer>(
    listener: Listener,
    server: H,
    options: &ServerOptions,
    tracker: Tracker,
    health: Health,
    triggers: Triggers,
) -> Outcome {
    let (trigger, mut shutdown) = shutdown::channel();
    // The watchers end with the run, when the set is dropped.
    let _watchers = watch_triggers(triggers, &tracker, &trigger);
    let limit = options.max_concurrency.map(|n| Arc::new(Semaphore::new(n)));
    let acceptor = tokio::spawn(accept_loop(
        listener,
        server,
        limit,
        tracker.clone(),
        trigger.subscribe(),
    ));

    let reason = shutdown.asked().await;
    let mut aborted = Box::pin(async move { shutdown.aborted().await });
    // Set once `aborted` has completed (it must not be polled again).
    let mut interrupted = false;
    if reason == Stop::Shutdown {
        // Readiness fails from now on, so that load balancers stop routing
        // here while the listener is still open (during drain_time).
        health.start_shutdown();
        if !options.drain_time.is_zero() {
            interrupted = drain(options.drain_time, &mut aborted).await;
        }
    }
    trigger.close();
    // The accept loop hands the listener and its connections back when it
    // returns. A reload keeps the listener open, so clients queue in the
    // backlog meanwhile.
    let (listener, mut connections) = match acceptor.await {
        Ok((listener, connections)) => (Some(listener), connections),
        Err(_) => (None, JoinSet::new()),
    };
    let kept = listener.filter(|_| reason == Stop::Reload);
    announce_close(kept.is_some(), options.stop_timeout, &tracker);
    if !interrupted {
        let finished = finish_connections(&mut connections, options.stop_timeout, &tracker);
        tokio::select! {
            _ = finished => {}
            _ = &mut aborted => interrupted = true,
        }
    }
    // Dropping the set aborts what is left.
    drop(connections);
    if interrupted {
        return Outcome::Interrupted;
    }
    ended(kept, trigger.asked())
}

/// Says that the listener no longer accepts (and whether it stays open
/// for a reload), and how long open connections are given.
fn announce_close(kept: bool, stop_timeout: Duration, tracker: &Tracker) {
    info!(
        "Gracefully shutting down: {}, waiting up to {} for {} open connection(s)",
        match kept {
            true => "not accepting (the listener stays open for the reload)",
            false => "listener closed",
        },
        seconds(stop_timeout),
        tracker.open_connections()
    );
}

/// Starts a task for each trigger that asks the run to stop.
fn watch_triggers(triggers: Triggers, tracker: &Tracker, trigger: &ShutdownTrigger) -> JoinSet<()> {
    let mut watchers = JoinSet::new();
    if let Some(controls) = triggers.controls {
        watchers.spawn(watch_controls(controls, tracker.clone(), trigger.clone()));
    }
    let stop = trigger.clone();
    let shutdown = triggers.shutdown;
    watchers.spawn(async move {
        shutdown.await;
        if stop.ask_first(Stop::Shutdown) {
            info!("Shutdown triggered by the embedding program.");
        }
    });
    if let Some(changes) = triggers.reload {
        let stop = trigger.clone();
        watchers.spawn(async move {
            if let Some(path) = changes.lock().await.recv().await {
                if stop.asked() == Stop::Running {
                    info!("Reloading, {} changed", path.display());
                    stop.ask(Stop::Reload);
                }
            }
        });
    }
    watchers
}

/// Waits out `drain_time` with the listener open; returns whether a second
/// shutdown cut it short.
async fn drain(drain_time: Duration, aborted: &mut (impl Future<Output = ()> + Unpin)) -> bool {
    info!("Draining inbound requests for {}...", seconds(drain_time));
    tokio::select! {
        _ = tokio::time::sleep(drain_time) => false,
        _ = aborted => true,
    }
}

/// Waits up to `stop_timeout` for the open connections to finish.
async fn finish_connections(
    connections: &mut JoinSet<()>,
    stop_timeout: Duration,
    tracker: &Tracker,
) {
    let all_done = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(stop_timeout, all_done).await.is_err() {
        warn!(
            "{} connection(s) still open after stop_timeout ({}); closing them",
            tracker.open_connections(),
            seconds(stop_timeout)
        );
    }
}

/// How a run that was not interrupted ends: handing `kept` on to the next
/// run, unless a shutdown was asked for meanwhile.
fn ended(kept: Option<Listener>, asked: Stop) -> Outcome {
    // A SIGTERM, SIGINT or SIGUSR2 during a restart's drain wins: the
    // process exits rather than run again (and serve on past a
    // supervisor's stop).
    match kept {
        Some(_) if asked == Stop::Shutdown => {
            info!("A shutdown was asked for during the restart: exiting instead of restarting");
            info!("Exiting");
            Outcome::Stopped
        }
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
async fn watch_controls(mut controls: Controls, tracker: Tracker, stop: ShutdownTrigger) {
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
                if stop.ask_first(Stop::Reload) {
                    info!("Received SIGHUP: restarting in place (same pid, the listening socket kept open)");
                }
            }
            Control::Shutdown(name) => {
                if matches!(stop.asked(), Stop::Shutdown | Stop::Abort) {
                    error!("Received {name} again during shutdown; exiting now with status 1");
                    stop.ask(Stop::Abort);
                    continue;
                }
                // A shutdown during a reload's drain wins: no new process.
                info!(signal = name, "Shutdown triggered.");
                stop.ask(Stop::Shutdown);
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

async fn accept_loop<H: ConnectionServer>(
    listener: Listener,
    server: H,
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
        let served = server.serve(stream, connection, shutdown.clone());
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
