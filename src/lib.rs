//! Run Rust services the way reddit's `baseplate-serve` runs Python ones.
//!
//! An INI config names a server (`[server:NAME]`: HTTP or Thrift, with its
//! limits and timeouts) and an app factory (`[app:NAME]`, whose other keys
//! are the app's settings). The server serves the app on a socket of its
//! own, or one inherited from Einhorn or systemd, logs with trace ids, and
//! shuts down gracefully on SIGTERM, SIGINT or SIGUSR2.
//!
//! A service is a binary that registers its factories by name in a
//! [`Serve`] and hands it the command line:
//!
//! ```no_run
//! use axum::{routing::get, Router};
//! use baseplate::config::from_section;
//! use baseplate::AppConfig;
//!
//! #[derive(serde::Deserialize)]
//! struct Settings {
//!     greeting: String,
//! }
//!
//! fn make_app(config: &AppConfig) -> Result<Router, baseplate::config::ConfigErrors> {
//!     let settings: Settings = from_section(config)?;
//!     Ok(Router::new().route("/", get(move || async move { settings.greeting.clone() })))
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     baseplate::Serve::new()
//!         .http_app("my_service.web:make_app", make_app)
//!         .main()
//! }
//! ```
//!
//! served with `my-service app.ini`, where `app.ini` is
//!
//! ```ini
//! [server:main]
//! factory = baseplate.server.wsgi
//! stop_timeout = 10 seconds
//!
//! [app:main]
//! factory = my_service.web:make_app
//! greeting = hello
//! ```
//!
//! A Thrift app is a tower service over [`server::thrift::ThriftRequest`]:
//! the async processor `baseplate-thrift` generates from an IDL
//! ([`Serve::thrift_service`]), the sync processor of `thrift --gen rs`
//! ([`Serve::thrift_app`], run on handler threads so that blocking never
//! stalls other calls), or one of your own:
//!
//! ```no_run
//! use baseplate::server::thrift::{ThriftRequest, ThriftResponse};
//! use baseplate::{AppConfig, BoxError};
//!
//! async fn answer(request: ThriftRequest) -> Result<ThriftResponse, BoxError> {
//!     Ok(request.exception(baseplate::thrift::ApplicationError::new(
//!         baseplate::thrift::ApplicationErrorKind::UnknownMethod,
//!         format!("no method {}", request.method),
//!     )))
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     baseplate::Serve::new()
//!         .thrift_service("my_service:make_service", |_: &AppConfig| {
//!             Ok::<_, std::convert::Infallible>(baseplate::tower::service_fn(answer))
//!         })
//!         .main()
//! }
//! ```
//!
//! A sync processor is what `thrift --gen rs` generates for a service;
//! by hand, one that knows no methods looks like this:
//!
//! ```no_run
//! use baseplate::thrift::protocol::{
//!     TInputProtocol, TMessageIdentifier, TMessageType, TOutputProtocol, TType,
//! };
//! use baseplate::thrift::server::TProcessor;
//! use baseplate::thrift::{ApplicationError, ApplicationErrorKind};
//!
//! struct NoMethods;
//!
//! impl TProcessor for NoMethods {
//!     fn process(
//!         &self,
//!         i: &mut dyn TInputProtocol,
//!         o: &mut dyn TOutputProtocol,
//!     ) -> baseplate::thrift::Result<()> {
//!         // Blocking here is fine: sync calls run on handler threads.
//!         let call = i.read_message_begin()?;
//!         i.skip(TType::Struct)?;
//!         i.read_message_end()?;
//!         let error = ApplicationError::new(
//!             ApplicationErrorKind::UnknownMethod,
//!             format!("no method {}", call.name),
//!         );
//!         let reply = TMessageIdentifier::new(call.name, TMessageType::Exception, call.sequence_number);
//!         o.write_message_begin(&reply)?;
//!         baseplate::thrift::Error::write_application_error_to_out_protocol(&error, o)?;
//!         o.write_message_end()?;
//!         o.flush()
//!     }
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     baseplate::Serve::new()
//!         .thrift_app("my_service:make_processor", |_: &baseplate::AppConfig| {
//!             Ok::<_, std::convert::Infallible>(NoMethods)
//!         })
//!         .main()
//! }
//! ```
//!
//! The rest of the API: [`config`] reads typed settings from a section
//! ([`config::from_section`], every bad value reported with its file and
//! line); [`Args`] and [`Serve::run`] let a binary add flags of its own and
//! run the lifecycle in its own runtime; [`Serve::http_layer`],
//! [`Serve::thrift_layer`] and [`Serve::tracing_layer`] add tower and
//! tracing layers. The guide is `docs/own-service.md`; the command line and
//! config keys are in `docs/serve.md`.
//!
//! The public modules are [`config`] (typed settings), [`app`] (the HTTP
//! app's request and service types), [`server::thrift`] (the Thrift call's
//! types) and [`trace`] (the request's trace id). The rest, the command
//! line, listener, lifecycle, signals and logging, is the machinery behind
//! [`Serve`]; `docs/architecture.md` maps it.

