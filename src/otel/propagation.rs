//! The caller's span, as the parent of the server's: W3C `traceparent`,
//! else baseplate's `Trace`/`Span` headers.

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry::Context;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::enabled;

/// Puts the current span's context on `headers` as `traceparent` (and
/// `tracestate`), while spans are exported.
pub(crate) fn inject_traceparent(headers: &mut http::HeaderMap) {
    if !enabled() {
        return;
    }
    let context = tracing::Span::current().context();
    if !context.span().span_context().is_valid() {
        return;
    }
    TraceContextPropagator::new()
        .inject_context(&context, &mut opentelemetry_http::HeaderInjector(headers));
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
    if !enabled() {
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
