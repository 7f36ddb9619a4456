//! OpenTelemetry export (feature `otel-grpc`), as a tracing backend reads
//! it: receivers started here for OTLP/HTTP (protobuf and JSON) and
//! OTLP/gRPC decode the export with OpenTelemetry's published protobuf
//! definitions (the `opentelemetry-proto` crate), and the tests check each
//! server span's kind, name, attributes (semconv 1.26) and status, its
//! parent from the caller's headers, and the flush at shutdown.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use baseplate::example_apps::example_thrift::TExampleSyncClient;
use common::thrift_clients::header_client;
use common::*;
use nix::sys::signal::Signal;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use prost::Message;

/// One exported span, with its resource's `service.name`.
#[derive(Debug, Clone)]
struct Exported {
    name: String,
    kind: i32,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    /// UNSET, OK or ERROR, and the description.
    status: (i32, String),
    attributes: BTreeMap<String, Value>,
    service: String,
}

impl Exported {
    fn text(&self, key: &str) -> Option<&str> {
        match self.attributes.get(key) {
            Some(Value::StringValue(s)) => Some(s),
            _ => None,
        }
    }

    fn int(&self, key: &str) -> Option<i64> {
        match self.attributes.get(key) {
            Some(Value::IntValue(n)) => Some(*n),
            _ => None,
        }
    }

    fn is_server(&self) -> bool {
        self.kind == SpanKind::Server as i32
    }

    fn is_error(&self) -> bool {
        self.status.0 == StatusCode::Error as i32
    }

