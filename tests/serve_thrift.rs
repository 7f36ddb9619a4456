//! End-to-end: `baseplate-serve fixtures/thrift.ini` called through every
//! dialect, with the `thrift` crate's clients and a small THeader client
//! written here from the spec (independent of the server's codec).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use baseplate::example_apps::example_thrift::TExampleSyncClient;
use common::thrift_clients::*;
use common::*;
use nix::sys::signal::Signal;
use thrift::protocol::{TBinaryOutputProtocol, TOutputProtocol};

fn thrift_config(server_options: &str) -> String {
    format!(
        "[server:main]\nfactory = baseplate.server.thrift\n{server_options}\n\n[app:main]\nfactory = baseplate.examples.thrift:make_processor\n"
    )
}

fn async_config(server_options: &str) -> String {
    format!(
        "[server:main]\nfactory = baseplate.server.thrift\n{server_options}\n\n[app:main]\nfactory = baseplate.examples.thrift_async:make_service\n"
    )
}

/// Calls every method of the example service.
fn exercise(client: &mut Client, what: &str) {
    assert!(client.is_healthy().unwrap(), "{what}");
    assert_eq!(client.echo("hello".into()).unwrap(), "hello", "{what}");
    client.sleep(1).unwrap();
    assert_eq!(client.add(2, 40).unwrap(), 42, "{what}");
    match client.fail("boom".into()) {
        Err(thrift::Error::User(e)) => assert!(format!("{e:?}").contains("boom"), "{what}: {e:?}"),
        other => panic!("{what}: expected Oops, got {other:?}"),
    }
    client.fire("note".into()).unwrap();
    // The one-way call sent no reply: the next call's reply is its own.
    assert_eq!(client.add(-1, 1).unwrap(), 0, "{what}");
}

#[test]
fn every_method_through_every_dialect() {
    every_method_of(&thrift_config(""));
}

#[test]
fn every_method_of_the_async_example_through_every_dialect() {
    every_method_of(&async_config(""));
}

#[test]
fn every_method_inline() {
    every_method_of(&thrift_config("execution = inline"));
}

fn every_method_of(config: &str) {
    let server = Server::start(config, &[]);
    for dialect in [
        Dialect::FramedBinary,
        Dialect::FramedCompact,
        Dialect::UnframedBinary,
        Dialect::UnframedCompact,
    ] {
        exercise(
            &mut crate_client(server.addr(), dialect),
            &format!("{dialect:?}"),
        );
    }
    for compact in [false, true] {
        for zlib in [false, true] {
            let what = format!("THeader compact={compact} zlib={zlib}");
            exercise(&mut header_client(server.addr(), compact, zlib, &[]), &what);
        }
    }
}

#[test]
fn theader_info_headers_reach_the_handler_and_the_logs() {
    info_headers_reach(&thrift_config(""));
}

#[test]
fn theader_info_headers_reach_the_async_handler_and_the_logs() {
    info_headers_reach(&async_config(""));
}

fn info_headers_reach(config: &str) {
    let mut server = Server::start(config, &[]);
    let mut client = header_client(
        server.addr(),
        false,
        false,
        &[
            ("Trace", "9876543210"),
            ("User-Agent", "integration-test"),
            ("Deadline-Budget", "250"),
        ],
    );
    assert_eq!(
        client.echo("header:User-Agent".into()).unwrap(),
        "integration-test"
    );
    assert_eq!(client.echo("header:trace".into()).unwrap(), "9876543210");
    assert_eq!(client.echo("header:Missing".into()).unwrap(), "");
    client.sleep(3).unwrap();
    let line = server.wait_for("sleeping for 3 ms");
    let value: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(value["trace_id"], "9876543210", "{line}");
    assert_eq!(value["user_agent"], "integration-test", "{line}");
    assert_eq!(value["deadline_budget"], "250", "{line}");
    assert_eq!(value["method"], "sleep", "{line}");
}

#[test]
fn an_unknown_transform_gets_an_exception_and_the_connection_lives() {
    let server = Server::start(&thrift_config(""), &[]);
    let mut stream = TcpStream::connect(server.addr()).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream
        .write_all(&header_frame(0, &[9], &[], b"unreadable"))
        .unwrap();
    let (protocol, _, _, payload) = read_header_frame(&mut stream).unwrap();
    assert_eq!(protocol, 0);
    // A binary message of type Exception (3).
    assert_eq!(&payload[..4], &[0x80, 0x01, 0x00, 0x03]);
    let text = String::from_utf8_lossy(&payload);
    assert!(text.contains("unknown THeader transform 9"), "{text}");

    // The same connection still serves a proper call.
    let mut call = Vec::new();
    {
        use thrift::protocol::{TMessageIdentifier, TMessageType, TStructIdentifier};
        let mut out = TBinaryOutputProtocol::new(&mut call, true);
        out.write_message_begin(&TMessageIdentifier::new(
            "is_healthy",
            TMessageType::Call,
            1,
        ))
        .unwrap();
        out.write_struct_begin(&TStructIdentifier::new("args"))
            .unwrap();
        out.write_field_stop().unwrap();
        out.write_struct_end().unwrap();
        out.write_message_end().unwrap();
    }
    stream.write_all(&header_frame(0, &[], &[], &call)).unwrap();
    let (_, _, _, reply) = read_header_frame(&mut stream).unwrap();
    assert_eq!(&reply[..4], &[0x80, 0x01, 0x00, 0x02], "a Reply message");
}

