//! Prometheus metrics, multi-process like baseplate.py's: every worker
//! records its requests into a memory-mapped file of its own in a shared
//! directory (`store`, `file`), and any worker answering `GET /metrics` on
//! the shared exporter port (`exporter`) sums every file (`scrape`) and
//! encodes the sums with prometheus-client (`encode`). The metric names
//! are baseplate.py's (`names`).
//!
//! Off unless `metrics.enabled = true` in the app section. An HTTP app
//! names the endpoint a request matched through the [`Endpoint`] found in
//! the request's extensions.

pub(crate) mod counted_body;
mod encode;
pub(crate) mod exporter;
mod file;
pub(crate) mod names;
mod process;
mod scrape;
mod store;
pub(crate) mod thrift;

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::Deserialize;

use crate::config::{from_section, ConfigErrors, Endpoint as Address, Section};
use names::Metric;
use store::{Slots, Store};

/// The environment variable naming the shared directory, as baseplate.py
/// (and prometheus_client) read it.
pub const MULTIPROC_DIR_VAR: &str = "PROMETHEUS_MULTIPROC_DIR";

/// The environment variable that names a worker's file, as baseplate.py
/// reads it; the pid when unset.
pub const WORKER_ID_VAR: &str = "MULTIPROCESS_WORKER_ID";

/// The default `metrics.bind`.
pub const DEFAULT_BIND: &str = "0.0.0.0:6060";

/// `metrics.*` of the app section, as written.
#[derive(Debug, Deserialize)]
struct RawOptions {
    metrics: Option<RawMetrics>,
}

#[derive(Debug, Deserialize)]
struct RawMetrics {
    enabled: Option<bool>,
    bind: Option<Address>,
    multiprocess_dir: Option<PathBuf>,
}

/// The exporter's settings, read from the app section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MetricsOptions {
    /// Where the exporter listens.
    pub bind: Address,
    /// `metrics.multiprocess_dir`, if set.
    pub dir: Option<PathBuf>,
}

impl MetricsOptions {
    /// `None` unless `metrics.enabled = true`.
    pub(crate) fn from_app_section(
        section: &Section,
    ) -> Result<Option<MetricsOptions>, ConfigErrors> {
        let raw: RawOptions = from_section(&section.only(|k| k.starts_with("metrics.")))?;
        let Some(raw) = raw.metrics else {
            return Ok(None);
        };
        if raw.enabled != Some(true) {
            return Ok(None);
        }
        Ok(Some(MetricsOptions {
            bind: match raw.bind {
                Some(bind) => bind,
                None => DEFAULT_BIND.parse().unwrap_or(Address::Tcp {
                    host: "0.0.0.0".into(),
                    port: 6060,
                }),
            },
            dir: raw.multiprocess_dir,
        }))
    }

    /// The shared directory: `metrics.multiprocess_dir`, else
    /// `PROMETHEUS_MULTIPROC_DIR`, else one per Einhorn master (so that
    /// every worker of a master shares it), else one for this process. The
    /// default ones are in a directory of this user's own under `$TMPDIR`,
    /// made private (0700) and checked to be this user's, so that no other
    /// user of the machine can read or plant metrics files there.
    pub(crate) fn directory(&self, einhorn_master: Option<i32>) -> std::io::Result<PathBuf> {
        if let Some(dir) = &self.dir {
            return Ok(dir.clone());
        }
        if let Some(dir) = std::env::var_os(MULTIPROC_DIR_VAR).filter(|d| !d.is_empty()) {
            return Ok(PathBuf::from(dir));
        }
        let uid = nix::unistd::geteuid();
        let base = std::env::temp_dir().join(format!("baseplate-metrics-{uid}"));
        private_dir(&base, uid)?;
        Ok(match einhorn_master {
            Some(master) => base.join(format!("einhorn-{master}")),
            None => base.join(format!("process-{}", std::process::id())),
        })
    }
}

