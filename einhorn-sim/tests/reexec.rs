//! The master re-execs itself on each upgrade and on `reload`, as Einhorn
//! does (its own integration suite's upgrade scenarios, in Rust): the same
//! pid carries on with its sockets, command socket, clients and workers.

mod common;

use std::collections::BTreeSet;
use std::io::Read;

use common::*;
use einhorn_sim::client::Client;
use einhorn_sim::events::Event;
use einhorn_sim::worker_report::WorkerEvent;

fn reexecs(events: &[einhorn_sim::events::Record]) -> Vec<u64> {
    events
        .iter()
        .filter_map(|r| match r.event {
            Event::Reexec { generation } => Some(generation),
            _ => None,
        })
        .collect()
}

/// Who answers on the master's `-b` socket: `PID TAG`.
fn answer(port: u16) -> String {
    let mut reply = String::new();
    std::net::TcpStream::connect(("127.0.0.1", port))
        .unwrap()
        .read_to_string(&mut reply)
        .unwrap();
    reply
}

#[test]
fn an_upgrade_reexecs_the_master_keeping_its_pid_sockets_clients_and_workers() {
    let sim = Sim::start(&["-n", "2", "-m", "manual", "-b", "127.0.0.1:0,r"], &[]);
    let port = sim.ready()[0];
    let old: BTreeSet<i64> = sim.wait_count(is_ack, 2).iter().map(pid_of).collect();
    // A client that connected before the exec, idle through it.
    let mut idle = Client::connect(&sim.socket()).unwrap();
    let replies = sim.command("upgrade", &[]);
    assert_eq!(
        replies.first().map(String::as_str),
        Some("Upgrading smoothly, as commanded")
    );
    assert_eq!(
        replies.last().map(String::as_str),
        Some("Upgrade done"),
        "{replies:?}"
    );
    assert_eq!(reexecs(&sim.events()), [1]);
    let log = sim.wait_log(&[
        "About to re-exec einhorn master as",
        "Using loaded state: 2 workers",
    ]);
    assert!(log.contains("--with-state-fd"), "{log}");
    // The same process: it answers the client it had before the exec.
    let mut said = Vec::new();
    idle.run("ehlo", &[], |reply| {
        said.push(reply["message"].as_str().unwrap_or_default().to_string())
    })
    .unwrap();
    assert!(
        said[0].contains(&format!("Einhorn Master Process {}", sim.child.id())),
        "{said:?}"
    );
    // Its socket, now served by the new workers; the old ones are gone.
    let new: BTreeSet<i64> = sim.wait_for(|events| {
        let live: BTreeSet<i64> = live_acked(events).into_iter().collect();
        (live.len() == 2 && live.is_disjoint(&old)).then_some(live)
    });
    let server: i64 = answer(port)
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(new.contains(&server), "{server} is not one of {new:?}");
    let state = sim.state();
    assert_eq!(state["generation"], serde_norway::Value::from(1));
    assert_eq!(state["version"], serde_norway::Value::from(1));
    // A second upgrade re-execs the re-exec'd master.
    assert_eq!(
        sim.command("upgrade", &[]).last().map(String::as_str),
        Some("Upgrade done")
    );
    assert_eq!(reexecs(&sim.events()), [1, 2]);
}

/// `reload` re-execs too, and changes nothing else.
#[test]
fn reload_reexecs_the_master_and_keeps_the_workers() {
    let sim = Sim::start(&["-n", "2", "-m", "manual"], &[]);
    let workers: BTreeSet<i64> = sim.wait_count(is_ack, 2).iter().map(pid_of).collect();
    assert_eq!(sim.command("reload", &[]), ["Reloading, as commanded"]);
    sim.wait_for(|events| (!reexecs(events).is_empty()).then_some(()));
    let state = sim.state();
    let children: BTreeSet<i64> = state["children"]
        .as_mapping()
        .unwrap()
        .keys()
        .map(|k| k.as_i64().unwrap())
        .collect();
    assert_eq!(children, workers);
    assert_eq!(state["version"], serde_norway::Value::from(0));
    assert_eq!(state["generation"], serde_norway::Value::from(1));
}

