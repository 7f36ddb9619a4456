//! Servers: the options every server shares, the accept loop and shutdown
//! sequence they share (`lifecycle`), and the per-connection protocol
//! handlers that differ (`http`, [`thrift`]).

pub(crate) mod catch_unwind;
pub(crate) mod http;
pub(crate) mod lifecycle;
pub(crate) mod listener;
pub(crate) mod request_span;
pub(crate) mod shutdown;
pub(crate) mod socket_file;
pub mod thrift;
pub(crate) mod tracker;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::config::{
    from_section, ConfigErrors, Positive, ServerConfig, Timespan, TimespanOrSeconds,
};
use crate::health::AnsweredBy;
use listener::Stream;
use shutdown::Shutdown;
use tracker::ConnectionHandle;

/// The protocol a server factory speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ServerKind {
    /// HTTP/1.1 and h2c.
    Http,
    /// Thrift in any of five dialects.
    Thrift,
}

/// Server factory names this crate provides, and what they serve.
pub(crate) const SERVER_FACTORIES: &[(&str, ServerKind)] = &[
    ("baseplate.server.http", ServerKind::Http),
    ("baseplate.server.thrift", ServerKind::Thrift),
    ("baseplate.server.wsgi", ServerKind::Http),
];

/// Keys every server reads; any other key in a server section gets a warning.
const COMMON_KEYS: &[&str] = &[
    "factory",
    "max_concurrency",
    "stop_timeout",
    "drain_time",
    "handler",
    "health.answered_by",
];

/// Keys only one kind of server reads.
fn kind_keys(kind: ServerKind) -> &'static [&'static str] {
    match kind {
        ServerKind::Http => &[
            "header_timeout",
            "idle_timeout",
            "body_timeout",
            "max_header_size",
            "max_body_size",
            "health.path",
        ],
        ServerKind::Thrift => &["max_frame_size", "execution", "max_handler_threads"],
    }
}

/// The default `idle_timeout`: longer than the 60 s idle timeout common to
/// load balancers, so that the balancer, not the server, closes an idle
/// pooled connection (a server closing first races the balancer's next
/// request on it).
pub(crate) const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(75);

/// The default `max_frame_size`: 16 MiB.
pub(crate) const DEFAULT_MAX_FRAME_SIZE: usize = 16 * 1024 * 1024;

/// The options of a `[server:NAME]` section, validated: those every server
/// reads, and those of its protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServerOptions {
    /// The `factory` value, like `baseplate.server.wsgi`.
    pub factory: String,
    /// At most this many connections at once; `None` for no limit.
    pub max_concurrency: Option<usize>,
    /// How long in-flight requests may take to finish after shutdown starts.
    pub stop_timeout: Duration,
    /// How long to keep accepting after the shutdown signal.
    pub drain_time: Duration,
    /// The name of a registered layer to wrap the app in.
    pub handler: Option<String>,
    /// Whether the server or the app answers health probes.
    pub health_answered_by: AnsweredBy,
    /// The options only this kind of server reads.
    pub protocol: ProtocolOptions,
    /// Keys set in the section that no server reads, with their lines.
    pub unknown_keys: Vec<(String, usize)>,
}

/// The options of one protocol's server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ProtocolOptions {
    /// `baseplate.server.wsgi` / `baseplate.server.http`.
    Http(HttpOptions),
    /// `baseplate.server.thrift`.
    Thrift(ThriftOptions),
}

/// The HTTP server's limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HttpOptions {
    /// How long a client may take to send a request's headers.
    pub header_timeout: Duration,
    /// How long a connection may sit idle between requests.
    pub idle_timeout: Duration,
    /// The largest request head accepted, in bytes; larger gets 431.
    pub max_header_size: usize,
    /// The largest request body, in bytes: a larger declared one gets 413,
    /// and reading a larger streamed one fails.
    pub max_body_size: u64,
    /// How long reading a request body may wait for its next bytes.
    pub body_timeout: Duration,
    /// The path the server answers health probes on.
    pub health_path: String,
}

/// The Thrift server's limits and where its sync processors run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ThriftOptions {
    /// The largest Thrift message accepted, in bytes.
    pub max_frame_size: usize,
    /// Where sync Thrift processors run.
    pub execution: thrift::Execution,
    /// At most this many sync Thrift calls run at once.
    pub max_handler_threads: usize,
}

