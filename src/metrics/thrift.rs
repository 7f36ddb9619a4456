//! Thrift call metrics: each method's series looked up once per call
//! ([`MethodSeries`]), and what the call came to, for
//! `thrift_server_requests_total`: success, or the exception's type and
//! baseplate code. The wire carries no type
//! names, but every processor writes its reply through a
//! `TOutputProtocol`, naming each struct as it goes, so [`Recorder`] reads
//! them off the writes: a result struct whose field is not `0` (success)
//! is a declared exception, the next struct begun is its type, and an
//! `i32` field 1 named `code` in it is baseplate.thrift's `Error.code`.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use thrift::protocol::{
    TFieldIdentifier, TListIdentifier, TMapIdentifier, TMessageIdentifier, TMessageType,
    TOutputProtocol, TSetIdentifier, TStructIdentifier, TType,
};

use super::names;
use super::store::Slots;
use super::{observe, Metrics};

/// The most distinct `thrift_method` values. Only names the app answered
/// get a label of their own (see [`Metrics::thrift_method_answered`]), so
/// this bounds only an app that answers any name; later names are
/// `unknown`.
pub(crate) const MAX_THRIFT_METHODS: usize = 1000;

/// The `thrift_method` of a call whose method the app does not know (it
/// answered `UNKNOWN_METHOD`, or has never answered that name itself).
pub(crate) const UNKNOWN_METHOD: &str = "unknown";

/// Every method's series.
#[derive(Default)]
pub(crate) struct ThriftSeries {
    /// The names the app has answered itself.
    methods: RwLock<HashMap<Box<str>, Arc<MethodSeries>>>,
    /// Every other name.
    unknown: OnceLock<Arc<MethodSeries>>,
}

/// The series of one method, looked up once per call.
pub(crate) struct MethodSeries {
    method: Box<str>,
    active: Option<Slots>,
    /// By success (`true` first), each made on first use.
    latency: [OnceLock<Option<Slots>>; 2],
    /// `thrift_server_requests_total` of successful calls.
    succeeded: OnceLock<Option<Slots>>,
    /// ... and of each exception raised.
    failed: RwLock<Vec<(RaisedException, Slots)>>,
}

impl MethodSeries {
    fn new(metrics: &Metrics, method: &str) -> MethodSeries {
        MethodSeries {
            method: method.into(),
            active: metrics.series(&names::THRIFT_ACTIVE, &[method]),
            latency: Default::default(),
            succeeded: OnceLock::new(),
            failed: RwLock::default(),
        }
    }

    /// The `thrift_method` label.
    #[cfg(test)]
    pub(crate) fn method(&self) -> &str {
        &self.method
    }

    /// Counts a call that ended so, `latency` after it began.
    pub(crate) fn record(&self, metrics: &Metrics, outcome: &CallOutcome, latency: Duration) {
        let requests = match &outcome.exception {
            None => self
                .succeeded
                .get_or_init(|| {
                    metrics.series(&names::THRIFT_REQUESTS, &[&self.method, "true", "", "", ""])
                })
                .clone(),
            Some(exception) => self.failed_series(metrics, exception),
        };
        if let Some(requests) = requests {
            requests.add(0, 1);
        }
        let success = outcome.exception.is_none();
        let latency_slots = self.latency[usize::from(!success)].get_or_init(|| {
            metrics.series(
                &names::THRIFT_LATENCY,
                &[&self.method, if success { "true" } else { "false" }],
            )
        });
        if let Some(slots) = latency_slots {
            observe(
                slots,
                names::LATENCY_BUCKETS,
                latency.as_secs_f64(),
                latency.as_nanos() as u64,
            );
        }
    }

    fn failed_series(&self, metrics: &Metrics, exception: &RaisedException) -> Option<Slots> {
        let find = |failed: &[(RaisedException, Slots)]| {
            failed
                .iter()
                .find(|(e, _)| e == exception)
                .map(|(_, slots)| slots.clone())
        };
        if let Some(slots) = find(&self.failed.read().unwrap_or_else(|e| e.into_inner())) {
            return Some(slots);
        }
        let mut failed = self.failed.write().unwrap_or_else(|e| e.into_inner());
        if let Some(slots) = find(&failed) {
            return Some(slots);
        }
        let code = exception.code.map(|c| c.to_string()).unwrap_or_default();
        let status = exception.code.and_then(error_code_name).unwrap_or("");
        let slots = metrics.series(
            &names::THRIFT_REQUESTS,
            &[&self.method, "false", &exception.type_name, status, &code],
        )?;
        failed.push((exception.clone(), slots.clone()));
        Some(slots)
    }
}

