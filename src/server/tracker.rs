//! Open connections and in-flight requests, so SIGUSR1 can say what the
//! server is doing. Shared by every server kind.
//!
//! The registry lock is taken only when a connection opens or closes; a
//! request touches only its own connection's lock, and describes itself
//! lazily (nothing is formatted unless a dump asks).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::listener::PeerAddr;
use crate::metrics::Metrics;
use crate::trace::TraceId;

/// What a request is, for the dump.
#[derive(Debug, Clone)]
pub(crate) enum RequestInfo {
    /// An HTTP request: method and target.
    Http(http::Method, http::Uri),
    /// A Thrift call: the method name.
    Thrift(std::sync::Arc<str>),
}

impl fmt::Display for RequestInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestInfo::Http(method, uri) => {
                let target = uri.path_and_query().map_or("/", |p| p.as_str());
                write!(f, "{method} {target}")
            }
            RequestInfo::Thrift(method) => write!(f, "thrift {method}"),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not stop the dump or the server.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The registry of open connections. Cheap to clone.
#[derive(Clone, Default)]
pub(crate) struct Tracker {
    state: Arc<Mutex<Registry>>,
    /// Where connections are counted, with metrics on.
    metrics: Option<Arc<Metrics>>,
}

#[derive(Default)]
struct Registry {
    next_id: u64,
    connections: BTreeMap<u64, Arc<Connection>>,
}

struct Connection {
    peer: PeerAddr,
    opened: Instant,
    requests: Mutex<Requests>,
}

struct Requests {
    next_id: u64,
    served: u64,
    in_flight: Vec<(u64, RequestInfo, TraceId, Instant)>,
    /// When the last request finished (or the connection opened).
    idle_since: Instant,
}

/// What a connection is doing, for idle and first-request deadlines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Activity {
    /// No request has started yet; the connection opened then.
    NoRequestYet(Instant),
    /// Requests are in flight.
    Busy,
    /// Idle between requests since then.
    IdleSince(Instant),
}

impl Tracker {
    /// A tracker that also counts connections in `metrics`.
    pub(crate) fn new(metrics: Option<Arc<Metrics>>) -> Tracker {
        Tracker {
            state: Arc::default(),
            metrics,
        }
    }

    /// A limit held a connection back or closed it (for metrics).
    pub(crate) fn limited(&self, limit: &str) {
        if let Some(metrics) = &self.metrics {
            metrics.limited(limit);
        }
    }

    /// Registers a new connection; it is forgotten when the handle (and all
    /// its clones) are dropped.
    pub(crate) fn open(&self, peer: PeerAddr) -> ConnectionHandle {
        let connection = Arc::new(Connection {
            peer,
            opened: Instant::now(),
            requests: Mutex::new(Requests {
                next_id: 0,
                served: 0,
                in_flight: Vec::new(),
                idle_since: Instant::now(),
            }),
        });
        if let Some(metrics) = &self.metrics {
            metrics.connection_opened();
        }
        let mut state = lock(&self.state);
        state.next_id += 1;
        let id = state.next_id;
        state.connections.insert(id, Arc::clone(&connection));
        ConnectionHandle {
            inner: Arc::new(HandleInner {
                tracker: self.clone(),
                id,
                connection,
            }),
        }
    }

    /// How many connections are open.
    pub(crate) fn open_connections(&self) -> usize {
        lock(&self.state).connections.len()
    }

    /// A human-readable report, one line per item: at most
    /// [`MAX_REPORTED`] connections (the active ones first, then the
    /// oldest) and as many requests (the longest-running first), with a
    /// line saying how many more were left out.
    pub(crate) fn report(&self) -> Vec<String> {
        let now = Instant::now();
        let connections: Vec<(u64, Arc<Connection>)> = lock(&self.state)
            .connections
            .iter()
            .map(|(id, c)| (*id, Arc::clone(c)))
            .collect();
        // What each connection is doing, read once under its lock.
        let mut requests = Vec::new();
        let mut states = Vec::with_capacity(connections.len());
        for (_, c) in &connections {
            let r = lock(&c.requests);
            for (_, info, trace, started) in &r.in_flight {
                requests.push((*started, info.clone(), trace.clone(), c.peer.clone()));
            }
            states.push((!r.in_flight.is_empty(), r.served));
        }
        let active = states.iter().filter(|(busy, _)| *busy).count();
        let mut listed: Vec<usize> = (0..connections.len()).collect();
        listed.sort_by_key(|&i| (!states[i].0, connections[i].1.opened));
        let mut lines = vec![format!(
            "open connections: {} ({} active, {} idle)",
            connections.len(),
            active,
            connections.len() - active
        )];
        for &i in listed.iter().take(MAX_REPORTED) {
            let (id, c) = &connections[i];
            let (busy, served) = states[i];
            lines.push(format!(
                "  connection #{id} from {}: {}, open {}, {served} request(s) served",
                c.peer,
                if busy { "active" } else { "idle" },
                seconds(now - c.opened),
            ));
        }
        left_out(&mut lines, connections.len(), "connection(s)");
        requests.sort_by_key(|(started, ..)| *started);
        lines.push(format!("in-flight requests: {}", requests.len()));
        for (started, info, trace, peer) in requests.iter().take(MAX_REPORTED) {
            lines.push(format!(
                "  {info} from {peer}, running {}, trace_id={trace}",
                seconds(now - *started)
            ));
        }
        left_out(&mut lines, requests.len(), "request(s)");
        lines
    }
}

