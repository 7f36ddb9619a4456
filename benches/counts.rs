//! Counts per request that do not depend on the machine's load: CPU
//! instructions (callgrind), syscalls (`strace -c`) and context switches
//! (`/proc/PID/task/*/status`), for one server and one kept-alive
//! connection sending the same request again and again.
//!
//! Instructions and syscalls come from two runs of the server, with
//! `SHORT` and `LONG` requests after the same warm-up: the difference over
//! `LONG - SHORT` requests, so startup and shutdown cancel. Context switches
//! are read before and after `LONG` requests in one plain run.
//!
//! ```text
//! counts [--counts instructions,syscalls,switches] REQUEST -- SERVER ARGS...
//! ```
//!
//! `REQUEST` is `http-get` (`GET /`), `http-post1k` (`POST /echo`, 1 KiB),
//! or `thrift-MODE-METHOD` with MODE `framed` or `header` and METHOD `add`
//! or `echo1k`. The server listens on the port in `$PORT`, which the
//! command line names (`{port}` in an argument is replaced by it).
//!
//! For an Einhorn master, `REQUEST` is `einhorn-ehlo` or `einhorn-state`
//! (an einhornsh round trip on one kept-alive connection of the command
//! socket), or `einhorn-ack` (a worker's `worker:ack`, each on a new
//! connection that the master closes once it has read it). The master's
//! command socket is `{socket}` on its command line.
//!
//! Prints one line: `instructions N syscalls N switches N` (per request,
//! `-` for a count not asked for).

