//! End-to-end: signals, graceful shutdown, stop_timeout, drain_time and the
//! connection limit, with real signals sent to the real binary.

mod common;

use std::io::{ErrorKind, Read};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::Signal;

/// Starts a slow request on a new connection and waits until the app runs it.
fn start_slow_request(server: &mut Server, ms: u64) -> TcpStream {
    let mut stream = connect(server.addr());
    send(&mut stream, "GET", &format!("/sleep?ms={ms}"), &[], b"");
    server.wait_for(&format!("sleeping for {ms} ms"));
    stream
}

fn assert_refused(server: &Server) {
    match TcpStream::connect(server.addr()) {
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{e}"),
        Ok(_) => panic!("a new connection was accepted after the listener closed"),
    }
}

fn graceful_shutdown_on(signal: Signal, ms: u64) {
    let mut server = Server::start(&config_with("stop_timeout = 10 seconds"), &[]);
    let mut in_flight = start_slow_request(&mut server, ms);
    server.signal(signal);
    server.wait_for("Shutdown triggered.");
    server.wait_for("Gracefully shutting down");
    assert_refused(&server);
    let response = read_response(&mut in_flight).expect("the in-flight request completes");
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), format!("slept {ms} ms"));
    assert_eq!(response.header("connection"), Some("close"));
    let status = server.wait_exit(Duration::from_secs(5));
    assert_eq!(status.code(), Some(0), "{}", server.output());
    assert!(server.output().contains("\"message\":\"Exiting\""));
}

#[test]
fn sigterm_finishes_the_in_flight_request_and_refuses_new_connections() {
    graceful_shutdown_on(Signal::SIGTERM, 1500);
}

#[test]
fn sigusr2_is_graceful_too() {
    graceful_shutdown_on(Signal::SIGUSR2, 300);
}

#[test]
fn sigint_is_graceful_too() {
    graceful_shutdown_on(Signal::SIGINT, 300);
}

#[test]
fn stop_timeout_cuts_long_requests() {
    let mut server = Server::start(&config_with("stop_timeout = 200 milliseconds"), &[]);
    let mut in_flight = start_slow_request(&mut server, 5000);
    let signalled = Instant::now();
    server.signal(Signal::SIGTERM);
    let status = server.wait_exit(Duration::from_secs(5));
    let took = signalled.elapsed();
    assert_eq!(status.code(), Some(0));
    assert!(took < Duration::from_millis(1500), "exit took {took:?}");
    assert!(
        read_response(&mut in_flight).is_err(),
        "the cut request must not succeed"
    );
    assert!(
        server.output().contains("still open after stop_timeout"),
        "{}",
        server.output()
    );
}

#[test]
fn a_second_signal_during_shutdown_exits_at_once_with_status_1() {
    let mut server = Server::start(&config_with("stop_timeout = 30 seconds"), &[]);
    let _in_flight = start_slow_request(&mut server, 20_000);
    server.signal(Signal::SIGTERM);
    server.wait_for("Gracefully shutting down");
    let signalled = Instant::now();
    server.signal(Signal::SIGINT);
    let status = server.wait_exit(Duration::from_secs(5));
    assert_eq!(status.code(), Some(1));
    assert!(signalled.elapsed() < Duration::from_secs(2));
    assert!(
        server
            .output()
            .contains("Received SIGINT again during shutdown"),
        "{}",
        server.output()
    );
}

#[test]
fn sigusr1_dumps_connections_and_requests_and_keeps_serving() {
    let mut server = Server::start(&config_with(""), &[]);
    let mut in_flight = start_slow_request(&mut server, 1500);
    let mut idle = connect(server.addr());
    send(&mut idle, "GET", "/", &[], b"");
    assert_eq!(read_response(&mut idle).unwrap().status, 200);

    server.signal(Signal::SIGUSR1);
    let line = server.wait_for("Received SIGUSR1, dumping stack trace:");
    assert!(line.contains("\"level\":\"WARN\""), "{line}");
    server.wait_for("open connections: 2 (1 active, 1 idle)");
    server.wait_for("in-flight requests: 1");
    let request_line = server.wait_for("GET /sleep?ms=1500 from 127.0.0.1:");
    assert!(request_line.contains("trace_id="), "{request_line}");
    assert!(
        request_line.contains(", running 0."),
        "the request's age: {request_line}"
    );
    server.wait_for("runtime: ");
    // The dump did not disturb the request.
    let response = read_response(&mut in_flight).unwrap();
    assert_eq!(
        (response.status, response.text()),
        (200, "slept 1500 ms".to_string())
    );

    assert_eq!(get(server.addr(), "/").status, 200);
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "SIGUSR1 must not stop the server"
    );
}

#[test]
fn idle_keep_alive_connections_are_closed_at_shutdown() {
    let mut server = Server::start(&config_with("stop_timeout = 10 seconds"), &[]);
    let mut idle = connect(server.addr());
    send(&mut idle, "GET", "/", &[], b"");
    assert_eq!(read_response(&mut idle).unwrap().status, 200);
    let signalled = Instant::now();
    server.signal(Signal::SIGTERM);
    let status = server.wait_exit(Duration::from_secs(5));
    assert_eq!(status.code(), Some(0));
    assert!(
        signalled.elapsed() < Duration::from_secs(2),
        "an idle connection must not hold shutdown for stop_timeout"
    );
    let mut buf = [0u8; 1];
    assert_eq!(
        idle.read(&mut buf).unwrap(),
        0,
        "the idle connection is closed"
    );
}

