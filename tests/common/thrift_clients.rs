//! Thrift clients for tests: the `thrift` crate's clients in each dialect,
//! and a small THeader client written here from the spec (independent of
//! the server's codec), with info headers and ZLIB.

use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::rc::Rc;

use baseplate::example_apps::example_thrift::ExampleSyncClient;
use thrift::protocol::{
    TBinaryInputProtocol, TBinaryOutputProtocol, TCompactInputProtocol, TCompactOutputProtocol,
    TInputProtocol, TOutputProtocol,
};
use thrift::transport::{
    TBufferedReadTransport, TBufferedWriteTransport, TFramedReadTransport, TFramedWriteTransport,
    TIoChannel, TTcpChannel,
};

use super::WAIT;

pub type Client = ExampleSyncClient<Box<dyn TInputProtocol>, Box<dyn TOutputProtocol>>;

/// `BaseplateService.is_healthy()`, the V1 probe with no arguments, on the
/// example service's client (which knows V2's form, inherited from
/// baseplate.thrift): the wire call older baseplate clients make.
pub trait HealthV1 {
    fn is_healthy(&mut self) -> thrift::Result<bool>;
}

/// Sends a call named `name` with no arguments on `client`'s protocols, and
/// reads the reply's message header (the caller reads the rest).
pub fn call_without_args(
    client: &mut Client,
    name: &str,
) -> thrift::Result<thrift::protocol::TMessageIdentifier> {
    use thrift::protocol::{TMessageIdentifier, TMessageType, TStructIdentifier};
    use thrift::TThriftClient;
    client.increment_sequence_number();
    let call = TMessageIdentifier::new(name, TMessageType::Call, client.sequence_number());
    let o = client.o_prot_mut();
    o.write_message_begin(&call)?;
    o.write_struct_begin(&TStructIdentifier::new("args"))?;
    o.write_field_stop()?;
    o.write_struct_end()?;
    o.write_message_end()?;
    o.flush()?;
    client.i_prot_mut().read_message_begin()
}

impl HealthV1 for Client {
    fn is_healthy(&mut self) -> thrift::Result<bool> {
        use thrift::protocol::{TFieldIdentifier, TMessageType, TType};
        use thrift::TThriftClient;
        let reply = call_without_args(self, "is_healthy")?;
        let i = self.i_prot_mut();
        if reply.message_type == TMessageType::Exception {
            let error = thrift::Error::read_application_error_from_in_protocol(i)?;
            i.read_message_end()?;
            return Err(thrift::Error::Application(error));
        }
        i.read_struct_begin()?;
        let mut healthy = None;
        loop {
            let TFieldIdentifier { field_type, id, .. } = i.read_field_begin()?;
            if field_type == TType::Stop {
                break;
            }
            match (id, field_type) {
                (Some(0), TType::Bool) => healthy = Some(i.read_bool()?),
                _ => i.skip(field_type)?,
            }
            i.read_field_end()?;
        }
        i.read_struct_end()?;
        i.read_message_end()?;
        healthy.ok_or_else(|| thrift::Error::from("is_healthy: no result in the reply"))
    }
}

#[derive(Clone, Copy, Debug)]
pub enum Dialect {
    FramedBinary,
    FramedCompact,
    UnframedBinary,
    UnframedCompact,
}

pub fn crate_client(addr: SocketAddr, dialect: Dialect) -> Client {
    client_on(TcpStream::connect(addr).unwrap(), dialect)
}

/// The example service's client over a connection already open.
pub fn client_on(stream: TcpStream, dialect: Dialect) -> Client {
    // A stalled server fails the test instead of hanging it.
    stream.set_read_timeout(Some(WAIT)).unwrap();
    // The framed transport writes the length and the message separately:
    // with Nagle, the second write would wait for the server's delayed ACK.
    stream.set_nodelay(true).unwrap();
    let (r, w) = TTcpChannel::with_stream(stream).split().unwrap();
    let (input, output): (Box<dyn TInputProtocol>, Box<dyn TOutputProtocol>) = match dialect {
        Dialect::FramedBinary => (
            Box::new(TBinaryInputProtocol::new(
                TFramedReadTransport::new(r),
                true,
            )),
            Box::new(TBinaryOutputProtocol::new(
                TFramedWriteTransport::new(w),
                true,
            )),
        ),
        Dialect::FramedCompact => (
            Box::new(TCompactInputProtocol::new(TFramedReadTransport::new(r))),
            Box::new(TCompactOutputProtocol::new(TFramedWriteTransport::new(w))),
        ),
        Dialect::UnframedBinary => (
            Box::new(TBinaryInputProtocol::new(
                TBufferedReadTransport::new(r),
                true,
            )),
            Box::new(TBinaryOutputProtocol::new(
                TBufferedWriteTransport::new(w),
                true,
            )),
        ),
        Dialect::UnframedCompact => (
            Box::new(TCompactInputProtocol::new(TBufferedReadTransport::new(r))),
            Box::new(TCompactOutputProtocol::new(TBufferedWriteTransport::new(w))),
        ),
    };
    ExampleSyncClient::new(input, output)
}

