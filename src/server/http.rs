//! The HTTP connection server: HTTP/1.1 and h2c through hyper-util's auto
//! builder, each request given a trace id, a log span and a place in the
//! tracker.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tower::Service;
use tracing::{debug, error, Instrument};

use super::catch_unwind::CatchUnwind;
use super::listener::Stream;
use super::request_span::{record_response, request_span};
use super::shutdown::{Shutdown, FIRST_REQUEST_GRACE};
use super::tracker::{Activity, ConnectionHandle, RequestInfo};
use super::{ConnectionFuture, ConnectionServer, HttpOptions};
use crate::app::{full_body, HttpRequest, HttpResponse, HttpService};
use crate::body::RequestBody;
use crate::health::http::HttpProbes;
use crate::metrics::{HttpRequestMetrics, Metrics, RouteLabel};
use crate::trace::{self, TraceId};

/// How often an HTTP/2 connection is pinged, and how long a ping may go
/// unanswered before the connection is closed.
const H2_PING_INTERVAL: Duration = Duration::from_secs(20);

/// How long a connection closing for idleness may take to finish.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Why the watchdog ended a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expired {
    /// No whole request head within `header_timeout` of accept.
    FirstRequest,
    /// Idle for `idle_timeout`.
    Idle,
}

/// Waits until `connection` overstays: no first request head within
/// `header_timeout` of accept (silent clients, half-sent prefaces), or idle
/// between requests for `idle_timeout` (HTTP/1.1 keep-alive, HTTP/2 with no
/// open stream).
async fn watchdog(
    connection: ConnectionHandle,
    header_timeout: Duration,
    idle_timeout: Duration,
) -> Expired {
    // Requests change the state without waking this task (that would cost
    // every request a wake-up), so look again at least this often: a
    // connection is closed at most a quarter of a timeout late.
    let recheck = header_timeout.min(idle_timeout) / 4;
    loop {
        let now = tokio::time::Instant::now();
        let deadline = match connection.activity() {
            Activity::NoRequestYet(opened) => {
                let deadline = tokio::time::Instant::from_std(opened) + header_timeout;
                if deadline <= now {
                    return Expired::FirstRequest;
                }
                deadline
            }
            Activity::IdleSince(since) => {
                let deadline = tokio::time::Instant::from_std(since) + idle_timeout;
                if deadline <= now {
                    return Expired::Idle;
                }
                deadline
            }
            Activity::Busy => now + recheck,
        };
        tokio::time::sleep_until(deadline.min(now + recheck)).await;
    }
}

/// Serves an [`HttpService`] on each connection.
pub(crate) struct HttpServer {
    app: HttpService,
    builder: Arc<auto::Builder<TokioExecutor>>,
    max_body_size: u64,
    body_timeout: Duration,
    /// A new connection's first request head must be in by then.
    header_timeout: Duration,
    /// An idle connection is closed after this long.
    idle_timeout: Duration,
    /// Where requests are counted, with metrics on.
    metrics: Option<Arc<Metrics>>,
    /// The server's answer to health probes, unless the app answers them.
    probes: Option<HttpProbes>,
    /// Whether requests carry their peer's address in their extensions,
    /// for a `handler` (the access log) to read: off, the request path
    /// saves the insert and its drop.
    peer_extension: bool,
}

impl HttpServer {
    /// A handler for `app` with the limits of `options`, counting requests
    /// in `metrics` and answering health probes with `probes`.
    pub(crate) fn new(
        app: HttpService,
        options: &HttpOptions,
        metrics: Option<Arc<Metrics>>,
        probes: Option<HttpProbes>,
    ) -> HttpServer {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(options.header_timeout)
            // hyper's buffer has a floor of 8 KiB; past it a head gets 431.
            .max_buf_size(options.max_header_size.max(8192));
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(options.max_header_size).unwrap_or(u32::MAX))
            // Pings find peers that vanished without closing.
            .keep_alive_interval(Some(H2_PING_INTERVAL))
            .keep_alive_timeout(H2_PING_INTERVAL);
        HttpServer {
            app,
            builder: Arc::new(builder),
            max_body_size: options.max_body_size,
            body_timeout: options.body_timeout,
            header_timeout: options.header_timeout,
            idle_timeout: options.idle_timeout,
            metrics,
            probes,
            peer_extension: false,
        }
    }

    /// Requests carry their peer's address in their extensions (for the
    /// `handler` the server section names).
    pub(crate) fn with_peer_extension(mut self) -> HttpServer {
        self.peer_extension = true;
        self
    }
}

