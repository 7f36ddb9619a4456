//! einhorn-sim end to end: real master, real workers, real signals.

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::Signal;

fn bound_port(sim: &Sim) -> u16 {
    sim.ready()[0]
}

/// The fd of the first `-b` socket, from the `ready` event.
fn bound_fd(sim: &Sim) -> i32 {
    sim.wait_for(|events| {
        events.iter().find_map(|r| match &r.event {
            Event::Ready { bound, .. } => bound.first().map(|b| b.fd),
            _ => None,
        })
    })
}

/// The `start` reports of the workers, with their details.
struct Started {
    pid: i32,
    ppid: i32,
    pgid: i32,
    env: std::collections::BTreeMap<String, String>,
    watched: std::collections::BTreeMap<String, Option<String>>,
    fds: Vec<i32>,
}

fn starts(sim: &Sim) -> Vec<Started> {
    sim.reports()
        .into_iter()
        .filter_map(|r| match r.event {
            WorkerEvent::Start {
                ppid,
                pgid,
                env,
                watched,
                fds,
            } => Some(Started {
                pid: r.pid,
                ppid,
                pgid,
                env,
                watched,
                fds,
            }),
            _ => None,
        })
        .collect()
}

#[test]
fn manual_acks_and_the_exact_worker_environment() {
    let sim = Sim::start(&["-n", "3", "-m", "manual", "-b", "127.0.0.1:0,r"], &[]);
    let acks = sim.wait_count(is_ack, 3);
    let fd = bound_fd(&sim);
    let master = sim.child.id() as i32;

    let starts = starts(&sim);
    assert_eq!(
        starts.len(),
        3,
        "raw reports: {:?}",
        std::fs::read_to_string(sim.path("report.jsonl"))
    );
    let mut indexes = BTreeSet::new();
    for start in &starts {
        let env = &start.env;
        let keys: BTreeSet<&str> = env.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            BTreeSet::from([
                "EINHORN_CHILD_INDEX",
                "EINHORN_FD_0",
                "EINHORN_FD_COUNT",
                "EINHORN_MASTER_PID",
                "EINHORN_SOCK_PATH"
            ]),
            "{env:?}"
        );
        assert_eq!(env["EINHORN_MASTER_PID"], master.to_string());
        assert_eq!(env["EINHORN_FD_COUNT"], "1");
        assert_eq!(env["EINHORN_FD_0"], fd.to_string());
        assert_eq!(env["EINHORN_SOCK_PATH"], sim.socket().display().to_string());
        indexes.insert(env["EINHORN_CHILD_INDEX"].clone());
        assert_eq!(start.ppid, master, "workers are real children");
        assert_eq!(
            start.pgid, start.pid,
            "each worker leads its own process group"
        );
        assert_eq!(start.fds, vec![0, 1, 2, fd], "nothing else is inherited");
    }
    assert_eq!(
        indexes,
        BTreeSet::from(["0".to_string(), "1".to_string(), "2".to_string()])
    );
    let acked: BTreeSet<i64> = acks.iter().map(pid_of).collect();
    let started: BTreeSet<i64> = starts.iter().map(|s| i64::from(s.pid)).collect();
    assert_eq!(acked, started);
    sim.wait_log(&["Up to 3 / 3 manual ACKs"]);

    // The workers serve the master's socket.
    let mut reply = String::new();
    std::net::TcpStream::connect(("127.0.0.1", bound_port(&sim)))
        .unwrap()
        .read_to_string(&mut reply)
        .unwrap();
    let server: i64 = reply.split_whitespace().next().unwrap().parse().unwrap();
    assert!(started.contains(&server), "{reply}");
}

#[test]
fn yaml_acks_and_ack_errors() {
    let sim = Sim::start(&["-n", "1", "-m", "manual"], &[("TEST_WORKER_ACK", "yaml")]);
    let ack = sim.wait_count(is_ack, 1);
    let pid = pid_of(&ack[0]);
    // A duplicate, an unknown pid, and a string pid.
    for line in [
        format!("{{\"command\": \"worker:ack\", \"pid\": {pid}}}\n"),
        "{\"command\": \"worker:ack\", \"pid\": 1}\n".to_string(),
        format!("{{\"command\": \"worker:ack\", \"pid\": \"{pid}\"}}\n"),
    ] {
        let mut stream = std::os::unix::net::UnixStream::connect(sim.socket()).unwrap();
        stream.write_all(line.as_bytes()).unwrap();
        let mut rest = String::new();
        stream.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "", "worker:ack gets no reply");
    }
    sim.wait_log(&[
        &format!("ERROR: Pid {pid} already ACKed; ignoring new ACK."),
        "ERROR: Could not find state for PID 1; ignoring ACK.",
        &format!("ERROR: Could not find state for PID \"{pid}\"; ignoring ACK."),
    ]);
}

