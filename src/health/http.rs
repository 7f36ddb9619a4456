//! The HTTP server's answer to health probes: `GET /health?type=N` (the
//! path is `health.path`), as baseplate.py's checker sends it, with a JSON
//! body and 200 or 503. Every other request goes to the app (and so does
//! this one with `health.answered_by = app`).

use std::sync::Arc;

use http::{header, Method, StatusCode};

use super::{Health, Probe};
use crate::app::{full_body, HttpRequest, HttpResponse};

/// The default `health.path`.
pub(crate) const DEFAULT_PATH: &str = "/health";

/// The server's answer to probes on `path`, from `health`. The HTTP handler
/// asks it first, so a probe costs the app nothing and other requests pay
/// one comparison.
#[derive(Clone)]
pub(crate) struct HttpProbes {
    health: Health,
    path: Arc<str>,
}

impl HttpProbes {
    pub(crate) fn new(health: Health, path: &str) -> HttpProbes {
        HttpProbes {
            health,
            path: Arc::from(path),
        }
    }

    /// Whether `request` is a probe.
    pub(crate) fn is_probe(&self, request: &HttpRequest) -> bool {
        request.uri().path() == &*self.path
    }

    /// The answer to a probe.
    pub(crate) async fn answer(&self, request: &HttpRequest) -> HttpResponse {
        if let Some(endpoint) = request.extensions().get::<crate::metrics::RouteLabel>() {
            endpoint.set(&self.path);
        }
        respond(&self.health, request.method(), request.uri().query()).await
    }
}

async fn respond(health: &Health, method: &Method, query: Option<&str>) -> HttpResponse {
    if method != Method::GET && method != Method::HEAD {
        let mut response = json(
            StatusCode::METHOD_NOT_ALLOWED,
            serde_json::json!({"error": "health probes are GET requests"}),
        );
        response
            .headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let probe = match probe_of(query) {
        Ok(probe) => probe,
        Err(word) => {
            return json(
                StatusCode::BAD_REQUEST,
                serde_json::json!({"error": format!(
                    "unknown probe type {word:?}: use 1 (readiness), 2 (liveness), 3 (startup) or a name"
                )}),
            )
        }
    };
    let report = health.check(probe).await;
    let status = if report.is_healthy() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    // hyper sends no body for HEAD.
    json(status, report.to_json())
}

/// The probe of `?type=`: readiness when absent, as baseplate.py's apps
/// default; the word given when it names no probe.
fn probe_of(query: Option<&str>) -> Result<Probe, String> {
    let Some(value) = query
        .unwrap_or("")
        .split('&')
        .find_map(|pair| pair.strip_prefix("type="))
    else {
        return Ok(Probe::Readiness);
    };
    Probe::parse(value).ok_or_else(|| value.to_string())
}

fn json(status: StatusCode, body: serde_json::Value) -> HttpResponse {
    let mut response = HttpResponse::new(full_body(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    // A probe's answer is about this moment.
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_comes_from_the_type_parameter() {
        assert_eq!(probe_of(None), Ok(Probe::Readiness));
        assert_eq!(probe_of(Some("x=1")), Ok(Probe::Readiness));
        assert_eq!(probe_of(Some("type=2")), Ok(Probe::Liveness));
        assert_eq!(probe_of(Some("a=b&type=startup")), Ok(Probe::Startup));
        assert_eq!(probe_of(Some("type=9")), Ok(Probe::Readiness));
        assert_eq!(probe_of(Some("type=ready")), Err("ready".to_string()));
    }
}
