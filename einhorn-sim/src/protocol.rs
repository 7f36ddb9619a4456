//! The command-socket wire format, both directions: one message per line,
//! the message a YAML document (JSON is YAML too) with `%` written as `%25`
//! and newlines as `%0A`.

use serde_norway::{Mapping, Value};

/// The longest line a connection may send; a longer one gets
/// `Could not parse command` and the connection is closed.
pub const MAX_LINE: usize = 1024 * 1024;

/// Escapes a document for one line: `%` → `%25`, LF → `%0A`.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '%' => out.push_str("%25"),
            '\n' => out.push_str("%0A"),
            c => out.push(c),
        }
    }
    out
}

/// Reverses [`escape`] in one left-to-right pass; only `%25` and `%0A` are
/// special (case-sensitive), as in Einhorn 1.x.
pub fn unescape(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        if let Some(tail) = after.strip_prefix("%25") {
            out.push('%');
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("%0A") {
            out.push('\n');
            rest = tail;
        } else {
            out.push('%');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    out
}

/// Encodes a value as one line, newline included.
pub fn encode(value: &Value) -> String {
    let yaml = serde_norway::to_string(value).unwrap_or_else(|_| "{}\n".to_string());
    let document = if yaml.starts_with("---") {
        yaml
    } else {
        format!("---\n{yaml}")
    };
    let mut line = escape(&document);
    line.push('\n');
    line
}

/// The deepest nesting a request may have. Real requests nest two levels
/// (`{command: ..., args: [...]}`); YAML parse time grows with the square
/// of the depth, so deeper lines are refused before parsing.
pub const MAX_NESTING: usize = 16;

/// The deepest block indentation a request may have, in columns.
const MAX_INDENT: usize = 4 * MAX_NESTING;

/// Whether a (still escaped) line nests flow collections deeper than
/// [`MAX_NESTING`] or indents blocks past 4 columns per level: one linear
/// pass.
pub fn too_deep(line: &[u8]) -> bool {
    let mut depth = 0usize;
    let mut quote: Option<u8> = None;
    let mut i = 0;
    while i < line.len() {
        let b = line[i];
        match quote {
            Some(q) => {
                if b == b'\\' && q == b'"' {
                    i += 1;
                } else if b == q {
                    quote = None;
                }
            }
            None => match b {
                b'"' | b'\'' => quote = Some(b),
                b'{' | b'[' => {
                    depth += 1;
                    if depth > MAX_NESTING {
                        return true;
                    }
                }
                b'}' | b']' => depth = depth.saturating_sub(1),
                // An escaped newline, then the next line's indentation.
                b'%' if line[i..].starts_with(b"%0A") => {
                    let indent = line[i + 3..].iter().take_while(|&&c| c == b' ').count();
                    if indent > MAX_INDENT {
                        return true;
                    }
                    i += 2;
                }
                _ => {}
            },
        }
        i += 1;
    }
    false
}

/// Decodes one line (without its LF) into a YAML value. `None` when it is
/// not valid UTF-8 or not a YAML document.
pub fn decode(line: &[u8]) -> Option<Value> {
    let text = std::str::from_utf8(line).ok()?;
    let text = text.strip_suffix('\r').unwrap_or(text);
    serde_norway::from_str::<Value>(&unescape(text)).ok()
}

/// A request as the master understands it.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The whole decoded mapping.
    pub fields: Mapping,
}

impl Request {
    /// A request from a decoded value; `None` when it is not a mapping.
    pub fn from_value(value: Value) -> Option<Request> {
        match value {
            Value::Mapping(fields) => Some(Request { fields }),
            _ => None,
        }
    }

    /// A field by its string key.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.fields.get(key)
    }

    /// The `command` field, when it is a string.
    pub fn command(&self) -> Option<&str> {
        self.get("command").and_then(Value::as_str)
    }

    /// The request id, when present and truthy (Einhorn answers falsy ids
    /// "old-style", without `request_id`).
    pub fn id(&self) -> Option<&Value> {
        self.get("id")
            .filter(|v| !matches!(v, Value::Null | Value::Bool(false)))
    }
}

/// Builds a reply mapping: `message`, then `request_id` and `wait` if set.
pub fn reply(message: &str, request_id: Option<&Value>, wait: bool) -> Value {
    let mut map = Mapping::new();
    map.insert("message".into(), Value::String(message.to_string()));
    if let Some(id) = request_id {
        map.insert("request_id".into(), id.clone());
        if wait {
            map.insert("wait".into(), Value::Bool(true));
        }
    }
    Value::Mapping(map)
}

/// Splits a byte buffer into complete lines, keeping an unfinished tail.
#[derive(Debug, Default)]
pub struct LineReader {
    buffer: Vec<u8>,
}

