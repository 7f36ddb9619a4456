//! An INI reader that matches CPython's `configparser.RawConfigParser`
//! with the settings baseplate.py uses (strict, `=` and `:` delimiters,
//! whole-line `#`/`;` comments, lowercased keys, indented continuation
//! lines, no values without a delimiter).
//!
//! It is a port of `RawConfigParser._read` so that a file means the same
//! thing to this crate as it does to baseplate.py; `tests/ini_differential.rs`
//! checks it against `python3` on generated files.

use super::{KeyMap, KeySet};
use std::borrow::Cow;
use std::fmt;

/// One `key = value` entry, with the 1-based line its key is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEntry {
    /// The key, lowercased.
    pub key: String,
    /// The value as written (no `$VAR` expansion), continuation lines joined with `\n`.
    pub value: String,
    /// The line of the key.
    pub line: usize,
}

/// A `[name]` section as written in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawSection {
    /// The name between the brackets, case kept.
    pub name: String,
    /// The line of the header.
    pub line: usize,
    /// Entries in file order.
    pub entries: Vec<RawEntry>,
}

/// A parsed file: the `[DEFAULT]` entries and the other sections in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ini {
    /// Entries of every `[DEFAULT]` section, in file order.
    pub defaults: Vec<RawEntry>,
    /// All other sections, in file order.
    pub sections: Vec<RawSection>,
}

/// The name of the section whose entries every other section inherits.
pub const DEFAULT_SECTION: &str = "DEFAULT";

impl Ini {
    /// Looks up a section by its exact (case-sensitive) name.
    pub fn section(&self, name: &str) -> Option<&RawSection> {
        self.sections.iter().find(|s| s.name == name)
    }

    /// The entries of a section merged over `[DEFAULT]`, in the order
    /// CPython's `items()` gives them: defaults first, then the section's own
    /// keys; a key the section overrides keeps its default's position.
    pub fn merged_entries(&self, section: &RawSection) -> Vec<RawEntry> {
        if self.defaults.is_empty() {
            return section.entries.clone();
        }
        let mut merged = self.defaults.clone();
        // A section's keys are unique (duplicates are errors), so only the
        // defaults need looking up.
        let slots: KeyMap<&str, usize> = self
            .defaults
            .iter()
            .enumerate()
            .map(|(i, e)| (e.key.as_str(), i))
            .collect();
        for entry in &section.entries {
            match slots.get(entry.key.as_str()) {
                Some(&i) => merged[i] = entry.clone(),
                None => merged.push(entry.clone()),
            }
        }
        merged
    }
}

/// What is wrong with a file, mirroring CPython's exception classes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IniErrorKind {
    /// Content before the first `[section]` header.
    MissingSectionHeader,
    /// A section header seen twice.
    DuplicateSection {
        /// The section name.
        section: String,
    },
    /// A key seen twice in one section.
    DuplicateOption {
        /// The section name.
        section: String,
        /// The (lowercased) key.
        key: String,
    },
    /// A line that is neither a header, an entry, a comment nor a continuation.
    Parsing,
    /// The file is not UTF-8.
    NotUtf8,
}

/// An error with the 1-based line it was found on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IniError {
    /// What is wrong.
    pub kind: IniErrorKind,
    /// The line it is on.
    pub line: usize,
    /// The offending line's text (trimmed), for the message.
    pub text: String,
}

impl fmt::Display for IniError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            IniErrorKind::MissingSectionHeader => write!(
                f,
                "expected a section header like [app:main] before {:?}",
                self.text
            ),
            IniErrorKind::DuplicateSection { section } => {
                write!(f, "section [{section}] is defined twice")
            }
            IniErrorKind::DuplicateOption { section, key } => {
                write!(f, "[{section}] {key}: key is defined twice in this section")
            }
            IniErrorKind::Parsing => write!(
                f,
                "expected `key = value`, a [section] header or a comment, found {:?}",
                self.text
            ),
            IniErrorKind::NotUtf8 => write!(f, "the file is not valid UTF-8"),
        }
    }
}

