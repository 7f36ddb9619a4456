//! The config file: reading the INI text ([`ini`]), expanding `$VAR`s
//! ([`expand`]), handing out sections ([`Section`]) and parsing single
//! values with baseplate's rules ([`values`]).

pub mod expand;
pub mod ini;
mod section;
mod typed;
pub mod types;
pub mod values;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use section::{AppConfig, ConfigError, Entry, Section, ServerConfig};
pub use typed::{from_section, ConfigErrors};
pub use types::{
    Base64, File, Percent, Positive, Timespan, TimespanOrInfinite, TimespanOrSeconds, UnixGroup,
    UnixUser,
};
pub use values::Endpoint;

/// A parsed config file.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    path: Arc<PathBuf>,
    ini: ini::Ini,
}

impl ConfigFile {
    /// Reads and parses the file at `path`.
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let bytes = std::fs::read(path).map_err(|e| ConfigError {
            file: path.to_path_buf(),
            line: None,
            section: None,
            key: None,
            message: format!(
                "cannot read the config file: {}",
                crate::error::io_reason(&e)
            ),
        })?;
        Self::parse(path, &bytes)
    }

    /// Parses `bytes` as the contents of the file at `path`.
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Self, ConfigError> {
        let ini = ini::parse_bytes(bytes).map_err(|e| ConfigError {
            file: path.to_path_buf(),
            line: Some(e.line),
            section: None,
            key: None,
            message: e.to_string(),
        })?;
        Ok(ConfigFile {
            path: Arc::new(path.to_path_buf()),
            ini,
        })
    }

    /// The path the file was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether a section with this exact name exists.
    pub fn has_section(&self, name: &str) -> bool {
        self.ini.section(name).is_some()
    }

    /// A section by its exact name with only its own keys (no `[DEFAULT]`,
    /// no `$VAR` expansion), as Python's `logging.config.fileConfig` reads
    /// its sections; `None` if absent.
    pub fn raw_section(&self, name: &str) -> Option<Section> {
        let raw = self.ini.section(name)?;
        Some(Section {
            file: Arc::clone(&self.path),
            name: name.to_string(),
            line: raw.line,
            entries: raw
                .entries
                .iter()
                .map(|e| Entry {
                    key: e.key.clone(),
                    value: e.value.clone(),
                    line: e.line,
                    inherited: false,
                })
                .collect(),
        })
    }

    /// The section `[KIND:NAME]` (kind is `server` or `app`), `[DEFAULT]`
    /// merged in and values expanded from the environment.
    pub fn section(&self, kind: &str, name: &str) -> Result<Section, ConfigError> {
        let full = format!("{kind}:{name}");
        let raw = self.ini.section(&full).ok_or_else(|| {
            let found: Vec<String> = self
                .ini
                .sections
                .iter()
                .map(|s| format!("[{}]", s.name))
                .collect();
            let found = if found.is_empty() {
                "the file has no sections".to_string()
            } else {
                format!("sections found: {}", found.join(", "))
            };
            ConfigError {
                file: self.path.to_path_buf(),
                line: None,
                section: None,
                key: None,
                message: format!(
                    "no [{full}] section ({found}); choose another with --{kind}-name"
                ),
            }
        })?;
        let entries = self
            .ini
            .merged_entries(raw)
            .into_iter()
            .map(|e| Entry {
                value: expand::expand_env(&e.value),
                inherited: !raw.entries.iter().any(|own| own.key == e.key),
                key: e.key,
                line: e.line,
            })
            .collect();
        Ok(Section {
            file: Arc::clone(&self.path),
            name: full,
            line: raw.line,
            entries,
        })
    }
}
