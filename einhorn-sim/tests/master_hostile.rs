//! Command-socket clients that try to stall the master: deeply nested YAML
//! must not freeze the event loop (workers are still reaped and respawned),
//! and a client that floods commands without reading is cut off while
//! others are answered at once.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

#[test]
fn deeply_nested_yaml_is_refused_and_respawns_go_on() {
    let sim = Sim::start(&["-n", "1", "-m", "manual"], &[]);
    let first = pid_of(&sim.wait_count(is_ack, 1)[0]);
    // 240 KB of nested flow mappings: once 11 s of parsing in the loop.
    let mut line = "{a: ".repeat(60_000).into_bytes();
    line.push(b'\n');
    let mut stream = UnixStream::connect(sim.socket()).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let started = Instant::now();
    stream.write_all(&line).unwrap();
    // Meanwhile a worker dies: it is reaped and replaced.
    kill(Pid::from_raw(first as i32), Signal::SIGKILL).unwrap();
    let mut reply = [0u8; 256];
    let n = stream.read(&mut reply).unwrap();
    let reply = String::from_utf8_lossy(&reply[..n]);
    assert!(reply.contains("Could not parse command"), "{reply}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the refusal took {:?}",
        started.elapsed()
    );
    sim.wait_for_within(Duration::from_secs(5), |events| {
        events
            .iter()
            .any(|r| matches!(r.event, Event::Ack { pid } if i64::from(pid) != first))
            .then_some(())
    });
    assert!(sim.command("ehlo", &[])[0].starts_with("Welcome"));
}

#[test]
fn a_client_that_never_reads_is_cut_off_and_others_are_answered() {
    let sim = Sim::start(&["-n", "1", "-m", "manual"], &[]);
    sim.wait_count(is_ack, 1);
    // `state` 100k times, never reading a reply.
    let flooder = UnixStream::connect(sim.socket()).unwrap();
    let writer = {
        let mut flooder = flooder.try_clone().unwrap();
        std::thread::spawn(move || {
            let line = b"{\"command\":\"state\",\"args\":[]}\n";
            for _ in 0..100_000 {
                if flooder.write_all(line).is_err() {
                    return;
                }
            }
        })
    };
    // Another client is answered promptly the whole time.
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    while !sim.log().contains("left more than 8 MiB of replies unread") {
        let asked = Instant::now();
        assert!(sim.command("ehlo", &[])[0].starts_with("Welcome"));
        slowest = slowest.max(asked.elapsed());
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the flooding client was never cut off:\n{}",
            sim.log()
        );
    }
    eprintln!(
        "cut off after {:?}; ehlo took up to {slowest:?}",
        started.elapsed()
    );
    assert!(
        slowest < Duration::from_secs(1),
        "ehlo took up to {slowest:?}"
    );
    writer.join().unwrap();
    // Its connection is gone: reading ends (after what was sent, if any).
    flooder
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut sink = Vec::new();
    let _ = (&flooder).read_to_end(&mut sink);
    assert!(sim.command("ehlo", &[])[0].starts_with("Welcome"));
}

#[test]
fn inc_stops_where_set_workers_does() {
    // 1000 workers wanted, but growth after startup spawns one per 30 s:
    // only a couple of processes exist while the counts are checked.
    let sim = Sim::start(&["-n", "1", "-m", "manual", "-s", "30"], &[]);
    sim.wait_count(is_ack, 1);
    assert_eq!(
        sim.command("set_workers", &["1000"]),
        vec!["Altering worker count, 1 -> 1000. Will spin up additional workers."]
    );
    assert_eq!(
        sim.command("inc", &[]),
        vec!["Can't increase number of workers (already at 1000, the most set_workers allows)."]
    );
    assert_eq!(
        sim.command("set_workers", &["1001"]),
        vec!["Invalid count: '1001'. Must be an integer in [1,1000)."]
    );
    assert_eq!(
        sim.command("dec", &[]),
        vec!["Decrementing number of workers from 1000 -> 999"]
    );
    assert_eq!(
        sim.command("inc", &[]),
        vec!["Incrementing number of workers from 999 -> 1000"]
    );
}