impl ServerOptions {
    /// Reads and validates a server section.
    pub(crate) fn from_section(section: &ServerConfig) -> Result<ServerOptions, ConfigErrors> {
        let factory = match section.get("factory") {
            Some(f) if !f.is_empty() => f.to_string(),
            _ => {
                return Err(section
                    .error(
                        "factory",
                        "missing; set it to a server factory such as baseplate.server.wsgi",
                    )
                    .into())
            }
        };
        let kind = SERVER_FACTORIES
            .iter()
            .find(|(name, _)| *name == factory)
            .map(|(_, kind)| *kind)
            .ok_or_else(|| {
                let names: Vec<String> = SERVER_FACTORIES
                    .iter()
                    .map(|(n, _)| n.to_string())
                    .collect();
                section.error(
                    "factory",
                    crate::suggest::not_registered("server factory", &factory, names.iter()),
                )
            })?;
        let known = |key: &str| COMMON_KEYS.contains(&key) || kind_keys(kind).contains(&key);
        let unknown_keys = section
            .entries()
            .iter()
            .filter(|e| !e.inherited && !known(e.key.as_str()))
            .map(|e| (e.key.clone(), e.line))
            .collect();
        // The options of this kind of server, read like any app's settings
        // (every bad value reported at once, in the order written).
        let raw: RawOptions = from_section(&section.only(known))?;
        let protocol = match kind {
            ServerKind::Http => ProtocolOptions::Http(raw.http(section)?),
            ServerKind::Thrift => ProtocolOptions::Thrift(raw.thrift(section)?),
        };
        Ok(ServerOptions {
            factory,
            max_concurrency: raw.max_concurrency.map(|Positive(n)| saturating_usize(n)),
            stop_timeout: raw.stop_timeout.map_or(Duration::ZERO, |t| t.0),
            drain_time: raw.drain_time.map_or(Duration::ZERO, |t| t.0),
            handler: raw.handler.filter(|h| !h.is_empty()),
            health_answered_by: raw
                .health
                .as_ref()
                .and_then(|h| h.answered_by)
                .unwrap_or_default(),
            protocol,
            unknown_keys,
        })
    }
}

fn saturating_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// The server options as written, before defaults: those of the other
/// protocol are filtered out before reading, so they are `None`.
#[derive(Debug, serde::Deserialize)]
struct RawOptions {
    max_concurrency: Option<Positive>,
    stop_timeout: Option<TimespanOrSeconds>,
    drain_time: Option<Timespan>,
    handler: Option<String>,
    max_frame_size: Option<Positive>,
    execution: Option<thrift::Execution>,
    max_handler_threads: Option<Positive>,
    header_timeout: Option<Timespan>,
    idle_timeout: Option<Timespan>,
    max_header_size: Option<Positive>,
    max_body_size: Option<Positive>,
    body_timeout: Option<Timespan>,
    health: Option<RawHealth>,
}

/// `health.*` as written.
#[derive(Debug, serde::Deserialize)]
struct RawHealth {
    answered_by: Option<AnsweredBy>,
    path: Option<String>,
}

impl RawOptions {
    /// The HTTP server's options, defaults filled in and checked.
    fn http(&self, section: &ServerConfig) -> Result<HttpOptions, ConfigErrors> {
        let health_path = match self.health.as_ref().and_then(|h| h.path.as_deref()) {
            None => crate::health::http::DEFAULT_PATH.to_string(),
            Some(path) if path.starts_with('/') && !path.contains(['?', '#']) => path.to_string(),
            Some(path) => {
                return Err(section
                    .error(
                        "health.path",
                        format!("{path:?} is not a path; use one that starts with / and has no query, like /health"),
                    )
                    .into())
            }
        };
        // A zero timeout would close every connection or body at once.
        let zero: Vec<crate::config::ConfigError> = [
            (
                "header_timeout",
                self.header_timeout,
                "close every connection before its first request",
            ),
            (
                "idle_timeout",
                self.idle_timeout,
                "close every kept-alive connection at once",
            ),
            (
                "body_timeout",
                self.body_timeout,
                "fail every read of a request body",
            ),
        ]
        .into_iter()
        .filter(|(_, t, _)| t.is_some_and(|t| t.0.is_zero()))
        .map(|(key, _, effect)| {
            section.error(
                key,
                format!("0 would {effect}; use a positive timespan, like 30 seconds"),
            )
        })
        .collect();
        if !zero.is_empty() {
            return Err(ConfigErrors(zero));
        }
        Ok(HttpOptions {
            header_timeout: self.header_timeout.map_or(Duration::from_secs(30), |t| t.0),
            idle_timeout: self.idle_timeout.map_or(DEFAULT_IDLE_TIMEOUT, |t| t.0),
            max_header_size: self
                .max_header_size
                .map_or(64 * 1024, |Positive(n)| saturating_usize(n)),
            max_body_size: self.max_body_size.map_or(16 * 1024 * 1024, |Positive(n)| n),
            body_timeout: self.body_timeout.map_or(Duration::from_secs(30), |t| t.0),
            health_path,
        })
    }

