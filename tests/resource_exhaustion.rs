//! Attacks that once cost more than the attacker's own connection, each
//! reproduced here against the real binary (see docs/reliability.md,
//! "Round 2"): silent HTTP connections, nested ZLIB transforms, huge or
//! deeply expanded configs, SIGHUP, and identifiers of any length.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use baseplate::example_apps::example_thrift::TExampleSyncClient;
use common::thrift_clients::*;
use common::*;
use nix::sys::signal::Signal;

/// Whether the server closed `stream` (EOF or reset) within `within`.
fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 64];
    match stream.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    }
}

// 1. HTTP connections that send nothing.

#[test]
fn silent_and_half_preface_connections_cannot_lock_out_clients() {
    let server = Server::start(
        &config_with("max_concurrency = 10\nheader_timeout = 1 second"),
        &[],
    );
    let addr = server.addr();
    let started = Instant::now();
    let mut silent: Vec<TcpStream> = (0..10).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let mut half: Vec<TcpStream> = (0..10)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"P").unwrap(); // the start of an HTTP/2 preface
            s
        })
        .collect();
    // Behind 20 connections that hold the 10 slots: two rounds of
    // header_timeout, then the normal client is served.
    let response = get(addr, "/");
    assert_eq!(response.status, 200);
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(4),
        "a normal client waited {took:?} behind silent connections"
    );
    for s in silent.iter_mut().chain(half.iter_mut()) {
        assert!(
            closed_within(s, Duration::from_secs(10)),
            "a silent connection was closed"
        );
    }
}

#[test]
fn a_new_connection_gets_header_timeout_from_accept() {
    let server = Server::start(&config_with("header_timeout = 500 milliseconds"), &[]);
    let mut silent = TcpStream::connect(server.addr()).unwrap();
    let started = Instant::now();
    assert!(closed_within(&mut silent, Duration::from_secs(10)));
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(5),
        "closed after {took:?}"
    );
}

#[test]
fn idle_keep_alive_connections_are_closed_after_idle_timeout() {
    let server = Server::start(&config_with("idle_timeout = 500 milliseconds"), &[]);
    let mut stream = connect(server.addr());
    send(&mut stream, "GET", "/", &[], b"");
    assert_eq!(read_response(&mut stream).unwrap().status, 200);
    // Kept alive at first: a second request on the same connection works.
    send(&mut stream, "GET", "/", &[], b"");
    assert_eq!(read_response(&mut stream).unwrap().status, 200);
    let idle_since = Instant::now();
    assert!(closed_within(&mut stream, Duration::from_secs(10)));
    let took = idle_since.elapsed();
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(5),
        "closed after {took:?}"
    );
    // A request in flight is not idle: a slow one outlives idle_timeout.
    let response = request(server.addr(), "GET", "/sleep?ms=1200", &[], b"");
    assert_eq!(response.status, 200);
}

// 2. Nested THeader ZLIB transforms.

#[test]
fn frames_with_nested_zlib_transforms_are_refused_at_once() {
    let mut server = Server::start(
        "[server:main]\nfactory = baseplate.server.thrift\n\n[app:main]\nfactory = baseplate.examples.thrift:make_processor\n",
        &[],
    );
    let addr = server.addr();
    // 201 ZLIB transforms on a small payload, 40 times.
    let bomb = header_frame(0, &[1; 201], &[], &[0x78, 0x9c, 0x03, 0x00, 0, 0, 0, 1]);
    let started = Instant::now();
    for _ in 0..40 {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(&bomb).unwrap();
        assert!(closed_within(&mut s, Duration::from_secs(10)));
    }
    let line = server.wait_for("closing Thrift connection");
    assert!(
        line.contains("transforms in one frame (at most 4)"),
        "{line}"
    );
    let mut client = crate_client(addr, Dialect::FramedBinary);
    assert!(client.is_healthy().unwrap());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "40 refused frames took {:?}",
        started.elapsed()
    );
}

// 3. The unframed scanner fed a few bytes at a time: the scanner's unit
// test `a_message_fed_a_byte_at_a_time_costs_linear_work` counts its work.

// 7. Config loading.

#[test]
fn a_config_with_100k_sections_and_300k_keys_loads_in_linear_time() {
    let dir = TempDir::new();
    let mut text = String::with_capacity(8 << 20);
    text.push_str("[server:main]\nfactory = baseplate.server.wsgi\n");
    text.push_str("[app:main]\nfactory = baseplate.examples.http:make_app\n");
    for i in 0..200_000 {
        text.push_str(&format!("key_{i} = value {i}\n"));
    }
    for i in 0..100_000 {
        text.push_str(&format!("[section_{i}]\nk = v\n"));
    }
    let path = dir.write("big.ini", &text);
    let started = Instant::now();
    let output = std::process::Command::new(binary())
        .arg("--check")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Quadratic lookups took minutes at this size; linear takes well under
    // a second (debug build). The bound leaves room for a busy machine.
    let took = started.elapsed();
    assert!(took < Duration::from_secs(20), "--check took {took:?}");
}