/// What [`LineReader::next_line`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A complete line, without its LF.
    Complete(Vec<u8>),
    /// The unfinished line has grown past [`MAX_LINE`].
    TooLong,
}

impl LineReader {
    /// A reader holding `bytes` not yet split (what a master read before it
    /// re-exec'd this one).
    pub fn with_unread(bytes: Vec<u8>) -> LineReader {
        LineReader { buffer: bytes }
    }

    /// Adds received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next complete line, left in place until [`Self::consume_line`].
    pub fn peek_line(&self) -> Option<Line> {
        match self.buffer.iter().position(|&b| b == b'\n') {
            Some(i) if i <= MAX_LINE => Some(Line::Complete(self.buffer[..i].to_vec())),
            Some(_) => Some(Line::TooLong),
            None if self.buffer.len() > MAX_LINE => Some(Line::TooLong),
            None => None,
        }
    }

    /// Drops the first complete line and its LF, if there is one.
    pub fn consume_line(&mut self) {
        if let Some(i) = self.buffer.iter().position(|&b| b == b'\n') {
            self.buffer.drain(..=i);
        }
    }

    /// The next complete line, taken out.
    pub fn next_line(&mut self) -> Option<Line> {
        let line = self.peek_line();
        if let Some(Line::Complete(_)) = line {
            self.consume_line();
        }
        line
    }

    /// What was received and not taken out as a line yet.
    pub fn unread(&self) -> &[u8] {
        &self.buffer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_einhorn() {
        assert_eq!(
            escape("---\n:foo:\n- \"%bar\"\n"),
            "---%0A:foo:%0A- \"%25bar\"%0A"
        );
        assert_eq!(unescape("a%250Ab%0A%zz"), "a%0Ab\n%zz");
    }

    #[test]
    fn decodes_the_clients_requests() {
        for line in [
            "---%0Aid: 1%0Acommand: state%0Aargs: []%0A",
            "{\"command\": \"state\", \"id\": 1, \"args\": []}",
            "command: state%0Aid: 1%0Aargs: []%0A\r",
        ] {
            let r = Request::from_value(decode(line.as_bytes()).unwrap()).unwrap();
            assert_eq!(r.command(), Some("state"), "{line}");
            assert_eq!(r.id(), Some(&Value::from(1)));
        }
        let ack = Request::from_value(decode(b"---%0Acommand: worker:ack%0Apid: 1234%0A").unwrap())
            .unwrap();
        assert_eq!(ack.get("pid").and_then(Value::as_i64), Some(1234));
        assert!(decode(b"\xff\xfe").is_none());
        assert!(!too_deep(br#"{"command":"upgrade","args":["a[{"]}"#));
        assert!(too_deep("{a: ".repeat(17).as_bytes()));
        assert!(!too_deep("{a: ".repeat(16).as_bytes()));
        assert!(too_deep(format!("a:%0A{}b: 1", " ".repeat(65)).as_bytes()));
        assert!(!too_deep(br#"{"command":"upgrade","args":["a[{"]}"#));
        assert!(too_deep("{a: ".repeat(17).as_bytes()));
        assert!(!too_deep("{a: ".repeat(16).as_bytes()));
        assert!(too_deep(format!("a:%0A{}b: 1", " ".repeat(65)).as_bytes()));
        assert!(Request::from_value(decode(b"just text").unwrap()).is_none());
    }

    #[test]
    fn replies_round_trip() {
        let line = encode(&reply("two\nlines 100%", Some(&Value::from(7)), true));
        assert!(line.ends_with('\n') && !line[..line.len() - 1].contains('\n'));
        let back = decode(line.trim_end().as_bytes()).unwrap();
        assert_eq!(back["message"], Value::from("two\nlines 100%"));
        assert_eq!(back["request_id"], Value::from(7));
        assert_eq!(back["wait"], Value::from(true));
    }

    #[test]
    fn a_peeked_line_stays_until_consumed_and_the_tail_stays_unread() {
        let mut r = LineReader::with_unread(b"a\nb".to_vec());
        assert_eq!(r.peek_line(), Some(Line::Complete(b"a".to_vec())));
        assert_eq!(r.peek_line(), Some(Line::Complete(b"a".to_vec())));
        r.consume_line();
        assert_eq!(r.peek_line(), None);
        assert_eq!(r.unread(), b"b");
        r.push(b"c\n");
        assert_eq!(r.next_line(), Some(Line::Complete(b"bc".to_vec())));
        assert_eq!(r.unread(), b"");
    }

    #[test]
    fn line_reader_buffers_partial_lines() {
        let mut r = LineReader::default();
        r.push(b"a\nb");
        assert_eq!(r.next_line(), Some(Line::Complete(b"a".to_vec())));
        assert_eq!(r.next_line(), None);
        r.push(b"c\n");
        assert_eq!(r.next_line(), Some(Line::Complete(b"bc".to_vec())));
    }
}
