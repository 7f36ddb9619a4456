//! End-to-end: `baseplate-serve fixtures/thrift.ini` called through every
//! dialect, with the `thrift` crate's clients and a small THeader client
//! written here from the spec (independent of the server's codec).

mod common;

use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::rc::Rc;
use std::time::{Duration, Instant};

use baseplate::examples::example_thrift::{ExampleSyncClient, TExampleSyncClient};
use common::*;
use nix::sys::signal::Signal;
use thrift::protocol::{
    TBinaryInputProtocol, TBinaryOutputProtocol, TCompactInputProtocol, TCompactOutputProtocol,
    TInputProtocol, TOutputProtocol,
};
use thrift::transport::{
    TBufferedReadTransport, TBufferedWriteTransport, TFramedReadTransport, TFramedWriteTransport,
    TIoChannel, TTcpChannel,
};

fn thrift_config(server_options: &str) -> String {
    format!(
        "[server:main]\nfactory = baseplate.server.thrift\n{server_options}\n\n[app:main]\nfactory = baseplate.examples.thrift:make_processor\n"
    )
}

type Client = ExampleSyncClient<Box<dyn TInputProtocol>, Box<dyn TOutputProtocol>>;

#[derive(Clone, Copy, Debug)]
enum Dialect {
    FramedBinary,
    FramedCompact,
    UnframedBinary,
    UnframedCompact,
}

fn crate_client(addr: SocketAddr, dialect: Dialect) -> Client {
    let mut channel = TTcpChannel::new();
    channel.open(addr.to_string()).unwrap();
    let (r, w) = channel.split().unwrap();
    let (input, output): (Box<dyn TInputProtocol>, Box<dyn TOutputProtocol>) = match dialect {
        Dialect::FramedBinary => (
            Box::new(TBinaryInputProtocol::new(
                TFramedReadTransport::new(r),
                true,
            )),
            Box::new(TBinaryOutputProtocol::new(
                TFramedWriteTransport::new(w),
                true,
            )),
        ),
        Dialect::FramedCompact => (
            Box::new(TCompactInputProtocol::new(TFramedReadTransport::new(r))),
            Box::new(TCompactOutputProtocol::new(TFramedWriteTransport::new(w))),
        ),
        Dialect::UnframedBinary => (
            Box::new(TBinaryInputProtocol::new(
                TBufferedReadTransport::new(r),
                true,
            )),
            Box::new(TBinaryOutputProtocol::new(
                TBufferedWriteTransport::new(w),
                true,
            )),
        ),
        Dialect::UnframedCompact => (
            Box::new(TCompactInputProtocol::new(TBufferedReadTransport::new(r))),
            Box::new(TCompactOutputProtocol::new(TBufferedWriteTransport::new(w))),
        ),
    };
    ExampleSyncClient::new(input, output)
}

/// A THeader client transport: buffers a call, sends it as one THeader frame
/// with info headers (and ZLIB) on flush, and reads reply frames back.
struct Header {
    stream: TcpStream,
    compact: bool,
    zlib: bool,
    info: Vec<(String, String)>,
    outgoing: Vec<u8>,
    incoming: std::io::Cursor<Vec<u8>>,
}

fn varint(out: &mut Vec<u8>, mut v: u32) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn read_varint(bytes: &[u8], pos: &mut usize) -> u32 {
    let mut v = 0u32;
    let mut shift = 0;
    loop {
        let b = bytes[*pos];
        *pos += 1;
        v |= u32::from(b & 0x7F) << shift;
        if b & 0x80 == 0 {
            return v;
        }
        shift += 7;
    }
}

/// Encodes a THeader frame (with its length).
fn header_frame(
    protocol_id: u32,
    transforms: &[u32],
    info: &[(String, String)],
    payload: &[u8],
) -> Vec<u8> {
    let mut block = Vec::new();
    varint(&mut block, protocol_id);
    varint(&mut block, transforms.len() as u32);
    for t in transforms {
        varint(&mut block, *t);
    }
    if !info.is_empty() {
        varint(&mut block, 1);
        varint(&mut block, info.len() as u32);
        for (k, v) in info {
            varint(&mut block, k.len() as u32);
            block.extend_from_slice(k.as_bytes());
            varint(&mut block, v.len() as u32);
            block.extend_from_slice(v.as_bytes());
        }
    }
    while block.len() % 4 != 0 {
        block.push(0);
    }
    let mut frame = Vec::new();
    frame.extend_from_slice(&((10 + block.len() + payload.len()) as u32).to_be_bytes());
    frame.extend_from_slice(&[0x0F, 0xFF, 0x00, 0x00]); // magic, flags
    frame.extend_from_slice(&7u32.to_be_bytes()); // header seq id
    frame.extend_from_slice(&((block.len() / 4) as u16).to_be_bytes());
    frame.extend_from_slice(&block);
    frame.extend_from_slice(payload);
    frame
}

