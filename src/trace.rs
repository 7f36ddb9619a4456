//! Trace ids: taken from the request (`X-Trace`, or W3C `traceparent`) so
//! logs line up with the caller's, else generated. While a request is
//! handled, its id is the task's current trace id, and every log line
//! written then carries it.

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use http::{HeaderMap, HeaderName};

// Header names made once: a lookup by `&str` parses and hashes the name
// on every request.
const X_TRACE: HeaderName = HeaderName::from_static("x-trace");
const X_PARENT: HeaderName = HeaderName::from_static("x-parent");
const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// The name of the span every HTTP request runs in: its SERVER span for a
/// tracing layer of the program's (OpenTelemetry's), never on log lines.
pub(crate) const REQUEST_SPAN: &str = "request";

/// The target of [`REQUEST_SPAN`].
pub(crate) const REQUEST_SPAN_TARGET: &str = "baseplate::server::http";

/// The name of the span every Thrift call runs in: its fields (method,
/// trace ids) are on every log line of the call.
pub(crate) const RPC_SPAN: &str = "rpc";

/// The target of [`RPC_SPAN`] and [`RPC_SERVER_SPAN`].
pub(crate) const RPC_SPAN_TARGET: &str = "baseplate::server::thrift";

/// The name of a Thrift call's SERVER span, made only while spans are
/// exported, and never on log lines.
pub(crate) const RPC_SERVER_SPAN: &str = "rpc.server";

/// Whether a span is for tracing layers only, never on baseplate's log
/// lines.
pub(crate) fn is_export_only(meta: &tracing::Metadata<'_>) -> bool {
    match meta.name() {
        REQUEST_SPAN => meta.target() == REQUEST_SPAN_TARGET,
        RPC_SERVER_SPAN => meta.target() == RPC_SPAN_TARGET,
        _ => false,
    }
}

/// Puts the current trace on an outgoing HTTP call, as W3C `traceparent`
/// (and `tracestate`): made while a request or call is handled, the call
/// is then a child of the span handling it, and the service called joins
/// the same trace. Only while spans are exported (the `otel` feature, with
/// an endpoint set); otherwise the headers are left as they are.
///
/// ```
/// fn outgoing() -> Result<http::Request<()>, http::Error> {
///     let mut request = http::Request::get("http://users.internal/users/42").body(())?;
///     baseplate::trace::inject_traceparent(request.headers_mut());
///     Ok(request)
/// }
/// # outgoing().map(drop).map_err(|e| e.to_string()).unwrap_or_default();
/// ```
pub fn inject_traceparent(headers: &mut HeaderMap) {
    #[cfg(feature = "otel")]
    crate::otel::inject_traceparent(headers);
    #[cfg(not(feature = "otel"))]
    let _ = headers;
}

/// A layer of the embedding program's (an OpenTelemetry layer, say), added
/// to the subscriber baseplate installs with
/// [`Serve::tracing_layer`](crate::Serve::tracing_layer).
pub(crate) type UserLayer =
    Box<dyn tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync>;

/// The trace id of one request; it is in the request's extensions and on
/// every log line written while handling it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TraceId(Repr);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Repr {
    /// Made here: shown as 32 hex digits (formatted only when shown).
    Generated(u128),
    /// From the request.
    Given(Box<str>),
}

impl TraceId {
    /// The id from `X-Trace` (baseplate's header) or `traceparent`, if one
    /// is present and well formed; otherwise a new random one.
    pub fn from_headers(headers: &HeaderMap) -> TraceId {
        let x_trace = headers
            .get(X_TRACE)
            .and_then(|v| v.to_str().ok())
            .filter(|v| is_valid_id(v));
        if let Some(id) = x_trace {
            return TraceId::given(id);
        }
        headers
            .get(TRACEPARENT)
            .and_then(|v| v.to_str().ok())
            .and_then(traceparent_id)
            .map(TraceId::given)
            .unwrap_or_else(TraceId::generate)
    }

    /// An id given by a client (a THeader `Trace` header, say).
    pub fn given(id: &str) -> TraceId {
        TraceId(Repr::Given(id.into()))
    }

    /// A new random 128-bit id: a per-process random key mixed with a
    /// counter (splitmix64, a bijection, so ids never repeat within a
    /// process), cheap enough to make for every request.
    pub fn generate() -> TraceId {
        static KEY: OnceLock<(u64, u64)> = OnceLock::new();
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let &(k1, k2) = KEY.get_or_init(|| {
            let random = |salt: u64| {
                let mut h = RandomState::new().build_hasher();
                h.write_u64(salt);
                h.finish()
            };
            (random(1), random(2))
        });
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let high = splitmix64(n ^ k1);
        let low = splitmix64(high ^ k2);
        TraceId(Repr::Generated(u128::from(high) << 64 | u128::from(low)))
    }
}

