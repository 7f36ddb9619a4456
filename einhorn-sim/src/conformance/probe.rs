//! The traffic the kit sends: HTTP, or framed-binary Thrift calls.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// How to talk to the server under test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// `GET /` for normal traffic, `GET SLOW_PATH` for the slow request.
    Http {
        /// The slow request's path, like `/sleep?ms=1000`.
        slow_path: String,
    },
    /// `is_healthy()` for normal traffic, `METHOD(ms)` for the slow call.
    Thrift {
        /// The slow method, taking one i32 argument.
        method: String,
        /// Its argument.
        ms: i32,
    },
}

/// No single request may take longer than this.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

impl Probe {
    /// Parses `--slow-request`: a path for HTTP, `METHOD:ms` for Thrift.
    pub fn new(thrift: bool, slow: Option<&str>) -> Result<Probe, String> {
        if !thrift {
            let slow_path = slow.unwrap_or("/sleep?ms=1000").to_string();
            if !slow_path.starts_with('/') {
                return Err(format!(
                    "--slow-request {slow_path:?}: expected a path starting with /"
                ));
            }
            return Ok(Probe::Http { slow_path });
        }
        let spec = slow.unwrap_or("sleep:1000");
        let (method, ms) = spec
            .split_once(':')
            .and_then(|(m, ms)| Some((m, ms.parse::<i32>().ok()?)))
            .filter(|(m, ms)| !m.is_empty() && *ms >= 0)
            .ok_or_else(|| {
                format!("--slow-request {spec:?}: expected METHOD:MILLISECONDS, like sleep:1000")
            })?;
        Ok(Probe::Thrift {
            method: method.to_string(),
            ms,
        })
    }

    fn connect(&self, addr: SocketAddr) -> Result<TcpStream, String> {
        let stream =
            TcpStream::connect_timeout(&addr, IO_TIMEOUT).map_err(|e| format!("connect: {e}"))?;
        stream
            .set_read_timeout(Some(IO_TIMEOUT))
            .map_err(|e| e.to_string())?;
        stream.set_nodelay(true).ok();
        Ok(stream)
    }

    fn send(&self, stream: &mut TcpStream, slow: bool, close: bool) -> Result<(), String> {
        let bytes = match self {
            Probe::Http { slow_path } => format!(
                "GET {} HTTP/1.1\r\nHost: conformance\r\n{}\r\n",
                if slow { slow_path.as_str() } else { "/" },
                if close { "Connection: close\r\n" } else { "" }
            )
            .into_bytes(),
            Probe::Thrift { method, ms } => {
                if slow {
                    thrift_call(method, Some(*ms))
                } else {
                    thrift_call("is_healthy", None)
                }
            }
        };
        stream.write_all(&bytes).map_err(|e| format!("send: {e}"))
    }

    /// Reads one successful reply.
    pub fn receive(&self, stream: &mut TcpStream) -> Result<(), String> {
        match self {
            Probe::Http { .. } => read_http(stream),
            Probe::Thrift { .. } => read_thrift(stream),
        }
    }

    /// One normal request on a fresh connection.
    pub fn request(&self, addr: SocketAddr) -> Result<(), String> {
        let mut stream = self.connect(addr)?;
        self.send(&mut stream, false, true)?;
        self.receive(&mut stream)
    }

    /// Opens a connection and sends the slow request; the reply is read
    /// later with [`Probe::receive`]. Returns the stream and its local port.
    pub fn start_slow(&self, addr: SocketAddr) -> Result<(TcpStream, u16), String> {
        let mut stream = self.connect(addr)?;
        self.send(&mut stream, true, false)?;
        let port = stream.local_addr().map_err(|e| e.to_string())?.port();
        Ok((stream, port))
    }

    /// A connection that made one normal request and is now idle (kept alive).
    pub fn open_idle(&self, addr: SocketAddr) -> Result<(TcpStream, u16), String> {
        let mut stream = self.connect(addr)?;
        self.send(&mut stream, false, false)?;
        self.receive(&mut stream)?;
        let port = stream.local_addr().map_err(|e| e.to_string())?.port();
        Ok((stream, port))
    }
}

fn read_until_blank_line(stream: &mut TcpStream) -> Result<String, String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(0) => return Err("the connection closed before a response".into()),
            Ok(_) => head.push(byte[0]),
            Err(e) => return Err(format!("no response: {e}")),
        }
        if head.len() > 64 * 1024 {
            return Err("response headers over 64 KiB".into());
        }
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

fn read_http(stream: &mut TcpStream) -> Result<(), String> {
    let head = read_until_blank_line(stream)?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            format!(
                "not an HTTP response: {:?}",
                head.lines().next().unwrap_or("")
            )
        })?;
    let lower = head.to_ascii_lowercase();
    if lower.contains("transfer-encoding: chunked") {
        let mut body = Vec::new();
        let mut byte = [0u8; 1];
        while !body.ends_with(b"0\r\n\r\n") {
            match stream.read(&mut byte) {
                Ok(0) => return Err("the connection closed inside a chunked body".into()),
                Ok(_) => body.push(byte[0]),
                Err(e) => return Err(format!("reading the body: {e}")),
            }
        }
    } else {
        let length: usize = lower
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; length];
        stream
            .read_exact(&mut body)
            .map_err(|e| format!("reading the body: {e}"))?;
    }
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(format!("HTTP status {status}"))
    }
}

/// A framed TBinaryProtocol call with no arguments, or one i32 argument.
fn thrift_call(method: &str, arg: Option<i32>) -> Vec<u8> {
    let mut message = Vec::new();
    message.extend_from_slice(&0x8001_0001u32.to_be_bytes()); // version 1, CALL
    message.extend_from_slice(&(method.len() as u32).to_be_bytes());
    message.extend_from_slice(method.as_bytes());
    message.extend_from_slice(&1u32.to_be_bytes()); // sequence id
    if let Some(value) = arg {
        message.push(8); // i32
        message.extend_from_slice(&1u16.to_be_bytes()); // field 1
        message.extend_from_slice(&value.to_be_bytes());
    }
    message.push(0); // stop
    let mut framed = (message.len() as u32).to_be_bytes().to_vec();
    framed.extend_from_slice(&message);
    framed
}

fn read_thrift(stream: &mut TcpStream) -> Result<(), String> {
    let mut length = [0u8; 4];
    stream
        .read_exact(&mut length)
        .map_err(|e| format!("no Thrift reply: {e}"))?;
    let length = u32::from_be_bytes(length) as usize;
    if length > 16 * 1024 * 1024 {
        return Err(format!("a reply frame of {length} bytes"));
    }
    let mut frame = vec![0u8; length];
    stream
        .read_exact(&mut frame)
        .map_err(|e| format!("a truncated Thrift reply: {e}"))?;
    match frame.get(..4) {
        Some([0x80, 0x01, _, 2]) => Ok(()),
        Some([0x80, 0x01, _, 3]) => Err("the reply is a TApplicationException".into()),
        _ => Err("the reply is not a framed binary Thrift reply".into()),
    }
}
