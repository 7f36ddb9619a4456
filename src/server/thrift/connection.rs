//! One Thrift connection: read bytes until a whole message is there, then
//! answer it in four steps ([`unwrap`](super::frame::unwrap), [`context`],
//! [`run`], [`wrap`](super::frame::wrap)) and write the reply, until the
//! peer leaves or shutdown ends it.

use std::sync::Arc;

use bytes::BytesMut;
use thrift::protocol::TMessageType;
use thrift::{ApplicationError, ApplicationErrorKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;
use tower::{Service, ServiceExt};
use tracing::{error, field::Empty, warn, Instrument, Span};

use super::context;
use super::errors::{HandlerPanicked, MalformedCall};
use super::frame::{self, Next, Unwrapped};
use super::timeout::{Budget, ServerTimeouts};
use crate::app::thrift::{
    exception_message, CallOutcome, ThriftRequest, ThriftResponse, ThriftService, TraceContext,
};
use crate::health::thrift::ThriftProbes;
use crate::metrics::Metrics;
#[cfg(feature = "otel")]
use crate::otel::semconv::RpcEnd;
use crate::server::catch_unwind::{self, CatchUnwind};
use crate::server::listener::Stream;
use crate::server::shutdown::{Shutdown, FIRST_REQUEST_GRACE};
use crate::server::tracker::{ConnectionHandle, RequestInfo};
use crate::trace::{self, TraceId};
use crate::wire::codec::{header, is_unknown_method, peek_message, split_service};
use crate::wire::dialect::Dialect;

/// The longest free-form header value copied into a call's log lines.
const MAX_LOGGED_HEADER: usize = 256;

/// The longest method name accepted, `Service:` prefix included. No IDL
/// has longer ones; a call naming one closes its connection before the
/// name is used anywhere (logs, metrics, the SIGUSR1 dump).
pub(crate) const MAX_METHOD_NAME: usize = 256;

/// The most calls of one connection that may hold handler threads at once
/// (running, or still running after their timeout reply): past it, the
/// connection's next call waits for one of them to end, within its own
/// deadline. A connection's calls are answered one at a time, so only calls
/// abandoned at their deadline add up; this keeps one connection whose
/// calls keep timing out from taking every handler thread.
pub(crate) const MAX_HANDLERS_PER_CONNECTION: usize = 8;

/// The room made in a connection's buffer before each read.
const READ_SIZE: usize = 16 * 1024;

/// The settings every connection of one server shares.
pub(super) struct ServerSettings {
    /// The largest message accepted, framed or not, in bytes.
    pub(super) max_frame_size: usize,
    /// The app's `server_timeout.*` settings.
    pub(super) timeouts: ServerTimeouts,
    /// Where calls are counted, with metrics on.
    pub(super) metrics: Option<Arc<Metrics>>,
    /// The server's answer to `is_healthy`, unless the app answers it.
    pub(super) probes: Option<ThriftProbes>,
}

/// Serves one connection. An error closes it (and is logged by the caller).
pub(super) async fn serve(
    mut stream: Stream,
    connection: ConnectionHandle,
    mut service: ThriftService,
    settings: &ServerSettings,
    mut shutdown: Shutdown,
) -> Result<(), String> {
    let max = settings.max_frame_size;
    // Reads land straight in `buf`; each whole message is split off it
    // without a copy and handed to the app.
    let mut buf = BytesMut::new();
    let mut need = 1;
    let mut dialect = None;
    let mut scanning = None;
    // One registration with the shutdown signal for the connection's life,
    // instead of one per read.
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_HANDLERS_PER_CONNECTION));
    let triggered = shutdown.clone();
    let stopping = shutdown.wait();
    tokio::pin!(stopping);
    loop {
        if buf.len() >= need {
            match frame::next_message(&buf, max, &mut scanning)? {
                Next::NeedMore(n) => need = n,
                Next::Message(found) => {
                    keep_dialect(&mut dialect, found.dialect)?;
                    let message = buf.split_to(found.body.end).freeze();
                    let body = message.slice(found.body);
                    let reply = match frame::unwrap(body, found.dialect, max)? {
                        Ok(unwrapped) => {
                            let call =
                                answer(unwrapped, settings, &mut service, &connection, &slots);
                            match while_connected(call, &mut stream, &mut buf, max).await? {
                                Some(reply) => reply,
                                // The client left: its call was dropped.
                                None => return Ok(()),
                            }
                        }
                        Err(reply) => reply,
                    };
                    need = 1;
                    if !reply.is_empty() {
                        write_reply(&mut stream, &reply).await?;
                    }
                    if triggered.is_triggered() && buf.is_empty() {
                        return Ok(());
                    }
                    continue;
                }
            }
        }
        if !read_more(&mut stream, &mut buf, stopping.as_mut(), dialect.is_some()).await? {
            return Ok(());
        }
    }
}

