//! Health probes, as baseplate.thrift defines them: the server's own state
//! (it stops being ready the moment shutdown starts), the checks an app
//! adds through the [`Health`] handle its factory receives, and the answers
//! on both protocols (`http`, `thrift`). [`checker`] is the client side,
//! what `baseplate-healthcheck` runs.

pub mod checker;
pub(crate) mod http;
pub(crate) mod thrift;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// A probe type, with the numbers of baseplate.thrift's `IsHealthyProbe`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Probe {
    /// Whether to send this instance traffic (`READINESS = 1`). Fails from
    /// the moment shutdown starts.
    Readiness,
    /// Whether the process still works, or should be restarted
    /// (`LIVENESS = 2`). Stays healthy while shutting down.
    Liveness,
    /// Whether the process has finished starting (`STARTUP = 3`).
    Startup,
}

impl Probe {
    /// All probes, in the IDL's order.
    pub const ALL: [Probe; 3] = [Probe::Readiness, Probe::Liveness, Probe::Startup];

    /// The IDL's number for this probe.
    pub fn number(self) -> i32 {
        match self {
            Probe::Readiness => 1,
            Probe::Liveness => 2,
            Probe::Startup => 3,
        }
    }

    /// The probe with this number; an unknown number means readiness, as
    /// baseplate.py's services treat it.
    pub fn from_number(number: i64) -> Probe {
        match number {
            2 => Probe::Liveness,
            3 => Probe::Startup,
            _ => Probe::Readiness,
        }
    }

    /// The lowercase name: `readiness`, `liveness`, `startup`.
    pub fn name(self) -> &'static str {
        match self {
            Probe::Readiness => "readiness",
            Probe::Liveness => "liveness",
            Probe::Startup => "startup",
        }
    }

    /// A probe as a query or command line names it: its number or its name
    /// (any case). `None` for a word that is neither, which is a mistake
    /// worth reporting rather than a readiness probe.
    pub fn parse(text: &str) -> Option<Probe> {
        if let Ok(number) = text.parse::<i64>() {
            return Some(Probe::from_number(number));
        }
        Probe::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(text))
    }
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a check's future returns: `Err` says why it failed, in one line.
pub type CheckResult = Result<(), String>;

/// A check's future.
pub type CheckFuture = Pin<Box<dyn Future<Output = CheckResult> + Send>>;

type CheckFn = Arc<dyn Fn() -> CheckFuture + Send + Sync>;

struct Check {
    probe: Probe,
    name: String,
    run: CheckFn,
}

/// The health of one server: its own shutdown state and the app's checks.
/// Cheap to clone; every clone is the same state.
///
/// An app factory gets it from [`AppConfig::health`](crate::AppConfig::health)
/// and adds its checks there:
///
/// ```
/// use baseplate::health::{Health, Probe};
///
/// fn add_checks(health: &Health) {
///     health.add_check(Probe::Readiness, "database", || async {
///         // Ask the connection pool, say.
///         Ok(())
///     });
/// }
/// # add_checks(&Health::default());
/// ```
#[derive(Clone, Default)]
pub struct Health {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Set when shutdown starts: readiness fails from then on.
    shutting_down: AtomicBool,
    /// The app's checks, in the order added.
    checks: Mutex<Vec<Check>>,
}

impl fmt::Debug for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let checks = self.checks_for(None);
        f.debug_struct("Health")
            .field("shutting_down", &self.is_shutting_down())
            .field(
                "checks",
                &checks
                    .iter()
                    .map(|(probe, name, _)| format!("{probe}:{name}"))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// The outcome of one probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The probe answered.
    pub probe: Probe,
    /// The checks that failed, with why, in the order added; the server's
    /// own `shutdown` first. Empty when healthy.
    pub failures: Vec<(String, String)>,
}

impl Report {
    /// Whether every check passed.
    pub fn is_healthy(&self) -> bool {
        self.failures.is_empty()
    }

    /// The JSON body the HTTP server answers with.
    pub fn to_json(&self) -> serde_json::Value {
        let mut body = serde_json::json!({
            "status": if self.is_healthy() { "ok" } else { "unhealthy" },
            "probe": self.probe.name(),
            "pid": std::process::id(),
        });
        if !self.is_healthy() {
            body["failed"] = self
                .failures
                .iter()
                .map(|(name, why)| (name.clone(), serde_json::Value::String(why.clone())))
                .collect::<serde_json::Map<_, _>>()
                .into();
        }
        body
    }
}

