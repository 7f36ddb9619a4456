//! From the app section to a connection server: run the named app
//! factory, check that the server serves its kind, wrap it in the
//! `handler` layer, and add the server's metrics and health probes.

use std::sync::Arc;

use super::Serve;
use crate::app::HttpService;
use crate::config::{AppConfig, Section};
use crate::error::{BoxError, Error};
use crate::health::http::HttpProbes;
use crate::health::thrift::ThriftProbes;
use crate::health::{AnsweredBy, Health};
use crate::metrics::Metrics;
use crate::registry::{AppFactory, BuiltThriftApp};
use crate::server::http::HttpServer;
use crate::server::lifecycle::{self, Outcome, Triggers};
use crate::server::listener::Listener;
use crate::server::thrift::{processor_service, ServerTimeouts, ThriftServer, ThriftService};
use crate::server::tracker::Tracker;
use crate::server::{HttpOptions, ProtocolOptions, ServerKind, ServerOptions, ThriftOptions};

/// A built app in the connection server that serves it.
pub(super) enum App {
    Http(HttpServer),
    Thrift(ThriftServer),
}

impl App {
    /// Serves on `listener` until a trigger (see [`lifecycle::run`]).
    pub(super) async fn serve(
        self,
        listener: Listener,
        options: &ServerOptions,
        tracker: Tracker,
        health: Health,
        triggers: Triggers,
    ) -> Outcome {
        match self {
            App::Http(server) => {
                lifecycle::run(listener, server, options, tracker, health, triggers).await
            }
            App::Thrift(server) => {
                lifecycle::run(listener, server, options, tracker, health, triggers).await
            }
        }
    }
}

/// The sections and shared state an app is built from.
pub(super) struct AppInputs<'a> {
    pub options: &'a ServerOptions,
    pub server_section: &'a Section,
    pub app_section: &'a Section,
    pub health: &'a Health,
    pub metrics: Option<Arc<Metrics>>,
    /// The app section's `server_timeout.*` (Thrift only).
    pub timeouts: ServerTimeouts,
}

/// The prefixes of the app-section keys that baseplate reads itself
/// (`metrics.enabled`, `server_timeout.default`, `tracing.endpoint`). The
/// app factory gets its section without them, so that a settings struct
/// with `#[serde(deny_unknown_fields)]` sees only the app's own keys.
pub(crate) const OWN_KEY_PREFIXES: [&str; 3] = ["metrics.", "server_timeout.", "tracing."];

/// Whether baseplate reads `key` of the app section itself.
fn is_own_key(key: &str) -> bool {
    OWN_KEY_PREFIXES
        .iter()
        .any(|prefix| key.starts_with(prefix))
}

impl Serve {
    /// Runs the app factory named in the app section, checks that the server
    /// serves its kind, wraps the app in the `handler` layer, if any, and
    /// makes the connection server that serves it with the server's
    /// options, its metrics and its health probes (unless the app answers
    /// them).
    pub(super) fn build_app(&self, inputs: AppInputs<'_>) -> Result<App, Error> {
        let app_section = inputs.app_section;
        let apps_own = app_section.only(|key| !is_own_key(key));
        let config = AppConfig::with_health(apps_own, inputs.health.clone());
        let name = self.factory_name(app_section)?;
        let factory = self
            .registry
            .app(name)
            .map_err(|message| app_section.error("factory", message))?;
        let failed = |e: BoxError| crate::error::factory_failed(&*e, name, app_section);
        match (factory, &inputs.options.protocol) {
            (AppFactory::Thrift(make), ProtocolOptions::Thrift(thrift)) => {
                let app = make(&config).map_err(failed)?;
                self.thrift_server(app, thrift, inputs)
            }
            (AppFactory::Http(make), ProtocolOptions::Http(http)) => {
                let app = make(&config).map_err(failed)?;
                self.http_server(app, http, inputs)
            }
            (factory, _) => Err(kind_mismatch(factory.kind(), name, &inputs)),
        }
    }

    /// The app section's `factory`, which must be set.
    fn factory_name<'s>(&self, app_section: &'s Section) -> Result<&'s str, Error> {
        let name = app_section.get("factory").filter(|f| !f.is_empty());
        name.ok_or_else(|| {
            let names = self.registry.app_names();
            let registered = match names.is_empty() {
                true => "(none)".to_string(),
                false => names.join(", "),
            };
            let message = format!(
                "missing; set it to an app factory registered in this binary: {registered}"
            );
            app_section.error("factory", message).into()
        })
    }

    /// The Thrift connection server for what a Thrift factory built.
    fn thrift_server(
        &self,
        app: BuiltThriftApp,
        thrift: &ThriftOptions,
        inputs: AppInputs<'_>,
    ) -> Result<App, Error> {
        let service: ThriftService = match app {
            BuiltThriftApp::Processor(processor) => {
                processor_service(processor, thrift.execution, thrift.max_handler_threads)
            }
            BuiltThriftApp::Service(service) => service,
        };
        let service = match &inputs.options.handler {
            None => service,
            Some(handler) => {
                let layer = self
                    .registry
                    .thrift_layer(handler)
                    .map_err(|message| inputs.server_section.error("handler", message))?;
                layer(service)
            }
        };
        let probes =
            server_answers(inputs.options).then(|| ThriftProbes::new(inputs.health.clone()));
        Ok(App::Thrift(ThriftServer::new(
            service,
            thrift.max_frame_size,
            inputs.timeouts,
            inputs.metrics,
            probes,
        )))
    }

    /// The HTTP connection server for what an HTTP factory built.
    fn http_server(
        &self,
        app: HttpService,
        http: &HttpOptions,
        inputs: AppInputs<'_>,
    ) -> Result<App, Error> {
        let app = match &inputs.options.handler {
            None => app,
            Some(handler) => {
                let layer = self
                    .registry
                    .http_layer(handler)
                    .map_err(|message| inputs.server_section.error("handler", message))?;
                layer(app)
            }
        };
        let probes = server_answers(inputs.options)
            .then(|| HttpProbes::new(inputs.health.clone(), &http.health_path));
        let server = HttpServer::new(app, http, inputs.metrics, probes);
        Ok(App::Http(match inputs.options.handler {
            // The access log reads the peer's address.
            Some(_) => server.with_peer_extension(),
            None => server,
        }))
    }
}

/// Whether the server answers the health probes (rather than the app).
fn server_answers(options: &ServerOptions) -> bool {
    options.health_answered_by == AnsweredBy::Server
}

/// The error for a factory whose app the server section cannot serve.
fn kind_mismatch(kind: ServerKind, name: &str, inputs: &AppInputs<'_>) -> Error {
    let (app_kind, wanted) = match kind {
        ServerKind::Http => ("an HTTP app", "baseplate.server.wsgi"),
        ServerKind::Thrift => ("a Thrift app", "baseplate.server.thrift"),
    };
    let message = format!(
        "{name} makes {app_kind}, but [{}] factory = {} cannot serve it; use {wanted}",
        inputs.server_section.name(),
        inputs.options.factory
    );
    inputs.app_section.error("factory", message).into()
}
