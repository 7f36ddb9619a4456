//! Prometheus metrics, multi-process like baseplate.py's: every worker
//! records its requests into a memory-mapped file of its own in a shared
//! directory (`store`, `file`), and any worker answering `GET /metrics` on
//! the shared exporter port (`exporter`) sums every file (`scrape`) and
//! encodes the sums with prometheus-client (`encode`). The metric names
//! are baseplate.py's (`names`).
//!
//! Off unless `metrics.enabled = true` in the app section. An HTTP app
//! names the endpoint a request matched through the [`RouteLabel`] found in
//! the request's extensions.

pub(crate) mod bind;
pub(crate) mod counted_body;
mod encode;
pub(crate) mod exporter;
mod file;
pub(crate) mod http;
pub(crate) mod names;
mod process;
mod scrape;
mod store;
pub(crate) mod thrift;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Deserialize;

use crate::config::{from_section, ConfigErrors, Endpoint as Address, Section};
pub(crate) use http::HttpRequestMetrics;
pub use http::RouteLabel;
use names::Metric;
use store::{Slots, Store};

/// The environment variable naming the shared directory, as baseplate.py
/// (and prometheus_client) read it.
pub const MULTIPROC_DIR_VAR: &str = "PROMETHEUS_MULTIPROC_DIR";

/// The environment variable that names a worker's file, as baseplate.py
/// reads it; the pid when unset.
pub const WORKER_ID_VAR: &str = "MULTIPROCESS_WORKER_ID";

/// The port of the default `metrics.bind`, `0.0.0.0:6060`.
pub const DEFAULT_PORT: u16 = 6060;

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
            bind: raw.bind.unwrap_or_else(|| Address::Tcp {
                host: "0.0.0.0".into(),
                port: DEFAULT_PORT,
            }),
            dir: raw.multiprocess_dir,
        }))
    }

    /// The shared directory: `metrics.multiprocess_dir`, else
    /// `PROMETHEUS_MULTIPROC_DIR`, else one per Einhorn master (so that
    /// every worker of a master shares it), else one for this process. The
    /// default ones are in a directory of this user's own under `$TMPDIR`,
    /// made private (0700) and checked to be this user's, so that no other
    /// user of the machine can read or plant metrics files there.
    ///
    /// A directory named by the config or the environment gets the same
    /// checks (made 0700 if missing, this user's, writable by no one
    /// else), and is used by its resolved path, so a symlink swapped later
    /// changes nothing: a shared directory such as `/tmp` would let other
    /// users plant files that every scrape reads.
    pub(crate) fn directory(&self, einhorn_master: Option<i32>) -> std::io::Result<PathBuf> {
        let uid = nix::unistd::geteuid();
        let explicit = match &self.dir {
            Some(dir) => Some((dir.clone(), "metrics.multiprocess_dir")),
            None => std::env::var_os(MULTIPROC_DIR_VAR)
                .filter(|d| !d.is_empty())
                .map(|d| (PathBuf::from(d), MULTIPROC_DIR_VAR)),
        };
        if let Some((dir, source)) = explicit {
            private_dir(&dir, uid, true).map_err(|e| {
                std::io::Error::new(e.kind(), format!("{source} = {}: {e}", dir.display()))
            })?;
            return std::fs::canonicalize(&dir);
        }
        let base = std::env::temp_dir().join(format!("baseplate-metrics-{uid}"));
        private_dir(&base, uid, false).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!(
                    "the default directory {}: {e}; set metrics.multiprocess_dir or {MULTIPROC_DIR_VAR}",
                    base.display()
                ),
            )
        })?;
        remove_dead_defaults(&base);
        Ok(match einhorn_master {
            Some(master) => base.join(format!("einhorn-{master}")),
            None => own_default(&base),
        })
    }
}

/// The default directory of a process run without Einhorn: its own, so it
/// removes it when it stops ([`Metrics::remove_own_default_dir`]).
fn own_default(base: &Path) -> PathBuf {
    base.join(format!("process-{}", std::process::id()))
}

/// Removes the default directories under `base` whose owner is gone: an
/// `einhorn-MASTER` whose master has exited, a `process-PID` whose process
/// has (one killed before it could remove its own). A directory where a
/// worker still holds its file's lock is kept, whoever owns it.
fn remove_dead_defaults(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(owner) = name.to_str().and_then(|name| {
            name.strip_prefix("einhorn-")
                .or_else(|| name.strip_prefix("process-"))
                .and_then(|pid| pid.parse::<i32>().ok())
        }) else {
            continue;
        };
        let alive = !matches!(
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(owner), None),
            Err(nix::errno::Errno::ESRCH)
        );
        if alive || owner <= 0 || scrape::has_live_worker(&entry.path()) {
            continue;
        }
        match std::fs::remove_dir_all(entry.path()) {
            Ok(()) => tracing::debug!(
                "removed the metrics directory {} (its owner, pid {owner}, is gone)",
                entry.path().display()
            ),
            Err(e) => tracing::debug!("cannot remove {}: {e}", entry.path().display()),
        }
    }
}

