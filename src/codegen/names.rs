//! Rust names for IDL names, made as the Apache Thrift Rust generator
//! makes them, so that baseplate's code and Apache's agree.

/// `is_healthy` → `IsHealthy`.
pub(crate) fn camel(name: &str) -> String {
    name.split('_')
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => first.to_uppercase().chain(chars).collect(),
                None => String::new(),
            }
        })
        .collect()
}

/// `isHealthy` → `is_healthy`.
pub(crate) fn snake(name: &str) -> String {
    let mut out = String::new();
    let mut previous_lower = false;
    for c in name.chars() {
        if c.is_uppercase() {
            if previous_lower {
                out.push('_');
            }
            out.extend(c.to_lowercase());
            previous_lower = false;
        } else {
            out.push(c);
            previous_lower = c.is_lowercase() || c.is_ascii_digit();
        }
    }
    out
}

const KEYWORDS: &[&str] = &[
    "abstract", "as", "async", "await", "become", "box", "break", "const", "continue", "crate",
    "do", "dyn", "else", "enum", "extern", "false", "final", "fn", "for", "if", "impl", "in",
    "let", "loop", "macro", "match", "mod", "move", "mut", "override", "priv", "pub", "ref",
    "return", "self", "Self", "static", "struct", "super", "trait", "true", "try", "type",
    "typeof", "unsafe", "unsized", "use", "virtual", "where", "while", "yield",
];

/// Whether `name` is a Rust keyword.
pub(crate) fn is_keyword(name: &str) -> bool {
    KEYWORDS.contains(&name)
}

/// Keywords the Apache generator leaves as they are in field names, so
/// that its code does not compile (it escapes the others with `_`).
pub(crate) const UNESCAPED_FIELD_KEYWORDS: &[&str] = &["async", "await", "dyn"];

/// A Rust-safe identifier: a keyword gets a trailing `_`.
pub(crate) fn safe(name: String) -> String {
    if KEYWORDS.contains(&name.as_str()) {
        format!("{name}_")
    } else {
        name
    }
}

/// A field's or argument's Rust name.
pub(crate) fn field_name(name: &str) -> String {
    safe(snake(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_apache_generator() {
        assert_eq!(camel("is_healthy"), "IsHealthy");
        assert_eq!(camel("Example"), "Example");
        assert_eq!(snake("isHealthy"), "is_healthy");
        assert_eq!(snake("is_healthy"), "is_healthy");
        assert_eq!(snake("BarBaz"), "bar_baz");
        assert_eq!(field_name("type"), "type_");
    }
}
