//! Run Rust services the way reddit's `baseplate-serve` runs Python ones:
//! an INI config names a server and an app factory, the server serves the
//! app on a socket (its own or one inherited from Einhorn), and SIGTERM,
//! SIGINT or SIGUSR2 shut it down gracefully.
//!
//! A service registers its factories in a [`Serve`] and calls
//! [`Serve::main`]; see `docs/serve.md` for the command line and config.
//!
//! The modules follow the data flow: [`cli`] → [`config`] → app
//! ([`registry`], [`app`]) → [`server::listener`] → [`server`] →
//! [`server::lifecycle`], with [`einhorn`], [`signals`] and [`logging`]
//! alongside.

#[cfg(all(feature = "taskdump", not(tokio_unstable)))]
compile_error!(
    "baseplate's `taskdump` feature needs tokio's unstable APIs: build with \
     RUSTFLAGS=\"--cfg tokio_unstable\", or add `[build] rustflags = [\"--cfg\", \"tokio_unstable\"]` \
     to .cargo/config.toml"
);

// Generated code names this crate `::baseplate`, also inside it.
extern crate self as baseplate;

pub mod app;
pub mod body;
pub mod cli;
pub mod codegen;
pub mod config;
pub mod einhorn;
pub mod error;
pub mod examples;
pub mod handlers;
pub mod logging;
mod registry;
pub mod reload;
mod serve;
pub mod server;
pub mod signals;
pub mod systemd;
pub mod trace;

/// The `thrift` crate baseplate is built on: use it (or the same version)
/// for generated code, so its `TProcessor` is the one baseplate serves.
pub use thrift;
/// The `tower` crate baseplate's apps and layers are built on.
pub use tower;

pub use body::RequestBody;
pub use cli::Args;
pub use config::{AppConfig, ServerConfig};
pub use error::{BoxError, Error};
pub use serve::{Serve, Served};
