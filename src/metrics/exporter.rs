//! The exporter: `GET /metrics` on `metrics.bind`, a port every worker
//! binds with SO_REUSEADDR and SO_REUSEPORT, so whichever worker the kernel
//! hands a scrape to answers it, with the sums over all workers. Any other
//! path gets `404 Not Found`, as baseplate.py's exporter answers.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tracing::{debug, warn};

use super::{encode, scrape, Metrics};
use crate::server::listener::Listener;

/// How often a worker writes its process figures to its file, so that a
/// scrape answered by a sibling sees them fresh.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// How long a scrape's request head may take to arrive.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves scrapes on `listener` until the task is dropped.
pub(crate) async fn serve(listener: Listener, metrics: Arc<Metrics>) {
    let sampler = {
        let metrics = Arc::clone(&metrics);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(SAMPLE_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                metrics.sample_process();
            }
        })
    };
    // Stops the sampler when the exporter stops.
    let _sampler = AbortOnDrop(sampler);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                debug!("metrics exporter: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let metrics = Arc::clone(&metrics);
        tokio::spawn(async move {
            let service = service_fn(move |request| answer(Arc::clone(&metrics), request));
            let served = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(e) = served {
                debug!(peer = %peer, "metrics exporter: connection closed with an error: {e}");
            }
        });
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn answer(
    metrics: Arc<Metrics>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if request.uri().path() != "/metrics" {
        return Ok(text(StatusCode::NOT_FOUND, "Not Found"));
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return Ok(text(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed"));
    }
    metrics.sample_process();
    let dir = metrics.dir().to_path_buf();
    // File locks and reads block: off the async workers.
    let scraped = tokio::task::spawn_blocking(move || scrape::scrape(&dir)).await;
    let scraped = match scraped {
        Ok(Ok(scraped)) => scraped,
        Ok(Err(e)) => {
            warn!(
                "cannot read the metrics in {}: {e}",
                metrics.dir().display()
            );
            return Ok(text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot read the metrics directory",
            ));
        }
        Err(_) => {
            return Ok(text(StatusCode::INTERNAL_SERVER_ERROR, "the scrape failed"));
        }
    };
    if scraped.compacted > 0 {
        debug!(
            "merged the metrics of {} exited worker(s) into the archive",
            scraped.compacted
        );
    }
    let body = encode::encode(&scraped.totals);
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, encode::CONTENT_TYPE)
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_default())
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain"),
    );
    response
}
