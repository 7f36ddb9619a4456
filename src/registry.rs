//! Factories registered by name: the Rust counterpart of baseplate.py's
//! `module:callable` lookups in the config file.

use std::collections::BTreeMap;

use crate::app::HttpService;
use crate::config::AppConfig;
use crate::error::BoxError;
use crate::server::thrift::{ThriftProcessor, ThriftService};
use crate::server::ServerKind;
use crate::suggest::not_registered;

/// Builds an HTTP app from its `[app:NAME]` section.
pub(crate) type HttpAppFactory =
    Box<dyn Fn(&AppConfig) -> Result<HttpService, BoxError> + Send + Sync>;

/// Wraps an HTTP app (the `handler` server option).
pub(crate) type HttpLayer = Box<dyn Fn(HttpService) -> HttpService + Send + Sync>;

/// Builds a Thrift app from its `[app:NAME]` section.
pub(crate) type ThriftAppFactory =
    Box<dyn Fn(&AppConfig) -> Result<BuiltThriftApp, BoxError> + Send + Sync>;

/// Wraps a Thrift app (the `handler` server option).
pub(crate) type ThriftLayer = Box<dyn Fn(ThriftService) -> ThriftService + Send + Sync>;

/// A Thrift app as its factory made it.
pub(crate) enum BuiltThriftApp {
    /// A sync processor: the server runs it as `execution` says.
    Processor(ThriftProcessor),
    /// A tower service (an async processor, or anything else).
    Service(ThriftService),
}

/// An app factory, by the kind of server it needs.
pub(crate) enum AppFactory {
    /// An HTTP app, served by `baseplate.server.wsgi` / `baseplate.server.http`.
    Http(HttpAppFactory),
    /// A Thrift app, served by `baseplate.server.thrift`.
    Thrift(ThriftAppFactory),
}

impl AppFactory {
    /// The server kind this app needs.
    pub(crate) fn kind(&self) -> ServerKind {
        match self {
            AppFactory::Http(_) => ServerKind::Http,
            AppFactory::Thrift(_) => ServerKind::Thrift,
        }
    }
}

/// All named factories of one binary.
#[derive(Default)]
pub(crate) struct Registry {
    apps: BTreeMap<String, AppFactory>,
    http_layers: BTreeMap<String, HttpLayer>,
    thrift_layers: BTreeMap<String, ThriftLayer>,
}

impl Registry {
    pub(crate) fn add_app(&mut self, name: &str, factory: AppFactory) {
        self.apps.insert(name.to_string(), factory);
    }

    pub(crate) fn add_http_layer(&mut self, name: &str, layer: HttpLayer) {
        self.http_layers.insert(name.to_string(), layer);
    }

    pub(crate) fn add_thrift_layer(&mut self, name: &str, layer: ThriftLayer) {
        self.thrift_layers.insert(name.to_string(), layer);
    }

    /// The app factory called `name`, or a message listing what exists.
    /// The names of the registered app factories, sorted.
    pub(crate) fn app_names(&self) -> Vec<&str> {
        self.apps.keys().map(String::as_str).collect()
    }

    pub(crate) fn app(&self, name: &str) -> Result<&AppFactory, String> {
        self.apps
            .get(name)
            .ok_or_else(|| not_registered("app factory", name, self.apps.keys()))
    }

    /// The HTTP layer called `name`, or a message listing what exists.
    pub(crate) fn http_layer(&self, name: &str) -> Result<&HttpLayer, String> {
        self.http_layers
            .get(name)
            .ok_or_else(|| not_registered("handler", name, self.http_layers.keys()))
    }

    /// The Thrift layer called `name`, or a message listing what exists.
    pub(crate) fn thrift_layer(&self, name: &str) -> Result<&ThriftLayer, String> {
        self.thrift_layers
            .get(name)
            .ok_or_else(|| not_registered("handler", name, self.thrift_layers.keys()))
    }
}