/// The name of the server's own readiness check in a [`Report`].
pub const SHUTDOWN_CHECK: &str = "shutdown";

impl Health {
    /// Adds a check that `probe` runs, named `name` in reports. Checks run
    /// one after another on every probe, so keep them quick: a check that
    /// does not finish makes the probe time out, which counts as a failure.
    pub fn add_check<F, Fut>(&self, probe: Probe, name: &str, check: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = CheckResult> + Send + 'static,
    {
        let run: CheckFn = Arc::new(move || Box::pin(check()));
        self.lock().push(Check {
            probe,
            name: name.to_string(),
            run,
        });
    }

    /// Whether shutdown has started (readiness fails from then on).
    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutting_down.load(Ordering::Relaxed)
    }

    /// Marks the server as shutting down: readiness fails from now on,
    /// liveness is unchanged.
    pub(crate) fn start_shutdown(&self) {
        self.inner.shutting_down.store(true, Ordering::Relaxed);
    }

    /// Runs `probe`: the server's own state, then the app's checks for it.
    pub async fn check(&self, probe: Probe) -> Report {
        let mut failures = Vec::new();
        if probe == Probe::Readiness && self.is_shutting_down() {
            failures.push((
                SHUTDOWN_CHECK.to_string(),
                "the server is shutting down".to_string(),
            ));
        }
        for (_, name, run) in self.checks_for(Some(probe)) {
            if let Err(why) = run().await {
                failures.push((name, why));
            }
        }
        Report { probe, failures }
    }

    /// The checks of `probe` (all with `None`), copied out so that no lock
    /// is held while they run.
    fn checks_for(&self, probe: Option<Probe>) -> Vec<(Probe, String, CheckFn)> {
        self.lock()
            .iter()
            .filter(|c| probe.is_none_or(|p| p == c.probe))
            .map(|c| (c.probe, c.name.clone(), Arc::clone(&c.run)))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Check>> {
        // A check is only pushed or cloned under the lock, so a poisoned
        // lock still holds a whole list.
        self.inner.checks.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Who answers health probes (server option `health.answered_by`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum AnsweredBy {
    /// The server, from [`Health`]: the default.
    #[default]
    Server,
    /// The app, like any other request (as in baseplate.py, where the app
    /// answers): for apps with their own probe handler.
    App,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_parse_by_number_and_name() {
        assert_eq!(Probe::parse("1"), Some(Probe::Readiness));
        assert_eq!(Probe::parse("2"), Some(Probe::Liveness));
        assert_eq!(Probe::parse("3"), Some(Probe::Startup));
        assert_eq!(Probe::parse("7"), Some(Probe::Readiness));
        assert_eq!(Probe::parse("LIVENESS"), Some(Probe::Liveness));
        assert_eq!(Probe::parse("startup"), Some(Probe::Startup));
        assert_eq!(Probe::parse("livenes"), None);
        for probe in Probe::ALL {
            assert_eq!(Probe::from_number(probe.number().into()), probe);
        }
    }

    #[tokio::test]
    async fn shutdown_fails_readiness_only_and_checks_apply_to_their_probe() {
        let health = Health::default();
        health.add_check(Probe::Liveness, "deadlock", || async {
            Err("stuck".to_string())
        });
        health.add_check(Probe::Readiness, "db", || async { Ok(()) });
        assert!(health.check(Probe::Readiness).await.is_healthy());
        assert!(health.check(Probe::Startup).await.is_healthy());
        let liveness = health.check(Probe::Liveness).await;
        assert_eq!(
            liveness.failures,
            vec![("deadlock".to_string(), "stuck".to_string())]
        );
        health.start_shutdown();
        let readiness = health.check(Probe::Readiness).await;
        assert_eq!(readiness.failures[0].0, SHUTDOWN_CHECK);
        assert_eq!(readiness.to_json()["status"], "unhealthy");
        assert!(health.check(Probe::Startup).await.is_healthy());
        assert_eq!(health.check(Probe::Liveness).await.failures.len(), 1);
    }
}
