//! Every metric the server records: names, label names, help, buckets, as
//! baseplate.py names them (baseplate-ops.md §3) for the request metrics,
//! and in the same style for the server's and the process's own.

use super::file::EntryKind;

/// How a metric's values are kept and shown.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Type {
    /// A counter: one slot, summed over every worker that ever ran.
    Counter,
    /// A gauge: one slot (signed), summed over live workers.
    Gauge,
    /// A histogram: one slot per bucket, one for `+Inf`, one for the sum.
    Histogram(&'static [f64]),
}

/// One metric.
#[derive(Debug)]
pub(crate) struct Metric {
    /// The exposed name; counters' without the `_total` the encoder adds.
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Type,
    /// Label names, in the order label values are given.
    pub labels: &'static [&'static str],
    /// How many slot units make one shown unit (a sum kept in nanoseconds
    /// shows as seconds with `1e9`).
    pub per_unit: f64,
}

impl Metric {
    /// The number of value slots.
    pub(crate) fn slots(&self) -> usize {
        match self.kind {
            Type::Counter | Type::Gauge => 1,
            Type::Histogram(buckets) => buckets.len() + 2,
        }
    }

    /// The kind of file entry.
    pub(crate) fn entry_kind(&self) -> EntryKind {
        match self.kind {
            Type::Counter => EntryKind::Counter,
            Type::Gauge => EntryKind::Gauge,
            Type::Histogram(_) => EntryKind::Histogram,
        }
    }
}

/// Latency buckets, in seconds, as baseplate.py's.
pub(crate) const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 15.0, 30.0,
];

/// Size buckets, in bytes: 8 × 2^i for i in 0..20, as baseplate.py's.
pub(crate) const SIZE_BUCKETS: &[f64] = &[
    8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0, 16384.0, 32768.0,
    65536.0, 131072.0, 262144.0, 524288.0, 1048576.0, 2097152.0, 4194304.0,
];

const NANOS: f64 = 1e9;
const MICROS: f64 = 1e6;

const HTTP_LABELS: &[&str] = &["http_method", "http_endpoint", "http_success"];

pub(crate) const HTTP_LATENCY: Metric = Metric {
    name: "http_server_latency_seconds",
    help: "Time spent processing requests",
    kind: Type::Histogram(LATENCY_BUCKETS),
    labels: HTTP_LABELS,
    per_unit: NANOS,
};
pub(crate) const HTTP_REQUEST_SIZE: Metric = Metric {
    name: "http_server_request_size_bytes",
    help: "Size of incoming requests in bytes",
    kind: Type::Histogram(SIZE_BUCKETS),
    labels: HTTP_LABELS,
    per_unit: 1.0,
};
pub(crate) const HTTP_RESPONSE_SIZE: Metric = Metric {
    name: "http_server_response_size_bytes",
    help: "Size of outgoing responses in bytes",
    kind: Type::Histogram(SIZE_BUCKETS),
    labels: HTTP_LABELS,
    per_unit: 1.0,
};
pub(crate) const HTTP_REQUESTS: Metric = Metric {
    name: "http_server_requests",
    help: "Total number of requests",
    kind: Type::Counter,
    labels: &[
        "http_method",
        "http_endpoint",
        "http_success",
        "http_response_code",
    ],
    per_unit: 1.0,
};
pub(crate) const HTTP_ACTIVE: Metric = Metric {
    name: "http_server_active_requests",
    help: "Number of requests being processed right now",
    kind: Type::Gauge,
    labels: &["http_method", "http_endpoint"],
    per_unit: 1.0,
};

pub(crate) const THRIFT_LATENCY: Metric = Metric {
    name: "thrift_server_latency_seconds",
    help: "RPC latencies",
    kind: Type::Histogram(LATENCY_BUCKETS),
    labels: &["thrift_method", "thrift_success"],
    per_unit: NANOS,
};
pub(crate) const THRIFT_REQUESTS: Metric = Metric {
    name: "thrift_server_requests",
    help: "Total RPC request count",
    kind: Type::Counter,
    labels: &[
        "thrift_method",
        "thrift_success",
        "thrift_exception_type",
        "thrift_baseplate_status",
        "thrift_baseplate_status_code",
    ],
    per_unit: 1.0,
};
pub(crate) const THRIFT_ACTIVE: Metric = Metric {
    name: "thrift_server_active_requests",
    help: "The number of in-flight requests being handled by the service",
    kind: Type::Gauge,
    labels: &["thrift_method"],
    per_unit: 1.0,
};

const SERVER_LABELS: &[&str] = &["server_protocol"];