/// Every message of a connection is in the dialect of its first.
fn keep_dialect(dialect: &mut Option<Dialect>, found: Dialect) -> Result<(), String> {
    match *dialect {
        Some(first) if first != found => {
            Err(format!("the client switched from {first:?} to {found:?}"))
        }
        _ => {
            *dialect = Some(found);
            Ok(())
        }
    }
}

async fn write_reply(stream: &mut Stream, reply: &[u8]) -> Result<(), String> {
    stream
        .write_all(reply)
        .await
        .map_err(|e| format!("write failed: {e}"))
}

/// Reads more of the connection into `buf`: `Ok(false)` when it should
/// end quietly (the client closed it between messages, or the server is
/// stopping and it is idle). An idle connection closes at once at
/// `stopping`, except a brand-new one (no call yet, `called` false), which
/// gets a moment for its first call; a message in progress is finished.
async fn read_more(
    stream: &mut Stream,
    buf: &mut BytesMut,
    stopping: std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
    called: bool,
) -> Result<bool, String> {
    let idle = buf.is_empty();
    buf.reserve(READ_SIZE);
    let read = tokio::select! {
        // Bytes already there win over the shutdown.
        biased;
        read = stream.read_buf(buf) => Some(read),
        _ = stopping, if idle => None,
    };
    let read = match read {
        Some(read) => read,
        None if called => return Ok(false),
        None => match tokio::time::timeout(FIRST_REQUEST_GRACE, stream.read_buf(buf)).await {
            Ok(read) => read,
            Err(_) => return Ok(false),
        },
    }
    .map_err(|e| format!("read failed: {e}"))?;
    if read == 0 && !buf.is_empty() {
        return Err(format!(
            "the client closed the connection in the middle of a message ({} bytes)",
            buf.len()
        ));
    }
    Ok(read != 0)
}

/// Runs `call` while reading on: bytes a pipelining client sends meanwhile
/// are kept in `buf` (up to `max`), and if the client closes the connection
/// the call is dropped (`None`), so a handler still queued never starts.
async fn while_connected(
    call: impl std::future::Future<Output = Result<Vec<u8>, String>>,
    stream: &mut Stream,
    buf: &mut BytesMut,
    max: usize,
) -> Result<Option<Vec<u8>>, String> {
    tokio::pin!(call);
    loop {
        let room = buf.len() < max;
        if room {
            buf.reserve(READ_SIZE.min(max - buf.len()));
        }
        tokio::select! {
            biased;
            reply = &mut call => return reply.map(Some),
            read = stream.read_buf(buf), if room => match read {
                Ok(0) => return Ok(None),
                Ok(_) => {}
                Err(e) => return Err(format!("read failed: {e}")),
            },
        }
    }
}

/// Answers one message: the bytes to send back (none for a one-way call).
async fn answer(
    unwrapped: Unwrapped,
    settings: &ServerSettings,
    service: &mut ThriftService,
    connection: &ConnectionHandle,
    slots: &Arc<tokio::sync::Semaphore>,
) -> Result<Vec<u8>, String> {
    let wrap = unwrapped.wrap.clone();
    let protocol = unwrapped.protocol;
    let (request, spans) = context(unwrapped, settings, slots)?;
    let _in_flight = connection.begin_request(
        RequestInfo::Thrift(Arc::clone(&request.method)),
        request.trace.trace_id.clone(),
    );
    let oneway = request.is_oneway();
    if settings.metrics.is_none() && spans.server.is_none() {
        let (response, _) = run(request, &spans, service, settings).await?;
        if oneway {
            return Ok(Vec::new());
        }
        return Ok(frame::wrap(&wrap, protocol, response.into_message()));
    }
    let started = Instant::now();
    let method = Arc::clone(&request.method);
    let active = settings
        .metrics
        .as_ref()
        .map(|metrics| metrics.thrift_call_started(&method));
    let result = run(request, &spans, service, settings).await;
    let (response, answered_by) = match result {
        Ok(answered) => answered,
        Err(e) => {
            let outcome = CallOutcome::application_exception();
            if let (Some(metrics), Some(active)) = (&settings.metrics, &active) {
                active.series().record(metrics, &outcome, started.elapsed());
            }
            #[cfg(feature = "otel")]
            spans.end(RpcEnd::Failed {
                error_type: "malformed",
                message: &e,
            });
            return Err(e);
        }
    };
    drop(active);
    let outcome = call_outcome(protocol, &response);
    if let Some(metrics) = &settings.metrics {
        let knew = matches!(answered_by, AnsweredBy::App)
            && !(outcome == CallOutcome::application_exception()
                && is_unknown_method(protocol, response.message()));
        metrics
            .thrift_method_answered(&method, knew)
            .record(metrics, &outcome, started.elapsed());
    }
    #[cfg(feature = "otel")]
    spans.end(rpc_end(&answered_by, &outcome));
    if oneway {
        return Ok(Vec::new());
    }
    Ok(frame::wrap(&wrap, protocol, response.into_message()))
}

