//! Typed settings: a serde `Deserializer` over a flat section, where dotted
//! keys become nested structs, as baseplate.py's `parse_config` turns them
//! into nested namespaces.
//!
//! ```
//! # use baseplate::config::{ConfigFile, from_section, Timespan};
//! # use std::path::Path;
//! #[derive(serde::Deserialize)]
//! struct Settings {
//!     noodles: Noodles,
//!     timeout: Timespan,
//!     retries: Option<u32>,
//! }
//! #[derive(serde::Deserialize)]
//! struct Noodles {
//!     blah: Vec<String>,
//! }
//! let file = ConfigFile::parse(Path::new("app.ini"),
//!     b"[app:main]\nnoodles.blah = one, two, three\ntimeout = 30 seconds\n").unwrap();
//! let settings: Settings = from_section(&file.section("app", "main").unwrap()).unwrap();
//! assert_eq!(settings.noodles.blah, ["one", "two", "three"]);
//! assert_eq!(settings.retries, None);
//! ```

use std::borrow::Cow;
use std::fmt;

use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Error as _, IntoDeserializer, MapAccess, SeqAccess,
    Visitor,
};

use super::values::{parse_float, parse_int, quoted};
use super::{ConfigError, Section};

/// Every problem found in a section, each located as precisely as possible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&lines.join("\n"))
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        ConfigErrors(vec![e])
    }
}

/// Reads a section into `T`. Every bad value is reported (not only the
/// first), each as `FILE:LINE: [section] key.path: message`.
pub fn from_section<T: DeserializeOwned>(section: &Section) -> Result<T, ConfigErrors> {
    let mut tree = Tree::build(section);
    let mut problems: Vec<ConfigError> = Vec::new();
    loop {
        let root = NodeDe {
            node: &tree,
            path: String::new(),
            section,
        };
        match T::deserialize(root) {
            Ok(value) if problems.is_empty() => return Ok(value),
            Ok(_) => return Err(ConfigErrors(problems)),
            Err(e) => {
                let (path, unknown) = (e.path.clone(), e.unknown_key);
                let problem = e.into_config_error(section);
                if problems.contains(&problem) || problems.len() >= 1000 {
                    return Err(ConfigErrors(problems));
                }
                problems.push(problem);
                // Read again past the bad key, to find the next problem: an
                // unknown key is dropped, a bad or missing value replaced by
                // a stand-in its type accepts.
                let Some(path) = path else {
                    return Err(ConfigErrors(problems));
                };
                if unknown {
                    tree.remove(&path);
                } else {
                    tree.poison(&path);
                }
            }
        }
    }
}

/// A value with its place in the file.
#[derive(Debug, Clone)]
struct Leaf<'s> {
    /// Borrowed from the section; owned for stand-ins and list items.
    value: Cow<'s, str>,
    line: usize,
    inherited: bool,
}

/// The section's keys split at dots.
#[derive(Debug, Default, Clone)]
struct Tree<'s> {
    leaf: Option<Leaf<'s>>,
    /// In the order the keys first appear.
    children: Vec<(Cow<'s, str>, Tree<'s>)>,
    /// Where each child is in `children`, so a section of many keys builds
    /// in linear time.
    index: super::KeyMap<Cow<'s, str>, usize>,
    /// Already reported: stands in with a value its type accepts.
    poisoned: bool,
}

