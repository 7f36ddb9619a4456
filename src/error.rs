//! The startup error: one line for the user, an exit status for the shell.

use std::fmt;

pub(crate) use crate::os_error::io_reason;

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

    /// An I/O failure: `CONTEXT: REASON`, where the reason is the OS's own
    /// words without Rust's `(os error N)` tail.
    pub fn io(context: impl fmt::Display, e: &std::io::Error) -> Self {
        Error::new(format!("{context}: {}", io_reason(e)))
    }

    /// The problems, one per line.
    pub fn lines(&self) -> &[String] {
        &self.lines
    }

    /// These problems, then `more`'s.
    pub(crate) fn join(mut self, more: Error) -> Error {
        self.lines.extend(more.lines);
        self
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

/// A failed app factory's error as startup error lines. Located config
/// errors anywhere in its chain keep their own `FILE:LINE: [section] key:`
/// lines; the other messages of the chain (an `anyhow` context, say) are
/// joined into one line at the section's `factory` key.
pub(crate) fn factory_failed(
    e: &(dyn std::error::Error + 'static),
    name: &str,
    section: &crate::config::Section,
) -> Error {
    use crate::config::{ConfigError, ConfigErrors};
    let prefix = format!("{}:", section.file().display());
    let mut context: Vec<String> = Vec::new();
    let mut located: Vec<String> = Vec::new();
    let mut link = Some(e);
    while let Some(error) = link {
        if let Some(errors) = error.downcast_ref::<ConfigErrors>() {
            located.extend(errors.0.iter().map(ToString::to_string));
            break;
        }
        if let Some(error) = error.downcast_ref::<ConfigError>() {
            located.push(error.to_string());
            break;
        }
        let text = error.to_string();
        // An error type that hides what it wraps (anyhow's own, with no
        // context) still shows the located lines as its message.
        if text.lines().next().is_some() && text.lines().all(|l| l.starts_with(&prefix)) {
            located.extend(text.lines().map(str::to_string));
            break;
        }
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        // Many errors repeat their cause in their own message already.
        if !text.is_empty() && !context.last().is_some_and(|outer| outer.ends_with(&text)) {
            context.push(text);
        }
        link = error.source();
    }
    let mut lines = Vec::new();
    if !context.is_empty() || located.is_empty() {
        let message = if context.is_empty() {
            format!("{name} failed (its error has no message)")
        } else {
            format!("{name} failed: {}", context.join(": "))
        };
        lines.push(section.error("factory", message).to_string());
    }
    lines.extend(located);
    Error { lines }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ConfigError, ConfigErrors, Entry, Section};

    fn section() -> Section {
        Section::new(
            "/srv/app.ini",
            "app:main",
            vec![Entry {
                key: "factory".into(),
                value: "my.factory".into(),
                line: 5,
                inherited: false,
            }],
        )
    }

    fn located() -> ConfigErrors {
        ConfigErrors(vec![ConfigError {
            file: "/srv/app.ini".into(),
            line: Some(6),
            section: Some("app:main".into()),
            key: Some("greeting".into()),
            message: "no value specified".into(),
        }])
    }

    /// An error that wraps another, showing only its own message.
    #[derive(Debug)]
    struct Context(&'static str, Box<dyn std::error::Error + Send + Sync>);

    impl fmt::Display for Context {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Context {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&*self.1)
        }
    }

    /// An error that hides its cause but shows it as its message.
    #[derive(Debug)]
    struct Opaque(String);

    impl fmt::Display for Opaque {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(&self.0)
        }
    }

    impl std::error::Error for Opaque {}

    #[test]
    fn located_errors_keep_their_lines_under_any_wrapping() {
        let expected = ["/srv/app.ini:6: [app:main] greeting: no value specified"];
        let bare = located();
        assert_eq!(
            factory_failed(&bare, "my.factory", &section()).lines(),
            expected
        );
        let opaque = Opaque(located().to_string());
        assert_eq!(
            factory_failed(&opaque, "my.factory", &section()).lines(),
            expected
        );
        let wrapped = Context("reading settings", Box::new(located()));
        assert_eq!(
            factory_failed(&wrapped, "my.factory", &section()).lines(),
            [
                "/srv/app.ini:5: [app:main] factory: my.factory failed: reading settings",
                expected[0]
            ]
        );
    }

    #[test]
    fn other_chains_are_one_line_without_repeats() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let chain = Context(
            "starting",
            Box::new(Context("opening the cache: no such file", Box::new(io))),
        );
        assert_eq!(
            factory_failed(&chain, "my.factory", &section()).lines(),
            ["/srv/app.ini:5: [app:main] factory: my.factory failed: starting: opening the cache: no such file"]
        );
    }
}