/// Makes `dir` (mode 0700; its parents too when `parents`) unless it
/// exists, and checks that it is a directory of `uid`'s that no one else
/// may write to. The default directory must not be a symlink; a named one
/// may be, and its target is checked.
fn private_dir(dir: &Path, uid: nix::unistd::Uid, parents: bool) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    match std::fs::DirBuilder::new()
        .mode(0o700)
        .recursive(parents)
        .create(dir)
    {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let meta = if parents {
        std::fs::metadata(dir)?
    } else {
        std::fs::symlink_metadata(dir)?
    };
    if !meta.is_dir() || meta.uid() != uid.as_raw() || meta.mode() & 0o022 != 0 {
        return Err(std::io::Error::other(format!(
            "not a private directory of uid {uid} (owner uid {}, mode {:o}{}); \
             use a directory of this user's that no one else may write to \
             (it is made, mode 0700, if missing)",
            meta.uid(),
            meta.mode() & 0o7777,
            if meta.is_dir() {
                ""
            } else {
                ", not a directory"
            },
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

/// This worker's recorder: its file, and the series already looked up.
pub(crate) struct Metrics {
    store: Store,
    dir: PathBuf,
    protocol: &'static str,
    /// The series every request or connection touches, looked up once.
    fixed: Fixed,
    /// HTTP request metrics, by method and endpoint.
    http: http::HttpSeries,
    /// Thrift call metrics, by method.
    thrift: thrift::ThriftSeries,
    /// Set once a write to the file failed, so it is logged once.
    failed: AtomicBool,
}

/// The series of a server that do not depend on the request.
#[derive(Default)]
struct Fixed {
    accepted: Option<Slots>,
    open: Option<Slots>,
    active: Option<Slots>,
}

/// The label value standing for the values past a bound.
pub(crate) const OTHER: &str = "other";

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").field("dir", &self.dir).finish()
    }
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
            fixed: Fixed::default(),
            http: http::HttpSeries::default(),
            thrift: thrift::ThriftSeries::default(),
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

    /// Removes the directory if it is this process's own default one
    /// (`process-PID`, no Einhorn, no directory named): called when the
    /// server stops for good, not when it restarts in place.
    pub(crate) fn remove_own_default_dir(&self) {
        let uid = nix::unistd::geteuid();
        let base = std::env::temp_dir().join(format!("baseplate-metrics-{uid}"));
        if self.dir == own_default(&base) {
            if let Err(e) = std::fs::remove_dir_all(&self.dir) {
                tracing::debug!("cannot remove {}: {e}", self.dir.display());
            }
        }
    }

    /// The slots of `metric` with these label values, added to the file the
    /// first time; `None` (logged once) when the file cannot grow. Callers
    /// keep what they look up: this builds a key and hashes it.
    fn series(&self, metric: &Metric, values: &[&str]) -> Option<Slots> {
        let mut key = Vec::new();
        names::key(metric, values, &mut key);
        match self.store.slots(metric.entry_kind(), &key, metric.slots()) {
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
        use ::http::Method;
        assert_eq!(http::method_label(&Method::GET), ("GET", 0));
        assert_eq!(http::method_label(&Method::PATCH), ("PATCH", 8));
        let made_up = Method::from_bytes(b"BREW").unwrap();
        assert_eq!(http::method_label(&made_up), (OTHER, http::METHODS.len()));

        let dir = temp_dir("bounded");
        let metrics = Metrics::open(&dir, false).unwrap();
        // Names the app never answered itself stay `unknown`.
        assert_eq!(metrics.thrift_method("m7").method(), thrift::UNKNOWN_METHOD);
        let unanswered = metrics.thrift_method_answered("made_up", false);
        assert_eq!(unanswered.method(), thrift::UNKNOWN_METHOD);
        assert_eq!(
            metrics.thrift_method("made_up").method(),
            thrift::UNKNOWN_METHOD
        );
        for i in 0..thrift::MAX_THRIFT_METHODS {
            let name = format!("m{i}");
            assert_eq!(metrics.thrift_method_answered(&name, true).method(), name);
        }
        let over = metrics.thrift_method_answered("one_too_many", true);
        assert_eq!(over.method(), thrift::UNKNOWN_METHOD);
        assert_eq!(metrics.thrift_method("m7").method(), "m7");
        drop(metrics);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_default_directory_must_be_private() {
        let uid = nix::unistd::geteuid();
        let dir = temp_dir("private");
        private_dir(&dir, uid, false).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = private_dir(&dir, uid, false).unwrap_err().to_string();
        assert!(
            e.contains("not a private directory") && e.contains("mode 777"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
