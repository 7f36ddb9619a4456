//! OpenTelemetry export (cargo feature `otel`): the `request` (HTTP) and
//! `rpc` (Thrift) spans go out over OTLP/HTTP (protobuf) when an endpoint
//! is set, each parented on the caller's span from W3C `traceparent` or
//! baseplate's `Trace`/`Span` headers (`X-Trace`/`X-Span` over HTTP).
//!
//! The exporter's HTTP requests run on the server's tokio runtime: the SDK's
//! batch processor exports from a thread of its own, and hands each
//! request to the runtime ([`OnRuntime`]).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry::Context;
use opentelemetry_http::{HttpClient, HttpError};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::config::Section;
use crate::error::Error;
use crate::trace::UserLayer;

/// Set once export is on: only then are callers' headers read for it.
static ENABLED: AtomicBool = AtomicBool::new(false);

/// How long the last spans may take to leave at shutdown. baseplate.py's
/// exporter retried for a minute against a missing collector; a shutdown
/// must not wait on telemetry.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(5);

/// How long one export request may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The OTLP traces endpoint: `tracing.endpoint` in the app section (a base
/// URL, as `OTEL_EXPORTER_OTLP_ENDPOINT`), else the standard variables,
/// which the exporter reads itself. `None`: export is off.
fn endpoint(app: &Section) -> Option<Option<String>> {
    if std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true")) {
        return None;
    }
    if let Some(base) = app.get("tracing.endpoint").filter(|v| !v.is_empty()) {
        let base = base.trim_end_matches('/');
        return Some(Some(if base.ends_with("/v1/traces") {
            base.to_string()
        } else {
            format!("{base}/v1/traces")
        }));
    }
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.is_empty());
    (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
        .then_some(None)
}

/// Export under way: flushed and stopped by [`Export::shutdown`].
pub(crate) struct Export {
    provider: SdkTracerProvider,
}

impl fmt::Debug for Export {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Export").finish_non_exhaustive()
    }
}

impl Export {
    /// Sends the spans still buffered (for at most a few seconds) and stops.
    pub(crate) async fn shutdown(self) {
        let provider = self.provider;
        // Blocks until the batch thread has exported, which needs the
        // runtime: off the async workers.
        let _ = tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(SHUTDOWN_FLUSH))
            .await;
        ENABLED.store(false, Ordering::Relaxed);
    }
}

/// The tracing layer that exports spans, when an endpoint is set.
pub(crate) fn start(app: &Section) -> Result<Option<(UserLayer, Export)>, Error> {
    let Some(endpoint) = endpoint(app) else {
        return Ok(None);
    };
    let client = OnRuntime {
        handle: tokio::runtime::Handle::current(),
        inner: opentelemetry_http::hyper::HyperClient::with_default_connector(EXPORT_TIMEOUT, None),
    };
    let mut builder = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_timeout(EXPORT_TIMEOUT);
    if let Some(endpoint) = endpoint {
        builder = builder.with_endpoint(endpoint);
    }
    let exporter = builder
        .build()
        .map_err(|e| Error::new(format!("cannot set up the OTLP exporter: {e}")))?;
    let service_name = std::env::var("OTEL_SERVICE_NAME")
        .ok()
        .filter(|n| !n.is_empty())
        .or_else(|| app.get("tracing.service_name").map(str::to_string))
        .unwrap_or_else(program_name);
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name(service_name).build())
        .build();
    let tracer = provider.tracer("baseplate");
    let layer: UserLayer = Box::new(tracing_opentelemetry::layer().with_tracer(tracer));
    ENABLED.store(true, Ordering::Relaxed);
    Ok(Some((layer, Export { provider })))
}

fn program_name() -> String {
    std::env::args_os()
        .next()
        .and_then(|a| {
            std::path::Path::new(&a)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "baseplate".to_string())
}

/// Parents `span` on the caller's span, when export is on and the caller
/// sent one: W3C `traceparent` first (as baseplate.py's propagators, where
/// it comes last and wins), else baseplate's trace headers, named with
/// `prefix` (`X-` over HTTP, nothing over THeader).
pub(crate) fn set_remote_parent<'a>(
    span: &tracing::Span,
    header: impl Fn(&str) -> Option<&'a str>,
    prefix: &str,
) {
    if !ENABLED.load(Ordering::Relaxed) {
        return;
    }
    if let Some(context) = remote_context(header, prefix) {
        let _ = span.set_parent(context);
    }
}

