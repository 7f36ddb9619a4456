//! systemd socket activation and readiness notification, without systemd:
//! the test passes a socket as fd 3 with LISTEN_FDS/LISTEN_PID, and listens
//! on a NOTIFY_SOCKET datagram socket.

mod common;

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;

#[test]
fn serves_the_activated_socket_and_notifies_ready_and_stopping() {
    let dir = TempDir::new();
    let config = dir.write("app.ini", &config_with("stop_timeout = 5 seconds"));
    let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify.set_read_timeout(Some(WAIT)).unwrap();

    // LISTEN_PID must be the server's own pid: a shell learns its pid and
    // execs the server in place, as systemd's fork does.
    let mut command = Command::new("/bin/sh");
    command
        .args(["-c", "LISTEN_PID=$$ exec \"$0\" \"$@\""])
        .arg(binary())
        .args(["--bind", "127.0.0.1:1"]) // ignored: the activated socket wins
        .arg(&config)
        .env("LISTEN_FDS", "1")
        .env("NOTIFY_SOCKET", &notify_path);
    let fd = socket.as_raw_fd();
    // SAFETY: only dup2 between fork and exec; fd 3 is ours to replace.
    unsafe {
        command.pre_exec(move || {
            if fd == 3 {
                // Already there; dup2 onto itself would keep close-on-exec.
                let three = BorrowedFd::borrow_raw(3);
                return nix::fcntl::fcntl(
                    three,
                    nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
                )
                .map(|_| ())
                .map_err(std::io::Error::from);
            }
            let mut three = OwnedFd::from_raw_fd(3);
            let result = nix::unistd::dup2(BorrowedFd::borrow_raw(fd), &mut three);
            std::mem::forget(three);
            result.map(|_| ()).map_err(std::io::Error::from)
        });
    }
    let mut server = Server::spawn(command, TempDir::new());

    let mut message = [0u8; 64];
    let n = notify
        .recv(&mut message)
        .unwrap_or_else(|e| panic!("no READY=1 ({e}); output:\n{}", server.output()));
    assert_eq!(&message[..n], b"READY=1");
    let line = server.wait_for("Listening on");
    assert!(line.contains(&addr.to_string()), "{line}");
    assert_eq!(get(addr, "/").status, 200);

    server.signal(Signal::SIGTERM);
    let n = notify.recv(&mut message).expect("STOPPING=1");
    assert_eq!(&message[..n], b"STOPPING=1");
    assert_eq!(server.wait_exit(Duration::from_secs(5)).code(), Some(0));
}

#[test]
fn bad_systemd_variables_are_errors() {
    let (code, _, stderr) = {
        let dir = TempDir::new();
        let config = dir.write("app.ini", &config_with(""));
        let output = Command::new("/bin/sh")
            .args(["-c", "LISTEN_PID=$$ exec \"$0\" \"$@\""])
            .arg(binary())
            .args(["--bind", "127.0.0.1:0"])
            .arg(&config)
            .env("LISTEN_FDS", "lots")
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    assert_eq!(code, Some(1));
    assert_eq!(
        stderr,
        "error: LISTEN_FDS=\"lots\" is not a count of file descriptors\n"
    );
}
