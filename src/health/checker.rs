//! The client side of health probes, with the wire behaviour of
//! baseplate.py's `python -m baseplate.healthcheck`: what
//! `baseplate-healthcheck` runs, and what a Kubernetes exec probe calls.
//!
//! - `thrift`: one THeader (binary) call of
//!   `BaseplateServiceV2.is_healthy(IsHealthyRequest(probe=N))`; healthy
//!   only if it returns `true`.
//! - `wsgi` (or `http`): `GET /health?type=N` with N the probe's number;
//!   healthy only on a 2xx status whose body is JSON.
//!
//! Every failure is one line saying what was asked of whom and what came
//! back.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use thrift::protocol::{TMessageIdentifier, TMessageType};

use super::Probe;
use crate::config::Endpoint;
use crate::wire::codec::{with_input, with_output};
use crate::wire::dialect::Protocol;
use crate::wire::header;

/// The protocol a service speaks, as the checker's `TYPE` argument names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A Thrift service (`thrift`).
    Thrift,
    /// An HTTP service (`wsgi`, or `http`).
    Http,
}

impl std::str::FromStr for Kind {
    type Err = String;

    fn from_str(text: &str) -> Result<Kind, String> {
        match text {
            "thrift" => Ok(Kind::Thrift),
            "wsgi" | "http" => Ok(Kind::Http),
            _ => Err(format!(
                "{text:?} is not a service type; use thrift, wsgi or http"
            )),
        }
    }
}

/// The largest answer read, in bytes: a probe's answer is small.
const MAX_ANSWER: usize = 1 << 20;

/// How much of an unexpected body a failure line quotes.
const QUOTED: usize = 200;

/// Probes `endpoint`: `Ok` when healthy, else why not, in one line. The
/// whole exchange, connecting included, must finish within `timeout`.
pub fn check(
    kind: Kind,
    endpoint: &Endpoint,
    probe: Probe,
    timeout: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let mut stream = connect(endpoint, deadline)
        .map_err(|e| format!("cannot connect to {endpoint}: {}", describe(&e, timeout)))?;
    let asked = match kind {
        Kind::Thrift => format!("is_healthy({probe})"),
        Kind::Http => format!("GET {}", http_path(probe)),
    };
    let exchanged = match kind {
        Kind::Thrift => thrift_exchange(&mut stream, probe, deadline),
        Kind::Http => http_exchange(&mut stream, endpoint, probe, deadline),
    };
    let other_protocol = match (kind, &exchanged) {
        (Kind::Thrift, Ok(Err(Unhealthy::InHttp))) => true,
        (Kind::Http, Ok(Err(Unhealthy::Nothing))) => speaks_thrift(endpoint, probe, deadline),
        _ => false,
    };
    if other_protocol {
        let (speaks, not, command) = match kind {
            Kind::Thrift => ("HTTP", "Thrift", "wsgi"),
            Kind::Http => ("Thrift", "HTTP", "thrift"),
        };
        return Err(format!(
            "{endpoint} speaks {speaks}, not {not}: probe it with \
             `baseplate-healthcheck {command} {endpoint}`"
        ));
    }
    match exchanged {
        Ok(Ok(())) => Ok(()),
        Ok(Err(why)) => Err(format!("unhealthy: {endpoint} answered {asked} {why}")),
        Err(e) => Err(format!(
            "no answer to {asked} from {endpoint}: {}",
            describe(&e, timeout)
        )),
    }
}

/// An I/O error as a failure line says it; a timeout names the limit.
fn describe(e: &io::Error, timeout: Duration) -> String {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            format!("timed out after {}s", timeout.as_secs_f64())
        }
        _ => e.to_string(),
    }
}

/// Why an answer is not healthy.
#[derive(Debug)]
enum Unhealthy {
    /// What the answer said, as a failure line words it.
    Said(String),
    /// An HTTP response to a Thrift call: the service speaks HTTP.
    InHttp,
    /// The connection closed with no byte in answer to an HTTP request, as
    /// a Thrift server does.
    Nothing,
}

impl std::fmt::Display for Unhealthy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unhealthy::Said(why) => f.write_str(why),
            Unhealthy::InHttp => f.write_str("in HTTP"),
            Unhealthy::Nothing => f.write_str("by closing the connection without a response"),
        }
    }
}

/// Whether `endpoint` answers a Thrift `is_healthy` with a THeader frame.
fn speaks_thrift(endpoint: &Endpoint, probe: Probe, deadline: Instant) -> bool {
    let Ok(mut stream) = connect(endpoint, deadline) else {
        return false;
    };
    !matches!(
        thrift_exchange(&mut stream, probe, deadline),
        Err(_) | Ok(Err(Unhealthy::InHttp | Unhealthy::Nothing))
    )
}

