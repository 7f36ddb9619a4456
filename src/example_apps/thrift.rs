//! `baseplate.examples.thrift:make_processor`: the `Example` service of
//! `fixtures/thrift/example.thrift`, for trying and testing the Thrift server.

use std::convert::Infallible;
use std::time::Duration;

use tracing::info;

use super::example_thrift::baseplate::{BaseplateServiceV2SyncHandler, IsHealthyRequest};
use super::example_thrift::{ExampleSyncHandler, ExampleSyncProcessor, Oops};
use crate::config::AppConfig;
use crate::server::thrift::context::request_header;

/// The factory name to use in `[app:NAME] factory = ...`.
pub const NAME: &str = "baseplate.examples.thrift:make_processor";

/// The longest `sleep` allowed, in milliseconds.
pub(crate) const MAX_SLEEP_MS: i32 = 600_000;

/// The handler behind the example processor.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExampleHandler;

/// `is_healthy`, inherited from baseplate.thrift's `BaseplateServiceV2`.
/// Reached only with `health.answered_by = app`: the server answers probes
/// itself by default.
impl BaseplateServiceV2SyncHandler for ExampleHandler {
    fn handle_is_healthy(&self, _request: IsHealthyRequest) -> thrift::Result<bool> {
        Ok(true)
    }
}

impl ExampleSyncHandler for ExampleHandler {
    /// Echoes the message; `header:NAME` answers with the request's THeader
    /// info header NAME instead (empty if absent).
    fn handle_echo(&self, message: String) -> thrift::Result<String> {
        match message.strip_prefix("header:") {
            Some(name) => Ok(request_header(name).unwrap_or_default()),
            None => Ok(message),
        }
    }

    fn handle_sleep(&self, ms: i32) -> thrift::Result<()> {
        let ms = ms.clamp(0, MAX_SLEEP_MS);
        info!("sleeping for {ms} ms");
        std::thread::sleep(Duration::from_millis(ms as u64));
        Ok(())
    }

    fn handle_add(&self, a: i32, b: i32) -> thrift::Result<i32> {
        Ok(a.wrapping_add(b))
    }

    fn handle_fail(&self, message: String) -> thrift::Result<()> {
        Err(thrift::Error::User(Box::new(Oops::new(message))))
    }

    fn handle_fire(&self, note: String) -> thrift::Result<()> {
        info!("fired: {note}");
        Ok(())
    }

    /// Panics with `message`: the server answers INTERNAL_ERROR.
    fn handle_crash(&self, message: String) -> thrift::Result<()> {
        panic!("crash requested: {message}");
    }
}

/// Builds the example processor.
pub fn make_processor(
    _config: &AppConfig,
) -> Result<ExampleSyncProcessor<ExampleHandler>, Infallible> {
    Ok(ExampleSyncProcessor::new(ExampleHandler))
}
