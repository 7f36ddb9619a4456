//! The startup error: one line for the user, an exit status for the shell.

use std::fmt;

/// A boxed error from application code (factories, services).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why `baseplate-serve` could not start (or had to stop): one or more
/// problems, each printed as its own `error: ...` line.
#[derive(Debug)]
pub struct Error {
    lines: Vec<String>,
}

impl Error {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Error {
            lines: vec![message.into()],
        }
    }

    /// The problems, one per line.
    pub fn lines(&self) -> &[String] {
        &self.lines
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.lines.join("\n"))
    }
}

impl std::error::Error for Error {}

impl From<crate::config::ConfigError> for Error {
    fn from(e: crate::config::ConfigError) -> Self {
        Error::new(e.to_string())
    }
}

impl From<crate::config::ConfigErrors> for Error {
    fn from(e: crate::config::ConfigErrors) -> Self {
        Error {
            lines: e.0.iter().map(ToString::to_string).collect(),
        }
    }
}

/// The OS's description of an I/O error without Rust's `(os error N)` tail.
pub fn io_reason(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}