#[test]
fn timer_acks_for_workers_that_send_none() {
    let sim = Sim::start(&["-n", "1", "-m", "0.2"], &[("TEST_WORKER_ACK", "never")]);
    let spawn = sim.wait_count(is_spawn, 1);
    let ack = sim.wait_count(is_ack, 1);
    let waited = ack[0].time - spawn[0].time;
    assert!(waited >= 0.19, "timer ACK after {waited}s");
    let pid = pid_of(&ack[0]);
    sim.wait_log(&[
        &format!("Worker {pid} has been up for 0.2s, so we are considering it alive."),
        "Up to 1 / 1 timer ACKs",
    ]);
}

#[test]
fn a_manual_ack_in_timer_mode_counts_at_once() {
    // Einhorn logs an ERROR and ignores it; einhorn-sim counts the worker.
    let sim = Sim::start(&["-n", "1", "-m", "5.0"], &[]);
    let spawn = sim.wait_count(is_spawn, 1);
    let ack = sim.wait_count(is_ack, 1);
    let waited = ack[0].time - spawn[0].time;
    assert!(waited < 4.0, "counted only by the timer, after {waited}s");
    let pid = pid_of(&ack[0]);
    let log = sim.wait_log(&[&format!(
        "Received a manual ACK from {pid} in ack mode {{:type=>:timer, :timeout=>5.0}}: counting the worker as up now"
    )]);
    assert!(!log.contains("ERROR"), "{log}");
}

#[test]
fn signal_command_reply_and_delivery() {
    let sim = Sim::start(&["-n", "3", "-m", "manual"], &[]);
    let acks = sim.wait_count(is_ack, 3);
    let mut pids: Vec<i64> = acks.iter().map(pid_of).collect();
    pids.sort();
    let reply = sim.command("signal", &["SIGUSR1"]);
    let mut spawned: Vec<i64> = sim.live_workers();
    spawned.sort();
    let listed: Vec<String> = sim.live_workers().iter().map(i64::to_string).collect();
    assert_eq!(
        reply,
        vec![format!(
            "Successfully sent USR1s to 3 processes: [{}]",
            listed.join(", ")
        )]
    );
    assert_eq!(spawned, pids);
    sim.wait_worker_signal("USR1", &pids.iter().copied().collect());
    assert_eq!(
        sim.command("signal", &["FOO"]),
        vec!["Invalid signal: \"FOO\""]
    );
    assert_eq!(sim.command("signal", &["usr1", "HUP"]).len(), 1);
}

fn run_upgrade(command: &str, smooth: bool) {
    let sim = Sim::start(&["-n", "2", "-m", "manual"], &[]);
    let old: Vec<i64> = sim.wait_count(is_ack, 2).iter().map(pid_of).collect();
    let messages = sim.command(command, &[]);
    let first = if smooth {
        "Upgrading smoothly, as commanded"
    } else {
        "Upgrading fleet, as commanded"
    };
    let kind = if smooth { "smooth" } else { "fleet" };
    assert_eq!(
        messages.first().map(String::as_str),
        Some(first),
        "{messages:?}"
    );
    assert!(
        messages.contains(&format!("Starting {kind} upgrade from version 0...")),
        "{messages:?}"
    );
    assert!(
        messages.contains(&"Upgraded successfully to version 1 (Einhorn 1.1.1).".to_string()),
        "{messages:?}"
    );
    assert_eq!(messages.last().map(String::as_str), Some("Upgrade done"));
    // The old workers are told to go and do.
    let remaining = sim.wait_for(|events| {
        let live = live_workers(events);
        (!live.iter().any(|p| old.contains(p))).then_some(live)
    });
    assert_eq!(remaining.len(), 2);
    let spawns = sim.events();
    for pid in remaining {
        let version = spawns.iter().find_map(|r| match r.event {
            Event::Spawn {
                pid: p, version, ..
            } if i64::from(p) == pid => Some(version),
            _ => None,
        });
        assert_eq!(version, Some(1));
    }
}

#[test]
fn smooth_upgrade_replaces_every_worker() {
    run_upgrade("upgrade", true);
}

#[test]
fn fleet_upgrade_replaces_every_worker() {
    run_upgrade("upgrade_fleet", false);
}

#[test]
fn sighup_is_a_smooth_upgrade() {
    let sim = Sim::start(&["-n", "1", "-m", "manual"], &[]);
    sim.wait_count(is_ack, 1);
    sim.signal(Signal::SIGHUP);
    sim.wait_for(|e| {
        e.iter()
            .any(|r| r.event == Event::UpgradeDone { version: 1 })
            .then_some(())
    });
}

