//! A worker for testing Einhorn masters and the conformance kit, steered by
//! environment variables:
//!
//! | variable | effect |
//! |---|---|
//! | `TEST_WORKER_REPORT=FILE` | append JSON lines: start (pid, ppid, EINHORN_* env, open fds), signals, exit |
//! | `TEST_WORKER_ACK_DELAY_MS=N` | wait N ms before the ACK |
//! | (with `-g`) | ACKs on `EINHORN_SOCK_FD`, not by connecting to `EINHORN_SOCK_PATH` |
//! | `TEST_WORKER_ACK=never` | never ACK; `yaml` ACKs in escaped YAML instead of JSON |
//! | `TEST_WORKER_CRASH_BEFORE_ACK=1` | exit with status 3 instead of ACKing |
//! | `TEST_WORKER_IGNORE_USR2=1` | ignore SIGUSR2 |
//! | `TEST_WORKER_DRAIN_MS=N` | after SIGUSR2/SIGTERM/SIGINT, wait N ms, then exit 0 |
//! | `TEST_WORKER_TAG=TEXT` | included in reports and in what it serves |
//! | `TEST_WORKER_WATCH=A,B` | also report these variables of its environment (as `watched`) |
//! | `TEST_WORKER_HTTP=1` | serve HTTP/1.1 with keep-alive on `EINHORN_FD_0`: `GET /` and `GET /sleep?ms=N`; on SIGUSR2/SIGTERM stop accepting, finish requests in flight, close idle connections, exit 0 |
//! | `TEST_WORKER_USR2=exit-now` | HTTP mode: exit at once on SIGUSR2/SIGTERM, dropping requests in flight |
//! | `TEST_WORKER_USR1=die` | do not handle SIGUSR1 (its default action kills the process) |
//! | `TEST_WORKER_EXTRA_PORT=1` | also listen on a TCP port of its own |
//! | `TEST_WORKER_KEEP_IDLE=1` | HTTP mode: at shutdown, wait for idle keep-alive connections instead of closing them |
//! | `TEST_WORKER_CONFIG=FILE` | `NAME=VALUE` lines read at startup that override the variables above, so a test can "deploy" a different behaviour before an upgrade |
//!
//! Without `TEST_WORKER_HTTP`, an inherited socket (`EINHORN_FD_0`) answers
//! each connection with `PID TAG\n` and closes it.

