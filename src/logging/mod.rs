//! Logging to stdout with tracing: human-readable lines on a terminal, JSON
//! lines otherwise. Every line carries the pid, and lines logged while a
//! request is handled carry its trace id (from the request's span). A
//! `[loggers]` section in the config file overrides levels, stream and
//! format ([`file_config`]).

pub(crate) mod file_config;

use std::fmt::{self, Write as _};
use std::io::IsTerminal;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::error::Error;
use file_config::{FileLogging, Format, Output};
use tracing_subscriber::filter::{filter_fn, FilterExt, LevelFilter};
use tracing_subscriber::fmt::writer::BoxMakeWriter;

/// The default filter: INFO, or DEBUG for everything but the HTTP stack's
/// internals with `--debug`.
fn default_filter(debug: bool) -> &'static str {
    if debug {
        // Directives match target prefixes: `tower=info` alone would also
        // quiet tower_http (its TraceLayer logs at DEBUG).
        "debug,hyper=info,hyper_util=info,h2=info,tower=info,tower_http=debug,mio=info"
    } else {
        "info"
    }
}

pub(crate) use crate::trace::UserLayer;

/// Installs the global subscriber: the program's own layers, then
/// baseplate's filter and line format. Levels come from `RUST_LOG` when it
/// is set, else from the file's `[loggers]` override, else from `--debug`;
/// they apply to every layer.
pub(crate) fn init(
    debug: bool,
    file: Option<&FileLogging>,
    user_layers: Vec<UserLayer>,
) -> Result<(), Error> {
    // A run after a restart that could not exec serves in the same
    // process: its subscriber is already there.
    static INSTALLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if INSTALLED.load(std::sync::atomic::Ordering::Relaxed) {
        return Ok(());
    }
    let installed = subscriber(debug, file, user_layers)?.try_init().is_ok();
    INSTALLED.store(true, std::sync::atomic::Ordering::Relaxed);
    if !installed {
        // The program installed a subscriber of its own first: it stays.
        tracing::warn!(
            "a global tracing subscriber was already installed, so baseplate's log format, \
             --debug, RUST_LOG and [loggers] do not apply; to keep them, add your layers \
             with Serve::tracing_layer instead of installing a subscriber"
        );
    }
    Ok(())
}

/// The subscriber [`init`] installs.
fn subscriber(
    debug: bool,
    file: Option<&FileLogging>,
    user_layers: Vec<UserLayer>,
) -> Result<Box<dyn Subscriber + Send + Sync>, Error> {
    let to_stderr = file.is_some_and(|f| f.output == Output::Stderr);
    let json = match file.and_then(|f| f.format) {
        Some(format) => format == Format::Json,
        None if to_stderr => !std::io::stderr().is_terminal(),
        None => !std::io::stdout().is_terminal(),
    };
    let format = LineFormat {
        json,
        pid: std::process::id(),
    };
    let writer = if to_stderr {
        BoxMakeWriter::new(std::io::stderr)
    } else {
        BoxMakeWriter::new(std::io::stdout)
    };
    let handler_level = file
        .and_then(|f| f.handler_level)
        .unwrap_or(LevelFilter::TRACE);
    // The program's layers, when it has any. Not as an `Option` layer: a
    // `None` between `ours` and the registry turns the request span's
    // "never" into "sometimes", creating it for nobody (and an empty Vec of
    // layers would turn every event off).
    Ok(if user_layers.is_empty() {
        let ours = our_layer(levels(debug, file)?, format, writer, handler_level);
        Box::new(tracing_subscriber::registry().with(ours)) as Box<dyn Subscriber + Send + Sync>
    } else {
        // The server's spans (an HTTP request's, a Thrift call's) reach the
        // program's layers at any level: the levels choose log lines and
        // the app's own spans, not what a tracing backend sees.
        let theirs = user_layers
            .with_filter(levels(debug, file)?.or(filter_fn(crate::trace::is_export_only)));
        let ours = our_layer(levels(debug, file)?, format, writer, handler_level);
        Box::new(tracing_subscriber::registry().with(theirs).with(ours))
    })
}

/// baseplate's own lines: the span fields they print, the line format and
/// one filter, per layer, so that a span no layer wants is never created.
/// Baseplate's lines do not want the HTTP request span (its trace id comes
/// from the task-local): without a layer of the program's, a request pays
/// nothing for it. The `[loggers]` handler level is for lines only; spans
/// carry the trace id to lines of any level.
fn our_layer<S>(
    levels: EnvFilter,
    format: LineFormat,
    writer: BoxMakeWriter,
    handler_level: LevelFilter,
) -> impl Layer<S> + Send + Sync
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let output = tracing_subscriber::fmt::layer()
        .fmt_fields(NoFields)
        .event_format(format)
        .with_writer(writer);
    SpanFields::layer()
        .and_then(output)
        .with_filter(levels.and(filter_fn(move |meta| {
            !crate::trace::is_export_only(meta)
                && (meta.is_span() || *meta.level() <= handler_level)
        })))
}

