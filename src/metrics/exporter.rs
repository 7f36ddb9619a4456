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

use super::bind::{self, Bound};
use super::{encode, scrape, Metrics};
use crate::config::values::Endpoint;
use crate::server::listener::Listener;

/// How often a worker writes its process figures to its file, so that a
/// scrape answered by a sibling sees them fresh.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// How long a scrape's request head may take to arrive (a scraper sends it
/// at once).
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest an exporter connection stays open, however it is used: a
/// scraper that keeps its connection alive reconnects after this, and one
/// that never reads its answer is cut off.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);

/// The most exporter connections a worker holds at once. Past it, the
/// exporter stops accepting until one closes: new ones wait in the
/// listen backlog, which costs this process no file descriptor, so silent
/// scrape connections cannot take the descriptors the service's own
/// accept loop needs.
pub(crate) const MAX_CONNECTIONS: usize = 16;

/// How often a worker whose sibling serves the UNIX `metrics.bind` tries
/// to take it over (it can once that sibling has exited).
const TAKE_OVER_EVERY: Duration = Duration::from_secs(1);

/// Serves scrapes on `metrics.bind` until the task is dropped: on the
/// listener bound, or, while a sibling worker serves the UNIX socket, on
/// that socket once the sibling is gone.
pub(crate) async fn serve(bound: Bound, endpoint: Endpoint, metrics: Arc<Metrics>) {
    let mut bound = bound;
    loop {
        match bound {
            Bound::Listener(listener) => return accept_scrapes(listener, metrics).await,
            Bound::HeldBySibling(_) => {
                tokio::time::sleep(TAKE_OVER_EVERY).await;
                let (wanted, dir) = (endpoint.clone(), metrics.dir().to_path_buf());
                bound = match tokio::task::spawn_blocking(move || bind::bind(&wanted, &dir)).await {
                    Ok(Ok(Bound::Listener(listener))) => {
                        tracing::info!("Prometheus metrics exported on {endpoint} from now on");
                        Bound::Listener(listener)
                    }
                    Ok(Ok(held)) => held,
                    Ok(Err(e)) => {
                        warn!("{e}");
                        return;
                    }
                    Err(_) => return,
                };
            }
        }
    }
}

/// Serves scrapes on `listener`.
async fn accept_scrapes(listener: Listener, metrics: Arc<Metrics>) {
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
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
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
            let _slot = slot;
            let service = service_fn(move |request| answer(Arc::clone(&metrics), request));
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            match tokio::time::timeout(CONNECTION_LIFETIME, connection).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    debug!(peer = %peer, "metrics exporter: connection closed with an error: {e}")
                }
                Err(_) => {
                    debug!(peer = %peer, "metrics exporter: connection closed after {CONNECTION_LIFETIME:?}")
                }
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