    /// The Thrift server's options, defaults filled in and checked.
    fn thrift(&self, section: &ServerConfig) -> Result<ThriftOptions, ConfigErrors> {
        let max_frame_size = match self.max_frame_size {
            None => DEFAULT_MAX_FRAME_SIZE,
            Some(Positive(n)) if n <= u64::from(crate::wire::dialect::MAX_FRAME_LENGTH) => {
                n as usize
            }
            Some(Positive(n)) => {
                return Err(section
                    .error(
                        "max_frame_size",
                        format!(
                            "{n} is out of range; use a number of bytes from 1 to {}",
                            crate::wire::dialect::MAX_FRAME_LENGTH
                        ),
                    )
                    .into())
            }
        };
        Ok(ThriftOptions {
            max_frame_size,
            execution: self.execution.unwrap_or_default(),
            max_handler_threads: self
                .max_handler_threads
                .map_or(thrift::DEFAULT_MAX_THREADS, |Positive(n)| {
                    saturating_usize(n)
                }),
        })
    }
}

/// A future a connection server returns.
pub(crate) type ConnectionFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Speaks one protocol on one accepted connection, until the peer leaves or
/// shutdown ends it. The server kinds differ only here.
pub(crate) trait ConnectionServer: Send + 'static {
    /// Serves `stream` until done. On `shutdown`, finish the request in
    /// progress, then close; close an idle connection at once.
    fn serve(
        &self,
        stream: Stream,
        connection: ConnectionHandle,
        shutdown: Shutdown,
    ) -> ConnectionFuture;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ConfigFile, Section};
    use std::path::Path;

    fn section(text: &str) -> Section {
        ConfigFile::parse(Path::new("t.ini"), text.as_bytes())
            .unwrap()
            .section("server", "main")
            .unwrap()
    }

    #[test]
    fn defaults_and_values() {
        let o = ServerOptions::from_section(&section(
            "[server:main]\nfactory = baseplate.server.wsgi\n",
        ))
        .unwrap();
        assert_eq!(
            (o.max_concurrency, o.stop_timeout, o.drain_time),
            (None, Duration::ZERO, Duration::ZERO)
        );
        let o = ServerOptions::from_section(&section(
            "[DEFAULT]\nshared = 1\n[server:main]\nfactory = baseplate.server.http\nstop_timeout = 1.5\ndrain_time = 2 seconds\nmax_concurrency = 3\nodd = x\n",
        ))
        .unwrap();
        assert_eq!(o.max_concurrency, Some(3));
        assert_eq!(o.stop_timeout, Duration::from_millis(1500));
        assert_eq!(o.drain_time, Duration::from_secs(2));
        assert_eq!(o.unknown_keys, vec![("odd".to_string(), 8)]);
        assert!(
            matches!(o.protocol, ProtocolOptions::Http(ref h) if h.idle_timeout == DEFAULT_IDLE_TIMEOUT)
        );
    }

    #[test]
    fn each_protocol_reads_only_its_own_keys() {
        let o = ServerOptions::from_section(&section(
            "[server:main]\nfactory = baseplate.server.thrift\nmax_frame_size = 1024\nidle_timeout = 1 second\nhandler = h\n",
        ))
        .unwrap();
        assert_eq!(o.handler.as_deref(), Some("h"));
        assert_eq!(o.unknown_keys, vec![("idle_timeout".to_string(), 4)]);
        match o.protocol {
            ProtocolOptions::Thrift(t) => assert_eq!(t.max_frame_size, 1024),
            other => panic!("{other:?}"),
        }
        let o = ServerOptions::from_section(&section(
            "[server:main]\nfactory = baseplate.server.wsgi\nmax_frame_size = x\nbody_timeout = 2 seconds\n",
        ))
        .unwrap();
        assert_eq!(o.unknown_keys, vec![("max_frame_size".to_string(), 3)]);
        match o.protocol {
            ProtocolOptions::Http(h) => assert_eq!(h.body_timeout, Duration::from_secs(2)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn errors_name_file_line_section_key() {
        let e = ServerOptions::from_section(&section(
            "[server:main]\nfactory = baseplate.server.wsgi\nstop_timeout = soon\n",
        ))
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "t.ini:3: [server:main] stop_timeout: \"soon\" is not a number of seconds from 0 up (or a timespan like \"30 seconds\")"
        );
        let e = ServerOptions::from_section(&section("[server:main]\nx = 1\n")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("t.ini:1: [server:main] factory: missing"),
            "{e}"
        );
    }
}