/// What a call's reply says of it: the exception it raised, if any.
fn call_outcome(
    protocol: crate::wire::dialect::Protocol,
    response: &ThriftResponse,
) -> CallOutcome {
    match response.outcome() {
        Some(outcome) => outcome.clone(),
        // Encoded by hand: only its message type tells.
        None => match peek_message(protocol, response.message()) {
            Some(ident) if ident.message_type == TMessageType::Exception => {
                CallOutcome::application_exception()
            }
            _ => CallOutcome::default(),
        },
    }
}

/// How the call ended, for its exported span.
#[cfg(feature = "otel")]
fn rpc_end<'a>(answered_by: &'a AnsweredBy, outcome: &'a CallOutcome) -> RpcEnd<'a> {
    if let AnsweredBy::Server(failure) = answered_by {
        return RpcEnd::Failed {
            error_type: failure.kind.as_str(),
            message: &failure.message,
        };
    }
    match &outcome.exception {
        None => RpcEnd::Replied,
        Some(raised) if raised.type_name == "TApplicationException" => RpcEnd::Failed {
            error_type: "TApplicationException",
            message: "the app answered with a TApplicationException",
        },
        Some(raised) => RpcEnd::Declared {
            type_name: &raised.type_name,
            code: raised.code,
        },
    }
}

/// A call's spans: the log span whose fields are on its log lines, and the
/// SERVER span exported beside it (while spans are exported).
struct CallSpans {
    log: Span,
    server: Option<Span>,
}

#[cfg(feature = "otel")]
impl CallSpans {
    /// Records how the call ended on its exported span.
    fn end(&self, end: RpcEnd<'_>) {
        if let Some(server) = &self.server {
            crate::otel::semconv::rpc_end(server, end);
        }
    }
}

/// The call as the app sees it, and its spans: method, trace ids and the
/// deadline, from the message header and the info headers.
fn context(
    unwrapped: Unwrapped,
    settings: &ServerSettings,
    slots: &Arc<tokio::sync::Semaphore>,
) -> Result<(ThriftRequest, CallSpans), String> {
    let Unwrapped {
        protocol,
        message,
        headers,
        ..
    } = unwrapped;
    let ident = peek_message(protocol, &message)
        .ok_or_else(|| "malformed message: no readable message header".to_string())?;
    if ident.name.len() > MAX_METHOD_NAME {
        return Err(format!(
            "a call named a method of {} bytes; the longest accepted is {MAX_METHOD_NAME}",
            ident.name.len()
        ));
    }
    let trace = trace_context(&headers);
    let budget = header(&headers, "Deadline-Budget").and_then(Budget::parse);
    let deadline = settings
        .timeouts
        .deadline(&ident.name, budget, Instant::now());
    let spans = call_spans(&ident.name, &trace, &headers);
    let request = ThriftRequest {
        method: Arc::from(ident.name.as_str()),
        seq_id: ident.sequence_number,
        message_type: ident.message_type,
        protocol,
        headers,
        trace,
        deadline,
        message,
        max_size: settings.max_frame_size,
        record_outcome: settings.metrics.is_some() || spans.server.is_some(),
        connection_slots: Some(Arc::clone(slots)),
    };
    Ok((request, spans))
}

/// The trace ids the caller sent in its headers. Ids from the wire are
/// used only when well formed and short.
fn trace_context(headers: &[(String, String)]) -> TraceContext {
    let id = |name: &str| {
        header(headers, name)
            .filter(|v| trace::is_valid_id(v))
            .map(str::to_string)
    };
    TraceContext {
        trace_id: id("Trace").map_or_else(TraceId::generate, |t| TraceId::given(&t)),
        parent_id: id("Parent"),
        span_id: id("Span"),
        sampled: header(headers, "Sampled").map(|s| s == "1"),
        flags: id("Flags"),
    }
}

