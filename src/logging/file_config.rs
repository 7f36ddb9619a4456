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

fn keys(section: &Section) -> Vec<String> {
    section
        .get("keys")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(str::to_string)
        .collect()
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

impl FileLogging {
    /// Reads the override; `Ok(None)` when the file has no `[loggers]`.
    pub(crate) fn from_config(file: &ConfigFile) -> Result<Option<FileLogging>, ConfigErrors> {
        let Some(loggers) = file.raw_section("loggers") else {
            return Ok(None);
        };
        let mut problems = Vec::new();
        only(&loggers, &["keys"], &mut problems);
        let names = keys(&loggers);
        if !names.iter().any(|n| n == "root") {
            problems.push(loggers.error("keys", "must list `root`"));
        }
        let mut directives = Vec::new();
        let mut root_handlers = Vec::new();
        for name in &names {
            let section = match required(file, &format!("logger_{name}"), &loggers, "keys") {
                Ok(s) => s,
                Err(e) => {
                    problems.push(e);
                    continue;
                }
            };
            if name == "root" {
                only(&section, &["level", "handlers"], &mut problems);
                match level(&section, "level") {
                    Ok(l) => directives.insert(0, l.to_string().to_lowercase()),
                    Err(e) => problems.push(e),
                }
                root_handlers = section
                    .get("handlers")
                    .unwrap_or_default()
                    .split(',')
                    .map(str::trim)
                    .filter(|h| !h.is_empty())
                    .map(str::to_string)
                    .collect();
            } else {
                only(
                    &section,
                    &["level", "qualname", "handlers", "propagate"],
                    &mut problems,
                );
                let qualname = section.get("qualname").unwrap_or_default();
                if qualname.is_empty() {
                    problems.push(section.error(
                        "qualname",
                        "missing; set it to the logger's name, like baseplate.server",
                    ));
                    continue;
                }
                match level(&section, "level") {
                    // Python logger names use dots; tracing targets use `::`.
                    Ok(l) => directives.push(format!(
                        "{}={}",
                        qualname.replace('.', "::"),
                        l.to_string().to_lowercase()
                    )),
                    Err(e) => problems.push(e),
                }
            }
        }
        let mut output = Output::Stdout;
        let mut format = None;
        let mut handler_level = None;
        if let Some(handler) = root_handlers.first() {
            match file.raw_section(&format!("handler_{handler}")) {
                None => problems.push(ConfigError {
                    file: file.path().to_path_buf(),
                    line: None,
                    section: Some("logger_root".into()),
                    key: Some("handlers".into()),
                    message: format!(
                        "names handler {handler:?}, but there is no [handler_{handler}]"
                    ),
                }),
                Some(section) => {
                    only(
                        &section,
                        &["class", "args", "level", "formatter"],
                        &mut problems,
                    );
                    let class = section.get("class").unwrap_or_default();
                    if !matches!(class, "StreamHandler" | "logging.StreamHandler") {
                        problems.push(section.error(
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
                        "()" | "(sys.stdout,)" => output = Output::Stdout,
                        "(sys.stderr,)" => output = Output::Stderr,
                        other => problems.push(section.error(
                            "args",
                            format!(
                                "{other:?} is not supported; use (sys.stdout,) or (sys.stderr,)"
                            ),
                        )),
                    }
                    if section.get("level").is_some() {
                        match level(&section, "level") {
                            Ok(l) => handler_level = Some(l),
                            Err(e) => problems.push(e),
                        }
                    }
                    if let Some(formatter) = section.get("formatter").filter(|f| !f.is_empty()) {
                        match required(
                            file,
                            &format!("formatter_{formatter}"),
                            &section,
                            "formatter",
                        ) {
                            Err(e) => problems.push(e),
                            Ok(f) => {
                                only(&f, &["format", "datefmt", "class"], &mut problems);
                                let json = f
                                    .get("class")
                                    .is_some_and(|c| c.to_ascii_lowercase().contains("json"));
                                format = Some(if json { Format::Json } else { Format::Text });
                            }
                        }
                    }
                }
            }
        }
        for listing in ["handlers", "formatters"] {
            if let Some(section) = file.raw_section(listing) {
                only(&section, &["keys"], &mut problems);
            }
        }
        if !problems.is_empty() {
            return Err(ConfigErrors(problems));
        }
        Ok(Some(FileLogging {
            directives: directives.join(","),
            output,
            format,
            handler_level,
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
