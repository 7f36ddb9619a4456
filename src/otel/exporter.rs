//! Where spans go and how: the endpoint, the OTLP protocol, the service
//! name and the flush budget at shutdown, from the app section and the
//! standard `OTEL_*` variables; and the exporter built from them.
//!
//! The exporter's requests run on the server's tokio runtime: the SDK's
//! batch processor exports from a thread of its own and hands each request
//! to the runtime ([`OnRuntime`] for HTTP; tonic's channel spawns its
//! worker on the runtime it is built in).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use opentelemetry_http::{HttpClient, HttpError};
use opentelemetry_otlp::{SpanExporter, WithExportConfig, WithHttpConfig};

use crate::config::values::parse_timespan;
use crate::config::Section;
use crate::error::Error;

/// How long the last spans may take to leave at shutdown unless
/// `tracing.flush_timeout` says otherwise. baseplate.py's exporter retried
/// for a minute against a missing collector; a shutdown must not wait on
/// telemetry.
pub(super) const DEFAULT_FLUSH: Duration = Duration::from_secs(5);

/// How long one export request may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether this build speaks OTLP over gRPC.
const GRPC_BUILT: bool = cfg!(feature = "otel-grpc");

/// An OTLP transport, as `OTEL_EXPORTER_OTLP_PROTOCOL` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Protocol {
    /// `grpc` (feature `otel-grpc`): the Collector's port 4317.
    Grpc,
    /// `http/protobuf`, the default: port 4318.
    HttpProtobuf,
    /// `http/json`: port 4318.
    HttpJson,
}

impl Protocol {
    const NAMES: &'static str = "grpc, http/protobuf or http/json";

    fn parse(text: &str) -> Option<Protocol> {
        match text.trim() {
            "grpc" => Some(Protocol::Grpc),
            "http/protobuf" => Some(Protocol::HttpProtobuf),
            "http/json" => Some(Protocol::HttpJson),
            _ => None,
        }
    }
}

/// What the exporter is built from.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Settings {
    pub protocol: Protocol,
    /// `tracing.endpoint`, made a traces URL for HTTP; `None`: the exporter
    /// reads `OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT` itself.
    pub endpoint: Option<String>,
    pub service_name: String,
    pub flush_timeout: Duration,
}

impl Settings {
    /// The settings, or `None` when export is off: no endpoint is set
    /// (`tracing.endpoint`, `OTEL_EXPORTER_OTLP_ENDPOINT` or
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`), or `OTEL_SDK_DISABLED=true`.
    /// `env` reads a variable.
    pub(super) fn read(
        app: &Section,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<Settings>, Error> {
        let set = |name: &str| env(name).filter(|v| !v.is_empty());
        if set("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        let configured = app.get("tracing.endpoint").filter(|v| !v.is_empty());
        if configured.is_none()
            && set("OTEL_EXPORTER_OTLP_ENDPOINT").is_none()
            && set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_none()
        {
            return Ok(None);
        }
        let protocol = protocol(app, &set, GRPC_BUILT)?;
        let flush_timeout = match app.get("tracing.flush_timeout") {
            Some(text) => parse_timespan(text)
                .map_err(|e| Error::from(app.error("tracing.flush_timeout", e)))?,
            None => DEFAULT_FLUSH,
        };
        Ok(Some(Settings {
            protocol,
            endpoint: configured.map(|base| traces_url(base, protocol)),
            service_name: set("OTEL_SERVICE_NAME")
                .or_else(|| app.get("tracing.service_name").map(str::to_string))
                .unwrap_or_else(program_name),
            flush_timeout,
        }))
    }

    /// The exporter these settings describe.
    pub(super) fn exporter(&self) -> Result<SpanExporter, Error> {
        let built = match self.protocol {
            Protocol::Grpc => self.grpc_exporter(),
            Protocol::HttpProtobuf | Protocol::HttpJson => self.http_exporter(),
        };
        built.map_err(|e| Error::new(format!("cannot set up the OTLP exporter: {e}")))
    }

    fn http_exporter(&self) -> Result<SpanExporter, opentelemetry_otlp::ExporterBuildError> {
        let client = OnRuntime {
            handle: tokio::runtime::Handle::current(),
            inner: opentelemetry_http::hyper::HyperClient::with_default_connector(
                EXPORT_TIMEOUT,
                None,
            ),
        };
        let protocol = match self.protocol {
            Protocol::HttpJson => opentelemetry_otlp::Protocol::HttpJson,
            _ => opentelemetry_otlp::Protocol::HttpBinary,
        };
        let mut builder = SpanExporter::builder()
            .with_http()
            .with_http_client(client)
            .with_protocol(protocol)
            .with_timeout(EXPORT_TIMEOUT);
        if let Some(endpoint) = &self.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        builder.build()
    }

    #[cfg(feature = "otel-grpc")]
    fn grpc_exporter(&self) -> Result<SpanExporter, opentelemetry_otlp::ExporterBuildError> {
        let mut builder = SpanExporter::builder()
            .with_tonic()
            .with_timeout(EXPORT_TIMEOUT);
        if let Some(endpoint) = &self.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        builder.build()
    }

    #[cfg(not(feature = "otel-grpc"))]
    fn grpc_exporter(&self) -> Result<SpanExporter, opentelemetry_otlp::ExporterBuildError> {
        // `protocol` refuses gRPC in a build without it.
        self.http_exporter()
    }
}

/// The protocol: `tracing.protocol` in the app section, else
/// `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`, else `OTEL_EXPORTER_OTLP_PROTOCOL`,
/// else `http/protobuf`. One this build cannot speak is an error, never
/// ignored.
fn protocol(
    app: &Section,
    env: &dyn Fn(&str) -> Option<String>,
    grpc_built: bool,
) -> Result<Protocol, Error> {
    let (text, from_config) = match app.get("tracing.protocol").filter(|v| !v.is_empty()) {
        Some(text) => (text.to_string(), None),
        None => match env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            .map(|v| (v, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"))
            .or_else(|| {
                env("OTEL_EXPORTER_OTLP_PROTOCOL").map(|v| (v, "OTEL_EXPORTER_OTLP_PROTOCOL"))
            }) {
            Some((text, variable)) => (text, Some(variable)),
            None => return Ok(Protocol::HttpProtobuf),
        },
    };
    let fail = |message: String| -> Error {
        match from_config {
            None => app.error("tracing.protocol", message).into(),
            Some(variable) => Error::new(format!("{variable}={text:?}: {message}")),
        }
    };
    let protocol = Protocol::parse(&text).ok_or_else(|| {
        fail(format!(
            "{text:?} is not an OTLP protocol; expected {}",
            Protocol::NAMES
        ))
    })?;
    if protocol == Protocol::Grpc && !grpc_built {
        return Err(fail(
            "OTLP over gRPC needs baseplate-serve's `otel-grpc` cargo feature, which this build \
             lacks (it speaks http/protobuf and http/json); build with `features = [\"otel-grpc\"]` \
             or choose http/protobuf (the collector's port 4318)"
                .to_string(),
        ));
    }
    Ok(protocol)
}