/// Makes `dir` (mode 0700) unless it exists, and checks that it belongs to
/// `uid` and that no one else may write to it.
fn private_dir(dir: &Path, uid: nix::unistd::Uid) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let meta = std::fs::symlink_metadata(dir)?;
    if !meta.is_dir() || meta.uid() != uid.as_raw() || meta.mode() & 0o022 != 0 {
        return Err(std::io::Error::other(format!(
            "{} is not a private directory of uid {uid} (owner uid {}, mode {:o}); \
             set metrics.multiprocess_dir or PROMETHEUS_MULTIPROC_DIR",
            dir.display(),
            meta.uid(),
            meta.mode() & 0o7777
        )));
    }
    Ok(())
}

/// The name of the server kind, as the `server_protocol` label says it.
pub(crate) fn protocol_label(http: bool) -> &'static str {
    if http {
        "http"
    } else {
        "thrift"
    }
}

/// This worker's recorder: the file, and the series already looked up.
pub(crate) struct Metrics {
    store: Store,
    dir: PathBuf,
    protocol: &'static str,
    /// The request metrics of one HTTP (method, endpoint, success, code).
    http: RwLock<HashMap<Box<[u8]>, Arc<HttpSeries>>>,
    /// The request metrics of one Thrift outcome.
    thrift: RwLock<HashMap<Box<[u8]>, Arc<ThriftSeries>>>,
    /// The series every request or connection touches, looked up once.
    fixed: Fixed,
    /// The active-requests gauge of a request whose endpoint is not named
    /// yet, by method (see [`method_label`]).
    unnamed: [std::sync::OnceLock<Option<Slots>>; METHODS.len() + 1],
    /// The Thrift method names seen, up to [`MAX_THRIFT_METHODS`].
    thrift_methods: RwLock<std::collections::HashSet<Box<str>>>,
    /// Set once a write to the file failed, so it is logged once.
    failed: AtomicBool,
}

/// The series of a server that do not depend on the request.
struct Fixed {
    accepted: Option<Slots>,
    open: Option<Slots>,
    active: Option<Slots>,
}

/// HTTP methods shown as they are; any other (an extension method a client
/// made up) is `other`, so that clients cannot add series at will.
const METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// The `http_method` label of `method`, and its index in [`METHODS`] (or
/// one past the end for `other`).
fn method_label(method: &http::Method) -> (&'static str, usize) {
    let name = method.as_str();
    match METHODS.iter().position(|m| *m == name) {
        Some(i) => (METHODS[i], i),
        None => (OTHER, METHODS.len()),
    }
}

/// The label value standing for the values past a bound.
pub(crate) const OTHER: &str = "other";

/// The most distinct `thrift_method` values: method names come from the
/// wire, and a client sending made-up names must not grow the series (and
/// every scrape) without end. Later new names are counted as `other`.
pub(crate) const MAX_THRIFT_METHODS: usize = 1000;

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").field("dir", &self.dir).finish()
    }
}

thread_local! {
    /// A buffer for building series keys without allocating.
    static KEY: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

struct HttpSeries {
    requests: Slots,
    latency: Slots,
    request_size: Slots,
    response_size: Slots,
}

struct ThriftSeries {
    requests: Slots,
    latency: Slots,
}

/// The value under `key` in `cache`, made by `make` the first time: the
/// fast path is one read lock and one hash, with no allocation.
fn cached<T: Clone>(
    cache: &RwLock<HashMap<Box<[u8]>, T>>,
    key: &[u8],
    make: impl FnOnce() -> Option<T>,
) -> Option<T> {
    if let Some(value) = cache.read().unwrap_or_else(|e| e.into_inner()).get(key) {
        return Some(value.clone());
    }
    let value = make()?;
    cache
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key.into(), value.clone());
    Some(value)
}