/// A call counted as active (`thrift_server_active_requests`, and the
/// server's in-flight gauge) until this is dropped, also when the call's
/// future is dropped before it ends (its client left).
pub(crate) struct ActiveCall<'a> {
    metrics: &'a Metrics,
    series: Arc<MethodSeries>,
}

impl ActiveCall<'_> {
    /// The series the call counts as active under.
    pub(crate) fn series(&self) -> &MethodSeries {
        &self.series
    }
}

impl Drop for ActiveCall<'_> {
    fn drop(&mut self) {
        if let Some(active) = &self.series.active {
            active.sub(0, 1);
        }
        self.metrics.in_flight(false);
    }
}

impl Metrics {
    /// Counts a call to `method` as active, under the series
    /// [`thrift_method`](Self::thrift_method) gives.
    pub(crate) fn thrift_call_started(&self, method: &str) -> ActiveCall<'_> {
        let series = self.thrift_method(method);
        if let Some(active) = &series.active {
            active.add(0, 1);
        }
        self.in_flight(true);
        ActiveCall {
            metrics: self,
            series,
        }
    }

    /// The series a call to `method` counts as active under: the method's
    /// own once the app has answered that name, else `unknown`'s.
    pub(crate) fn thrift_method(&self, method: &str) -> Arc<MethodSeries> {
        let known = self
            .thrift
            .methods
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(method)
            .map(Arc::clone);
        known.unwrap_or_else(|| self.unknown_thrift_method())
    }

    /// The series an ended call to `method` is counted under. Its own when
    /// the app `knew` the name (the app itself answered, with anything but
    /// `UNKNOWN_METHOD`): method names come from the wire, and only the
    /// app's own answers may add series, never a client's made-up names.
    pub(crate) fn thrift_method_answered(&self, method: &str, knew: bool) -> Arc<MethodSeries> {
        let known = self.thrift_method(method);
        if !knew || known.method.as_ref() != UNKNOWN_METHOD {
            return known;
        }
        let mut map = self
            .thrift
            .methods
            .write()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(series) = map.get(method) {
            return Arc::clone(series);
        }
        if map.len() >= MAX_THRIFT_METHODS {
            return self.unknown_thrift_method();
        }
        let series = Arc::new(MethodSeries::new(self, method));
        map.insert(method.into(), Arc::clone(&series));
        series
    }

    fn unknown_thrift_method(&self) -> Arc<MethodSeries> {
        Arc::clone(
            self.thrift
                .unknown
                .get_or_init(|| Arc::new(MethodSeries::new(self, UNKNOWN_METHOD))),
        )
    }
}

/// How a call ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallOutcome {
    /// The exception the call raised; `None` for success.
    pub exception: Option<RaisedException>,
}

/// An exception a call raised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaisedException {
    /// Its type: the IDL name of a declared exception, or
    /// `TApplicationException` for any other failure.
    pub type_name: String,
    /// Its baseplate `code` field, if it has one.
    pub code: Option<i32>,
}

impl CallOutcome {
    /// A failure answered with a `TApplicationException`.
    pub(crate) fn application_exception() -> CallOutcome {
        CallOutcome {
            exception: Some(RaisedException {
                type_name: "TApplicationException".to_string(),
                code: None,
            }),
        }
    }
}

/// baseplate.thrift's `ErrorCode` name for `code`, for the
/// `thrift_baseplate_status` label.
pub(crate) fn error_code_name(code: i32) -> Option<&'static str> {
    Some(match code {
        400 => "BAD_REQUEST",
        401 => "UNAUTHORIZED",
        402 => "PAYMENT_REQUIRED",
        403 => "FORBIDDEN",
        404 => "NOT_FOUND",
        409 => "CONFLICT",
        410 => "GONE",
        412 => "PRECONDITION_FAILED",
        413 => "PAYLOAD_TOO_LARGE",
        418 => "IM_A_TEAPOT",
        421 => "MISDIRECTED_REQUEST",
        422 => "UNPROCESSABLE_ENTITY",
        423 => "LOCKED",
        424 => "FAILED_DEPENDENCY",
        425 => "TOO_EARLY",
        428 => "PRECONDITION_REQUIRED",
        429 => "TOO_MANY_REQUESTS",
        431 => "REQUEST_HEADER_FIELDS_TOO_LARGE",
        451 => "UNAVAILABLE_FOR_LEGAL_REASONS",
        500 => "INTERNAL_SERVER_ERROR",
        501 => "NOT_IMPLEMENTED",
        502 => "BAD_GATEWAY",
        503 => "SERVICE_UNAVAILABLE",
        504 => "TIMEOUT",
        507 => "INSUFFICIENT_STORAGE",
        508 => "LOOP_DETECTED",
        1000 => "USER_DEFINED",
        _ => return None,
    })
}

