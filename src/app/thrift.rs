//! One Thrift call as a tower request, and its reply: what a Thrift app
//! (a [`ThriftService`]) receives and returns, whatever the dialect.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use thrift::protocol::{TInputProtocol, TMessageIdentifier, TMessageType, TOutputProtocol};
use thrift::{ApplicationError, ApplicationErrorKind};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tower::util::BoxCloneService;
use tower::{Service, ServiceBuilder};

use crate::error::BoxError;
use crate::trace::TraceId;
use crate::wire::codec::{
    header, no_headers, recorded_output, split_service, with_input, with_output,
};
pub use crate::wire::codec::{Headers, MULTIPLEX_SEPARATOR};
pub use crate::wire::dialect::Protocol;
pub use crate::wire::outcome::{CallOutcome, RaisedException};

/// A Thrift app as the server holds it: a boxed tower service from one call
/// to its reply. Tower layers wrap it as they wrap HTTP apps.
pub type ThriftService = BoxCloneService<ThriftRequest, ThriftResponse, BoxError>;

/// The trace context a caller sent (THeader `Trace`, `Parent`, `Span`,
/// `Sampled`, `Flags`); a fresh trace id when it sent none.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TraceContext {
    /// The caller's trace id, or a generated one.
    pub trace_id: TraceId,
    /// The caller's span, the parent of this call (`Parent`).
    pub parent_id: Option<String>,
    /// The span id the caller chose for this call (`Span`).
    pub span_id: Option<String>,
    /// Whether the caller samples this trace (`Sampled: 1`).
    pub sampled: Option<bool>,
    /// The caller's trace flags (`Flags`).
    pub flags: Option<String>,
}

/// One call: everything the server read, and the message itself.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ThriftRequest {
    /// The method name as sent: `method`, or `Service:method` from a
    /// multiplexing client ([`method_name`](Self::method_name) and
    /// [`service_name`](Self::service_name) split it).
    pub method: Arc<str>,
    /// The caller's sequence id, echoed in the reply.
    pub seq_id: i32,
    /// `Call` or `OneWay`.
    pub message_type: TMessageType,
    /// The payload protocol; the reply uses the same.
    pub protocol: Protocol,
    /// THeader info headers.
    pub headers: Headers,
    /// Trace ids from the headers.
    pub trace: TraceContext,
    /// When the call must be answered by: the tighter of the app's
    /// `server_timeout` and the caller's `Deadline-Budget`. `None` for no
    /// limit.
    pub deadline: Option<Deadline>,
    /// The whole message as sent: message header, arguments, end.
    pub message: Bytes,
    /// Limits for decoding the arguments.
    pub(crate) max_size: usize,
    /// Whether replies note the call's outcome (metrics are on).
    pub(crate) record_outcome: bool,
    /// The handler-thread slots of the call's connection: a synchronous
    /// processor's call holds one while it runs on a handler thread, also
    /// after its caller was answered (see `processor.rs`). `None` for a
    /// call made in-process.
    pub(crate) connection_slots: Option<Arc<Semaphore>>,
}

/// The reply to one call: an encoded message, or nothing for a one-way call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ThriftResponse {
    message: Vec<u8>,
    /// What the reply says of the call (success, or which exception), when
    /// it was written through [`ThriftRequest::reply`] with metrics on.
    outcome: Option<CallOutcome>,
}

impl ThriftResponse {
    /// No reply at all: what a one-way call gets.
    pub fn none() -> ThriftResponse {
        ThriftResponse::default()
    }

    /// A reply message already encoded in the request's protocol. Metrics
    /// count it as a success unless it is a `TApplicationException`; say
    /// otherwise with [`with_outcome`](Self::with_outcome).
    pub fn encoded(message: Vec<u8>) -> ThriftResponse {
        ThriftResponse {
            message,
            outcome: None,
        }
    }

    /// The reply with its outcome stated, for metrics.
    pub fn with_outcome(mut self, outcome: CallOutcome) -> ThriftResponse {
        self.outcome = Some(outcome);
        self
    }

    /// The outcome, as stated or noted while the reply was written.
    pub fn outcome(&self) -> Option<&CallOutcome> {
        self.outcome.as_ref()
    }

    /// The encoded reply (empty for no reply).
    pub fn message(&self) -> &[u8] {
        &self.message
    }

    pub(crate) fn into_message(self) -> Vec<u8> {
        self.message
    }
}

impl ThriftRequest {
    /// A call from one encoded message in `protocol` (message header,
    /// arguments, end), with no caller's headers, trace or deadline: for
    /// calling a Thrift app in-process, as a service's own tests do. The
    /// reply is [`ThriftResponse::message`], in the same protocol.
    pub fn from_message(
        protocol: Protocol,
        message: impl Into<Bytes>,
    ) -> thrift::Result<ThriftRequest> {
        let message = message.into();
        let max_size = message.len().max(1);
        let ident = with_input(protocol, &message, max_size, |input| {
            input.read_message_begin()
        })?;
        Ok(ThriftRequest {
            method: Arc::from(ident.name.as_str()),
            seq_id: ident.sequence_number,
            message_type: ident.message_type,
            protocol,
            headers: no_headers(),
            trace: TraceContext {
                trace_id: TraceId::generate(),
                parent_id: None,
                span_id: None,
                sampled: None,
                flags: None,
            },
            deadline: None,
            message,
            max_size,
            record_outcome: false,
            connection_slots: None,
        })
    }

    /// The value of an info header, by name (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// The time left before the deadline, if there is one.
    pub fn time_left(&self) -> Option<Duration> {
        self.deadline
            .map(|d| d.at.saturating_duration_since(Instant::now()))
    }

