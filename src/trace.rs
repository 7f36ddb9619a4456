//! Trace ids: taken from the request (`X-Trace`, or W3C `traceparent`) so
//! logs line up with the caller's, else generated.

use std::fmt;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use http::HeaderMap;

/// The trace id of one request; it is in the request's extensions and on
/// every log line written while handling it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TraceId(String);

impl TraceId {
    /// The id from `X-Trace` (baseplate's header) or `traceparent`, if one
    /// is present and well formed; otherwise a new random one.
    pub fn from_headers(headers: &HeaderMap) -> TraceId {
        let x_trace = headers
            .get("x-trace")
            .and_then(|v| v.to_str().ok())
            .filter(|v| {
                (1..=64).contains(&v.len())
                    && v.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        if let Some(id) = x_trace {
            return TraceId(id.to_string());
        }
        headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(traceparent_id)
            .map(|id| TraceId(id.to_string()))
            .unwrap_or_else(TraceId::generate)
    }

    /// A new random 128-bit id as 32 lowercase hex digits.
    pub fn generate() -> TraceId {
        static KEYS: OnceLock<RandomState> = OnceLock::new();
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let keys = KEYS.get_or_init(RandomState::new);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let half = |salt: u64| {
            let mut h = keys.build_hasher();
            h.write_u64(n);
            h.write_u64(salt);
            h.finish()
        };
        TraceId(format!("{:016x}{:016x}", half(1), half(2)))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The trace-id field of a `traceparent` header (`00-<32 hex>-<16 hex>-<2 hex>`).
fn traceparent_id(value: &str) -> Option<&str> {
    let mut parts = value.split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, n: usize| {
        s.len() == n && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    let valid = hex(version, 2)
        && hex(trace, 32)
        && hex(parent, 16)
        && hex(flags, 2)
        && trace.bytes().any(|b| b != b'0');
    valid.then_some(trace)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_header_ids() {
        let mut h = HeaderMap::new();
        h.insert(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                .parse()
                .unwrap(),
        );
        assert_eq!(
            TraceId::from_headers(&h).as_str(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        h.insert("x-trace", "1234567".parse().unwrap());
        assert_eq!(TraceId::from_headers(&h).as_str(), "1234567");
        let generated = TraceId::from_headers(&HeaderMap::new());
        assert_eq!(generated.as_str().len(), 32);
        assert_ne!(generated, TraceId::generate());
    }
}
