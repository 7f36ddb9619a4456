//! Startup, memory and shutdown figures for `benches/run.sh`:
//!
//! ```text
//! measure startup  BINARY CONFIG   exec → first successful response, median of 20 (ms)
//! measure ack      BINARY CONFIG   exec → Einhorn ACK (a fake master here), median of 20 (ms)
//! measure rss      BINARY CONFIG   RSS idle, and with 1,000 idle keep-alive connections (MiB)
//! measure shutdown BINARY CONFIG   SIGTERM → exit with 100 idle keep-alive connections, median of 5 (ms)
//! ```

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn spawn(binary: &str, config: &str, port: u16) -> Child {
    Command::new(binary)
        .args(["--bind", &format!("127.0.0.1:{port}"), config])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the server")
}

fn get(addr: SocketAddr, keep_alive: bool) -> Option<TcpStream> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let close = if keep_alive {
        ""
    } else {
        "Connection: close\r\n"
    };
    stream
        .write_all(format!("GET / HTTP/1.1\r\nHost: x\r\n{close}\r\n").as_bytes())
        .ok()?;
    let mut buf = [0u8; 512];
    let n = stream.read(&mut buf).ok()?;
    buf[..n].starts_with(b"HTTP/1.1 200").then_some(stream)
}

fn wait_ready(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while get(addr, false).is_none() {
        assert!(Instant::now() < deadline, "the server did not come up");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    values[values.len() / 2]
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

fn stop(mut child: Child) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
    let _ = child.wait();
}

fn startup(binary: &str, config: &str) {
    let times = (0..20)
        .map(|_| {
            let port = free_port();
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let started = Instant::now();
            let child = spawn(binary, config, port);
            while get(addr, false).is_none() {
                std::thread::sleep(Duration::from_micros(200));
            }
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            stop(child);
            ms
        })
        .collect();
    println!("startup_ms {:.2}", median(times));
}

fn ack(binary: &str, config: &str) {
    let dir = std::env::temp_dir().join(format!("measure-ack-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let times = (0..20)
        .map(|i| {
            let sock = dir.join(format!("m{i}.sock"));
            let _ = std::fs::remove_file(&sock);
            let master = UnixListener::bind(&sock).unwrap();
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let fd = listener.as_raw_fd();
            let mut command = Command::new(binary);
            command
                .arg(config)
                .env("EINHORN_MASTER_PID", std::process::id().to_string())
                .env("EINHORN_SOCK_PATH", &sock)
                .env("EINHORN_FD_COUNT", "1")
                .env("EINHORN_FD_0", fd.to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            // SAFETY: only fcntl between fork and exec.
            unsafe {
                command.pre_exec(move || {
                    nix::fcntl::fcntl(
                        std::os::fd::BorrowedFd::borrow_raw(fd),
                        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
                    )
                    .map(|_| ())
                    .map_err(std::io::Error::from)
                });
            }
            let started = Instant::now();
            let child = command.spawn().expect("spawn");
            let (mut ack, _) = master.accept().unwrap();
            let mut line = String::new();
            let _ = ack.read_to_string(&mut line);
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            stop(child);
            ms
        })
        .collect();
    let _ = std::fs::remove_dir_all(&dir);
    println!("ack_ms {:.2}", median(times));
}

fn rss(binary: &str, config: &str) {
    let port = free_port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let child = spawn(binary, config, port);
    wait_ready(addr);
    std::thread::sleep(Duration::from_millis(200));
    println!("rss_idle_mib {:.2}", rss_mib(child.id()));
    let held: Vec<TcpStream> = (0..1000).filter_map(|_| get(addr, true)).collect();
    std::thread::sleep(Duration::from_millis(200));
    println!(
        "rss_1000_idle_conns_mib {:.2} ({} connections)",
        rss_mib(child.id()),
        held.len()
    );
    drop(held);
    stop(child);
}

fn shutdown(binary: &str, config: &str) {
    let times = (0..5)
        .map(|_| {
            let port = free_port();
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let mut child = spawn(binary, config, port);
            wait_ready(addr);
            let held: Vec<TcpStream> = (0..100).filter_map(|_| get(addr, true)).collect();
            assert_eq!(held.len(), 100);
            let started = Instant::now();
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = child.wait();
            started.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    println!("shutdown_ms {:.2}", median(times));
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let [what, binary, config] = &args[..] else {
        eprintln!("usage: measure startup|ack|rss|shutdown BINARY CONFIG");
        std::process::exit(2);
    };
    match what.as_str() {
        "startup" => startup(binary, config),
        "ack" => ack(binary, config),
        "rss" => rss(binary, config),
        "shutdown" => shutdown(binary, config),
        other => {
            eprintln!("unknown measurement {other:?}");
            std::process::exit(2);
        }
    }
}
