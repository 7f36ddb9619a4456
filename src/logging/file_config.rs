//! The logging override: a `[loggers]` section in the config file, in the
//! subset of Python's `logging.config.fileConfig` format that maps onto
//! tracing. Anything outside the subset is an error naming its section and
//! key, never silently ignored.

use tracing_subscriber::filter::LevelFilter;

use crate::config::{ConfigError, ConfigErrors, ConfigFile, Section};

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Output {
    /// Standard output (the default).
    Stdout,
    /// Standard error.
    Stderr,
}

/// The line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// What the `[loggers]` section asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileLogging {
    /// EnvFilter directives: the root level, then one per named logger.
    pub directives: String,
    /// The root logger's handler's stream.
    pub output: Output,
    /// Its formatter's kind; `None` when no formatter is named.
    pub format: Option<Format>,
    /// The handler's own level, if set.
    pub handler_level: Option<LevelFilter>,
}

fn level(section: &Section, key: &str) -> Result<LevelFilter, ConfigError> {
    let text = section.get(key).unwrap_or_default();
    match text.to_ascii_uppercase().as_str() {
        "NOTSET" => Ok(LevelFilter::TRACE),
        "DEBUG" => Ok(LevelFilter::DEBUG),
        "INFO" => Ok(LevelFilter::INFO),
        "WARNING" | "WARN" => Ok(LevelFilter::WARN),
        "ERROR" | "CRITICAL" | "FATAL" => Ok(LevelFilter::ERROR),
        _ => Err(section.error(
            key,
            format!(
                "unknown level {text:?}; expected DEBUG, INFO, WARNING, ERROR, CRITICAL or NOTSET"
            ),
        )),
    }
}

/// Checks that `section` sets only `allowed` keys.
fn only(section: &Section, allowed: &[&str], problems: &mut Vec<ConfigError>) {
    for entry in section.entries() {
        if !allowed.contains(&entry.key.as_str()) {
            problems.push(section.error(
                &entry.key,
                format!(
                    "not supported by the logging override; supported keys: {}",
                    allowed.join(", ")
                ),
            ));
        }
    }
}

fn required(
    file: &ConfigFile,
    name: &str,
    wanted_by: &Section,
    key: &str,
) -> Result<Section, ConfigError> {
    file.raw_section(name)
        .ok_or_else(|| wanted_by.error(key, format!("names [{name}], which is not in the file")))
}

/// A comma-separated list value (`keys`, `handlers`), trimmed, empty items
/// dropped.
fn list(section: &Section, key: &str) -> Vec<String> {
    section
        .get(key)
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(str::to_string)
        .collect()
}

/// A level as an EnvFilter directive's text.
fn directive_level(level: LevelFilter) -> String {
    level.to_string().to_lowercase()
}

/// What the root handler section sets.
struct Handler {
    output: Output,
    format: Option<Format>,
    level: Option<LevelFilter>,
}

/// One reading of the override, collecting every problem it finds so a
/// single run reports them all.
struct Reading<'f> {
    file: &'f ConfigFile,
    problems: Vec<ConfigError>,
}

impl Reading<'_> {
    /// Keeps `result`'s value, or records its error.
    fn keep<T>(&mut self, result: Result<T, ConfigError>) -> Option<T> {
        result.map_err(|e| self.problems.push(e)).ok()
    }

    /// `[logger_root]`: the root level (the first directive) and its
    /// handlers.
    fn root_logger(&mut self, section: &Section, directives: &mut Vec<String>) -> Vec<String> {
        only(section, &["level", "handlers"], &mut self.problems);
        if let Some(l) = self.keep(level(section, "level")) {
            directives.insert(0, directive_level(l));
        }
        list(section, "handlers")
    }

    /// `[logger_NAME]`: a directive for the logger its `qualname` names.
    fn named_logger(&mut self, section: &Section) -> Option<String> {
        only(
            section,
            &["level", "qualname", "handlers", "propagate"],
            &mut self.problems,
        );
        let qualname = section.get("qualname").unwrap_or_default();
        if qualname.is_empty() {
            self.problems.push(section.error(
                "qualname",
                "missing; set it to the logger's name, like baseplate.server",
            ));
            return None;
        }
        let l = self.keep(level(section, "level"))?;
        // Python logger names use dots; tracing targets use `::`.
        Some(format!(
            "{}={}",
            qualname.replace('.', "::"),
            directive_level(l)
        ))
    }

    /// `[handler_NAME]` for the root logger's first handler.
    fn handler(&mut self, name: &str) -> Handler {
        let mut handler = Handler {
            output: Output::Stdout,
            format: None,
            level: None,
        };
        let Some(section) = self.file.raw_section(&format!("handler_{name}")) else {
            self.problems.push(ConfigError {
                file: self.file.path().to_path_buf(),
                line: None,
                section: Some("logger_root".into()),
                key: Some("handlers".into()),
                message: format!("names handler {name:?}, but there is no [handler_{name}]"),
            });
            return handler;
        };
        only(
            &section,
            &["class", "args", "level", "formatter"],
            &mut self.problems,
        );
        let class = section.get("class").unwrap_or_default();
        if !matches!(class, "StreamHandler" | "logging.StreamHandler") {
            self.problems.push(section.error(
                "class",
                format!("{class:?} is not supported; only StreamHandler is"),
            ));
        }
        match section
            .get("args")
            .unwrap_or("()")
            .replace(' ', "")
            .as_str()
        {
            "()" | "(sys.stdout,)" => handler.output = Output::Stdout,
            "(sys.stderr,)" => handler.output = Output::Stderr,
            other => self.problems.push(section.error(
                "args",
                format!("{other:?} is not supported; use (sys.stdout,) or (sys.stderr,)"),
            )),
        }
        if section.get("level").is_some() {
            handler.level = self.keep(level(&section, "level"));
        }
        if let Some(formatter) = section.get("formatter").filter(|f| !f.is_empty()) {
            handler.format = self.formatter(&section, formatter);
        }
        handler
    }

    /// `[formatter_NAME]`, named by `handler`: JSON when its class says so.
    fn formatter(&mut self, handler: &Section, name: &str) -> Option<Format> {
        let section = self.keep(required(
            self.file,
            &format!("formatter_{name}"),
            handler,
            "formatter",
        ))?;
        only(
            &section,
            &["format", "datefmt", "class"],
            &mut self.problems,
        );
        let json = section
            .get("class")
            .is_some_and(|c| c.to_ascii_lowercase().contains("json"));
        Some(if json { Format::Json } else { Format::Text })
    }
}

