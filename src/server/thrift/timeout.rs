//! Call deadlines, as baseplate.py sets them: the app section's
//! `server_timeout.default` and `server_timeout.by_endpoint.METHOD`,
//! narrowed by the caller's THeader `Deadline-Budget` (milliseconds left).

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

pub use crate::app::thrift::{Deadline, DeadlineSource};
use crate::config::{from_section, ConfigErrors, Section, TimespanOrInfinite};

/// The `server_timeout.*` settings of an app section.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerTimeouts {
    /// `server_timeout.default`: for methods without their own; `None` is
    /// `infinite` (the default).
    pub default: Option<Duration>,
    /// `server_timeout.by_endpoint.METHOD`; `None` values are `infinite`.
    pub by_method: BTreeMap<String, Option<Duration>>,
    /// `server_timeout.debug`: log more about each timed-out call.
    pub debug: bool,
}

#[derive(Debug, serde::Deserialize)]
struct Raw {
    server_timeout: Option<RawServerTimeout>,
}

#[derive(Debug, serde::Deserialize)]
struct RawServerTimeout {
    default: Option<TimespanOrInfinite>,
    by_endpoint: Option<BTreeMap<String, TimespanOrInfinite>>,
    debug: Option<bool>,
}

fn zero_timeout(section: &Section, key: &str) -> crate::config::ConfigError {
    section.error(
        key,
        "0 would time out every call before it runs; use a positive timespan, or `infinite` for no limit",
    )
}

impl ServerTimeouts {
    /// Reads the `server_timeout.*` keys of an app section; other keys are
    /// the app's own.
    pub fn from_app_section(section: &Section) -> Result<ServerTimeouts, ConfigErrors> {
        let raw: Raw = from_section(&section.only(|key| key.starts_with("server_timeout.")))?;
        let Some(raw) = raw.server_timeout else {
            return Ok(ServerTimeouts::default());
        };
        // A zero timeout would refuse every call before it ran.
        let zero = |t: &Option<TimespanOrInfinite>| matches!(t, Some(TimespanOrInfinite::Finite(d)) if d.is_zero());
        let mut errors: Vec<_> = zero(&raw.default)
            .then(|| zero_timeout(section, "server_timeout.default"))
            .into_iter()
            .collect();
        for (method, timeout) in raw.by_endpoint.iter().flatten() {
            if zero(&Some(*timeout)) {
                errors.push(zero_timeout(
                    section,
                    &format!("server_timeout.by_endpoint.{method}"),
                ));
            }
        }
        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        Ok(ServerTimeouts {
            default: raw.default.and_then(TimespanOrInfinite::duration),
            by_method: raw
                .by_endpoint
                .unwrap_or_default()
                .into_iter()
                .map(|(method, t)| (method, t.duration()))
                .collect(),
            debug: raw.debug.unwrap_or(false),
        })
    }

    /// The configured timeout of `method`, if it has one.
    pub fn for_method(&self, method: &str) -> Option<Duration> {
        match self.by_method.get(method) {
            Some(timeout) => *timeout,
            None => self.default,
        }
    }

    /// The deadline of a call to `method` read at `now`: the configured
    /// timeout, narrowed by the caller's budget.
    pub fn deadline(&self, method: &str, budget: Option<Budget>, now: Instant) -> Option<Deadline> {
        let configured = self
            .for_method(method)
            .map(|t| (t, DeadlineSource::ServerTimeout));
        let budget = budget.map(|Budget(ms)| {
            (
                Duration::from_millis(ms.max(0) as u64),
                DeadlineSource::DeadlineBudget,
            )
        });
        let (timeout, source) = match (configured, budget) {
            (Some(a), Some(b)) => {
                if b.0 < a.0 {
                    b
                } else {
                    a
                }
            }
            (a, b) => a.or(b)?,
        };
        Some(Deadline {
            at: now + timeout,
            timeout,
            source,
        })
    }
}

/// A `Deadline-Budget` header: the milliseconds the caller has left (zero
/// or less: already spent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget(pub i64);

impl Budget {
    /// The header's value, if it is an integer; anything else is ignored,
    /// as baseplate.py ignores it.
    pub fn parse(value: &str) -> Option<Budget> {
        value.trim().parse().ok().map(Budget)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigFile;
    use std::path::Path;

    fn timeouts(text: &str) -> Result<ServerTimeouts, ConfigErrors> {
        let file = ConfigFile::parse(Path::new("t.ini"), text.as_bytes()).unwrap();
        ServerTimeouts::from_app_section(&file.section("app", "main").unwrap())
    }

    #[test]
    fn reads_default_by_endpoint_and_debug() {
        let t = timeouts(
            "[app:main]\nfactory = x\nserver_timeout.default = 200 milliseconds\nserver_timeout.by_endpoint.sleep = 2 seconds\nserver_timeout.by_endpoint.slow = infinite\nserver_timeout.debug = true\nother = 1\n",
        )
        .unwrap();
        assert_eq!(t.for_method("echo"), Some(Duration::from_millis(200)));
        assert_eq!(t.for_method("sleep"), Some(Duration::from_secs(2)));
        assert_eq!(t.for_method("slow"), None);
        assert!(t.debug);
        assert_eq!(
            timeouts("[app:main]\nfactory = x\n").unwrap(),
            ServerTimeouts::default()
        );
    }

    #[test]
    fn the_budget_narrows_the_deadline() {
        let t = timeouts("[app:main]\nserver_timeout.default = 1 second\n").unwrap();
        let now = Instant::now();
        let at = |t: &ServerTimeouts, budget| {
            t.deadline("m", budget, now)
                .map(|d| (d.at - now, d.source.to_string()))
        };
        let ms = Duration::from_millis;
        assert_eq!(at(&t, None), Some((ms(1000), "server_timeout".into())));
        assert_eq!(
            at(&t, Some(Budget(100))),
            Some((ms(100), "Deadline-Budget".into()))
        );
        assert_eq!(
            at(&t, Some(Budget(5000))),
            Some((ms(1000), "server_timeout".into()))
        );
        assert_eq!(
            at(&t, Some(Budget(-3))),
            Some((ms(0), "Deadline-Budget".into()))
        );
        let none = ServerTimeouts::default();
        assert_eq!(at(&none, None), None);
        assert_eq!(
            at(&none, Some(Budget(50))),
            Some((ms(50), "Deadline-Budget".into()))
        );
        assert_eq!(Budget::parse(" 250 "), Some(Budget(250)));
        assert_eq!(Budget::parse("soon"), None);
    }

    #[test]
    fn a_bad_value_is_located() {
        let e = timeouts("[app:main]\nserver_timeout.default = soon\n").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("t.ini:2: [app:main] server_timeout.default:"),
            "{e}"
        );
    }
}