use einhorn_sim::worker_report::{WorkerEvent, WorkerReport};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{BorrowedFd, FromRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nix::fcntl::{fcntl, FcntlArg};
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

static USR1: AtomicUsize = AtomicUsize::new(0);
static STOP: AtomicUsize = AtomicUsize::new(0);
static STOP_SIGNAL: AtomicUsize = AtomicUsize::new(0);

extern "C" fn on_signal(signal: i32) {
    if signal == Signal::SIGUSR1 as i32 {
        USR1.fetch_add(1, Ordering::SeqCst);
    } else {
        STOP_SIGNAL.store(signal as usize, Ordering::SeqCst);
        STOP.fetch_add(1, Ordering::SeqCst);
    }
}

fn env(name: &str) -> Option<String> {
    let from_file = std::env::var("TEST_WORKER_CONFIG")
        .ok()
        .and_then(|path| std::fs::read_to_string(path).ok())
        .and_then(|text| {
            text.lines()
                .filter_map(|l| l.split_once('='))
                .find(|(k, _)| k.trim() == name)
                .map(|(_, v)| v.trim().to_string())
        });
    from_file
        .or_else(|| std::env::var(name).ok())
        .filter(|v| !v.is_empty())
}

fn report(event: WorkerEvent) {
    let Some(path) = env("TEST_WORKER_REPORT") else {
        return;
    };
    let report = WorkerReport {
        pid: std::process::id() as i32,
        tag: env("TEST_WORKER_TAG").unwrap_or_default(),
        event,
    };
    let Ok(mut line) = serde_json::to_string(&report) else {
        return;
    };
    line.push('\n');
    // One write per line: with O_APPEND, lines from several workers never interleave.
    if let Ok(mut file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = file.write_all(line.as_bytes());
    }
}

fn open_fds() -> Vec<RawFd> {
    (0..1024)
        .filter(|&fd| fcntl(unsafe { BorrowedFd::borrow_raw(fd) }, FcntlArg::F_GETFD).is_ok())
        .collect()
}

fn ack() {
    let pid = std::process::id();
    // -g: the master's connection, as Einhorn's worker library prefers it.
    if let Some(fd) = env("EINHORN_SOCK_FD").and_then(|fd| fd.parse::<RawFd>().ok()) {
        // SAFETY: the master passed this connection to this process alone.
        let mut stream = unsafe { UnixStream::from_raw_fd(fd) };
        let line = format!("{{\"command\": \"worker:ack\", \"pid\": {pid}}}\n");
        if let Err(e) = stream.write_all(line.as_bytes()) {
            eprintln!("einhorn-test-worker: cannot ACK on EINHORN_SOCK_FD {fd}: {e}");
            std::process::exit(2);
        }
        return;
    }
    let Some(path) = env("EINHORN_SOCK_PATH") else {
        eprintln!("einhorn-test-worker: EINHORN_SOCK_PATH is not set");
        std::process::exit(2);
    };
    let line = match env("TEST_WORKER_ACK").as_deref() {
        Some("yaml") => format!("---%0Acommand: worker:ack%0Apid: {pid}%0A\n"),
        _ => format!("{{\"command\": \"worker:ack\", \"pid\": {pid}}}\n"),
    };
    match UnixStream::connect(&path) {
        Ok(mut stream) => {
            let _ = stream.write_all(line.as_bytes());
        }
        Err(e) => {
            eprintln!("einhorn-test-worker: cannot ACK to {path}: {e}");
            std::process::exit(2);
        }
    }
}

fn serve_pid(listener: TcpListener) {
    let tag = env("TEST_WORKER_TAG").unwrap_or_default();
    std::thread::spawn(move || {
        let _ = listener.set_nonblocking(false);
        for mut stream in listener.incoming().flatten() {
            let _ = writeln!(stream, "{} {tag}", std::process::id());
        }
    });
}

/// HTTP mode's shared state.
struct Http {
    shutting_down: AtomicBool,
    connections: AtomicUsize,
    keep_idle: bool,
}

fn serve_http(listener: TcpListener, http: Arc<Http>) {
    let _ = listener.set_nonblocking(true);
    std::thread::spawn(move || {
        let mut listener = Some(listener);
        loop {
            if http.shutting_down.load(Ordering::SeqCst) {
                // Closing our copy of the socket stops our accepts.
                listener = None;
            }
            let Some(l) = &listener else { return };
            match l.accept() {
                Ok((stream, _)) => {
                    http.connections.fetch_add(1, Ordering::SeqCst);
                    let http = Arc::clone(&http);
                    std::thread::spawn(move || {
                        connection(stream, &http);
                        http.connections.fetch_sub(1, Ordering::SeqCst);
                    });
                }
                Err(_) => std::thread::sleep(Duration::from_millis(2)),
            }
        }
    });
}

/// Serves one keep-alive connection.
fn connection(mut stream: TcpStream, http: &Http) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(20)));
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let opened = std::time::Instant::now();
    let mut served = 0;
    loop {
        while !buffer.windows(4).any(|w| w == b"\r\n\r\n") {
            // Idle connections close at shutdown; a new one first gets a
            // moment for its first request.
            let fresh = served == 0 && opened.elapsed() < Duration::from_millis(250);
            if buffer.is_empty()
                && !fresh
                && http.shutting_down.load(Ordering::SeqCst)
                && !http.keep_idle
            {
                return;
            }
            match stream.read(&mut chunk) {
                Ok(0) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return,
            }
        }
        let end = buffer
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or(0)
            + 4;
        let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
        buffer.drain(..end);
        let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
        let body = match path.split_once("?ms=") {
            Some(("/sleep", ms)) => {
                let ms: u64 = ms.parse().unwrap_or(0);
                std::thread::sleep(Duration::from_millis(ms));
                format!("slept {ms} ms")
            }
            _ => format!("ok {}", std::process::id()),
        };
        let closing = http.shutting_down.load(Ordering::SeqCst)
            || head.to_ascii_lowercase().contains("connection: close");
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n{}\r\n{body}",
            body.len(),
            if closing { "Connection: close\r\n" } else { "" }
        );
        served += 1;
        if stream.write_all(response.as_bytes()).is_err() || closing {
            return;
        }
    }
}