/// Adds one observation to a histogram's slots: its bucket (non-cumulative;
/// the last slot but one is `+Inf`) and the sum, in the metric's units.
fn observe(slots: &Slots, buckets: &[f64], value: f64, scaled: u64) {
    let bucket = buckets.partition_point(|&bound| bound < value);
    slots.add(bucket, 1);
    slots.add(buckets.len() + 1, scaled);
}

impl Metrics {
    /// Opens this worker's file in `dir`.
    pub(crate) fn open(dir: &Path, http: bool) -> std::io::Result<Metrics> {
        let worker_id = std::env::var(WORKER_ID_VAR)
            .ok()
            .filter(|id| !id.is_empty())
            .unwrap_or_else(|| std::process::id().to_string());
        let store = Store::create(dir, &worker_id)?;
        let protocol = protocol_label(http);
        let mut metrics = Metrics {
            store,
            dir: dir.to_path_buf(),
            protocol,
            http: RwLock::default(),
            thrift: RwLock::default(),
            fixed: Fixed {
                accepted: None,
                open: None,
                active: None,
            },
            unnamed: Default::default(),
            thrift_methods: RwLock::default(),
            failed: AtomicBool::new(false),
        };
        metrics.fixed = Fixed {
            accepted: metrics.series(&names::ACCEPTED_CONNECTIONS, &[protocol]),
            open: metrics.series(&names::OPEN_CONNECTIONS, &[protocol]),
            active: metrics.series(&names::ACTIVE_REQUESTS, &[protocol]),
        };
        if let Some(workers) = metrics.series(&names::PROCESS_WORKERS, &[]) {
            workers.set(0, 1);
        }
        Ok(metrics)
    }

    /// The shared directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The slots of `metric` with these label values; `None` (logged once)
    /// when the file cannot grow.
    fn slots_for(&self, metric: &Metric, key: &[u8]) -> Option<Slots> {
        match self.store.slots(metric.entry_kind(), key, metric.slots()) {
            Ok(slots) => Some(slots),
            Err(e) => {
                if !self.failed.swap(true, Ordering::Relaxed) {
                    tracing::error!(
                        "cannot record metrics in {}: {e}; metrics are incomplete from now on",
                        self.store.path().display()
                    );
                }
                None
            }
        }
    }

    /// A series of a metric this module records directly (not per request).
    fn series(&self, metric: &Metric, values: &[&str]) -> Option<Slots> {
        KEY.with_borrow_mut(|key| {
            names::key(metric, values, key);
            // The store keeps every series by key already.
            self.slots_for(metric, key)
        })
    }

    /// A connection was accepted.
    pub(crate) fn connection_opened(&self) {
        if let Some(s) = &self.fixed.accepted {
            s.add(0, 1);
        }
        if let Some(s) = &self.fixed.open {
            s.add(0, 1);
        }
    }

    /// A connection closed.
    pub(crate) fn connection_closed(&self) {
        if let Some(s) = &self.fixed.open {
            s.sub(0, 1);
        }
    }

    /// A limit held a connection back (`max_concurrency`) or closed it.
    pub(crate) fn limited(&self, limit: &str) {
        if let Some(s) = self.series(&names::LIMITED_CONNECTIONS, &[self.protocol, limit]) {
            s.add(0, 1);
        }
    }

    /// A request started (`true`) or ended (`false`), any endpoint.
    pub(crate) fn in_flight(&self, started: bool) {
        if let Some(s) = &self.fixed.active {
            if started {
                s.add(0, 1);
            } else {
                s.sub(0, 1);
            }
        }
    }

    /// The active-requests gauge of an HTTP method and endpoint.
    fn http_active(&self, method: &str, endpoint: &str) -> Option<Slots> {
        self.series(&names::HTTP_ACTIVE, &[method, endpoint])
    }

    /// The active-requests gauge of a request not yet routed.
    fn http_unnamed(&self, method: &'static str, index: usize) -> Option<Slots> {
        self.unnamed[index]
            .get_or_init(|| self.http_active(method, UNNAMED))
            .clone()
    }

