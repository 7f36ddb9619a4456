//! A bounded soak test: 4 baseplate-serve workers behind einhorn-sim under
//! continuous HTTP load, with random SIGKILLs of workers and smooth upgrades
//! every few seconds. The pool always returns to 4 acked workers, upgrades
//! lose no request, and only requests caught by a kill may fail.
//!
//! Ignored by default (about 60 s); `.ci/run` runs it:
//! `cargo test --test soak -- --ignored --nocapture`. SOAK_SECONDS changes
//! the length.

mod common;

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use einhorn_sim::conformance::harness::{acked, live};

/// When one request finished, and whether it succeeded.
type Outcome = (Instant, Result<(), String>);

#[test]
#[ignore = "about 60 s; run by .ci/run"]
fn soak_kills_and_upgrades_under_load() {
    let seconds: u64 = std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let dir = TempDir::new();
    let events_path = dir.path().join("events.jsonl");
    let socket = dir.path().join("cmd.sock");
    let config = dir.write(
        "app.ini",
        "[server:main]\nfactory = baseplate.server.wsgi\nstop_timeout = 10 seconds\n\n[app:main]\nfactory = baseplate.examples.http:make_app\n",
    );
    let master = sim_command(dir.path())
        .args([
            "-k",
            "-q",
            "-n",
            "4",
            "-m",
            "manual",
            "-s",
            "0.2",
            "-b",
            "127.0.0.1:0,r",
            "--",
        ])
        .arg(binary())
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let master = KillOnDrop(master);
    let wait = |what: &str, check: &dyn Fn(&[einhorn_sim::events::Record]) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !check(&events(&events_path)) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    wait("4 acked workers", &|e| acked(e).len() == 4);
    let port = sim_port(&events(&events_path)).unwrap();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));

    // Load: 4 clients, a fresh connection per request; each outcome timed.
    let stop = Arc::new(AtomicBool::new(false));
    let outcomes: Arc<Mutex<Vec<Outcome>>> = Arc::new(Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (stop, outcomes) = (Arc::clone(&stop), Arc::clone(&outcomes));
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let result = std::net::TcpStream::connect(addr)
                        .map_err(|e| e.to_string())
                        .and_then(|mut s| {
                            s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
                            send(
                                &mut s,
                                "GET",
                                "/sleep?ms=20",
                                &[("Connection", "close")],
                                b"",
                            );
                            match read_response(&mut s) {
                                Ok(r) if r.status == 200 => Ok(()),
                                Ok(r) => Err(format!("status {}", r.status)),
                                Err(e) => Err(e.to_string()),
                            }
                        });
                    outcomes.lock().unwrap().push((Instant::now(), result));
                }
            })
        })
        .collect();

    let started = Instant::now();
    let mut kills: Vec<Instant> = Vec::new();
    let mut upgrades = 0;
    let mut round = 0u64;
    while started.elapsed() < Duration::from_secs(seconds) {
        round += 1;
        std::thread::sleep(Duration::from_secs(2));
        if round % 2 == 1 {
            let live = live(&events(&events_path));
            let victim = live[(round as usize / 2) % live.len()];
            kills.push(Instant::now());
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(victim),
                nix::sys::signal::Signal::SIGKILL,
            )
            .unwrap();
        } else {
            let output = Command::new(workspace_binary("einhornsh"))
                .arg("-d")
                .arg(&socket)
                .args(["-e", "upgrade"])
                .output()
                .unwrap();
            assert!(String::from_utf8_lossy(&output.stdout).ends_with("Upgrade done\n"));
            upgrades += 1;
        }
        wait("the pool to return to 4 acked workers", &|e| {
            live(e).len() == 4 && acked(e).len() == 4
        });
    }
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.join().unwrap();
    }
    let outcomes = outcomes.lock().unwrap();
    let failed: Vec<&(Instant, Result<(), String>)> =
        outcomes.iter().filter(|(_, r)| r.is_err()).collect();
    // A request can only fail if a kill caught it: it ended within the
    // kill's window (its 20 ms sleep, plus the time to notice).
    let unexplained: Vec<_> = failed
        .iter()
        .filter(|(at, _)| {
            !kills
                .iter()
                .any(|k| *at >= *k && *at <= *k + Duration::from_secs(2))
        })
        .collect();
    println!(
        "soak: {} s, {} requests, {} failed (all during a kill's window), {} workers killed, {} upgrades",
        seconds,
        outcomes.len(),
        failed.len(),
        kills.len(),
        upgrades
    );
    assert!(
        unexplained.is_empty(),
        "failures outside kill windows: {unexplained:?}"
    );
    assert!(
        failed.len() <= kills.len() * 4,
        "more failures than connections a kill could cut"
    );
    drop(master);
}
