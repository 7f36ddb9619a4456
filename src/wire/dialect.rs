//! Telling Thrift clients apart by their first bytes.

/// The payload encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// TBinaryProtocol (strict).
    Binary,
    /// TCompactProtocol.
    Compact,
}

impl Protocol {
    /// The THeader protocol id.
    pub fn header_id(self) -> u32 {
        match self {
            Protocol::Binary => 0,
            Protocol::Compact => 2,
        }
    }

    /// The protocol for a THeader protocol id.
    pub fn from_header_id(id: u32) -> Option<Protocol> {
        match id {
            0 => Some(Protocol::Binary),
            2 => Some(Protocol::Compact),
            _ => None,
        }
    }
}

/// How a client frames its messages; replies use the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// THeader (the payload protocol is per message).
    Header,
    /// A 4-byte big-endian length, then the message.
    Framed(Protocol),
    /// The message alone.
    Unframed(Protocol),
}

/// What the first four bytes of a message say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Fewer than four bytes so far.
    NeedMore,
    /// An unframed message in this protocol starts here.
    Unframed(Protocol),
    /// A frame of this many bytes follows (THeader, framed binary or framed
    /// compact: [`classify_frame`] tells which).
    Frame(u32),
}

/// The largest frame length the THeader spec allows (just under `HTTP`).
pub const MAX_FRAME_LENGTH: u32 = 0x3FFF_FFFF;

fn is_binary_version(word: u32) -> bool {
    word & 0xFFFF_0000 == 0x8001_0000
}

fn is_compact_start(b0: u8, b1: u8) -> bool {
    b0 == 0x82 && (b1 & 0x1F) == 1
}

/// Reads the start of a message.
pub fn detect(bytes: &[u8]) -> Result<Start, String> {
    let Some(first) = bytes.get(..4) else {
        return Ok(Start::NeedMore);
    };
    let word = u32::from_be_bytes([first[0], first[1], first[2], first[3]]);
    if is_binary_version(word) {
        return Ok(Start::Unframed(Protocol::Binary));
    }
    if is_compact_start(first[0], first[1]) {
        return Ok(Start::Unframed(Protocol::Compact));
    }
    if word > MAX_FRAME_LENGTH {
        return Err(format!("not a Thrift message: first word 0x{word:08x}"));
    }
    Ok(Start::Frame(word))
}

/// What a frame holds, from its first bytes.
pub fn classify_frame(frame: &[u8]) -> Result<Dialect, String> {
    let Some(first) = frame.get(..4) else {
        return Err(format!(
            "a frame of {} bytes is too short for a Thrift message",
            frame.len()
        ));
    };
    let word = u32::from_be_bytes([first[0], first[1], first[2], first[3]]);
    if word >> 16 == 0x0FFF {
        Ok(Dialect::Header)
    } else if is_binary_version(word) {
        Ok(Dialect::Framed(Protocol::Binary))
    } else if is_compact_start(first[0], first[1]) {
        Ok(Dialect::Framed(Protocol::Compact))
    } else {
        Err(format!("unknown frame contents: first word 0x{word:08x}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_each_dialect() {
        assert_eq!(
            detect(&[0x80, 0x01, 0x00, 0x01]),
            Ok(Start::Unframed(Protocol::Binary))
        );
        assert_eq!(
            detect(&[0x82, 0x21, 0x00, 0x01]),
            Ok(Start::Unframed(Protocol::Compact))
        );
        assert_eq!(detect(&[0, 0, 0, 20]), Ok(Start::Frame(20)));
        assert_eq!(detect(&[0, 0]), Ok(Start::NeedMore));
        assert!(detect(b"GET ").is_err());
        assert_eq!(classify_frame(&[0x0F, 0xFF, 0, 0]), Ok(Dialect::Header));
        assert_eq!(
            classify_frame(&[0x80, 0x01, 0, 1]),
            Ok(Dialect::Framed(Protocol::Binary))
        );
        assert_eq!(
            classify_frame(&[0x82, 0x21, 0, 1]),
            Ok(Dialect::Framed(Protocol::Compact))
        );
        assert!(classify_frame(&[1, 2, 3, 4]).is_err());
    }
}
