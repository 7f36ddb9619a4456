//! Open connections and in-flight requests, so SIGUSR1 can say what the
//! server is doing. Shared by every server kind.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::listener::PeerAddr;

/// The registry of open connections. Cheap to clone.
#[derive(Clone, Default)]
pub struct Tracker {
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    next_id: u64,
    connections: BTreeMap<u64, Connection>,
}

struct Connection {
    peer: PeerAddr,
    opened: Instant,
    served: u64,
    in_flight: BTreeMap<u64, Request>,
}

struct Request {
    what: String,
    trace_id: String,
    started: Instant,
}

impl Tracker {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere must not stop the dump or the server.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a new connection; it is forgotten when the handle (and all
    /// its clones) are dropped.
    pub fn open(&self, peer: PeerAddr) -> ConnectionHandle {
        let mut state = self.lock();
        state.next_id += 1;
        let id = state.next_id;
        state.connections.insert(
            id,
            Connection {
                peer: peer.clone(),
                opened: Instant::now(),
                served: 0,
                in_flight: BTreeMap::new(),
            },
        );
        ConnectionHandle {
            inner: Arc::new(HandleInner {
                tracker: self.clone(),
                id,
                peer,
            }),
        }
    }

    /// How many connections are open.
    pub fn open_connections(&self) -> usize {
        self.lock().connections.len()
    }

    /// A human-readable report, one line per item.
    pub fn report(&self) -> Vec<String> {
        let now = Instant::now();
        let state = self.lock();
        let active = state
            .connections
            .values()
            .filter(|c| !c.in_flight.is_empty())
            .count();
        let mut lines = vec![format!(
            "open connections: {} ({} active, {} idle)",
            state.connections.len(),
            active,
            state.connections.len() - active
        )];
        for (id, c) in &state.connections {
            lines.push(format!(
                "  connection #{id} from {}: {}, open {}, {} request(s) served",
                c.peer,
                if c.in_flight.is_empty() {
                    "idle"
                } else {
                    "active"
                },
                seconds(now - c.opened),
                c.served
            ));
        }
        let requests: Vec<(&Connection, &Request)> = state
            .connections
            .values()
            .flat_map(|c| c.in_flight.values().map(move |r| (c, r)))
            .collect();
        lines.push(format!("in-flight requests: {}", requests.len()));
        for (c, r) in requests {
            lines.push(format!(
                "  {} from {}, running {}, trace_id={}",
                r.what,
                c.peer,
                seconds(now - r.started),
                r.trace_id
            ));
        }
        lines
    }
}

fn seconds(d: Duration) -> String {
    format!("{:.3}s", d.as_secs_f64())
}

/// One open connection. Clones share it.
#[derive(Clone)]
pub struct ConnectionHandle {
    inner: Arc<HandleInner>,
}

struct HandleInner {
    tracker: Tracker,
    id: u64,
    peer: PeerAddr,
}

impl Drop for HandleInner {
    fn drop(&mut self) {
        self.tracker.lock().connections.remove(&self.id);
    }
}

impl ConnectionHandle {
    /// The peer's address.
    pub fn peer(&self) -> &PeerAddr {
        &self.inner.peer
    }

    /// How many requests this connection has started (finished or not).
    pub fn requests_seen(&self) -> u64 {
        let state = self.inner.tracker.lock();
        state
            .connections
            .get(&self.inner.id)
            .map_or(0, |c| c.served + c.in_flight.len() as u64)
    }

    /// Records a request in flight on this connection until the guard drops.
    /// `what` describes it (`GET /path`, or a Thrift method name).
    pub fn begin_request(&self, what: String, trace_id: String) -> RequestGuard {
        let mut state = self.inner.tracker.lock();
        state.next_id += 1;
        let request_id = state.next_id;
        if let Some(c) = state.connections.get_mut(&self.inner.id) {
            c.in_flight.insert(
                request_id,
                Request {
                    what,
                    trace_id,
                    started: Instant::now(),
                },
            );
        }
        RequestGuard {
            connection: self.clone(),
            request_id,
        }
    }
}

/// A request in flight; dropping it marks the request done.
pub struct RequestGuard {
    connection: ConnectionHandle,
    request_id: u64,
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let inner = &self.connection.inner;
        let mut state = inner.tracker.lock();
        if let Some(c) = state.connections.get_mut(&inner.id) {
            c.in_flight.remove(&self.request_id);
            c.served += 1;
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
        let req = a.begin_request("GET /sleep".into(), "abc".into());
        let report = tracker.report().join("\n");
        assert!(
            report.contains("open connections: 2 (1 active, 1 idle)"),
            "{report}"
        );
        assert!(report.contains("GET /sleep from unix"), "{report}");
        drop(req);
        assert!(tracker.report()[0].contains("(0 active, 2 idle)"));
        drop(a);
        assert_eq!(tracker.open_connections(), 1);
    }
}