    fn is_unset(&self) -> bool {
        self.status.0 == StatusCode::Unset as i32
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The spans of one export request.
fn spans_of(request: ExportTraceServiceRequest) -> Vec<Exported> {
    let mut found = Vec::new();
    for resource_spans in request.resource_spans {
        let service = resource_spans
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|a| a.key == "service.name")
            .and_then(|a| match a.value.as_ref()?.value.as_ref()? {
                Value::StringValue(s) => Some(s.clone()),
                _ => None,
            })
            .unwrap_or_default();
        for scope in resource_spans.scope_spans {
            for span in scope.spans {
                found.push(Exported {
                    name: span.name,
                    kind: span.kind,
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    status: span.status.map(|s| (s.code, s.message)).unwrap_or_default(),
                    attributes: span
                        .attributes
                        .into_iter()
                        .filter_map(|a| Some((a.key, a.value?.value?)))
                        .collect(),
                    service: service.clone(),
                });
            }
        }
    }
    found
}

/// An OTLP receiver: what it got, by path (HTTP) or service (gRPC).
struct Receiver {
    /// The base URL the server is pointed at.
    endpoint: String,
    spans: Arc<Mutex<Vec<Exported>>>,
    paths: Arc<Mutex<Vec<String>>>,
}

impl Receiver {
    /// OTLP/HTTP: `POST /v1/traces`, protobuf or JSON by `Content-Type`.
    fn http() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (spans, paths) = (Arc::default(), Arc::default());
        let (found, seen): (Arc<Mutex<Vec<_>>>, Arc<Mutex<Vec<_>>>) =
            (Arc::clone(&spans), Arc::clone(&paths));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let (found, seen) = (Arc::clone(&found), Arc::clone(&seen));
                std::thread::spawn(move || {
                    while let Some(HttpRequest {
                        path, json, body, ..
                    }) = read_request(&mut stream)
                    {
                        seen.lock().unwrap().push(path);
                        let request = if json {
                            serde_json::from_slice(&body).expect("OTLP/JSON")
                        } else {
                            ExportTraceServiceRequest::decode(body.as_slice())
                                .expect("OTLP/protobuf")
                        };
                        found.lock().unwrap().extend(spans_of(request));
                        let reply: &[u8] = if json {
                            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
                        } else {
                            b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n"
                        };
                        let _ = stream.write_all(reply);
                    }
                });
            }
        });
        Receiver {
            endpoint: format!("http://{addr}"),
            spans,
            paths,
        }
    }

    /// OTLP/gRPC: the collector's `TraceService`, served by tonic.
    fn grpc() -> Receiver {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (spans, paths) = (Arc::default(), Arc::default());
        let service = Collector {
            spans: Arc::clone(&spans),
            calls: Arc::clone(&paths),
        };
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                listener.set_nonblocking(true).unwrap();
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let incoming = tonic::transport::server::TcpIncoming::from(listener);
                tonic::transport::Server::builder()
                    .add_service(TraceServiceServer::new(service))
                    .serve_with_incoming(incoming)
                    .await
                    .unwrap();
            });
        });
        Receiver {
            endpoint: format!("http://{addr}"),
            spans,
            paths,
        }
    }

    /// Waits for the span `found` picks.
    fn wait(&self, what: &str, found: impl Fn(&Exported) -> bool) -> Exported {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(span) = self.spans.lock().unwrap().iter().find(|s| found(s)) {
                return span.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no span {what}; got {:#?}",
                self.spans.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the server span of the caller's trace `trace_id`.
    fn server_span(&self, trace_id: &str) -> Exported {
        self.wait(&format!("in trace {trace_id}"), |s| {
            s.trace_id == trace_id && s.parent_span_id.len() == 16
        })
    }
}

struct Collector {
    spans: Arc<Mutex<Vec<Exported>>>,
    calls: Arc<Mutex<Vec<String>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.calls.lock().unwrap().push("grpc".to_string());
        self.spans
            .lock()
            .unwrap()
            .extend(spans_of(request.into_inner()));
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// One HTTP/1.1 request, its body read by `Content-Length`.
struct HttpRequest {
    head: String,
    path: String,
    json: bool,
    body: Vec<u8>,
}

fn read_request(stream: &mut std::net::TcpStream) -> Option<HttpRequest> {
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
    let header = |wanted: &str| {
        head.lines().find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case(wanted)
                .then(|| value.trim().to_string())
        })
    };
    let length: usize = header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let json = header("content-type").is_some_and(|t| t.contains("json"));
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(HttpRequest {
        head,
        path,
        json,
        body,
    })
}

fn serve(config: &str, env: &[(&str, &str)]) -> Server {
    serve_with(&binary(), config, env)
}

/// `program` (baseplate-serve, or an example) serving `config`.
fn serve_with(program: &std::path::Path, config: &str, env: &[(&str, &str)]) -> Server {
    let dir = TempDir::new();
    let path = dir.write("app.ini", config);
    let mut command = Command::new(program);
    command.arg("--bind").arg("127.0.0.1:0").arg(&path);
    // Only what the test sets.
    for (name, _) in std::env::vars() {
        if name.starts_with("OTEL_") {
            command.env_remove(name);
        }
    }
    command.env("OTEL_BSP_SCHEDULE_DELAY", "100");
    for (k, v) in env {
        command.env(k, v);
    }
    let mut server = Server::spawn(command, dir);
    server.addr = Some(server.wait_listening());
    server
}

/// The example HTTP app exporting to `receiver` with `protocol`.
fn http_app(receiver: &Receiver, protocol: &str) -> Server {
    serve(
        &config_with(""),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
            ("OTEL_SERVICE_NAME", "otel-test"),
        ],
    )
}

/// A W3C `traceparent` of trace `n`, from caller span `n`.
fn traceparent(n: u32) -> (String, String) {
    let trace_id = format!("{n:032x}");
    (format!("00-{trace_id}-{n:016x}-01"), trace_id)
}

/// A request in trace `n`; its span.
fn traced(
    server: &Server,
    receiver: &Receiver,
    n: u32,
    method: &str,
    path: &str,
) -> (u16, Exported) {
    let (header, trace_id) = traceparent(n);
    let r = request(
        server.addr(),
        method,
        path,
        &[("traceparent", &header), ("User-Agent", "otel-test/1.0")],
        b"",
    );
    let span = receiver.server_span(&trace_id);
    assert_eq!(span.parent_span_id, format!("{n:016x}"), "{span:#?}");
    assert_eq!(span.span_id.len(), 16);
    assert_ne!(span.span_id, span.parent_span_id);
    (r.status, span)
}