    /// The `thrift_method` label of `method`: itself, or `other` once
    /// [`MAX_THRIFT_METHODS`] names have been seen.
    pub(crate) fn thrift_method<'a>(&self, method: &'a str) -> &'a str {
        if self
            .thrift_methods
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(method)
        {
            return method;
        }
        let mut seen = self
            .thrift_methods
            .write()
            .unwrap_or_else(|e| e.into_inner());
        if seen.len() < MAX_THRIFT_METHODS {
            seen.insert(method.into());
            method
        } else if seen.contains(method) {
            method
        } else {
            OTHER
        }
    }

    /// The active-requests gauge of a Thrift method (already bounded).
    pub(crate) fn thrift_active(&self, method: &str) -> Option<Slots> {
        self.series(&names::THRIFT_ACTIVE, &[method])
    }

    /// Records one finished HTTP request.
    pub(crate) fn http_request(&self, done: &HttpDone<'_>) {
        let success = if (200..400).contains(&done.status) {
            "true"
        } else {
            "false"
        };
        let mut code = itoa_u16(done.status);
        let code = code.as_str();
        let series = KEY.with_borrow_mut(|key| {
            names::key(
                &names::HTTP_REQUESTS,
                &[done.method, done.endpoint, success, code],
                key,
            );
            cached(&self.http, key, || {
                let labels = [done.method, done.endpoint, success];
                let mut other = Vec::new();
                let mut slots = |metric: &Metric, values: &[&str]| {
                    names::key(metric, values, &mut other);
                    self.slots_for(metric, &other)
                };
                Some(Arc::new(HttpSeries {
                    requests: self.slots_for(&names::HTTP_REQUESTS, key)?,
                    latency: slots(&names::HTTP_LATENCY, &labels)?,
                    request_size: slots(&names::HTTP_REQUEST_SIZE, &labels)?,
                    response_size: slots(&names::HTTP_RESPONSE_SIZE, &labels)?,
                }))
            })
        });
        let Some(series) = series else { return };
        series.requests.add(0, 1);
        observe(
            &series.latency,
            names::LATENCY_BUCKETS,
            done.latency.as_secs_f64(),
            done.latency.as_nanos() as u64,
        );
        observe(
            &series.request_size,
            names::SIZE_BUCKETS,
            done.request_size as f64,
            done.request_size,
        );
        if let Some(size) = done.response_size {
            self.http_response_size(&series.response_size, size);
        }
    }

    fn http_response_size(&self, slots: &Slots, size: u64) {
        observe(slots, names::SIZE_BUCKETS, size as f64, size);
    }

    /// Records one finished Thrift call.
    pub(crate) fn thrift_call(
        &self,
        method: &str,
        outcome: &thrift::CallOutcome,
        latency: Duration,
    ) {
        let success = if outcome.exception.is_none() {
            "true"
        } else {
            "false"
        };
        let (exception, status, code) = match &outcome.exception {
            None => ("", "", String::new()),
            Some(e) => (
                e.type_name.as_str(),
                e.code.and_then(thrift::error_code_name).unwrap_or(""),
                e.code.map(|c| c.to_string()).unwrap_or_default(),
            ),
        };
        let series = KEY.with_borrow_mut(|key| {
            names::key(
                &names::THRIFT_REQUESTS,
                &[method, success, exception, status, &code],
                key,
            );
            cached(&self.thrift, key, || {
                let mut other = Vec::new();
                names::key(&names::THRIFT_LATENCY, &[method, success], &mut other);
                Some(Arc::new(ThriftSeries {
                    requests: self.slots_for(&names::THRIFT_REQUESTS, key)?,
                    latency: self.slots_for(&names::THRIFT_LATENCY, &other)?,
                }))
            })
        });
        let Some(series) = series else { return };
        series.requests.add(0, 1);
        observe(
            &series.latency,
            names::LATENCY_BUCKETS,
            latency.as_secs_f64(),
            latency.as_nanos() as u64,
        );
    }

    /// Writes this process's own figures (memory, fds, CPU, runtime) to its
    /// file, for whichever worker answers the next scrape.
    pub(crate) fn sample_process(&self) {
        let sample = process::sample();
        let set = |metric: &Metric, value: Option<u64>| {
            if let (Some(slots), Some(value)) = (self.series(metric, &[]), value) {
                slots.set(0, value);
            }
        };
        set(&names::PROCESS_RSS, sample.rss_bytes);
        set(&names::PROCESS_FDS, sample.open_fds);
        set(&names::PROCESS_CPU, sample.cpu_micros);
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let runtime = handle.metrics();
            set(&names::RUNTIME_WORKERS, Some(runtime.num_workers() as u64));
            set(
                &names::RUNTIME_ALIVE_TASKS,
                Some(runtime.num_alive_tasks() as u64),
            );
            set(
                &names::RUNTIME_QUEUE_DEPTH,
                Some(runtime.global_queue_depth() as u64),
            );
        }
    }
}

