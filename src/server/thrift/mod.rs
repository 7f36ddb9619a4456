//! The Thrift server. A connection speaks one of five dialects, detected
//! from its first bytes ([`dialect`], [`header`], [`scanner`]); each whole
//! message becomes a [`ThriftRequest`] for the app, a tower
//! [`ThriftService`], and its [`ThriftResponse`] goes back in the same
//! dialect (`connection.rs`).
//!
//! The async workers only accept, read, decode, encode and write. App code
//! runs elsewhere: a synchronous processor on the handler threads
//! (`threads.rs`), which grow so that a call never waits behind a blocked
//! one; an async app as the future it returns, which must not block (as
//! with any tokio service). Deadlines ([`timeout`]) and panics are
//! answered with a `TApplicationException`, and the connection goes on.

pub mod call;
mod connection;
pub mod context;
#[doc(hidden)]
pub mod dialect;
mod frame;
#[doc(hidden)]
pub mod header;
mod multiplex;
mod processor;
#[doc(hidden)]
pub mod scanner;
pub(crate) mod threads;
pub mod timeout;

use std::sync::Arc;

pub use call::{
    Headers, ThriftRequest, ThriftResponse, ThriftService, TraceContext, MULTIPLEX_SEPARATOR,
};
pub use dialect::Protocol;
pub use multiplex::Multiplexed;
pub(crate) use processor::ThriftProcessor;
pub(crate) use threads::DEFAULT_MAX_THREADS;
pub(crate) use timeout::ServerTimeouts;

use super::listener::Stream;
use super::shutdown::Shutdown;
use super::tracker::ConnectionHandle;
use super::{ConnectionFuture, ConnectionHandler};
use crate::health::thrift::ThriftProbes;
use crate::metrics::Metrics;
use tracing::warn;

/// Where a synchronous processor runs (server option `execution`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Execution {
    /// On the handler threads, never on an async worker: a handler that
    /// blocks delays only its own call. The default.
    #[default]
    #[serde(alias = "blocking")]
    Threads,
    /// On the async worker that read the call: no thread handoff, but a
    /// handler that blocks stalls every connection that worker serves.
    /// Only for handlers that never block.
    Inline,
}

/// A sync processor as a [`ThriftService`], run as `execution` says, on at
/// most `max_threads` handler threads.
pub(crate) fn processor_service(
    processor: ThriftProcessor,
    execution: Execution,
    max_threads: usize,
) -> ThriftService {
    ThriftService::new(processor::SyncProcessor::new(
        processor,
        execution,
        max_threads,
    ))
}

/// The error a call gets when its handler panicked (the server answers it
/// with `INTERNAL_ERROR`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandlerPanicked;

impl std::fmt::Display for HandlerPanicked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the handler panicked")
    }
}

impl std::error::Error for HandlerPanicked {}

/// A message the processor could not read at all: the connection closes.
#[derive(Debug)]
pub(crate) struct MalformedCall(pub(crate) String);

impl std::fmt::Display for MalformedCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for MalformedCall {}

/// Serves a [`ThriftService`] on each connection.
pub(crate) struct ThriftHandler {
    /// The app, cloned once per connection.
    service: ThriftService,
    served: Arc<Served>,
}

/// The settings every connection of one server shares.
struct Served {
    /// The largest message accepted, framed or not, in bytes.
    max_frame_size: usize,
    /// The app's `server_timeout.*` settings.
    timeouts: ServerTimeouts,
    /// Where calls are counted, with metrics on.
    metrics: Option<Arc<Metrics>>,
    /// The server's answer to `is_healthy`, unless the app answers it.
    probes: Option<ThriftProbes>,
}

impl ThriftHandler {
    /// A handler serving `service`, refusing messages over `max_frame_size`
    /// bytes, giving calls the deadlines `timeouts` sets, counting them in
    /// `metrics`, and answering `is_healthy` with `probes`.
    pub(crate) fn new(
        service: ThriftService,
        max_frame_size: usize,
        timeouts: ServerTimeouts,
        metrics: Option<Arc<Metrics>>,
        probes: Option<ThriftProbes>,
    ) -> ThriftHandler {
        ThriftHandler {
            service,
            served: Arc::new(Served {
                max_frame_size,
                timeouts,
                metrics,
                probes,
            }),
        }
    }
}

impl ConnectionHandler for ThriftHandler {
    fn handle(
        &self,
        stream: Stream,
        connection: ConnectionHandle,
        shutdown: Shutdown,
    ) -> ConnectionFuture {
        let served = Arc::clone(&self.served);
        let service = self.service.clone();
        Box::pin(async move {
            let peer = connection.peer().clone();
            if let Err(e) = connection::serve(stream, connection, service, &served, shutdown).await
            {
                warn!(peer = %peer, "closing Thrift connection: {e}");
            }
        })
    }
}
