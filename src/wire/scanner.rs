//! Measures one unframed Thrift message in buffered bytes, so the server can
//! hand the processor a complete message without blocking on the socket.
//!
//! The scan is resumable: a [`Scanner`] keeps how far it has measured and
//! the containers open at that point, and each call goes on from there. So
//! a message that arrives a few bytes at a time costs work linear in its
//! length, not a rescan from the start after every read. When bytes are
//! missing it says how many it needs at least, so a caller can wait for
//! them.

use super::dialect::Protocol;

/// Nesting deeper than this is refused (the `thrift` crate's default limit).
pub const MAX_DEPTH: usize = 64;

/// The result of a scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// The message is complete and this long.
    Complete(usize),
    /// More bytes are needed: at least this many in total.
    NeedMore(usize),
}

/// Why the bytes cannot be a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(pub String);

type Step<T> = Result<T, Stop>;

/// Why a token could not be taken.
enum Stop {
    NeedMore(usize),
    Invalid(String),
}

/// Measures the message at the start of `bytes` in one go, refusing one
/// longer than `limit`.
pub fn scan(protocol: Protocol, bytes: &[u8], limit: usize) -> Result<Scan, Invalid> {
    Scanner::new(protocol).resume(bytes, limit)
}

/// A scan in progress (see the module docs).
#[derive(Debug, Clone)]
pub struct Scanner {
    protocol: Protocol,
    /// Bytes measured so far: always whole tokens.
    pos: usize,
    /// Whether the message header has been measured.
    header_done: bool,
    /// The containers open at `pos`, innermost last.
    stack: Vec<Frame>,
    /// Token attempts, successful or not: the work done, for tests.
    attempts: u64,
}

/// An open container.
#[derive(Debug, Clone, Copy)]
enum Frame {
    /// A struct: next comes a field header, or the stop byte.
    Struct,
    /// The elements of a list or set (`arity` 1) or map (2: key, value),
    /// `remaining` of them still to come, starting with `types[next]`.
    Elements {
        types: [u8; 2],
        arity: u8,
        next: u8,
        remaining: usize,
    },
}

/// What the first token of a value leaves open.
enum Value {
    /// Nothing: the value is complete.
    Leaf,
    /// A container whose contents follow.
    Open(Frame),
}

impl Scanner {
    /// A scan of a message in `protocol`, from its first byte.
    pub fn new(protocol: Protocol) -> Scanner {
        Scanner {
            protocol,
            pos: 0,
            header_done: false,
            stack: Vec::new(),
            attempts: 0,
        }
    }

    /// How many tokens this scan has tried to take so far.
    pub fn attempts(&self) -> u64 {
        self.attempts
    }

    /// Goes on measuring: `bytes` starts at the message's first byte and
    /// holds at least what earlier calls saw.
    pub fn resume(&mut self, bytes: &[u8], limit: usize) -> Result<Scan, Invalid> {
        loop {
            self.attempts += 1;
            let mut c = Cursor {
                bytes,
                pos: self.pos,
                limit,
            };
            match self.token(&mut c) {
                Ok(None) => return Ok(Scan::Complete(self.pos)),
                Ok(Some(())) => {}
                Err(Stop::NeedMore(n)) => return Ok(Scan::NeedMore(n)),
                Err(Stop::Invalid(why)) => return Err(Invalid(why)),
            }
        }
    }

    /// Takes the next token and commits it, or changes nothing. `None`
    /// when the message is complete.
    fn token(&mut self, c: &mut Cursor<'_>) -> Step<Option<()>> {
        let value = match self.stack.last().copied() {
            None if self.header_done => return Ok(None),
            None => {
                match self.protocol {
                    Protocol::Binary => binary_header(c)?,
                    Protocol::Compact => compact_header(c)?,
                }
                self.header_done = true;
                Value::Open(Frame::Struct)
            }
            Some(Frame::Struct) => match self.field_header(c)? {
                None => {
                    self.pos = c.pos;
                    self.stack.pop();
                    return Ok(Some(()));
                }
                Some(ttype) => self.value_start(c, ttype)?,
            },
            Some(Frame::Elements { remaining: 0, .. }) => {
                self.stack.pop();
                return Ok(Some(()));
            }
            Some(Frame::Elements {
                types,
                arity,
                next,
                remaining,
            }) => {
                let value = self.value_start(c, types[usize::from(next)])?;
                let next = (next + 1) % arity;
                if let Some(top) = self.stack.last_mut() {
                    *top = Frame::Elements {
                        types,
                        arity,
                        next,
                        remaining: if next == 0 { remaining - 1 } else { remaining },
                    };
                }
                value
            }
        };
        self.pos = c.pos;
        if let Value::Open(frame) = value {
            if self.stack.len() >= MAX_DEPTH {
                return Err(Stop::Invalid("nesting too deep".into()));
            }
            self.stack.push(frame);
        }
        Ok(Some(()))
    }