/// A connected stream of either kind.
enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    /// Gives the next read or write until `deadline`.
    fn until(&mut self, deadline: Instant) -> io::Result<&mut dyn ReadWrite> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        Ok(match self {
            Stream::Tcp(s) => {
                s.set_read_timeout(Some(left))?;
                s.set_write_timeout(Some(left))?;
                s as &mut dyn ReadWrite
            }
            Stream::Unix(s) => {
                s.set_read_timeout(Some(left))?;
                s.set_write_timeout(Some(left))?;
                s as &mut dyn ReadWrite
            }
        })
    }

    fn write_all(&mut self, bytes: &[u8], deadline: Instant) -> io::Result<()> {
        self.until(deadline)?.write_all(bytes)
    }

    /// Reads until `enough` says the bytes so far are a whole answer, or
    /// the peer closes.
    fn read_until(
        &mut self,
        deadline: Instant,
        enough: impl Fn(&[u8]) -> bool,
    ) -> io::Result<Vec<u8>> {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        while !enough(&buf) {
            let n = self.until(deadline)?.read(&mut chunk)?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.len() > MAX_ANSWER {
                return Err(io::Error::other(format!(
                    "the answer is over {MAX_ANSWER} bytes"
                )));
            }
        }
        Ok(buf)
    }
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

fn connect(endpoint: &Endpoint, deadline: Instant) -> io::Result<Stream> {
    match endpoint {
        Endpoint::Unix(path) => connect_unix(path, deadline).map(Stream::Unix),
        Endpoint::Tcp { host, port } => {
            let host = if host.is_empty() { "127.0.0.1" } else { host };
            let mut last = io::Error::new(io::ErrorKind::NotFound, "the host has no address");
            for addr in (host, *port).to_socket_addrs()? {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(io::ErrorKind::TimedOut.into());
                }
                match TcpStream::connect_timeout(&addr, left) {
                    Ok(stream) => {
                        stream.set_nodelay(true)?;
                        return Ok(Stream::Tcp(stream));
                    }
                    Err(e) => last = e,
                }
            }
            Err(last)
        }
    }
}

/// Connects to a UNIX socket by `deadline`. A blocking connect to a
/// listener whose backlog is full waits for a free slot for as long as
/// that takes, so the connect is non-blocking and retried (the kernel
/// answers `EAGAIN` while the backlog is full) until the deadline.
fn connect_unix(path: &std::path::Path, deadline: Instant) -> io::Result<UnixStream> {
    use nix::errno::Errno;
    use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, UnixAddr};
    let address = UnixAddr::new(path).map_err(io::Error::from)?;
    let socket = socket::socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(io::Error::from)?;
    loop {
        match socket::connect(std::os::fd::AsRawFd::as_raw_fd(&socket), &address) {
            Ok(()) => break,
            Err(Errno::EAGAIN) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10).min(deadline - Instant::now()));
            }
            Err(Errno::EAGAIN) => return Err(io::ErrorKind::TimedOut.into()),
            Err(e) => return Err(e.into()),
        }
    }
    let stream = UnixStream::from(socket);
    stream.set_nonblocking(false)?;
    Ok(stream)
}

fn http_path(probe: Probe) -> String {
    format!("/health?type={}", probe.number())
}

/// Sends the probe request; `Ok(Err(why))` is an answer that is not
/// healthy.
fn http_exchange(
    stream: &mut Stream,
    endpoint: &Endpoint,
    probe: Probe,
    deadline: Instant,
) -> io::Result<Result<(), Unhealthy>> {
    let host = match endpoint {
        Endpoint::Tcp { .. } => endpoint.to_string(),
        Endpoint::Unix(_) => "localhost".to_string(),
    };
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: baseplate-healthcheck\r\nAccept: application/json\r\nConnection: close\r\n\r\n",
        http_path(probe)
    );
    stream.write_all(request.as_bytes(), deadline)?;
    // `Connection: close`: the answer ends where the stream does, unless
    // its length says so first.
    let answer = stream.read_until(deadline, |bytes| {
        parse_http(bytes).is_some_and(|parsed| parsed.is_ok())
    })?;
    if answer.is_empty() {
        return Ok(Err(Unhealthy::Nothing));
    }
    Ok(http_answer(&answer).map_err(Unhealthy::Said))
}

/// Whether a whole HTTP answer is healthy: a 2xx with a JSON body.
fn http_answer(answer: &[u8]) -> Result<(), String> {
    match parse_http(answer) {
        None => Err("with an incomplete HTTP response".to_string()),
        Some(Err(why)) => Err(why),
        Some(Ok((status, body))) => {
            let shown = quote(&body);
            if !(200..300).contains(&status) {
                Err(format!("with status {status}: {shown}"))
            } else if serde_json::from_slice::<serde_json::Value>(&body).is_err() {
                Err(format!(
                    "with status {status} but a body that is not JSON: {shown}"
                ))
            } else {
                Ok(())
            }
        }
    }
}

