//! Servers: the options every server shares, the accept loop and shutdown
//! sequence they share ([`lifecycle`]), and the per-connection protocol
//! handlers that differ ([`http`]).

pub mod http;
pub mod lifecycle;
pub mod listener;
pub mod shutdown;
pub mod thrift;
pub mod tracker;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::config::values::{parse_int, parse_timespan, parse_timespan_or_seconds};
use crate::config::{ConfigError, ServerConfig};
use listener::Stream;
use shutdown::Shutdown;
use tracker::ConnectionHandle;

/// The protocol a server factory speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerKind {
    /// HTTP/1.1 and h2c.
    Http,
    /// Thrift in any of five dialects.
    Thrift,
}

/// Server factory names this crate provides, and what they serve.
pub const SERVER_FACTORIES: &[(&str, ServerKind)] = &[
    ("baseplate.server.http", ServerKind::Http),
    ("baseplate.server.thrift", ServerKind::Thrift),
    ("baseplate.server.wsgi", ServerKind::Http),
];

/// Keys every server reads; any other key in a server section gets a warning.
const COMMON_KEYS: &[&str] = &["factory", "max_concurrency", "stop_timeout", "drain_time"];

/// Keys only one kind of server reads.
fn kind_keys(kind: ServerKind) -> &'static [&'static str] {
    match kind {
        ServerKind::Http => &["handler"],
        ServerKind::Thrift => &["max_frame_size", "execution"],
    }
}

/// The default `max_frame_size`: 16 MiB.
pub const DEFAULT_MAX_FRAME_SIZE: usize = 16 * 1024 * 1024;

/// The options of a `[server:NAME]` section, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerOptions {
    /// The `factory` value, like `baseplate.server.wsgi`.
    pub factory: String,
    /// What the factory serves.
    pub kind: ServerKind,
    /// At most this many connections at once; `None` for no limit.
    pub max_concurrency: Option<usize>,
    /// How long in-flight requests may take to finish after shutdown starts.
    pub stop_timeout: Duration,
    /// How long to keep accepting after the shutdown signal.
    pub drain_time: Duration,
    /// The name of a registered layer to wrap the app in (HTTP).
    pub handler: Option<String>,
    /// The largest Thrift message accepted, in bytes (Thrift).
    pub max_frame_size: usize,
    /// Where Thrift processors run (Thrift).
    pub execution: thrift::Execution,
    /// Keys set in the section that no server reads, with their lines.
    pub unknown_keys: Vec<(String, usize)>,
}

impl ServerOptions {
    /// Reads and validates a server section.
    pub fn from_section(section: &ServerConfig) -> Result<ServerOptions, ConfigError> {
        let factory = match section.get("factory") {
            Some(f) if !f.is_empty() => f.to_string(),
            _ => {
                return Err(section.error(
                    "factory",
                    "missing; set it to a server factory such as baseplate.server.wsgi",
                ))
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
                    crate::registry::not_registered("server factory", &factory, names.iter()),
                )
            })?;
        let value = |key: &str| section.get(key).filter(|v| !v.is_empty());
        let max_concurrency = match value("max_concurrency") {
            None => None,
            Some(text) => {
                let n = parse_int(text).map_err(|m| section.error("max_concurrency", m))?;
                if n < 1 {
                    return Err(section.error(
                        "max_concurrency",
                        format!("{n} is not allowed; use a number of connections from 1 up, or leave it unset for no limit"),
                    ));
                }
                Some(usize::try_from(n).unwrap_or(usize::MAX))
            }
        };
        let stop_timeout = match value("stop_timeout") {
            None => Duration::ZERO,
            Some(text) => {
                parse_timespan_or_seconds(text).map_err(|m| section.error("stop_timeout", m))?
            }
        };
        let drain_time = match value("drain_time") {
            None => Duration::ZERO,
            Some(text) => parse_timespan(text).map_err(|m| section.error("drain_time", m))?,
        };
        let max_frame_size = match value("max_frame_size") {
            None => DEFAULT_MAX_FRAME_SIZE,
            Some(text) => {
                let n = parse_int(text).map_err(|m| section.error("max_frame_size", m))?;
                let most = i64::from(thrift::dialect::MAX_FRAME_LENGTH);
                if !(1..=most).contains(&n) {
                    return Err(section.error(
                        "max_frame_size",
                        format!("{n} is out of range; use a number of bytes from 1 to {most}"),
                    ));
                }
                n as usize
            }
        };
        let execution = match value("execution") {
            None => thrift::Execution::default(),
            Some(text) => thrift::Execution::NAMES
                .iter()
                .find(|(name, _)| *name == text)
                .map(|(_, e)| *e)
                .ok_or_else(|| {
                    let names: Vec<&str> =
                        thrift::Execution::NAMES.iter().map(|(n, _)| *n).collect();
                    section.error(
                        "execution",
                        format!("expected one of {}, found {text:?}", names.join(", ")),
                    )
                })?,
        };
        let known = |key: &str| COMMON_KEYS.contains(&key) || kind_keys(kind).contains(&key);
        let unknown_keys = section
            .entries()
            .iter()
            .filter(|e| !e.inherited && !known(e.key.as_str()))
            .map(|e| (e.key.clone(), e.line))
            .collect();
        Ok(ServerOptions {
            factory,
            kind,
            max_concurrency,
            stop_timeout,
            drain_time,
            handler: value("handler")
                .filter(|_| kind == ServerKind::Http)
                .map(str::to_string),
            max_frame_size,
            execution,
            unknown_keys,
        })
    }
}

/// A future a connection handler returns.
pub type ConnectionFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Speaks one protocol on one accepted connection, until the peer leaves or
/// shutdown ends it. The server kinds differ only here.
pub trait ConnectionHandler: Send + 'static {
    /// Serves `stream` until done. On `shutdown`, finish the request in
    /// progress, then close; close an idle connection at once.
    fn handle(
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
    }

    #[test]
    fn errors_name_file_line_section_key() {
        let e = ServerOptions::from_section(&section(
            "[server:main]\nfactory = baseplate.server.wsgi\nstop_timeout = soon\n",
        ))
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "t.ini:3: [server:main] stop_timeout: could not convert string to float: 'soon'"
        );
        let e = ServerOptions::from_section(&section("[server:main]\nx = 1\n")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("t.ini:1: [server:main] factory: missing"),
            "{e}"
        );
    }
}