/// Where the recorder is in the reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the result struct, or in a success reply.
    Watching,
    /// The result struct began an exception field: the next struct is it.
    ExceptionField,
    /// Inside the exception struct (its depth), looking for `code`.
    InException(u32),
    /// In the exception's `code` field: the next `i32` is it.
    CodeField(u32),
    /// Nothing more to learn.
    Done,
}

/// A `TOutputProtocol` that passes every write through to `inner` and
/// notes what the reply says about the call's outcome.
pub(crate) struct Recorder<'a> {
    inner: &'a mut dyn TOutputProtocol,
    /// How many structs are open.
    depth: u32,
    state: State,
    outcome: CallOutcome,
}

impl<'a> Recorder<'a> {
    pub(crate) fn new(inner: &'a mut dyn TOutputProtocol) -> Recorder<'a> {
        Recorder {
            inner,
            depth: 0,
            state: State::Watching,
            outcome: CallOutcome::default(),
        }
    }

    /// The outcome seen.
    pub(crate) fn outcome(self) -> CallOutcome {
        self.outcome
    }
}

impl TOutputProtocol for Recorder<'_> {
    fn write_message_begin(&mut self, identifier: &TMessageIdentifier) -> thrift::Result<()> {
        if identifier.message_type == TMessageType::Exception {
            self.outcome = CallOutcome::application_exception();
            self.state = State::Done;
        }
        self.inner.write_message_begin(identifier)
    }

    fn write_message_end(&mut self) -> thrift::Result<()> {
        self.inner.write_message_end()
    }

    fn write_struct_begin(&mut self, identifier: &TStructIdentifier) -> thrift::Result<()> {
        self.depth += 1;
        if self.state == State::ExceptionField {
            self.outcome = CallOutcome {
                exception: Some(RaisedException {
                    type_name: identifier.name.clone(),
                    code: None,
                }),
            };
            self.state = State::InException(self.depth);
        }
        self.inner.write_struct_begin(identifier)
    }

    fn write_struct_end(&mut self) -> thrift::Result<()> {
        if matches!(self.state, State::InException(d) if d == self.depth) {
            self.state = State::Done;
        }
        self.depth = self.depth.saturating_sub(1);
        self.inner.write_struct_end()
    }

    fn write_field_begin(&mut self, identifier: &TFieldIdentifier) -> thrift::Result<()> {
        match self.state {
            // The result struct's field: 0 is success, any other a declared
            // exception.
            State::Watching if self.depth == 1 => {
                self.state = match (identifier.id, identifier.field_type) {
                    (Some(id), TType::Struct) if id != 0 => State::ExceptionField,
                    _ => State::Done,
                };
            }
            State::InException(d) if d == self.depth => {
                let is_code = identifier.id == Some(1)
                    && identifier.field_type == TType::I32
                    && identifier.name.as_deref().is_none_or(|n| n == "code");
                if is_code {
                    self.state = State::CodeField(d);
                }
            }
            _ => {}
        }
        self.inner.write_field_begin(identifier)
    }

    fn write_field_end(&mut self) -> thrift::Result<()> {
        if let State::CodeField(d) = self.state {
            self.state = State::InException(d);
        }
        self.inner.write_field_end()
    }

    fn write_field_stop(&mut self) -> thrift::Result<()> {
        self.inner.write_field_stop()
    }

    fn write_bool(&mut self, b: bool) -> thrift::Result<()> {
        self.inner.write_bool(b)
    }

    fn write_bytes(&mut self, b: &[u8]) -> thrift::Result<()> {
        self.inner.write_bytes(b)
    }

    fn write_i8(&mut self, i: i8) -> thrift::Result<()> {
        self.inner.write_i8(i)
    }

    fn write_i16(&mut self, i: i16) -> thrift::Result<()> {
        self.inner.write_i16(i)
    }