/// The most connections, and the most requests, one report lists: a
/// SIGUSR1 under heavy load stays a few hundred lines.
pub(crate) const MAX_REPORTED: usize = 100;

/// "... and N more" when a list was cut at [`MAX_REPORTED`].
fn left_out(lines: &mut Vec<String>, total: usize, what: &str) {
    if total > MAX_REPORTED {
        lines.push(format!(
            "  ... and {} more {what}, not listed (a report lists at most {MAX_REPORTED})",
            total - MAX_REPORTED
        ));
    }
}

fn seconds(d: Duration) -> String {
    format!("{:.3}s", d.as_secs_f64())
}

/// One open connection. Clones share it.
#[derive(Clone)]
pub(crate) struct ConnectionHandle {
    inner: Arc<HandleInner>,
}

struct HandleInner {
    tracker: Tracker,
    id: u64,
    connection: Arc<Connection>,
}

impl Drop for HandleInner {
    fn drop(&mut self) {
        lock(&self.tracker.state).connections.remove(&self.id);
        if let Some(metrics) = &self.tracker.metrics {
            metrics.connection_closed();
        }
    }
}

impl ConnectionHandle {
    /// The peer's address.
    pub(crate) fn peer(&self) -> &PeerAddr {
        &self.inner.connection.peer
    }

    /// How many requests this connection has started (finished or not).
    pub(crate) fn requests_seen(&self) -> u64 {
        let r = lock(&self.inner.connection.requests);
        r.served + r.in_flight.len() as u64
    }

    /// Whether the connection has started a request, is busy, or is idle.
    pub(crate) fn activity(&self) -> Activity {
        let r = lock(&self.inner.connection.requests);
        if !r.in_flight.is_empty() {
            Activity::Busy
        } else if r.served == 0 {
            Activity::NoRequestYet(self.inner.connection.opened)
        } else {
            Activity::IdleSince(r.idle_since)
        }
    }

    /// Records a request in flight on this connection until the guard drops.
    pub(crate) fn begin_request(&self, info: RequestInfo, trace_id: TraceId) -> RequestGuard {
        let mut r = lock(&self.inner.connection.requests);
        r.next_id += 1;
        let id = r.next_id;
        r.in_flight.push((id, info, trace_id, Instant::now()));
        RequestGuard {
            connection: Arc::clone(&self.inner.connection),
            id,
        }
    }
}

/// A request in flight; dropping it marks the request done.
pub(crate) struct RequestGuard {
    connection: Arc<Connection>,
    id: u64,
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let mut r = lock(&self.connection.requests);
        r.in_flight.retain(|(id, ..)| *id != self.id);
        r.served += 1;
        if r.in_flight.is_empty() {
            r.idle_since = Instant::now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_connections_and_requests() {
        let tracker = Tracker::default();
        let a = tracker.open(PeerAddr::Unix);
        let _b = tracker.open(PeerAddr::Unix);
        let req = a.begin_request(
            RequestInfo::Http(http::Method::GET, "/sleep".parse().unwrap()),
            TraceId::given("abc"),
        );
        let report = tracker.report().join("\n");
        assert!(
            report.contains("open connections: 2 (1 active, 1 idle)"),
            "{report}"
        );
        assert!(report.contains("GET /sleep from unix"), "{report}");
        assert!(report.contains("trace_id=abc"), "{report}");
        drop(req);
        assert!(tracker.report()[0].contains("(0 active, 2 idle)"));
        assert_eq!(a.requests_seen(), 1);
        drop(a);
        assert_eq!(tracker.open_connections(), 1);
    }
}