#[test]
fn crash_looping_workers_back_off() {
    let sim = Sim::start(
        &["-n", "1", "-m", "manual", "-s", "0.2"],
        &[("TEST_WORKER_CRASH_BEFORE_ACK", "1")],
    );
    let spawns = sim.wait_count(is_spawn, 4);
    let times: Vec<f64> = spawns.iter().map(|s| s.time).collect();
    let gaps: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    // Einhorn's chain: I(1), then I(d) + I(d+1), with I(d) = 0.2 × 1.5^d.
    let expected = [0.3, 0.3 + 0.45, 0.45 + 0.675];
    for (gap, want) in gaps.iter().zip(expected) {
        assert!(
            (gap - want).abs() < 0.15,
            "gaps {gaps:?}, expected about {expected:?}"
        );
    }
    sim.wait_log(&[
        "(there have been 2 consecutive unacked worker deaths)",
        "before it was ACKed",
    ]);
}

#[test]
fn ack_timeout_abandons_a_bad_upgrade_and_keeps_the_old_workers() {
    let sim = Sim::start(
        &[
            "-n",
            "2",
            "-m",
            "manual",
            "--ack-timeout",
            "0.4",
            "-s",
            "0.1",
        ],
        &[],
    );
    let old: Vec<i64> = sim.wait_count(is_ack, 2).iter().map(pid_of).collect();
    sim.set_worker_config("TEST_WORKER_ACK=never\n");
    let started = Instant::now();
    let messages = sim.command("upgrade", &[]);
    let last = messages.last().unwrap();
    assert!(
        last.starts_with("ERROR: upgrade abandoned:"),
        "{messages:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    let abandoned = sim.wait_count(is_upgrade_abandoned, 1);
    assert!(
        matches!(
            abandoned[0].event,
            Event::UpgradeAbandoned {
                kept_version: 0,
                ..
            }
        ),
        "{abandoned:?}"
    );
    // The new workers are gone, the old ones still run and serve.
    let live = sim.wait_for(|events| {
        let live = live_workers(events);
        (live.len() == 2).then_some(live)
    });
    assert_eq!(
        live.iter().collect::<BTreeSet<_>>(),
        old.iter().collect::<BTreeSet<_>>()
    );
    sim.wait_log(&["did not ACK within 0.4s; killing it."]);
    let state = sim.state();
    assert_eq!(state["version"], serde_norway::Value::from(0));
    assert_eq!(state["upgrading"], serde_norway::Value::from(false));
}

#[test]
fn signal_timeout_kills_a_worker_that_ignores_usr2() {
    let mut sim = Sim::start(
        &["-n", "1", "-m", "manual", "-t", "1"],
        &[("TEST_WORKER_IGNORE_USR2", "1")],
    );
    let pid = pid_of(&sim.wait_count(is_ack, 1)[0]);
    assert_eq!(sim.command("die", &[]), vec!["Einhorn is going down! "]);
    let exit = sim.wait_count(is_exit, 1);
    assert_eq!(pid_of(&exit[0]), pid);
    assert!(
        matches!(&exit[0].event, Event::Exit { signal: Some(s), .. } if s == "SIGKILL"),
        "{exit:?}"
    );
    let signalled = sim.wait_count(is_signal, 1)[0].time;
    let waited = exit[0].time - signalled;
    assert!((0.9..3.0).contains(&waited), "killed {waited}s after USR2");
    sim.wait_log(&["Sending SIGKILL"]);
    assert_eq!(sim.wait_exit(Duration::from_secs(5)).code(), Some(0));
}

fn master_signal_outcome(signal: Signal, worker_signal: &str, status: i32) {
    let mut sim = Sim::start(&["-n", "2", "-m", "manual"], &[]);
    let pids: BTreeSet<i64> = sim.wait_count(is_ack, 2).iter().map(pid_of).collect();
    sim.signal(signal);
    assert_eq!(
        sim.wait_exit(Duration::from_secs(10)).code(),
        Some(status),
        "{}",
        sim.log()
    );
    sim.wait_worker_signal(worker_signal, &pids);
    assert!(!sim.path("cmd.sock").exists() && !sim.path("einhorn.pid").exists());
}

#[test]
fn master_usr2_and_int_send_usr2_and_exit_0() {
    master_signal_outcome(Signal::SIGUSR2, "USR2", 0);
    master_signal_outcome(Signal::SIGINT, "USR2", 0);
}

#[test]
fn master_term_sends_term_and_exits_0() {
    master_signal_outcome(Signal::SIGTERM, "TERM", 0);
}

#[test]
fn master_quit_sends_quit_and_exits_1_at_once() {
    master_signal_outcome(Signal::SIGQUIT, "QUIT", 1);
}

#[test]
fn master_usr1_is_fanned_out_and_the_master_lives() {
    let sim = Sim::start(&["-n", "2", "-m", "manual"], &[]);
    sim.wait_count(is_ack, 2);
    sim.signal(Signal::SIGUSR1);
    let deadline = Instant::now() + WAIT;
    while sim
        .reports()
        .iter()
        .filter(|r| matches!(&r.event, WorkerEvent::Signal { signal } if signal == "USR1"))
        .count()
        < 2
    {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(sim.command("ehlo", &[])[0].starts_with("Welcome, !"));
}

#[test]
fn inc_dec_and_set_workers_converge() {
    let sim = Sim::start(&["-n", "1", "-m", "manual", "-s", "0.05"], &[]);
    sim.wait_count(is_ack, 1);
    assert_eq!(
        sim.command("inc", &[]),
        vec!["Incrementing number of workers from 1 -> 2"]
    );
    sim.wait_for(|e| (live_acked(e).len() == 2).then_some(()));
    assert_eq!(
        sim.command("set_workers", &["4"]),
        vec!["Altering worker count, 2 -> 4. Will spin up additional workers."]
    );
    sim.wait_for(|e| (live_acked(e).len() == 4).then_some(()));
    assert_eq!(sim.command("set_workers", &["4"]), vec![""]);
    assert_eq!(
        sim.command("dec", &[]),
        vec!["Decrementing number of workers from 4 -> 3"]
    );
    sim.wait_for(|e| (live_workers(e).len() == 3).then_some(()));
    assert_eq!(
        sim.command("set_workers", &["1"]),
        vec!["Altering worker count, 3 -> 1. Will gracefully terminate workers."]
    );
    sim.wait_for(|e| (live_workers(e).len() == 1).then_some(()));
    assert_eq!(
        sim.command("dec", &[]),
        vec![format!("Can't decrease number of workers (already at 1).  Run kill {} if you really want to kill einhorn.", sim.child.id())]
    );
    assert_eq!(
        sim.command("set_workers", &["0"]),
        vec!["Invalid count: '0'. Must be an integer in [1,1000)."]
    );
    assert_eq!(
        sim.command("set_workers", &[]),
        vec!["Invalid count: ''. Must be an integer in [1,1000)."]
    );
}

#[test]
fn command_replies_match_einhorn() {
    let sim = Sim::start(&["-n", "1", "-m", "manual", "-c", "demo"], &[]);
    sim.wait_count(is_ack, 1);
    assert_eq!(
        sim.command("ehlo", &[]),
        vec![format!("Welcome, ! You are speaking to Einhorn Master Process {} (demo).\nThis is Einhorn 1.1.1.\n", sim.child.id())]
    );
    assert!(sim.command("nope", &[])[0].starts_with("Unrecognized command: \"nope\"\n\nconfig: "));
    assert!(
        sim.command("help", &[])[0].starts_with("You are speaking to the Einhorn command socket.")
    );
    assert_eq!(sim.command("quieter", &[]), vec!["Verbosity set to 2"]);
    assert_eq!(sim.command("louder", &[]), vec!["Verbosity set to 1"]);
    assert_eq!(sim.command("reload", &[]), vec!["Reloading, as commanded"]);
    assert_eq!(
        sim.command("config", &[]),
        vec!["Must pass in a YAML-encoded hash"]
    );
    assert_eq!(
        sim.command("config", &["[1]"]),
        vec!["Parsed argument is a Array, not a hash"]
    );
    assert_eq!(
        sim.command("config", &["{seconds: 2}"]),
        vec!["Successfully merged in config: {\"seconds\"=>2}"]
    );
    let state = sim.state();
    assert_eq!(state["generation"], serde_norway::Value::from(1));
    // A whole number is an Integer to Ruby, as Einhorn's default 1 is.
    assert_eq!(state["config"]["seconds"], serde_norway::Value::from(2));
    assert_eq!(state["children"].as_mapping().unwrap().len(), 1);
}

#[test]
fn garbage_on_the_command_socket_leaves_the_master_serving() {
    let sim = Sim::start(&["-n", "1", "-m", "manual"], &[]);
    sim.wait_count(is_ack, 1);
    let exchange = |bytes: &[u8]| -> String {
        let mut stream = std::os::unix::net::UnixStream::connect(sim.socket()).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        // The master may hang up before taking it all (an oversized line).
        let _ = stream.write_all(bytes);
        let _ = stream.shutdown(std::net::Shutdown::Write);
        let mut reply = String::new();
        let _ = stream.read_to_string(&mut reply);
        reply
    };
    let cant_parse = "---%0Amessage: Could not parse command%0A\n";
    assert_eq!(exchange(b"not: [valid\n"), cant_parse);
    assert_eq!(exchange(b"\xff\xfe\x00garbage\n"), cant_parse);
    assert_eq!(exchange(b"42\n"), cant_parse);
    assert_eq!(exchange(b"half a line without a newline"), "");
    assert_eq!(
        exchange(b"{\"id\": 1}\n"),
        "---%0Amessage: No \"command\" parameter provided; not sure what you want me to do.%0Arequest_id: 1%0A\n"
    );
    let huge = vec![b'a'; 10 * 1024 * 1024];
    assert_eq!(exchange(&huge), cant_parse);
    // Pipelined requests, answered in order.
    let two = exchange(b"{\"id\": 1, \"command\": \"louder\", \"args\": []}\n{\"id\": 2, \"command\": \"quieter\", \"args\": []}\n");
    assert_eq!(two.lines().count(), 2, "{two}");
    assert!(two.lines().next().unwrap().contains("request_id: 1"));
    // A flood of connections that send nothing and hang up.
    for _ in 0..300 {
        drop(std::os::unix::net::UnixStream::connect(sim.socket()).unwrap());
    }
    assert!(sim.command("ehlo", &[])[0].starts_with("Welcome"));
    assert!(sim.child.id() > 0);
}

/// Runs einhorn-sim with `args` to its end: its status, stdout and stderr.
fn run_sim(args: &[&str]) -> (Option<i32>, String, String) {
    let output = std::process::Command::new(sim_binary())
        .args(args)
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn startup_errors_are_one_line_and_exit_1() {
    for args in [
        vec!["--", "no-such-program-anywhere"],
        vec!["--watch", "/no/such/dir/file", "--", "true"],
    ] {
        let (code, _, stderr) = run_sim(&args);
        assert_eq!(code, Some(1), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"));
    }
}

/// A command line that cannot be used: what is wrong, with a near option
/// for a misspelt one, and status 2. Options end where PROGRAM starts, so
/// an unknown option is never taken for the program (`--nubmer` was once
/// "not found in PATH"), and Einhorn's `-p` is refused for what it is.
#[test]
fn usage_errors_say_what_is_wrong_and_exit_2() {
    for (args, said) in [
        (
            vec!["-n", "zero", "--", "true"],
            "\"zero\" is not a whole number from 1 up",
        ),
        (
            vec!["-n", "0", "--", "true"],
            "\"0\" is not a whole number from 1 up",
        ),
        (
            vec!["-m", "sometimes", "--", "true"],
            "invalid ack-mode \"sometimes\"",
        ),
        (
            vec!["-b", "nope", "--", "true"],
            "bind address must be of the form",
        ),
        (
            vec!["-s", "0", "--", "true"],
            "not a number of seconds greater than 0",
        ),
        (
            vec!["--nubmer", "3", "--", "true"],
            "a similar argument exists: '--number'",
        ),
        (vec!["-p", "server.rb", "true"], "einhorn-sim runs no Ruby"),
    ] {
        let (code, stdout, stderr) = run_sim(&args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
        assert!(stderr.contains(said), "{args:?}: {stderr}");
        assert!(!stderr.contains("in PATH"), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"));
        assert!(stdout.is_empty(), "{args:?}");
    }
}

/// No PROGRAM: Einhorn's `## Usage` on stdout and status 1, as Einhorn's
/// own suite expects, and the missing argument named on stderr.
#[test]
fn no_program_prints_the_usage_and_exits_1() {
    for args in [vec![], vec!["-n", "2"]] {
        let (code, stdout, stderr) = run_sim(&args);
        assert_eq!(code, Some(1), "{args:?}: {stderr}");
        assert!(stdout.starts_with("## Usage\n"), "{args:?}: {stdout}");
        assert!(stdout.contains("einhorn-sim [options] [--] PROGRAM [ARGS...]"));
        assert!(stderr.contains("<PROGRAM>"), "{args:?}: {stderr}");
    }
}

/// `--upgrade-check` (Einhorn's internal check that a master can start)
/// needs no PROGRAM, says what runs and exits 0.
#[test]
fn upgrade_check_exits_0() {
    let (code, _, stderr) = run_sim(&["--upgrade-check"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("INFO: Running einhorn-sim "), "{stderr}");
}

#[test]
fn a_live_command_socket_is_not_stolen() {
    let sim = Sim::start(&["-n", "1", "-m", "manual"], &[]);
    sim.wait_count(is_ack, 1);
    let output = std::process::Command::new(sim_binary())
        .arg("-d")
        .arg(sim.socket())
        .arg("-f")
        .arg(sim.path("other.lock"))
        .args(["--", "true"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "Another process (probably another Einhorn) is listening on the Einhorn command socket"
        ),
        "{stderr}"
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(sim.socket()).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn drop_env_var_applies_to_workers_after_an_upgrade() {
    let sim = Sim::start(
        &["-n", "1", "-m", "manual", "--drop-env-var", "BP_DROPPED"],
        &[
            ("BP_DROPPED", "a"),
            ("BP_KEPT", "k"),
            ("TEST_WORKER_WATCH", "BP_DROPPED,BP_KEPT"),
        ],
    );
    sim.wait_count(is_ack, 1);
    assert_eq!(sim.command("upgrade", &[]).last().unwrap(), "Upgrade done");
    let starts = starts(&sim);
    let watched = |entries: &[(&str, Option<&str>)]| {
        entries
            .iter()
            .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    assert_eq!(
        starts[0].watched,
        watched(&[("BP_DROPPED", Some("a")), ("BP_KEPT", Some("k"))])
    );
    assert_eq!(
        starts[1].watched,
        watched(&[("BP_DROPPED", None), ("BP_KEPT", Some("k"))])
    );
}

#[test]
fn kill_children_on_exit_reaches_workers_when_the_master_dies() {
    let mut sim = Sim::start(&["-n", "2", "-m", "manual", "-k"], &[]);
    let pids: BTreeSet<i64> = sim.wait_count(is_ack, 2).iter().map(pid_of).collect();
    sim.signal(Signal::SIGKILL);
    sim.wait_exit(Duration::from_secs(5));
    sim.wait_worker_signal("USR2", &pids);
}

/// Four ACKed workers, upgraded smoothly with `--max-unacked 2
/// --max-upgrade-additional 1` and the `extra` options, workers ACKing
/// `ack_delay_ms` after start and draining for `drain_ms`.
fn upgrade_within_limits(extra: &[&str], ack_delay_ms: &str, drain_ms: &str) -> Sim {
    let mut args = vec![
        "-n",
        "4",
        "-m",
        "manual",
        "--max-unacked",
        "2",
        "--max-upgrade-additional",
        "1",
    ];
    args.extend_from_slice(extra);
    let sim = Sim::start(
        &args,
        &[
            ("TEST_WORKER_ACK_DELAY_MS", ack_delay_ms),
            ("TEST_WORKER_DRAIN_MS", drain_ms),
        ],
    );
    sim.wait_count(is_ack, 4);
    let messages = sim.command("upgrade", &[]);
    assert_eq!(messages.last().unwrap(), "Upgrade done");
    sim
}

#[test]
fn max_unacked_and_max_upgrade_additional_pace_an_upgrade() {
    // Einhorn's pacing, whose log says why each spawn waits.
    let sim = upgrade_within_limits(&["-s", "0.05", "--einhorn-pacing"], "300", "500");
    sim.wait_log(&[
        "unacked new workers, and max_unacked is 2, so not spinning up a new process.",
        "during upgrade,",
        "Waiting for old workers to exit",
    ]);
    // Never more than 4 + 1 + 1 workers alive at once (Einhorn's check lets one more through).
    let mut alive = 0i32;
    let mut most = 0;
    for record in sim.events() {
        match record.event {
            Event::Spawn { .. } => alive += 1,
            Event::Exit { .. } => alive -= 1,
            _ => {}
        }
        most = most.max(alive);
    }
    assert!(most <= 6, "{most} workers alive at once");
}

/// ACK pacing (the default in manual mode) starts the next worker when the
/// previous new ones ACK, within the same limits.
#[test]
fn ack_pacing_keeps_max_unacked_and_max_upgrade_additional() {
    let sim = upgrade_within_limits(&[], "100", "300");
    let (mut alive, mut most) = (0i32, 0);
    let mut unacked_new = std::collections::BTreeSet::new();
    let mut most_unacked = 0;
    for record in sim.events() {
        match record.event {
            Event::Spawn { pid, version, .. } => {
                alive += 1;
                if version == 1 {
                    unacked_new.insert(pid);
                }
            }
            Event::Ack { pid } => {
                unacked_new.remove(&pid);
            }
            Event::Exit { pid, .. } => {
                alive -= 1;
                unacked_new.remove(&pid);
            }
            Event::RespawnDelay { .. } => panic!("ACK pacing armed a spawn timer"),
            _ => {}
        }
        most = most.max(alive);
        most_unacked = most_unacked.max(unacked_new.len());
    }
    assert!(most <= 6, "{most} workers alive at once");
    assert_eq!(
        most_unacked, 2,
        "at most --max-unacked new workers wait for their ACK"
    );
}

#[test]
fn worker_ping_is_recorded_in_state() {
    let sim = Sim::start(&["-n", "1", "-m", "manual"], &[]);
    let pid = pid_of(&sim.wait_count(is_ack, 1)[0]);
    let mut stream = std::os::unix::net::UnixStream::connect(sim.socket()).unwrap();
    stream
        .write_all(
            format!("---%0Acommand: worker:ping%0Apid: {pid}%0Arequest_id: id-1%0A\n").as_bytes(),
        )
        .unwrap();
    let mut rest = String::new();
    stream.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "", "worker:ping gets no reply");
    let state = sim.state();
    let child = &state["children"][&serde_norway::Value::from(pid)];
    assert_eq!(
        child["pinged_request_id"],
        serde_norway::Value::from("id-1")
    );
    assert!(child["pinged_at"].as_str().unwrap().ends_with("+00:00"));
}

#[test]
fn pool_changing_commands_log_who_sent_them() {
    let sim = Sim::start(&["-n", "1", "-m", "manual"], &[]);
    sim.wait_count(is_ack, 1);
    sim.command("inc", &[]);
    let expected = format!(
        "Command \"inc\" from uid {} gid {} pid {}",
        nix::unistd::getuid(),
        nix::unistd::getgid(),
        std::process::id()
    );
    sim.wait_log(&[&expected]);
    // Read-only commands are not logged: the `dec` after it is, and once its
    // line is read, a line for `state` would have been too.
    sim.command("state", &[]);
    sim.command("dec", &[]);
    let log = sim.wait_log(&[&expected.replace("\"inc\"", "\"dec\"")]);
    assert!(!log.contains("Command \"state\""), "{log}");
}

#[test]
fn command_socket_group_shares_the_socket_with_a_group() {
    use std::os::unix::fs::MetadataExt;
    let gid = nix::unistd::getgid().as_raw().to_string();
    let sim = Sim::start(
        &["-n", "1", "-m", "manual", "--command-socket-group", &gid],
        &[],
    );
    let meta = std::fs::metadata(sim.socket()).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o660);
    assert_eq!(meta.gid().to_string(), gid);
    let output = std::process::Command::new(sim_binary())
        .args(["--command-socket-group", "no-such-group-here", "-d"])
        .arg(sim.path("other.sock"))
        .arg("-f")
        .arg(sim.path("other.lock"))
        .args(["--", "true"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no group \"no-such-group-here\""));
}

/// The state letter in `/proc/PID/stat` and the parent pid, if the process
/// still exists.
fn proc_state(pid: i64) -> Option<(char, i64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

#[test]
fn no_zombies_after_kills_crashes_and_upgrades() {
    let sim = Sim::start(&["-n", "3", "-m", "manual"], &[]);
    let first: Vec<i64> = sim.wait_count(is_ack, 3).iter().map(pid_of).collect();
    let victim = nix::unistd::Pid::from_raw(first[0] as i32);
    nix::sys::signal::kill(victim, Signal::SIGKILL).unwrap();
    sim.wait_for(|e| {
        e.iter()
            .any(|r| matches!(r.event, Event::Exit { pid, .. } if i64::from(pid) == first[0]))
            .then_some(())
    });
    sim.command("upgrade", &[]);
    let events = sim.wait_for(|events| {
        let live = live_acked(events);
        (live.len() == 3 && !live.iter().any(|p| first.contains(p))).then(|| events.to_vec())
    });
    // Every worker that exited has been reaped: its /proc entry is gone.
    let exited: Vec<i64> = events
        .iter()
        .filter(|r| matches!(r.event, Event::Exit { .. }))
        .map(pid_of)
        .collect();
    assert!(exited.len() >= 3, "{exited:?}");
    for pid in &exited {
        assert_eq!(proc_state(*pid), None, "worker {pid} was not reaped");
    }
    // And no child of the master is a zombie.
    let master = i64::from(sim.pid().as_raw());
    let zombies: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i64>().ok())
        .filter(|&pid| proc_state(pid) == Some(('Z', master)))
        .map(|pid| pid.to_string())
        .collect();
    assert!(zombies.is_empty(), "zombie children: {zombies:?}");
}

/// The `state` reply has Einhorn's keys, in Einhorn's shape: a worker
/// that ignores USR2 after an upgrade is a child with `:signaled` a Set
/// holding `USR2`, `-b` is `[host, port, [flags]]`, the default `seconds`
/// an Integer, and every key of Einhorn's state is there.
#[test]
fn the_state_reply_has_einhorns_keys_and_types() {
    let sim = Sim::start(
        &["-n", "1", "-m", "manual", "-b", "127.0.0.1:0,r"],
        &[("TEST_WORKER_IGNORE_USR2", "1")],
    );
    let old = pid_of(&sim.wait_count(is_ack, 1)[0]);
    sim.command("upgrade", &[]);
    sim.wait_for(|events| {
        events
            .iter()
            .any(|r| matches!(&r.event, Event::Signal { pid, signal } if i64::from(*pid) == old && signal == "SIGUSR2"))
            .then_some(())
    });
    let state = sim.state();
    let old_child = &state["children"][&serde_norway::Value::from(old)];
    assert_eq!(old_child["type"], serde_norway::Value::from(":worker"));
    assert_eq!(
        old_child["signaled"],
        serde_norway::Value::from(vec!["USR2"])
    );
    assert_eq!(state["config"]["seconds"], serde_norway::Value::from(1));
    assert_eq!(
        state["bind"],
        serde_norway::Value::from(vec![serde_norway::Value::from(vec![
            serde_norway::Value::from("127.0.0.1"),
            serde_norway::Value::from(0),
            serde_norway::Value::from(vec!["r"]),
        ])])
    );
    for key in [
        "children",
        "config",
        "versions",
        "version",
        "sockets",
        "orig_cmd",
        "bind",
        "bind_fds",
        "bound_ports",
        "cmd",
        "script_name",
        "respawn",
        "upgrading",
        "smooth_upgrade",
        "reloading_for_upgrade",
        "path",
        "cmd_name",
        "verbosity",
        "generation",
        "last_spinup",
        "ack_mode",
        "kill_children_on_exit",
        "command_socket_as_fd",
        "socket_path",
        "pidfile",
        "lockfile",
        "consecutive_deaths_before_ack",
        "last_upgraded",
        "nice",
        "reexec_commandline",
        "drop_environment_variables",
        "signal_timeout",
        "preloaded",
    ] {
        assert!(
            state.as_mapping().unwrap().contains_key(key),
            "no {key} in {state:?}"
        );
    }
    assert_eq!(
        state["ack_mode"]["type"],
        serde_norway::Value::from(":manual")
    );

    // Einhorn's own clients load it with Einhorn::SafeYAML.load and index
    // it with symbols: Ruby's Psych, called as Einhorn calls it.
    let text = sim.command("state", &[]).join("");
    let script = format!(
        "require 'yaml'; require 'set'\n\
         d = YAML.safe_load(STDIN.read, permitted_classes: [Set, Symbol, Time], aliases: true)\n\
         c = d[:state][:children][{old}]\n\
         puts [c[:type].inspect, c[:signaled].to_a.inspect, c[:spinup_time].class, \
         d[:state][:config][:seconds].class, d[:state][:ack_mode][:type].inspect, \
         d[:state][:bind].inspect].join(' | ')"
    );
    match run_with_stdin("ruby", &["-e", &script], &text) {
        Some(out) => assert_eq!(
            out.trim(),
            ":worker | [\"USR2\"] | Time | Integer | :manual | [[\"127.0.0.1\", 0, [\"r\"]]]",
            "{text}"
        ),
        None => println!("SKIPPED the Ruby reader: no ruby on PATH"),
    }
}

/// Runs `program args` with `input` on stdin: its stdout, or `None` when
/// the program is not installed.
fn run_with_stdin(program: &str, args: &[&str], input: &str) -> Option<String> {
    let mut child = std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .ok()?;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{program}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Some(String::from_utf8(output.stdout).unwrap())
}

/// `-g`: each worker gets its own connection to the command socket in
/// `EINHORN_SOCK_FD` (open in the worker, unlike Einhorn's, whose exec'd
/// workers find it closed), and ACKs on it.
#[test]
fn command_socket_as_fd_gives_each_worker_a_connection_to_ack_on() {
    let sim = Sim::start(&["-n", "2", "-m", "manual", "-g"], &[]);
    sim.wait_count(is_ack, 2);
    let started = starts(&sim);
    assert_eq!(started.len(), 2);
    for worker in &started {
        let fd: i32 = worker.env["EINHORN_SOCK_FD"].parse().unwrap();
        assert!(
            worker.fds.contains(&fd),
            "{fd} is not open in {}",
            worker.pid
        );
    }
    assert_eq!(
        sim.state()["command_socket_as_fd"],
        serde_norway::Value::from(true)
    );
}

/// `--nice MASTER:WORKER:RENICE_CMD`: the master reniced with RENICE_CMD,
/// each worker at its level before it execs; `--gc-before-fork` is
/// accepted (it only matters for preloaded Ruby).
#[test]
fn nice_levels_reach_the_master_and_the_workers() {
    let sim = Sim::start(
        &[
            "-n",
            "1",
            "-m",
            "manual",
            "--nice",
            "3:7:/usr/bin/renice",
            "--gc-before-fork",
        ],
        &[],
    );
    let worker = pid_of(&sim.wait_count(is_ack, 1)[0]);
    let nice = |pid: i64| -> i64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        // The 19th field, counted after the command name's parenthesis.
        stat[stat.rfind(')').unwrap() + 2..]
            .split(' ')
            .nth(16)
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(nice(worker), 7);
    sim.wait_log(&["Reniced the master to 3"]);
    assert_eq!(nice(i64::from(sim.child.id())), 3);
    let state = sim.state();
    assert_eq!(state["nice"]["worker"], serde_norway::Value::from(7));
}
