//! `baseplate.handlers.access_log`: one DEBUG line per request, like
//! gevent's access log: `PEER "METHOD TARGET VERSION" STATUS SECONDS`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use tower::{Layer, Service};
use tracing::debug;

use crate::server::listener::PeerAddr;

/// The name to use in `handler = ...`.
pub(crate) const NAME: &str = "baseplate.handlers.access_log";

/// Adds the access log around a service.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct AccessLogLayer;

impl<S> Layer<S> for AccessLogLayer {
    type Service = AccessLog<S>;

    fn layer(&self, inner: S) -> AccessLog<S> {
        AccessLog { inner }
    }
}

/// The service [`AccessLogLayer`] makes.
#[derive(Debug, Clone)]
pub(crate) struct AccessLog<S> {
    inner: S,
}

impl<S, B, RB> Service<http::Request<B>> for AccessLog<S>
where
    S: Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
    S::Error: std::fmt::Display,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let started = Instant::now();
        let peer = request
            .extensions()
            .get::<PeerAddr>()
            .map_or_else(|| "-".to_string(), ToString::to_string);
        let line = format!(
            "{} {} {:?}",
            request.method(),
            request.uri(),
            request.version()
        );
        let response = self.inner.call(request);
        Box::pin(async move {
            let result = response.await;
            let elapsed = started.elapsed().as_secs_f64();
            match &result {
                Ok(r) => debug!("{peer} \"{line}\" {} {elapsed:.6}", r.status().as_u16()),
                Err(e) => debug!("{peer} \"{line}\" failed: {e} {elapsed:.6}"),
            }
            result
        })
    }
}
