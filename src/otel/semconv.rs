//! OpenTelemetry's semantic conventions for the spans the server exports
//! (semconv 1.26: the stable HTTP server conventions, and the RPC ones
//! for Thrift): their kind, name, attributes and status.
//!
//! An HTTP request's span is the `request` span of [`crate::trace`], which
//! only tracing layers of the program take (baseplate's log lines read the
//! trace id from the task). A Thrift call has a log span (`rpc`, whose
//! fields are on every log line of the call) and, while spans are
//! exported, a SERVER span beside it ([`rpc_server_span`]) that only the
//! exporter takes.

use opentelemetry::trace::TraceContextExt;
use tracing::field::Empty;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::enabled;
use crate::trace::{RPC_SERVER_SPAN, RPC_SPAN, RPC_SPAN_TARGET};

/// Whether a span is for baseplate's log lines only, and not exported.
pub(crate) fn is_log_only(meta: &tracing::Metadata<'_>) -> bool {
    meta.name() == RPC_SPAN && meta.target() == RPC_SPAN_TARGET
}

/// Renames an exported span whose name was known only later (an HTTP
/// request's route, a Thrift call's service).
pub(crate) fn rename(span: &Span, name: String) {
    if enabled() && !span.is_disabled() {
        span.context().span().update_name(name);
    }
}

/// What the caller sent with a Thrift call, for its SERVER span.
pub(crate) struct RpcCall<'a> {
    /// The method as sent: `method`, or `Service:method` (multiplexed).
    pub method: &'a str,
    /// baseplate's trace ids and headers: `(attribute, value)`, values
    /// already bounded.
    pub baseplate: &'a [(&'static str, Option<&'a str>)],
}

/// A Thrift call's SERVER span, made inside its log span (so that the
/// log lines of spans under it still carry the call's fields), while
/// spans are exported. Named `{service}/{method}` when the caller
/// multiplexes, else `{method}` until the app names its service
/// ([`name_rpc_service`]).
pub(crate) fn rpc_server_span(log_span: &Span, call: &RpcCall<'_>) -> Option<Span> {
    if !enabled() {
        return None;
    }
    let (service, method) = match call.method.split_once(':') {
        Some((service, method)) => (Some(service), method),
        None => (None, call.method),
    };
    let span = log_span.in_scope(|| {
        tracing::info_span!(
            target: RPC_SPAN_TARGET,
            RPC_SERVER_SPAN,
            otel.name = %RpcName(service, method),
            otel.kind = "server",
            otel.status_code = Empty,
            otel.status_description = Empty,
            error.type = Empty,
            rpc.system = "thrift",
            rpc.service = service,
            rpc.method = method,
            baseplate.trace_id = Empty,
            baseplate.span_id = Empty,
            baseplate.parent_id = Empty,
            baseplate.sampled = Empty,
            baseplate.flags = Empty,
            baseplate.user_agent = Empty,
            baseplate.deadline_budget = Empty,
            baseplate.thrift.exception = Empty,
            baseplate.thrift.error_code = Empty,
        )
    });
    if span.is_disabled() {
        return None;
    }
    for (field, value) in call.baseplate {
        if let Some(value) = value {
            span.record(*field, *value);
        }
    }
    Some(span)
}

/// A Thrift call's span name: `{service}/{method}`, or `{method}`.
struct RpcName<'a>(Option<&'a str>, &'a str);

impl std::fmt::Display for RpcName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(service) => write!(f, "{service}/{}", self.1),
            None => f.write_str(self.1),
        }
    }
}

/// How a Thrift call ended, for its SERVER span's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RpcEnd<'a> {
    /// A reply (a one-way call: done).
    Replied,
    /// A declared exception: the API's own answer. With baseplate's
    /// `Error.code`, a code of 500 or more is a server failure.
    Declared {
        type_name: &'a str,
        code: Option<i32>,
    },
    /// A `TApplicationException`, or no reply: the call failed.
    /// `error_type` is low-cardinality (`timeout`, `panic`, ...).
    Failed {
        error_type: &'a str,
        message: &'a str,
    },
}

/// Records how the call ended on its SERVER span: ERROR for a failure and
/// for a declared exception with a 5xx code, UNSET otherwise.
pub(crate) fn rpc_end(span: &Span, end: RpcEnd<'_>) {
    match end {
        RpcEnd::Replied => {}
        RpcEnd::Declared { type_name, code } => {
            span.record("baseplate.thrift.exception", type_name);
            if let Some(code) = code {
                span.record("baseplate.thrift.error_code", i64::from(code));
            }
            if code.is_some_and(|c| c >= 500) {
                span.record("error.type", type_name);
                span.record("otel.status_code", "error");
            }
        }
        RpcEnd::Failed {
            error_type,
            message,
        } => {
            span.record("error.type", error_type);
            span.record("otel.status_description", message);
        }
    }
}

/// Names the service of the Thrift call being handled on its SERVER span
/// (`rpc.service`, and the name `{service}/{method}`). Generated
/// processors call it for their own methods.
pub(crate) fn name_rpc_service(service: &str, method: &str) {
    if !enabled() {
        return;
    }
    let span = Span::current();
    if span.metadata().is_some_and(|m| m.name() == RPC_SERVER_SPAN) {
        span.record("rpc.service", service);
        rename(&span, format!("{service}/{method}"));
    }
}
