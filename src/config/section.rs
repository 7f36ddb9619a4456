//! Sections as servers and apps receive them: `[DEFAULT]` merged in,
//! `$VAR`s expanded, every value still knowing its file and line.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::ser::{Serialize, SerializeMap, Serializer};

use crate::health::Health;

/// One option of a section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The lowercased key, dots kept (`noodles.blah`).
    pub key: String,
    /// The value after `$VAR` expansion.
    pub value: String,
    /// The line the key is on (in `[DEFAULT]` for inherited keys).
    pub line: usize,
    /// Whether the value comes from `[DEFAULT]` rather than the section itself.
    pub inherited: bool,
}

/// A `[server:NAME]` or `[app:NAME]` section, ready for a factory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub(crate) file: Arc<PathBuf>,
    pub(crate) name: String,
    pub(crate) line: usize,
    pub(crate) entries: Vec<Entry>,
}

/// What an app factory receives: its `[app:NAME]` section (every
/// [`Section`] method works on it directly), and the server's [`Health`]
/// for the app's own probe checks.
///
/// The keys baseplate reads itself (`metrics.*`, `tracing.*`,
/// `server_timeout.*`) are left out of the section a server hands its app,
/// so a settings struct with `#[serde(deny_unknown_fields)]` sees only the
/// app's own keys and `factory`.
#[derive(Debug, Clone)]
pub struct AppConfig {
    section: Section,
    health: Health,
}

impl AppConfig {
    /// The config for `section`, with a health state of its own (for tests
    /// and embedding; the server makes its own).
    pub fn new(section: Section) -> AppConfig {
        AppConfig::with_health(section, Health::default())
    }

    /// The config for `section`, whose checks go to `health`.
    pub(crate) fn with_health(section: Section, health: Health) -> AppConfig {
        AppConfig { section, health }
    }

    /// The section itself.
    pub fn section(&self) -> &Section {
        &self.section
    }

    /// The server's health: add readiness, liveness and startup checks
    /// here. The server answers probes from it on both protocols.
    pub fn health(&self) -> &Health {
        &self.health
    }
}

impl std::ops::Deref for AppConfig {
    type Target = Section;

    fn deref(&self) -> &Section {
        &self.section
    }
}

/// The options a server factory receives: its `[server:NAME]` section.
pub type ServerConfig = Section;

impl Section {
    /// Builds a section by hand (for tests and embedding).
    pub fn new(file: impl Into<PathBuf>, name: impl Into<String>, entries: Vec<Entry>) -> Self {
        Section {
            file: Arc::new(file.into()),
            name: name.into(),
            line: 0,
            entries,
        }
    }

    /// The full section name, like `app:main`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The config file this section came from.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// The line of the section header.
    pub fn line(&self) -> usize {
        self.line
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entry(key).map(|e| e.value.as_str())
    }

    /// The entry for `key`, with its line.
    pub fn entry(&self, key: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.key == key)
    }

    /// All entries in the order baseplate.py's `items()` gives them.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The same section with only the keys `keep` accepts.
    pub fn only(&self, keep: impl Fn(&str) -> bool) -> Section {
        Section {
            entries: self
                .entries
                .iter()
                .filter(|e| keep(&e.key))
                .cloned()
                .collect(),
            ..self.clone()
        }
    }

    /// An error about `key` of this section, located at the key's line (or
    /// the section header's, when the key is missing).
    pub fn error(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.to_path_buf(),
            line: Some(self.entry(key).map_or(self.line, |e| e.line)),
            section: Some(self.name.clone()),
            key: Some(key.to_string()),
            message: message.into(),
        }
    }
}

impl Serialize for Section {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.entries.len()))?;
        for e in &self.entries {
            map.serialize_entry(&e.key, &e.value)?;
        }
        map.end()
    }
}

/// A problem with the config file, located as precisely as possible:
/// `FILE:LINE: [section] key: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The config file.
    pub file: PathBuf,
    /// The line, where one applies.
    pub line: Option<usize>,
    /// The section name, like `server:main`.
    pub section: Option<String>,
    /// The key, where one applies.
    pub key: Option<String>,
    /// What is wrong and what was expected.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        write!(f, ":")?;
        if let Some(section) = &self.section {
            write!(f, " [{section}]")?;
        }
        if let Some(key) = &self.key {
            write!(f, " {key}:")?;
        }
        write!(f, " {}", self.message)
    }
}

impl std::error::Error for ConfigError {}
