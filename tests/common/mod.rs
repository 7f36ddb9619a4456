//! Helpers for tests that drive the real `baseplate-serve` binary.
#![allow(dead_code)]

pub mod thrift_clients;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// How long any readiness wait may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(20);

/// The server binary under test: `baseplate-serve`, or the one named by
/// `BASEPLATE_SERVE_BINARY` (a downstream crate's, say).
pub fn binary() -> PathBuf {
    match std::env::var_os("BASEPLATE_SERVE_BINARY") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(env!("CARGO_BIN_EXE_baseplate-serve")),
    }
}

/// A binary of the einhorn-sim package, built (or brought up to date) here:
/// a filtered `cargo test -p baseplate-serve` does not build it.
pub fn workspace_binary(name: &str) -> PathBuf {
    let path = binary().parent().unwrap().join(name);
    {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", "einhorn-sim", "--bins"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .unwrap();
        assert!(status.success(), "cargo build -p einhorn-sim failed");
    }
    path
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "bp-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub const EXAMPLE_APP: &str = "[app:main]\nfactory = baseplate.examples.http:make_app\n";

/// A config with the example app and these server options.
pub fn config_with(server_options: &str) -> String {
    format!("[server:main]\nfactory = baseplate.server.wsgi\n{server_options}\n{EXAMPLE_APP}")
}

/// A running server process; killed on drop.
pub struct Server {
    pub child: Child,
    lines: Receiver<String>,
    pub seen: Arc<Mutex<Vec<String>>>,
    pub addr: Option<SocketAddr>,
    pub dir: TempDir,
    /// The threads reading stdout and stderr: after an exit, `wait_exit`
    /// waits for them, so `output()` holds the last lines.
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Starts `baseplate-serve` on an ephemeral port with `config`, and waits
    /// for its `Listening on` line.
    pub fn start(config: &str, extra_args: &[&str]) -> Server {
        let dir = TempDir::new();
        let path = dir.write("app.ini", config);
        let mut command = Command::new(binary());
        command
            .arg("--bind")
            .arg("127.0.0.1:0")
            .args(extra_args)
            .arg(&path);
        let mut server = Server::spawn(command, dir);
        server.addr = Some(server.wait_listening());
        server
    }

    /// Waits for `Listening on HOST:PORT` and returns the address.
    pub fn wait_listening(&mut self) -> SocketAddr {
        let line = self.wait_for("Listening on");
        line.split("Listening on ")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no TCP address in {line}"))
    }

    /// Spawns a prepared command with piped stdout, collecting its lines.
    pub fn spawn(command: Command, dir: TempDir) -> Server {
        Server::spawn_with_stdin(command, dir, Stdio::null())
    }

    /// [`Server::spawn`] with `stdin` (take a pipe with [`Server::stdin`]).
    pub fn spawn_with_stdin(mut command: Command, dir: TempDir, stdin: Stdio) -> Server {
        command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(stdin);
        // A binary this test process just wrote may still be open for
        // writing in a child another thread forked (ETXTBSY): retry briefly.
        let mut attempts = 0;
        let mut child = loop {
            match command.spawn() {
                Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && attempts < 100 => {
                    attempts += 1;
                    std::thread::sleep(Duration::from_millis(10));
                }
                spawned => break spawned.expect("spawn the server"),
            }
        };
        let (tx, rx) = mpsc::channel();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut readers = Vec::new();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            let seen = Arc::clone(&seen);
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    seen.lock().unwrap().push(line.clone());
                    let _ = tx.send(line);
                }
            }));
        }
        Server {
            child,
            lines: rx,
            seen,
            addr: None,
            dir,
            readers,
        }
    }

    /// The server's stdin, if it was spawned with a pipe.
    #[allow(dead_code)]
    pub fn stdin(&mut self) -> std::process::ChildStdin {
        self.child.stdin.take().expect("spawned with a stdin pipe")
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr.expect("server address")
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    /// Waits for an output line containing `needle`; fails the test with
    /// everything seen so far if it does not come.
    pub fn wait_for(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    panic!(
                        "no line containing {needle:?}; output so far:\n{}",
                        self.seen.lock().unwrap().join("\n")
                    );
                }
            }
        }
    }

    pub fn signal(&self, signal: Signal) {
        kill(self.pid(), signal).unwrap();
    }

    /// Waits for the process to exit, failing after `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                self.wait_for_end_of_output();
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "the server did not exit within {limit:?}; output:\n{}",
                    self.seen.lock().unwrap().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for stdout and stderr to reach their end, which they do when
    /// the process has exited, unless a process it started still holds them:
    /// that is given up on after a while, and `output()` is what was read.
    fn wait_for_end_of_output(&self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.readers.iter().all(|r| r.is_finished()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Everything the process wrote to stdout and stderr, read so far.
    pub fn output(&self) -> String {
        self.seen.lock().unwrap().join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A parsed HTTP/1.1 response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends one request on `stream` (keep-alive unless the headers say otherwise).
pub fn send(
    stream: &mut TcpStream,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) {
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
}

/// Reads one response (with a Content-Length body) from `stream`.
pub fn read_response(stream: &mut TcpStream) -> std::io::Result<Response> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "connection closed after {:?}",
                    String::from_utf8_lossy(&head)
                ),
            ));
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap();
            (k.trim().to_string(), v.trim().to_string())
        })
        .collect();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let body = if chunked {
        read_chunked(stream)?
    } else {
        let length: usize = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .map_or(0, |(_, v)| v.parse().unwrap());
        let mut body = vec![0; length];
        stream.read_exact(&mut body)?;
        body
    };
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// Reads a chunked body (no trailers) up to its last, empty chunk.
fn read_chunked(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while !line.ends_with(b"\r\n") {
            stream.read_exact(&mut byte)?;
            line.push(byte[0]);
        }
        let size = std::str::from_utf8(&line[..line.len() - 2])
            .ok()
            .and_then(|l| usize::from_str_radix(l.split(';').next().unwrap_or(l).trim(), 16).ok())
            .unwrap_or_else(|| panic!("bad chunk size line {:?}", String::from_utf8_lossy(&line)));
        let mut chunk = vec![0; size + 2];
        stream.read_exact(&mut chunk)?;
        assert_eq!(&chunk[size..], b"\r\n", "chunk not ended by CRLF");
        if size == 0 {
            return Ok(body);
        }
        body.extend_from_slice(&chunk[..size]);
    }
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream
}