impl std::error::Error for IniError {}

/// Python's `str.isspace()`: Unicode whitespace plus the ASCII separators
/// U+001C..U+001F, which Rust does not count as whitespace.
fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

fn py_strip(s: &str) -> &str {
    s.trim_matches(is_py_space)
}

/// Parses bytes as a file opened in text mode would be read: UTF-8, with
/// `\r\n` and lone `\r` as line ends.
pub fn parse_bytes(bytes: &[u8]) -> Result<Ini, IniError> {
    match std::str::from_utf8(bytes) {
        Ok(text) => parse(text),
        Err(e) => {
            let line = 1 + bytes[..e.valid_up_to()]
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
            Err(IniError {
                kind: IniErrorKind::NotUtf8,
                line,
                text: String::new(),
            })
        }
    }
}

/// Splits text into lines the way Python's universal-newline mode does.
fn lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        match rest.find(['\n', '\r']) {
            Some(i) => {
                let line = &rest[..i];
                let skip = if rest[i..].starts_with("\r\n") { 2 } else { 1 };
                rest = &rest[i + skip..];
                Some(line)
            }
            None => {
                let line = rest;
                rest = "";
                Some(line)
            }
        }
    })
}

/// Where parsed entries go while reading: `[DEFAULT]` or a section by index.
#[derive(Clone, Copy, PartialEq)]
enum Target {
    Defaults,
    Section(usize),
}

/// An entry while its continuation lines are read: text borrowed from the
/// file until the end, so a key costs one allocation for its key and one
/// for its value.
struct PendingEntry<'t> {
    key: Cow<'t, str>,
    first: &'t str,
    /// Continuation lines (`""` for a blank one).
    more: Vec<&'t str>,
    line: usize,
}

/// The parse in progress: entries read so far, where the next ones go, and
/// the first malformed line (reported only at the end, as CPython does).
#[derive(Default)]
struct Reader<'t> {
    defaults: Vec<PendingEntry<'t>>,
    sections: Vec<(String, usize, Vec<PendingEntry<'t>>)>,
    /// Hashed, so a file of many sections or keys loads in linear time.
    section_index: KeyMap<String, usize>,
    /// The keys seen so far in [DEFAULT] and in each section.
    default_keys: KeySet<Cow<'t, str>>,
    section_keys: Vec<KeySet<Cow<'t, str>>>,
    target: Option<Target>,
    section_name: String,
    /// Index of the entry that continuation lines extend, within `target`.
    current: Option<usize>,
    indent_level: usize,
    first_parse_error: Option<IniError>,
}