/// The status and body of a whole HTTP/1 response; `None` while more bytes
/// are needed, `Some(Err)` for bytes that are no HTTP response.
fn parse_http(bytes: &[u8]) -> Option<Result<(u16, Vec<u8>), String>> {
    let head_end = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&bytes[..head_end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = match status_line.split(' ').collect::<Vec<_>>()[..] {
        [version, code, ..] if version.starts_with("HTTP/1.") => code.parse::<u16>().ok(),
        _ => None,
    };
    let Some(status) = status else {
        return Some(Err(format!(
            "with something that is not an HTTP response: {}",
            quote(status_line.as_bytes())
        )));
    };
    let mut length = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = value.parse::<usize>().ok();
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        }
    }
    let body = &bytes[head_end + 4..];
    if chunked {
        return dechunk(body).map(|body| Ok((status, body)));
    }
    match length {
        Some(n) if body.len() >= n => Some(Ok((status, body[..n].to_vec()))),
        Some(_) => None,
        // Without a length the body runs to the end of the stream, which
        // only the reader sees: it stops there and takes what came.
        None => Some(Ok((status, body.to_vec()))),
    }
}

/// A whole chunked body, or `None` while its last chunk has not come.
fn dechunk(mut bytes: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = bytes.windows(2).position(|w| w == b"\r\n")?;
        let size_text = String::from_utf8_lossy(&bytes[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).ok()?;
        bytes = &bytes[line_end + 2..];
        if size == 0 {
            return Some(body);
        }
        if bytes.len() < size + 2 {
            return None;
        }
        body.extend_from_slice(&bytes[..size]);
        bytes = &bytes[size + 2..];
    }
}

fn quote(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    let cut: String = text.chars().take(QUOTED).collect();
    let cut = cut.replace(['\r', '\n'], " ");
    if cut.len() < text.len() {
        format!("{cut:?}...")
    } else {
        format!("{cut:?}")
    }
}

/// Calls `is_healthy` over THeader; `Ok(Err(why))` is an answer that is
/// not healthy.
fn thrift_exchange(
    stream: &mut Stream,
    probe: Probe,
    deadline: Instant,
) -> io::Result<Result<(), Unhealthy>> {
    let protocol = Protocol::Binary;
    let ident = TMessageIdentifier::new(super::thrift::METHOD, TMessageType::Call, 0);
    let payload = with_output(protocol, |o| {
        o.write_message_begin(&ident)?;
        super::thrift::write_args(o, probe)?;
        o.write_message_end()?;
        o.flush()
    })
    .map_err(|e| io::Error::other(e.to_string()))?;
    let info = [(
        "User-Agent".to_string(),
        "baseplate-healthcheck".to_string(),
    )];
    let frame = header::encode(protocol, 0, 0, &[], &info, &payload);
    stream.write_all(&frame, deadline)?;
    let whole = |bytes: &[u8]| {
        bytes.len() >= 4
            && bytes.len() - 4
                >= u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize
    };
    let answer = stream.read_until(deadline, whole)?;
    if answer.starts_with(b"HTTP/") {
        return Ok(Err(Unhealthy::InHttp));
    }
    if !whole(&answer) {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "the connection closed after {} bytes, before a whole THeader frame",
                answer.len()
            ),
        ));
    }
    let decoded = match header::decode(&answer[4..], MAX_ANSWER) {
        Ok(decoded) => decoded,
        Err(e) => {
            let why = format!("with a frame that is not THeader: {e:?}");
            return Ok(Err(Unhealthy::Said(why)));
        }
    };
    let protocol = decoded.protocol;
    Ok(with_input(protocol, &decoded.payload, MAX_ANSWER, |input| {
        let ident = input
            .read_message_begin()
            .map_err(|e| format!("with an unreadable message: {e}"))?;
        match ident.message_type {
            TMessageType::Reply => match super::thrift::read_result(input) {
                Ok(Some(true)) => Ok(()),
                Ok(Some(false)) => Err("with false".to_string()),
                Ok(None) => Err("with no result".to_string()),
                Err(e) => Err(format!("with an unreadable result: {e}")),
            },
            TMessageType::Exception => {
                match thrift::Error::read_application_error_from_in_protocol(input) {
                    Ok(e) => Err(format!("with an exception: {e}")),
                    Err(e) => Err(format!("with an unreadable exception: {e}")),
                }
            }
            other => Err(format!("with a {other:?} message")),
        }
    })
    .map_err(Unhealthy::Said))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_answers_are_whole_by_length_or_chunks() {
        assert_eq!(
            parse_http(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n{}"),
            None
        );
        assert_eq!(
            parse_http(b"HTTP/1.1 503 X\r\ncontent-length: 2\r\n\r\n{}"),
            Some(Ok((503, b"{}".to_vec())))
        );
        assert_eq!(
            parse_http(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
            ),
            Some(Ok((200, b"{}".to_vec())))
        );
        assert_eq!(
            parse_http(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n"),
            None
        );
        assert!(matches!(parse_http(b"SSH-2.0\r\n\r\n"), Some(Err(_))));
    }

    #[test]
    fn kinds_are_named_as_baseplate_py_names_them() {
        assert_eq!("wsgi".parse::<Kind>(), Ok(Kind::Http));
        assert_eq!("http".parse::<Kind>(), Ok(Kind::Http));
        assert_eq!("thrift".parse::<Kind>(), Ok(Kind::Thrift));
        assert!("grpc".parse::<Kind>().is_err());
    }
}
