//! Parsers for single config values, with baseplate.py's rules
//! (`baseplate.lib.config`) and messages of our own: integers and floats as Python reads them,
//! timespans, and endpoints. Every option of every server goes through here.

use std::fmt;
use std::net::Ipv6Addr;
use std::path::PathBuf;
use std::time::Duration;

/// A value as messages quote it: in double quotes, with Rust's escapes
/// for quotes, backslashes and control characters.
pub fn quoted(s: &str) -> String {
    format!("{s:?}")
}

/// Python's `str.strip()` whitespace.
fn py_trim(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
}

/// Removes `_` separators if each stands between two ASCII digits, as
/// Python's numeric literals allow; `None` if one is misplaced.
fn strip_underscores(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'_' {
            let before = i > 0 && bytes[i - 1].is_ascii_digit();
            let after = bytes.get(i + 1).is_some_and(|c| c.is_ascii_digit());
            if !(before && after) {
                return None;
            }
        }
    }
    Some(s.replace('_', ""))
}

/// Parses an integer as Python's `int(text)` does (surrounding whitespace,
/// a sign, `_` between digits), within the range of `i64`.
pub fn parse_int(text: &str) -> Result<i64, String> {
    let invalid = || format!("{} is not a whole number", quoted(text));
    let trimmed = py_trim(text);
    let digits = trimmed.strip_prefix(['+', '-']).unwrap_or(trimmed);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit() || b == b'_') {
        return Err(invalid());
    }
    let cleaned = strip_underscores(trimmed).ok_or_else(invalid)?;
    cleaned
        .parse::<i64>()
        .map_err(|_| format!("{} is too large; the largest is {}", quoted(text), i64::MAX))
}

/// Parses a float as Python's `float(text)` does (whitespace, `_` between
/// digits, `inf`, `nan`, exponents).
pub fn parse_float(text: &str) -> Result<f64, String> {
    let invalid = || format!("{} is not a number", quoted(text));
    let trimmed = py_trim(text);
    let cleaned = strip_underscores(trimmed).ok_or_else(invalid)?;
    cleaned.parse::<f64>().map_err(|_| invalid())
}

/// Parses baseplate's `Timespan`: `<integer> <unit>` where the unit is
/// millisecond, second, minute, hour or day, trailing `s` allowed. Negative
/// spans are refused, since every timespan here is a wait.
pub fn parse_timespan(text: &str) -> Result<Duration, String> {
    let parts: Vec<&str> = text.split_whitespace().collect();
    let [count, unit] = parts[..] else {
        return Err(format!(
            "{} is not a timespan; write a whole number and a unit, like \"30 seconds\"",
            quoted(text)
        ));
    };
    let count = parse_int(count).map_err(|_| {
        format!(
            "{} does not start with a whole number; write one, like \"1500 milliseconds\"",
            quoted(text)
        )
    })?;
    let unit_ms: i64 = match unit.trim_end_matches('s') {
        "millisecond" => 1,
        "second" => 1_000,
        "minute" => 60_000,
        "hour" => 3_600_000,
        "day" => 86_400_000,
        _ => {
            return Err(format!(
                "{} has no known unit; use milliseconds, seconds, minutes, hours or days",
                quoted(text)
            ))
        }
    };
    if count < 0 {
        return Err(format!(
            "{text:?} is negative; a timespan must be 0 or more"
        ));
    }
    let ms = count
        .checked_mul(unit_ms)
        .ok_or_else(|| format!("{text:?} is too long"))?;
    Ok(Duration::from_millis(ms as u64))
}

/// Parses baseplate's `TimespanWithLegacyFallback`: a timespan, or else a
/// plain number of seconds (`30`, `1.5`).
pub fn parse_timespan_or_seconds(text: &str) -> Result<Duration, String> {
    if let Ok(span) = parse_timespan(text) {
        return Ok(span);
    }
    let wrong = || {
        format!(
            "{} is not a number of seconds from 0 up (or a timespan like \"30 seconds\")",
            quoted(text)
        )
    };
    let seconds = parse_float(text).map_err(|_| wrong())?;
    Duration::try_from_secs_f64(seconds).map_err(|_| wrong())
}

/// Where a server listens: a TCP host and port, or a UNIX socket path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `host:port`; an empty host means every address. An IPv6 host is kept
    /// without its brackets.
    Tcp {
        /// The host name or address literal.
        host: String,
        /// The port; 0 asks the kernel for a free one.
        port: u16,
    },
    /// A UNIX socket path (any value containing `/`).
    Unix(PathBuf),
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            Endpoint::Tcp { host, port } => write!(f, "{host}:{port}"),
            Endpoint::Unix(path) => write!(f, "{}", path.display()),
        }
    }
}

impl std::str::FromStr for Endpoint {
    type Err = String;

    /// Parses an endpoint with baseplate's rules ([`parse_endpoint`]).
    fn from_str(text: &str) -> Result<Endpoint, String> {
        parse_endpoint(text)
    }
}

fn no_port(text: &str) -> String {
    format!(
        "{} has no port; expected HOST:PORT, like \"localhost:9090\"",
        quoted(text)
    )
}