/// `--reexec-as` names what to exec: here a wrapper that sets a variable,
/// which the new master, and so its new workers, have (Einhorn's "can
/// update environment variables when the reexec command line says to").
#[test]
fn reexec_as_runs_a_wrapper_whose_environment_reaches_new_workers() {
    let wrapper = format!("env REEXEC_VAR=b {}", sim_binary().display());
    let sim = Sim::start(
        &["-n", "1", "-m", "manual", "--reexec-as", &wrapper],
        &[("TEST_WORKER_WATCH", "REEXEC_VAR"), ("REEXEC_VAR", "a")],
    );
    sim.wait_count(is_ack, 1);
    assert_eq!(
        sim.command("upgrade", &[]).last().map(String::as_str),
        Some("Upgrade done")
    );
    let seen: Vec<Option<String>> = sim
        .reports()
        .into_iter()
        .filter_map(|r| match r.event {
            WorkerEvent::Start { mut watched, .. } => watched.remove("REEXEC_VAR"),
            _ => None,
        })
        .collect();
    assert_eq!(seen, [Some("a".to_string()), Some("b".to_string())]);
}

/// A re-exec that cannot start (the wrapper fails `--upgrade-check`)
/// leaves the master as it was, and the upgrade's client hears why,
/// instead of hanging as Einhorn's does.
#[test]
fn a_reexec_that_cannot_start_leaves_the_master_serving() {
    let sim = Sim::start(
        &["-n", "2", "-m", "manual", "--reexec-as", "/bin/false"],
        &[],
    );
    let workers: BTreeSet<i64> = sim.wait_count(is_ack, 2).iter().map(pid_of).collect();
    let replies = sim.command("upgrade", &[]);
    let last = replies.last().cloned().unwrap_or_default();
    assert!(
        last.starts_with("ERROR: not upgrading: the new master failed --upgrade-check"),
        "{replies:?}"
    );
    sim.wait_log(&["Can not initiate einhorn master reload safely, aborting"]);
    assert!(reexecs(&sim.events()).is_empty());
    let state = sim.state();
    assert_eq!(state["version"], serde_norway::Value::from(0));
    assert_eq!(state["generation"], serde_norway::Value::from(0));
    assert_eq!(
        sim.live_workers().into_iter().collect::<BTreeSet<_>>(),
        workers
    );
    // It still serves commands and upgrades nothing.
    assert!(sim.command("ehlo", &[])[0].starts_with("Welcome"));
}

/// A worker that exits while the master is between processes (here, while
/// a `--reexec-as` shell sleeps before it execs einhorn-sim) is not lost:
/// the new master finds it gone and the pool is whole again (Einhorn's
/// "cleans up if a child dies during the reexec").
#[test]
fn a_worker_that_exits_during_the_reexec_is_cleaned_up() {
    let script = format!(
        "if [ \"$1\" = --with-state-fd ]; then sleep 1; fi; exec {} \"$@\"",
        sim_binary().display()
    );
    let wrapper = format!("sh -c '{script}' sh");
    let sim = Sim::start(
        &["-n", "1", "-m", "manual", "--reexec-as", &wrapper],
        &[("TEST_WORKER_DRAIN_MS", "300")],
    );
    let first = pid_of(&sim.wait_count(is_ack, 1)[0]);
    // It exits 300 ms from now, while the wrapper sleeps.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first as i32),
        nix::sys::signal::Signal::SIGUSR2,
    )
    .unwrap();
    assert_eq!(
        sim.command("upgrade", &[]).last().map(String::as_str),
        Some("Upgrade done")
    );
    sim.wait_for(|events| {
        events
            .iter()
            .any(|r| matches!(r.event, Event::Exit { pid, .. } if i64::from(pid) == first))
            .then_some(())
    });
    let children = sim.state()["children"].as_mapping().unwrap().len();
    assert_eq!(children, 1);
    assert!(!sim.live_workers().contains(&first));
}

