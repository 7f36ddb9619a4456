//! The bytes around a message: finding the next whole message in a
//! connection's buffer, unwrapping it (THeader info headers, ZLIB), and
//! wrapping the reply the same way.

use std::ops::Range;

use bytes::Bytes;
use thrift::ApplicationErrorKind;

use crate::app::thrift::exception_message;
use crate::wire::codec::Headers;
use crate::wire::dialect::{classify_frame, detect, Dialect, Protocol, Start};
use crate::wire::header::{self, HeaderError};
use crate::wire::scanner::{Scan, Scanner};

/// A complete message found at the start of the buffer.
pub(super) struct Found {
    pub(super) dialect: Dialect,
    /// The frame contents (THeader, framed) or the whole message (unframed).
    pub(super) body: Range<usize>,
}

/// What the buffer holds.
pub(super) enum Next {
    /// Not a whole message yet: read until the buffer has this many bytes.
    NeedMore(usize),
    Message(Found),
}

/// Finds the next complete message at the start of `buf`. An error means
/// the bytes are not Thrift (or over `max`): the connection must close.
/// `scanning` keeps an unframed message's scan between calls, so it goes on
/// where it stopped; it is reset once the message is found.
pub(super) fn next_message(
    buf: &[u8],
    max: usize,
    scanning: &mut Option<Scanner>,
) -> Result<Next, String> {
    match detect(buf)? {
        Start::NeedMore => Ok(Next::NeedMore(4)),
        Start::Unframed(protocol) => {
            let scanner = scanning.get_or_insert_with(|| Scanner::new(protocol));
            match scanner.resume(buf, max) {
                Ok(Scan::Complete(n)) => {
                    *scanning = None;
                    Ok(Next::Message(Found {
                        dialect: Dialect::Unframed(protocol),
                        body: 0..n,
                    }))
                }
                Ok(Scan::NeedMore(n)) => Ok(Next::NeedMore(n)),
                Err(e) => Err(format!("malformed unframed message: {}", e.0)),
            }
        }
        Start::Frame(length) => {
            let length = length as usize;
            if length > max {
                return Err(format!(
                    "frame of {length} bytes is over max_frame_size ({max})"
                ));
            }
            let end = 4 + length;
            if buf.len() < end {
                return Ok(Next::NeedMore(end));
            }
            let dialect = classify_frame(&buf[4..end])?;
            Ok(Next::Message(Found {
                dialect,
                body: 4..end,
            }))
        }
    }
}

/// How the reply must be wrapped.
#[derive(Debug, Clone)]
pub(super) enum Wrap {
    Framed,
    Unframed,
    Header {
        flags: u16,
        seq_id: u32,
        transforms: Vec<u32>,
    },
}

/// A message taken out of its frame.
pub(super) struct Unwrapped {
    pub(super) protocol: Protocol,
    /// The message itself, with any transforms undone.
    pub(super) message: Bytes,
    pub(super) headers: Headers,
    pub(super) wrap: Wrap,
}

/// Takes the message out of `body` (what [`next_message`] found).
/// `Ok(Err(reply))` is a frame that cannot be read but can be answered (an
/// unknown transform or protocol): the reply, ready to send.
pub(super) fn unwrap(
    body: Bytes,
    dialect: Dialect,
    max: usize,
) -> Result<Result<Unwrapped, Vec<u8>>, String> {
    let no_headers = crate::wire::codec::no_headers;
    Ok(Ok(match dialect {
        Dialect::Framed(protocol) => Unwrapped {
            protocol,
            message: body,
            headers: no_headers(),
            wrap: Wrap::Framed,
        },
        Dialect::Unframed(protocol) => Unwrapped {
            protocol,
            message: body,
            headers: no_headers(),
            wrap: Wrap::Unframed,
        },
        Dialect::Header => match header::decode(&body, max) {
            Ok(frame) => Unwrapped {
                protocol: frame.protocol,
                message: match frame.payload {
                    std::borrow::Cow::Borrowed(slice) => body.slice_ref(slice),
                    std::borrow::Cow::Owned(inflated) => Bytes::from(inflated),
                },
                headers: Headers::from(frame.info),
                wrap: Wrap::Header {
                    flags: frame.flags,
                    seq_id: frame.seq_id,
                    transforms: frame.transforms,
                },
            },
            Err(HeaderError::Malformed(e)) => return Err(format!("malformed THeader frame: {e}")),
            Err(HeaderError::UnknownTransform(t)) => {
                return Ok(Err(header_exception(
                    &body,
                    ApplicationErrorKind::InvalidTransform,
                    format!("unknown THeader transform {t}"),
                )))
            }
            Err(HeaderError::UnknownProtocol(p)) => {
                return Ok(Err(header_exception(
                    &body,
                    ApplicationErrorKind::InvalidProtocol,
                    format!("unsupported THeader protocol id {p}"),
                )))
            }
        },
    }))
}

/// Wraps a reply message as the request was wrapped.
pub(super) fn wrap(wrap: &Wrap, protocol: Protocol, message: Vec<u8>) -> Vec<u8> {
    match wrap {
        Wrap::Unframed => message,
        Wrap::Framed => {
            let mut framed = Vec::with_capacity(4 + message.len());
            framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
            framed.extend_from_slice(&message);
            framed
        }
        Wrap::Header {
            flags,
            seq_id,
            transforms,
        } => header::encode(protocol, *flags, *seq_id, transforms, &[], &message),
    }
}

/// A THeader reply carrying an exception, for frames whose payload cannot
/// be read (unknown transform or protocol): binary, no transforms.
fn header_exception(frame: &[u8], kind: ApplicationErrorKind, message: String) -> Vec<u8> {
    let flags = u16::from_be_bytes([frame[2], frame[3]]);
    let seq_id = u32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let error = thrift::ApplicationError::new(kind, message);
    let reply = exception_message(Protocol::Binary, "", 0, &error);
    header::encode(
        Protocol::Binary,
        flags,
        seq_id,
        &[],
        &[],
        &reply.into_message(),
    )
}
