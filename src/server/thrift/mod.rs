//! The Thrift server. A connection speaks one of five dialects, detected
//! from its first bytes ([`crate::wire`]); each whole
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

mod connection;
pub mod context;
mod errors;
mod frame;
mod multiplex;
mod processor;
pub(crate) mod threads;
pub mod timeout;

use std::sync::Arc;

pub use crate::app::thrift::{
    CallOutcome, Headers, Protocol, RaisedException, ThriftRequest, ThriftResponse, ThriftService,
    TraceContext, MULTIPLEX_SEPARATOR,
};
pub use errors::HandlerPanicked;
pub use multiplex::Multiplexed;
pub(crate) use processor::{processor_service, Execution, ThriftProcessor};
pub(crate) use threads::DEFAULT_MAX_THREADS;
pub(crate) use timeout::ServerTimeouts;

use super::listener::Stream;
use super::shutdown::Shutdown;
use super::tracker::ConnectionHandle;
use super::{ConnectionFuture, ConnectionServer};
use crate::health::thrift::ThriftProbes;
use crate::metrics::Metrics;
use connection::ServerSettings;
use tracing::warn;

/// Serves a [`ThriftService`] on each connection.
pub(crate) struct ThriftServer {
    /// The app, cloned once per connection.
    service: ThriftService,
    settings: Arc<ServerSettings>,
}

impl ThriftServer {
    /// A handler serving `service`, refusing messages over `max_frame_size`
    /// bytes, giving calls the deadlines `timeouts` sets, counting them in
    /// `metrics`, and answering `is_healthy` with `probes`.
    pub(crate) fn new(
        service: ThriftService,
        max_frame_size: usize,
        timeouts: ServerTimeouts,
        metrics: Option<Arc<Metrics>>,
        probes: Option<ThriftProbes>,
    ) -> ThriftServer {
        ThriftServer {
            service,
            settings: Arc::new(ServerSettings {
                max_frame_size,
                timeouts,
                metrics,
                probes,
            }),
        }
    }
}

impl ConnectionServer for ThriftServer {
    fn serve(
        &self,
        stream: Stream,
        connection: ConnectionHandle,
        shutdown: Shutdown,
    ) -> ConnectionFuture {
        let settings = Arc::clone(&self.settings);
        let service = self.service.clone();
        Box::pin(async move {
            let peer = connection.peer().clone();
            if let Err(e) =
                connection::serve(stream, connection, service, &settings, shutdown).await
            {
                warn!(peer = %peer, "closing Thrift connection: {e}");
            }
        })
    }
}