/// The levels: `RUST_LOG` when it is set, else the file's `[loggers]`
/// override, else INFO (DEBUG with `--debug`).
fn levels(debug: bool, file: Option<&FileLogging>) -> Result<EnvFilter, Error> {
    Ok(match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.is_empty() => EnvFilter::try_new(&spec)
            .map_err(|e| Error::new(format!("RUST_LOG={spec:?} is not a valid log filter: {e}")))?,
        _ => match file {
            Some(file) => EnvFilter::try_new(&file.directives).map_err(|e| {
                Error::new(format!("the [loggers] levels do not make a filter: {e}"))
            })?,
            None => EnvFilter::new(default_filter(debug)),
        },
    })
}

/// A recorded field value: text, or a JSON literal (numbers, booleans).
#[derive(Clone)]
enum Value {
    Text(String),
    Literal(String),
}

#[derive(Default)]
struct Fields {
    message: String,
    rest: Vec<(&'static str, Value)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else {
            self.rest
                .push((field.name(), Value::Text(value.to_string())));
        }
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.rest
            .push((field.name(), Value::Literal(value.to_string())));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.rest
            .push((field.name(), Value::Literal(value.to_string())));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.rest
            .push((field.name(), Value::Literal(value.to_string())));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            self.rest
                .push((field.name(), Value::Text(format!("{value:?}"))));
        }
    }
}

/// The fmt layer's own field formatting, turned off: it would format every
/// span's fields into a string on creation, and [`LineFormat`] reads the
/// fields from [`SpanFields`] instead.
struct NoFields;

impl<'writer> FormatFields<'writer> for NoFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        _writer: Writer<'writer>,
        _fields: R,
    ) -> fmt::Result {
        Ok(())
    }
}

/// A span's fields, kept in the span's extensions for the formatter.
struct SpanFields(Vec<(&'static str, Value)>);

impl SpanFields {
    fn layer() -> SpanFieldsLayer {
        SpanFieldsLayer
    }
}

struct SpanFieldsLayer;

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for SpanFieldsLayer {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(fields.rest));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        values.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            if let Some(existing) = span.extensions_mut().get_mut::<SpanFields>() {
                existing.0.extend(fields.rest);
            }
        }
    }
}

struct LineFormat {
    json: bool,
    pid: u32,
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_string())
}

impl<S, N> FormatEvent<S, N> for LineFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut all: Vec<(&'static str, Value)> = Vec::new();
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                if let Some(span_fields) = span.extensions().get::<SpanFields>() {
                    all.extend(span_fields.0.iter().cloned());
                }
            }
        }
        all.extend(fields.rest);
        if !all.iter().any(|(name, _)| *name == "trace_id") {
            if let Some(id) = crate::trace::current() {
                all.push(("trace_id", Value::Text(id.to_string())));
            }
        }
        let mut timestamp = String::new();
        SystemTime.format_time(&mut Writer::new(&mut timestamp))?;
        let meta = event.metadata();
        let mut line = String::with_capacity(160);
        if self.json {
            write!(
                line,
                "{{\"timestamp\":{},\"level\":\"{}\",\"pid\":{},\"target\":{},\"message\":{}",
                json_string(&timestamp),
                meta.level(),
                self.pid,
                json_string(meta.target()),
                json_string(&fields.message)
            )?;
            for (name, value) in &all {
                match value {
                    Value::Text(t) => write!(line, ",{}:{}", json_string(name), json_string(t))?,
                    Value::Literal(l) => write!(line, ",{}:{}", json_string(name), l)?,
                }
            }
            line.push('}');
        } else {
            let level = match *meta.level() {
                Level::ERROR => "ERROR",
                Level::WARN => "WARN ",
                Level::INFO => "INFO ",
                Level::DEBUG => "DEBUG",
                Level::TRACE => "TRACE",
            };
            write!(
                line,
                "{timestamp} {level} [{}] {}",
                self.pid, fields.message
            )?;
            for (name, value) in &all {
                match value {
                    Value::Text(t) | Value::Literal(t) => write!(line, " {name}={t}")?,
                }
            }
        }
        writeln!(writer, "{line}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether a request span is created under `subscriber`: the span
    /// macro at the server's target and name.
    fn request_span_enabled(subscriber: impl Subscriber + Send + Sync + 'static) -> bool {
        // A callsite's interest is the union over the live subscribers: one
        // at a time, as in a server, or the other test's interest leaks in.
        static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        tracing::subscriber::with_default(subscriber, || {
            !tracing::info_span!(target: "baseplate::server::http", "request").is_disabled()
        })
    }

    #[test]
    fn no_request_span_without_a_layer_that_wants_it() {
        assert!(!request_span_enabled(
            subscriber(false, None, Vec::new()).unwrap()
        ));
        assert!(!request_span_enabled(
            subscriber(true, None, Vec::new()).unwrap()
        ));
    }

    #[test]
    fn a_program_layer_gets_the_request_span() {
        let theirs: Vec<UserLayer> = vec![Box::new(tracing_subscriber::layer::Identity::new())];
        assert!(request_span_enabled(
            subscriber(false, None, theirs).unwrap()
        ));
    }
}