/// A status code as text, without allocating.
struct Code([u8; 3]);

impl Code {
    fn as_str(&mut self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("0")
    }
}

fn itoa_u16(status: u16) -> Code {
    let status = status.min(999);
    Code([
        b'0' + (status / 100) as u8,
        b'0' + (status / 10 % 10) as u8,
        b'0' + (status % 10) as u8,
    ])
}

/// One finished HTTP request, as recorded.
pub(crate) struct HttpDone<'a> {
    pub method: &'a str,
    pub endpoint: &'a str,
    pub status: u16,
    pub latency: Duration,
    pub request_size: u64,
    /// `None` when the body's size is not known yet (streamed): it is
    /// recorded through [`LateSize`] when it is.
    pub response_size: Option<u64>,
}

/// The endpoint an HTTP request matched, for the `http_endpoint` label
/// (baseplate.py's matched route name). With metrics on, the server puts
/// one in every request's extensions; an app (or a layer that routes, like
/// an axum `route_layer`) names the route on it:
///
/// ```
/// use baseplate::metrics::Endpoint;
///
/// fn route(request: &http::Request<()>) {
///     if let Some(endpoint) = request.extensions().get::<Endpoint>() {
///         endpoint.set("/users/{id}");
///     }
/// }
/// # route(&http::Request::new(()));
/// ```
///
/// Use the route's pattern or name, never the raw path: every distinct
/// value is a new series. A request whose endpoint was not named is
/// labelled `404` when it got a 404, and `unknown` otherwise.
#[derive(Clone)]
pub struct Endpoint {
    inner: Arc<Mutex<EndpointState>>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        f.debug_tuple("Endpoint").field(&state.name).finish()
    }
}

struct EndpointState {
    name: Option<Arc<str>>,
    /// The `http_method` label.
    method: &'static str,
    metrics: Arc<Metrics>,
    /// The active-requests gauge this request is counted in now.
    active: Option<Slots>,
    /// Set when the request has been recorded: later names are ignored.
    finished: bool,
}

/// The label of a request whose endpoint was never named.
pub(crate) const UNNAMED: &str = "unknown";

impl Endpoint {
    /// Names the endpoint; the last name given before the response wins.
    pub fn set(&self, name: impl Into<Arc<str>>) {
        let name = name.into();
        let mut state = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if state.finished {
            return;
        }
        // The request moves to its endpoint's active-requests gauge.
        let moved = state.metrics.http_active(state.method, &name);
        if let Some(old) = state.active.take() {
            old.sub(0, 1);
        }
        if let Some(new) = &moved {
            new.add(0, 1);
        }
        state.active = moved;
        state.name = Some(name);
    }