/// The call's `rpc` span, with the caller's ids and headers, and its
/// exported SERVER span.
fn call_spans(method: &str, trace: &TraceContext, headers: &[(String, String)]) -> CallSpans {
    let span = tracing::info_span!(
        target: trace::RPC_SPAN_TARGET,
        trace::RPC_SPAN,
        method = %method,
        trace_id = %trace.trace_id,
        span_id = Empty,
        parent_id = Empty,
        sampled = Empty,
        flags = Empty,
        user_agent = Empty,
        deadline_budget = Empty,
    );
    for (field, value) in [
        ("span_id", trace.span_id.as_deref()),
        ("parent_id", trace.parent_id.as_deref()),
        ("flags", trace.flags.as_deref()),
    ] {
        if let Some(value) = value {
            span.record(field, value);
        }
    }
    // Free-form headers reach the log lines cut to a bounded length.
    for (field, name) in [
        ("sampled", "Sampled"),
        ("user_agent", "User-Agent"),
        ("deadline_budget", "Deadline-Budget"),
    ] {
        if let Some(value) = header(headers, name) {
            span.record(field, trace::bounded(value, MAX_LOGGED_HEADER));
        }
    }
    CallSpans {
        server: server_span(&span, method, trace, headers),
        log: span,
    }
}

/// The call's exported SERVER span, while spans are exported: baseplate's
/// fields under a `baseplate.` prefix, parented on the caller's span.
#[cfg(feature = "otel")]
fn server_span(
    log: &Span,
    method: &str,
    trace: &TraceContext,
    headers: &[(String, String)],
) -> Option<Span> {
    use crate::otel::semconv::{rpc_server_span, RpcCall};
    if !crate::otel::enabled() {
        return None;
    }
    let bounded = |name: &str| header(headers, name).map(|v| trace::bounded(v, MAX_LOGGED_HEADER));
    let trace_id = trace.trace_id.to_string();
    let baseplate = [
        ("baseplate.trace_id", Some(trace_id.as_str())),
        ("baseplate.span_id", trace.span_id.as_deref()),
        ("baseplate.parent_id", trace.parent_id.as_deref()),
        ("baseplate.flags", trace.flags.as_deref()),
        ("baseplate.sampled", bounded("Sampled")),
        ("baseplate.user_agent", bounded("User-Agent")),
        ("baseplate.deadline_budget", bounded("Deadline-Budget")),
    ];
    let span = rpc_server_span(
        log,
        &RpcCall {
            method,
            baseplate: &baseplate,
        },
    )?;
    crate::otel::set_remote_parent(&span, |name| header(headers, name), "");
    Some(span)
}

#[cfg(not(feature = "otel"))]
fn server_span(_: &Span, _: &str, _: &TraceContext, _: &[(String, String)]) -> Option<Span> {
    None
}

/// The app's future for a call.
type CallFuture = <ThriftService as Service<ThriftRequest>>::Future;

/// Runs `f` in the call's exported span, if there is one.
fn in_server_span<T>(spans: &CallSpans, f: impl FnOnce() -> T) -> T {
    match &spans.server {
        Some(span) => span.in_scope(f),
        None => f(),
    }
}

/// The app's future, polled in the call's exported span if there is one
/// (boxed once more only then).
fn instrumented(spans: &CallSpans, future: CallFuture) -> CallFuture {
    match &spans.server {
        Some(span) => Box::pin(future.instrument(span.clone())),
        None => future,
    }
}

/// Who wrote a call's reply.
#[derive(Debug, Clone, PartialEq, Eq)]
enum AnsweredBy {
    /// The app (or the server's health probe, a method every app has).
    App,
    /// The server, for a call the app did not answer: it timed out,
    /// panicked, failed, or was never called.
    Server(Box<Failure>),
}

/// Why the server answered a call itself.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Failure {
    kind: FailureKind,
    /// What the caller's exception says.
    message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FailureKind {
    /// The deadline passed, before the call or during it.
    Timeout,
    /// The handler panicked.
    Panic,
    /// The app returned an error.
    InternalError,
}

impl FailureKind {
    /// Its name as an exported span's `error.type`.
    #[cfg_attr(not(feature = "otel"), allow(dead_code))]
    fn as_str(self) -> &'static str {
        match self {
            FailureKind::Timeout => "timeout",
            FailureKind::Panic => "panic",
            FailureKind::InternalError => "internal_error",
        }
    }
}

/// The server's own answer to a call it could not get the app's for.
fn failed(ident: &Ident, kind: FailureKind, message: String) -> (ThriftResponse, AnsweredBy) {
    let failure = Failure {
        kind,
        message: message.clone(),
    };
    (
        internal_error(ident, message),
        AnsweredBy::Server(Box::new(failure)),
    )
}

