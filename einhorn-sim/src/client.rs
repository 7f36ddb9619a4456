//! The client side of the command socket, as `einhornsh` speaks it: requests
//! with increasing ids, replies read until one without `wait`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

use serde_norway::{Mapping, Value};

use crate::protocol;

/// A connection to a master's command socket.
pub struct Client {
    writer: UnixStream,
    reader: BufReader<UnixStream>,
    next_id: u64,
}

impl Client {
    /// Connects to the command socket at `path`.
    pub fn connect(path: &Path) -> std::io::Result<Client> {
        let writer = UnixStream::connect(path)?;
        let reader = BufReader::new(writer.try_clone()?);
        Ok(Client {
            writer,
            reader,
            next_id: 1,
        })
    }

    /// Fails reads that wait longer than `limit` (none by default).
    pub fn set_timeout(&mut self, limit: Option<std::time::Duration>) -> std::io::Result<()> {
        self.writer.set_read_timeout(limit)
    }

    /// Sends any request mapping.
    pub fn send(&mut self, request: &Value) -> std::io::Result<()> {
        self.writer.write_all(protocol::encode(request).as_bytes())
    }

    /// Sends `{id, command, args}` with the next id.
    pub fn send_command(&mut self, command: &str, args: &[String]) -> std::io::Result<()> {
        let mut map = Mapping::new();
        map.insert("id".into(), self.next_id.into());
        map.insert("command".into(), command.into());
        map.insert(
            "args".into(),
            Value::Sequence(args.iter().map(|a| Value::from(a.as_str())).collect()),
        );
        self.next_id += 1;
        self.send(&Value::Mapping(map))
    }

    /// Reads one reply; `None` at end of stream.
    pub fn read_reply(&mut self) -> std::io::Result<Option<Value>> {
        let mut line = Vec::new();
        if self.reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(None);
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        Ok(Some(protocol::decode(&line).unwrap_or(Value::Null)))
    }

    /// Runs a command, calling `on_reply` for each reply until the final one.
    /// Fails with `UnexpectedEof` if the master hangs up first.
    pub fn run(
        &mut self,
        command: &str,
        args: &[String],
        mut on_reply: impl FnMut(&Value),
    ) -> std::io::Result<()> {
        self.send_command(command, args)?;
        loop {
            let Some(reply) = self.read_reply()? else {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the master closed the connection before the final reply",
                ));
            };
            on_reply(&reply);
            if reply.get("wait").and_then(Value::as_bool) != Some(true) {
                return Ok(());
            }
        }
    }
}

/// Splits a shell-like line into words: whitespace separates, single and
/// double quotes group, backslash escapes. `None` on an unclosed quote.
pub fn shell_words(line: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '\'' => break,
                        c => word.push(c),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => word.push(chars.next()?),
                        c => word.push(c),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(next) = chars.next() {
                    word.push(next);
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Some(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_shellwords() {
        assert_eq!(
            shell_words("signal SIGUSR1 'a b' \"c\\\"d\" e\\ f").unwrap(),
            vec!["signal", "SIGUSR1", "a b", "c\"d", "e f"]
        );
        assert_eq!(shell_words("  ").unwrap(), Vec::<String>::new());
        assert!(shell_words("a 'b").is_none());
    }
}
