//! Thrift call metrics: each method's series looked up once per call
//! ([`MethodSeries`]), and what the call came to ([`CallOutcome`], read
//! off the reply as it was written) for `thrift_server_requests_total`:
//! success, or the exception's type and baseplate code.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use crate::wire::outcome::{CallOutcome, RaisedException};

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn baseplate_error_codes_have_their_names() {
        assert_eq!(error_code_name(429), Some("TOO_MANY_REQUESTS"));
        assert_eq!(error_code_name(1001), None);
    }
}