/// Every HTTP check, whatever the OTLP transport.
fn http_spans_follow_the_conventions(receiver: &Receiver, protocol: &str) {
    let mut server = http_app(receiver, protocol);

    let (status, ok) = traced(&server, receiver, 1, "GET", "/");
    assert_eq!(status, 200);
    assert!(ok.is_server(), "{ok:#?}");
    assert_eq!(ok.name, "GET /");
    assert_eq!(ok.service, "otel-test");
    assert_eq!(ok.text("http.request.method"), Some("GET"));
    assert_eq!(ok.text("http.route"), Some("/"));
    assert_eq!(ok.int("http.response.status_code"), Some(200));
    assert_eq!(ok.text("url.path"), Some("/"));
    assert_eq!(ok.text("url.scheme"), Some("http"));
    assert_eq!(ok.text("server.address"), Some("test"));
    assert_eq!(ok.text("network.protocol.version"), Some("1.1"));
    assert_eq!(ok.text("user_agent.original"), Some("otel-test/1.0"));
    assert_eq!(
        ok.text("baseplate.trace_id"),
        Some(format!("{:032x}", 1).as_str())
    );
    assert!(ok.is_unset(), "{ok:#?}");
    for old in ["method", "route", "trace_id", "parent_id"] {
        assert!(!ok.attributes.contains_key(old), "{old} in {ok:#?}");
    }

    // No route matched: the raw path only in url.path.
    let (status, missing) = traced(&server, receiver, 2, "GET", "/scanned/wp-login.php");
    assert_eq!(status, 404);
    assert_eq!(missing.name, "GET");
    assert_eq!(missing.text("http.route"), None);
    assert_eq!(missing.text("url.path"), Some("/scanned/wp-login.php"));
    assert!(
        missing.is_unset(),
        "a 4xx leaves the status unset: {missing:#?}"
    );

    let (status, panicked) = traced(&server, receiver, 3, "GET", "/panic");
    assert_eq!(status, 500);
    assert_eq!(panicked.name, "GET /panic");
    assert!(panicked.is_error(), "{panicked:#?}");
    assert_eq!(panicked.text("error.type"), Some("500"));

    let (status, unavailable) = traced(&server, receiver, 4, "GET", "/status?code=503");
    assert_eq!(status, 503);
    assert_eq!(unavailable.name, "GET /status");
    assert_eq!(unavailable.text("url.path"), Some("/status"));
    assert!(unavailable.is_error(), "{unavailable:#?}");
    assert_eq!(unavailable.text("error.type"), Some("503"));

    // What a client sends is bounded on the span: 1 KiB.
    let (long_path, long_agent) = (format!("/{}", "p".repeat(5000)), "a".repeat(5000));
    let (header, trace_id) = traceparent(6);
    let r = request(
        server.addr(),
        "GET",
        &long_path,
        &[("traceparent", &header), ("User-Agent", &long_agent)],
        b"",
    );
    assert_eq!(r.status, 404);
    let long = receiver.server_span(&trace_id);
    assert_eq!(long.text("url.path"), Some(&long_path[..1024]));
    assert_eq!(long.text("user_agent.original"), Some(&long_agent[..1024]));

    // A method of the client's own making cannot name spans.
    let (_, brewed) = traced(&server, receiver, 5, "BREW", "/");
    assert_eq!(brewed.name, "HTTP");
    assert_eq!(brewed.text("http.request.method"), Some("_OTHER"));
    assert_eq!(brewed.text("http.request.method_original"), Some("BREW"));

    // baseplate's own headers name the parent too.
    let r = request(
        server.addr(),
        "GET",
        "/",
        &[("X-Trace", "1234"), ("X-Span", "5678"), ("X-Sampled", "1")],
        b"",
    );
    assert_eq!(r.status, 200);
    let baseplate = receiver.server_span(&format!("{:032x}", 1234));
    assert_eq!(baseplate.parent_span_id, format!("{:016x}", 5678));

    // A request with no trace is a root span, flushed at shutdown, and
    // shutdown is not held up.
    get(server.addr(), "/config");
    server.signal(Signal::SIGTERM);
    let started = Instant::now();
    assert!(server.wait_exit(WAIT).success(), "{}", server.output());
    assert!(started.elapsed() < Duration::from_secs(10));
    receiver.wait("GET /config, a root span", |s| {
        s.name == "GET /config" && s.parent_span_id.is_empty()
    });
}

