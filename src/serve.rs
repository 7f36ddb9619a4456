//! The `Serve` builder: register factories by name, then run the
//! `baseplate-serve` command line. Startup goes config → logging → app →
//! listener → server → Einhorn ACK → `Listening on ADDR` → serve.

use std::ffi::OsString;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use hyper::body::Bytes;
use tower::{Layer, Service};
use tracing::{debug, info, warn};

use crate::app::{box_http_service, HttpRequest, HttpService};
use crate::cli::Args;
use crate::config::{AppConfig, ConfigFile, Section};
use crate::einhorn::Worker;
use crate::error::{io_reason, BoxError, Error};
use crate::handlers::access_log;
use crate::registry::{AppFactory, Registry};
use crate::server::http::HttpHandler;
use crate::server::listener::Listener;
use crate::server::tracker::Tracker;
use crate::server::{lifecycle, ServerKind, ServerOptions};
use crate::signals::Signals;

/// A `baseplate-serve` binary under construction: the app factories and
/// handlers it knows by name.
///
/// ```no_run
/// fn main() -> std::process::ExitCode {
///     baseplate::Serve::new()
///         .http_app("my_service.web:make_app", |_config: &baseplate::AppConfig| {
///             Ok::<_, std::convert::Infallible>(tower::service_fn(|_req| async {
///                 Ok::<_, std::convert::Infallible>(http::Response::new(
///                     http_body_util::Full::new(hyper::body::Bytes::from("hi\n")),
///                 ))
///             }))
///         })
///         .main()
/// }
/// ```
pub struct Serve {
    registry: Registry,
}

impl Default for Serve {
    fn default() -> Self {
        Serve::new()
    }
}

impl Serve {
    /// A binary with the built-in handlers (`baseplate.handlers.access_log`)
    /// and no apps.
    pub fn new() -> Serve {
        Serve {
            registry: Registry::default(),
        }
        .http_layer(access_log::NAME, access_log::AccessLogLayer)
    }

    /// Adds the example apps shipped with `baseplate-serve`
    /// (`baseplate.examples.http:make_app`).
    pub fn with_examples(self) -> Serve {
        self.http_app(crate::examples::http::NAME, crate::examples::http::make_app)
    }

