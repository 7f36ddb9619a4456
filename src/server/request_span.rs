//! An HTTP request's span: the SERVER span a tracing layer of the program
//! (OpenTelemetry's exporter, say) takes, described with OpenTelemetry's
//! stable HTTP server conventions (semconv 1.26). baseplate's log lines do
//! not take it (their trace id comes from the task), so without such a
//! layer it is never made and costs nothing.

use tracing::field::Empty;
use tracing::Span;

use crate::app::HttpRequest;
use crate::metrics::http::{method_label, METHODS};
use crate::trace::{self, TraceId, REQUEST_SPAN, REQUEST_SPAN_TARGET};

/// The longest path, user agent or host put on a span: a client cannot
/// make the spans it causes large.
pub(crate) const MAX_ATTRIBUTE: usize = 1024;

/// The request's span, parented on the caller's when spans are exported.
/// Named `{method}` until a route is named ([`record_response`]); a
/// method of a client's own making is `_OTHER` (and the name `HTTP`), so
/// that clients cannot add names at will.
pub(crate) fn request_span(request: &HttpRequest, trace_id: &TraceId) -> Span {
    // Field values are computed only when some layer takes the span, and
    // all at once (each later `record` is a round through every layer).
    let method = request.method();
    let header = |name: http::header::HeaderName| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| trace::bounded(v, MAX_ATTRIBUTE))
    };
    let span = tracing::info_span!(
        target: REQUEST_SPAN_TARGET,
        REQUEST_SPAN,
        otel.name = span_name(method),
        otel.kind = "server",
        otel.status_code = Empty,
        error.type = Empty,
        http.request.method = semconv_method(method).unwrap_or("_OTHER"),
        http.request.method_original = semconv_method(method)
            .is_none()
            .then(|| trace::bounded(method.as_str(), MAX_ATTRIBUTE)),
        http.route = Empty,
        http.response.status_code = Empty,
        url.path = trace::bounded(request.uri().path(), MAX_ATTRIBUTE),
        url.scheme = "http",
        server.address = authority(request)
            .as_ref()
            .map(|a| trace::bounded(a.host(), MAX_ATTRIBUTE)),
        server.port = authority(request)
            .and_then(|a| a.port_u16())
            .map(i64::from),
        network.protocol.version = protocol_version(request.version()),
        user_agent.original = header(http::header::USER_AGENT),
        baseplate.trace_id = %trace_id,
        baseplate.parent_id = trace::parent_id_from_headers(request.headers()).as_deref(),
    );
    #[cfg(feature = "otel")]
    if !span.is_disabled() {
        crate::otel::set_remote_parent(
            &span,
            |name| request.headers().get(name).and_then(|v| v.to_str().ok()),
            "X-",
        );
    }
    span
}

/// Who the client asked for: HTTP/2's `:authority`, else HTTP/1's `Host`.
fn authority(request: &HttpRequest) -> Option<http::uri::Authority> {
    request.uri().authority().cloned().or_else(|| {
        request
            .headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.parse().ok())
    })
}

/// The method as the conventions name it: one of HTTP's own, or `None`
/// for one a client made up (`_OTHER`).
fn semconv_method(method: &http::Method) -> Option<&'static str> {
    match method_label(method) {
        (name, i) if i < METHODS.len() => Some(name),
        _ => None,
    }
}

/// The span's name until a route is named: the method, or `HTTP`.
fn span_name(method: &http::Method) -> &'static str {
    semconv_method(method).unwrap_or("HTTP")
}

fn protocol_version(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_2 => "2",
        http::Version::HTTP_10 => "1.0",
        _ => "1.1",
    }
}

/// Records the response on the request's span: its status code; the
/// route, when the app named one (then the span is named
/// `{method} {route}`); and, for a 5xx, ERROR with `error.type` the
/// status code. A 4xx is the client's error and leaves the status unset,
/// as the conventions say.
pub(crate) fn record_response(
    span: &Span,
    method: &http::Method,
    status: http::StatusCode,
    route: Option<&str>,
) {
    if span.is_disabled() {
        return;
    }
    span.record("http.response.status_code", i64::from(status.as_u16()));
    if status.is_server_error() {
        span.record("error.type", status.as_str());
        span.record("otel.status_code", "error");
    }
    if let Some(route) = route {
        let route = trace::bounded(route, MAX_ATTRIBUTE);
        span.record("http.route", route);
        #[cfg(feature = "otel")]
        if let Some(method) = semconv_method(method) {
            crate::otel::semconv::rename(span, format!("{method} {route}"));
        }
        #[cfg(not(feature = "otel"))]
        let _ = method;
    }
}