impl<'t> Reader<'t> {
    fn entries(&mut self, target: Target) -> &mut Vec<PendingEntry<'t>> {
        match target {
            Target::Defaults => &mut self.defaults,
            Target::Section(i) => &mut self.sections[i].2,
        }
    }

    /// The entry that an indented line continues, if any.
    fn continued(&mut self) -> Option<&mut PendingEntry<'t>> {
        let (target, index) = (self.target?, self.current?);
        Some(&mut self.entries(target)[index])
    }

    /// Reads one line; an error here stops the parse at once.
    fn line(&mut self, lineno: usize, raw_line: &'t str) -> Result<(), IniError> {
        let value = py_strip(raw_line);
        let is_comment = value.starts_with('#') || value.starts_with(';');
        if value.is_empty() || is_comment {
            // A blank line inside a value is kept; a comment line is skipped.
            if !is_comment {
                if let Some(entry) = self.continued() {
                    entry.more.push("");
                }
            }
            return Ok(());
        }
        // Counted in characters, as Python indexes strings.
        let indent = raw_line.chars().take_while(|&c| is_py_space(c)).count();
        if indent > self.indent_level {
            if let Some(entry) = self.continued() {
                entry.more.push(value);
                return Ok(());
            }
        }
        self.indent_level = indent;
        let fail = |kind| IniError {
            kind,
            line: lineno,
            text: value.to_string(),
        };
        if let Some(name) = section_header(value) {
            return self.header(name, lineno).map_err(fail);
        }
        let Some(target) = self.target else {
            return Err(fail(IniErrorKind::MissingSectionHeader));
        };
        match split_option(value) {
            Some((key, val)) => {
                if key.is_empty() {
                    self.first_parse_error
                        .get_or_insert(fail(IniErrorKind::Parsing));
                }
                self.option(target, key, val, lineno).map_err(fail)
            }
            None => {
                self.first_parse_error
                    .get_or_insert(fail(IniErrorKind::Parsing));
                Ok(())
            }
        }
    }

    /// A `[name]` line: later entries go to that section.
    fn header(&mut self, name: &str, lineno: usize) -> Result<(), IniErrorKind> {
        if name == DEFAULT_SECTION {
            self.target = Some(Target::Defaults);
        } else if self.section_index.contains_key(name) {
            return Err(IniErrorKind::DuplicateSection {
                section: name.to_string(),
            });
        } else {
            self.sections.push((name.to_string(), lineno, Vec::new()));
            self.section_keys.push(KeySet::default());
            let index = self.sections.len() - 1;
            self.section_index.insert(name.to_string(), index);
            self.target = Some(Target::Section(index));
        }
        self.section_name = name.to_string();
        self.current = None;
        Ok(())
    }

    /// A `key = value` line in `target`.
    fn option(
        &mut self,
        target: Target,
        key: &'t str,
        value: &'t str,
        lineno: usize,
    ) -> Result<(), IniErrorKind> {
        // Most keys are lowercase ASCII already: borrow those.
        let key = if key.is_ascii() && !key.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Borrowed(key)
        } else {
            Cow::Owned(key.to_lowercase())
        };
        let seen = match target {
            Target::Defaults => &mut self.default_keys,
            Target::Section(i) => &mut self.section_keys[i],
        };
        if !seen.insert(key.clone()) {
            return Err(IniErrorKind::DuplicateOption {
                section: self.section_name.clone(),
                key: key.into_owned(),
            });
        }
        // Duplicates were rejected above, so this key is new here.
        let entries = self.entries(target);
        entries.push(PendingEntry {
            key,
            first: value,
            more: Vec::new(),
            line: lineno,
        });
        // An empty key (already an error) takes no continuation lines.
        self.current = (!entries[entries.len() - 1].key.is_empty()).then(|| entries.len() - 1);
        Ok(())
    }

    /// The file as read, or the first malformed line.
    fn finish(self) -> Result<Ini, IniError> {
        if let Some(e) = self.first_parse_error {
            return Err(e);
        }
        Ok(Ini {
            defaults: finish_entries(self.defaults),
            sections: self
                .sections
                .into_iter()
                .map(|(name, line, entries)| RawSection {
                    name,
                    line,
                    entries: finish_entries(entries),
                })
                .collect(),
        })
    }
}

/// Joins each entry's continuation lines into its value, with trailing
/// whitespace removed.
fn finish_entries(entries: Vec<PendingEntry>) -> Vec<RawEntry> {
    entries
        .into_iter()
        .map(|e| {
            let value = if e.more.is_empty() {
                e.first.trim_end_matches(is_py_space).to_string()
            } else {
                let mut value = e.first.to_string();
                for line in &e.more {
                    value.push('\n');
                    value.push_str(line);
                }
                let kept = value.trim_end_matches(is_py_space).len();
                value.truncate(kept);
                value
            };
            RawEntry {
                key: e.key.into_owned(),
                value,
                line: e.line,
            }
        })
        .collect()
}

/// Splits a stripped line at the first `=` or `:` into key and value, as
/// CPython's option regex does; `None` when there is no delimiter.
fn split_option(line: &str) -> Option<(&str, &str)> {
    let at = line.find(['=', ':'])?;
    let key = line[..at].trim_end_matches(is_py_space);
    let value = py_strip(&line[at + 1..]);
    Some((key, value))
}