#[test]
fn hostile_bytes_close_only_that_connection() {
    let mut server = Server::start(&thrift_config("max_frame_size = 1024"), &[]);
    // An unframed call whose argument struct nests 100 deep.
    let mut deep = vec![0x80, 0x01, 0x00, 0x01, 0, 0, 0, 1, b'x', 0, 0, 0, 1];
    for _ in 0..100 {
        deep.extend_from_slice(&[12, 0, 1]);
    }
    for bytes in [
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        &[0x00, 0x00, 0x08, 0x00][..], // a 2 KiB frame: over the limit
        &[0x3F, 0xFF, 0xFF, 0xFF][..], // a 1 GiB frame, never sent
        &[0x00, 0x00, 0x00, 0x04, 1, 2, 3, 4][..], // a frame that is no message
        &[0x80, 0x01, 0x00, 0x01, 0xFF, 0xFF, 0xFF, 0xFF][..], // a negative name length
        &deep[..],                     // 100 nested structs
        &[
            0, 0, 0, 14, 0x0F, 0xFF, 0, 0, 0, 0, 0, 1, 0xFF, 0xFF, 0, 0, 0, 0,
        ][..], // a THeader header bigger than its frame
    ] {
        let mut stream = TcpStream::connect(server.addr()).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream.write_all(bytes).unwrap();
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
        assert!(rest.is_empty(), "{bytes:?} got {rest:?}");
    }
    let line = server.wait_for("closing Thrift connection");
    assert!(
        line.contains("\"level\":\"WARN\"") && line.contains("\"peer\":\"127.0.0.1:"),
        "{line}"
    );
    exercise(
        &mut crate_client(server.addr(), Dialect::FramedBinary),
        "after hostile clients",
    );
}

#[test]
fn silent_and_half_sent_clients_cost_only_their_connections() {
    let mut server = Server::start(&thrift_config("stop_timeout = 1 second"), &[]);
    let addr = server.addr();
    let silent: Vec<TcpStream> = (0..100)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    // A 100-byte frame of which 10 bytes ever arrive.
    let mut half = TcpStream::connect(addr).unwrap();
    half.write_all(&[0, 0, 0, 100, 0x80, 0x01, 0, 1, 0, 0])
        .unwrap();
    exercise(
        &mut crate_client(addr, Dialect::FramedBinary),
        "next to silent clients",
    );

    // Shutdown closes the silent ones at once and cuts the half-sent one
    // off at stop_timeout.
    let started = Instant::now();
    server.signal(Signal::SIGTERM);
    assert_eq!(server.wait_exit(Duration::from_secs(10)).code(), Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "shutdown took {:?}",
        started.elapsed()
    );
    server.wait_for("still open after stop_timeout");
    for mut stream in silent.into_iter().chain([half]) {
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
        assert!(rest.is_empty(), "got {rest:?}");
    }
}

#[test]
fn graceful_shutdown_finishes_the_call_in_flight() {
    let mut server = Server::start(&thrift_config("stop_timeout = 10 seconds"), &[]);
    let addr = server.addr();
    let call = std::thread::spawn(move || crate_client(addr, Dialect::FramedBinary).sleep(1500));
    server.wait_for("sleeping for 1500 ms");
    server.signal(Signal::SIGTERM);
    server.wait_for("Gracefully shutting down");
    let refused = TcpStream::connect(addr);
    assert!(
        refused.is_err(),
        "a new connection after the listener closed"
    );
    assert!(call.join().unwrap().is_ok(), "the in-flight call completes");
    assert_eq!(server.wait_exit(Duration::from_secs(5)).code(), Some(0));
}

#[test]
fn execution_option_values() {
    for value in ["blocking", "threads"] {
        let (code, stdout, stderr) = run_once(
            &thrift_config(&format!("execution = {value}")),
            &["--check"],
        );
        assert_eq!(code, 0, "{value}: {stderr}");
        assert!(stdout.contains("config OK"), "{stdout}");
    }
    let (code, _, stderr) = run_once(&thrift_config("execution = sometimes"), &["--check"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains(
            "[server:main] execution: \"sometimes\" is not one of: blocking, threads, inline"
        ),
        "{stderr}"
    );
    let (code, _, stderr) = run_once(&thrift_config("max_frame_size = 0"), &["--check"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("[server:main] max_frame_size: 0 is not allowed"),
        "{stderr}"
    );
}
