//! The THeader frame: decoding requests and encoding replies, with info
//! key/value headers and the ZLIB transform.

use std::borrow::Cow;
use std::io::{Read, Write};

use super::dialect::Protocol;

/// The ZLIB transform id.
pub const ZLIB: u32 = 1;

/// The most transform ids a frame may list. Real clients send at most one
/// (ZLIB); every transform multiplies the work a small frame can cause.
pub const MAX_TRANSFORMS: usize = 4;

/// A decoded THeader frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderFrame<'a> {
    /// Flags, echoed in the reply.
    pub flags: u16,
    /// The header sequence number, echoed in the reply.
    pub seq_id: u32,
    /// The payload protocol.
    pub protocol: Protocol,
    /// Transform ids, in order.
    pub transforms: Vec<u32>,
    /// Info key/value headers.
    pub info: Vec<(String, String)>,
    /// The payload with the transforms undone: borrowed from the frame
    /// when there were none.
    pub payload: Cow<'a, [u8]>,
}

/// Why a frame could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderError {
    /// The bytes do not follow the format: drop the connection.
    Malformed(String),
    /// A transform this server does not implement: answer with an exception.
    UnknownTransform(u32),
    /// A payload protocol this server does not speak: answer with an exception.
    UnknownProtocol(u32),
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], HeaderError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| {
                HeaderError::Malformed(format!(
                    "header field runs past the end ({n} bytes at {})",
                    self.pos
                ))
            })?;
        let slice = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    fn varint(&mut self) -> Result<u32, HeaderError> {
        let mut value = 0u64;
        for i in 0..5 {
            let b = self.take(1)?[0];
            value |= u64::from(b & 0x7F) << (7 * i);
            if b & 0x80 == 0 {
                return u32::try_from(value)
                    .map_err(|_| HeaderError::Malformed("varint too large".into()));
            }
        }
        Err(HeaderError::Malformed("varint longer than 5 bytes".into()))
    }

    fn string(&mut self) -> Result<String, HeaderError> {
        let n = self.varint()? as usize;
        Ok(String::from_utf8_lossy(self.take(n)?).into_owned())
    }
}

/// Decodes a frame (the bytes after the 4-byte length). The payload may
/// inflate to at most `max_payload` bytes.
pub fn decode(frame: &[u8], max_payload: usize) -> Result<HeaderFrame<'_>, HeaderError> {
    let mut r = Reader {
        bytes: frame,
        pos: 0,
    };
    let fixed = r.take(10)?;
    let magic = u16::from_be_bytes([fixed[0], fixed[1]]);
    if magic != 0x0FFF {
        return Err(HeaderError::Malformed(format!("bad magic 0x{magic:04x}")));
    }
    let flags = u16::from_be_bytes([fixed[2], fixed[3]]);
    let seq_id = u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]);
    let header_len = usize::from(u16::from_be_bytes([fixed[8], fixed[9]])) * 4;
    let block = r.take(header_len)?;
    let payload = &frame[r.pos..];

    let mut h = Reader {
        bytes: block,
        pos: 0,
    };
    let protocol_id = h.varint()?;
    let transform_count = h.varint()? as usize;
    if transform_count > MAX_TRANSFORMS {
        return Err(HeaderError::Malformed(format!(
            "{transform_count} transforms in one frame (at most {MAX_TRANSFORMS})"
        )));
    }
    let mut transforms = Vec::with_capacity(transform_count);
    for _ in 0..transform_count {
        transforms.push(h.varint()?);
    }
    let mut info = Vec::new();
    while h.pos < block.len() {
        match h.varint()? {
            0 => break, // padding
            1 => {
                let count = h.varint()? as usize;
                if count > block.len() {
                    return Err(HeaderError::Malformed(format!(
                        "{count} info headers in a {header_len} byte header"
                    )));
                }
                for _ in 0..count {
                    let key = h.string()?;
                    let value = h.string()?;
                    info.push((key, value));
                }
            }
            // Unknown info types cannot be skipped safely: stop reading info.
            _ => break,
        }
    }
    if transforms.iter().filter(|&&t| t == ZLIB).count() > 1 {
        // Inflating twice could turn one small frame into max_frame_size of
        // work twice over; no client compresses twice.
        return Err(HeaderError::Malformed(
            "ZLIB applied more than once".to_string(),
        ));
    }
    if let Some(&unknown) = transforms.iter().find(|&&t| t != ZLIB) {
        return Err(HeaderError::UnknownTransform(unknown));
    }
    let protocol =
        Protocol::from_header_id(protocol_id).ok_or(HeaderError::UnknownProtocol(protocol_id))?;
    let payload = if transforms.contains(&ZLIB) {
        // Bounded while inflating: at most max_payload bytes are ever made.
        Cow::Owned(inflate(payload, max_payload)?)
    } else {
        Cow::Borrowed(payload)
    };
    Ok(HeaderFrame {
        flags,
        seq_id,
        protocol,
        transforms,
        info,
        payload,
    })
}