impl<'s> Tree<'s> {
    /// The child called `part`, created (last) if missing.
    fn child(&mut self, part: Cow<'s, str>) -> &mut Tree<'s> {
        let i = match self.index.get(part.as_ref()) {
            Some(&i) => i,
            None => {
                self.children.push((part.clone(), Tree::default()));
                self.index.insert(part, self.children.len() - 1);
                self.children.len() - 1
            }
        };
        &mut self.children[i].1
    }

    /// The tree of `section`'s keys, borrowing its keys and values.
    fn build(section: &'s Section) -> Tree<'s> {
        let mut root = Tree::default();
        for entry in section.entries() {
            let mut node = &mut root;
            for part in entry.key.split('.') {
                node = node.child(Cow::Borrowed(part));
            }
            node.leaf = Some(Leaf {
                value: Cow::Borrowed(&entry.value),
                line: entry.line,
                inherited: entry.inherited,
            });
        }
        root
    }

    /// Removes the node at a dotted path; whether it existed.
    fn remove(&mut self, path: &str) -> bool {
        let (parent, last) = match path.rsplit_once('.') {
            Some((parent, last)) => (Some(parent), last),
            None => (None, path),
        };
        let mut node = self;
        if let Some(parent) = parent {
            for part in parent.split('.') {
                match node.index.get(part) {
                    Some(&i) => node = &mut node.children[i].1,
                    None => return false,
                }
            }
        }
        let Some(i) = node.index.remove(last) else {
            return false;
        };
        node.children.remove(i);
        for slot in node.index.values_mut() {
            if *slot > i {
                *slot -= 1;
            }
        }
        true
    }

    /// Marks the node at a dotted path (created if missing) as reported.
    fn poison(&mut self, path: &str) {
        let mut node = self;
        for part in path.split('.') {
            node = node.child(Cow::Owned(part.to_string()));
        }
        node.poisoned = true;
    }

    fn inherited(&self) -> bool {
        self.leaf.as_ref().is_none_or(|l| l.inherited)
            && self.children.iter().all(|(_, c)| c.inherited())
    }

    /// The first line anywhere under this node.
    fn first_line(&self) -> Option<usize> {
        self.leaf
            .as_ref()
            .map(|l| l.line)
            .or_else(|| self.children.iter().find_map(|(_, c)| c.first_line()))
    }
}

/// What went wrong, before it is located in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct DeError {
    message: String,
    path: Option<String>,
    line: Option<usize>,
    unknown_key: bool,
}

impl DeError {
    fn located(mut self, path: &str, line: Option<usize>) -> DeError {
        if self.path.is_none() {
            self.path = Some(path.to_string());
            self.line = line;
        }
        self
    }

    fn into_config_error(self, section: &Section) -> ConfigError {
        ConfigError {
            file: section.file().to_path_buf(),
            line: Some(self.line.unwrap_or(section.line())),
            section: Some(section.name().to_string()),
            key: self.path,
            message: self.message,
        }
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

/// A value that is none of `names`: `"yes" is not one of: true, false`.
pub(crate) fn choices(given: &str, names: &[&str]) -> String {
    format!("{} is not one of: {}", quoted(given), names.join(", "))
}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(message: T) -> Self {
        DeError {
            message: message.to_string(),
            path: None,
            line: None,
            unknown_key: false,
        }
    }

    fn missing_field(field: &'static str) -> Self {
        DeError {
            message: format!("missing; add `{field} = ...`"),
            path: Some(format!("\u{0}{field}")),
            line: None,
            unknown_key: false,
        }
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        let mut message = format!("unknown key; expected one of: {}", expected.join(", "));
        if let Some(near) = crate::suggest::nearest(field, expected) {
            message.push_str(&format!(" (did you mean `{near}`?)"));
        }
        DeError {
            unknown_key: true,
            ..DeError::custom(message)
        }
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        DeError::custom(choices(variant, expected))
    }
}

/// Deserializes one node: a struct or map for keys with children, a value
/// for a leaf.
struct NodeDe<'a> {
    node: &'a Tree<'a>,
    path: String,
    section: &'a Section,
}

impl<'a> NodeDe<'a> {
    fn child(&self, key: &str, node: &'a Tree<'a>) -> NodeDe<'a> {
        NodeDe {
            node,
            path: if self.path.is_empty() {
                key.to_string()
            } else {
                format!("{}.{key}", self.path)
            },
            section: self.section,
        }
    }

    fn line(&self) -> Option<usize> {
        self.node.first_line()
    }