    /// The name given, if any.
    pub fn get(&self) -> Option<Arc<str>> {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .name
            .clone()
    }
}

/// One HTTP request's metrics, from its start to its response.
pub(crate) struct HttpRequestMetrics {
    endpoint: Endpoint,
    started: std::time::Instant,
    request_size: u64,
}

impl HttpRequestMetrics {
    /// Starts recording a request: counted as active (endpoint not yet
    /// named) until [`finish`](Self::finish).
    pub(crate) fn start(metrics: &Arc<Metrics>, method: &http::Method, request_size: u64) -> Self {
        let (method, index) = method_label(method);
        let active = metrics.http_unnamed(method, index);
        if let Some(active) = &active {
            active.add(0, 1);
        }
        metrics.in_flight(true);
        HttpRequestMetrics {
            endpoint: Endpoint {
                inner: Arc::new(Mutex::new(EndpointState {
                    name: None,
                    method,
                    metrics: Arc::clone(metrics),
                    active,
                    finished: false,
                })),
            },
            started: std::time::Instant::now(),
            request_size,
        }
    }

    /// The handle the app names the endpoint on.
    pub(crate) fn endpoint(&self) -> Endpoint {
        self.endpoint.clone()
    }

    /// Records the response. Returns what records the response's size
    /// later when it is not known now.
    pub(crate) fn finish(self, status: u16, response_size: Option<u64>) -> Option<LateSize> {
        let mut state = self
            .endpoint
            .inner
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        state.finished = true;
        if let Some(active) = state.active.take() {
            active.sub(0, 1);
        }
        let metrics = Arc::clone(&state.metrics);
        metrics.in_flight(false);
        let endpoint: Arc<str> = match &state.name {
            Some(name) => Arc::clone(name),
            None if status == 404 => Arc::from("404"),
            None => Arc::from(UNNAMED),
        };
        let method = state.method;
        drop(state);
        metrics.http_request(&HttpDone {
            method,
            endpoint: &endpoint,
            status,
            latency: self.started.elapsed(),
            request_size: self.request_size,
            response_size,
        });
        response_size.is_none().then(|| LateSize {
            metrics,
            method,
            endpoint,
            success: (200..400).contains(&status),
        })
    }
}

/// Records a streamed response's size once its body has been sent.
pub(crate) struct LateSize {
    metrics: Arc<Metrics>,
    method: &'static str,
    endpoint: Arc<str>,
    success: bool,
}

impl LateSize {
    /// Records `size` bytes.
    pub(crate) fn record(self, size: u64) {
        let success = if self.success { "true" } else { "false" };
        if let Some(slots) = self.metrics.series(
            &names::HTTP_RESPONSE_SIZE,
            &[self.method, &self.endpoint, success],
        ) {
            self.metrics.http_response_size(&slots, size);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("bp-metrics-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn client_chosen_labels_are_bounded() {
        assert_eq!(method_label(&http::Method::GET), ("GET", 0));
        assert_eq!(method_label(&http::Method::PATCH), ("PATCH", 8));
        let made_up = http::Method::from_bytes(b"BREW").unwrap();
        assert_eq!(method_label(&made_up), (OTHER, METHODS.len()));

        let dir = temp_dir("bounded");
        let metrics = Metrics::open(&dir, false).unwrap();
        for i in 0..MAX_THRIFT_METHODS {
            let name = format!("m{i}");
            assert_eq!(metrics.thrift_method(&name), name);
        }
        assert_eq!(metrics.thrift_method("one_too_many"), OTHER);
        assert_eq!(metrics.thrift_method("m7"), "m7");
        drop(metrics);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_default_directory_must_be_private() {
        let uid = nix::unistd::geteuid();
        let dir = temp_dir("private");
        private_dir(&dir, uid).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = private_dir(&dir, uid).unwrap_err().to_string();
        assert!(
            e.contains("is not a private directory") && e.contains("mode 777"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