pub(crate) const OPEN_CONNECTIONS: Metric = Metric {
    name: "baseplate_server_open_connections",
    help: "Connections open right now",
    kind: Type::Gauge,
    labels: SERVER_LABELS,
    per_unit: 1.0,
};
pub(crate) const ACCEPTED_CONNECTIONS: Metric = Metric {
    name: "baseplate_server_accepted_connections",
    help: "Connections accepted",
    kind: Type::Counter,
    labels: SERVER_LABELS,
    per_unit: 1.0,
};
pub(crate) const LIMITED_CONNECTIONS: Metric = Metric {
    name: "baseplate_server_limited_connections",
    help: "Connections held back or closed by a server limit (max_concurrency: accepts that waited for a free slot; header_timeout, idle_timeout, max_frame_size: connections closed)",
    kind: Type::Counter,
    labels: &["server_protocol", "limit"],
    per_unit: 1.0,
};
pub(crate) const ACTIVE_REQUESTS: Metric = Metric {
    name: "baseplate_server_active_requests",
    help: "Requests or calls in flight, over every endpoint and method",
    kind: Type::Gauge,
    labels: SERVER_LABELS,
    per_unit: 1.0,
};

pub(crate) const RUNTIME_WORKERS: Metric = Metric {
    name: "tokio_runtime_workers",
    help: "Worker threads of the tokio runtimes",
    kind: Type::Gauge,
    labels: &[],
    per_unit: 1.0,
};
pub(crate) const RUNTIME_ALIVE_TASKS: Metric = Metric {
    name: "tokio_runtime_alive_tasks",
    help: "Tasks alive in the tokio runtimes",
    kind: Type::Gauge,
    labels: &[],
    per_unit: 1.0,
};
pub(crate) const RUNTIME_QUEUE_DEPTH: Metric = Metric {
    name: "tokio_runtime_global_queue_depth",
    help: "Tasks waiting in the tokio runtimes' global queues",
    kind: Type::Gauge,
    labels: &[],
    per_unit: 1.0,
};

pub(crate) const PROCESS_RSS: Metric = Metric {
    name: "process_resident_memory_bytes",
    help: "Resident memory of the live worker processes, in bytes",
    kind: Type::Gauge,
    labels: &[],
    per_unit: 1.0,
};
pub(crate) const PROCESS_FDS: Metric = Metric {
    name: "process_open_fds",
    help: "Open file descriptors of the live worker processes",
    kind: Type::Gauge,
    labels: &[],
    per_unit: 1.0,
};
pub(crate) const PROCESS_CPU: Metric = Metric {
    name: "process_cpu_seconds",
    help: "User and system CPU time of every worker process that ran, in seconds",
    kind: Type::Counter,
    labels: &[],
    per_unit: MICROS,
};
pub(crate) const PROCESS_WORKERS: Metric = Metric {
    name: "baseplate_worker_processes",
    help: "Live worker processes writing metrics to this directory",
    kind: Type::Gauge,
    labels: &[],
    per_unit: 1.0,
};

/// Every metric, for the scrape to look names up in.
pub(crate) const ALL: &[&Metric] = &[
    &HTTP_LATENCY,
    &HTTP_REQUEST_SIZE,
    &HTTP_RESPONSE_SIZE,
    &HTTP_REQUESTS,
    &HTTP_ACTIVE,
    &THRIFT_LATENCY,
    &THRIFT_REQUESTS,
    &THRIFT_ACTIVE,
    &OPEN_CONNECTIONS,
    &ACCEPTED_CONNECTIONS,
    &LIMITED_CONNECTIONS,
    &ACTIVE_REQUESTS,
    &RUNTIME_WORKERS,
    &RUNTIME_ALIVE_TASKS,
    &RUNTIME_QUEUE_DEPTH,
    &PROCESS_RSS,
    &PROCESS_FDS,
    &PROCESS_CPU,
    &PROCESS_WORKERS,
];

/// The metric called `name`.
pub(crate) fn find(name: &str) -> Option<&'static Metric> {
    ALL.iter().copied().find(|m| m.name == name)
}

/// The file key of a series: the metric's name, then its label values, each
/// after a NUL (label names come from the definition). A NUL inside a
/// value becomes U+FFFD.
pub(crate) fn key(metric: &Metric, values: &[&str], out: &mut Vec<u8>) {
    debug_assert_eq!(values.len(), metric.labels.len(), "{}", metric.name);
    out.clear();
    out.extend_from_slice(metric.name.as_bytes());
    for value in values {
        out.push(0);
        if value.contains('\0') {
            out.extend_from_slice(value.replace('\0', "\u{FFFD}").as_bytes());
        } else {
            out.extend_from_slice(value.as_bytes());
        }
    }
}

/// A key split back into its metric and label values.
pub(crate) fn parse_key(key: &[u8]) -> Option<(&'static Metric, Vec<String>)> {
    let text = std::str::from_utf8(key).ok()?;
    let mut parts = text.split('\0');
    let metric = find(parts.next()?)?;
    let values: Vec<String> = parts.map(str::to_string).collect();
    (values.len() == metric.labels.len()).then_some((metric, values))
}
