//! YAML as Ruby's Psych writes Ruby objects, for the `state` reply: symbol
//! keys (`:state:`), symbol values (`:worker`), `Set`s, `Time`s, `nil` as
//! nothing. Einhorn's clients load the reply with
//! `YAML.safe_load(payload, permitted_classes: [Set, Symbol, Time],
//! aliases: true)` and index it with symbols (`[:state][:children]`), so
//! only this shape gives them the keys and value types Einhorn gives them.
//!
//! Block style with two-space indents, a sequence inside a mapping at the
//! mapping's own indent, as Psych writes them. Strings are always
//! double-quoted (JSON escapes are YAML's), so no string can load as
//! another type.

/// A Ruby value, as `state` needs them.
#[derive(Debug, Clone, PartialEq)]
pub enum Ruby {
    /// `nil`.
    Nil,
    /// `true` or `false`.
    Bool(bool),
    /// An Integer.
    Int(i64),
    /// A Float, as Ruby prints it (`1.0`, `0.25`).
    Float(String),
    /// A String.
    Str(String),
    /// A Symbol (`:worker`).
    Sym(&'static str),
    /// A Time: `YYYY-MM-DD HH:MM:SS.nnnnnnnnn +00:00`.
    Time(String),
    /// A `Set` of strings, as Psych dumps Ruby 3.1's Set.
    Set(Vec<String>),
    /// An Array.
    List(Vec<Ruby>),
    /// A Hash, in order.
    Map(Vec<(Key, Ruby)>),
    /// Any JSON value a client sent (a ping's `request_id`), in flow style.
    Json(serde_json::Value),
}

/// A Hash key.
#[derive(Debug, Clone, PartialEq)]
pub enum Key {
    /// A Symbol key (`:state:`).
    Sym(&'static str),
    /// An Integer key (a pid).
    Int(i64),
}

impl Ruby {
    /// `Some(x)` as `x`, `None` as `nil`.
    pub fn option<T>(value: Option<T>, into: impl FnOnce(T) -> Ruby) -> Ruby {
        value.map_or(Ruby::Nil, into)
    }

