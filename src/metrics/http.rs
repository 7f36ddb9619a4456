//! HTTP request metrics: each (method, endpoint) has its series looked up
//! once ([`EndpointSeries`]), so that a request costs a lookup by endpoint
//! name when the app names it, and atomic adds.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Instant;

use super::names::{self, Metric};
use super::store::Slots;
use super::{observe, Metrics, OTHER};

/// HTTP methods shown as they are; any other (an extension method a client
/// made up) is `other`, so that clients cannot add series at will.
pub(crate) const METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// One slot per method label: [`METHODS`], then `other`.
const LABELS: usize = METHODS.len() + 1;

/// The `http_method` label of `method`, and its index (one past
/// [`METHODS`] for `other`).
pub(crate) fn method_label(method: &http::Method) -> (&'static str, usize) {
    let name = method.as_str();
    match METHODS.iter().position(|m| *m == name) {
        Some(i) => (METHODS[i], i),
        None => (OTHER, METHODS.len()),
    }
}

/// The label of a request whose endpoint was never named.
pub(crate) const UNNAMED: &str = "unknown";

/// The label of an unnamed request that got a 404.
const NOT_FOUND: &str = "404";

/// Every endpoint's series, by method.
#[derive(Default)]
pub(crate) struct HttpSeries {
    /// Named endpoints, by method index.
    named: [RwLock<HashMap<Box<str>, Arc<EndpointSeries>>>; LABELS],
    /// `unknown`, by method index: every request starts there.
    unnamed: [OnceLock<Arc<EndpointSeries>>; LABELS],
    /// `404`, by method index.
    not_found: [OnceLock<Arc<EndpointSeries>>; LABELS],
}

/// The series of one method and endpoint.
pub(crate) struct EndpointSeries {
    method: &'static str,
    endpoint: Arc<str>,
    active: Option<Slots>,
    /// By success (`true` first), each made on first use: a series appears
    /// once it has a value.
    latency: [OnceLock<Option<Slots>>; 2],
    request_size: [OnceLock<Option<Slots>>; 2],
    response_size: [OnceLock<Option<Slots>>; 2],
    /// `http_server_requests_total`, by status code.
    requests: RwLock<Vec<(u16, Slots)>>,
}

impl EndpointSeries {
    fn new(metrics: &Metrics, method: &'static str, endpoint: &str) -> EndpointSeries {
        EndpointSeries {
            method,
            endpoint: Arc::from(endpoint),
            active: metrics.series(&names::HTTP_ACTIVE, &[method, endpoint]),
            latency: Default::default(),
            request_size: Default::default(),
            response_size: Default::default(),
            requests: RwLock::default(),
        }
    }

    /// One of the per-success histograms.
    fn histogram<'a>(
        &self,
        metrics: &Metrics,
        cells: &'a [OnceLock<Option<Slots>>; 2],
        metric: &Metric,
        success: bool,
    ) -> &'a Option<Slots> {
        cells[usize::from(!success)].get_or_init(|| {
            metrics.series(
                metric,
                &[self.method, &self.endpoint, success_label(success)],
            )
        })
    }

    /// Counts one response with `status`.
    fn count(&self, metrics: &Metrics, status: u16) {
        let found = self
            .requests
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|(code, _)| *code == status)
            .map(|(_, slots)| slots.clone());
        let slots = match found {
            Some(slots) => Some(slots),
            None => {
                let mut requests = self.requests.write().unwrap_or_else(|e| e.into_inner());
                match requests.iter().find(|(code, _)| *code == status) {
                    Some((_, slots)) => Some(slots.clone()),
                    None => {
                        let code = status.to_string();
                        let made = metrics.series(
                            &names::HTTP_REQUESTS,
                            &[
                                self.method,
                                &self.endpoint,
                                success_label(is_success(status)),
                                &code,
                            ],
                        );
                        if let Some(slots) = &made {
                            requests.push((status, slots.clone()));
                        }
                        made
                    }
                }
            }
        };
        if let Some(slots) = slots {
            slots.add(0, 1);
        }
    }
}

fn success_label(success: bool) -> &'static str {
    if success {
        "true"
    } else {
        "false"
    }
}