    /// The leaf's text, or an error if this key has no value of its own.
    fn text(&self) -> Result<&'a str, DeError> {
        match &self.node.leaf {
            Some(leaf) => Ok(leaf.value.as_ref()),
            None => Err(DeError::custom(format!(
                "expected a value, but only keys below it are set ({})",
                self.node
                    .children
                    .iter()
                    .map(|(k, _)| format!("{}.{k}", self.path))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    fn fail<T>(&self, message: String) -> Result<T, DeError> {
        Err(DeError::custom(message).located(&self.path, self.line()))
    }

    fn int(&self) -> Result<i64, DeError> {
        parse_int(self.text()?).or_else(|m| self.fail(m))
    }

    /// Fixes up a missing-field error from a struct at this node.
    /// Hands `entries` to `visitor` as a map; a missing field's error
    /// names this node.
    fn visit_entries<'de, V: Visitor<'de>>(
        self,
        entries: Vec<&'a (Cow<'a, str>, Tree<'a>)>,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let result = visitor.visit_map(Entries {
            parent: &self,
            entries: entries.into_iter(),
            current: None,
        });
        result.map_err(|e| self.locate_missing(e))
    }

    fn locate_missing(&self, e: DeError) -> DeError {
        match &e.path {
            Some(p) if p.starts_with('\u{0}') => {
                let field = &p[1..];
                let path = if self.path.is_empty() {
                    field.to_string()
                } else {
                    format!("{}.{field}", self.path)
                };
                DeError {
                    path: Some(path),
                    line: Some(self.section.line()),
                    ..e
                }
            }
            _ => e,
        }
    }

    fn items(&self) -> Result<Vec<String>, DeError> {
        let items: Vec<String> = self
            .text()?
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        if items.is_empty() {
            return self.fail("no values provided".to_string());
        }
        Ok(items)
    }
}

macro_rules! int_method {
    ($method:ident, $visit:ident, $ty:ty) => {
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            if self.node.poisoned {
                return visitor.$visit(0);
            }
            let n = self.int()?;
            let n = <$ty>::try_from(n).or_else(|_| {
                self.fail(format!(
                    "{n} is out of range for this setting ({} to {})",
                    <$ty>::MIN,
                    <$ty>::MAX
                ))
            })?;
            visitor.$visit(n)
        }
    };
}

impl<'de, 'a> de::Deserializer<'de> for NodeDe<'a> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if self.node.poisoned {
            return visitor.visit_str("");
        }
        if self.node.children.is_empty() {
            self.deserialize_str(visitor)
        } else {
            self.deserialize_map(visitor)
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if self.node.poisoned {
            return visitor.visit_bool(false);
        }
        let text = self.text()?;
        match text.to_lowercase().as_str() {
            "true" => visitor.visit_bool(true),
            "false" => visitor.visit_bool(false),
            _ => self.fail(choices(text, &["true", "false"])),
        }
    }