    /// A Float as Ruby prints it: `1.0`, `2.5`.
    pub fn float(value: f64) -> Ruby {
        Ruby::Float(format!("{value:?}"))
    }
}

/// The document: `---`, then `value`.
pub fn document(value: &Ruby) -> String {
    let mut out = String::from("---");
    write_value(value, 0, &mut out);
    out.push('\n');
    out
}

/// Writes `value` after a `key:` or `- ` already written, at `indent`
/// (the indent of the line that holds that key).
fn write_value(value: &Ruby, indent: usize, out: &mut String) {
    match value {
        Ruby::Map(entries) if !entries.is_empty() => {
            for (key, value) in entries {
                newline(indent, out);
                write_key(key, out);
                write_value(value, indent + 2, out);
            }
        }
        Ruby::List(items) if !items.is_empty() => {
            // A sequence in a mapping sits at the mapping's indent.
            let at = indent.saturating_sub(2);
            for item in items {
                newline(at, out);
                out.push('-');
                write_item(item, at + 2, out);
            }
        }
        Ruby::Set(members) => {
            out.push_str(" !ruby/object:Set");
            newline(indent, out);
            out.push_str("hash:");
            let hash = members
                .iter()
                .map(|m| (m.clone(), Ruby::Bool(true)))
                .collect::<Vec<_>>();
            if hash.is_empty() {
                out.push_str(" {}");
            }
            for (member, _) in hash {
                newline(indent + 2, out);
                out.push_str(&quote(&member));
                out.push_str(": true");
            }
        }
        scalar => {
            let text = scalar_text(scalar);
            if !text.is_empty() {
                out.push(' ');
                out.push_str(&text);
            }
        }
    }
}

/// A sequence item after its `-`: a nested sequence starts on the same
/// line (`- - a`), a mapping's first key too (`- :a: 1`).
fn write_item(value: &Ruby, indent: usize, out: &mut String) {
    match value {
        Ruby::List(items) if !items.is_empty() => {
            for (i, item) in items.iter().enumerate() {
                if i == 0 {
                    out.push_str(" -");
                } else {
                    newline(indent, out);
                    out.push('-');
                }
                write_item(item, indent + 2, out);
            }
        }
        Ruby::Map(entries) if !entries.is_empty() => {
            for (i, (key, value)) in entries.iter().enumerate() {
                if i == 0 {
                    out.push(' ');
                } else {
                    newline(indent, out);
                }
                write_key(key, out);
                write_value(value, indent + 2, out);
            }
        }
        other => write_value(other, indent, out),
    }
}

fn write_key(key: &Key, out: &mut String) {
    match key {
        Key::Sym(name) => {
            out.push(':');
            out.push_str(name);
        }
        Key::Int(n) => out.push_str(&n.to_string()),
    }
    out.push(':');
}

fn newline(indent: usize, out: &mut String) {
    out.push('\n');
    out.extend(std::iter::repeat_n(' ', indent));
}

/// A scalar's text; empty for `nil`.
fn scalar_text(value: &Ruby) -> String {
    match value {
        Ruby::Nil => String::new(),
        Ruby::Bool(b) => b.to_string(),
        Ruby::Int(n) => n.to_string(),
        Ruby::Float(text) | Ruby::Time(text) => text.clone(),
        Ruby::Str(s) => quote(s),
        Ruby::Sym(name) => format!(":{name}"),
        Ruby::List(_) => "[]".to_string(),
        Ruby::Map(_) => "{}".to_string(),
        Ruby::Json(json) => json.to_string(),
        // Written by write_value.
        Ruby::Set(_) => String::new(),
    }
}

/// A double-quoted YAML string (JSON's escapes are YAML's).
fn quote(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psychs_block_shapes() {
        let value = Ruby::Map(vec![(
            Key::Sym("state"),
            Ruby::Map(vec![
                (
                    Key::Sym("children"),
                    Ruby::Map(vec![(
                        Key::Int(9327),
                        Ruby::Map(vec![
                            (Key::Sym("type"), Ruby::Sym("worker")),
                            (Key::Sym("signaled"), Ruby::Set(vec!["USR2".into()])),
                            (Key::Sym("last_signaled_at"), Ruby::Nil),
                        ]),
                    )]),
                ),
                (Key::Sym("versions"), Ruby::Map(vec![])),
                (
                    Key::Sym("orig_cmd"),
                    Ruby::List(vec![Ruby::Str("/bin/x".into())]),
                ),
                (
                    Key::Sym("bind"),
                    Ruby::List(vec![Ruby::List(vec![
                        Ruby::Str("127.0.0.1".into()),
                        Ruby::Int(0),
                        Ruby::List(vec![]),
                    ])]),
                ),
                (Key::Sym("unsignaled"), Ruby::Set(vec![])),
                (Key::Sym("seconds"), Ruby::Int(1)),
            ]),
        )]);
        assert_eq!(
            document(&value),
            "---\n\
             :state:\n\
             \x20 :children:\n\
             \x20   9327:\n\
             \x20     :type: :worker\n\
             \x20     :signaled: !ruby/object:Set\n\
             \x20       hash:\n\
             \x20         \"USR2\": true\n\
             \x20     :last_signaled_at:\n\
             \x20 :versions: {}\n\
             \x20 :orig_cmd:\n\
             \x20 - \"/bin/x\"\n\
             \x20 :bind:\n\
             \x20 - - \"127.0.0.1\"\n\
             \x20   - 0\n\
             \x20   - []\n\
             \x20 :unsignaled: !ruby/object:Set\n\
             \x20   hash: {}\n\
             \x20 :seconds: 1\n"
        );
    }

    #[test]
    fn strings_never_load_as_another_type() {
        for text in [
            ":sym",
            "true",
            "123",
            "a: b",
            "#x",
            "- x",
            "line\nbreak",
            "\"q\"",
        ] {
            let quoted = quote(text);
            assert!(quoted.starts_with('"') && quoted.ends_with('"'), "{quoted}");
        }
    }
}