    /// The method, without the service name a multiplexing client puts
    /// before it: what processors dispatch on, and what replies are named
    /// (as Apache Thrift's multiplexed processors name them).
    pub fn method_name(&self) -> &str {
        split_service(&self.method).1
    }

    /// Names the Thrift service handling this call on its exported span
    /// (OpenTelemetry's `rpc.service`, and the span name
    /// `{service}/{method}`). Async processors `baseplate-thrift` generates
    /// call it for their own methods, and the server for a sync processor
    /// whose type names its service (`ExampleSyncProcessor`); a
    /// hand-written app may. Without export
    /// (the `otel` feature, an endpoint) it does nothing.
    #[inline]
    pub fn record_service_name(&self, service: &str) {
        #[cfg(feature = "otel")]
        if crate::otel::enabled() {
            crate::otel::semconv::name_rpc_service(service, self.method_name());
        }
        #[cfg(not(feature = "otel"))]
        let _ = service;
    }

    /// The service a multiplexing client named (`Service:method`), if any.
    pub fn service_name(&self) -> Option<&str> {
        split_service(&self.method).0
    }

    /// Whether this is a one-way call, which gets no reply.
    pub fn is_oneway(&self) -> bool {
        self.message_type == TMessageType::OneWay
    }

    /// Runs `read` over an input protocol positioned at the arguments, after
    /// the message header; used by generated async processors.
    pub fn read_args<T>(
        &self,
        read: impl FnOnce(&mut dyn TInputProtocol) -> thrift::Result<T>,
    ) -> thrift::Result<T> {
        with_input(self.protocol, &self.message, self.max_size, |input| {
            input.read_message_begin()?;
            let args = read(input)?;
            input.read_message_end()?;
            Ok(args)
        })
    }

    /// A `Reply` message for this call, whose body `write` writes (the
    /// generated result struct).
    pub fn reply(
        &self,
        write: impl FnOnce(&mut dyn TOutputProtocol) -> thrift::Result<()>,
    ) -> thrift::Result<ThriftResponse> {
        let ident = TMessageIdentifier::new(self.method_name(), TMessageType::Reply, self.seq_id);
        let body = |output: &mut dyn TOutputProtocol| {
            output.write_message_begin(&ident)?;
            write(output)?;
            output.write_message_end()?;
            output.flush()
        };
        if !self.record_outcome {
            return with_output(self.protocol, body).map(ThriftResponse::encoded);
        }
        recorded_output(self.protocol, body)
            .map(|(message, outcome)| ThriftResponse::encoded(message).with_outcome(outcome))
    }

    /// The reply for a handler error that is not a declared exception: an
    /// application error is sent as it is, anything else as `UNKNOWN` with
    /// the error's text, as the Apache Thrift processors do. A one-way call
    /// gets no reply.
    pub fn error_reply(&self, error: thrift::Error) -> ThriftResponse {
        if self.is_oneway() {
            return ThriftResponse::none();
        }
        let error = match error {
            thrift::Error::Application(e) => e,
            other => ApplicationError::new(ApplicationErrorKind::Unknown, other.to_string()),
        };
        self.exception(error)
    }

    /// Logs the error of a one-way call's handler (which no one receives)
    /// and gives the call its empty reply.
    pub fn oneway_failed(&self, error: &thrift::Error) -> ThriftResponse {
        tracing::error!("one-way call {} failed: {error}", self.method);
        ThriftResponse::none()
    }

    /// A `TApplicationException` reply.
    pub fn exception(&self, error: ApplicationError) -> ThriftResponse {
        exception_message(self.protocol, self.method_name(), self.seq_id, &error)
    }
}

/// A `TApplicationException` message in `protocol`.
pub(crate) fn exception_message(
    protocol: Protocol,
    method: &str,
    seq_id: i32,
    error: &ApplicationError,
) -> ThriftResponse {
    let ident = TMessageIdentifier::new(method, TMessageType::Exception, seq_id);
    let written = with_output(protocol, |o| {
        o.write_message_begin(&ident)?;
        thrift::Error::write_application_error_to_out_protocol(error, o)?;
        o.write_message_end()?;
        o.flush()
    });
    // Writing to a Vec cannot fail.
    ThriftResponse::encoded(written.unwrap_or_default())
        .with_outcome(CallOutcome::application_exception())
}

/// When a call must be answered by, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    /// The instant.
    pub at: Instant,
    /// The timeout it came from, counted from when the call was read.
    pub timeout: Duration,
    /// Which setting it came from.
    pub source: DeadlineSource,
}

/// Where a deadline came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadlineSource {
    /// The app's `server_timeout.*`.
    ServerTimeout,
    /// The caller's `Deadline-Budget` header.
    DeadlineBudget,
}

impl std::fmt::Display for DeadlineSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DeadlineSource::ServerTimeout => "server_timeout",
            DeadlineSource::DeadlineBudget => "Deadline-Budget",
        })
    }
}

/// What a Thrift app is: any tower service from one [`ThriftRequest`] to its
/// [`ThriftResponse`] that can be cloned per connection and sent across
/// threads (an async processor `baseplate-thrift` generated, a stack of
/// layers over one, a `service_fn`). The bound is written here once;
/// [`Serve::thrift_service`](crate::Serve::thrift_service) and
/// [`Serve::thrift_layer`](crate::Serve::thrift_layer) take any `ThriftApp`.
pub trait ThriftApp: Clone + Send + 'static {
    /// Boxes the app into the server's [`ThriftService`].
    fn into_thrift_service(self) -> ThriftService;
}

impl<S> ThriftApp for S
where
    S: Service<ThriftRequest, Response = ThriftResponse> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
{
    fn into_thrift_service(self) -> ThriftService {
        BoxCloneService::new(ServiceBuilder::new().map_err(Into::into).service(self))
    }
}