    int_method!(deserialize_i8, visit_i8, i8);
    int_method!(deserialize_i16, visit_i16, i16);
    int_method!(deserialize_i32, visit_i32, i32);
    int_method!(deserialize_i64, visit_i64, i64);
    int_method!(deserialize_u8, visit_u8, u8);
    int_method!(deserialize_u16, visit_u16, u16);
    int_method!(deserialize_u32, visit_u32, u32);
    int_method!(deserialize_u64, visit_u64, u64);

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if self.node.poisoned {
            return visitor.visit_f64(0.0);
        }
        let f = parse_float(self.text()?).or_else(|m| self.fail(m))?;
        visitor.visit_f64(f)
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if self.node.poisoned {
            return visitor.visit_char('?');
        }
        let text = self.text()?;
        let mut chars = text.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) => visitor.visit_char(c),
            _ => self.fail(format!("{} is not a single character", quoted(text))),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if self.node.poisoned {
            return visitor.visit_str("");
        }
        let text = self.text()?;
        if text.is_empty() {
            return self.fail("no value specified".to_string());
        }
        visitor
            .visit_str(text)
            .map_err(|e: DeError| e.located(&self.path, self.line()))
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_bytes(self.text()?.as_bytes())
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_bytes(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if self.node.poisoned {
            return visitor.visit_none();
        }
        let empty = self.node.leaf.as_ref().is_none_or(|l| l.value.is_empty())
            && self.node.children.is_empty();
        if empty {
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        if self.node.poisoned {
            if let Some(text) = stand_in(name) {
                let leaf = Tree {
                    leaf: Some(Leaf {
                        value: Cow::Borrowed(text),
                        line: 0,
                        inherited: false,
                    }),
                    ..Tree::default()
                };
                let de = NodeDe {
                    node: &leaf,
                    path: self.path.clone(),
                    section: self.section,
                };
                return visitor.visit_newtype_struct(de);
            }
        }
        let (path, line) = (self.path.clone(), self.line());
        visitor
            .visit_newtype_struct(self)
            .map_err(|e| e.located(&path, line))
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let items = if self.node.poisoned {
            Vec::new()
        } else {
            self.items()?
        };
        let line = self.line();
        visitor
            .visit_seq(Items {
                items: items.into_iter(),
                template: &self,
            })
            .map_err(|e| e.located(&self.path, line))
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let entries: Vec<&'a (Cow<'a, str>, Tree<'a>)> = self.node.children.iter().collect();
        self.visit_entries(entries, visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        // Keys inherited from [DEFAULT] reach a struct only if it asks for
        // them, so `deny_unknown_fields` catches typos, not shared settings.
        let entries: Vec<&'a (Cow<'a, str>, Tree<'a>)> = self
            .node
            .children
            .iter()
            .filter(|(k, child)| !child.inherited() || fields.contains(&k.as_ref()))
            .collect();
        self.visit_entries(entries, visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        if self.node.poisoned {
            let first = variants.first().copied().unwrap_or("");
            return visitor.visit_enum(first.into_deserializer());
        }
        let text = self.text()?;
        let (path, line) = (self.path.clone(), self.line());
        visitor
            .visit_enum(text.into_deserializer())
            .map_err(|e: DeError| e.located(&path, line))
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }
}

/// A value each of this crate's value types accepts, standing in for one
/// already reported as bad.
fn stand_in(type_name: &str) -> Option<&'static str> {
    Some(match type_name {
        "Timespan" | "TimespanOrSeconds" => "0 seconds",
        "TimespanOrInfinite" => "infinite",
        "Percent" => "0%",
        "Endpoint" => ":0",
        "Base64" => "AA==",
        "UnixUser" | "UnixGroup" => "0",
        "File" => "/dev/null",
        "Positive" => "1",
        _ => return None,
    })
}

/// The children of a node, as a map.
struct Entries<'p, 'a> {
    parent: &'p NodeDe<'a>,
    entries: std::vec::IntoIter<&'a (Cow<'a, str>, Tree<'a>)>,
    current: Option<&'a (Cow<'a, str>, Tree<'a>)>,
}

impl<'de, 'a> MapAccess<'de> for Entries<'_, 'a> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let Some(entry) = self.entries.next() else {
            return Ok(None);
        };
        self.current = Some(entry);
        let child = self.parent.child(&entry.0, &entry.1);
        seed.deserialize(entry.0.as_ref().into_deserializer())
            .map(Some)
            .map_err(|e: DeError| e.located(&child.path, child.line()))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let entry = self
            .current
            .take()
            .ok_or_else(|| DeError::custom("a value without a key"))?;
        let child = self.parent.child(&entry.0, &entry.1);
        let (path, line) = (child.path.clone(), child.line());
        seed.deserialize(child).map_err(|e| e.located(&path, line))
    }
}

/// The comma-separated items of a value, as a sequence.
struct Items<'p, 'a> {
    items: std::vec::IntoIter<String>,
    template: &'p NodeDe<'a>,
}

impl<'de> SeqAccess<'de> for Items<'_, '_> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        let Some(item) = self.items.next() else {
            return Ok(None);
        };
        let leaf = Tree {
            leaf: Some(Leaf {
                value: Cow::Owned(item),
                line: self.template.line().unwrap_or(0),
                inherited: false,
            }),
            ..Tree::default()
        };
        let element = NodeDe {
            node: &leaf,
            path: self.template.path.clone(),
            section: self.template.section,
        };
        seed.deserialize(element).map(Some)
    }
}
