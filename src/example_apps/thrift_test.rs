//! `baseplate.examples.thrift_test:make_service`: Apache Thrift's
//! cross-language test service (`fixtures/thrift/thrift_test.thrift`),
//! `ThriftTest` as the default service with `SecondService` multiplexed
//! beside it, with async handlers that answer as Apache's reference
//! servers do. Apache's test clients in any language check every method
//! against it (`tests/thrift_cross_language.rs` runs Python's).

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::time::Duration;

use thrift::OrderedFloat;
use tracing::info;

use super::thrift_test_thrift::{
    Insanity, Numberz, SecondServiceAsyncHandler, SecondServiceAsyncProcessor,
    ThriftTestAsyncHandler, ThriftTestAsyncProcessor, ThriftTestTestExceptionError,
    ThriftTestTestMultiExceptionError, UserId, Xception, Xception2, Xtruct, Xtruct2,
};
use crate::config::AppConfig;
use crate::server::thrift::Multiplexed;

/// The factory name to use in `[app:NAME] factory = ...`.
pub const NAME: &str = "baseplate.examples.thrift_test:make_service";

/// The longest `testOneway` sleep, in seconds.
const MAX_ONEWAY_SECONDS: i32 = 60;

/// The `ThriftTest` handlers: most echo their argument.
#[derive(Debug, Clone, Copy, Default)]
pub struct ThriftTestHandler;

impl ThriftTestAsyncHandler for ThriftTestHandler {
    async fn handle_test_void(&self) -> thrift::Result<()> {
        Ok(())
    }
    async fn handle_test_string(&self, thing: String) -> thrift::Result<String> {
        Ok(thing)
    }
    async fn handle_test_bool(&self, thing: bool) -> thrift::Result<bool> {
        Ok(thing)
    }
    async fn handle_test_byte(&self, thing: i8) -> thrift::Result<i8> {
        Ok(thing)
    }
    async fn handle_test_i32(&self, thing: i32) -> thrift::Result<i32> {
        Ok(thing)
    }
    async fn handle_test_i64(&self, thing: i64) -> thrift::Result<i64> {
        Ok(thing)
    }
    async fn handle_test_double(
        &self,
        thing: OrderedFloat<f64>,
    ) -> thrift::Result<OrderedFloat<f64>> {
        Ok(thing)
    }
    async fn handle_test_binary(&self, thing: Vec<u8>) -> thrift::Result<Vec<u8>> {
        Ok(thing)
    }
    async fn handle_test_struct(&self, thing: Xtruct) -> thrift::Result<Xtruct> {
        Ok(thing)
    }
    async fn handle_test_nest(&self, thing: Xtruct2) -> thrift::Result<Xtruct2> {
        Ok(thing)
    }
    async fn handle_test_map(
        &self,
        thing: BTreeMap<i32, i32>,
    ) -> thrift::Result<BTreeMap<i32, i32>> {
        Ok(thing)
    }
    async fn handle_test_string_map(
        &self,
        thing: BTreeMap<String, String>,
    ) -> thrift::Result<BTreeMap<String, String>> {
        Ok(thing)
    }
    async fn handle_test_set(&self, thing: BTreeSet<i32>) -> thrift::Result<BTreeSet<i32>> {
        Ok(thing)
    }
    async fn handle_test_list(&self, thing: Vec<i32>) -> thrift::Result<Vec<i32>> {
        Ok(thing)
    }
    async fn handle_test_enum(&self, thing: Numberz) -> thrift::Result<Numberz> {
        Ok(thing)
    }
    async fn handle_test_typedef(&self, thing: UserId) -> thrift::Result<UserId> {
        Ok(thing)
    }

    /// `{-4: {-4: -4, ..., -1: -1}, 4: {1: 1, ..., 4: 4}}`, whatever `hello`.
    async fn handle_test_map_map(
        &self,
        _hello: i32,
    ) -> thrift::Result<BTreeMap<i32, BTreeMap<i32, i32>>> {
        let negative = (-4..=-1).map(|n| (n, n)).collect();
        let positive = (1..=4).map(|n| (n, n)).collect();
        Ok(BTreeMap::from([(-4, negative), (4, positive)]))
    }

