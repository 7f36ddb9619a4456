//! Thrift apps on the library, as tower services: a hand-written service
//! that shows what the server puts in each [`ThriftRequest`], and tower
//! layers that `handler = NAME` wraps around any Thrift app.
//!
//! ```text
//! cargo run --example thrift_service -- --bind :9090 my_service.ini
//! ```
//! with `my_service.ini`:
//! ```ini
//! [server:main]
//! factory = baseplate.server.thrift
//! handler = my_service.timeout
//!
//! [app:main]
//! factory = my_service:make_inspector
//! ```

use std::convert::Infallible;
use std::process::ExitCode;
use std::time::Duration;

use baseplate::server::thrift::{ThriftRequest, ThriftResponse};
use baseplate::{AppConfig, BoxError};
use thrift::protocol::{TFieldIdentifier, TStructIdentifier, TType};

/// Answers `echo` (of `fixtures/thrift/example.thrift`) with a description
/// of the call as the server read it; any other method gets UNKNOWN_METHOD.
async fn inspect(request: ThriftRequest) -> Result<ThriftResponse, BoxError> {
    if &*request.method != "echo" {
        return Ok(request.exception(thrift::ApplicationError::new(
            thrift::ApplicationErrorKind::UnknownMethod,
            format!("unknown method {}", request.method),
        )));
    }
    let trace = &request.trace;
    let text = format!(
        "method={} seq={} protocol={:?} trace={} parent={} span={} sampled={:?} user_agent={} deadline={}",
        request.method,
        request.seq_id,
        request.protocol,
        trace.trace_id,
        trace.parent_id.as_deref().unwrap_or("-"),
        trace.span_id.as_deref().unwrap_or("-"),
        trace.sampled,
        request.header("User-Agent").unwrap_or("-"),
        request
            .deadline
            .map_or("-".to_string(), |d| format!("{} ms ({})", d.timeout.as_millis(), d.source)),
    );
    // The example IDL's echo result: field 0, a string.
    let reply = request.reply(|o| {
        o.write_struct_begin(&TStructIdentifier::new("EchoResult"))?;
        o.write_field_begin(&TFieldIdentifier::new("success", TType::String, 0))?;
        o.write_string(&text)?;
        o.write_field_end()?;
        o.write_field_stop()?;
        o.write_struct_end()
    })?;
    Ok(reply)
}

fn main() -> ExitCode {
    baseplate::Serve::new()
        .with_examples()
        .thrift_service("my_service:make_inspector", |_config: &AppConfig| {
            Ok::<_, Infallible>(tower::service_fn(inspect))
        })
        // A tower layer for any Thrift app: `handler = my_service.timeout`.
        .thrift_layer(
            "my_service.timeout",
            tower::timeout::TimeoutLayer::new(Duration::from_millis(100)),
        )
        .main()
}
