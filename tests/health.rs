//! Health probes end to end: `baseplate-healthcheck` against the example
//! services on both protocols, for every probe type, through a shutdown's
//! drain, against a stopped service, and with the app's own checks.

mod common;

use std::process::{Command, Output};

use common::thrift_clients::HealthV1;
use common::thrift_clients::{crate_client, Dialect};
use common::*;
use nix::sys::signal::Signal;

const PROBES: [&str; 3] = ["readiness", "liveness", "startup"];

fn healthcheck(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_baseplate-healthcheck"))
        .args(args)
        .output()
        .expect("run baseplate-healthcheck")
}

/// Asserts the check passed: `OK!` on stdout, nothing on stderr, exit 0.
fn assert_ok(output: &Output, what: &str) {
    assert_eq!(
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).as_ref(),
            String::from_utf8_lossy(&output.stderr).as_ref()
        ),
        (Some(0), "OK!\n", ""),
        "{what}"
    );
}

/// Asserts the check failed with one line on stderr containing `needle`,
/// and returns that line.
fn assert_fails(output: &Output, needle: &str) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    assert!(output.stdout.is_empty(), "{:?}", output.stdout);
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
    assert!(stderr.contains(needle), "{needle:?} not in {stderr:?}");
    stderr.trim_end().to_string()
}

fn thrift_config(server_options: &str, factory: &str) -> String {
    format!(
        "[server:main]\nfactory = baseplate.server.thrift\n{server_options}\n[app:main]\nfactory = {factory}\n"
    )
}

const SYNC_THRIFT: &str = "baseplate.examples.thrift:make_processor";
const ASYNC_THRIFT: &str = "baseplate.examples.thrift_async:make_service";

#[test]
fn every_probe_passes_against_the_example_services() {
    let http = Server::start(&config_with(""), &[]);
    let thrift = Server::start(&thrift_config("", SYNC_THRIFT), &[]);
    let thrift_async = Server::start(&thrift_config("", ASYNC_THRIFT), &[]);
    for probe in PROBES {
        for (kind, server) in [
            ("wsgi", &http),
            ("http", &http),
            ("thrift", &thrift),
            ("thrift", &thrift_async),
        ] {
            let addr = server.addr().to_string();
            assert_ok(
                &healthcheck(&["--probe", probe, kind, &addr]),
                &format!("{kind} {probe}"),
            );
        }
    }
    // The default probe is readiness, and probes may be given by number.
    assert_ok(&healthcheck(&["wsgi", &http.addr().to_string()]), "default");
    assert_ok(
        &healthcheck(&["thrift", &thrift.addr().to_string(), "--probe", "2"]),
        "number",
    );
}

