//! `baseplate.examples.thrift_async:make_service`: the same `Example`
//! service as [`super::thrift`], with async handlers (`sleep` awaits a
//! timer instead of blocking a thread).

use std::convert::Infallible;
use std::time::Duration;

use tracing::info;

use super::example_thrift::baseplate::IsHealthyRequest;
use super::example_thrift::{ExampleAsyncHandler, ExampleAsyncProcessor, ExampleFailError, Oops};
use super::thrift::MAX_SLEEP_MS;
use crate::config::AppConfig;
use crate::server::thrift::context::request_header;

/// The factory name to use in `[app:NAME] factory = ...`.
pub const NAME: &str = "baseplate.examples.thrift_async:make_service";

/// The async handlers behind the example service.
#[derive(Debug, Clone, Copy, Default)]
pub struct AsyncExampleHandler;

impl ExampleAsyncHandler for AsyncExampleHandler {
    /// Reached only with `health.answered_by = app`: the server answers
    /// probes itself by default.
    async fn handle_is_healthy(&self, _request: IsHealthyRequest) -> thrift::Result<bool> {
        Ok(true)
    }

    /// Echoes the message; `header:NAME` answers with the request's THeader
    /// info header NAME instead (empty if absent).
    async fn handle_echo(&self, message: String) -> thrift::Result<String> {
        match message.strip_prefix("header:") {
            Some(name) => Ok(request_header(name).unwrap_or_default()),
            None => Ok(message),
        }
    }

    async fn handle_sleep(&self, ms: i32) -> thrift::Result<()> {
        let ms = ms.clamp(0, MAX_SLEEP_MS);
        info!("sleeping for {ms} ms");
        tokio::time::sleep(Duration::from_millis(ms as u64)).await;
        Ok(())
    }

    async fn handle_add(&self, a: i32, b: i32) -> thrift::Result<i32> {
        Ok(a.wrapping_add(b))
    }

    /// Fails with the declared `Oops`, a value of its own type.
    async fn handle_fail(&self, message: String) -> Result<(), ExampleFailError> {
        Err(Oops::new(message).into())
    }

    async fn handle_fire(&self, note: String) -> thrift::Result<()> {
        info!("fired: {note}");
        Ok(())
    }

    /// Panics with `message`: the server answers INTERNAL_ERROR.
    async fn handle_crash(&self, message: String) -> thrift::Result<()> {
        panic!("crash requested: {message}");
    }
}

/// Builds the async example service.
pub fn make_service(
    _config: &AppConfig,
) -> Result<ExampleAsyncProcessor<AsyncExampleHandler>, Infallible> {
    Ok(ExampleAsyncProcessor::new(AsyncExampleHandler))
}
