//! Value types for typed settings, each parsed with baseplate.py's rules
//! (`baseplate.lib.config`). Use them as field types with
//! [`from_section`](super::from_section).

use std::path::PathBuf;
use std::time::Duration;

use serde::de::{Deserialize, Deserializer, Error, Visitor};

use super::values::{
    self, parse_float, parse_int, parse_timespan, parse_timespan_or_seconds, quoted,
};

/// Deserializes a string as the newtype `name`, then parses it. (Going
/// through a named newtype lets the section reader stand in a valid value
/// for one it already reported, and so report every bad key.)
fn parse_with<'de, D, T>(
    deserializer: D,
    name: &'static str,
    parse: fn(&str) -> Result<T, String>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    struct Parse<T>(fn(&str) -> Result<T, String>, &'static str);

    impl<'de, T> Visitor<'de> for Parse<T> {
        type Value = T;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "a {} as text", self.1)
        }

        fn visit_newtype_struct<D2: Deserializer<'de>>(self, d: D2) -> Result<T, D2::Error> {
            let text = String::deserialize(d)?;
            (self.0)(&text).map_err(D2::Error::custom)
        }

        fn visit_str<E: Error>(self, text: &str) -> Result<T, E> {
            (self.0)(text).map_err(E::custom)
        }
    }

    deserializer.deserialize_newtype_struct(name, Parse(parse, name))
}

/// `<integer> <unit>` (millisecond, second, minute, hour, day; plural
/// allowed), like `30 seconds`. The span is the field `.0`, or
/// `Duration::from(span)`:
///
/// ```
/// use std::time::Duration;
/// use baseplate::config::{from_section, Section, Entry, Timespan};
///
/// #[derive(serde::Deserialize)]
/// struct Settings {
///     timeout: Timespan,
/// }
///
/// let entry = Entry { key: "timeout".into(), value: "30 seconds".into(), line: 2, inherited: false };
/// let section = Section::new("app.ini", "app:main", vec![entry]);
/// let settings: Settings = from_section(&section).unwrap();
/// let timeout: Duration = settings.timeout.into();
/// assert_eq!(timeout, Duration::from_secs(30));
/// assert_eq!(settings.timeout.0, Duration::from_secs(30));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timespan(pub Duration);

impl From<Timespan> for Duration {
    fn from(span: Timespan) -> Duration {
        span.0
    }
}

impl<'de> Deserialize<'de> for Timespan {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parse_with(d, "Timespan", |t| parse_timespan(t).map(Timespan))
    }
}

/// A timespan, or a plain number of seconds (`30`, `1.5`), as baseplate's
/// `TimespanWithLegacyFallback` (used by `stop_timeout`). The span is
/// `.0`, or `Duration::from(span)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct TimespanOrSeconds(pub Duration);

impl From<TimespanOrSeconds> for Duration {
    fn from(span: TimespanOrSeconds) -> Duration {
        span.0
    }
}

impl<'de> Deserialize<'de> for TimespanOrSeconds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parse_with(d, "TimespanOrSeconds", |t| {
            parse_timespan_or_seconds(t).map(TimespanOrSeconds)
        })
    }
}

/// A timespan, or exactly `infinite`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimespanOrInfinite {
    /// A finite span.
    Finite(Duration),
    /// `infinite`.
    Infinite,
}

impl TimespanOrInfinite {
    /// The span, or `None` for `infinite`: what `tokio::time::timeout`
    /// and friends want as an optional limit.
    pub fn duration(self) -> Option<Duration> {
        match self {
            TimespanOrInfinite::Finite(span) => Some(span),
            TimespanOrInfinite::Infinite => None,
        }
    }
}

impl<'de> Deserialize<'de> for TimespanOrInfinite {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parse_with(d, "TimespanOrInfinite", |t| {
            if t == "infinite" {
                Ok(TimespanOrInfinite::Infinite)
            } else {
                parse_timespan(t).map(TimespanOrInfinite::Finite)
            }
        })
    }
}

/// `NN%`, as a fraction from 0 to 1 (`37.2%` is 0.372).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default)]
pub struct Percent(pub f64);

/// Parses baseplate's `Percent`.
pub fn parse_percent(text: &str) -> Result<f64, String> {
    let not_a_percentage = || {
        format!(
            "{} is not a percentage; write a number and %, like \"37.5%\"",
            quoted(text)
        )
    };
    let number = text.strip_suffix('%').ok_or_else(not_a_percentage)?;
    let fraction = parse_float(number).map_err(|_| not_a_percentage())? / 100.0;
    if !(0.0..=1.0).contains(&fraction) {
        return Err(format!(
            "{} is out of range; expected 0% to 100%",
            quoted(text)
        ));
    }
    Ok(fraction)
}

impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parse_with(d, "Percent", |t| parse_percent(t).map(Percent))
    }
}

impl<'de> Deserialize<'de> for values::Endpoint {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parse_with(d, "Endpoint", values::parse_endpoint)
    }
}

/// Base64 data, decoded (non-strict, as Python's `b64decode`: characters
/// outside the alphabet are skipped).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Base64(pub Vec<u8>);