/// One request on a fresh connection.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut stream = connect(addr);
    send(&mut stream, method, path, headers, body);
    read_response(&mut stream).unwrap()
}

pub fn get(addr: SocketAddr, path: &str) -> Response {
    request(addr, "GET", path, &[], b"")
}

/// Runs `baseplate-serve` to completion with a config and arguments.
pub fn run_once(config: &str, args: &[&str]) -> (i32, String, String) {
    let dir = TempDir::new();
    let path = dir.write("app.ini", config);
    let output = Command::new(binary())
        .args(args)
        .arg(&path)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `GET /` over a UNIX socket; returns the whole raw reply.
pub fn unix_get(path: &Path) -> String {
    let mut stream = std::os::unix::net::UnixStream::connect(path).unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    reply
}

/// An einhorn-sim master stopped as a user stops it when the test ends,
/// also when it fails: SIGTERM (it passes TERM to its workers and waits
/// for them), then SIGKILL if it is still there after 10 s. For masters
/// run without `-k`, whose workers would outlive a SIGKILLed master.
#[allow(dead_code)]
pub struct TermOnDrop(pub Child);

impl Drop for TermOnDrop {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.0.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if !matches!(self.0.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A child process (such as an einhorn-sim master) killed and reaped when
/// the test ends, also when it fails.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A liveness probe (`GET /health?type=liveness`) on a fresh connection:
/// the pid of the worker that answered, or why none did. Liveness, since a
/// draining worker fails readiness but still serves.
#[allow(dead_code)]
pub fn health_pid(addr: SocketAddr) -> Result<i32, String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    stream.set_nodelay(true).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    send(
        &mut stream,
        "GET",
        "/health?type=liveness",
        &[("Connection", "close")],
        b"",
    );
    let response = read_response(&mut stream).map_err(|e| format!("read: {e}"))?;
    if response.status != 200 {
        return Err(format!("status {}: {}", response.status, response.text()));
    }
    let value: serde_json::Value =
        serde_json::from_str(&response.text()).map_err(|e| format!("body: {e}"))?;
    Ok(value["pid"].as_i64().unwrap_or_default() as i32)
}

/// The events einhorn-sim has written to its `--events` file so far.
#[allow(dead_code)]
pub fn events(path: &Path) -> Vec<einhorn_sim::events::Record> {
    einhorn_sim::events::Record::read_file(path)
}

/// Waits until `check` finds what it wants in the events file.
#[allow(dead_code)]
pub fn wait_events<T>(
    path: &Path,
    check: impl Fn(&[einhorn_sim::events::Record]) -> Option<T>,
) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(found) = check(&events(path)) {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "timed out; events: {:#?}",
            events(path)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `einhorn-sim` with its command socket (`cmd.sock`), pidfile, lockfile
/// and `--events` file (`events.jsonl`) in `dir`.
#[allow(dead_code)]
pub fn sim_command(dir: &Path) -> Command {
    let mut command = Command::new(workspace_binary("einhorn-sim"));
    command
        .arg("-d")
        .arg(dir.join("cmd.sock"))
        .arg("-e")
        .arg(dir.join("pid"))
        .arg("-f")
        .arg(dir.join("lock"))
        .arg("--events")
        .arg(dir.join("events.jsonl"));
    command
}

/// The first `-b` port, once einhorn-sim's `ready` event is there.
#[allow(dead_code)]
pub fn sim_port(events: &[einhorn_sim::events::Record]) -> Option<u16> {
    events.iter().find_map(|r| match &r.event {
        einhorn_sim::events::Event::Ready { bound, .. } => bound.first().map(|b| b.port),
        _ => None,
    })
}

/// A TCP port on 127.0.0.1 that nothing listens on, below the ephemeral
/// range (so no outgoing connection takes it meanwhile), for servers that
/// must be told a fixed port (every worker binds the same one).
#[allow(dead_code)]
pub fn fixed_port() -> u16 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    // Spread the tests of parallel processes apart.
    let base = 20_000 + (std::process::id() % 500) as u64 * 20;
    loop {
        let port = base + NEXT.fetch_add(1, Ordering::Relaxed) % 10_000;
        let port = 20_000 + (port - 20_000) % 12_000;
        if std::net::TcpListener::bind(("127.0.0.1", port as u16)).is_ok() {
            return port as u16;
        }
    }
}

/// The pids that sent their ACK, from einhorn-sim's events.
#[allow(dead_code)]
pub fn acked(events: &[einhorn_sim::events::Record]) -> std::collections::BTreeSet<i32> {
    events
        .iter()
        .filter_map(|r| match r.event {
            einhorn_sim::events::Event::Ack { pid } => Some(pid),
            _ => None,
        })
        .collect()
}

/// The pids of workers that exited, from einhorn-sim's events.
#[allow(dead_code)]
pub fn exited(events: &[einhorn_sim::events::Record]) -> std::collections::BTreeSet<i32> {
    events
        .iter()
        .filter_map(|r| match r.event {
            einhorn_sim::events::Event::Exit { pid, .. } => Some(pid),
            _ => None,
        })
        .collect()
}

/// The workers that ACKed and have not exited.
#[allow(dead_code)]
pub fn live_workers(events: &[einhorn_sim::events::Record]) -> std::collections::BTreeSet<i32> {
    let gone = exited(events);
    acked(events).difference(&gone).copied().collect()
}
