//! The HTTP server's answer to health probes: `GET /health?type=N` (the
//! path is `health.path`), as baseplate.py's checker sends it, with a JSON
//! body and 200 or 503. Every other request goes to the app.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{header, Method, StatusCode};
use tower::Service;

use super::{Health, Probe};
use crate::app::{full_body, HttpRequest, HttpResponse, HttpService};
use crate::error::BoxError;

/// The default `health.path`.
pub(crate) const DEFAULT_PATH: &str = "/health";

/// `app` with probes on `path` answered from `health`.
pub(crate) fn answer_probes(app: HttpService, health: Health, path: &str) -> HttpService {
    HttpService::new(Probes {
        app,
        health,
        path: Arc::from(path),
    })
}

#[derive(Clone)]
struct Probes {
    app: HttpService,
    health: Health,
    path: Arc<str>,
}

impl Service<HttpRequest> for Probes {
    type Response = HttpResponse;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.app.poll_ready(cx)
    }

    fn call(&mut self, request: HttpRequest) -> Self::Future {
        if request.uri().path() != &*self.path {
            return self.app.call(request);
        }
        if let Some(endpoint) = request.extensions().get::<crate::metrics::Endpoint>() {
            endpoint.set(Arc::clone(&self.path));
        }
        let health = self.health.clone();
        let method = request.method().clone();
        let query = request.uri().query().map(str::to_string);
        Box::pin(async move { Ok(respond(&health, &method, query.as_deref()).await) })
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