#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

#[cfg(all(feature = "taskdump", not(tokio_unstable)))]
compile_error!(
    "baseplate's `taskdump` feature needs tokio's unstable APIs: build with \
     RUSTFLAGS=\"--cfg tokio_unstable\", or add `[build] rustflags = [\"--cfg\", \"tokio_unstable\"]` \
     to .cargo/config.toml"
);

// Generated code names this crate `::baseplate`, also inside it.
extern crate self as baseplate;

#[cfg(feature = "server")]
pub mod app;
#[cfg(feature = "server")]
mod body;
#[cfg(feature = "server")]
mod cli;
// The Thrift code generator: the only module built without `server`.
pub mod codegen;
#[cfg(feature = "server")]
pub mod config;
#[cfg(feature = "server")]
mod error;
#[cfg(feature = "examples")]
pub mod example_apps;
#[cfg(feature = "server")]
mod handlers;
#[cfg(feature = "server")]
pub mod health;
#[cfg(feature = "server")]
mod lock_file;
#[cfg(feature = "server")]
mod logging;
#[cfg(feature = "server")]
pub mod metrics;
#[cfg(feature = "server")]
mod os_error;
#[cfg(feature = "otel")]
mod otel;
// The process shell: signals, systemd, Einhorn, --reload.
#[cfg(feature = "server")]
mod process;
#[cfg(feature = "server")]
mod registry;
#[cfg(feature = "server")]
mod serve;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "server")]
mod suggest;
#[cfg(feature = "server")]
pub mod trace;
// The Thrift wire format; public for the fuzz targets and property tests.
#[cfg(feature = "server")]
#[doc(hidden)]
pub mod wire;

/// The `http` crate of the requests and responses HTTP apps handle.
#[cfg(feature = "server")]
pub use http;
/// The `thrift` crate baseplate is built on: use it (or the same version)
/// for generated code, so its `TProcessor` is the one baseplate serves.
#[cfg(feature = "server")]
pub use thrift;
/// The `tower` crate baseplate's apps and layers are built on.
#[cfg(feature = "server")]
pub use tower;

#[cfg(feature = "server")]
pub use body::{BodyTimeout, RequestBody};
#[cfg(feature = "server")]
pub use cli::Args;
#[cfg(feature = "server")]
pub use config::{AppConfig, ServerConfig};
#[cfg(feature = "server")]
pub use error::{BoxError, Error};
#[cfg(feature = "server")]
pub use serve::{Serve, Served};

/// The pages of `docs/` and the README, compiled as doctests: every Rust
/// block in them builds as written, or says in its first line that it is
/// a sketch (and is marked `ignore`).
#[cfg(doctest)]
mod docs_compile {
    #[doc = include_str!("../README.md")]
    struct Readme;
    #[doc = include_str!("../docs/config.md")]
    struct Config;
    #[doc = include_str!("../docs/operations.md")]
    struct Operations;
    #[doc = include_str!("../docs/serve.md")]
    struct ServeDoc;
    #[doc = include_str!("../docs/thrift.md")]
    struct Thrift;
}
