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
use baseplate::{AppConfig, BoxError};

/// Builds the app from its `[app:main]` section.
fn make_app(config: &AppConfig) -> Result<Router, BoxError> {
    let greeting = config.get("greeting").unwrap_or("hello").to_string();
    if greeting.is_empty() {
        return Err(config.error("greeting", "must not be empty").into());
    }
    Ok(Router::new().route(
        "/",
        get(move || async move { format!("{greeting} from axum\n") }),
    ))
}

fn main() -> ExitCode {
    baseplate::Serve::new()
        .http_app("my_service.web:make_app", make_app)
        .main()
}
