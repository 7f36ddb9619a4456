//! Measures one unframed Thrift message in buffered bytes, so the server can
//! hand the processor a complete message without blocking on the socket.
//!
//! The scan is stateless: it walks the message from the start each time, and
//! when bytes are missing says how many it needs at least, so a caller can
//! wait for them instead of rescanning after every small read.

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

/// Why a scan stopped early.
enum Stop {
    NeedMore(usize),
    Invalid(String),
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    limit: usize,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Step<&[u8]> {
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
        let slice = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    fn byte(&mut self) -> Step<u8> {
        Ok(self.take(1)?[0])
    }

    fn i32(&mut self) -> Step<i32> {
        let b = self.take(4)?;
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
}

/// Measures the message at the start of `bytes`, refusing one longer than `limit`.
pub fn scan(protocol: Protocol, bytes: &[u8], limit: usize) -> Result<Scan, Invalid> {
    let mut cursor = Cursor {
        bytes,
        pos: 0,
        limit,
    };
    let result = match protocol {
        Protocol::Binary => binary_message(&mut cursor),
        Protocol::Compact => compact_message(&mut cursor),
    };
    match result {
        Ok(()) => Ok(Scan::Complete(cursor.pos)),
        Err(Stop::NeedMore(n)) => Ok(Scan::NeedMore(n)),
        Err(Stop::Invalid(why)) => Err(Invalid(why)),
    }
}

// ----- binary -----

fn binary_message(c: &mut Cursor<'_>) -> Step<()> {
    let version = c.i32()? as u32;
    if version & 0xFFFF_0000 != 0x8001_0000 {
        return Err(Stop::Invalid(format!(
            "bad binary version word 0x{version:08x}"
        )));
    }
    let name = c.length()?;
    c.take(name)?;
    c.i32()?; // sequence id
    binary_value(c, 12, 0)
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

fn binary_value(c: &mut Cursor<'_>, ttype: u8, depth: usize) -> Step<()> {
    if depth > MAX_DEPTH {
        return Err(Stop::Invalid("nesting too deep".into()));
    }
    if let Some(size) = binary_fixed_size(ttype) {
        c.take(size)?;
        return Ok(());
    }
    match ttype {
        11 => {
            let n = c.length()?;
            c.take(n)?;
        }
        12 => loop {
            let field = c.byte()?;
            if field == 0 {
                break;
            }
            c.take(2)?;
            binary_value(c, field, depth + 1)?;
        },
        13 => {
            let key = c.byte()?;
            let value = c.byte()?;
            let n = c.length()?;
            binary_elements(c, &[key, value], n, depth)?;
        }
        14 | 15 => {
            let element = c.byte()?;
            let n = c.length()?;
            binary_elements(c, &[element], n, depth)?;
        }
        other => return Err(Stop::Invalid(format!("unknown binary type {other}"))),
    }
    Ok(())
}

fn binary_elements(c: &mut Cursor<'_>, types: &[u8], count: usize, depth: usize) -> Step<()> {
    let fixed: Option<usize> = types.iter().map(|t| binary_fixed_size(*t)).sum();
    if let Some(size) = fixed {
        // All fixed-size: take them in one step, so a missing tail says
        // exactly how much is needed.
        let total = size
            .checked_mul(count)
            .ok_or_else(|| Stop::Invalid("container too large".into()))?;
        c.take(total)?;
        return Ok(());
    }
    for _ in 0..count {
        for &t in types {
            binary_value(c, t, depth + 1)?;
        }
    }
    Ok(())
}

// ----- compact -----

fn compact_message(c: &mut Cursor<'_>) -> Step<()> {
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
    compact_struct(c, 0)
}

fn compact_struct(c: &mut Cursor<'_>, depth: usize) -> Step<()> {
    if depth > MAX_DEPTH {
        return Err(Stop::Invalid("nesting too deep".into()));
    }
    loop {
        let header = c.byte()?;
        let ttype = header & 0x0F;
        if ttype == 0 {
            return Ok(());
        }
        if header >> 4 == 0 {
            c.varint()?; // field id, zigzag
        }
        match ttype {
            1 | 2 => {} // the boolean is in the type
            t => compact_value(c, t, depth + 1)?,
        }
    }
}

fn compact_value(c: &mut Cursor<'_>, ttype: u8, depth: usize) -> Step<()> {
    if depth > MAX_DEPTH {
        return Err(Stop::Invalid("nesting too deep".into()));
    }
    match ttype {
        1..=3 => {
            c.take(1)?;
        }
        4..=6 => {
            c.varint()?;
        }
        7 => {
            c.take(8)?;
        }
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
            compact_elements(c, &[element], count, depth)?;
        }
        11 => {
            let count = c.varint_len()?;
            if count > 0 {
                let types = c.byte()?;
                compact_elements(c, &[types >> 4, types & 0x0F], count, depth)?;
            }
        }
        12 => compact_struct(c, depth)?,
        13 => {
            c.take(16)?;
        }
        other => return Err(Stop::Invalid(format!("unknown compact type {other}"))),
    }
    Ok(())
}

fn compact_elements(c: &mut Cursor<'_>, types: &[u8], count: usize, depth: usize) -> Step<()> {
    // Every element takes at least one byte: refuse counts the limit cannot hold.
    if count > c.limit {
        return Err(Stop::Invalid(format!(
            "container of {count} elements is too large"
        )));
    }
    for _ in 0..count {
        for &t in types {
            compact_value(c, t, depth + 1)?;
        }
    }
    Ok(())
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
