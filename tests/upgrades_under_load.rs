//! Smooth upgrades under load, as users run them: `einhorn-sim -n 8 -m
//! manual -b ADDR -- baseplate-serve app.ini`, upgraded with `einhornsh -e
//! upgrade`, or by a rebuild under `--watch`, while a client loop keeps
//! sending requests. Paced by ACKs, the new workers are all serving well
//! within a second and no request fails; a new version that crashes before
//! its ACK costs no old worker.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::*;
use einhorn_sim::events::{Event, Record};

const WORKERS: usize = 8;

/// A running einhorn-sim with its eight workers ACKed.
struct Sim {
    _master: KillOnDrop,
    events: PathBuf,
    socket: PathBuf,
    addr: SocketAddr,
    /// The pids of the first eight workers.
    first: BTreeSet<i32>,
}

/// Writes the worker program: a shell script that execs `body`'s command
/// (so the worker keeps the pid the master spawned). Replaced atomically,
/// as a build that writes a new binary and renames it over the old one.
fn write_program(dir: &TempDir, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.path().join("worker");
    let staged = dir.path().join("worker.new");
    std::fs::write(&staged, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::rename(&staged, &path).unwrap();
    path
}

/// The worker program's body: exec `baseplate-serve` on the example config.
fn serve_body() -> String {
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/example.ini");
    format!("exec '{}' \"$@\" '{fixture}'", binary().display())
}

fn start(dir: &TempDir, extra: &[&str]) -> Sim {
    let program = write_program(dir, &serve_body());
    let events_path = dir.path().join("events.jsonl");
    let socket = dir.path().join("cmd.sock");
    let child = sim_command(dir.path())
        .args(["-k", "-n", "8", "-m", "manual", "-b", "127.0.0.1:0,r"])
        .args(extra)
        .arg("--")
        .arg(&program)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let master = KillOnDrop(child);
    let port = wait_events(&events_path, sim_port);
    let first = wait_events(&events_path, |e| {
        let acked = acked(e);
        (acked.len() == WORKERS).then_some(acked)
    });
    Sim {
        _master: master,
        events: events_path,
        socket,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        first,
    }
}

impl Sim {
    /// No first-generation worker was signaled or exited.
    fn assert_old_untouched(&self) {
        let all = events(&self.events);
        let touched: Vec<&Record> = all
            .iter()
            .filter(|r| matches!(r.event, Event::Signal { .. } | Event::Exit { .. }))
            .filter(|r| r.event.pid().is_some_and(|p| self.first.contains(&p)))
            .collect();
        assert!(
            touched.is_empty(),
            "old workers were signaled or exited: {touched:#?}"
        );
    }

    /// The load loop saw no failure, and a worker of a new build answered.
    fn assert_new_served(&self, (pids, failures): (BTreeSet<i32>, Vec<String>)) {
        assert_eq!(failures, Vec::<String>::new(), "requests failed");
        assert!(
            pids.iter().any(|p| !self.first.contains(p)),
            "no new worker answered"
        );
    }
}

fn einhornsh(socket: &Path, command: &str) -> Output {
    Command::new(workspace_binary("einhornsh"))
        .arg("-d")
        .arg(socket)
        .args(["-e", command])
        .output()
        .unwrap()
}

/// Clients sending `GET /health` on fresh connections, one after another,
/// until stopped; each answer's pid is kept.
struct Load {
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicU64>,
    threads: Vec<JoinHandle<(BTreeSet<i32>, Vec<String>)>>,
}

impl Load {
    fn start(addr: SocketAddr, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicU64::new(0));
        let threads = (0..clients)
            .map(|_| {
                let (stop, answered) = (Arc::clone(&stop), Arc::clone(&answered));
                std::thread::spawn(move || {
                    let (mut pids, mut failures) = (BTreeSet::new(), Vec::new());
                    while !stop.load(Ordering::Relaxed) {
                        match health_pid(addr) {
                            Ok(pid) => {
                                pids.insert(pid);
                                answered.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => failures.push(e),
                        }
                    }
                    (pids, failures)
                })
            })
            .collect();
        Load {
            stop,
            answered,
            threads,
        }
    }

    /// Waits until `n` more requests have been answered.
    fn wait_answers(&self, n: u64) {
        let target = self.answered.load(Ordering::Relaxed) + n;
        let deadline = Instant::now() + WAIT;
        while self.answered.load(Ordering::Relaxed) < target {
            assert!(Instant::now() < deadline, "the load loop stalled");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stops the clients: the pids that answered, and every failure.
    fn finish(self) -> (BTreeSet<i32>, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = (BTreeSet::new(), Vec::new());
        for thread in self.threads {
            let (pids, failures) = thread.join().unwrap();
            all.0.extend(pids);
            all.1.extend(failures);
        }
        all
    }
}

#[test]
fn a_smooth_upgrade_of_8_workers_is_paced_by_acks_and_fails_no_request() {
    let dir = TempDir::new();
    let sim = start(&dir, &[]);
    let load = Load::start(sim.addr, 2);
    load.wait_answers(20);

    let output = einhornsh(&sim.socket, "upgrade");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.ends_with("Upgrade done\n"), "{stdout}");
    assert!(output.status.success(), "{:?}", output.status);
    // Every old worker has exited (drained) and new ones answer.
    wait_events(&sim.events, |e| {
        let exited: BTreeSet<i32> = e
            .iter()
            .filter_map(|r| match r.event {
                Event::Exit { pid, .. } => Some(pid),
                _ => None,
            })
            .collect();
        sim.first.is_subset(&exited).then_some(())
    });
    load.wait_answers(20);
    sim.assert_new_served(load.finish());

    let all = events(&sim.events);
    let at = |kind: fn(&Event) -> bool| {
        all.iter()
            .find(|r| kind(&r.event))
            .map(|r| r.time)
            .unwrap_or_else(|| panic!("no such event: {all:#?}"))
    };
    let took = at(is_upgrade_done) - at(is_upgrade_start);
    eprintln!("smooth upgrade of {WORKERS} workers: {took:.3} s");
    // The target is 0.5 s (benches/run.sh records it); this bound holds on a
    // machine twice as busy.
    assert!(took < 1.0, "the upgrade took {took:.3} s: {all:#?}");
    let new = acked(&all);
    assert_eq!(new.difference(&sim.first).count(), WORKERS, "{all:#?}");
}

#[test]
fn a_new_version_that_crashes_before_its_ack_costs_no_old_worker() {
    let dir = TempDir::new();
    let sim = start(&dir, &["--ack-timeout", "1"]);
    let load = Load::start(sim.addr, 2);
    load.wait_answers(20);

    write_program(&dir, "echo 'broken build' >&2; exit 1");
    let output = einhornsh(&sim.socket, "upgrade");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("upgrade abandoned"), "{stdout}");
    assert_eq!(output.status.code(), Some(3), "{stdout}");
    load.wait_answers(20);
    let (pids, failures) = load.finish();

    assert_eq!(failures, Vec::<String>::new(), "requests failed");
    assert!(pids.is_subset(&sim.first), "{pids:?} vs {:?}", sim.first);
    sim.assert_old_untouched();
    let all = events(&sim.events);
    assert!(
        all.iter()
            .any(|r| matches!(r.event, Event::UpgradeAbandoned { .. })),
        "{all:#?}"
    );
}

/// The time of the `n`th event that `kind` selects (from 1), once it is there.
fn nth_time(path: &Path, kind: fn(&Event) -> bool, n: usize) -> f64 {
    wait_events(path, |e| {
        e.iter()
            .filter(|r| kind(&r.event))
            .nth(n - 1)
            .map(|r| r.time)
    })
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn a_rebuild_under_watch_is_live_within_2_s_and_fails_no_request() {
    let dir = TempDir::new();
    let sim = start(&dir, &["--watch"]);
    let load = Load::start(sim.addr, 2);
    load.wait_answers(20);

    let rebuilt_at = now();
    write_program(&dir, &format!("# build 2\n{}", serve_body()));
    let done = nth_time(&sim.events, is_upgrade_done, 1);
    let all = events(&sim.events);
    assert!(
        all.iter()
            .any(|r| matches!(r.event, Event::Rebuilt { queued: false, .. })),
        "{all:#?}"
    );
    let took = done - rebuilt_at;
    eprintln!("rebuild to upgraded: {took:.3} s");
    assert!(
        took < 2.0,
        "the rebuild took {took:.3} s to go live: {all:#?}"
    );
    load.wait_answers(20);
    sim.assert_new_served(load.finish());
}

#[test]
fn a_broken_build_under_watch_keeps_the_old_workers_until_a_good_one() {
    let dir = TempDir::new();
    let sim = start(&dir, &["--watch"]);
    let load = Load::start(sim.addr, 2);
    load.wait_answers(20);

    write_program(&dir, "echo 'broken build' >&2; exit 1");
    nth_time(&sim.events, is_upgrade_abandoned, 1);
    load.wait_answers(20);
    sim.assert_old_untouched();

    // The fixed build upgrades as usual.
    write_program(&dir, &format!("# build 3\n{}", serve_body()));
    nth_time(&sim.events, is_upgrade_done, 1);
    load.wait_answers(20);
    sim.assert_new_served(load.finish());
}

#[test]
fn a_rebuild_during_an_upgrade_queues_one_more() {
    let dir = TempDir::new();
    let sim = start(&dir, &["--watch"]);
    // Workers that take a second to start: the upgrade lasts a few seconds.
    let slow = |build: u32| format!("# build {build}\nsleep 1\n{}", serve_body());
    write_program(&dir, &slow(2));
    wait_events(&sim.events, |e| {
        e.iter()
            .any(|r| matches!(r.event, Event::UpgradeStart { .. }))
            .then_some(())
    });
    write_program(&dir, &slow(3));
    let queued = wait_events(&sim.events, |e| {
        e.iter()
            .filter_map(|r| match &r.event {
                Event::Rebuilt { queued, .. } => Some(*queued),
                _ => None,
            })
            .nth(1)
    });
    assert!(
        queued,
        "the second rebuild was not queued behind the upgrade"
    );
    let first_done = nth_time(&sim.events, is_upgrade_done, 1);
    let second_start = nth_time(&sim.events, is_upgrade_start, 2);
    nth_time(&sim.events, is_upgrade_done, 2);
    assert!(
        second_start >= first_done,
        "the queued upgrade started before the first was done"
    );
    let starts = events(&sim.events)
        .iter()
        .filter(|r| matches!(r.event, Event::UpgradeStart { .. }))
        .count();
    assert_eq!(starts, 2, "one queued upgrade, not more");
}

/// A build that keeps writing for a while upgrades once, after it has been
/// quiet for `--watch`'s 300 ms, not every 300 ms while it writes.
#[test]
fn a_continuous_write_under_watch_upgrades_once_it_is_quiet() {
    let dir = TempDir::new();
    let sim = start(&dir, &["--watch"]);
    // 1.5 s of writes 50 ms apart: never 300 ms of quiet.
    let started = std::time::Instant::now();
    let mut build = 10;
    while started.elapsed() < Duration::from_millis(1500) {
        build += 1;
        write_program(&dir, &format!("# build {build}\n{}", serve_body()));
        std::thread::sleep(Duration::from_millis(50));
    }
    let last_write = now();
    // Every rebuild up to the one that follows the last write (a writer
    // stalled past 300 ms by a busy machine lets one come earlier; waiting
    // for the first upgrade only could read the events before the last).
    let rebuilt: Vec<f64> = wait_events(&sim.events, |e| {
        let times: Vec<f64> = e
            .iter()
            .filter(|r| matches!(r.event, Event::Rebuilt { .. }))
            .map(|r| r.time)
            .collect();
        times
            .last()
            .is_some_and(|&t| t >= last_write - 0.1)
            .then_some(times)
    });
    // One; two if this machine stalled the writer past 300 ms once.
    assert!(
        (1..=2).contains(&rebuilt.len()),
        "{} rebuilds for {} writes: {rebuilt:?}",
        rebuilt.len(),
        build - 10
    );
}

/// Event selectors: typed, so a misspelt one does not compile.
fn is_upgrade_start(event: &Event) -> bool {
    matches!(event, Event::UpgradeStart { .. })
}

fn is_upgrade_done(event: &Event) -> bool {
    matches!(event, Event::UpgradeDone { .. })
}

fn is_upgrade_abandoned(event: &Event) -> bool {
    matches!(event, Event::UpgradeAbandoned { .. })
}
