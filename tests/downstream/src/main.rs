//! A user's service: an axum app, and the example IDL with sync and async
//! Thrift handlers, served by baseplate from the user's own binary.
//!
//! `src/example.rs` comes from one command:
//! `baseplate-thrift ../../fixtures/thrift/example.thrift -o src/example.rs`.

#[allow(clippy::all, dead_code, missing_docs)]
mod example;

use std::convert::Infallible;
use std::process::ExitCode;
use std::time::Duration;

use baseplate::AppConfig;
use example::{ExampleAsyncHandler, ExampleAsyncProcessor, ExampleSyncHandler, ExampleSyncProcessor, Oops};

/// Sync handlers: `sleep` blocks its thread.
struct Blocking;

impl ExampleSyncHandler for Blocking {
    fn handle_is_healthy(&self) -> thrift::Result<bool> {
        Ok(true)
    }
    fn handle_echo(&self, message: String) -> thrift::Result<String> {
        Ok(message)
    }
    fn handle_sleep(&self, ms: i32) -> thrift::Result<()> {
        println!("sleeping for {ms} ms");
        std::thread::sleep(Duration::from_millis(ms.max(0) as u64));
        Ok(())
    }
    fn handle_add(&self, a: i32, b: i32) -> thrift::Result<i32> {
        Ok(a.wrapping_add(b))
    }
    fn handle_fail(&self, message: String) -> thrift::Result<()> {
        Err(thrift::Error::User(Box::new(Oops::new(message))))
    }
    fn handle_fire(&self, _note: String) -> thrift::Result<()> {
        Ok(())
    }
    fn handle_crash(&self, message: String) -> thrift::Result<()> {
        panic!("crash requested: {message}")
    }
}

/// Async handlers: `sleep` awaits a timer.
struct Awaiting;

impl ExampleAsyncHandler for Awaiting {
    async fn handle_is_healthy(&self) -> thrift::Result<bool> {
        Ok(true)
    }
    async fn handle_echo(&self, message: String) -> thrift::Result<String> {
        Ok(message)
    }
    async fn handle_sleep(&self, ms: i32) -> thrift::Result<()> {
        println!("sleeping for {ms} ms");
        tokio::time::sleep(Duration::from_millis(ms.max(0) as u64)).await;
        Ok(())
    }
    async fn handle_add(&self, a: i32, b: i32) -> thrift::Result<i32> {
        Ok(a.wrapping_add(b))
    }
    async fn handle_fail(&self, message: String) -> thrift::Result<()> {
        Err(thrift::Error::User(Box::new(Oops::new(message))))
    }
    async fn handle_fire(&self, _note: String) -> thrift::Result<()> {
        Ok(())
    }
    async fn handle_crash(&self, message: String) -> thrift::Result<()> {
        panic!("crash requested: {message}")
    }
}

/// The HTTP app: `/` greets, `/sleep?ms=N` answers after N milliseconds
/// (the conformance kit's slow request).
fn make_http_app(_: &AppConfig) -> Result<axum::Router, Infallible> {
    use axum::extract::Query;
    use axum::routing::get;

    #[derive(serde::Deserialize)]
    struct Sleep {
        ms: u64,
    }

    Ok(axum::Router::new()
        .route("/", get(|| async { "hello from downstream\n" }))
        .route(
            "/sleep",
            get(|Query(sleep): Query<Sleep>| async move {
                tokio::time::sleep(Duration::from_millis(sleep.ms)).await;
                "slept\n"
            }),
        ))
}

fn main() -> ExitCode {
    baseplate::Serve::new()
        .http_app("downstream.web:make_app", make_http_app)
        .thrift_app("downstream:make_processor", |_: &AppConfig| {
            Ok::<_, Infallible>(ExampleSyncProcessor::new(Blocking))
        })
        .thrift_service("downstream:make_service", |_: &AppConfig| {
            Ok::<_, Infallible>(ExampleAsyncProcessor::new(Awaiting))
        })
        .main()
}