#[test]
fn http_spans_over_otlp_http_follow_the_http_conventions() {
    let receiver = Receiver::http();
    http_spans_follow_the_conventions(&receiver, "http/protobuf");
    let paths: std::collections::BTreeSet<String> =
        receiver.paths.lock().unwrap().iter().cloned().collect();
    assert_eq!(paths, ["/v1/traces".to_string()].into_iter().collect());
}

#[test]
fn http_spans_over_otlp_grpc_follow_the_http_conventions() {
    let receiver = Receiver::grpc();
    http_spans_follow_the_conventions(&receiver, "grpc");
    assert!(!receiver.paths.lock().unwrap().is_empty());
}

#[test]
fn otlp_json_carries_the_same_spans() {
    let receiver = Receiver::http();
    let server = http_app(&receiver, "http/json");
    let (status, span) = traced(&server, &receiver, 7, "GET", "/");
    assert_eq!(status, 200);
    assert!(span.is_server());
    assert_eq!(span.name, "GET /");
    assert_eq!(span.int("http.response.status_code"), Some(200));
}

/// The async example Thrift app exporting to `receiver`, configured in
/// its app section, with a 300 ms server timeout.
fn thrift_app(receiver: &Receiver, protocol: &str, env: &[(&str, &str)]) -> Server {
    thrift_app_of(
        "baseplate.examples.thrift_async:make_service",
        receiver,
        protocol,
        env,
    )
}

/// The Thrift app `factory` makes, exporting as [`thrift_app`]'s does.
fn thrift_app_of(
    factory: &str,
    receiver: &Receiver,
    protocol: &str,
    env: &[(&str, &str)],
) -> Server {
    let config = format!(
        "[server:main]\nfactory = baseplate.server.thrift\n\n\
         [app:main]\nfactory = {factory}\n\
         tracing.endpoint = {}\ntracing.protocol = {protocol}\n\
         tracing.service_name = thrift-otel\nserver_timeout.default = 300 milliseconds\n",
        receiver.endpoint
    );
    serve(&config, env)
}