    /// `{1: {TWO: argument, THREE: argument}, 2: {SIX: empty Insanity}}`
    /// (empty: no field set, where `Insanity::default()` would set both).
    async fn handle_test_insanity(
        &self,
        argument: Insanity,
    ) -> thrift::Result<BTreeMap<UserId, BTreeMap<Numberz, Insanity>>> {
        let first = BTreeMap::from([(Numberz::TWO, argument.clone()), (Numberz::THREE, argument)]);
        let empty = Insanity {
            user_map: None,
            xtructs: None,
        };
        let second = BTreeMap::from([(Numberz::SIX, empty)]);
        Ok(BTreeMap::from([(1, first), (2, second)]))
    }

    /// An `Xtruct` of `"Hello2"` and the first three arguments.
    async fn handle_test_multi(
        &self,
        arg0: i8,
        arg1: i32,
        arg2: i64,
        _arg3: BTreeMap<i16, String>,
        _arg4: Numberz,
        _arg5: UserId,
    ) -> thrift::Result<Xtruct> {
        Ok(Xtruct::new("Hello2".to_string(), arg0, arg1, arg2))
    }

    /// `"Xception"` raises `Xception(1001, arg)`, `"TException"` an
    /// undeclared error (an application exception on the wire), anything
    /// else returns.
    async fn handle_test_exception(&self, arg: String) -> Result<(), ThriftTestTestExceptionError> {
        match arg.as_str() {
            "Xception" => Err(ThriftTestTestExceptionError::Err1(Xception::new(1001, arg))),
            "TException" => Err(ThriftTestTestExceptionError::Other(thrift::Error::from(
                "testException: TException requested",
            ))),
            _ => Ok(()),
        }
    }

    /// `"Xception"` and `"Xception2"` raise those; anything else returns an
    /// `Xtruct` holding `arg1`.
    async fn handle_test_multi_exception(
        &self,
        arg0: String,
        arg1: String,
    ) -> Result<Xtruct, ThriftTestTestMultiExceptionError> {
        match arg0.as_str() {
            "Xception" => Err(Xception::new(1001, "This is an Xception".to_string()).into()),
            "Xception2" => {
                let thing = only_string_thing("This is an Xception2".to_string());
                Err(Xception2::new(2002, thing).into())
            }
            _ => Ok(only_string_thing(arg1)),
        }
    }

    /// Sleeps, after the caller has moved on (it gets no reply).
    async fn handle_test_oneway(&self, seconds_to_sleep: i32) -> thrift::Result<()> {
        let seconds = seconds_to_sleep.clamp(0, MAX_ONEWAY_SECONDS);
        info!("testOneway: sleeping {seconds} s");
        tokio::time::sleep(Duration::from_secs(seconds as u64)).await;
        Ok(())
    }
}

/// An `Xtruct` with only `string_thing` set (`Xtruct::default()` would set
/// every field to zero).
fn only_string_thing(text: String) -> Xtruct {
    Xtruct::new(text, None, None, None)
}

/// The `SecondService` handlers.
#[derive(Debug, Clone, Copy, Default)]
pub struct SecondHandler;

impl SecondServiceAsyncHandler for SecondHandler {
    async fn handle_blah_blah(&self) -> thrift::Result<()> {
        Ok(())
    }

    /// `testString("THING")`, as the reference servers answer.
    async fn handle_secondtest_string(&self, thing: String) -> thrift::Result<String> {
        Ok(format!("testString(\"{thing}\")"))
    }
}

/// Builds the app: `ThriftTest` (also for plain method names) and
/// `SecondService`, multiplexed.
pub fn make_service(_config: &AppConfig) -> Result<Multiplexed, Infallible> {
    Ok(Multiplexed::new()
        .default_service(
            "ThriftTest",
            ThriftTestAsyncProcessor::new(ThriftTestHandler),
        )
        .service(
            "SecondService",
            SecondServiceAsyncProcessor::new(SecondHandler),
        ))
}