/// Parses baseplate's `Endpoint`: a path if it contains `/`, else
/// `host:port` split at the first `:`, or `[v6-address]:port`.
pub fn parse_endpoint(text: &str) -> Result<Endpoint, String> {
    if text.is_empty() {
        return Err("empty; expected HOST:PORT, [V6ADDR]:PORT or a UNIX socket path".to_string());
    }
    if text.contains('/') {
        return Ok(Endpoint::Unix(PathBuf::from(text)));
    }
    let (host, port) = if let Some(bracketed) = text.strip_prefix('[') {
        let (addr, rest) = bracketed
            .split_once(']')
            .ok_or_else(|| format!("{} has no closing `]`", quoted(text)))?;
        addr.parse::<Ipv6Addr>()
            .map_err(|_| format!("{} is not an IPv6 address", quoted(addr)))?;
        let port = rest.strip_prefix(':').ok_or_else(|| no_port(text))?;
        (addr, port)
    } else {
        text.split_once(':').ok_or_else(|| no_port(text))?
    };
    let port = parse_int(port).map_err(|_| {
        format!(
            "{} has a port that is not a whole number ({})",
            quoted(text),
            quoted(port)
        )
    })?;
    let port =
        u16::try_from(port).map_err(|_| format!("port {port} is out of range (0 to 65535)"))?;
    Ok(Endpoint::Tcp {
        host: host.to_string(),
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_with_from_str() {
        let tcp: Endpoint = "[::1]:9090".parse().unwrap();
        assert_eq!(
            tcp,
            Endpoint::Tcp {
                host: "::1".into(),
                port: 9090
            }
        );
        assert_eq!(tcp.to_string(), "[::1]:9090");
        let unix: Endpoint = "/run/app.sock".parse().unwrap();
        assert_eq!(unix, Endpoint::Unix(PathBuf::from("/run/app.sock")));
        assert!("".parse::<Endpoint>().is_err());
    }

    #[test]
    fn ints_like_python() {
        assert_eq!(parse_int(" 42 "), Ok(42));
        assert_eq!(parse_int("1_000"), Ok(1000));
        assert_eq!(parse_int("-7"), Ok(-7));
        assert_eq!(
            parse_int("4.2").unwrap_err(),
            "\"4.2\" is not a whole number"
        );
        assert!(parse_int("").is_err());
        assert!(parse_int("1__0").is_err());
        assert!(parse_int("_1").is_err());
        assert!(parse_int("0x10").is_err());
    }

    #[test]
    fn floats_like_python() {
        assert_eq!(parse_float("1.5"), Ok(1.5));
        assert_eq!(parse_float(" 1_0 "), Ok(10.0));
        assert_eq!(parse_float("soon").unwrap_err(), "\"soon\" is not a number");
    }

    #[test]
    fn timespans() {
        assert_eq!(parse_timespan("30 seconds"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_timespan("1 secondss"), Ok(Duration::from_secs(1)));
        assert_eq!(
            parse_timespan("200 milliseconds"),
            Ok(Duration::from_millis(200))
        );
        assert_eq!(
            parse_timespan("1second").unwrap_err(),
            "\"1second\" is not a timespan; write a whole number and a unit, like \"30 seconds\""
        );
        assert_eq!(
            parse_timespan("1 week").unwrap_err(),
            "\"1 week\" has no known unit; use milliseconds, seconds, minutes, hours or days"
        );
        assert!(parse_timespan("1 Second").is_err());
        assert_eq!(
            parse_timespan("1.5 seconds").unwrap_err(),
            "\"1.5 seconds\" does not start with a whole number; write one, like \"1500 milliseconds\""
        );
        assert_eq!(
            parse_timespan_or_seconds("1.5"),
            Ok(Duration::from_millis(1500))
        );
        assert_eq!(
            parse_timespan_or_seconds("soon").unwrap_err(),
            "\"soon\" is not a number of seconds from 0 up (or a timespan like \"30 seconds\")"
        );
        assert!(parse_timespan_or_seconds("-1").is_err());
        assert!(parse_timespan_or_seconds("inf").is_err());
    }

    #[test]
    fn endpoints() {
        assert_eq!(
            parse_endpoint(":80"),
            Ok(Endpoint::Tcp {
                host: String::new(),
                port: 80
            })
        );
        assert_eq!(
            parse_endpoint("[::1]:9090"),
            Ok(Endpoint::Tcp {
                host: "::1".into(),
                port: 9090
            })
        );
        assert_eq!(
            parse_endpoint("rel/sock"),
            Ok(Endpoint::Unix("rel/sock".into()))
        );
        assert_eq!(
            parse_endpoint("host").unwrap_err(),
            "\"host\" has no port; expected HOST:PORT, like \"localhost:9090\""
        );
        assert!(parse_endpoint("")
            .unwrap_err()
            .starts_with("empty; expected HOST:PORT"));
        assert_eq!(
            parse_endpoint("h:p").unwrap_err(),
            "\"h:p\" has a port that is not a whole number (\"p\")"
        );
        assert!(parse_endpoint("h:70000").is_err());
        assert_eq!(parse_endpoint("[::1]:80").unwrap().to_string(), "[::1]:80");
    }
}