/// A THeader client transport: buffers a call, sends it as one THeader frame
/// with info headers (and ZLIB) on flush, and reads reply frames back.
struct Header {
    stream: TcpStream,
    compact: bool,
    zlib: bool,
    info: Vec<(String, String)>,
    outgoing: Vec<u8>,
    incoming: std::io::Cursor<Vec<u8>>,
}

fn varint(out: &mut Vec<u8>, mut v: u32) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn read_varint(bytes: &[u8], pos: &mut usize) -> u32 {
    let mut v = 0u32;
    let mut shift = 0;
    loop {
        let b = bytes[*pos];
        *pos += 1;
        v |= u32::from(b & 0x7F) << shift;
        if b & 0x80 == 0 {
            return v;
        }
        shift += 7;
    }
}

/// Encodes a THeader frame (with its length).
pub fn header_frame(
    protocol_id: u32,
    transforms: &[u32],
    info: &[(String, String)],
    payload: &[u8],
) -> Vec<u8> {
    let mut block = Vec::new();
    varint(&mut block, protocol_id);
    varint(&mut block, transforms.len() as u32);
    for t in transforms {
        varint(&mut block, *t);
    }
    if !info.is_empty() {
        varint(&mut block, 1);
        varint(&mut block, info.len() as u32);
        for (k, v) in info {
            varint(&mut block, k.len() as u32);
            block.extend_from_slice(k.as_bytes());
            varint(&mut block, v.len() as u32);
            block.extend_from_slice(v.as_bytes());
        }
    }
    while block.len() % 4 != 0 {
        block.push(0);
    }
    let mut frame = Vec::new();
    frame.extend_from_slice(&((10 + block.len() + payload.len()) as u32).to_be_bytes());
    frame.extend_from_slice(&[0x0F, 0xFF, 0x00, 0x00]); // magic, flags
    frame.extend_from_slice(&7u32.to_be_bytes()); // header seq id
    frame.extend_from_slice(&((block.len() / 4) as u16).to_be_bytes());
    frame.extend_from_slice(&block);
    frame.extend_from_slice(payload);
    frame
}

/// Reads one THeader frame; returns (protocol id, transforms, seq id, payload as sent).
pub fn read_header_frame(stream: &mut TcpStream) -> std::io::Result<(u32, Vec<u32>, u32, Vec<u8>)> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len)?;
    let mut frame = vec![0u8; u32::from_be_bytes(len) as usize];
    stream.read_exact(&mut frame)?;
    assert_eq!(&frame[..2], &[0x0F, 0xFF], "a THeader reply");
    let seq = u32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let header_len = u16::from_be_bytes([frame[8], frame[9]]) as usize * 4;
    let mut pos = 10;
    let protocol = read_varint(&frame, &mut pos);
    let count = read_varint(&frame, &mut pos);
    let transforms = (0..count).map(|_| read_varint(&frame, &mut pos)).collect();
    Ok((protocol, transforms, seq, frame[10 + header_len..].to_vec()))
}

impl Write for Header {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.outgoing.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let payload = std::mem::take(&mut self.outgoing);
        let (payload, transforms) = if self.zlib {
            let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
            z.write_all(&payload)?;
            (z.finish()?, vec![1])
        } else {
            (payload, vec![])
        };
        let frame = header_frame(
            if self.compact { 2 } else { 0 },
            &transforms,
            &self.info,
            &payload,
        );
        self.stream.write_all(&frame)
    }
}

impl Read for Header {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.incoming.position() as usize >= self.incoming.get_ref().len() {
            let (protocol, transforms, seq, payload) = read_header_frame(&mut self.stream)?;
            assert_eq!(
                protocol,
                if self.compact { 2 } else { 0 },
                "the reply uses the request's protocol"
            );
            assert_eq!(seq, 7, "the header seq id is echoed");
            let payload = if transforms == vec![1] {
                let mut out = Vec::new();
                flate2::read::ZlibDecoder::new(&payload[..]).read_to_end(&mut out)?;
                out
            } else {
                assert!(transforms.is_empty());
                payload
            };
            self.incoming = std::io::Cursor::new(payload);
        }
        self.incoming.read(buf)
    }
}

#[derive(Clone)]
struct Shared(Rc<RefCell<Header>>);

impl Read for Shared {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().read(buf)
    }
}

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.borrow_mut().flush()
    }
}

pub fn header_client(addr: SocketAddr, compact: bool, zlib: bool, info: &[(&str, &str)]) -> Client {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.set_nodelay(true).unwrap();
    let shared = Shared(Rc::new(RefCell::new(Header {
        stream,
        compact,
        zlib,
        info: info
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        outgoing: Vec::new(),
        incoming: std::io::Cursor::new(Vec::new()),
    })));
    let (input, output): (Box<dyn TInputProtocol>, Box<dyn TOutputProtocol>) = if compact {
        (
            Box::new(TCompactInputProtocol::new(shared.clone())),
            Box::new(TCompactOutputProtocol::new(shared)),
        )
    } else {
        (
            Box::new(TBinaryInputProtocol::new(shared.clone(), true)),
            Box::new(TBinaryOutputProtocol::new(shared, true)),
        )
    };
    ExampleSyncClient::new(input, output)
}