/// Every Thrift check, whatever the OTLP transport.
fn thrift_spans_follow_the_rpc_conventions(receiver: &Receiver, protocol: &str) {
    let server = thrift_app(receiver, protocol, &[]);
    let call = |n: u32| {
        let trace = format!("{n:x}");
        let span = format!("{}", 100 + n);
        header_client(
            server.addr(),
            false,
            false,
            &[
                ("Trace", &trace),
                ("Span", &span),
                ("Sampled", "1"),
                ("User-Agent", "otel-test"),
            ],
        )
    };
    let trace_of = |n: u32| format!("{n:032x}");

    // Free-form headers are bounded on the span: 256 bytes.
    let agent = "a".repeat(5000);
    let mut long = header_client(
        server.addr(),
        false,
        false,
        &[
            ("Trace", "9"),
            ("Span", "109"),
            ("Sampled", "1"),
            ("User-Agent", &agent),
        ],
    );
    assert_eq!(long.add(2, 2).unwrap(), 4);
    let bounded = receiver.server_span(&trace_of(9));
    assert_eq!(bounded.text("baseplate.user_agent"), Some(&agent[..256]));

    assert_eq!(call(1).echo("hi".into()).unwrap(), "hi");
    let echo = receiver.server_span(&trace_of(1));
    assert_eq!(echo.parent_span_id, format!("{:016x}", 101));
    assert!(echo.is_server(), "{echo:#?}");
    assert_eq!(echo.name, "Example/echo");
    assert_eq!(echo.service, "thrift-otel");
    assert_eq!(echo.text("rpc.system"), Some("thrift"));
    assert_eq!(echo.text("rpc.service"), Some("Example"));
    assert_eq!(echo.text("rpc.method"), Some("echo"));
    assert_eq!(echo.text("baseplate.trace_id"), Some("1"));
    assert_eq!(echo.text("baseplate.user_agent"), Some("otel-test"));
    assert!(echo.is_unset(), "{echo:#?}");
    for old in ["method", "trace_id", "user_agent", "deadline_budget"] {
        assert!(!echo.attributes.contains_key(old), "{old} in {echo:#?}");
    }

    // A declared exception is the API's answer: unset, and named.
    assert!(call(2).fail("no".into()).is_err());
    let declared = receiver.server_span(&trace_of(2));
    assert_eq!(declared.name, "Example/fail");
    assert!(declared.is_unset(), "{declared:#?}");
    assert_eq!(declared.text("baseplate.thrift.exception"), Some("Oops"));

    // A handler that panics, and one past the server timeout: ERROR.
    assert!(call(3).crash("boom".into()).is_err());
    let crashed = receiver.server_span(&trace_of(3));
    assert!(crashed.is_error(), "{crashed:#?}");
    assert_eq!(crashed.text("error.type"), Some("panic"));

    assert!(call(4).sleep(5_000).is_err());
    let timed_out = receiver.server_span(&trace_of(4));
    assert_eq!(timed_out.name, "Example/sleep");
    assert!(timed_out.is_error(), "{timed_out:#?}");
    assert_eq!(timed_out.text("error.type"), Some("timeout"));
    assert!(
        timed_out.status.1.contains("timed out after 300 ms"),
        "{timed_out:#?}"
    );
}

#[test]
fn thrift_spans_over_otlp_http_follow_the_rpc_conventions() {
    thrift_spans_follow_the_rpc_conventions(&Receiver::http(), "http/protobuf");
}

#[test]
fn thrift_spans_over_otlp_grpc_follow_the_rpc_conventions() {
    thrift_spans_follow_the_rpc_conventions(&Receiver::grpc(), "grpc");
}

/// A sync processor (`thrift --gen rs`'s shape) names its service too:
/// from its type, `ExampleSyncProcessor`.
#[test]
fn a_sync_processors_spans_name_its_service() {
    let receiver = Receiver::http();
    let server = thrift_app_of(
        "baseplate.examples.thrift:make_processor",
        &receiver,
        "http/protobuf",
        &[],
    );
    let headers = [("Trace", "31"), ("Span", "1"), ("Sampled", "1")];
    let mut client = header_client(server.addr(), false, false, &headers);
    assert_eq!(client.add(2, 3).unwrap(), 5);
    let call = receiver.server_span(&format!("{:032x}", 31));
    assert_eq!(call.name, "Example/add");
    assert_eq!(call.text("rpc.service"), Some("Example"));
    assert_eq!(call.text("rpc.method"), Some("add"));
    assert!(call.is_unset(), "{call:#?}");
}

/// Log levels choose log lines: the server's spans are exported at any.
#[test]
fn server_spans_are_exported_whatever_the_log_level() {
    let receiver = Receiver::http();
    let server = serve(
        &config_with(""),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint),
            ("RUST_LOG", "warn,baseplate::serve::startup=info"),
        ],
    );
    let (status, span) = traced(&server, &receiver, 21, "GET", "/");
    assert_eq!(status, 200);
    assert_eq!(span.name, "GET /");
    let thrift = thrift_app(
        &receiver,
        "http/protobuf",
        &[("RUST_LOG", "warn,baseplate::serve::startup=info")],
    );
    let headers = [("Trace", "22"), ("Span", "1"), ("Sampled", "1")];
    let mut client = header_client(thrift.addr(), false, false, &headers);
    assert_eq!(client.add(1, 2).unwrap(), 3);
    let call = receiver.server_span(&format!("{:032x}", 22));
    assert_eq!(call.name, "Example/add");
}