#[test]
fn expanding_vars_past_64_mib_is_one_clear_error() {
    let dir = TempDir::new();
    let mut text = String::from(
        "[server:main]\nfactory = baseplate.server.wsgi\n[app:main]\nfactory = baseplate.examples.http:make_app\n",
    );
    // 700 references to a 100 KiB variable (the kernel caps one variable
    // at 128 KiB): 70 MiB once expanded.
    for i in 0..700 {
        text.push_str(&format!("k{i} = $BIG_VALUE\n"));
    }
    let path = dir.write("vars.ini", &text);
    let output = std::process::Command::new(binary())
        .arg("--check")
        .arg(&path)
        .env("BIG_VALUE", "x".repeat(100 << 10))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        stderr,
        format!(
            "error: {}:660: [app:main] k655: expanding $VARs makes the section larger than 64 MiB; \
             check which environment variables it references\n",
            path.display()
        )
    );
}

// 9. SIGHUP.

#[test]
fn sighup_restarts_in_place_and_finishes_the_request_in_flight() {
    let mut server = Server::start(&config_with("stop_timeout = 10 seconds"), &[]);
    let addr = server.addr();
    let pid_before = server.pid();
    let slow = std::thread::spawn(move || request(addr, "GET", "/sleep?ms=800", &[], b""));
    server.wait_for("sleeping for 800 ms");
    server.signal(Signal::SIGHUP);
    server.wait_for("Received SIGHUP: restarting in place");
    let response = slow.join().unwrap();
    assert_eq!(response.status, 200, "the request in flight finished");
    // The same process serves again on the same port.
    let line = server.wait_for("Listening on");
    assert!(line.contains(&addr.to_string()), "{line}");
    assert_eq!(server.pid(), pid_before);
    assert_eq!(get(addr, "/").status, 200);
    server.signal(Signal::SIGTERM);
    assert_eq!(server.wait_exit(Duration::from_secs(10)).code(), Some(0));
}

// 11. Identifiers of any length.

#[test]
fn a_100kb_trace_header_never_reaches_the_logs() {
    let mut server = Server::start(
        "[server:main]\nfactory = baseplate.server.thrift\n\n[app:main]\nfactory = baseplate.examples.thrift:make_processor\n",
        &[],
    );
    let huge = "7".repeat(100_000);
    let agent = "a".repeat(10_000);
    let mut client = header_client(
        server.addr(),
        false,
        false,
        &[("Trace", &huge), ("User-Agent", &agent)],
    );
    client.sleep(5).unwrap();
    let line = server.wait_for("sleeping for 5 ms");
    assert!(line.len() < 2_000, "a log line of {} bytes", line.len());
    let value: serde_json::Value = serde_json::from_str(&line).unwrap();
    let trace = value["trace_id"].as_str().unwrap();
    assert_eq!(trace.len(), 32, "a generated id replaces the oversized one");
    assert_eq!(value["user_agent"].as_str().unwrap().len(), 256);
}

// 8. An early 413 for clients that send the whole body before reading.

#[test]
fn python_http_client_posting_64_mib_reads_the_413() {
    if std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: python3 is not installed");
        return;
    }
    let server = Server::start(&config_with(""), &[]);
    let script = format!(
        "import http.client\n\
         c = http.client.HTTPConnection('127.0.0.1', {}, timeout=60)\n\
         c.request('POST', '/echo', body=b'x' * (64 << 20))\n\
         print(c.getresponse().status)\n",
        server.addr().port()
    );
    let output = std::process::Command::new("python3")
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stdout.trim(), "413", "python said: {stderr}");
}

#[test]
fn a_client_that_expects_100_continue_is_refused_before_it_sends() {
    let server = Server::start(&config_with(""), &[]);
    let mut stream = connect(server.addr());
    stream
        .write_all(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 67108864\r\nExpect: 100-continue\r\n\r\n",
        )
        .unwrap();
    let started = Instant::now();
    let response = read_response(&mut stream).unwrap();
    assert_eq!(response.status, 413);
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn more_than_100_header_fields_get_431() {
    let server = Server::start(&config_with(""), &[]);
    let many: Vec<(String, String)> = (0..101).map(|i| (format!("X-H{i}"), "1".into())).collect();
    let headers: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(
        request(server.addr(), "GET", "/", &headers, b"").status,
        431
    );
    assert_eq!(
        request(server.addr(), "GET", "/", &headers[..90], b"").status,
        200
    );
}