    fn write_i32(&mut self, i: i32) -> thrift::Result<()> {
        if let State::CodeField(d) = self.state {
            if let Some(exception) = &mut self.outcome.exception {
                exception.code = Some(i);
            }
            self.state = State::InException(d);
        }
        self.inner.write_i32(i)
    }

    fn write_i64(&mut self, i: i64) -> thrift::Result<()> {
        self.inner.write_i64(i)
    }

    fn write_double(&mut self, d: f64) -> thrift::Result<()> {
        self.inner.write_double(d)
    }

    fn write_uuid(&mut self, uuid: &uuid::Uuid) -> thrift::Result<()> {
        self.inner.write_uuid(uuid)
    }

    fn write_string(&mut self, s: &str) -> thrift::Result<()> {
        self.inner.write_string(s)
    }

    fn write_list_begin(&mut self, identifier: &TListIdentifier) -> thrift::Result<()> {
        self.inner.write_list_begin(identifier)
    }

    fn write_list_end(&mut self) -> thrift::Result<()> {
        self.inner.write_list_end()
    }

    fn write_set_begin(&mut self, identifier: &TSetIdentifier) -> thrift::Result<()> {
        self.inner.write_set_begin(identifier)
    }

    fn write_set_end(&mut self) -> thrift::Result<()> {
        self.inner.write_set_end()
    }

    fn write_map_begin(&mut self, identifier: &TMapIdentifier) -> thrift::Result<()> {
        self.inner.write_map_begin(identifier)
    }

    fn write_map_end(&mut self) -> thrift::Result<()> {
        self.inner.write_map_end()
    }

    fn flush(&mut self) -> thrift::Result<()> {
        self.inner.flush()
    }

    fn write_byte(&mut self, b: u8) -> thrift::Result<()> {
        self.inner.write_byte(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::thrift::call::with_output;
    use crate::server::thrift::dialect::Protocol;

    fn record(write: impl FnOnce(&mut dyn TOutputProtocol) -> thrift::Result<()>) -> CallOutcome {
        let mut outcome = None;
        with_output(Protocol::Binary, |o| {
            let mut recorder = Recorder::new(o);
            write(&mut recorder)?;
            outcome = Some(recorder.outcome());
            Ok(())
        })
        .unwrap();
        outcome.unwrap()
    }

    fn result(field: i16, exception: Option<(&str, Option<i32>)>) -> CallOutcome {
        record(|o| {
            o.write_message_begin(&TMessageIdentifier::new("m", TMessageType::Reply, 1))?;
            o.write_struct_begin(&TStructIdentifier::new("m_result"))?;
            match exception {
                None => {
                    o.write_field_begin(&TFieldIdentifier::new("success", TType::I32, field))?;
                    o.write_i32(7)?;
                    o.write_field_end()?;
                }
                Some((name, code)) => {
                    o.write_field_begin(&TFieldIdentifier::new("e", TType::Struct, field))?;
                    o.write_struct_begin(&TStructIdentifier::new(name))?;
                    if let Some(code) = code {
                        o.write_field_begin(&TFieldIdentifier::new("code", TType::I32, 1))?;
                        o.write_i32(code)?;
                        o.write_field_end()?;
                    }
                    o.write_field_begin(&TFieldIdentifier::new("message", TType::String, 2))?;
                    o.write_string("no")?;
                    o.write_field_end()?;
                    o.write_field_stop()?;
                    o.write_struct_end()?;
                    o.write_field_end()?;
                }
            }
            o.write_field_stop()?;
            o.write_struct_end()?;
            o.write_message_end()
        })
    }

    #[test]
    fn replies_say_success_or_which_exception_with_its_code() {
        assert_eq!(result(0, None), CallOutcome::default());
        assert_eq!(
            result(1, Some(("Oops", None))).exception,
            Some(RaisedException {
                type_name: "Oops".into(),
                code: None
            })
        );
        assert_eq!(
            result(2, Some(("Error", Some(429)))).exception,
            Some(RaisedException {
                type_name: "Error".into(),
                code: Some(429)
            })
        );
        assert_eq!(error_code_name(429), Some("TOO_MANY_REQUESTS"));
        assert_eq!(error_code_name(1001), None);
        let failed = record(|o| {
            o.write_message_begin(&TMessageIdentifier::new("m", TMessageType::Exception, 1))
        });
        assert_eq!(failed, CallOutcome::application_exception());
    }
}
