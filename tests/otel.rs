//! OpenTelemetry export (feature `otel`) against an OTLP/HTTP sink started
//! here: the `request` and `rpc` spans arrive with the caller's trace id
//! and parent span, from W3C `traceparent` or baseplate's headers. The
//! sink decodes the protobuf itself, independently of the exporter.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use baseplate::example_apps::example_thrift::TExampleSyncClient;
use common::thrift_clients::header_client;
use common::*;
use nix::sys::signal::Signal;

/// One exported span, as the sink read it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Span {
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    service: String,
}

/// An OTLP/HTTP receiver: every `POST /v1/traces` body, decoded.
struct Sink {
    addr: SocketAddr,
    spans: Arc<Mutex<Vec<Span>>>,
    paths: Arc<Mutex<Vec<String>>>,
}

impl Sink {
    fn start() -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let spans = Arc::new(Mutex::new(Vec::new()));
        let paths = Arc::new(Mutex::new(Vec::new()));
        let (found, seen) = (Arc::clone(&spans), Arc::clone(&paths));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let found = Arc::clone(&found);
                let seen = Arc::clone(&seen);
                std::thread::spawn(move || loop {
                    let Some((path, body)) = read_request(&mut stream) else {
                        return;
                    };
                    seen.lock().unwrap().push(path);
                    found.lock().unwrap().extend(decode_request(&body));
                    // An empty ExportTraceServiceResponse.
                    let _ = stream.write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n",
                    );
                });
            }
        });
        Sink { addr, spans, paths }
    }

    /// Waits until a span named `name` with this trace id has arrived.
    fn wait_for(&self, name: &str, trace_id: &str) -> Span {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(span) = self
                .spans
                .lock()
                .unwrap()
                .iter()
                .find(|s| s.name == name && s.trace_id == trace_id)
            {
                return span.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no {name} span with trace id {trace_id}; got {:#?}",
                self.spans.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// One HTTP/1.1 request: its path and body (by `Content-Length`).
fn read_request(stream: &mut std::net::TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let path = head.split(' ').nth(1)?.to_string();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some((path, body))
}

/// The fields of a protobuf message: (number, wire type, varint or bytes).
fn fields(mut bytes: &[u8]) -> Vec<(u64, u8, u64, &[u8])> {
    fn varint(bytes: &mut &[u8]) -> u64 {
        let mut value = 0u64;
        let mut shift = 0;
        while let Some((&b, rest)) = bytes.split_first() {
            *bytes = rest;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        value
    }
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let key = varint(&mut bytes);
        let (number, wire) = (key >> 3, (key & 7) as u8);
        match wire {
            0 => {
                let v = varint(&mut bytes);
                out.push((number, wire, v, &[][..]));
            }
            1 | 5 => {
                let n = if wire == 1 { 8 } else { 4 };
                let (v, rest) = bytes.split_at(n);
                bytes = rest;
                out.push((number, wire, 0, v));
            }
            2 => {
                let n = varint(&mut bytes) as usize;
                let (v, rest) = bytes.split_at(n);
                bytes = rest;
                out.push((number, wire, 0, v));
            }
            other => panic!("wire type {other}"),
        }
    }
    out
}

fn field(bytes: &[u8], number: u64) -> Vec<&[u8]> {
    fields(bytes)
        .into_iter()
        .filter(|f| f.0 == number && f.1 == 2)
        .map(|f| f.3)
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// ExportTraceServiceRequest → ResourceSpans (1) → {Resource (1),
/// ScopeSpans (2) → Span (2)}; Span: trace_id 1, span_id 2,
/// parent_span_id 4, name 5.
fn decode_request(body: &[u8]) -> Vec<Span> {
    let mut spans = Vec::new();
    for resource_spans in field(body, 1) {
        let service = field(resource_spans, 1)
            .first()
            .map(|resource| {
                field(resource, 1)
                    .into_iter()
                    .find(|kv| field(kv, 1).first() == Some(&&b"service.name"[..]))
                    .and_then(|kv| field(kv, 2).first().copied())
                    .and_then(|any| field(any, 1).first().copied())
                    .map(|s| String::from_utf8_lossy(s).to_string())
                    .unwrap_or_default()
            })
            .unwrap_or_default();
        for scope_spans in field(resource_spans, 2) {
            for span in field(scope_spans, 2) {
                let one = |n| field(span, n).first().copied().unwrap_or_default();
                spans.push(Span {
                    name: String::from_utf8_lossy(one(5)).to_string(),
                    trace_id: hex(one(1)),
                    span_id: hex(one(2)),
                    parent_span_id: hex(one(4)),
                    service: service.clone(),
                });
            }
        }
    }
    spans
}

fn serve(config: &str, env: &[(&str, String)]) -> Server {
    let dir = TempDir::new();
    let path = dir.write("app.ini", config);
    let mut command = Command::new(binary());
    command.arg("--bind").arg("127.0.0.1:0").arg(&path);
    // Only what the test sets.
    for name in [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_SDK_DISABLED",
        "OTEL_SERVICE_NAME",
    ] {
        command.env_remove(name);
    }
    for (k, v) in env {
        command.env(k, v);
    }
    let mut server = Server::spawn(command, dir);
    server.addr = Some(server.wait_listening());
    server
}

#[test]
fn http_spans_are_exported_with_the_callers_trace_and_parent() {
    let sink = Sink::start();
    let mut server = serve(
        &config_with(""),
        &[
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("http://{}", sink.addr),
            ),
            ("OTEL_SERVICE_NAME", "otel-test".to_string()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100".to_string()),
        ],
    );
    let r = request(
        server.addr(),
        "GET",
        "/",
        &[(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )],
        b"",
    );
    assert_eq!(r.status, 200);
    let r = request(
        server.addr(),
        "GET",
        "/",
        &[("X-Trace", "1234"), ("X-Span", "5678"), ("X-Sampled", "1")],
        b"",
    );
    assert_eq!(r.status, 200);

    let w3c = sink.wait_for("request", "0af7651916cd43dd8448eb211c80319c");
    assert_eq!(w3c.parent_span_id, "b7ad6b7169203331");
    assert_eq!(w3c.service, "otel-test");
    assert_eq!(w3c.span_id.len(), 16);
    assert_ne!(w3c.span_id, w3c.parent_span_id);
    let baseplate = sink.wait_for("request", &format!("{:032x}", 1234));
    assert_eq!(baseplate.parent_span_id, format!("{:016x}", 5678));
    assert_eq!(
        sink.paths
            .lock()
            .unwrap()
            .iter()
            .collect::<std::collections::BTreeSet<_>>(),
        [&"/v1/traces".to_string()].into_iter().collect()
    );

    // A request with no trace is a root span, and shutdown is not held up.
    get(server.addr(), "/");
    server.signal(Signal::SIGTERM);
    let started = Instant::now();
    assert!(server.wait_exit(WAIT).success(), "{}", server.output());
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        sink.spans
            .lock()
            .unwrap()
            .iter()
            .any(|s| s.name == "request" && s.parent_span_id.is_empty()),
        "the last span was flushed at shutdown"
    );
}

#[test]
fn thrift_spans_are_exported_to_the_configured_endpoint() {
    let sink = Sink::start();
    let config = format!(
        "[server:main]\nfactory = baseplate.server.thrift\n\n[app:main]\nfactory = baseplate.examples.thrift:make_processor\ntracing.endpoint = http://{}\ntracing.service_name = thrift-otel\n",
        sink.addr
    );
    let server = serve(&config, &[("OTEL_BSP_SCHEDULE_DELAY", "100".to_string())]);
    let mut client = header_client(
        server.addr(),
        false,
        false,
        &[
            ("Trace", "abcdef0123456789"),
            ("Span", "42"),
            ("Sampled", "1"),
        ],
    );
    assert_eq!(client.echo("hi".into()).unwrap(), "hi");
    let span = sink.wait_for("rpc", &format!("{:0>32}", "abcdef0123456789"));
    assert_eq!(span.parent_span_id, format!("{:016x}", 42));
    assert_eq!(span.service, "thrift-otel");
}

#[test]
fn without_an_endpoint_nothing_is_exported_and_serving_is_unchanged() {
    let sink = Sink::start();
    let mut server = serve(
        &config_with(""),
        &[("OTEL_BSP_SCHEDULE_DELAY", "50".to_string())],
    );
    assert_eq!(get(server.addr(), "/").status, 200);
    server.signal(Signal::SIGTERM);
    assert!(server.wait_exit(WAIT).success());
    assert!(sink.paths.lock().unwrap().is_empty());
}