/// `tracing.endpoint` as the exporter takes it: a base URL, to which OTLP/HTTP
/// adds `/v1/traces` (as `OTEL_EXPORTER_OTLP_ENDPOINT`); gRPC takes it as is.
fn traces_url(base: &str, protocol: Protocol) -> String {
    let base = base.trim_end_matches('/');
    if protocol == Protocol::Grpc || base.ends_with("/v1/traces") {
        base.to_string()
    } else {
        format!("{base}/v1/traces")
    }
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
    use crate::config::Entry;

    fn section(entries: &[(&str, &str)]) -> Section {
        let entries = entries
            .iter()
            .enumerate()
            .map(|(i, (key, value))| Entry {
                key: key.to_string(),
                value: value.to_string(),
                line: i + 2,
                inherited: false,
            })
            .collect();
        Section::new("app.ini", "app:main", entries)
    }

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn the_protocol_comes_from_the_ini_then_the_traces_variable_then_the_general_one() {
        let none = section(&[]);
        assert_eq!(
            protocol(&none, &env(&[]), true).unwrap(),
            Protocol::HttpProtobuf
        );
        let both = [
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc"),
        ];
        assert_eq!(protocol(&none, &env(&both), true).unwrap(), Protocol::Grpc);
        assert_eq!(
            protocol(&none, &env(&both[..1]), true).unwrap(),
            Protocol::HttpJson
        );
        let ini = section(&[("tracing.protocol", "http/protobuf")]);
        assert_eq!(
            protocol(&ini, &env(&both), true).unwrap(),
            Protocol::HttpProtobuf
        );
    }

    /// The error `protocol` gives, as the user reads it.
    fn refusal(app: &Section, vars: &[(&str, &str)], grpc_built: bool) -> String {
        match protocol(app, &env(vars), grpc_built) {
            Ok(p) => panic!("{p:?} accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_protocol_the_build_cannot_speak_names_the_feature_and_where_it_was_asked() {
        let error = refusal(&section(&[("tracing.protocol", "grpc")]), &[], false);
        assert!(error.contains("app.ini:2"), "{error}");
        assert!(error.contains("tracing.protocol"), "{error}");
        assert!(error.contains("`otel-grpc` cargo feature"), "{error}");
        let error = refusal(
            &section(&[]),
            &[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")],
            false,
        );
        assert!(
            error.starts_with("OTEL_EXPORTER_OTLP_PROTOCOL=\"grpc\": "),
            "{error}"
        );
        let error = refusal(
            &section(&[]),
            &[("OTEL_EXPORTER_OTLP_PROTOCOL", "thrift")],
            true,
        );
        assert!(
            error.contains(
                "\"thrift\" is not an OTLP protocol; expected grpc, http/protobuf or http/json"
            ),
            "{error}"
        );
    }

    #[test]
    fn settings_are_read_only_with_an_endpoint_and_flush_budget_is_a_timespan() {
        assert_eq!(Settings::read(&section(&[]), &env(&[])).unwrap(), None);
        let on = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")];
        let off = [on[0], ("OTEL_SDK_DISABLED", "true")];
        assert_eq!(Settings::read(&section(&[]), &env(&off)).unwrap(), None);
        let settings = Settings::read(
            &section(&[("tracing.flush_timeout", "2 seconds")]),
            &env(&on),
        )
        .unwrap()
        .unwrap();
        assert_eq!(settings.flush_timeout, Duration::from_secs(2));
        assert_eq!(settings.endpoint, None);
        let error = Settings::read(&section(&[("tracing.flush_timeout", "soon")]), &env(&on))
            .unwrap_err()
            .to_string();
        assert!(error.contains("tracing.flush_timeout"), "{error}");
        let grpc = section(&[
            ("tracing.endpoint", "http://c:4317/"),
            ("tracing.protocol", "grpc"),
        ]);
        if GRPC_BUILT {
            let settings = Settings::read(&grpc, &env(&[])).unwrap().unwrap();
            assert_eq!(settings.endpoint.as_deref(), Some("http://c:4317"));
        }
        let http = section(&[("tracing.endpoint", "http://c:4318")]);
        let settings = Settings::read(&http, &env(&[])).unwrap().unwrap();
        assert_eq!(
            settings.endpoint.as_deref(),
            Some("http://c:4318/v1/traces")
        );
    }
}
