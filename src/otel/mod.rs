//! OpenTelemetry export (cargo feature `otel`): the server's spans (one
//! SERVER span per HTTP request and per Thrift call, named and described
//! by OpenTelemetry's semantic conventions) go out over OTLP when an
//! endpoint is set, each parented on the caller's span from W3C
//! `traceparent` or baseplate's `Trace`/`Span` headers.
//!
//! - [`exporter`]: where and how spans are sent (OTLP/HTTP, or gRPC with
//!   the `otel-grpc` feature), from the app section and `OTEL_*`.
//! - [`propagation`]: the caller's span as the parent.
//! - [`semconv`]: the conventions' names, statuses and attributes.

mod exporter;
mod propagation;
pub(crate) mod semconv;

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::Layer;

use crate::config::Section;
use crate::error::Error;
use crate::trace::UserLayer;

pub(crate) use propagation::{inject_traceparent, set_remote_parent};

/// Set once export is on: only then are callers' headers read for it, and
/// the spans only the exporter wants made.
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether spans are being exported.
pub(crate) fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Export under way: flushed and stopped by [`Export::shutdown`].
pub(crate) struct Export {
    provider: SdkTracerProvider,
    flush: Duration,
}

impl fmt::Debug for Export {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Export").finish_non_exhaustive()
    }
}

impl Export {
    /// Sends the spans still buffered (for at most `tracing.flush_timeout`)
    /// and stops.
    pub(crate) async fn shutdown(self) {
        let (provider, flush) = (self.provider, self.flush);
        // Blocks until the batch thread has exported, which needs the
        // runtime: off the async workers.
        let _ = tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(flush)).await;
        ENABLED.store(false, Ordering::Relaxed);
    }
}

/// `--check`: the tracing settings are valid (nothing is started).
pub(crate) fn check(app: &Section) -> Result<(), Error> {
    exporter::Settings::read(app, &|name| std::env::var(name).ok()).map(drop)
}

/// The tracing layer that exports spans, when an endpoint is set. A
/// setting that cannot be honoured (a protocol this build does not speak,
/// say) stops startup.
pub(crate) fn start(app: &Section) -> Result<Option<(UserLayer, Export)>, Error> {
    let Some(settings) = exporter::Settings::read(app, &|name| std::env::var(name).ok())? else {
        return Ok(None);
    };
    let exporter = settings.exporter()?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            Resource::builder()
                .with_service_name(settings.service_name.clone())
                .build(),
        )
        .build();
    let tracer = provider.tracer("baseplate");
    // The Thrift call's log span carries baseplate's fields for log lines;
    // its SERVER span is the one exported.
    let layer: UserLayer = Box::new(
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(filter_fn(|meta| !semconv::is_log_only(meta))),
    );
    ENABLED.store(true, Ordering::Relaxed);
    Ok(Some((
        layer,
        Export {
            provider,
            flush: settings.flush_timeout,
        },
    )))
}
