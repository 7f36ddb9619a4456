//! Slow and oversized HTTP clients: header timeout, a slowloris crowd,
//! 431 for big heads, 413 for big bodies (declared or streamed), 408 for
//! bodies that stop arriving, and EMFILE on accept.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

fn closed_by_server(stream: &mut TcpStream) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 256];
    match stream.read(&mut buf) {
        Ok(0) => true,
        Ok(n) => String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 408"),
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    }
}

#[test]
fn a_client_that_never_finishes_its_headers_is_cut_off() {
    let server = Server::start(&config_with("header_timeout = 300 milliseconds"), &[]);
    let mut slow = connect(server.addr());
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
    let started = Instant::now();
    assert!(closed_by_server(&mut slow), "the slow client is closed");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(get(server.addr(), "/").status, 200);
}

#[test]
fn a_slowloris_crowd_does_not_starve_normal_clients() {
    let server = Server::start(&config_with("header_timeout = 2 seconds"), &[]);
    let addr = server.addr();
    let mut crowd: Vec<TcpStream> = (0..300)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"GET / HTTP/1.1\r\n").unwrap();
            s
        })
        .collect();
    // Trickle a header line now and then while normal clients are served.
    for round in 0..5 {
        for s in &mut crowd {
            let _ = s.write_all(format!("X-Slow-{round}: 1\r\n").as_bytes());
        }
        let started = Instant::now();
        assert_eq!(get(addr, "/").status, 200);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "a normal request waited {:?}",
            started.elapsed()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The crowd is cut off by the header timeout.
    let mut closed = 0;
    for s in &mut crowd {
        if closed_by_server(s) {
            closed += 1;
        }
    }
    assert_eq!(closed, crowd.len());
}

#[test]
fn an_oversized_head_gets_431() {
    let server = Server::start(&config_with("max_header_size = 16384"), &[]);
    let big = "x".repeat(20_000);
    let r = request(server.addr(), "GET", "/", &[("X-Big", &big)], b"");
    assert_eq!(r.status, 431);
    let fits = "x".repeat(4_000);
    assert_eq!(
        request(server.addr(), "GET", "/", &[("X-Fits", &fits)], b"").status,
        200
    );
}

#[test]
fn an_oversized_declared_body_gets_413_before_it_is_sent() {
    let server = Server::start(&config_with("max_body_size = 1000"), &[]);
    let mut stream = connect(server.addr());
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n")
        .unwrap();
    let r = read_response(&mut stream).unwrap();
    assert_eq!(r.status, 413);
    assert_eq!(
        request(server.addr(), "POST", "/echo", &[], &[b'a'; 900]).status,
        200
    );
}

#[test]
fn an_oversized_chunked_body_gets_413_while_it_streams() {
    let server = Server::start(&config_with("max_body_size = 1000"), &[]);
    let mut stream = connect(server.addr());
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        .unwrap();
    // 1,500 bytes in three chunks, and the body never ends: the answer must
    // come from counting, not from the end of the body.
    for _ in 0..3 {
        stream.write_all(b"1f4\r\n").unwrap();
        stream.write_all(&[b'a'; 500]).unwrap();
        stream.write_all(b"\r\n").unwrap();
    }
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let r = read_response(&mut stream).unwrap();
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(r.text().contains("length limit exceeded"), "{}", r.text());

    let mut stream = connect(server.addr());
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        .unwrap();
    stream.write_all(b"384\r\n").unwrap();
    stream.write_all(&[b'b'; 900]).unwrap();
    stream.write_all(b"\r\n0\r\n\r\n").unwrap();
    let r = read_response(&mut stream).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, vec![b'b'; 900]);
}

#[test]
fn a_body_that_stops_arriving_gets_408_and_a_slow_steady_one_does_not() {
    let server = Server::start(&config_with("body_timeout = 300 milliseconds"), &[]);
    let head = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n";

    let mut stalled = connect(server.addr());
    stalled.write_all(head).unwrap();
    stalled.write_all(&[b'a'; 10]).unwrap();
    stalled
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let started = Instant::now();
    let r = read_response(&mut stalled).unwrap();
    assert_eq!(r.status, 408, "{}", r.text());
    assert!(r.text().contains("body_timeout"), "{}", r.text());
    assert!(started.elapsed() < Duration::from_secs(5));

    // 10 bytes every 100 ms: a whole second in all, but never 300 ms idle.
    let mut steady = connect(server.addr());
    steady.write_all(head).unwrap();
    for _ in 0..10 {
        steady.write_all(&[b'b'; 10]).unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
    let r = read_response(&mut steady).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.body, vec![b'b'; 100]);
}

#[test]
fn running_out_of_file_descriptors_backs_off_and_recovers() {
    use nix::sys::resource::{setrlimit, Resource};
    use std::os::unix::process::CommandExt;

    let dir = TempDir::new();
    let config = dir.write("app.ini", &config_with(""));
    let mut command = std::process::Command::new(binary());
    command.args(["--bind", "127.0.0.1:0"]).arg(&config);
    // SAFETY: only setrlimit between fork and exec.
    unsafe {
        command
            .pre_exec(|| setrlimit(Resource::RLIMIT_NOFILE, 64, 64).map_err(std::io::Error::from));
    }
    let mut server = Server::spawn(command, TempDir::new());
    let addr = server.wait_listening();

    // Hold more connections than the server has descriptors for.
    let held: Vec<TcpStream> = (0..100)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    server.wait_for("accept failed");
    std::thread::sleep(Duration::from_millis(2500));
    let warnings = server.output().matches("accept failed").count();
    assert!(
        warnings <= 4,
        "{warnings} warnings in about 2.5 s: it must log at most once a second"
    );
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "the server keeps running"
    );

    drop(held);
    let started = Instant::now();
    loop {
        let ok = TcpStream::connect(addr).ok().and_then(|mut s| {
            s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
            send(&mut s, "GET", "/", &[("Connection", "close")], b"");
            read_response(&mut s).ok()
        });
        if ok.is_some_and(|r| r.status == 200) {
            break;
        }
        assert!(started.elapsed() < WAIT, "the server did not recover");
        std::thread::sleep(Duration::from_millis(50));
    }
}