    /// Registers an HTTP app factory under `name` (the value of `factory` in
    /// `[app:NAME]`). The factory gets the app section and returns any tower
    /// service over hyper requests, such as an `axum::Router`.
    pub fn http_app<F, S, B, E>(mut self, name: &str, factory: F) -> Serve
    where
        F: Fn(&AppConfig) -> Result<S, E> + Send + Sync + 'static,
        E: Into<BoxError>,
        S: Service<HttpRequest, Response = http::Response<B>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let factory = move |config: &AppConfig| -> Result<HttpService, BoxError> {
            factory(config).map(box_http_service).map_err(Into::into)
        };
        self.registry
            .add_app(name, AppFactory::Http(Box::new(factory)));
        self
    }

    /// Registers a tower layer under `name`, selectable with the server
    /// option `handler = NAME`; it wraps the app.
    pub fn http_layer<L, B>(mut self, name: &str, layer: L) -> Serve
    where
        L: Layer<HttpService> + Send + Sync + 'static,
        L::Service: Service<HttpRequest, Response = http::Response<B>> + Clone + Send + 'static,
        <L::Service as Service<HttpRequest>>::Future: Send + 'static,
        <L::Service as Service<HttpRequest>>::Error: Into<BoxError>,
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let wrap = move |app: HttpService| box_http_service(layer.layer(app));
        self.registry.add_http_layer(name, Box::new(wrap));
        self
    }

    /// Runs the command line from this process's arguments; returns the exit
    /// status (0 after a graceful shutdown, 1 on errors, 2 on usage errors).
    pub fn main(self) -> ExitCode {
        self.main_from(std::env::args_os())
    }

    /// Runs the command line from `args` (the first is the program name).
    pub fn main_from<I, T>(self, args: I) -> ExitCode
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let args = match Args::try_parse_from(args) {
            Ok(args) => args,
            Err(e) => {
                let _ = e.print();
                return ExitCode::from(e.exit_code().clamp(0, 255) as u8);
            }
        };
        match self.run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(1)
            }
        }
    }

    fn run(self, args: Args) -> Result<(), Error> {
        let file = ConfigFile::read(&args.config_file)?;
        let server_section = file.section("server", &args.server_name)?;
        let app_section = file.section("app", &args.app_name)?;
        if args.print_config {
            let json = |s: &Section| serde_json::to_string(s).unwrap_or_default();
            println!(
                "{{\"server\":{},\"app\":{}}}",
                json(&server_section),
                json(&app_section)
            );
            return Ok(());
        }
        let options = ServerOptions::from_section(&server_section)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| {
                Error::new(format!("cannot start the async runtime: {}", io_reason(&e)))
            })?;
        let result = runtime.block_on(self.start(&args, &options, &server_section, &app_section));
        // Connections still open past stop_timeout are dropped here.
        runtime.shutdown_timeout(Duration::from_millis(100));
        result
    }

    async fn start(
        &self,
        args: &Args,
        options: &ServerOptions,
        server_section: &Section,
        app_section: &Section,
    ) -> Result<(), Error> {
        let signals = Signals::install().map_err(|e| {
            Error::new(format!("cannot install signal handlers: {}", io_reason(&e)))
        })?;
        crate::logging::init(args.debug)?;
        // A panic in app code is a bug to log like any other error, as JSON
        // when logs are JSON, not a raw message on stderr.
        std::panic::set_hook(Box::new(|info| tracing::error!("{info}")));
        for (key, line) in &options.unknown_keys {
            warn!(
                "{}:{line}: [{}] {key}: not an option of {}; ignored",
                server_section.file().display(),
                server_section.name(),
                options.factory
            );
        }
        if args.reload {
            warn!("--reload is not implemented yet; serving without reloading");
        }

        let app = self.build_app(options, server_section, app_section)?;
        if args.check {
            println!(
                "config OK: server {:?} ({}), app {:?} ({})",
                args.server_name,
                options.factory,
                args.app_name,
                app_section.get("factory").unwrap_or_default()
            );
            return Ok(());
        }

        let worker = Worker::from_env()?;
        let listener = match worker
            .as_ref()
            .map(Worker::adopt_listener)
            .transpose()?
            .flatten()
        {
            Some(listener) => {
                debug!("serving on the socket inherited from Einhorn; --bind is ignored");
                listener
            }
            None => Listener::bind(&args.bind)?,
        };
        let address = listener.local_addr().map_err(|e| {
            Error::new(format!(
                "cannot read the listening address: {}",
                io_reason(&e)
            ))
        })?;
        let handler = match options.kind {
            ServerKind::Http => HttpHandler::new(app),
        };
        if let Some(worker) = &worker {
            worker.ack()?;
            debug!("sent the Einhorn ACK to {}", worker.sock_path.display());
        }
        info!("Listening on {address}");
        lifecycle::run(listener, handler, options, Tracker::default(), signals).await;
        Ok(())
    }

    /// Runs the app factory named in the app section and wraps the app in the
    /// server's `handler` layer, if any.
    fn build_app(
        &self,
        options: &ServerOptions,
        server_section: &Section,
        app_section: &Section,
    ) -> Result<HttpService, Error> {
        let name = app_section
            .get("factory")
            .filter(|f| !f.is_empty())
            .ok_or_else(|| {
                app_section.error(
                    "factory",
                    format!(
                        "missing; set it to an app factory registered in this binary, such as {}",
                        crate::examples::http::NAME
                    ),
                )
            })?;
        let factory = self
            .registry
            .app(name)
            .map_err(|message| app_section.error("factory", message))?;
        let app = match (factory, options.kind) {
            (AppFactory::Http(make), ServerKind::Http) => make(app_section)
                .map_err(|e| app_section.error("factory", format!("{name} failed: {e}")))?,
        };
        match &options.handler {
            None => Ok(app),
            Some(handler) => {
                let layer = self
                    .registry
                    .http_layer(handler)
                    .map_err(|message| server_section.error("handler", message))?;
                Ok(layer(app))
            }
        }
    }
}