/// Decodes base64 as Python's `base64.b64decode(text)` does.
pub fn parse_base64(text: &str) -> Result<Vec<u8>, String> {
    if text.is_empty() {
        return Err("empty; expected base64-encoded data".to_string());
    }
    let value = |c: u8| -> Option<u8> {
        match c {
            b'A'..=b'Z' => Some(c - b'A'),
            b'a'..=b'z' => Some(c - b'a' + 26),
            b'0'..=b'9' => Some(c - b'0' + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    };
    let mut out = Vec::new();
    let mut quad = [0u8; 4];
    let mut filled = 0;
    let mut pads = 0;
    for &c in text.as_bytes() {
        if c == b'=' {
            if filled >= 2 {
                pads += 1;
                if filled + pads == 4 {
                    break;
                }
            }
            continue;
        }
        let Some(v) = value(c) else { continue };
        if pads > 0 {
            // Data after padding: Python stops at complete padding; a stray
            // '=' earlier is ignored.
            pads = 0;
        }
        quad[filled] = v;
        filled += 1;
        if filled == 4 {
            out.push(quad[0] << 2 | quad[1] >> 4);
            out.push(quad[1] << 4 | quad[2] >> 2);
            out.push(quad[2] << 6 | quad[3]);
            filled = 0;
        }
    }
    match filled {
        0 => Ok(out),
        1 => Err(
            "not valid base64: the data ends in a single character, which makes no byte"
                .to_string(),
        ),
        n if n + pads < 4 => Err("not valid base64: the `=` padding is missing".to_string()),
        2 => {
            out.push(quad[0] << 2 | quad[1] >> 4);
            Ok(out)
        }
        _ => {
            out.push(quad[0] << 2 | quad[1] >> 4);
            out.push(quad[1] << 4 | quad[2] >> 2);
            Ok(out)
        }
    }
}

impl<'de> Deserialize<'de> for Base64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parse_with(d, "Base64", |t| parse_base64(t).map(Base64))
    }
}

/// A user name or uid, resolved to a uid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UnixUser(pub u32);

impl<'de> Deserialize<'de> for UnixUser {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parse_with(d, "UnixUser", |t| match nix::unistd::User::from_name(t) {
            Ok(Some(user)) => Ok(UnixUser(user.uid.as_raw())),
            _ => t
                .parse::<u32>()
                .map(UnixUser)
                .map_err(|_| format!("no user named {} on this machine", quoted(t))),
        })
    }
}

/// A group name or gid, resolved to a gid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UnixGroup(pub u32);

impl<'de> Deserialize<'de> for UnixGroup {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parse_with(d, "UnixGroup", |t| match nix::unistd::Group::from_name(t) {
            Ok(Some(group)) => Ok(UnixGroup(group.gid.as_raw())),
            _ => t
                .parse::<u32>()
                .map(UnixGroup)
                .map_err(|_| format!("no group named {} on this machine", quoted(t))),
        })
    }
}

/// A path to a file that exists and can be opened for reading.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct File(pub PathBuf);

impl<'de> Deserialize<'de> for File {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parse_with(d, "File", |t| match std::fs::File::open(t) {
            Ok(_) => Ok(File(PathBuf::from(t))),
            Err(e) => Err(format!(
                "cannot open {}: {}",
                quoted(t),
                crate::error::io_reason(&e)
            )),
        })
    }
}

/// A whole number of at least 1 (counts of things: connections, bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Positive(pub u64);

impl<'de> Deserialize<'de> for Positive {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parse_with(d, "Positive", |t| {
            let n = parse_int(t)?;
            u64::try_from(n)
                .ok()
                .filter(|&n| n >= 1)
                .map(Positive)
                .ok_or_else(|| format!("{n} is not allowed; expected a whole number from 1 up"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_like_baseplate() {
        assert!((parse_percent("37.2%").unwrap() - 0.372).abs() < 1e-12);
        let not_a_percentage =
            |t: &str| format!("{t:?} is not a percentage; write a number and %, like \"37.5%\"");
        assert_eq!(parse_percent("50").unwrap_err(), not_a_percentage("50"));
        assert_eq!(parse_percent("").unwrap_err(), not_a_percentage(""));
        assert_eq!(
            parse_percent("101%").unwrap_err(),
            "\"101%\" is out of range; expected 0% to 100%"
        );
        assert_eq!(
            parse_percent("-1%").unwrap_err(),
            "\"-1%\" is out of range; expected 0% to 100%"
        );
        assert_eq!(parse_percent("%").unwrap_err(), not_a_percentage("%"));
    }

    #[test]
    fn base64_like_python() {
        assert_eq!(parse_base64("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(parse_base64("aGVs bG8=").unwrap(), b"hello");
        assert_eq!(parse_base64("aGVsbA==").unwrap(), b"hell");
        assert_eq!(
            parse_base64("").unwrap_err(),
            "empty; expected base64-encoded data"
        );
        assert_eq!(
            parse_base64("aGVsbG8").unwrap_err(),
            "not valid base64: the `=` padding is missing"
        );
        assert_eq!(
            parse_base64("a").unwrap_err(),
            "not valid base64: the data ends in a single character, which makes no byte"
        );
    }
}