impl ConnectionServer for HttpServer {
    fn serve(
        &self,
        stream: Stream,
        connection: ConnectionHandle,
        mut shutdown: Shutdown,
    ) -> ConnectionFuture {
        let app = self.app.clone();
        let builder = Arc::clone(&self.builder);
        let limits = BodyLimits {
            max_size: self.max_body_size,
            timeout: self.body_timeout,
        };
        let (header_timeout, idle_timeout) = (self.header_timeout, self.idle_timeout);
        let metrics = self.metrics.clone();
        let probes = self.probes.clone();
        let peer_extension = self.peer_extension;
        Box::pin(async move {
            let peer = connection.peer().clone();
            let first_request = connection.clone();
            let watched = connection.clone();
            let closing = shutdown.clone();
            let shared = ConnectionShared {
                connection,
                shutdown: closing,
                limits,
                metrics: metrics.clone(),
                probes,
                peer_extension,
            };
            let shared = Arc::new(shared);
            let service =
                service_fn(move |request| dispatch(app.clone(), Arc::clone(&shared), request));
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            tokio::pin!(conn);
            let result = tokio::select! {
                result = conn.as_mut() => result,
                expired = watchdog(watched, header_timeout, idle_timeout) => {
                    match expired {
                        Expired::FirstRequest => {
                            debug!(peer = %peer, "closing a connection that sent no request head within header_timeout");
                            if let Some(metrics) = &metrics {
                                metrics.limited("header_timeout");
                            }
                            return;
                        }
                        Expired::Idle => {
                            debug!(peer = %peer, "closing a connection idle for idle_timeout");
                            if let Some(metrics) = &metrics {
                                metrics.limited("idle_timeout");
                            }
                            conn.as_mut().graceful_shutdown();
                            // A peer that never lets it finish is cut off.
                            tokio::time::timeout(CLOSE_GRACE, conn.as_mut()).await.unwrap_or(Ok(()))
                        }
                    }
                }
                _ = shutdown.wait() => 'shutdown: {
                    if first_request.requests_seen() == 0 {
                        // A brand-new connection: let its first request
                        // arrive and be answered (with `Connection: close`,
                        // see `dispatch`) instead of resetting it.
                        if let Ok(result) = tokio::time::timeout(FIRST_REQUEST_GRACE, conn.as_mut()).await {
                            break 'shutdown result;
                        }
                    }
                    // Idle: closes now. Busy: the response in progress gets
                    // `Connection: close` (HTTP/1) or a GOAWAY is sent (h2).
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                debug!(peer = %peer, "connection closed with an error: {e}");
            }
        })
    }
}

/// `response`, recorded in the request's metrics (if on): a body whose size
/// is not known yet is counted as it is sent.
fn recorded(recording: Option<HttpRequestMetrics>, response: HttpResponse) -> HttpResponse {
    use http_body::Body;
    let Some(recording) = recording else {
        return response;
    };
    let size = response.body().size_hint().exact();
    match recording.finish(response.status().as_u16(), size) {
        Some(late) => response.map(|body| crate::metrics::counted_body::counted(body, late)),
        None => response,
    }
}

/// What every request of one connection shares.
struct ConnectionShared {
    connection: ConnectionHandle,
    shutdown: Shutdown,
    limits: BodyLimits,
    metrics: Option<Arc<Metrics>>,
    probes: Option<HttpProbes>,
    /// See [`HttpServer::peer_extension`].
    peer_extension: bool,
}

/// The request-body limits of the server options.
#[derive(Clone, Copy)]
struct BodyLimits {
    max_size: u64,
    timeout: Duration,
}

