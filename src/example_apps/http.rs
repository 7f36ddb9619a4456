//! `baseplate.examples.http:make_app`: a small HTTP app for trying the
//! server, and for testing shutdown and limits with slow requests.
//!
//! Routes: `GET /`, `GET /health` (reached only with
//! `health.answered_by = app`: the server answers probes by default),
//! `GET /sleep?ms=N`, `POST /echo`, `GET /config`, `GET /status?code=N`
//! (answers with status N, to try dashboards and alerts), and `GET /panic`
//! to show what an app bug costs (one 500). With `maintenance_file = PATH`,
//! readiness fails while that file exists.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use tower::Service;
use tracing::info;

use std::collections::HashMap;

use serde::Deserialize;

use crate::body::RequestBody;
use crate::config::{
    from_section, AppConfig, Base64, ConfigErrors, Endpoint, File, Percent, Timespan,
    TimespanOrInfinite, UnixUser,
};
use crate::health::Probe;

/// The factory name to use in `[app:NAME] factory = ...`.
pub const NAME: &str = "baseplate.examples.http:make_app";

/// The longest `/sleep` allowed.
const MAX_SLEEP_MS: u64 = 600_000;

/// The example app's settings, read with [`from_section`]: optional,
/// list, nested (with a timespan) and map fields.
#[derive(Debug, Deserialize)]
pub struct ExampleSettings {
    /// The app factory name.
    pub factory: String,
    /// Any greeting (optional).
    pub greeting: Option<String>,
    /// A comma-separated list (optional).
    pub tags: Option<Vec<String>>,
    /// A nested group: `cache.ttl`, `cache.size` (optional).
    pub cache: Option<CacheSettings>,
    /// Named endpoints: `backends.NAME = HOST:PORT` or a path.
    #[serde(default)]
    pub backends: HashMap<String, Endpoint>,
    /// A percentage, like `sample_rate = 12.5%`.
    pub sample_rate: Option<Percent>,
    /// Base64 data.
    pub secret: Option<Base64>,
    /// `true` or `false`.
    pub verbose: Option<bool>,
    /// A user name or uid.
    pub run_as: Option<UnixUser>,
    /// A file that must exist.
    pub motd: Option<File>,
    /// A timespan, or `infinite`.
    pub deadline: Option<TimespanOrInfinite>,
    /// While this file exists, readiness probes fail (an app check, as a
    /// maintenance switch).
    pub maintenance_file: Option<std::path::PathBuf>,
}

/// `cache.*` of [`ExampleSettings`].
#[derive(Debug, Deserialize)]
pub struct CacheSettings {
    /// How long entries live.
    pub ttl: Timespan,
    /// How many entries.
    pub size: u32,
}

impl ExampleSettings {
    fn to_json(&self) -> serde_json::Value {
        let mut backends: Vec<(&String, String)> = self
            .backends
            .iter()
            .map(|(k, v)| (k, v.to_string()))
            .collect();
        backends.sort();
        serde_json::json!({
            "factory": self.factory,
            "greeting": self.greeting,
            "tags": self.tags,
            "cache": self.cache.as_ref().map(|c| serde_json::json!({"ttl_ms": c.ttl.0.as_millis() as u64, "size": c.size})),
            "backends": backends.into_iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v))).collect::<serde_json::Map<_, _>>(),
            "sample_rate": self.sample_rate.map(|p| p.0),
            "secret_bytes": self.secret.as_ref().map(|s| s.0.len()),
            "verbose": self.verbose,
            "run_as_uid": self.run_as.map(|u| u.0),
            "motd": self.motd.as_ref().map(|f| f.0.display().to_string()),
            "deadline_ms": self.deadline.map(|d| match d {
                TimespanOrInfinite::Finite(d) => serde_json::json!(d.as_millis() as u64),
                TimespanOrInfinite::Infinite => serde_json::json!("infinite"),
            }),
        })
    }
}

/// Builds the example app; its settings are served back on `/config`.
pub fn make_app(config: &AppConfig) -> Result<ExampleApp, ConfigErrors> {
    let settings: ExampleSettings = from_section(config)?;
    if let Some(path) = settings.maintenance_file.clone() {
        config
            .health()
            .add_check(Probe::Readiness, "maintenance", move || {
                let exists = path.exists();
                let path = path.display().to_string();
                async move {
                    match exists {
                        true => Err(format!("{path} exists")),
                        false => Ok(()),
                    }
                }
            });
    }
    Ok(ExampleApp {
        config: Arc::new(settings.to_json().to_string().into_bytes()),
    })
}