/// `http_success`: 2xx and 3xx.
fn is_success(status: u16) -> bool {
    (200..400).contains(&status)
}

impl Metrics {
    fn unnamed(&self, method: &'static str, index: usize) -> &Arc<EndpointSeries> {
        self.http.unnamed[index]
            .get_or_init(|| Arc::new(EndpointSeries::new(self, method, UNNAMED)))
    }

    fn not_found(&self, method: &'static str, index: usize) -> &Arc<EndpointSeries> {
        self.http.not_found[index]
            .get_or_init(|| Arc::new(EndpointSeries::new(self, method, NOT_FOUND)))
    }

    fn named(&self, method: &'static str, index: usize, name: &str) -> Arc<EndpointSeries> {
        let map = &self.http.named[index];
        if let Some(series) = map.read().unwrap_or_else(|e| e.into_inner()).get(name) {
            return Arc::clone(series);
        }
        let mut map = map.write().unwrap_or_else(|e| e.into_inner());
        Arc::clone(
            map.entry(name.into())
                .or_insert_with(|| Arc::new(EndpointSeries::new(self, method, name))),
        )
    }
}

/// The route an HTTP request matched, as the `http_endpoint` label of its
/// metrics (baseplate.py's matched route name) and the `http.route` of its
/// exported span. Not to be confused with
/// [`config::Endpoint`](crate::config::Endpoint), an address to listen on
/// or connect to. With metrics on, or spans taken by a tracing layer
/// (OpenTelemetry export), the server puts one in every request's
/// extensions; an app (or a layer that routes, like an axum
/// `route_layer`) names the route on it:
///
/// ```
/// use baseplate::metrics::RouteLabel;
///
/// fn route(request: &http::Request<()>) {
///     if let Some(label) = request.extensions().get::<RouteLabel>() {
///         label.set("/users/{id}");
///     }
/// }
/// # route(&http::Request::new(()));
/// ```
///
/// Use the route's pattern or name, never the raw path: every distinct
/// value is a new series. A request whose endpoint was not named is
/// labelled `404` when it got a 404, and `unknown` otherwise; its span
/// has no `http.route`.
#[derive(Clone)]
pub struct RouteLabel {
    inner: Arc<Mutex<RouteLabelState>>,
}

impl std::fmt::Debug for RouteLabel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("RouteLabel").field(&self.get()).finish()
    }
}

struct RouteLabelState {
    /// Where the request is counted, with metrics on.
    counted: Option<Counted>,
    /// The name the app gave, if any.
    name: Option<Arc<str>>,
    /// Set when the request has been recorded: later names are ignored.
    finished: bool,
}

/// A request's place in the metrics.
struct Counted {
    metrics: Arc<Metrics>,
    /// The method's index in [`METHODS`].
    index: usize,
    /// Where the request is counted now: `unknown` until named. Its
    /// active-requests gauge counts this request.
    series: Arc<EndpointSeries>,
}

impl RouteLabel {
    /// A label for a request that is not counted (metrics off): only its
    /// span takes the name.
    pub(crate) fn uncounted() -> RouteLabel {
        RouteLabel {
            inner: Arc::new(Mutex::new(RouteLabelState {
                counted: None,
                name: None,
                finished: false,
            })),
        }
    }

    /// Names the endpoint; the last name given before the response wins.
    pub fn set(&self, name: &str) {
        let mut state = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if state.finished || state.name.as_deref() == Some(name) {
            return;
        }
        let Some(counted) = &mut state.counted else {
            state.name = Some(Arc::from(name));
            return;
        };
        let series = counted
            .metrics
            .named(counted.series.method, counted.index, name);
        // The request moves to its endpoint's active-requests gauge.
        if let Some(old) = &counted.series.active {
            old.sub(0, 1);
        }
        if let Some(new) = &series.active {
            new.add(0, 1);
        }
        state.name = Some(Arc::clone(&series.endpoint));
        if let Some(counted) = &mut state.counted {
            counted.series = series;
        }
    }

    /// The name given, if any.
    pub fn get(&self) -> Option<Arc<str>> {
        let state = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        state.name.clone()
    }
}