/// The header name of a `[name]` line: CPython matches `\[(.+)\]` at the
/// start, greedily, and ignores anything after the last `]`.
fn section_header(line: &str) -> Option<&str> {
    let inner = line.strip_prefix('[')?;
    let close = inner.rfind(']')?;
    (close > 0).then(|| &inner[..close])
}

/// Parses INI text. On error, returns the error CPython would raise:
/// duplicates and a missing header stop reading at once, while the first
/// malformed line is only reported at the end of the file.
pub fn parse(text: &str) -> Result<Ini, IniError> {
    let mut reader = Reader::default();
    for (index, raw_line) in lines(text).enumerate() {
        reader.line(index + 1, raw_line)?;
    }
    reader.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(ini: &Ini, section: &str) -> Vec<(String, String)> {
        let s = ini.section(section).unwrap();
        ini.merged_entries(s)
            .into_iter()
            .map(|e| (e.key, e.value))
            .collect()
    }

    #[test]
    fn reads_baseplate_style_file() {
        let ini = parse(
            "[DEFAULT]\nshared = yes\n\n[app:main]\nFactory = my.app:make\nhosts =\n  a.example\n  b.example\n\n  c.example\n# note\n  ; indented comment\nx = v ; not a comment\nmixed: a=b\n",
        )
        .unwrap();
        assert_eq!(
            values(&ini, "app:main"),
            vec![
                ("shared".into(), "yes".into()),
                ("factory".into(), "my.app:make".into()),
                ("hosts".into(), "\na.example\nb.example\n\nc.example".into()),
                ("x".into(), "v ; not a comment".into()),
                ("mixed".into(), "a=b".into()),
            ]
        );
    }

    #[test]
    fn errors_carry_lines() {
        let e = parse("[a]\nk = 1\nk = 2\n").unwrap_err();
        assert_eq!(e.line, 3);
        assert!(matches!(e.kind, IniErrorKind::DuplicateOption { .. }));
        let e = parse("[a]\n[b]\n[a]\n").unwrap_err();
        assert_eq!(
            (e.line, e.kind.clone()),
            (
                3,
                IniErrorKind::DuplicateSection {
                    section: "a".into()
                }
            )
        );
        let e = parse("\n\nnot ini\n").unwrap_err();
        assert_eq!((e.line, e.kind), (3, IniErrorKind::MissingSectionHeader));
        let e = parse("[a]\nnovalue\nk = 1\n").unwrap_err();
        assert_eq!((e.line, e.kind), (2, IniErrorKind::Parsing));
    }

    #[test]
    fn duplicate_beats_earlier_parse_error() {
        let e = parse("[a]\nbad line\nk = 1\nk = 2\n").unwrap_err();
        assert_eq!(e.line, 4);
    }

    #[test]
    fn an_empty_key_takes_no_continuation_lines() {
        // CPython: the indented line is a new option, so the repeat is a duplicate.
        let e = parse("[a]\n=\n  k = 1\nk = 2\n").unwrap_err();
        assert_eq!(
            (e.line, e.kind.clone()),
            (
                4,
                IniErrorKind::DuplicateOption {
                    section: "a".into(),
                    key: "k".into()
                }
            )
        );
    }

    #[test]
    fn header_is_greedy_to_last_bracket() {
        let ini = parse("[a]]x\nk=1\n").unwrap();
        assert_eq!(ini.sections[0].name, "a]");
    }

    #[test]
    fn keys_are_lowercased_as_python_does_and_duplicates_found_across_cases() {
        // str.lower() also maps titlecase letters, which are not uppercase.
        let ini = parse("[a]\nKey_A = 1\n\u{1c5}x = 2\nplain = 3\n   more\n\n").unwrap();
        assert_eq!(
            values(&ini, "a"),
            [
                ("key_a".to_string(), "1".to_string()),
                ("\u{1c6}x".to_string(), "2".to_string()),
                ("plain".to_string(), "3\nmore".to_string()),
            ]
        );
        let e = parse("[a]\nkey = 1\nKEY = 2\n").unwrap_err();
        assert_eq!(e.line, 3);
    }
}
