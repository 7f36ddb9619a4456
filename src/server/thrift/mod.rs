//! The Thrift connection handler: one connection speaks one of five
//! dialects (THeader, framed or unframed binary or compact), detected from
//! its first bytes and used for every reply. Messages are cut out of the
//! buffered bytes without blocking ([`dialect`], [`header`], [`scanner`]);
//! the synchronous processor runs on tokio's blocking pool so a slow handler
//! never stalls other connections.

pub mod context;
pub mod dialect;
pub mod header;
pub mod scanner;

use std::borrow::Cow;
use std::sync::Arc;

use thrift::protocol::{
    TBinaryInputProtocol, TBinaryOutputProtocol, TCompactInputProtocol, TCompactOutputProtocol,
    TInputProtocol, TMessageIdentifier, TMessageType, TOutputProtocol,
};
use thrift::server::TProcessor;
use thrift::{ApplicationError, ApplicationErrorKind, TConfiguration};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::{error, field::Empty, warn, Instrument, Span};

use super::listener::Stream;
use super::shutdown::{Shutdown, FIRST_REQUEST_GRACE};
use super::tracker::{ConnectionHandle, RequestInfo};
use super::{ConnectionFuture, ConnectionHandler};
use crate::trace::TraceId;
use dialect::{classify_frame, detect, Dialect, Protocol, Start};
use header::HeaderError;
use scanner::Scan;

/// A Thrift app as the server holds it: any generated processor.
pub type ThriftProcessor = Arc<dyn TProcessor + Send + Sync>;

/// Serves a [`ThriftProcessor`] on each connection.
pub struct ThriftHandler {
    service: Arc<Service>,
}

/// What every connection of a server shares.
struct Service {
    processor: ThriftProcessor,
    max: usize,
    execution: Execution,
}

impl ThriftHandler {
    /// A handler for `processor`, refusing messages over `max_frame_size`
    /// bytes, running the processor as `execution` says.
    pub fn new(
        processor: ThriftProcessor,
        max_frame_size: usize,
        execution: Execution,
    ) -> ThriftHandler {
        ThriftHandler {
            service: Arc::new(Service {
                processor,
                max: max_frame_size,
                execution,
            }),
        }
    }
}

impl ConnectionHandler for ThriftHandler {
    fn handle(
        &self,
        stream: Stream,
        connection: ConnectionHandle,
        shutdown: Shutdown,
    ) -> ConnectionFuture {
        let service = Arc::clone(&self.service);
        Box::pin(async move {
            let peer = connection.peer().clone();
            if let Err(e) = serve(stream, connection, &service, shutdown).await {
                warn!(peer = %peer, "closing Thrift connection: {e}");
            }
        })
    }
}

/// A complete message found in the buffer.
struct Found {
    dialect: Dialect,
    /// The frame contents (THeader, framed) or the whole message (unframed).
    body: std::ops::Range<usize>,
}

enum Next {
    NeedMore(usize),
    Message(Found),
}

/// Finds the next complete message at the start of `buf`.
fn next_message(buf: &[u8], max: usize) -> Result<Next, String> {
    match detect(buf)? {
        Start::NeedMore => Ok(Next::NeedMore(4)),
        Start::Unframed(protocol) => match scanner::scan(protocol, buf, max) {
            Ok(Scan::Complete(n)) => Ok(Next::Message(Found {
                dialect: Dialect::Unframed(protocol),
                body: 0..n,
            })),
            Ok(Scan::NeedMore(n)) => Ok(Next::NeedMore(n)),
            Err(e) => Err(format!("malformed unframed message: {}", e.0)),
        },
        Start::Frame(length) => {
            let length = length as usize;
            if length > max {
                return Err(format!(
                    "frame of {length} bytes is over max_frame_size ({max})"
                ));
            }
            let end = 4 + length;
            if buf.len() < end {
                return Ok(Next::NeedMore(end));
            }
            let dialect = classify_frame(&buf[4..end])?;
            Ok(Next::Message(Found {
                dialect,
                body: 4..end,
            }))
        }
    }
}

/// How a reply must be wrapped.
#[derive(Clone)]
enum Reply {
    Framed,
    Unframed,
    Header {
        flags: u16,
        seq_id: u32,
        transforms: Vec<u32>,
    },
}