fn inflate(data: &[u8], max: usize) -> Result<Vec<u8>, HeaderError> {
    let mut out = Vec::new();
    flate2::read::ZlibDecoder::new(data)
        .take(max as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| HeaderError::Malformed(format!("bad ZLIB payload: {e}")))?;
    if out.len() > max {
        return Err(HeaderError::Malformed(format!(
            "ZLIB payload inflates past {max} bytes"
        )));
    }
    Ok(out)
}

fn put_varint(out: &mut Vec<u8>, mut value: u32) {
    loop {
        let byte = (value & 0x7F) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Encodes a frame, length prefix included, applying `transforms` to the payload.
pub fn encode(
    protocol: Protocol,
    flags: u16,
    seq_id: u32,
    transforms: &[u32],
    info: &[(String, String)],
    payload: &[u8],
) -> Vec<u8> {
    let mut block = Vec::new();
    put_varint(&mut block, protocol.header_id());
    put_varint(&mut block, transforms.len() as u32);
    for &t in transforms {
        put_varint(&mut block, t);
    }
    if !info.is_empty() {
        put_varint(&mut block, 1);
        put_varint(&mut block, info.len() as u32);
        for (k, v) in info {
            put_varint(&mut block, k.len() as u32);
            block.extend_from_slice(k.as_bytes());
            put_varint(&mut block, v.len() as u32);
            block.extend_from_slice(v.as_bytes());
        }
    }
    while block.len() % 4 != 0 {
        block.push(0);
    }
    let mut body = payload.to_vec();
    for _ in transforms.iter().filter(|&&t| t == ZLIB) {
        let mut encoder =
            flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        // Writing to a Vec cannot fail.
        let _ = encoder.write_all(&body);
        body = encoder.finish().unwrap_or_default();
    }
    let length = 10 + block.len() + body.len();
    let mut frame = Vec::with_capacity(4 + length);
    frame.extend_from_slice(&(length as u32).to_be_bytes());
    frame.extend_from_slice(&0x0FFFu16.to_be_bytes());
    frame.extend_from_slice(&flags.to_be_bytes());
    frame.extend_from_slice(&seq_id.to_be_bytes());
    frame.extend_from_slice(&((block.len() / 4) as u16).to_be_bytes());
    frame.extend_from_slice(&block);
    frame.extend_from_slice(&body);
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_info_and_zlib() {
        let info = vec![
            ("Trace".to_string(), "1234".to_string()),
            ("User-Agent".into(), "test".into()),
        ];
        let frame = encode(
            Protocol::Compact,
            1,
            42,
            &[ZLIB],
            &info,
            b"payload payload payload",
        );
        let decoded = decode(&frame[4..], 1 << 20).unwrap();
        assert_eq!(decoded.protocol, Protocol::Compact);
        assert_eq!((decoded.flags, decoded.seq_id), (1, 42));
        assert_eq!(decoded.info, info);
        assert_eq!(&*decoded.payload, b"payload payload payload");
        assert_eq!(
            u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize,
            frame.len() - 4
        );
    }

    #[test]
    fn reports_unknown_transforms_and_bad_frames() {
        let frame = encode(Protocol::Binary, 0, 1, &[3], &[], b"x");
        assert_eq!(
            decode(&frame[4..], 100),
            Err(HeaderError::UnknownTransform(3))
        );
        assert!(matches!(
            decode(&[0x0F, 0xFF, 0, 0, 0, 0, 0, 0, 0x7F, 0xFF], 100),
            Err(HeaderError::Malformed(_))
        ));
        let bomb = encode(Protocol::Binary, 0, 1, &[ZLIB], &[], &vec![0u8; 10_000]);
        assert!(matches!(
            decode(&bomb[4..], 1000),
            Err(HeaderError::Malformed(_))
        ));
        // Compressed twice, or too many transforms: refused before any work.
        let twice = encode(Protocol::Binary, 0, 1, &[ZLIB, ZLIB], &[], b"x");
        assert_eq!(
            decode(&twice[4..], 1000),
            Err(HeaderError::Malformed("ZLIB applied more than once".into()))
        );
        let many = encode(Protocol::Binary, 0, 1, &[3; 5], &[], b"x");
        assert_eq!(
            decode(&many[4..], 1000),
            Err(HeaderError::Malformed(
                "5 transforms in one frame (at most 4)".into()
            ))
        );
    }
}