/// The longest trace, span or parent id taken from a request.
pub const MAX_ID_LEN: usize = 64;

/// Whether a trace, span or parent id from the wire is usable: 1 to
/// [`MAX_ID_LEN`] ASCII letters, digits, `-` or `_`. Anything else is
/// treated as absent, so a client cannot put arbitrary bytes, or 100 KB, on
/// every log line of its request.
pub fn is_valid_id(id: &str) -> bool {
    (1..=MAX_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `value` cut to at most `max` bytes, at a character boundary: what a
/// client sent (a header, a path), made fit for a log line or a span.
pub(crate) fn bounded(value: &str, max: usize) -> &str {
    if value.len() <= max {
        return value;
    }
    let mut end = max;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    &value[..end]
}

/// The splitmix64 finalizer: a bijection on u64 that scatters its bits.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Repr::Generated(n) => write!(f, "{n:032x}"),
            Repr::Given(s) => f.write_str(s),
        }
    }
}

tokio::task_local! {
    static TASK: TraceId;
}

thread_local! {
    static THREAD: RefCell<Option<TraceId>> = const { RefCell::new(None) };
}

/// Runs `future` with `id` as its task's current trace id.
pub async fn scope<F: Future>(id: TraceId, future: F) -> F::Output {
    TASK.scope(id, future).await
}

/// Runs `f` (synchronous, for example a Thrift handler on a blocking thread)
/// with `id` as this thread's current trace id.
pub fn with_thread<R>(id: TraceId, f: impl FnOnce() -> R) -> R {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            THREAD.with(|t| *t.borrow_mut() = None);
        }
    }
    THREAD.with(|t| *t.borrow_mut() = Some(id));
    let _reset = Reset;
    f()
}

/// The trace id of the request being handled here, if any.
pub fn current() -> Option<TraceId> {
    TASK.try_with(Clone::clone)
        .ok()
        .or_else(|| THREAD.with(|t| t.borrow().clone()))
}

/// The caller's span id, the parent of this request's span: `X-Parent`
/// when the trace id comes from `X-Trace`, else the parent-id field of a
/// `traceparent`. Only well-formed ids are taken.
pub fn parent_id_from_headers(headers: &HeaderMap) -> Option<String> {
    let valid = |name: HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .filter(|v| is_valid_id(v))
    };
    if valid(X_TRACE).is_some() {
        return valid(X_PARENT).map(str::to_string);
    }
    headers
        .get(TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .and_then(traceparent)
        .map(|(_, parent)| parent.to_string())
}

/// The trace-id field of a `traceparent` header.
fn traceparent_id(value: &str) -> Option<&str> {
    traceparent(value).map(|(trace, _)| trace)
}

/// The trace id and parent id of a `traceparent` header
/// (`00-<32 hex>-<16 hex>-<2 hex>`).
fn traceparent(value: &str) -> Option<(&str, &str)> {
    let mut parts = value.split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, n: usize| {
        s.len() == n && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    let valid = hex(version, 2)
        && hex(trace, 32)
        && hex(parent, 16)
        && hex(flags, 2)
        && trace.bytes().any(|b| b != b'0')
        && parent.bytes().any(|b| b != b'0');
    valid.then_some((trace, parent))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_header_ids() {
        let mut h = HeaderMap::new();
        h.insert(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                .parse()
                .unwrap(),
        );
        assert_eq!(
            TraceId::from_headers(&h).to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        h.insert("x-trace", "1234567".parse().unwrap());
        assert_eq!(TraceId::from_headers(&h).to_string(), "1234567");
        assert_eq!(parent_id_from_headers(&h), None, "X-Trace without X-Parent");
        h.insert("x-parent", "89abc".parse().unwrap());
        assert_eq!(parent_id_from_headers(&h).as_deref(), Some("89abc"));
        h.remove("x-trace");
        assert_eq!(
            parent_id_from_headers(&h).as_deref(),
            Some("00f067aa0ba902b7"),
            "traceparent's parent-id"
        );
        let generated = TraceId::from_headers(&HeaderMap::new());
        assert_eq!(generated.to_string().len(), 32);
        assert_ne!(generated, TraceId::generate());
    }

    #[tokio::test]
    async fn the_current_id_follows_the_task_and_the_thread() {
        assert_eq!(current(), None);
        let id = TraceId::given("abc");
        assert_eq!(
            scope(id.clone(), async { current() }).await,
            Some(id.clone())
        );
        assert_eq!(with_thread(id.clone(), current), Some(id));
        assert_eq!(current(), None);
    }
}