struct Headers<'a, F: Fn(&str) -> Option<&'a str>>(F);

impl<'a, F: Fn(&str) -> Option<&'a str>> Extractor for Headers<'a, F> {
    fn get(&self, key: &str) -> Option<&str> {
        (self.0)(key)
    }

    fn keys(&self) -> Vec<&str> {
        Vec::new()
    }
}

/// The caller's span, as a remote parent.
fn remote_context<'a>(header: impl Fn(&str) -> Option<&'a str>, prefix: &str) -> Option<Context> {
    let headers = Headers(header);
    let w3c = TraceContextPropagator::new().extract(&headers);
    if w3c.span().span_context().is_valid() {
        return Some(w3c);
    }
    let get = |name: &str| (headers.0)(&format!("{prefix}{name}"));
    let trace_id = parse_trace_id(get("Trace")?)?;
    let span_id = parse_span_id(get("Span")?)?;
    let sampled = get("Sampled").is_some_and(|s| s == "1");
    let context = SpanContext::new(
        trace_id,
        span_id,
        if sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        },
        true,
        TraceState::default(),
    );
    Some(Context::new().with_remote_span_context(context))
}

/// A baseplate trace id: a decimal 64-bit number (baseplate.py's), or up
/// to 32 hex digits.
fn parse_trace_id(text: &str) -> Option<TraceId> {
    let value = match text.parse::<u64>() {
        Ok(n) => u128::from(n),
        Err(_) if text.len() <= 32 => u128::from_str_radix(text, 16).ok()?,
        Err(_) => return None,
    };
    (value != 0).then(|| TraceId::from_bytes(value.to_be_bytes()))
}

/// A baseplate span id: a decimal 64-bit number, or up to 16 hex digits.
fn parse_span_id(text: &str) -> Option<SpanId> {
    let value = match text.parse::<u64>() {
        Ok(n) => n,
        Err(_) if text.len() <= 16 => u64::from_str_radix(text, 16).ok()?,
        Err(_) => return None,
    };
    (value != 0).then(|| SpanId::from_bytes(value.to_be_bytes()))
}

/// An HTTP client for the exporter whose requests run on the server's
/// runtime, whichever thread asks.
#[derive(Debug)]
struct OnRuntime {
    handle: tokio::runtime::Handle,
    inner: opentelemetry_http::hyper::HyperClient,
}

impl HttpClient for OnRuntime {
    fn send_bytes<'life0, 'async_trait>(
        &'life0 self,
        request: http::Request<Bytes>,
    ) -> Pin<Box<dyn Future<Output = Result<http::Response<Bytes>, HttpError>> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        let inner = self.inner.clone();
        let sent = self
            .handle
            .spawn(async move { inner.send_bytes(request).await });
        Box::pin(async move {
            match sent.await {
                Ok(result) => result,
                Err(e) => Err(format!("the export task failed: {e}").into()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(headers: &[(&str, &str)], prefix: &str) -> Option<SpanContext> {
        let get = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| *v)
        };
        remote_context(get, prefix).map(|c| c.span().span_context().clone())
    }

    #[test]
    fn the_callers_span_comes_from_traceparent_or_baseplate_headers() {
        let w3c = context(
            &[(
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            )],
            "",
        )
        .unwrap();
        assert_eq!(
            w3c.trace_id().to_string(),
            "0af7651916cd43dd8448eb211c80319c"
        );
        assert_eq!(w3c.span_id().to_string(), "b7ad6b7169203331");
        assert!(w3c.is_sampled() && w3c.is_remote());

        let baseplate = context(
            &[("X-Trace", "1234"), ("X-Span", "5678"), ("X-Sampled", "1")],
            "X-",
        )
        .unwrap();
        assert_eq!(baseplate.trace_id().to_string(), format!("{:032x}", 1234));
        assert_eq!(baseplate.span_id().to_string(), format!("{:016x}", 5678));
        assert!(baseplate.is_sampled());

        let thrift = context(&[("Trace", "abcdef"), ("Span", "ff")], "").unwrap();
        assert_eq!(thrift.trace_id().to_string(), format!("{:032x}", 0xabcdef));
        assert!(!thrift.is_sampled());

        assert!(context(&[("Trace", "1")], "").is_none(), "no span");
        assert!(context(&[("Trace", "zz"), ("Span", "1")], "").is_none());
        assert!(context(&[], "").is_none());
    }
}