#[test]
fn the_http_answer_is_json_with_the_probe_and_the_worker() {
    let server = Server::start(&config_with(""), &[]);
    let pid = server.child.id();
    for (query, probe) in [
        ("", "readiness"),
        ("?type=1", "readiness"),
        ("?type=2", "liveness"),
        ("?type=3", "startup"),
        ("?type=liveness", "liveness"),
        ("?type=99", "readiness"),
    ] {
        let r = get(server.addr(), &format!("/health{query}"));
        assert_eq!(r.status, 200, "{query}");
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(
            r.text(),
            format!(r#"{{"pid":{pid},"probe":"{probe}","status":"ok"}}"#),
            "{query}"
        );
    }
    let r = get(server.addr(), "/health?type=ready");
    assert_eq!(r.status, 400);
    assert!(
        r.text().contains(r#"unknown probe type \"ready\""#),
        "{}",
        r.text()
    );
    let r = request(server.addr(), "POST", "/health", &[], b"");
    assert_eq!((r.status, r.header("allow")), (405, Some("GET, HEAD")));
    // Other routes still reach the app.
    assert_eq!(get(server.addr(), "/").status, 200);
}

#[test]
fn a_stopped_service_fails_with_one_line() {
    for (config, kind) in [
        (config_with(""), "wsgi"),
        (thrift_config("", SYNC_THRIFT), "thrift"),
    ] {
        let mut server = Server::start(&config, &[]);
        let addr = server.addr().to_string();
        assert_ok(&healthcheck(&[kind, &addr]), "running");
        server.signal(Signal::SIGTERM);
        assert!(server.wait_exit(WAIT).success());
        let line = assert_fails(&healthcheck(&[kind, &addr]), "cannot connect to");
        assert_eq!(
            line,
            format!("cannot connect to {addr}: Connection refused (os error 111)")
        );
    }
}

#[test]
fn a_service_that_does_not_answer_fails_within_the_timeout() {
    // A listener nobody accepts on: the connection is made, no answer comes.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    for kind in ["wsgi", "thrift"] {
        let line = assert_fails(
            &healthcheck(&["--timeout", "300 milliseconds", kind, &addr]),
            "timed out after 0.3s",
        );
        assert!(line.starts_with("no answer to "), "{line}");
    }
}

/// The far end speaks the other protocol: the line says so and names the
/// command that would probe it.
#[test]
fn the_wrong_protocol_is_named_with_the_right_command() {
    let http = Server::start(&config_with(""), &[]);
    let addr = http.addr().to_string();
    let line = assert_fails(&healthcheck(&["--timeout", "5", "thrift", &addr]), "");
    assert_eq!(
        line,
        format!(
            "{addr} speaks HTTP, not Thrift: probe it with `baseplate-healthcheck wsgi {addr}`"
        )
    );
    for service in [SYNC_THRIFT, ASYNC_THRIFT] {
        let thrift = Server::start(&thrift_config("", service), &[]);
        let addr = thrift.addr().to_string();
        for kind in ["wsgi", "http"] {
            let line = assert_fails(&healthcheck(&["--timeout", "5", kind, &addr]), "");
            assert_eq!(
                line,
                format!(
                    "{addr} speaks Thrift, not HTTP: probe it with `baseplate-healthcheck thrift {addr}`"
                )
            );
        }
    }
    // A service that closes the connection but speaks no Thrift either is
    // not called a Thrift service.
    let closer = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closer.local_addr().unwrap().to_string();
    let closing = std::thread::spawn(move || {
        for _ in 0..2 {
            let (mut stream, _) = closer.accept().unwrap();
            let mut request = [0u8; 512];
            let _ = std::io::Read::read(&mut stream, &mut request);
        }
    });
    let line = assert_fails(&healthcheck(&["--timeout", "5", "wsgi", &addr]), "");
    assert_eq!(
        line,
        format!("unhealthy: {addr} answered GET /health?type=1 by closing the connection without a response")
    );
    closing.join().unwrap();
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["grpc", "127.0.0.1:1"][..],
        &["wsgi", "nonsense"],
        &["--probe", "ready", "wsgi", "127.0.0.1:1"],
        &["wsgi"],
    ] {
        let output = healthcheck(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&output.stderr).starts_with("error: "),
            "{args:?}"
        );
    }
}