async fn serve(
    mut stream: Stream,
    connection: ConnectionHandle,
    service: &Service,
    mut shutdown: Shutdown,
) -> Result<(), String> {
    let max = service.max;
    // Reads land straight in `buf`, where messages are found and handled
    // in place.
    let mut buf: Vec<u8> = Vec::new();
    let mut need = 1;
    let mut dialect: Option<Dialect> = None;
    loop {
        if buf.len() >= need {
            match next_message(&buf, max)? {
                Next::NeedMore(n) => need = n,
                Next::Message(found) => {
                    if let Some(first) = dialect {
                        if first != found.dialect {
                            return Err(format!(
                                "the client switched from {first:?} to {:?}",
                                found.dialect
                            ));
                        }
                    }
                    dialect = Some(found.dialect);
                    let reply = handle_message(
                        &buf[found.body.clone()],
                        found.dialect,
                        &connection,
                        service,
                    )
                    .await?;
                    let consumed = found.body.end;
                    buf.drain(..consumed);
                    need = 1;
                    if !reply.is_empty() {
                        stream
                            .write_all(&reply)
                            .await
                            .map_err(|e| format!("write failed: {e}"))?;
                    }
                    if shutdown.is_triggered() && buf.is_empty() {
                        return Ok(());
                    }
                    continue;
                }
            }
        }
        let idle = buf.is_empty();
        buf.reserve(READ_SIZE);
        let read = tokio::select! {
            // Bytes already there win over the shutdown.
            biased;
            read = stream.read_buf(&mut buf) => Some(read),
            // Idle connections close at once (a brand-new one gets a moment
            // for its first call); a message in progress is finished.
            _ = shutdown.wait(), if idle => None,
        };
        let read = match read {
            Some(read) => read,
            None if dialect.is_some() => return Ok(()),
            None => {
                match tokio::time::timeout(FIRST_REQUEST_GRACE, stream.read_buf(&mut buf)).await {
                    Ok(read) => read,
                    Err(_) => return Ok(()),
                }
            }
        }
        .map_err(|e| format!("read failed: {e}"))?;
        if read == 0 {
            return if buf.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "the client closed the connection in the middle of a message ({} bytes)",
                    buf.len()
                ))
            };
        }
    }
}

/// The room made in a connection's buffer before each read.
const READ_SIZE: usize = 16 * 1024;

/// Runs one message through the processor; returns the bytes to send back.
async fn handle_message(
    body: &[u8],
    dialect: Dialect,
    connection: &ConnectionHandle,
    service: &Service,
) -> Result<Vec<u8>, String> {
    let max = service.max;
    let (protocol, payload, info, reply) = match dialect {
        // Borrowed: only `execution = blocking` needs a copy it can move.
        Dialect::Framed(p) => (p, Cow::Borrowed(body), Vec::new(), Reply::Framed),
        Dialect::Unframed(p) => (p, Cow::Borrowed(body), Vec::new(), Reply::Unframed),
        Dialect::Header => match header::decode(body, max) {
            Ok(frame) => (
                frame.protocol,
                Cow::Owned(frame.payload),
                frame.info,
                Reply::Header {
                    flags: frame.flags,
                    seq_id: frame.seq_id,
                    transforms: frame.transforms,
                },
            ),
            Err(HeaderError::Malformed(e)) => return Err(format!("malformed THeader frame: {e}")),
            Err(HeaderError::UnknownTransform(t)) => {
                return Ok(header_exception(
                    body,
                    ApplicationErrorKind::InvalidTransform,
                    format!("unknown THeader transform {t}"),
                ))
            }
            Err(HeaderError::UnknownProtocol(p)) => {
                return Ok(header_exception(
                    body,
                    ApplicationErrorKind::InvalidProtocol,
                    format!("unsupported THeader protocol id {p}"),
                ))
            }
        },
    };
    let ident = peek_message(protocol, &payload);
    let method = ident.as_ref().map_or("?", |i| i.name.as_str()).to_string();
    let header = |name: &str| {
        info.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let trace_id = header("Trace").map_or_else(TraceId::generate, |t| TraceId::given(&t));
    let span = tracing::info_span!(
        "thrift",
        method = %method,
        trace_id = %trace_id,
        span_id = Empty,
        parent_id = Empty,
        sampled = Empty,
        flags = Empty,
        user_agent = Empty,
        deadline_budget = Empty,
    );
    for (field, name) in [
        ("span_id", "Span"),
        ("parent_id", "Parent"),
        ("sampled", "Sampled"),
        ("flags", "Flags"),
        ("user_agent", "User-Agent"),
        ("deadline_budget", "Deadline-Budget"),
    ] {
        if let Some(value) = header(name) {
            span.record(field, value.as_str());
        }
    }
    let _in_flight = connection.begin_request(RequestInfo::Thrift(method.clone()), trace_id);
    let run = move |processor: &(dyn TProcessor + Send + Sync), payload: &[u8], span: &Span| {
        let _entered = span.enter();
        context::with_headers(info, || process(processor, protocol, payload, max))
    };
    let outcome = match service.execution {
        Execution::Blocking => {
            let processor = Arc::clone(&service.processor);
            let payload = payload.into_owned();
            let run_span = span.clone();
            tokio::task::spawn_blocking(move || run(&*processor, &payload, &run_span))
                .instrument(span.clone())
                .await
        }
        Execution::BlockInPlace => Ok(tokio::task::block_in_place(|| {
            run(&*service.processor, &payload, &span)
        })),
        Execution::Inline | Execution::Hybrid => Ok(run(&*service.processor, &payload, &span)),
    };
    let out = match outcome {
        Ok(Ok(out)) => out,
        Ok(Err((e, out))) if out.is_empty() => return Err(format!("cannot process {method}: {e}")),
        Ok(Err((_, out))) => out,
        Err(join) => {
            let message = if join.is_panic() {
                "the handler panicked"
            } else {
                "the handler was cancelled"
            };
            span.in_scope(|| error!("{message} while handling {method}"));
            let ident = ident.ok_or_else(|| message.to_string())?;
            exception_payload(
                protocol,
                &ident,
                ApplicationErrorKind::InternalError,
                message.to_string(),
            )
        }
    };
    if out.is_empty() {
        // One-way calls get no reply at all.
        return Ok(out);
    }
    Ok(match reply {
        Reply::Unframed => out,
        Reply::Framed => {
            let mut framed = Vec::with_capacity(4 + out.len());
            framed.extend_from_slice(&(out.len() as u32).to_be_bytes());
            framed.extend_from_slice(&out);
            framed
        }
        Reply::Header {
            flags,
            seq_id,
            transforms,
        } => header::encode(protocol, flags, seq_id, &transforms, &[], &out),
    })
}

/// How many async workers beyond one per core `Execution::Hybrid` adds.
pub const SPARE_WORKERS: usize = 32;

/// Where the synchronous processor runs (server option `execution`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Execution {
    /// On the async worker, on a runtime with spare workers (one per core
    /// plus [`SPARE_WORKERS`], and no LIFO slot): nearly as fast as inline,
    /// and handlers that block stall nothing until that many block at once.
    /// The default.
    #[default]
    Hybrid,
    /// On tokio's blocking pool: any number of handlers may block, at the
    /// price of a thread handoff per call.
    Blocking,
    /// On the async worker, after handing its other tasks to a new thread.
    BlockInPlace,
    /// On the async worker: fastest, for handlers that never block, but one
    /// that does stalls the connections sharing its worker thread.
    Inline,
}