    /// A struct's next field header: its type, or `None` for the stop.
    fn field_header(&self, c: &mut Cursor<'_>) -> Step<Option<u8>> {
        match self.protocol {
            Protocol::Binary => {
                let ttype = c.byte()?;
                if ttype == 0 {
                    return Ok(None);
                }
                c.take(2)?; // field id
                Ok(Some(ttype))
            }
            Protocol::Compact => {
                let header = c.byte()?;
                let ttype = header & 0x0F;
                if ttype == 0 {
                    return Ok(None);
                }
                if header >> 4 == 0 {
                    c.varint()?; // field id, zigzag
                }
                // A boolean field's value is its type; the rest follow.
                Ok(Some(if matches!(ttype, 1 | 2) {
                    BOOL_IN_TYPE
                } else {
                    ttype
                }))
            }
        }
    }

    /// The first token of a value of `ttype`.
    fn value_start(&self, c: &mut Cursor<'_>, ttype: u8) -> Step<Value> {
        match self.protocol {
            Protocol::Binary => binary_value(c, ttype),
            Protocol::Compact => compact_value(c, ttype),
        }
    }
}

/// A compact boolean field, whose value is in its header.
const BOOL_IN_TYPE: u8 = 0xFF;

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    limit: usize,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Step<()> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or_else(|| Stop::Invalid("length overflow".into()))?;
        if end > self.limit {
            return Err(Stop::Invalid(format!(
                "message longer than the {} byte limit",
                self.limit
            )));
        }
        if end > self.bytes.len() {
            return Err(Stop::NeedMore(end));
        }
        self.pos = end;
        Ok(())
    }

    fn byte(&mut self) -> Step<u8> {
        let at = self.pos;
        self.take(1)?;
        Ok(self.bytes[at])
    }

    fn i32(&mut self) -> Step<i32> {
        let at = self.pos;
        self.take(4)?;
        let b = &self.bytes[at..at + 4];
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn length(&mut self) -> Step<usize> {
        let n = self.i32()?;
        usize::try_from(n).map_err(|_| Stop::Invalid(format!("negative length {n}")))
    }

    fn varint(&mut self) -> Step<u64> {
        let mut value = 0u64;
        for i in 0..10 {
            let b = self.byte()?;
            value |= u64::from(b & 0x7F) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(Stop::Invalid("varint longer than 10 bytes".into()))
    }

    fn varint_len(&mut self) -> Step<usize> {
        let n = self.varint()?;
        usize::try_from(n).map_err(|_| Stop::Invalid(format!("length {n} too large")))
    }

    /// Refuses a container of `count` elements of at least a byte each that
    /// the limit cannot hold.
    fn plausible(&self, count: usize) -> Step<()> {
        if count > self.limit {
            return Err(Stop::Invalid(format!(
                "container of {count} elements is too large"
            )));
        }
        Ok(())
    }
}

fn elements(types: [u8; 2], arity: u8, remaining: usize) -> Value {
    Value::Open(Frame::Elements {
        types,
        arity,
        next: 0,
        remaining,
    })
}

// ----- binary -----

fn binary_header(c: &mut Cursor<'_>) -> Step<()> {
    let version = c.i32()? as u32;
    if version & 0xFFFF_0000 != 0x8001_0000 {
        return Err(Stop::Invalid(format!(
            "bad binary version word 0x{version:08x}"
        )));
    }
    let name = c.length()?;
    c.take(name)?;
    c.i32()?; // sequence id
    Ok(())
}

fn binary_fixed_size(ttype: u8) -> Option<usize> {
    match ttype {
        2 | 3 => Some(1),
        6 => Some(2),
        8 => Some(4),
        4 | 10 => Some(8),
        16 => Some(16),
        _ => None,
    }
}

fn binary_value(c: &mut Cursor<'_>, ttype: u8) -> Step<Value> {
    if let Some(size) = binary_fixed_size(ttype) {
        c.take(size)?;
        return Ok(Value::Leaf);
    }
    match ttype {
        11 => {
            let n = c.length()?;
            c.take(n)?;
            Ok(Value::Leaf)
        }
        12 => Ok(Value::Open(Frame::Struct)),
        13 => {
            let key = c.byte()?;
            let value = c.byte()?;
            let n = c.length()?;
            binary_elements(c, [key, value], 2, n)
        }
        14 | 15 => {
            let element = c.byte()?;
            let n = c.length()?;
            binary_elements(c, [element, 0], 1, n)
        }
        other => Err(Stop::Invalid(format!("unknown binary type {other}"))),
    }
}

fn binary_elements(c: &mut Cursor<'_>, types: [u8; 2], arity: u8, count: usize) -> Step<Value> {
    let fixed: Option<usize> = types[..usize::from(arity)]
        .iter()
        .map(|t| binary_fixed_size(*t))
        .sum();
    if let Some(size) = fixed {
        // All fixed-size: one token, so a missing tail says exactly how
        // much is needed.
        let total = size
            .checked_mul(count)
            .ok_or_else(|| Stop::Invalid("container too large".into()))?;
        c.take(total)?;
        return Ok(Value::Leaf);
    }
    c.plausible(count)?;
    Ok(elements(types, arity, count))
}

// ----- compact -----

fn compact_header(c: &mut Cursor<'_>) -> Step<()> {
    let id = c.byte()?;
    let version = c.byte()?;
    if id != 0x82 || version & 0x1F != 1 {
        return Err(Stop::Invalid(format!(
            "bad compact header 0x{id:02x} 0x{version:02x}"
        )));
    }
    c.varint()?; // sequence id
    let name = c.varint_len()?;
    c.take(name)?;
    Ok(())
}

fn compact_value(c: &mut Cursor<'_>, ttype: u8) -> Step<Value> {
    match ttype {
        BOOL_IN_TYPE => {}
        1..=3 => c.take(1)?,
        4..=6 => {
            c.varint()?;
        }
        7 => c.take(8)?,
        8 => {
            let n = c.varint_len()?;
            c.take(n)?;
        }
        9 | 10 => {
            let header = c.byte()?;
            let element = header & 0x0F;
            let count = match header >> 4 {
                15 => c.varint_len()?,
                small => usize::from(small),
            };
            c.plausible(count)?;
            return Ok(elements([element, 0], 1, count));
        }
        11 => {
            let count = c.varint_len()?;
            if count > 0 {
                let types = c.byte()?;
                c.plausible(count)?;
                return Ok(elements([types >> 4, types & 0x0F], 2, count));
            }
        }
        12 => return Ok(Value::Open(Frame::Struct)),
        13 => c.take(16)?,
        other => return Err(Stop::Invalid(format!("unknown compact type {other}"))),
    }
    Ok(Value::Leaf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use thrift::protocol::{
        TBinaryOutputProtocol, TCompactOutputProtocol, TFieldIdentifier, TListIdentifier,
        TMapIdentifier, TMessageIdentifier, TMessageType, TOutputProtocol, TStructIdentifier,
        TType,
    };

    fn write_sample(out: &mut dyn TOutputProtocol) {
        out.write_message_begin(&TMessageIdentifier::new("echo", TMessageType::Call, 7))
            .unwrap();
        out.write_struct_begin(&TStructIdentifier::new("args"))
            .unwrap();
        out.write_field_begin(&TFieldIdentifier::new("s", TType::String, 1))
            .unwrap();
        out.write_string("hello").unwrap();
        out.write_field_end().unwrap();
        out.write_field_begin(&TFieldIdentifier::new("b", TType::Bool, 2))
            .unwrap();
        out.write_bool(true).unwrap();
        out.write_field_end().unwrap();
        out.write_field_begin(&TFieldIdentifier::new("l", TType::List, 3))
            .unwrap();
        out.write_list_begin(&TListIdentifier::new(TType::I64, 3))
            .unwrap();
        for v in [1i64, -2, 300_000] {
            out.write_i64(v).unwrap();
        }
        out.write_list_end().unwrap();
        out.write_field_end().unwrap();
        out.write_field_begin(&TFieldIdentifier::new("m", TType::Map, 40))
            .unwrap();
        out.write_map_begin(&TMapIdentifier::new(TType::String, TType::Double, 1))
            .unwrap();
        out.write_string("pi").unwrap();
        out.write_double(2.5).unwrap();
        out.write_map_end().unwrap();
        out.write_field_end().unwrap();
        out.write_field_stop().unwrap();
        out.write_struct_end().unwrap();
        out.write_message_end().unwrap();
        out.flush().unwrap();
    }

    fn check(protocol: Protocol, message: &[u8]) {
        let mut with_tail = message.to_vec();
        with_tail.extend_from_slice(&[0x80, 0x01, 0, 1]);
        assert_eq!(
            scan(protocol, &with_tail, 1 << 20),
            Ok(Scan::Complete(message.len()))
        );
        for end in 0..message.len() {
            match scan(protocol, &message[..end], 1 << 20) {
                Ok(Scan::NeedMore(n)) => {
                    assert!(n > end && n <= message.len(), "prefix {end}: {n}")
                }
                other => panic!("prefix {end}: {other:?}"),
            }
        }
        assert!(
            scan(protocol, message, message.len() - 1).is_err(),
            "limit applies"
        );
    }

    #[test]
    fn measures_binary_messages() {
        let mut bytes = Vec::new();
        write_sample(&mut TBinaryOutputProtocol::new(&mut bytes, true));
        check(Protocol::Binary, &bytes);
    }

    #[test]
    fn measures_compact_messages() {
        let mut bytes = Vec::new();
        write_sample(&mut TCompactOutputProtocol::new(&mut bytes));
        check(Protocol::Compact, &bytes);
    }

    /// A `list<struct>` of `n` one-field structs, as an unframed call.
    fn list_of_structs(protocol: Protocol, n: i32) -> Vec<u8> {
        let mut bytes = Vec::new();
        let write = |out: &mut dyn TOutputProtocol| {
            out.write_message_begin(&TMessageIdentifier::new("m", TMessageType::Call, 1))
                .unwrap();
            out.write_struct_begin(&TStructIdentifier::new("args"))
                .unwrap();
            out.write_field_begin(&TFieldIdentifier::new("l", TType::List, 1))
                .unwrap();
            out.write_list_begin(&TListIdentifier::new(TType::Struct, n))
                .unwrap();
            for i in 0..n {
                out.write_struct_begin(&TStructIdentifier::new("s"))
                    .unwrap();
                out.write_field_begin(&TFieldIdentifier::new("x", TType::I32, 1))
                    .unwrap();
                out.write_i32(i).unwrap();
                out.write_field_end().unwrap();
                out.write_field_stop().unwrap();
                out.write_struct_end().unwrap();
            }
            out.write_list_end().unwrap();
            out.write_field_end().unwrap();
            out.write_field_stop().unwrap();
            out.write_struct_end().unwrap();
            out.write_message_end().unwrap();
        };
        match protocol {
            Protocol::Binary => write(&mut TBinaryOutputProtocol::new(&mut bytes, true)),
            Protocol::Compact => write(&mut TCompactOutputProtocol::new(&mut bytes)),
        }
        bytes
    }

    #[test]
    fn a_message_fed_a_byte_at_a_time_costs_linear_work() {
        for protocol in [Protocol::Binary, Protocol::Compact] {
            let message = list_of_structs(protocol, 2000);
            let mut scanner = Scanner::new(protocol);
            let mut calls = 0u64;
            let mut result = None;
            for end in 1..=message.len() {
                calls += 1;
                match scanner.resume(&message[..end], 1 << 20).unwrap() {
                    Scan::NeedMore(n) => assert!(n > end, "{protocol:?} at {end}: {n}"),
                    Scan::Complete(n) => {
                        result = Some((end, n));
                        break;
                    }
                }
            }
            assert_eq!(result, Some((message.len(), message.len())), "{protocol:?}");
            // Every byte costs a few token attempts at most, and no call
            // rescans what earlier calls measured. (A rescan from the start
            // would cost about len^2 / 2: tens of millions here.)
            let len = message.len() as u64;
            assert!(
                scanner.attempts() <= calls + 3 * len,
                "{protocol:?}: {} attempts for {len} bytes in {calls} calls",
                scanner.attempts()
            );
        }
    }

    #[test]
    fn refuses_hostile_lengths() {
        // A string claiming 2 GiB, and a negative one.
        let mut bytes = vec![
            0x80, 0x01, 0, 1, 0, 0, 0, 1, b'x', 0, 0, 0, 1, 11, 0, 1, 0x7F, 0xFF, 0xFF, 0xFF,
        ];
        assert!(scan(Protocol::Binary, &bytes, 1 << 20).is_err());
        bytes[16] = 0xFF;
        assert!(scan(Protocol::Binary, &bytes, 1 << 20).is_err());
    }
}
