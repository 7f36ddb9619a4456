//! The HTTP connection handler: HTTP/1.1 and h2c through hyper-util's auto
//! builder, each request given a trace id, a log span and a place in the
//! tracker.

use std::convert::Infallible;
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tower::ServiceExt;
use tracing::{debug, error, Instrument};

use super::listener::Stream;
use super::shutdown::Shutdown;
use super::tracker::ConnectionHandle;
use super::{ConnectionFuture, ConnectionHandler};
use crate::app::{full_body, HttpRequest, HttpResponse, HttpService};
use crate::trace::TraceId;

/// Serves an [`HttpService`] on each connection.
pub struct HttpHandler {
    app: HttpService,
    builder: Arc<auto::Builder<TokioExecutor>>,
}

impl HttpHandler {
    /// A handler for `app`.
    pub fn new(app: HttpService) -> HttpHandler {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder.http1().timer(TokioTimer::new());
        builder.http2().timer(TokioTimer::new());
        HttpHandler {
            app,
            builder: Arc::new(builder),
        }
    }
}

impl ConnectionHandler for HttpHandler {
    fn handle(
        &self,
        stream: Stream,
        connection: ConnectionHandle,
        mut shutdown: Shutdown,
    ) -> ConnectionFuture {
        let app = self.app.clone();
        let builder = Arc::clone(&self.builder);
        Box::pin(async move {
            let peer = connection.peer().clone();
            let service =
                service_fn(move |request| dispatch(app.clone(), connection.clone(), request));
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            tokio::pin!(conn);
            let result = tokio::select! {
                result = conn.as_mut() => result,
                _ = shutdown.wait() => {
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

/// Runs one request through the app inside its trace span.
async fn dispatch(
    app: HttpService,
    connection: ConnectionHandle,
    mut request: HttpRequest,
) -> Result<HttpResponse, Infallible> {
    let trace_id = TraceId::from_headers(request.headers());
    let target = request.uri().path_and_query().map_or("/", |p| p.as_str());
    let what = format!("{} {}", request.method(), target);
    let _in_flight = connection.begin_request(what, trace_id.to_string());
    let span = tracing::info_span!("request", trace_id = %trace_id);
    request.extensions_mut().insert(connection.peer().clone());
    request.extensions_mut().insert(trace_id);
    match app.oneshot(request).instrument(span.clone()).await {
        Ok(response) => Ok(response),
        Err(e) => {
            span.in_scope(|| error!("the app failed to handle the request: {e}"));
            let mut response = HttpResponse::new(full_body("Internal Server Error"));
            *response.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain"),
            );
            Ok(response)
        }
    }
}
