//! A handler that calls another service over HTTP and keeps the trace
//! going: `baseplate::trace::inject_traceparent` puts the current span on
//! the outgoing request as W3C `traceparent`, so the service called is a
//! child of this request in the tracing backend (baseplate.py's clients do
//! the same for their users). Needs the `otel` feature and an endpoint.
//!
//! ```text
//! OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318 \
//!   cargo run --features otel --example traced_call -- --bind :9090 traced.ini
//! ```
//! with `traced.ini`:
//! ```ini
//! [server:main]
//! factory = baseplate.server.wsgi
//!
//! [app:main]
//! factory = my_service.web:make_app
//! downstream = 127.0.0.1:8081
//! ```

use std::process::ExitCode;

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use baseplate::config::{from_section, ConfigErrors};
use baseplate::AppConfig;
use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde::Deserialize;

#[derive(Deserialize)]
struct Settings {
    /// The `HOST:PORT` of the service this one calls.
    downstream: String,
}

fn make_app(config: &AppConfig) -> Result<Router, ConfigErrors> {
    let settings: Settings = from_section(config)?;
    Ok(Router::new()
        .route("/", get(handle))
        .with_state(settings.downstream))
}

/// Calls the downstream service, as a child of this request's span.
async fn handle(State(downstream): State<String>) -> String {
    match call(&downstream).await {
        Ok(status) => format!("downstream answered {status}\n"),
        Err(e) => format!("downstream failed: {e}\n"),
    }
}

async fn call(downstream: &str) -> Result<http::StatusCode, baseplate::BoxError> {
    let stream = tokio::net::TcpStream::connect(downstream).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let mut request = http::Request::get("/")
        .header(http::header::HOST, downstream)
        .body(Empty::<Bytes>::new())?;
    // The one line that keeps the trace going.
    baseplate::trace::inject_traceparent(request.headers_mut());
    Ok(sender.send_request(request).await?.status())
}

fn main() -> ExitCode {
    baseplate::Serve::new()
        .http_app("my_service.web:make_app", make_app)
        .main()
}
