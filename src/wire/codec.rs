//! Encoding and decoding Thrift messages in either payload protocol, with
//! limits for untrusted bytes, and the THeader info headers of a call.

use std::sync::Arc;

use thrift::protocol::{
    TBinaryInputProtocol, TBinaryOutputProtocol, TCompactInputProtocol, TCompactOutputProtocol,
    TInputProtocol, TMessageIdentifier, TMessageType, TOutputProtocol,
};
use thrift::{ApplicationErrorKind, TConfiguration};

use super::dialect::Protocol;
use super::outcome::{CallOutcome, Recorder};
use super::scanner;

/// The THeader info headers of a call, in the order sent (empty for the
/// other dialects).
pub type Headers = Arc<[(String, String)]>;

/// The separator of a multiplexed call's name (`Service:method`), as
/// Apache Thrift's `TMultiplexedProtocol` writes it.
pub const MULTIPLEX_SEPARATOR: char = ':';

/// `Service:method` → (`Some("Service")`, `"method"`); a plain name has no
/// service.
pub(crate) fn split_service(name: &str) -> (Option<&str>, &str) {
    match name.split_once(MULTIPLEX_SEPARATOR) {
        Some((service, method)) => (Some(service), method),
        None => (None, name),
    }
}

/// The headers of a call that has none, shared rather than allocated per call.
pub(crate) fn no_headers() -> Headers {
    static EMPTY: std::sync::OnceLock<Headers> = std::sync::OnceLock::new();
    Arc::clone(EMPTY.get_or_init(|| Arc::from(Vec::new())))
}

/// An info header by name, ASCII case-insensitive.
pub(crate) fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Limits for decoding untrusted payloads.
pub(crate) fn configuration(max: usize) -> TConfiguration {
    TConfiguration::builder()
        .max_message_size(Some(max))
        .max_frame_size(Some(max))
        .max_string_size(Some(max))
        .max_container_size(Some(max))
        .max_recursion_depth(Some(scanner::MAX_DEPTH))
        .build()
        .unwrap_or_default()
}

/// Runs `f` over an input protocol reading `bytes`.
pub(crate) fn with_input<T>(
    protocol: Protocol,
    bytes: &[u8],
    max: usize,
    f: impl FnOnce(&mut dyn TInputProtocol) -> T,
) -> T {
    match protocol {
        Protocol::Binary => f(&mut TBinaryInputProtocol::with_config(
            bytes,
            true,
            configuration(max),
        )),
        Protocol::Compact => f(&mut TCompactInputProtocol::with_config(
            bytes,
            configuration(max),
        )),
    }
}

/// Runs `f` over an output protocol; returns what it wrote.
pub(crate) fn with_output(
    protocol: Protocol,
    f: impl FnOnce(&mut dyn TOutputProtocol) -> thrift::Result<()>,
) -> thrift::Result<Vec<u8>> {
    let mut out = Vec::new();
    match protocol {
        Protocol::Binary => f(&mut TBinaryOutputProtocol::new(&mut out, true))?,
        Protocol::Compact => f(&mut TCompactOutputProtocol::new(&mut out))?,
    }
    Ok(out)
}

/// Like [`with_output`], also noting what the reply says of the call.
pub(crate) fn recorded_output(
    protocol: Protocol,
    f: impl FnOnce(&mut dyn TOutputProtocol) -> thrift::Result<()>,
) -> thrift::Result<(Vec<u8>, CallOutcome)> {
    let mut outcome = CallOutcome::default();
    let message = with_output(protocol, |output| {
        let mut recorder = Recorder::new(output);
        let written = f(&mut recorder);
        outcome = recorder.outcome();
        written
    })?;
    Ok((message, outcome))
}

/// Whether `reply` is a `TApplicationException` of kind `UNKNOWN_METHOD`:
/// the app does not know the method called.
pub(crate) fn is_unknown_method(protocol: Protocol, reply: &[u8]) -> bool {
    with_input(protocol, reply, reply.len().max(1), |input| {
        let Ok(ident) = input.read_message_begin() else {
            return false;
        };
        ident.message_type == TMessageType::Exception
            && thrift::Error::read_application_error_from_in_protocol(input)
                .is_ok_and(|e| e.kind == ApplicationErrorKind::UnknownMethod)
    })
}

/// The message header at the start of a payload.
pub(crate) fn peek_message(protocol: Protocol, payload: &[u8]) -> Option<TMessageIdentifier> {
    with_input(protocol, payload, payload.len().max(1), |input| {
        input.read_message_begin().ok()
    })
}