/// Limits for decoding untrusted payloads.
fn configuration(max: usize) -> TConfiguration {
    TConfiguration::builder()
        .max_message_size(Some(max))
        .max_frame_size(Some(max))
        .max_string_size(Some(max))
        .max_container_size(Some(max))
        .max_recursion_depth(Some(scanner::MAX_DEPTH))
        .build()
        .unwrap_or_default()
}

/// Runs the processor over one payload. On error, also returns what it wrote.
fn process(
    processor: &(dyn TProcessor + Send + Sync),
    protocol: Protocol,
    payload: &[u8],
    max: usize,
) -> Result<Vec<u8>, (thrift::Error, Vec<u8>)> {
    let mut out = Vec::new();
    let result = match protocol {
        Protocol::Binary => {
            let mut input = TBinaryInputProtocol::with_config(payload, true, configuration(max));
            let mut output = TBinaryOutputProtocol::new(&mut out, true);
            processor.process(&mut input, &mut output)
        }
        Protocol::Compact => {
            let mut input = TCompactInputProtocol::with_config(payload, configuration(max));
            let mut output = TCompactOutputProtocol::new(&mut out);
            processor.process(&mut input, &mut output)
        }
    };
    match result {
        Ok(()) => Ok(out),
        Err(e) => Err((e, out)),
    }
}

/// The method name and sequence id at the start of a payload.
fn peek_message(protocol: Protocol, payload: &[u8]) -> Option<TMessageIdentifier> {
    match protocol {
        Protocol::Binary => TBinaryInputProtocol::new(payload, true)
            .read_message_begin()
            .ok(),
        Protocol::Compact => TCompactInputProtocol::new(payload)
            .read_message_begin()
            .ok(),
    }
}

/// A TApplicationException reply message in `protocol`.
fn exception_payload(
    protocol: Protocol,
    ident: &TMessageIdentifier,
    kind: ApplicationErrorKind,
    message: String,
) -> Vec<u8> {
    let mut out = Vec::new();
    let reply = TMessageIdentifier::new(
        ident.name.clone(),
        TMessageType::Exception,
        ident.sequence_number,
    );
    let error = ApplicationError::new(kind, message);
    let write = |o: &mut dyn TOutputProtocol| -> thrift::Result<()> {
        o.write_message_begin(&reply)?;
        thrift::Error::write_application_error_to_out_protocol(&error, o)?;
        o.write_message_end()?;
        o.flush()
    };
    let written = match protocol {
        Protocol::Binary => write(&mut TBinaryOutputProtocol::new(&mut out, true)),
        Protocol::Compact => write(&mut TCompactOutputProtocol::new(&mut out)),
    };
    if written.is_err() {
        out.clear();
    }
    out
}

/// A THeader reply carrying an exception, for frames whose payload cannot
/// be read (unknown transform or protocol): binary, no transforms.
fn header_exception(frame: &[u8], kind: ApplicationErrorKind, message: String) -> Vec<u8> {
    let flags = u16::from_be_bytes([frame[2], frame[3]]);
    let seq_id = u32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let ident = TMessageIdentifier::new("", TMessageType::Exception, 0);
    let payload = exception_payload(Protocol::Binary, &ident, kind, message);
    header::encode(Protocol::Binary, flags, seq_id, &[], &[], &payload)
}
