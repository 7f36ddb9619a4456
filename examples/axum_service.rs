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

use axum::routing::get;
use axum::Router;
use baseplate::config::{from_section, ConfigErrors, Timespan};
use baseplate::AppConfig;
use serde::Deserialize;

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
    Ok(Router::new().route(
        "/",
        get(move || async move { format!("{greeting} from axum (cache ttl {ttl}s)\n") }),
    ))
}

fn main() -> ExitCode {
    baseplate::Serve::new()
        .http_app("my_service.web:make_app", make_app)
        .main()
}
