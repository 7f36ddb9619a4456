//! The master's log: Einhorn-style lines on stderr (the `--events` file is
//! [`crate::events`]).

use std::time::{SystemTime, UNIX_EPOCH};

/// Log levels, by Einhorn's verbosity scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Shown at verbosity 0 (`-v`).
    Debug,
    /// Shown at verbosity 0 and 1 (default).
    Info,
    /// Always shown.
    Error,
}

impl Level {
    fn name(self) -> &'static str {
        match self {
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Error => "ERROR",
        }
    }
}

/// `[MASTER pid] LEVEL: msg` on stderr.
pub struct Log {
    pid: u32,
    /// 0 = DEBUG and up, 1 = INFO and up, 2 = ERROR only.
    pub verbosity: u8,
}

impl Log {
    /// A log for this process at `verbosity`.
    pub fn new(verbosity: u8) -> Log {
        Log {
            pid: std::process::id(),
            verbosity,
        }
    }

    /// Writes `msg` if the verbosity lets `level` through.
    pub fn write(&self, level: Level, msg: &str) {
        let threshold = match self.verbosity {
            0 => Level::Debug,
            1 => Level::Info,
            _ => Level::Error,
        };
        if level >= threshold {
            line(&format!("[MASTER {}] {}: {msg}", self.pid, level.name()));
        }
    }
}

/// Writes `text` and a newline to stderr. Unlike `eprintln!`, a closed
/// stderr (`einhorn-sim ... 2>&1 | head`) is no panic: the master runs on
/// without its log, as Einhorn does.
pub fn line(text: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

/// Seconds since the epoch, as a float.
pub fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A time as Einhorn's `state` shows it: `2026-11-26 05:42:00.001279295 +00:00`.
pub fn format_time(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{:09} +00:00",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_nanos()
    )
}

/// Howard Hinnant's days-to-civil-date conversion.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_times_like_ruby() {
        let t = UNIX_EPOCH + Duration::new(1_795_672_920, 1_279_295);
        assert_eq!(format_time(t), "2026-11-26 06:02:00.001279295 +00:00");
        assert_eq!(
            format_time(UNIX_EPOCH),
            "1970-01-01 00:00:00.000000000 +00:00"
        );
    }
}
