//! The development loop end to end: `einhorn-sim -n 2 -m manual -b ... --
//! baseplate-serve fixtures/example.ini`, with an upgrade and a shutdown.

mod common;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use einhorn_sim::events::{Event, Record};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

fn acked_pids(events: &[Record]) -> Vec<i64> {
    events
        .iter()
        .filter_map(|r| match r.event {
            Event::Ack { pid } => Some(i64::from(pid)),
            _ => None,
        })
        .collect()
}

/// The exit statuses of the workers that have exited, by pid.
fn exits(events: &[Record]) -> Vec<(i64, Option<i32>)> {
    events
        .iter()
        .filter_map(|r| match r.event {
            Event::Exit { pid, status, .. } => Some((i64::from(pid), status)),
            _ => None,
        })
        .collect()
}

#[test]
fn baseplate_serve_workers_under_einhorn_sim() {
    let dir = TempDir::new();
    let events_path = dir.path().join("events.jsonl");
    let socket = dir.path().join("cmd.sock");
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/example.ini");
    let child = sim_command(dir.path())
        .args(["-k", "-n", "2", "-m", "manual", "-b", "127.0.0.1:0,r", "--"])
        // A bare name: not on this PATH, so found next to einhorn-sim.
        .arg("baseplate-serve")
        .arg(fixture)
        .env("PATH", "/usr/bin:/bin")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Run with -k: when the master is killed, its workers get SIGUSR2.
    let mut master = KillOnDrop(child);
    let port = wait_events(&events_path, sim_port);
    let first = wait_events(&events_path, |e| {
        let acked = acked_pids(e);
        (acked.len() == 2).then_some(acked)
    });
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));

    // Both workers serve the master's socket.
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + WAIT;
    while seen.len() < 2 {
        assert!(Instant::now() < deadline, "only {seen:?} answered");
        let body = get(addr, "/health").text();
        let value: serde_json::Value = serde_json::from_str(&body).unwrap();
        seen.insert(value["pid"].as_i64().unwrap());
    }
    assert_eq!(seen, first.iter().copied().collect());

    // A smooth upgrade through einhornsh replaces both.
    let output = Command::new(workspace_binary("einhornsh"))
        .arg("-d")
        .arg(&socket)
        .args(["-e", "upgrade"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.ends_with("Upgrade done\n"), "{stdout}");
    let replaced = wait_events(&events_path, |e| {
        let exits = exits(e);
        let old_gone = first.iter().all(|p| exits.iter().any(|(pid, _)| pid == p));
        old_gone.then_some(exits)
    });
    for (pid, status) in replaced {
        assert_eq!(
            status,
            Some(0),
            "old worker {pid} exits cleanly after SIGUSR2"
        );
    }
    assert_eq!(get(addr, "/").status, 200);

    // SIGTERM to the master: TERM to the workers, graceful exits, master exits 0.
    kill(Pid::from_raw(master.0.id() as i32), Signal::SIGTERM).unwrap();
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = master.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "einhorn-sim did not exit");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(status.code(), Some(0));
    let all = events(&events_path);
    let exits = exits(&all);
    assert_eq!(exits.len(), 4, "{all:?}");
    assert!(exits.iter().all(|(_, s)| *s == Some(0)), "{exits:?}");
}

/// `einhorn-sim -n 4 -- baseplate-serve --bind ADDR app.ini`, as a new user
/// types it: no `-b`, the default (timer) ACK mode. Four workers share the
/// port and answer, and the master logs no ERROR.
#[test]
fn the_development_command_as_users_type_it() {
    let dir = TempDir::new();
    let events_path = dir.path().join("events.jsonl");
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/example.ini");
    // A free port for all four workers to share.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(workspace_binary("einhorn-sim"))
        .arg("-d")
        .arg(dir.path().join("cmd.sock"))
        .arg("--events")
        .arg(&events_path)
        .args(["-n", "4", "--"])
        .arg(binary())
        .arg("--bind")
        .arg(format!("127.0.0.1:{port}"))
        .arg(fixture)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let collected = std::sync::Arc::clone(&log);
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let mut log = collected.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    });
    // No -k, as users type it: the guard stops the master with SIGTERM.
    let _master = TermOnDrop(child);
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let started = Instant::now();
    let mut seen = BTreeSet::new();
    while seen.len() < 4 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "only {seen:?} answered within 5 s; master log:\n{}",
            log.lock().unwrap()
        );
        if let Ok(pid) = health_pid(addr) {
            seen.insert(pid);
        }
    }
    // Every worker ACKed at once (manual ACK in timer mode).
    wait_events(&events_path, |e| (acked_pids(e).len() >= 4).then_some(()));
    let log = log.lock().unwrap().clone();
    assert!(!log.contains("ERROR"), "the master logged an ERROR:\n{log}");
    assert!(log.contains("No -b given"), "{log}");
}