/// Reads one THeader frame; returns (protocol id, transforms, seq id, payload as sent).
fn read_header_frame(stream: &mut TcpStream) -> std::io::Result<(u32, Vec<u32>, u32, Vec<u8>)> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len)?;
    let mut frame = vec![0u8; u32::from_be_bytes(len) as usize];
    stream.read_exact(&mut frame)?;
    assert_eq!(&frame[..2], &[0x0F, 0xFF], "a THeader reply");
    let seq = u32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let header_len = u16::from_be_bytes([frame[8], frame[9]]) as usize * 4;
    let mut pos = 10;
    let protocol = read_varint(&frame, &mut pos);
    let count = read_varint(&frame, &mut pos);
    let transforms = (0..count).map(|_| read_varint(&frame, &mut pos)).collect();
    Ok((protocol, transforms, seq, frame[10 + header_len..].to_vec()))
}

impl Write for Header {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.outgoing.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let payload = std::mem::take(&mut self.outgoing);
        let (payload, transforms) = if self.zlib {
            let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
            z.write_all(&payload)?;
            (z.finish()?, vec![1])
        } else {
            (payload, vec![])
        };
        let frame = header_frame(
            if self.compact { 2 } else { 0 },
            &transforms,
            &self.info,
            &payload,
        );
        self.stream.write_all(&frame)
    }
}

impl Read for Header {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.incoming.position() as usize >= self.incoming.get_ref().len() {
            let (protocol, transforms, seq, payload) = read_header_frame(&mut self.stream)?;
            assert_eq!(
                protocol,
                if self.compact { 2 } else { 0 },
                "the reply uses the request's protocol"
            );
            assert_eq!(seq, 7, "the header seq id is echoed");
            let payload = if transforms == vec![1] {
                let mut out = Vec::new();
                flate2::read::ZlibDecoder::new(&payload[..]).read_to_end(&mut out)?;
                out
            } else {
                assert!(transforms.is_empty());
                payload
            };
            self.incoming = std::io::Cursor::new(payload);
        }
        self.incoming.read(buf)
    }
}

#[derive(Clone)]
struct Shared(Rc<RefCell<Header>>);

impl Read for Shared {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().read(buf)
    }
}

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.borrow_mut().flush()
    }
}

fn header_client(addr: SocketAddr, compact: bool, zlib: bool, info: &[(&str, &str)]) -> Client {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let shared = Shared(Rc::new(RefCell::new(Header {
        stream,
        compact,
        zlib,
        info: info
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        outgoing: Vec::new(),
        incoming: std::io::Cursor::new(Vec::new()),
    })));
    let (input, output): (Box<dyn TInputProtocol>, Box<dyn TOutputProtocol>) = if compact {
        (
            Box::new(TCompactInputProtocol::new(shared.clone())),
            Box::new(TCompactOutputProtocol::new(shared)),
        )
    } else {
        (
            Box::new(TBinaryInputProtocol::new(shared.clone(), true)),
            Box::new(TBinaryOutputProtocol::new(shared, true)),
        )
    };
    ExampleSyncClient::new(input, output)
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
    let server = Server::start(&thrift_config(""), &[]);
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
    let mut server = Server::start(&thrift_config(""), &[]);
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

/// `sleepers` handlers sleep for 1.5 s while another client makes five
/// `is_healthy()` calls, which must not wait for them.
fn blocked_handlers_do_not_stall(options: &str, sleepers: usize) {
    let mut server = Server::start(&thrift_config(options), &[]);
    let addr = server.addr();
    let blocked: Vec<_> = (0..sleepers)
        .map(|_| std::thread::spawn(move || crate_client(addr, Dialect::FramedBinary).sleep(1500)))
        .collect();
    for _ in 0..sleepers {
        server.wait_for("sleeping for 1500 ms");
    }
    // All five calls must finish while the handlers still sleep: a stalled
    // call would wait for a sleeper to wake, about 1.5 s.
    let started = Instant::now();
    let mut client = crate_client(addr, Dialect::FramedBinary);
    for _ in 0..5 {
        assert!(client.is_healthy().unwrap());
    }
    assert!(
        started.elapsed() < Duration::from_millis(750),
        "5 is_healthy calls took {:?} while {sleepers} handler(s) slept",
        started.elapsed()
    );
    for b in blocked {
        assert!(b.join().unwrap().is_ok());
    }
}

#[test]
fn a_blocked_handler_does_not_stall_other_connections() {
    blocked_handlers_do_not_stall("", 1);
}

#[test]
fn a_blocked_handler_does_not_stall_others_with_blocking_execution() {
    blocked_handlers_do_not_stall("execution = blocking", 1);
}

#[test]
fn several_blocked_handlers_do_not_stall_others_with_hybrid_execution() {
    // More handlers block at once than there are cores here.
    blocked_handlers_do_not_stall("execution = hybrid", 4);
}

#[test]
fn execution_option_inline_and_bad_values() {
    let server = Server::start(&thrift_config("execution = inline"), &[]);
    exercise(
        &mut crate_client(server.addr(), Dialect::FramedCompact),
        "inline",
    );
    exercise(
        &mut header_client(server.addr(), true, true, &[]),
        "inline THeader",
    );

    let (code, _, stderr) = run_once(&thrift_config("execution = sometimes"), &["--check"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("[server:main] execution: expected one of dict_keys(['hybrid', 'blocking', 'block_in_place', 'inline'])"),
        "{stderr}"
    );
    let (code, _, stderr) = run_once(&thrift_config("max_frame_size = 0"), &["--check"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("[server:main] max_frame_size: 0 is not allowed"),
        "{stderr}"
    );
}