#[test]
fn drain_time_keeps_accepting_before_closing_the_listener() {
    let mut server = Server::start(
        &config_with("drain_time = 1 second\nstop_timeout = 5 seconds"),
        &[],
    );
    server.signal(Signal::SIGTERM);
    server.wait_for("Draining inbound requests for 1.000s");
    assert_eq!(
        get(server.addr(), "/").status,
        200,
        "new connections are served while draining"
    );
    server.wait_for("Gracefully shutting down");
    assert_refused(&server);
    assert_eq!(server.wait_exit(Duration::from_secs(5)).code(), Some(0));
}

#[test]
fn max_concurrency_makes_the_next_client_wait() {
    let mut server = Server::start(&config_with("max_concurrency = 1"), &[]);
    let mut first = connect(server.addr());
    send(
        &mut first,
        "GET",
        "/sleep?ms=1000",
        &[("Connection", "close")],
        b"",
    );
    server.wait_for("sleeping for 1000 ms");

    // The kernel completes the handshake (backlog), but the server does not
    // take the connection while the first one is open.
    let mut second = connect(server.addr());
    send(&mut second, "GET", "/", &[], b"");
    second
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 1];
    let early = second.read(&mut buf);
    assert!(
        matches!(&early, Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)),
        "the second client must wait, got {early:?}"
    );

    let first_response = read_response(&mut first).unwrap();
    assert_eq!(first_response.text(), "slept 1000 ms");
    second.set_read_timeout(Some(WAIT)).unwrap();
    let second_response = read_response(&mut second).unwrap();
    assert_eq!(second_response.status, 200);
}

#[test]
fn a_just_opened_connection_gets_its_first_request_answered_during_shutdown() {
    let mut server = Server::start(&config_with("stop_timeout = 5 seconds"), &[]);
    // Connected (accepted by the server) but the request is not sent yet.
    let mut fresh = connect(server.addr());
    let mut probe = connect(server.addr());
    send(&mut probe, "GET", "/", &[], b"");
    assert_eq!(read_response(&mut probe).unwrap().status, 200);
    server.signal(Signal::SIGTERM);
    server.wait_for("Gracefully shutting down");
    send(&mut fresh, "GET", "/", &[], b"");
    let response =
        read_response(&mut fresh).expect("the first request of a new connection is served");
    assert_eq!(response.status, 200);
    assert_eq!(response.header("connection"), Some("close"));
    assert_eq!(server.wait_exit(Duration::from_secs(5)).code(), Some(0));
}

#[cfg(feature = "taskdump")]
#[test]
fn sigusr1_with_taskdump_logs_every_tasks_await_chain() {
    let mut server = Server::start(&config_with(""), &[]);
    let mut in_flight = start_slow_request(&mut server, 1000);
    server.signal(Signal::SIGUSR1);
    let task = server.wait_for("task 0:");
    assert!(task.contains("baseplate::"), "{task}");
    assert_eq!(read_response(&mut in_flight).unwrap().status, 200);
}

/// Under load a SIGUSR1 report stays bounded: at most 100 connections are
/// listed (the active ones first), then how many more there are.
#[test]
fn a_sigusr1_report_lists_at_most_100_connections() {
    let mut server = Server::start(&config_with(""), &[]);
    let silent: Vec<_> = (0..150).map(|_| connect(server.addr())).collect();
    // Accepted in order: once a later connection is answered, the 150
    // silent ones are open on the server.
    assert_eq!(get(server.addr(), "/").status, 200);
    server.signal(Signal::SIGUSR1);
    let line = server.wait_for("more connection(s), not listed (a report lists at most 100)");
    server.wait_for("in-flight requests: 0");
    let more: usize = line
        .split("... and ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert!((50..=51).contains(&more), "{line}");
    assert_eq!(server.output().matches("  connection #").count(), 100);
    drop(silent);
}

/// SIGUSR1s sent faster than one a second are answered by one report at
/// the end of the second, not one each (100 signals under load wrote
/// 60,000 lines before).
#[test]
fn sigusr1_reports_are_coalesced_to_one_a_second() {
    let mut server = Server::start(&config_with(""), &[]);
    let started = Instant::now();
    for _ in 0..10 {
        server.signal(Signal::SIGUSR1);
        // Paced, so that each signal arrives on its own.
        std::thread::sleep(Duration::from_millis(50));
    }
    let sending = started.elapsed();
    server.wait_for("Received SIGUSR1");
    // The coalesced report comes at the end of the interval.
    let deadline = Instant::now() + WAIT;
    while server.output().matches("Received SIGUSR1").count() < 2 {
        assert!(Instant::now() < deadline, "{}", server.output());
        std::thread::sleep(Duration::from_millis(20));
    }
    server.signal(Signal::SIGTERM);
    assert!(server.wait_exit(WAIT).success());
    let reports = server.output().matches("Received SIGUSR1").count();
    // One report a second of sending, plus the first and the coalesced one.
    let allowed = 2 + sending.as_secs() as usize;
    assert!(
        reports <= allowed,
        "{reports} reports for 10 signals sent in {sending:?} (at most {allowed})"
    );
}