/// Runs one request through the app with its trace id as the task's
/// current one. An app error or panic becomes a logged
/// `500 Internal Server Error` for this request only.
async fn dispatch(
    mut app: HttpService,
    shared: Arc<ConnectionShared>,
    request: http::Request<Incoming>,
) -> Result<HttpResponse, Infallible> {
    let (connection, limits) = (&shared.connection, shared.limits);
    let http1 = request.version() <= http::Version::HTTP_11;
    let declared = request
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // Started before the size check, so that a refused body is counted too.
    let recording = shared
        .metrics
        .as_ref()
        .map(|metrics| HttpRequestMetrics::start(metrics, request.method(), declared.unwrap_or(0)));
    if declared.is_some_and(|n| n > limits.max_size) {
        return Ok(refuse_too_large(request, recording).await);
    }
    let mut request: HttpRequest =
        request.map(|body| RequestBody::new(body, limits.max_size, limits.timeout));
    let trace_id = TraceId::from_headers(request.headers());
    let span = request_span(&request, &trace_id);
    // When a tracing layer takes the span: the method and the route the
    // app names, for the response's attributes.
    let traced = (!span.is_disabled()).then(|| {
        let route = match &recording {
            Some(recording) => recording.endpoint(),
            None => RouteLabel::uncounted(),
        };
        (request.method().clone(), route, span.clone())
    });
    let _in_flight = connection.begin_request(
        RequestInfo::Http(request.method().clone(), request.uri().clone()),
        trace_id.clone(),
    );
    if shared.peer_extension {
        request.extensions_mut().insert(connection.peer().clone());
    }
    request.extensions_mut().insert(trace_id.clone());
    if let Some((_, route, _)) = &traced {
        request.extensions_mut().insert(route.clone());
    } else if let Some(recording) = &recording {
        request.extensions_mut().insert(recording.endpoint());
    }
    let probes = shared.probes.as_ref().filter(|p| p.is_probe(&request));
    let response = trace::scope(trace_id, async move {
        if let Some(probes) = probes {
            // Boxed: inline, the probe's state would grow (and be copied
            // with) every request's future.
            return Box::pin(probes.answer(&request)).await;
        }
        // The request stays in this future until the app takes it: moved
        // through a helper's future first, it was copied once more per
        // request (benches/baseline.txt).
        let answered = match std::future::poll_fn(|cx| app.poll_ready(cx)).await {
            Ok(()) => caught(app.call(request)).await,
            Err(e) => Err(e),
        };
        answered_or_500(answered)
    })
    .instrument(span)
    .await;
    if let Some((method, route, span)) = traced {
        record_response(&span, &method, response.status(), route.get().as_deref());
    }
    let mut response = recorded(recording, response);
    if http1 && shared.shutdown.is_triggered() {
        // Shutting down: this connection takes no further request.
        close_after(&mut response);
    }
    Ok(response)
}

/// Asks an HTTP/1 client to close the connection after `response`.
fn close_after(response: &mut HttpResponse) {
    response.headers_mut().insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("close"),
    );
}

/// The `413 Payload Too Large` for a body that declares more than
/// `max_request_size`.
async fn refuse_too_large(
    request: http::Request<Incoming>,
    recording: Option<HttpRequestMetrics>,
) -> HttpResponse {
    // A client that asked `Expect: 100-continue` has sent nothing yet and
    // reads the refusal at once. Others (Python's http.client, requests)
    // send the whole body before reading: closing on them mid-send makes
    // them see a broken pipe instead of the 413, so the body is read and
    // discarded first, within bounds (as nginx's lingering close).
    let waits_for_continue = request
        .headers()
        .get(http::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if !waits_for_continue {
        discard_body(request.into_body()).await;
    }
    let mut response = HttpResponse::new(full_body("Payload Too Large"));
    *response.status_mut() = http::StatusCode::PAYLOAD_TOO_LARGE;
    close_after(&mut response);
    recorded(recording, response)
}

/// The app's call, with a panic in it as its error.
async fn caught<F>(call: F) -> Result<HttpResponse, crate::error::BoxError>
where
    F: std::future::Future<Output = Result<HttpResponse, crate::error::BoxError>> + Unpin,
{
    CatchUnwind(call)
        .await
        .unwrap_or_else(|panic| Err(format!("the app panicked: {}", panic.0).into()))
}

/// The app's response, or a logged `500 Internal Server Error` for its error.
fn answered_or_500(answered: Result<HttpResponse, crate::error::BoxError>) -> HttpResponse {
    answered.unwrap_or_else(|e| {
        error!("the app failed to handle the request: {e}");
        internal_server_error()
    })
}

/// How much of a refused body is read and discarded before the refusal is
/// sent, at most.
pub(crate) const LINGER_BYTES: u64 = 128 << 20;

/// How long reading a refused body may take, at most.
pub(crate) const LINGER_TIME: Duration = Duration::from_secs(5);

/// Reads and drops `body` until it ends, [`LINGER_BYTES`] have come, or
/// [`LINGER_TIME`] has passed.
async fn discard_body(mut body: Incoming) {
    use http_body_util::BodyExt;
    let deadline = tokio::time::Instant::now() + LINGER_TIME;
    let mut seen = 0u64;
    while seen < LINGER_BYTES {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    seen += data.len() as u64;
                }
            }
            _ => return,
        }
    }
}

fn internal_server_error() -> HttpResponse {
    let mut response = HttpResponse::new(full_body("Internal Server Error"));
    *response.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain"),
    );
    response
}
