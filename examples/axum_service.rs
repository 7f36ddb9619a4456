//! A service binary of your own: register your app factory by name and get
//! the whole `baseplate-serve` command line, signals and Einhorn support.
//!
//! ```text
//! cargo run --example axum_service -- --bind :9090 my_service.ini
//! ```
//! with `my_service.ini`:
//! ```ini
//! [server:main]
//! factory = baseplate.server.wsgi
//! stop_timeout = 10 seconds
//!
//! [app:main]
//! factory = my_service.web:make_app
//! greeting = howdy
//! ```

use std::process::ExitCode;

use std::fmt::{self, Write as _};

use anyhow::Context as _;
use axum::routing::get;
use axum::Router;
use baseplate::config::{from_section, ConfigErrors, Timespan};
use baseplate::AppConfig;
use serde::Deserialize;
use tower_http::compression::CompressionLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use tracing::field::Field;
use tracing::span::{Attributes, Id};
use tracing::Subscriber;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// The service's settings, from its `[app:main]` section.
#[derive(Deserialize)]
struct Settings {
    greeting: String,
    /// Optional: `cache.ttl = 30 seconds`.
    cache: Option<Cache>,
}

#[derive(Deserialize)]
struct Cache {
    ttl: Timespan,
}

/// Builds the app from its `[app:main]` section.
fn make_app(config: &AppConfig) -> Result<Router, ConfigErrors> {
    let settings: Settings = from_section(config)?;
    let ttl = settings.cache.map_or(0, |c| c.ttl.0.as_secs());
    let greeting = settings.greeting;
    Ok(Router::new()
        .route(
            "/",
            get(move || async move { format!("{greeting} from axum (cache ttl {ttl}s)\n") }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(std::time::Duration::from_secs(10)).await;
                "slow\n"
            }),
        )
        // gzip for clients that accept it (bodies over 32 bytes).
        .layer(CompressionLayer::new())
        // tower-http's request logging, at DEBUG: shown with --debug.
        .layer(TraceLayer::new_for_http()))
}

/// The same app from a factory that returns `anyhow` errors: baseplate
/// prints the context and keeps the located config errors as they are.
fn make_app_with_anyhow(config: &AppConfig) -> anyhow::Result<Router> {
    let settings: Settings = from_section(config).context("reading the web settings")?;
    if settings.greeting == "unreachable" {
        return Err(anyhow::anyhow!("connection refused"))
            .context("connecting to the greeting service");
    }
    Ok(make_app(config)?)
}

/// A tracing layer of the service's own, standing in for an OpenTelemetry
/// exporter: with `REPORT_SPANS=1`, it prints each request span it sees.
struct SpanReporter;

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for SpanReporter {
    fn on_new_span(&self, attrs: &Attributes<'_>, _: &Id, _: Context<'_, S>) {
        if attrs.metadata().name() != "request" {
            return;
        }
        let mut fields = String::new();
        attrs.record(&mut |field: &Field, value: &dyn fmt::Debug| {
            let _ = write!(fields, " {}={:?}", field.name(), value);
        });
        eprintln!("span reporter: request{fields}");
    }
}

fn main() -> ExitCode {
    let serve = baseplate::Serve::new()
        .http_app("my_service.web:make_app", make_app)
        .http_app("my_service.web:make_app_with_anyhow", make_app_with_anyhow)
        // `handler = my_service.timeout` in [server:main]: a request taking
        // longer than a second gets 408.
        .http_layer(
            "my_service.timeout",
            TimeoutLayer::with_status_code(
                http::StatusCode::REQUEST_TIMEOUT,
                std::time::Duration::from_secs(1),
            ),
        );
    let serve = if std::env::var_os("REPORT_SPANS").is_some() {
        serve.tracing_layer(SpanReporter)
    } else {
        serve
    };
    serve.main()
}