/// Five upgrades in a row, each a re-exec of the master, while two clients
/// send requests on fresh connections to the `-b` socket as fast as they
/// can, to workers that drain gracefully: not one request fails, since
/// the socket stays open in the master (and the workers) across every
/// exec.
#[test]
fn reexecs_under_steady_load_fail_no_request() {
    use std::io::Write;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let sim = Sim::start(
        &["-n", "2", "-m", "manual", "-b", "127.0.0.1:0,r"],
        &[("TEST_WORKER_HTTP", "1")],
    );
    let port = sim.ready()[0];
    sim.wait_count(is_ack, 2);
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let (mut answered, mut failed) = (0u64, Vec::new());
                while !stop.load(Ordering::Relaxed) {
                    let mut reply = String::new();
                    let result =
                        std::net::TcpStream::connect(("127.0.0.1", port)).and_then(|mut s| {
                            s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
                            s.read_to_string(&mut reply)
                        });
                    match result {
                        Ok(_) if reply.starts_with("HTTP/1.1 200") => answered += 1,
                        Ok(_) => failed.push(format!("answered {reply:?}")),
                        Err(e) => failed.push(e.to_string()),
                    }
                }
                (answered, failed)
            })
        })
        .collect();
    for generation in 1..=5 {
        let replies = sim.command("upgrade", &[]);
        assert_eq!(
            replies.last().map(String::as_str),
            Some("Upgrade done"),
            "{replies:?}"
        );
        sim.wait_for(|events| reexecs(events).contains(&generation).then_some(()));
    }
    // The load goes on until every old worker has drained and exited.
    sim.wait_for(|events| (live_workers(events).len() == 2).then_some(()));
    stop.store(true, Ordering::Relaxed);
    let (mut answered, mut failed) = (0, Vec::new());
    for client in clients {
        let (a, f) = client.join().unwrap();
        answered += a;
        failed.extend(f);
    }
    eprintln!(
        "5 re-execs under load: {answered} connections answered, {} failed",
        failed.len()
    );
    assert!(answered > 0);
    assert!(
        failed.is_empty(),
        "{} of {} failed: {:?}",
        failed.len(),
        answered + failed.len() as u64,
        &failed[..failed.len().min(5)]
    );
}

/// A SIGTERM sent while the master is between processes (here while a
/// `--reexec-as` wrapper that leaves the signal mask alone sleeps) stays
/// blocked and pending across the exec and reaches the new master, which
/// shuts down gracefully: its workers get SIGTERM and it exits 0. Without
/// the block, the signal's default action would kill the master and
/// orphan its workers.
#[test]
fn a_sigterm_during_the_reexec_reaches_the_new_master() {
    let dir = TempDir::new();
    let wrapper = dir.0.join("wrapper.py");
    let sim_path = sim_binary().display().to_string();
    std::fs::write(
        &wrapper,
        format!(
            "import os, sys, time\n\
             if sys.argv[1:2] == ['--with-state-fd']:\n    time.sleep(1)\n\
             os.execv({sim_path:?}, [{sim_path:?}] + sys.argv[1:])\n"
        ),
    )
    .unwrap();
    let reexec_as = format!("python3 {}", wrapper.display());
    let mut sim = Sim::start(&["-n", "1", "-m", "manual", "--reexec-as", &reexec_as], &[]);
    let worker = pid_of(&sim.wait_count(is_ack, 1)[0]);
    let socket = sim.socket();
    // The upgrade's client, on a thread: its stream ends with the master.
    let upgrade = std::thread::spawn(move || {
        let mut client = Client::connect(&socket).unwrap();
        let _ = client.run("upgrade", &[], |_| {});
    });
    sim.wait_log(&["About to re-exec einhorn master as"]);
    sim.signal(nix::sys::signal::Signal::SIGTERM);
    let status = sim.wait_exit(WAIT);
    assert_eq!(status.code(), Some(0), "{}", sim.log());
    let events = sim.events();
    assert_eq!(reexecs(&events), [1], "{events:?}");
    assert!(
        events.iter().any(|r| matches!(&r.event,
            Event::Signal { pid, signal } if i64::from(*pid) == worker && signal == "SIGTERM")),
        "{events:?}"
    );
    upgrade.join().unwrap();
}