#[test]
fn an_unknown_protocol_stops_startup_and_says_which_are_spoken() {
    // In the ini, located; --check (a --reload restart's first step) finds it.
    let config = format!(
        "{}tracing.endpoint = http://127.0.0.1:9\ntracing.protocol = thrift\n",
        config_with("")
    );
    let (code, _, stderr) = run_once_with_env(&config, &["--check"], &[]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr
            .contains("app.ini:7: [app:main] tracing.protocol: \"thrift\" is not an OTLP protocol"),
        "{stderr}"
    );
    let (code, _, stderr) = run_once_with_env(
        &config_with(""),
        &[],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "thrift"),
        ],
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(
            "OTEL_EXPORTER_OTLP_PROTOCOL=\"thrift\": \"thrift\" is not an OTLP protocol; \
             expected grpc, http/protobuf or http/json"
        ),
        "{stderr}"
    );
}

/// `examples/traced_call.rs`, built with this test's features (a filtered
/// `cargo test` builds no example).
fn traced_call_example() -> std::path::PathBuf {
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "--example",
            "traced_call",
            "--features",
            "otel-grpc",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .unwrap();
    assert!(status.success(), "cargo build --example traced_call failed");
    binary()
        .parent()
        .unwrap()
        .join("examples")
        .join("traced_call")
}

/// The example's handler calls a service (a listener here) with the trace
/// on the request: `traceparent` names the caller's trace and, as the
/// parent, the very span the server exported for the request.
#[test]
fn a_handlers_outgoing_call_carries_its_span_as_traceparent() {
    let receiver = Receiver::http();
    let downstream = TcpListener::bind("127.0.0.1:0").unwrap();
    let downstream_addr = downstream.local_addr().unwrap();
    let (heads, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in downstream.incoming() {
            let Ok(mut stream) = stream else { continue };
            if let Some(request) = read_request(&mut stream) {
                let _ = stream.write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n");
                let _ = heads.send(request.head);
            }
        }
    });
    let config = format!(
        "[server:main]\nfactory = baseplate.server.wsgi\n\n\
         [app:main]\nfactory = my_service.web:make_app\ndownstream = {downstream_addr}\n"
    );
    let server = serve_with(
        &traced_call_example(),
        &config,
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint)],
    );
    let (header, trace_id) = traceparent(11);
    let r = request(server.addr(), "GET", "/", &[("traceparent", &header)], b"");
    assert_eq!(
        String::from_utf8_lossy(&r.body),
        "downstream answered 204 No Content\n"
    );
    let head = received.recv_timeout(WAIT).unwrap();
    let sent = head
        .lines()
        .find_map(|l| l.strip_prefix("traceparent: "))
        .unwrap_or_else(|| panic!("no traceparent in {head:?}"));
    let span = receiver.server_span(&trace_id);
    assert_eq!(sent, format!("00-{trace_id}-{}-01", span.span_id));
}

#[test]
fn without_an_endpoint_nothing_is_exported_and_serving_is_unchanged() {
    let receiver = Receiver::http();
    let mut server = serve(&config_with(""), &[]);
    assert_eq!(get(server.addr(), "/").status, 200);
    server.signal(Signal::SIGTERM);
    assert!(server.wait_exit(WAIT).success());
    assert!(receiver.paths.lock().unwrap().is_empty());
}

/// `baseplate-serve ARGS` run to completion with `config` and `env`: exit
/// code, stdout, stderr.
fn run_once_with_env(config: &str, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let dir = TempDir::new();
    let path = dir.write("app.ini", config);
    let mut command = Command::new(binary());
    command
        .args(args)
        .arg("--bind")
        .arg("127.0.0.1:0")
        .arg(&path);
    for (k, v) in env {
        command.env(k, v);
    }
    let output = command.output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