impl FileLogging {
    /// Reads the override; `Ok(None)` when the file has no `[loggers]`.
    pub(crate) fn from_config(file: &ConfigFile) -> Result<Option<FileLogging>, ConfigErrors> {
        let Some(loggers) = file.raw_section("loggers") else {
            return Ok(None);
        };
        let mut reading = Reading {
            file,
            problems: Vec::new(),
        };
        only(&loggers, &["keys"], &mut reading.problems);
        let names = list(&loggers, "keys");
        if !names.iter().any(|n| n == "root") {
            reading
                .problems
                .push(loggers.error("keys", "must list `root`"));
        }
        let mut directives = Vec::new();
        let mut root_handlers = Vec::new();
        for name in &names {
            let wanted = required(file, &format!("logger_{name}"), &loggers, "keys");
            let Some(section) = reading.keep(wanted) else {
                continue;
            };
            if name == "root" {
                root_handlers = reading.root_logger(&section, &mut directives);
            } else if let Some(directive) = reading.named_logger(&section) {
                directives.push(directive);
            }
        }
        let handler = root_handlers.first().map(|name| reading.handler(name));
        for listing in ["handlers", "formatters"] {
            if let Some(section) = file.raw_section(listing) {
                only(&section, &["keys"], &mut reading.problems);
            }
        }
        if !reading.problems.is_empty() {
            return Err(ConfigErrors(reading.problems));
        }
        Ok(Some(FileLogging {
            directives: directives.join(","),
            output: handler.as_ref().map_or(Output::Stdout, |h| h.output),
            format: handler.as_ref().and_then(|h| h.format),
            handler_level: handler.and_then(|h| h.level),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn read(text: &str) -> Result<Option<FileLogging>, ConfigErrors> {
        FileLogging::from_config(&ConfigFile::parse(Path::new("log.ini"), text.as_bytes()).unwrap())
    }

    #[test]
    fn maps_the_subset() {
        let got = read(
            "[loggers]\nkeys = root, app\n[logger_root]\nlevel = WARNING\nhandlers = console\n\
             [logger_app]\nlevel = DEBUG\nqualname = my_service.web\n[handlers]\nkeys = console\n\
             [handler_console]\nclass = StreamHandler\nargs = (sys.stderr,)\nformatter = j\n\
             [formatters]\nkeys = j\n[formatter_j]\nclass = pythonjsonlogger.jsonlogger.JsonFormatter\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(got.directives, "warn,my_service::web=debug");
        assert_eq!(got.output, Output::Stderr);
        assert_eq!(got.format, Some(Format::Json));
        assert_eq!(read("[server:main]\n").unwrap(), None);
    }

    #[test]
    fn names_what_is_not_supported() {
        let e = read(
            "[loggers]\nkeys = root\n[logger_root]\nlevel = LOUD\nhandlers = f\n[handler_f]\nclass = FileHandler\nargs = ('x.log',)\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("log.ini:4: [logger_root] level: unknown level \"LOUD\""),
            "{e}"
        );
        assert!(
            e.contains("log.ini:7: [handler_f] class: \"FileHandler\" is not supported"),
            "{e}"
        );
        assert!(e.contains("log.ini:8: [handler_f] args:"), "{e}");
    }
}