/// `--drop-env-var` takes its names out of the environment the master
/// re-execs itself with, so a `--reexec-as` wrapper may set one again and
/// the new workers see the wrapper's value (Einhorn's "causes an upgrade
/// with --reexec-as to not clobber the new environment").
#[test]
fn drop_env_var_leaves_what_a_reexec_as_wrapper_sets() {
    let wrapper = format!("env VAR2=b {}", sim_binary().display());
    let sim = Sim::start(
        &[
            "-n",
            "1",
            "-m",
            "manual",
            "--drop-env-var",
            "VAR1",
            "--drop-env-var",
            "VAR2",
            "--reexec-as",
            &wrapper,
        ],
        &[
            ("TEST_WORKER_WATCH", "VAR1,VAR2"),
            ("VAR1", "a"),
            ("VAR2", "a"),
        ],
    );
    sim.wait_count(is_ack, 1);
    assert_eq!(
        sim.command("upgrade", &[]).last().map(String::as_str),
        Some("Upgrade done")
    );
    let seen: Vec<(Option<String>, Option<String>)> = sim
        .reports()
        .into_iter()
        .filter_map(|r| match r.event {
            WorkerEvent::Start { mut watched, .. } => Some((
                watched.remove("VAR1").flatten(),
                watched.remove("VAR2").flatten(),
            )),
            _ => None,
        })
        .collect();
    assert_eq!(
        seen,
        [
            (Some("a".to_string()), Some("a".to_string())),
            (None, Some("b".to_string()))
        ]
    );
}

/// `--watch` stops while the master execs itself: a file changed in that
/// window (here, while a `--reexec-as` wrapper waits before it execs
/// einhorn-sim) is found by the new master, which upgrades once more.
#[test]
fn a_change_while_the_master_reexecs_still_upgrades_under_watch() {
    let dir = TempDir::new();
    let gate = Gate::new(&dir);
    let watched = dir.0.join("build.txt");
    std::fs::write(&watched, "build 1\n").unwrap();
    let sim = Sim::start(
        &[
            "-n",
            "1",
            "-m",
            "manual",
            "--reexec-as",
            &gate.wrapper,
            "--watch",
            watched.to_str().unwrap(),
        ],
        &[],
    );
    sim.wait_count(is_ack, 1);
    let socket = sim.socket();
    let upgrade = std::thread::spawn(move || {
        let mut client = Client::connect(&socket).unwrap();
        let _ = client.run("upgrade", &[], |_| {});
    });
    // No master runs now: the old one has exec'd, the new one waits.
    gate.wait_closed();
    std::fs::write(&watched, "build 2, a longer one\n").unwrap();
    gate.open();
    upgrade.join().unwrap();
    let rebuilt = sim.wait_for(|events| {
        events.iter().find_map(|r| match &r.event {
            Event::Rebuilt { paths, .. } => Some(paths.clone()),
            _ => None,
        })
    });
    assert_eq!(rebuilt, [watched.display().to_string()]);
    // The rebuild's upgrade: a second re-exec, and version 2 serving.
    sim.wait_for(|events| (reexecs(events) == [1, 2]).then_some(()));
    sim.wait_for(|events| {
        events
            .iter()
            .any(|r| matches!(r.event, Event::UpgradeDone { version: 2 }))
            .then_some(())
    });
}

/// A `--reexec-as` wrapper that holds the re-exec between the old master
/// and the new one until the test opens it.
struct Gate {
    wrapper: String,
    closed: std::path::PathBuf,
    go: std::path::PathBuf,
}