/// Calls the app within the call's deadline. Panics, timeouts and app
/// errors become `TApplicationException` replies; only a message the
/// processor cannot read at all closes the connection.
async fn run(
    request: ThriftRequest,
    spans: &CallSpans,
    service: &mut ThriftService,
    settings: &ServerSettings,
) -> Result<(ThriftResponse, AnsweredBy), String> {
    let debug_timeouts = settings.timeouts.debug;
    let method = Arc::clone(&request.method);
    let started = Instant::now();
    let deadline = request.deadline;
    // Captured before the request moves into the service.
    let ident = request_ident(&method, &request);
    if deadline.is_some_and(|d| d.at <= started) {
        spans
            .log
            .in_scope(|| warn!("{method}: the caller's deadline had passed; not called"));
        let message =
            format!("{method}: the caller's Deadline-Budget was spent before the call was read");
        return Ok(failed(&ident, FailureKind::Timeout, message));
    }
    let headers = request.headers.clone();
    let debug_headers = debug_timeouts.then(|| headers.clone());
    let trace_id = request.trace.trace_id.clone();
    let call = async {
        if let Some(probes) = settings.probes.as_ref().filter(|p| p.is_probe(&request)) {
            // Boxed: inline, the probe's state would grow (and be copied
            // with) every call's future.
            return Ok(Box::pin(probes.answer(request)).await);
        }
        service.ready().await?;
        // `call` itself may run app code (an inline processor): catch its
        // panics as well as the future's. Both run in the exported span,
        // if any: spans the app opens are its children (and their log
        // lines still carry the log span's fields).
        match in_server_span(spans, || catch_unwind::call(|| service.call(request))) {
            Ok(future) => CatchUnwind(instrumented(spans, future))
                .await
                .unwrap_or_else(|_| Err(HandlerPanicked.into())),
            Err(_) => Err(HandlerPanicked.into()),
        }
    };
    let call = context::scope(headers, trace::scope(trace_id, call)).instrument(spans.log.clone());
    let outcome = match deadline {
        Some(deadline) => match tokio::time::timeout_at(deadline.at, call).await {
            Ok(outcome) => outcome,
            Err(_) => {
                let message = format!(
                    "{method} timed out after {} ms ({})",
                    deadline.timeout.as_millis(),
                    deadline.source
                );
                spans.log.in_scope(|| {
                    if debug_timeouts {
                        warn!(headers = ?debug_headers, "{message}");
                    } else {
                        warn!("{message}");
                    }
                });
                return Ok(failed(&ident, FailureKind::Timeout, message));
            }
        },
        None => call.await,
    };
    answered(outcome, &ident, spans)
}

/// The app's answer, or the server's for its error or panic (logged); a
/// call the processor could not read at all is the connection's error.
fn answered(
    outcome: Result<ThriftResponse, crate::error::BoxError>,
    ident: &Ident,
    spans: &CallSpans,
) -> Result<(ThriftResponse, AnsweredBy), String> {
    let method = &ident.method;
    match outcome {
        Ok(response) => Ok((response, AnsweredBy::App)),
        Err(e) if e.is::<MalformedCall>() => Err(format!("cannot process {method}: {e}")),
        Err(e) => {
            let (kind, message) = if e.is::<HandlerPanicked>() {
                (
                    FailureKind::Panic,
                    format!("the handler of {method} panicked"),
                )
            } else {
                (FailureKind::InternalError, format!("{method} failed: {e}"))
            };
            spans.log.in_scope(|| error!("{message}"));
            Ok(failed(ident, kind, message))
        }
    }
}

/// What an exception reply needs to know about its call.
struct Ident {
    method: Arc<str>,
    seq_id: i32,
    protocol: crate::wire::dialect::Protocol,
    oneway: bool,
}

fn request_ident(method: &Arc<str>, request: &ThriftRequest) -> Ident {
    Ident {
        method: Arc::clone(method),
        seq_id: request.seq_id,
        protocol: request.protocol,
        oneway: request.message_type == TMessageType::OneWay,
    }
}

/// An `INTERNAL_ERROR` reply for the call (none for a one-way call).
fn internal_error(ident: &Ident, message: String) -> ThriftResponse {
    if ident.oneway {
        return ThriftResponse::none();
    }
    exception_message(
        ident.protocol,
        split_service(&ident.method).1,
        ident.seq_id,
        &ApplicationError::new(ApplicationErrorKind::InternalError, message),
    )
}