fn main() {
    install_handlers();
    report_start();
    let _extra = env("TEST_WORKER_EXTRA_PORT").map(|_| {
        TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| {
            eprintln!("einhorn-test-worker: TEST_WORKER_EXTRA_PORT: cannot bind 127.0.0.1:0: {e}");
            std::process::exit(2);
        })
    });
    let http = Arc::new(Http {
        shutting_down: AtomicBool::new(false),
        connections: AtomicUsize::new(0),
        keep_idle: env("TEST_WORKER_KEEP_IDLE").is_some(),
    });
    let http_mode = env("TEST_WORKER_HTTP").is_some();
    if let Some(fd) = env("EINHORN_FD_0").and_then(|v| v.parse::<RawFd>().ok()) {
        // SAFETY: the fd was passed to us to own (EINHORN_FD_0).
        let listener = unsafe { TcpListener::from_raw_fd(fd) };
        if http_mode {
            serve_http(listener, Arc::clone(&http));
        } else {
            serve_pid(listener);
        }
    }
    if let Some(ms) = env("TEST_WORKER_ACK_DELAY_MS").and_then(|v| v.parse().ok()) {
        std::thread::sleep(Duration::from_millis(ms));
    }
    if env("TEST_WORKER_CRASH_BEFORE_ACK").is_some() {
        report(WorkerEvent::Crash);
        std::process::exit(3);
    }
    if env("TEST_WORKER_ACK").as_deref() != Some("never") {
        ack();
    }
    wait_for_signals(&http, http_mode);
}

/// Handles the signals a worker gets (the handler only counts them), as
/// the environment says.
fn install_handlers() {
    let handler = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    let ignore = env("TEST_WORKER_IGNORE_USR2").is_some();
    let usr1_dies = env("TEST_WORKER_USR1").as_deref() == Some("die");
    for signal in [
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGQUIT,
    ] {
        if signal == Signal::SIGUSR1 && usr1_dies {
            continue;
        }
        let action = if signal == Signal::SIGUSR2 && ignore {
            SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty())
        } else {
            handler
        };
        // SAFETY: the handler only touches atomics.
        if let Err(e) = unsafe { sigaction(signal, &action) } {
            eprintln!("einhorn-test-worker: cannot set the {signal} handler: {e}");
            std::process::exit(2);
        }
    }
}

/// Reports the start: the worker's parent, group, Einhorn environment, the
/// variables it was asked to watch and its open descriptors.
fn report_start() {
    let einhorn_env = std::env::vars()
        .filter(|(k, _)| k.starts_with("EINHORN_"))
        .collect();
    let watched = env("TEST_WORKER_WATCH")
        .unwrap_or_default()
        .split(',')
        .filter(|name| !name.is_empty())
        .map(|name| (name.to_string(), std::env::var(name).ok()))
        .collect();
    report(WorkerEvent::Start {
        ppid: nix::unistd::getppid().as_raw(),
        pgid: nix::unistd::getpgrp().as_raw(),
        env: einhorn_env,
        watched,
        fds: open_fds(),
    });
}

/// Reports each SIGUSR1, and on a stop signal drains (in HTTP mode) and
/// exits 0.
fn wait_for_signals(http: &Http, http_mode: bool) -> ! {
    let mut usr1_seen = 0;
    loop {
        let usr1 = USR1.load(Ordering::SeqCst);
        while usr1_seen < usr1 {
            usr1_seen += 1;
            report(WorkerEvent::Signal {
                signal: "USR1".to_string(),
            });
        }
        if STOP.load(Ordering::SeqCst) > 0 {
            let signal = STOP_SIGNAL.load(Ordering::SeqCst) as i32;
            let name = Signal::try_from(signal).map_or("?", |s| s.as_str());
            report(WorkerEvent::Signal {
                signal: name.trim_start_matches("SIG").to_string(),
            });
            if http_mode && env("TEST_WORKER_USR2").as_deref() != Some("exit-now") {
                http.shutting_down.store(true, Ordering::SeqCst);
                while http.connections.load(Ordering::SeqCst) > 0 {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            if let Some(ms) = env("TEST_WORKER_DRAIN_MS").and_then(|v| v.parse().ok()) {
                std::thread::sleep(Duration::from_millis(ms));
            }
            report(WorkerEvent::Exit);
            std::process::exit(0);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