/// The example app's service.
#[derive(Debug, Clone)]
pub struct ExampleApp {
    config: Arc<Vec<u8>>,
}

impl Service<Request<RequestBody>> for ExampleApp {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<RequestBody>) -> Self::Future {
        // `GET /` answers at once: no route future (the size of the largest
        // route's) to move into the box.
        if request.method() == Method::GET && request.uri().path() == "/" {
            set_endpoint(&request, "/");
            return Box::pin(std::future::ready(Ok(hello())));
        }
        let config = Arc::clone(&self.config);
        Box::pin(async move { Ok(route(request, &config).await) })
    }
}

/// The routes, for metrics' `http_endpoint` label.
const ROUTES: &[&str] = &[
    "/", "/health", "/sleep", "/echo", "/config", "/status", "/panic",
];

/// Names the route `path` matched for metrics, if metrics are on.
fn set_endpoint(request: &Request<RequestBody>, path: &str) {
    if let (Some(route), Some(endpoint)) = (
        ROUTES.iter().find(|r| **r == path),
        request.extensions().get::<crate::metrics::RouteLabel>(),
    ) {
        endpoint.set(route);
    }
}

/// `GET /`.
fn hello() -> Response<Full<Bytes>> {
    text(
        StatusCode::OK,
        Bytes::from_static(b"hello from baseplate-serve\n"),
    )
}

async fn route(request: Request<RequestBody>, config: &[u8]) -> Response<Full<Bytes>> {
    let path = request.uri().path().to_string();
    set_endpoint(&request, &path);
    match (request.method(), path.as_str()) {
        (&Method::GET, "/") => hello(),
        (&Method::GET, "/health") => json(
            serde_json::json!({"status": "ok", "pid": std::process::id()})
                .to_string()
                .into_bytes(),
        ),
        (&Method::GET, "/sleep") => sleep(request.uri().query()).await,
        (&Method::POST, "/echo") => echo(request.into_body()).await,
        (&Method::GET, "/config") => json(config.to_vec()),
        (&Method::GET, "/status") => status(request.uri().query()),
        (&Method::GET, "/panic") => panic!("the example app panics on /panic, as asked"),
        (_, route) if ROUTES.contains(&route) => {
            text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

async fn sleep(query: Option<&str>) -> Response<Full<Bytes>> {
    let ms = query
        .unwrap_or("")
        .split('&')
        .find_map(|pair| pair.strip_prefix("ms="))
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|&ms| ms <= MAX_SLEEP_MS);
    let Some(ms) = ms else {
        return text(
            StatusCode::BAD_REQUEST,
            format!("expected ?ms=N with N a whole number of milliseconds up to {MAX_SLEEP_MS}\n"),
        );
    };
    info!("sleeping for {ms} ms");
    tokio::time::sleep(Duration::from_millis(ms)).await;
    text(StatusCode::OK, format!("slept {ms} ms"))
}

/// `GET /status?code=N`: answers with status N (200 to 599).
fn status(query: Option<&str>) -> Response<Full<Bytes>> {
    let code = query
        .unwrap_or("")
        .split('&')
        .find_map(|pair| pair.strip_prefix("code="))
        .and_then(|v| v.parse::<u16>().ok())
        .filter(|code| (200..600).contains(code))
        .and_then(|code| StatusCode::from_u16(code).ok());
    match code {
        Some(code) => text(code, format!("{code}\n")),
        None => text(
            StatusCode::BAD_REQUEST,
            "expected ?code=N with N a status from 200 to 599\n",
        ),
    }
}

/// Answers with the request body; a body over the server's `max_body_size`
/// gets 413, one that stops arriving for `body_timeout` gets 408.
async fn echo(body: RequestBody) -> Response<Full<Bytes>> {
    match body.collect().await {
        Ok(collected) => Response::builder()
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .body(Full::new(collected.to_bytes()))
            .unwrap_or_default(),
        Err(e) if RequestBody::is_too_large(&e) => text(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("cannot echo the body: {e}\n"),
        ),
        Err(e) if RequestBody::is_timeout(&e) => {
            text(StatusCode::REQUEST_TIMEOUT, format!("{e}\n"))
        }
        Err(e) => text(
            StatusCode::BAD_REQUEST,
            format!("cannot read the body: {e}\n"),
        ),
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn json(body: Vec<u8>) -> Response<Full<Bytes>> {
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_default()
}
