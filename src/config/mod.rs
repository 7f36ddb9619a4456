//! The config file: reading the INI text ([`ini`]), expanding `$VAR`s
//! ([`expand`]), handing out sections ([`Section`]) and parsing single
//! values with baseplate's rules ([`values`]).

#[doc(hidden)]
pub mod expand;
#[doc(hidden)]
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

/// The most bytes a section's values may take once `$VAR`s are expanded: a
/// small file that references a large variable many times must not take the
/// machine's memory.
pub const MAX_EXPANDED_SIZE: usize = 64 << 20;

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
                crate::os_error::io_reason(&e)
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
            const LISTED: usize = 20;
            let mut found: Vec<String> = self
                .ini
                .sections
                .iter()
                .take(LISTED)
                .map(|s| format!("[{}]", s.name))
                .collect();
            if self.ini.sections.len() > LISTED {
                found.push(format!("and {} more", self.ini.sections.len() - LISTED));
            }
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
        // Without [DEFAULT], nothing is inherited.
        let own: KeySet<&str> = if self.ini.defaults.is_empty() {
            KeySet::default()
        } else {
            raw.entries.iter().map(|e| e.key.as_str()).collect()
        };
        let mut budget = MAX_EXPANDED_SIZE;
        let mut entries = Vec::new();
        for mut e in self.ini.merged_entries(raw) {
            let Some(value) = expand::expand_env(std::mem::take(&mut e.value), &mut budget) else {
                return Err(ConfigError {
                    file: self.path.to_path_buf(),
                    line: Some(e.line),
                    section: Some(full),
                    key: Some(e.key),
                    message: format!(
                        "expanding $VARs makes the section larger than {} MiB; \
                         check which environment variables it references",
                        MAX_EXPANDED_SIZE >> 20
                    ),
                });
            };
            entries.push(Entry {
                value,
                inherited: !self.ini.defaults.is_empty() && !own.contains(e.key.as_str()),
                key: e.key,
                line: e.line,
            });
        }
        Ok(Section {
            file: Arc::clone(&self.path),
            name: full,
            line: raw.line,
            entries,
        })
    }
}

/// A fast hasher for the config reader's own maps of keys, eight bytes per
/// step (the scheme of rustc-hash). The keys come from the operator's config
/// file, not from the network, so SipHash's flooding resistance buys nothing
/// here, and a million keys hash several times faster.
#[derive(Default, Clone, Copy)]
pub(crate) struct FastHash(u64);

impl std::hash::Hasher for FastHash {
    fn finish(&self) -> u64 {
        // The multiply leaves the best-mixed bits at the top; hashbrown
        // picks buckets with the low ones.
        self.0.rotate_left(26)
    }

    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0xf135_7aea_2e62_a9c5;
        let mut hash = self.0;
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            let mut buf = [0u8; 8];
            buf.copy_from_slice(word);
            hash = (hash ^ u64::from_le_bytes(buf)).wrapping_mul(K);
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            let mut buf = [0u8; 8];
            buf[..rest.len()].copy_from_slice(rest);
            let tail = u64::from_le_bytes(buf) ^ ((rest.len() as u64) << 59);
            hash = (hash ^ tail).wrapping_mul(K);
        }
        self.0 = hash;
    }
}

/// A `HashMap` keyed by config keys, with [`FastHash`].
pub(crate) type KeyMap<K, V> =
    std::collections::HashMap<K, V, std::hash::BuildHasherDefault<FastHash>>;

/// A `HashSet` of config keys, with [`FastHash`].
pub(crate) type KeySet<K> = std::collections::HashSet<K, std::hash::BuildHasherDefault<FastHash>>;