#[path = "support/frame.rs"]
mod frame;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Requests before counting starts (connections, caches, lazily made
/// series).
const WARM_UP: usize = 50;
const SHORT: usize = 100;
const LONG: usize = 1600;

/// How long a server (under valgrind, slowly) may take to listen.
const START_LIMIT: Duration = Duration::from_secs(180);

/// One request on the wire and how to read its reply.
#[derive(Clone)]
enum Request {
    Http(Vec<u8>),
    /// A framed message (THeader or not): a 4-byte length, then the frame.
    Framed(Vec<u8>),
    /// A command-socket line, answered by one line.
    Command(Vec<u8>),
    /// A command-socket line on a connection of its own, which the master
    /// closes once it has read it (a worker's ACK gets no reply).
    Unanswered(Vec<u8>),
}

impl Request {
    /// Whether the server is an Einhorn master, reached on its command
    /// socket rather than a TCP port.
    fn on_command_socket(&self) -> bool {
        matches!(self, Request::Command(_) | Request::Unanswered(_))
    }
}

fn request(kind: &str) -> Result<Request, String> {
    Ok(match kind {
        "http-get" => Request::Http(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n".to_vec()),
        "http-post1k" => {
            let mut r =
                b"POST /echo HTTP/1.1\r\nHost: bench\r\nContent-Length: 1024\r\n\r\n".to_vec();
            r.resize(r.len() + 1024, b'x');
            Request::Http(r)
        }
        "einhorn-ehlo" => Request::Command(b"---%0Acommand: ehlo%0Auser: bench%0A\n".to_vec()),
        "einhorn-state" => Request::Command(b"{\"command\": \"state\"}\n".to_vec()),
        // A pid no worker has: the master looks it up, logs and moves on,
        // as for an ACK that comes twice.
        "einhorn-ack" => {
            Request::Unanswered(b"---%0Acommand: worker:ack%0Apid: 999999%0A\n".to_vec())
        }
        other => {
            let rest = other
                .strip_prefix("thrift-")
                .ok_or_else(|| format!("unknown request {other:?}"))?;
            let (mode, method) = rest
                .split_once('-')
                .ok_or_else(|| format!("unknown request {other:?}"))?;
            let header = match mode {
                "framed" => false,
                "header" => true,
                _ => return Err(format!("unknown Thrift mode {mode:?}")),
            };
            Request::Framed(frame::example_call(header, method)?)
        }
    })
}

/// Where the server under count listens.
#[derive(Clone)]
struct Address {
    /// The TCP port, `{port}` on the server's command line.
    port: u16,
    /// The command socket, `{socket}` on an Einhorn master's command line.
    socket: PathBuf,
}

/// One connection to the server, TCP or UNIX.
enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    fn connect(address: &Address, unix: bool) -> std::io::Result<Stream> {
        if unix {
            return UnixStream::connect(&address.socket).map(Stream::Unix);
        }
        let stream = TcpStream::connect(("127.0.0.1", address.port))?;
        stream.set_nodelay(true).ok();
        Ok(Stream::Tcp(stream))
    }

    fn try_clone(&self) -> std::io::Result<Stream> {
        Ok(match self {
            Stream::Tcp(s) => Stream::Tcp(s.try_clone()?),
            Stream::Unix(s) => Stream::Unix(s.try_clone()?),
        })
    }

    fn set_read_timeout(&self, limit: Duration) {
        let _ = match self {
            Stream::Tcp(s) => s.set_read_timeout(Some(limit)),
            Stream::Unix(s) => s.set_read_timeout(Some(limit)),
        };
    }

    fn shutdown_write(&self) -> std::io::Result<()> {
        match self {
            Stream::Tcp(s) => s.shutdown(Shutdown::Write),
            Stream::Unix(s) => s.shutdown(Shutdown::Write),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A kept-alive connection sending one request at a time.
struct Client {
    reader: BufReader<Stream>,
    writer: Stream,
    request: Request,
    address: Address,
}

impl Client {
    fn connect(address: &Address, request: Request, limit: Duration) -> Result<Client, String> {
        let started = Instant::now();
        let unix = request.on_command_socket();
        let stream = loop {
            match Stream::connect(address, unix) {
                Ok(stream) => break stream,
                Err(_) if started.elapsed() < limit => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                Err(e) if unix => {
                    return Err(format!(
                        "cannot connect to {}: {e}",
                        address.socket.display()
                    ))
                }
                Err(e) => return Err(format!("cannot connect to port {}: {e}", address.port)),
            }
        };
        stream.set_read_timeout(Duration::from_secs(60));
        Ok(Client {
            reader: BufReader::new(stream.try_clone().map_err(|e| e.to_string())?),
            writer: stream,
            request,
            address: address.clone(),
        })
    }

    fn call(&mut self, n: usize) -> Result<(), String> {
        for _ in 0..n {
            self.once().map_err(|e| format!("request failed: {e}"))?;
        }
        Ok(())
    }

    fn once(&mut self) -> std::io::Result<()> {
        match &self.request {
            Request::Http(bytes) => {
                self.writer.write_all(bytes)?;
                let mut length = None;
                let mut status = String::new();
                self.reader.read_line(&mut status)?;
                if !status.starts_with("HTTP/1.1 200") {
                    return Err(std::io::Error::other(format!("got {status:?}")));
                }
                loop {
                    let mut line = String::new();
                    self.reader.read_line(&mut line)?;
                    if line == "\r\n" || line.is_empty() {
                        break;
                    }
                    if let Some((name, value)) = line.split_once(':') {
                        if name.eq_ignore_ascii_case("content-length") {
                            length = value.trim().parse::<usize>().ok();
                        }
                    }
                }
                let mut body = vec![0; length.unwrap_or(0)];
                self.reader.read_exact(&mut body)
            }
            Request::Framed(bytes) => {
                self.writer.write_all(bytes)?;
                let mut len = [0u8; 4];
                self.reader.read_exact(&mut len)?;
                let mut reply = vec![0; u32::from_be_bytes(len) as usize];
                self.reader.read_exact(&mut reply)?;
                // An exception reply (message type 3) is a broken suite.
                let at = match (reply.starts_with(&[0x0F, 0xFF]), reply.get(8..10)) {
                    (true, Some(&[hi, lo])) => 10 + u16::from_be_bytes([hi, lo]) as usize * 4,
                    _ => 0,
                };
                match reply.get(at + 3) {
                    Some(2) => Ok(()),
                    other => Err(std::io::Error::other(format!(
                        "not a reply (message type {other:?})"
                    ))),
                }
            }
            Request::Command(bytes) => {
                self.writer.write_all(bytes)?;
                let mut line = String::new();
                self.reader.read_line(&mut line)?;
                match line.ends_with('\n') {
                    true => Ok(()),
                    false => Err(std::io::Error::other("the master closed the connection")),
                }
            }
            Request::Unanswered(bytes) => {
                let mut stream = Stream::connect(&self.address, true)?;
                stream.set_read_timeout(Duration::from_secs(60));
                stream.write_all(bytes)?;
                stream.shutdown_write()?;
                // The master closes the connection once it has read the line.
                let mut rest = Vec::new();
                stream.read_to_end(&mut rest)?;
                Ok(())
            }
        }
    }
}

/// A free port (bound, then let go: the server binds it next), and a
/// command socket path not used before in `dir`.
fn fresh_address(dir: &Path) -> Result<Address, String> {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("cannot find a free port on 127.0.0.1: {e}"))?;
    let run = RUNS.fetch_add(1, Ordering::Relaxed);
    Ok(Address {
        port,
        socket: dir.join(format!("einhorn-{run}.sock")),
    })
}

/// Starts `server` (with `{port}` and `{socket}` replaced) under `wrapper`.
fn start(wrapper: &[String], server: &[String], address: &Address) -> Result<Child, String> {
    let port = address.port.to_string();
    let socket = address.socket.display().to_string();
    let mut command: Vec<String> = wrapper.to_vec();
    command.extend(
        server
            .iter()
            .map(|a| a.replace("{port}", &port).replace("{socket}", &socket)),
    );
    Command::new(&command[0])
        .args(&command[1..])
        .env("PORT", &port)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", command[0]))
}

/// SIGTERM to the server, then waits (valgrind and strace write their
/// files as it ends). Under strace the server is strace's first child;
/// valgrind runs it in its own process, and a child there is the server's
/// own (an Einhorn master's worker).
fn stop(mut child: Child, wrapper: &[String]) -> Result<(), String> {
    let pid = child.id();
    let server = match wrapper.first().map(String::as_str) {
        Some("strace") => std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .ok()
            .and_then(|c| c.split_whitespace().next()?.parse::<u32>().ok())
            .unwrap_or(pid),
        _ => pid,
    };
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .map_err(|e| e.to_string())?;
    let started = Instant::now();
    while child.try_wait().map_err(|e| e.to_string())?.is_none() {
        if started.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            return Err("the server did not stop within 120 s".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// One run of the server under `wrapper`: warm-up, then `n` requests.
fn run(
    wrapper: &[String],
    server: &[String],
    dir: &Path,
    request: &Request,
    n: usize,
) -> Result<(), String> {
    let address = fresh_address(dir)?;
    let child = start(wrapper, server, &address)?;
    let result = (|| {
        let mut client = Client::connect(&address, request.clone(), START_LIMIT)?;
        client.call(WARM_UP + n)
    })();
    stop(child, wrapper)?;
    result
}

/// A tool that runs the server and reports a total when it ends.
struct Counter {
    /// The wrapper's command line, given the output file.
    wrapper: fn(&Path) -> Vec<String>,
    /// The total in the tool's output.
    total: fn(&str) -> Option<f64>,
}

/// Instructions: callgrind's total.
const INSTRUCTIONS: Counter = Counter {
    wrapper: |out| {
        vec![
            "valgrind".to_string(),
            "--tool=callgrind".into(),
            "--trace-children=no".into(),
            format!("--callgrind-out-file={}", out.display()),
        ]
    },
    total: |text| {
        text.lines()
            .find_map(|l| {
                l.strip_prefix("totals:")
                    .or_else(|| l.strip_prefix("summary:"))
            })
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
    },
};

/// Syscalls: `strace -f -c`'s total (`100.00 SECONDS USECS/CALL CALLS
/// [ERRORS] total`).
const SYSCALLS: Counter = Counter {
    wrapper: |out| {
        vec![
            "strace".to_string(),
            "-f".into(),
            "-c".into(),
            "-o".into(),
            out.display().to_string(),
        ]
    },
    total: |text| {
        text.lines()
            .find(|l| l.trim_end().ends_with("total"))
            .and_then(|l| l.split_whitespace().nth(3))
            .and_then(|v| v.parse().ok())
    },
};

/// `counter`'s count per request: its totals over a run of `SHORT` and one
/// of `LONG` requests, the difference over `LONG - SHORT`.
fn per_request(
    counter: &Counter,
    dir: &Path,
    server: &[String],
    request: &Request,
) -> Result<f64, String> {
    let mut totals = Vec::new();
    for (i, n) in [SHORT, LONG].into_iter().enumerate() {
        let out = dir.join(format!("count.{i}"));
        run(&(counter.wrapper)(&out), server, dir, request, n)?;
        let text = std::fs::read_to_string(&out)
            .map_err(|e| format!("no output in {}: {e}", out.display()))?;
        let total = (counter.total)(&text);
        totals.push(total.ok_or_else(|| format!("no total in {}", out.display()))?);
    }
    Ok((totals[1] - totals[0]) / (LONG - SHORT) as f64)
}

/// Context switches of every thread of `pid`.
fn switches_of(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("status")).ok())
        .map(|status| {
            status
                .lines()
                .filter(|l| l.contains("ctxt_switches"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>()
        })
        .sum()
}

/// Context switches per request, over `LONG` requests of one plain run.
fn switches(server: &[String], dir: &Path, request: &Request) -> Result<f64, String> {
    let address = fresh_address(dir)?;
    let child = start(&[], server, &address)?;
    let pid = child.id();
    let result = (|| {
        let mut client = Client::connect(&address, request.clone(), START_LIMIT)?;
        client.call(WARM_UP)?;
        let before = switches_of(pid);
        client.call(LONG)?;
        Ok((switches_of(pid) - before) as f64 / LONG as f64)
    })();
    stop(child, &[])?;
    result
}

fn main() {
    let mut args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let mut wanted = vec!["instructions", "syscalls", "switches"];
    let owned;
    if args.first().map(String::as_str) == Some("--counts") && args.len() > 1 {
        owned = args[1].clone();
        wanted = owned.split(',').collect();
        args.drain(..2);
    }
    let Some(split) = args.iter().position(|a| a == "--") else {
        eprintln!(
            "usage: counts [--counts instructions,syscalls,switches] REQUEST -- SERVER ARGS..."
        );
        std::process::exit(2);
    };
    let (kind, server) = (&args[..split], &args[split + 1..]);
    let (Some(kind), false) = (kind.first(), server.is_empty()) else {
        eprintln!(
            "usage: counts [--counts instructions,syscalls,switches] REQUEST -- SERVER ARGS..."
        );
        std::process::exit(2);
    };
    let request = match request(kind) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let temp = match tempfile::tempdir() {
        Ok(temp) => temp,
        Err(e) => {
            eprintln!("error: cannot make a temp directory: {e}");
            std::process::exit(1);
        }
    };
    let dir: PathBuf = temp.path().to_path_buf();
    let mut line = Vec::new();
    for (name, counter) in [("instructions", INSTRUCTIONS), ("syscalls", SYSCALLS)] {
        let value = match wanted.contains(&name) {
            true => per_request(&counter, &dir, server, &request).map(|v| match name {
                "instructions" => format!("{v:.0}"),
                _ => format!("{v:.2}"),
            }),
            false => Ok("-".into()),
        };
        match value {
            Ok(v) => line.push(format!("{name} {v}")),
            Err(e) => {
                eprintln!("error: {name}: {e}");
                std::process::exit(1);
            }
        }
    }
    let value = match wanted.contains(&"switches") {
        true => switches(server, &dir, &request).map(|v| format!("{v:.2}")),
        false => Ok("-".into()),
    };
    match value {
        Ok(v) => line.push(format!("switches {v}")),
        Err(e) => {
            eprintln!("error: switches: {e}");
            std::process::exit(1);
        }
    }
    println!("{}", line.join(" "));
}