/// One HTTP request's metrics, from its start to its response.
pub(crate) struct HttpRequestMetrics {
    endpoint: RouteLabel,
    started: Instant,
    request_size: u64,
    /// Set by `finish`; a request dropped before it (hyper drops the
    /// request's future when the client closes the connection) only leaves
    /// the active-requests gauges, in `drop`.
    finished: bool,
}

impl HttpRequestMetrics {
    /// Starts recording a request: counted as active (endpoint not yet
    /// named) until [`finish`](Self::finish).
    pub(crate) fn start(metrics: &Arc<Metrics>, method: &http::Method, request_size: u64) -> Self {
        let (method, index) = method_label(method);
        let series = Arc::clone(metrics.unnamed(method, index));
        if let Some(active) = &series.active {
            active.add(0, 1);
        }
        metrics.in_flight(true);
        HttpRequestMetrics {
            endpoint: RouteLabel {
                inner: Arc::new(Mutex::new(RouteLabelState {
                    counted: Some(Counted {
                        metrics: Arc::clone(metrics),
                        index,
                        series,
                    }),
                    name: None,
                    finished: false,
                })),
            },
            started: Instant::now(),
            request_size,
            finished: false,
        }
    }

    /// The handle the app names the endpoint on.
    pub(crate) fn endpoint(&self) -> RouteLabel {
        self.endpoint.clone()
    }

    /// Records the response. Returns what records the response's size
    /// later when it is not known now (a streamed body).
    pub(crate) fn finish(mut self, status: u16, response_size: Option<u64>) -> Option<LateSize> {
        let latency = self.started.elapsed();
        let state = self.end();
        let named = state.name.is_some();
        let counted = state.counted.as_ref()?;
        let metrics = Arc::clone(&counted.metrics);
        let series = if !named && status == 404 {
            Arc::clone(metrics.not_found(counted.series.method, counted.index))
        } else {
            Arc::clone(&counted.series)
        };
        drop(state);
        let success = is_success(status);
        series.count(&metrics, status);
        if let Some(slots) =
            series.histogram(&metrics, &series.latency, &names::HTTP_LATENCY, success)
        {
            observe(
                slots,
                names::LATENCY_BUCKETS,
                latency.as_secs_f64(),
                latency.as_nanos() as u64,
            );
        }
        if let Some(slots) = series.histogram(
            &metrics,
            &series.request_size,
            &names::HTTP_REQUEST_SIZE,
            success,
        ) {
            observe(
                slots,
                names::SIZE_BUCKETS,
                self.request_size as f64,
                self.request_size,
            );
        }
        let late = LateSize {
            metrics,
            series,
            success,
        };
        match response_size {
            Some(size) => {
                late.record(size);
                None
            }
            None => Some(late),
        }
    }
}

impl HttpRequestMetrics {
    /// Ends the request's time as active (later endpoint names are
    /// ignored); returns its state, still locked.
    fn end(&mut self) -> std::sync::MutexGuard<'_, RouteLabelState> {
        self.finished = true;
        let mut state = self
            .endpoint
            .inner
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        state.finished = true;
        if let Some(counted) = &state.counted {
            if let Some(active) = &counted.series.active {
                active.sub(0, 1);
            }
            counted.metrics.in_flight(false);
        }
        state
    }
}

impl Drop for HttpRequestMetrics {
    fn drop(&mut self) {
        if !self.finished {
            // Abandoned: no response, so no status to count it under.
            drop(self.end());
        }
    }
}

/// Records a response's size: at once, or once a streamed body has been
/// sent.
pub(crate) struct LateSize {
    metrics: Arc<Metrics>,
    series: Arc<EndpointSeries>,
    success: bool,
}

impl LateSize {
    /// Records `size` bytes.
    pub(crate) fn record(self, size: u64) {
        if let Some(slots) = self.series.histogram(
            &self.metrics,
            &self.series.response_size,
            &names::HTTP_RESPONSE_SIZE,
            self.success,
        ) {
            observe(slots, names::SIZE_BUCKETS, size as f64, size);
        }
    }
}
