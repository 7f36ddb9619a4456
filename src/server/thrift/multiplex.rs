//! Several Thrift services on one port: Apache Thrift's
//! `TMultiplexedProtocol` names each call `Service:method`, and
//! [`Multiplexed`] hands it to the service registered under that name, as
//! Apache's `TMultiplexedProcessor` does. A plain `method` goes to the
//! default service, if there is one.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use thrift::{ApplicationError, ApplicationErrorKind};
use tower::util::BoxCloneService;
use tower::Service;

use crate::app::thrift::{ThriftRequest, ThriftResponse, ThriftService};
use crate::error::BoxError;

/// A Thrift app serving several services under their names, for
/// [`Serve::thrift_service`](crate::Serve::thrift_service):
///
/// ```no_run
/// # fn doc<A, B>(a: A, b: B) -> baseplate::server::thrift::Multiplexed
/// # where
/// #     A: tower::Service<baseplate::server::thrift::ThriftRequest, Response = baseplate::server::thrift::ThriftResponse, Error = baseplate::BoxError> + Clone + Send + 'static,
/// #     A::Future: Send + 'static,
/// #     B: tower::Service<baseplate::server::thrift::ThriftRequest, Response = baseplate::server::thrift::ThriftResponse, Error = baseplate::BoxError> + Clone + Send + 'static,
/// #     B::Future: Send + 'static,
/// # {
/// baseplate::server::thrift::Multiplexed::new()
///     .default_service("ThriftTest", a) // also answers plain `method` names
///     .service("SecondService", b)
/// # }
/// ```
///
/// Each service is any Thrift app: a generated async processor, one in
/// layers, or one of your own; it is called with the bare method name (a
/// processor registered on its own refuses `Service:method`, as Apache's
/// do). Replies are named by the bare method, as
/// Apache's multiplexed processors name them, so every Apache client reads
/// them. A call naming no registered service gets an `UNKNOWN_METHOD`
/// exception that lists the services. Metrics label a call with its whole
/// name (`Service:method`); the server answers `Service:is_healthy` probes
/// itself, as it answers `is_healthy`.
#[derive(Clone, Default)]
pub struct Multiplexed {
    services: BTreeMap<Arc<str>, ThriftService>,
    default: Option<Arc<str>>,
}

impl std::fmt::Debug for Multiplexed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Multiplexed")
            .field("services", &self.services.keys().collect::<Vec<_>>())
            .field("default", &self.default)
            .finish()
    }
}

impl Multiplexed {
    /// No services yet.
    pub fn new() -> Multiplexed {
        Multiplexed::default()
    }

    /// Serves `service` for calls named `name:method`. A second service
    /// under the same name replaces the first.
    pub fn service<S>(mut self, name: &str, service: S) -> Multiplexed
    where
        S: Service<ThriftRequest, Response = ThriftResponse, Error = BoxError>
            + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
    {
        self.services
            .insert(Arc::from(name), BoxCloneService::new(service));
        self
    }

    /// [`service`](Self::service), which also answers calls that name no
    /// service (plain `method`), as clients without multiplexing send them.
    pub fn default_service<S>(mut self, name: &str, service: S) -> Multiplexed
    where
        S: Service<ThriftRequest, Response = ThriftResponse, Error = BoxError>
            + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
    {
        self.default = Some(Arc::from(name));
        self.service(name, service)
    }

    /// The registered names, in order.
    fn names(&self) -> String {
        let names: Vec<&str> = self.services.keys().map(|k| &**k).collect();
        names.join(", ")
    }
}

type Pending = Pin<Box<dyn Future<Output = Result<ThriftResponse, BoxError>> + Send>>;

impl Service<ThriftRequest> for Multiplexed {
    type Response = ThriftResponse;
    type Error = BoxError;
    type Future = Pending;

    /// Ready when every service is, as tower's `Steer` is: the call's
    /// service is known only from the request.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        for service in self.services.values_mut() {
            if service.poll_ready(cx)?.is_pending() {
                return Poll::Pending;
            }
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: ThriftRequest) -> Pending {
        let name = request.service_name().or(self.default.as_deref());
        if let Some(service) = name.and_then(|name| self.services.get_mut(name)) {
            // The service sees the bare method, as Apache's multiplexed
            // processor hands it on: a processor serving one service
            // refuses `Other:method`. (Metrics, spans and logs took the
            // whole name before the app was called.)
            if request.service_name().is_some() {
                request.method = Arc::from(request.method_name());
            }
            return Box::pin(service.call(request));
        }
        let message = match request.service_name() {
            Some(name) => format!(
                "unknown service {name:?} in {:?}; this server has: {}",
                &*request.method,
                self.names()
            ),
            None => format!(
                "{:?} names no service, and this server has no default one: call \
                 `Service:{}`, with Service one of: {}",
                &*request.method,
                request.method_name(),
                self.names()
            ),
        };
        let reply = request.exception(ApplicationError::new(
            ApplicationErrorKind::UnknownMethod,
            message,
        ));
        Box::pin(async move { Ok(reply) })
    }
}
