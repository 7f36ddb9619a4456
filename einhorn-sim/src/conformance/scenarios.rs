//! The nine scenarios. Each returns `Ok(what it saw)` or `Err(why it failed)`;
//! every wait in them is bounded.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::harness::{Exited, OthersStopped, Pool};
use super::probe::Probe;
use super::procfs;

/// What every scenario needs.
pub struct Context {
    /// The pool under test.
    pub pool: Pool,
    /// The traffic to send.
    pub probe: Probe,
    /// The pool size.
    pub workers: usize,
    /// The server's stop timeout.
    pub stop_timeout: Duration,
    /// The server's drain time.
    pub drain_time: Duration,
    /// How long a worker may take to ACK.
    pub ack_deadline: Duration,
    /// Ports workers may listen on besides the inherited one (`--allow-port`).
    pub allowed_ports: Vec<u16>,
}

/// A scenario's verdict: what it saw, or why it failed.
pub type Verdict = Result<String, String>;

/// A named scenario.
pub type Scenario = (&'static str, fn(&Context) -> Verdict);

/// The scenarios, in the order they run.
pub const ALL: &[Scenario] = &[
    ("ack", ack),
    ("serves-inherited-socket", serves_inherited_socket),
    ("sigusr1-survives", sigusr1_survives),
    ("drain-on-usr2", drain_on_usr2),
    ("drain-on-term", drain_on_term),
    ("respawn", respawn),
    ("idle-keepalive-closed", idle_keepalive_closed),
    ("no-stray-listeners", no_stray_listeners),
    ("upgrade-under-load", upgrade_under_load),
];

fn secs(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

fn signal(pid: i32, signal: Signal) {
    let _ = kill(Pid::from_raw(pid), signal);
}

/// SIGKILLs a worker that failed to exit, and waits until it is reaped, so
/// the next scenario does not pick it.
fn kill_and_reap(cx: &Context, pid: i32) {
    signal(pid, Signal::SIGKILL);
    let _ = cx.pool.exit_of(pid, Duration::from_secs(5));
}

impl Context {
    /// Waits for the pool to be whole again: `workers` live workers, and
    /// their ACKs if they come within the ACK deadline.
    pub fn settle(&self) -> Result<(), String> {
        let whole = self
            .pool
            .wait(Duration::from_secs(30) + self.ack_deadline, |e| {
                (super::harness::live(e).len() == self.workers).then_some(())
            });
        if whole.is_none() {
            return Err(format!(
                "the pool did not return to {} workers (live: {:?})",
                self.workers,
                self.pool.live()
            ));
        }
        self.pool.settle(self.workers, self.ack_deadline);
        Ok(())
    }

    fn first_worker(&self) -> Result<i32, String> {
        self.pool
            .live()
            .first()
            .copied()
            .ok_or_else(|| "no live worker".to_string())
    }

    /// Waits until `worker` holds the server side of the connection from
    /// `client_port` and has read everything sent on it.
    fn wait_read_by(&self, worker: i32, client_port: u16) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let port = self.pool.addr.port();
        loop {
            // Held by the worker, and the request read: one look at the
            // tables per poll.
            let read = procfs::server_side(port, client_port).is_some_and(|e| {
                e.rx_queue == 0 && procfs::socket_inodes(worker).contains(&e.inode)
            });
            if read {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "worker {worker} did not accept and read the request within 10s"
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

fn ack(cx: &Context) -> Verdict {
    let started = Instant::now();
    if cx.pool.settle(cx.workers, cx.ack_deadline) {
        return Ok(format!(
            "{} workers ACKed with their own pids within {}",
            cx.workers,
            secs(started.elapsed())
        ));
    }
    let live = cx.pool.live();
    let acked = cx.pool.acked();
    let missing: Vec<i32> = live
        .iter()
        .copied()
        .filter(|p| !acked.contains(p))
        .collect();
    Err(format!(
        "{} of {} workers ACKed within {}; no ACK for pid(s) {missing:?}",
        acked.len(),
        live.len(),
        secs(cx.ack_deadline)
    ))
}

fn serves_inherited_socket(cx: &Context) -> Verdict {
    cx.settle()?;
    let workers = cx.pool.live();
    for &worker in &workers {
        let _others = OthersStopped::new(&cx.pool, worker);
        cx.probe
            .request(cx.pool.addr)
            .map_err(|e| format!("worker {worker} did not answer on the inherited socket: {e}"))?;
    }
    Ok(format!(
        "each of {} workers answered on the inherited socket",
        workers.len()
    ))
}

fn sigusr1_survives(cx: &Context) -> Verdict {
    cx.settle()?;
    let workers = cx.pool.live();
    cx.pool.command("signal", &["SIGUSR1"])?;
    // Give a worker that dies of SIGUSR1 the time to do so.
    let died = cx.pool.wait(Duration::from_secs(1), |e| {
        workers.iter().find_map(|&w| Exited::find(e, w))
    });
    if let Some(exit) = died {
        return Err(format!("worker {} exited after SIGUSR1 ({exit})", exit.pid));
    }
    for &worker in &workers {
        let _others = OthersStopped::new(&cx.pool, worker);
        cx.probe
            .request(cx.pool.addr)
            .map_err(|e| format!("worker {worker} stopped serving after SIGUSR1: {e}"))?;
    }
    Ok(format!(
        "{} workers got SIGUSR1 and kept serving",
        workers.len()
    ))
}

/// Sends normal requests in a loop until stopped; counts failures.
struct Load {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicUsize>,
    failures: Arc<Mutex<Vec<String>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(cx: &Context, threads: usize, with_slow: bool) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicUsize::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..threads)
            .map(|i| {
                let (stop, done, failures) =
                    (Arc::clone(&stop), Arc::clone(&done), Arc::clone(&failures));
                let (probe, addr) = (cx.probe.clone(), cx.pool.addr);
                std::thread::spawn(move || {
                    let mut n = i;
                    while !stop.load(Ordering::SeqCst) {
                        n += 1;
                        let slow = with_slow && n % 2 == 0;
                        let result = if slow {
                            probe
                                .start_slow(addr)
                                .and_then(|(mut s, _)| probe.receive(&mut s))
                        } else {
                            probe.request(addr)
                        };
                        done.fetch_add(1, Ordering::SeqCst);
                        if let Err(e) = result {
                            failures.lock().unwrap_or_else(|e| e.into_inner()).push(e);
                        }
                        std::thread::sleep(Duration::from_millis(10));
                    }
                })
            })
            .collect();
        Load {
            stop,
            done,
            failures,
            threads,
        }
    }

    /// Stops the load; returns (requests, failures).
    fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            let _ = t.join();
        }
        let failures = self
            .failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        (self.done.load(Ordering::SeqCst), failures)
    }
}

fn check_load(what: &str, requests: usize, failures: &[String]) -> Result<(), String> {
    match failures.first() {
        None => Ok(()),
        Some(first) => Err(format!(
            "{} of {requests} requests failed {what}; first: {first}",
            failures.len()
        )),
    }
}

fn drain_on(cx: &Context, sig: Signal) -> Verdict {
    cx.settle()?;
    let name = sig.as_str();
    let worker = cx.first_worker()?;
    let others = OthersStopped::new(&cx.pool, worker);
    let (mut slow, client_port) = cx.probe.start_slow(cx.pool.addr)?;
    cx.wait_read_by(worker, client_port)?;
    signal(worker, sig);
    let signalled = Instant::now();
    drop(others);
    // New connections must be served by the other workers meanwhile.
    let load = Load::start(cx, 2, false);
    let answered = cx.probe.receive(&mut slow);
    // Done with it: on a busy machine the reply can be out before the
    // signal lands, leaving the connection idle and kept alive. Closing it
    // keeps this scenario about the request in flight; idle connections
    // are idle-keepalive-closed's.
    drop(slow);
    let limit = cx.stop_timeout + cx.drain_time + Duration::from_secs(1);
    let exit = cx
        .pool
        .exit_of(worker, limit.saturating_sub(signalled.elapsed()));
    let (requests, failures) = load.finish();
    if exit.is_none() {
        kill_and_reap(cx, worker);
    }
    answered.map_err(|e| {
        format!("the slow request in flight on worker {worker} failed after {name}: {e}")
    })?;
    let exit = exit.ok_or_else(|| {
        format!(
            "worker {worker} was still running {} after {name} (stop timeout {} + drain {} + 1s)",
            secs(limit),
            secs(cx.stop_timeout),
            secs(cx.drain_time)
        )
    })?;
    if !exit.is_clean() {
        return Err(format!(
            "worker {worker} exited with {exit} after {name}, not status 0"
        ));
    }
    check_load(
        &format!("while worker {worker} drained"),
        requests,
        &failures,
    )?;
    Ok(format!(
        "the slow request completed; worker {worker} exited 0 {} after {name}; {requests} other requests served",
        secs(signalled.elapsed())
    ))
}

fn drain_on_usr2(cx: &Context) -> Verdict {
    drain_on(cx, Signal::SIGUSR2)
}

fn drain_on_term(cx: &Context) -> Verdict {
    drain_on(cx, Signal::SIGTERM)
}

fn respawn(cx: &Context) -> Verdict {
    cx.settle()?;
    let before = cx.pool.live();
    let victim = cx.first_worker()?;
    signal(victim, Signal::SIGKILL);
    cx.pool
        .exit_of(victim, Duration::from_secs(5))
        .ok_or_else(|| format!("worker {victim} did not die of SIGKILL"))?;
    let load = Load::start(cx, 2, false);
    let started = Instant::now();
    let replacement = cx.pool.wait(cx.ack_deadline + Duration::from_secs(5), |e| {
        let acked = super::harness::acked(e);
        acked.into_iter().find(|p| !before.contains(p))
    });
    let (requests, failures) = load.finish();
    let replacement = replacement.ok_or_else(|| {
        format!(
            "no replacement for worker {victim} ACKed within {}",
            secs(started.elapsed())
        )
    })?;
    check_load("while a worker was replaced", requests, &failures)?;
    Ok(format!(
        "worker {replacement} replaced {victim} and ACKed after {}; {requests} requests served meanwhile",
        secs(started.elapsed())
    ))
}

fn idle_keepalive_closed(cx: &Context) -> Verdict {
    cx.settle()?;
    let worker = cx.first_worker()?;
    let mut idle = Vec::new();
    {
        let _others = OthersStopped::new(&cx.pool, worker);
        for _ in 0..3 {
            let (stream, port) = cx.probe.open_idle(cx.pool.addr)?;
            cx.wait_read_by(worker, port)?;
            idle.push(stream);
        }
    }
    signal(worker, Signal::SIGUSR2);
    let signalled = Instant::now();
    let limit = Duration::from_secs(1) + cx.drain_time;
    let exit = cx.pool.exit_of(worker, limit);
    if exit.is_none() {
        kill_and_reap(cx, worker);
        return Err(format!(
            "worker {worker} had not exited {} after SIGUSR2 with {} idle keep-alive connections open: \
             it should close idle connections at once instead of waiting for its stop timeout",
            secs(limit),
            idle.len()
        ));
    }
    Ok(format!(
        "worker {worker} closed {} idle keep-alive connections and exited {} after SIGUSR2",
        idle.len(),
        secs(signalled.elapsed())
    ))
}

fn no_stray_listeners(cx: &Context) -> Verdict {
    cx.settle()?;
    let inherited = cx.pool.addr.port();
    for worker in cx.pool.live() {
        let extra: Vec<u16> = procfs::listening_ports(worker)
            .into_iter()
            .filter(|p| *p != inherited && !cx.allowed_ports.contains(p))
            .collect();
        if !extra.is_empty() {
            return Err(format!(
                "worker {worker} listens on TCP port(s) {extra:?} besides the inherited {inherited}{}",
                if cx.allowed_ports.is_empty() {
                    " (declare a port the service must open, like a metrics exporter's, with --allow-port)".to_string()
                } else {
                    format!(" and the allowed {:?}", cx.allowed_ports)
                }
            ));
        }
    }
    if cx.allowed_ports.is_empty() {
        Ok(format!(
            "workers listen only on the inherited port {inherited}"
        ))
    } else {
        Ok(format!(
            "workers listen only on the inherited port {inherited} and the allowed {:?}",
            cx.allowed_ports
        ))
    }
}

fn upgrade_under_load(cx: &Context) -> Verdict {
    cx.settle()?;
    let old = cx.pool.live();
    let load = Load::start(cx, 2 * cx.workers, true);
    let started = Instant::now();
    let limit = cx.ack_deadline * cx.workers as u32 + cx.stop_timeout + Duration::from_secs(10);
    let upgraded = upgrade_within(cx, limit);
    let exits = cx.pool.wait(
        cx.stop_timeout + cx.drain_time + Duration::from_secs(5),
        |e| {
            let exits: Vec<Exited> = old.iter().filter_map(|&p| Exited::find(e, p)).collect();
            (exits.len() == old.len()).then_some(exits)
        },
    );
    let (requests, failures) = load.finish();
    upgraded?;
    let exits = exits.ok_or_else(|| {
        let still: Vec<i32> = cx
            .pool
            .live()
            .into_iter()
            .filter(|p| old.contains(p))
            .collect();
        format!("old worker(s) {still:?} were still running after the upgrade")
    })?;
    if let Some(bad) = exits.iter().find(|e| !e.is_clean()) {
        return Err(format!(
            "old worker {} exited with {bad}, not status 0",
            bad.pid
        ));
    }
    check_load("during the upgrade", requests, &failures)?;
    if !cx.pool.settle(cx.workers, cx.ack_deadline) {
        return Err("the new workers did not all ACK".to_string());
    }
    Ok(format!(
        "upgrade done in {}; {requests} requests, 0 failed; {} old workers exited 0",
        secs(started.elapsed()),
        old.len()
    ))
}

fn upgrade_within(cx: &Context, limit: Duration) -> Result<(), String> {
    match cx.pool.command_within("upgrade", &[], Some(limit)) {
        Ok(messages) if messages.last().map(String::as_str) == Some("Upgrade done") => Ok(()),
        Ok(messages) => Err(format!("the upgrade ended with {:?}", messages.last())),
        Err(e) => Err(format!(
            "the upgrade did not finish within {} (do the new workers ACK?): {e}",
            secs(limit)
        )),
    }
}