/// Readiness fails from the moment shutdown starts while liveness and
/// startup stay healthy, on both protocols; the V1 `is_healthy()` (the
/// example IDL's own method) sees the same state.
#[test]
fn readiness_fails_during_drain_and_liveness_stays_healthy() {
    let drain = "drain_time = 3 seconds\nstop_timeout = 3 seconds";
    for (config, kind) in [
        (config_with(drain), "wsgi"),
        (thrift_config(drain, SYNC_THRIFT), "thrift"),
        (thrift_config(drain, ASYNC_THRIFT), "thrift"),
    ] {
        let mut server = Server::start(&config, &[]);
        let addr = server.addr().to_string();
        let mut v1 = (kind == "thrift").then(|| crate_client(server.addr(), Dialect::FramedBinary));
        if let Some(client) = v1.as_mut() {
            assert!(client.is_healthy().unwrap());
        }
        server.signal(Signal::SIGTERM);
        server.wait_for("Draining inbound requests");
        assert_fails(
            &healthcheck(&["--probe", "readiness", kind, &addr]),
            "unhealthy",
        );
        assert_ok(
            &healthcheck(&["--probe", "liveness", kind, &addr]),
            "liveness",
        );
        assert_ok(
            &healthcheck(&["--probe", "startup", kind, &addr]),
            "startup",
        );
        if let Some(client) = v1.as_mut() {
            assert!(!client.is_healthy().unwrap(), "the V1 method in drain");
        }
        if kind == "wsgi" {
            let r = get(server.addr(), "/health?type=1");
            assert_eq!(r.status, 503);
            assert!(
                r.text()
                    .contains(r#""failed":{"shutdown":"the server is shutting down"}"#),
                "{}",
                r.text()
            );
        }
        drop(v1);
        assert!(server.wait_exit(WAIT).success());
    }
}

#[test]
fn an_app_check_fails_readiness_while_it_fails() {
    let dir = TempDir::new();
    let flag = dir.path().join("maintenance");
    let config = format!(
        "[server:main]\nfactory = baseplate.server.wsgi\n{EXAMPLE_APP}maintenance_file = {}\n",
        flag.display()
    );
    let server = Server::start(&config, &[]);
    let addr = server.addr().to_string();
    assert_ok(&healthcheck(&["wsgi", &addr]), "no flag");
    std::fs::write(&flag, "").unwrap();
    let line = assert_fails(&healthcheck(&["wsgi", &addr]), "with status 503");
    assert!(line.contains("exists"), "{line}");
    assert_ok(
        &healthcheck(&["--probe", "liveness", "wsgi", &addr]),
        "liveness",
    );
    std::fs::remove_file(&flag).unwrap();
    assert_ok(&healthcheck(&["wsgi", &addr]), "flag removed");
}

#[test]
fn health_path_and_answered_by_app_are_configurable() {
    let server = Server::start(&config_with("health.path = /healthz"), &[]);
    let pid = server.child.id();
    let r = get(server.addr(), "/healthz?type=2");
    assert_eq!(
        r.text(),
        format!(r#"{{"pid":{pid},"probe":"liveness","status":"ok"}}"#)
    );
    // /health is the app's own route now.
    assert_eq!(
        get(server.addr(), "/health").text(),
        format!(r#"{{"pid":{pid},"status":"ok"}}"#)
    );

    // With the app answering, a draining Thrift server's app still says
    // true: the server's state is the app's to consult.
    let config = thrift_config(
        "health.answered_by = app\ndrain_time = 3 seconds",
        SYNC_THRIFT,
    );
    let mut server = Server::start(&config, &[]);
    let addr = server.addr().to_string();
    server.signal(Signal::SIGTERM);
    server.wait_for("Draining inbound requests");
    assert_ok(&healthcheck(&["thrift", &addr]), "the app answers");
    assert!(server.wait_exit(WAIT).success());
}

#[test]
fn the_checker_reaches_a_unix_socket() {
    let dir = TempDir::new();
    let socket = dir.path().join("http.sock");
    let config = dir.write("app.ini", &config_with(""));
    let mut command = Command::new(binary());
    command.arg("--bind").arg(&socket).arg(&config);
    let mut server = Server::spawn(command, TempDir::new());
    server.wait_for("Listening on");
    assert_ok(
        &healthcheck(&["wsgi", socket.to_str().unwrap()]),
        "UNIX socket",
    );
}

/// `--timeout` covers the connect too on a UNIX socket whose backlog is
/// full (a blocking connect there waits for as long as the listener does
/// not accept): the check fails with the timeout, on time.
#[test]
fn the_timeout_covers_a_unix_socket_whose_backlog_is_full() {
    use nix::errno::Errno;
    use nix::sys::socket::{
        bind, connect, listen, socket, AddressFamily, Backlog, SockFlag, SockType, UnixAddr,
    };
    use std::os::fd::AsRawFd;
    use std::time::{Duration, Instant};

    let dir = TempDir::new();
    let path = dir.path().join("full.sock");
    let address = UnixAddr::new(&path).unwrap();
    let listener = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    bind(listener.as_raw_fd(), &address).unwrap();
    listen(&listener, Backlog::new(1).unwrap()).unwrap();
    // Never accepted: fill the backlog until the kernel refuses more.
    let mut held = Vec::new();
    loop {
        let client = socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            None,
        )
        .unwrap();
        match connect(client.as_raw_fd(), &address) {
            Ok(()) => held.push(client),
            Err(Errno::EAGAIN) => break,
            Err(e) => panic!("filling the backlog: {e}"),
        }
        assert!(held.len() < 1000, "the backlog never filled");
    }
    for kind in ["wsgi", "thrift"] {
        let started = Instant::now();
        // A watchdog, so that a connect that blocks fails the test instead
        // of hanging it.
        let mut child = Command::new(env!("CARGO_BIN_EXE_baseplate-healthcheck"))
            .args(["--timeout", "1", kind, path.to_str().unwrap()])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        while child.try_wait().unwrap().is_none() {
            if started.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{kind}: still connecting after 20 s with --timeout 1");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let output = child.wait_with_output().unwrap();
        let took = started.elapsed();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{kind}: {stderr}");
        assert!(stderr.contains("timed out after 1s"), "{kind}: {stderr}");
        // 1 s, with room for a busy machine; the blocking connect waited
        // for as long as the listener lived.
        assert!(took < Duration::from_secs(8), "{kind}: took {took:?}");
        assert!(
            took >= Duration::from_millis(900),
            "{kind}: gave up early, after {took:?}"
        );
    }
}