impl Gate {
    fn new(dir: &TempDir) -> Gate {
        let (closed, go) = (dir.0.join("in-exec"), dir.0.join("go"));
        let script = format!(
            "if [ \"$1\" = --with-state-fd ]; then touch {closed}; \
             while [ ! -e {go} ]; do sleep 0.01; done; fi; exec {sim} \"$@\"",
            closed = closed.display(),
            go = go.display(),
            sim = sim_binary().display()
        );
        Gate {
            wrapper: format!("sh -c '{script}' sh"),
            closed,
            go,
        }
    }

    /// Waits until the old master has exec'd the wrapper.
    fn wait_closed(&self) {
        let deadline = std::time::Instant::now() + WAIT;
        while !self.closed.exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "the master never re-exec'd"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// Lets the wrapper exec the new master.
    fn open(&self) {
        std::fs::write(&self.go, "").unwrap();
    }
}

/// A master of one ACKed worker whose re-exec waits for the gate.
fn gated_master(dir: &TempDir) -> (Sim, Gate) {
    let gate = Gate::new(dir);
    let sim = Sim::start(
        &["-n", "1", "-m", "manual", "--reexec-as", &gate.wrapper],
        &[],
    );
    sim.wait_count(is_ack, 1);
    (sim, gate)
}

/// Everything the master sends until it closes the connection.
fn read_to_end(stream: &mut std::os::unix::net::UnixStream) -> String {
    let mut replies = String::new();
    stream
        .set_read_timeout(Some(WAIT))
        .and_then(|_| stream.read_to_string(&mut replies))
        .unwrap();
    replies
}

/// A client that sent several commands at once, the last one unfinished,
/// loses none of them to the exec (Einhorn keeps its connection buffers
/// across its own): the new master runs the rest of them in order,
/// including the line finished while no master ran.
#[test]
fn pipelined_and_unfinished_commands_survive_the_reexec() {
    use std::io::Write;
    let dir = TempDir::new();
    let (sim, gate) = gated_master(&dir);
    let mut stream = std::os::unix::net::UnixStream::connect(sim.socket()).unwrap();
    let line = |id: u32| format!("{{\"command\":\"ehlo\",\"user\":\"u{id}\"}}\n");
    let first = format!(
        "{{\"command\":\"reload\"}}\n{}{}{}",
        line(1),
        line(2),
        &line(3)[..10]
    );
    stream.write_all(first.as_bytes()).unwrap();
    gate.wait_closed();
    stream.write_all(&line(3).as_bytes()[10..]).unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    gate.open();
    let replies = read_to_end(&mut stream);
    let ehlos: Vec<&str> = replies.lines().filter(|l| l.contains("Welcome")).collect();
    assert_eq!(ehlos.len(), 3, "{replies}");
    for (ehlo, id) in ehlos.iter().zip(1..) {
        assert!(ehlo.contains(&format!("Welcome, u{id}!")), "{replies}");
    }
    assert_eq!(reexecs(&sim.events()), [1]);
}

/// An unfinished line of nearly the 1 MiB a line may have is passed on
/// whole: finished after the exec, it runs.
#[test]
fn a_long_unfinished_line_survives_the_reexec() {
    use std::io::Write;
    let dir = TempDir::new();
    let (sim, gate) = gated_master(&dir);
    let user = "u".repeat(1_000_000);
    let line = format!("{{\"command\":\"ehlo\",\"user\":\"{user}\"}}\n");
    let mut stream = std::os::unix::net::UnixStream::connect(sim.socket()).unwrap();
    stream.write_all(&line.as_bytes()[..999_000]).unwrap();
    let socket = sim.socket();
    let reload =
        std::thread::spawn(move || Client::connect(&socket).unwrap().run("reload", &[], |_| {}));
    gate.wait_closed();
    stream.write_all(&line.as_bytes()[999_000..]).unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    gate.open();
    let replies = read_to_end(&mut stream);
    assert!(
        replies.contains(&format!("Welcome, {user}!")),
        "{}",
        &replies[..replies.len().min(200)]
    );
    let _ = reload.join();
    assert_eq!(reexecs(&sim.events()), [1]);
}
