//! End-to-end: `baseplate-serve` as an Einhorn worker, with a small fake
//! master written here: the test process is the parent, passes a listening
//! socket at a known fd number, and reads the ACK from its command socket.

mod common;

use std::io::{ErrorKind, Read};
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::sys::signal::Signal;

/// The master side: the command socket and the environment for a worker.
struct FakeMaster {
    dir: TempDir,
    command_socket: UnixListener,
    sock_path: PathBuf,
}

impl FakeMaster {
    fn new() -> FakeMaster {
        let dir = TempDir::new();
        let sock_path = dir.path().join("einhorn.sock");
        let command_socket = UnixListener::bind(&sock_path).unwrap();
        command_socket.set_nonblocking(true).unwrap();
        FakeMaster {
            dir,
            command_socket,
            sock_path,
        }
    }

    /// A worker command: our child, with the Einhorn environment and `fd`
    /// inherited at its own number.
    fn worker(&self, fd: Option<RawFd>, extra_env: &[(&str, &str)], args: &[&str]) -> Command {
        let config = self
            .dir
            .write("app.ini", &config_with("stop_timeout = 5 seconds"));
        let mut command = Command::new(binary());
        command
            .args(args)
            .arg(&config)
            .env("EINHORN_MASTER_PID", std::process::id().to_string())
            .env("EINHORN_SOCK_PATH", &self.sock_path)
            .env("EINHORN_CHILD_INDEX", "0");
        match fd {
            Some(fd) => {
                command
                    .env("EINHORN_FD_COUNT", "1")
                    .env("EINHORN_FD_0", fd.to_string());
                // SAFETY: only async-signal-safe fcntl between fork and exec.
                unsafe {
                    command.pre_exec(move || {
                        fcntl(
                            BorrowedFd::borrow_raw(fd),
                            FcntlArg::F_SETFD(FdFlag::empty()),
                        )
                        .map(|_| ())
                        .map_err(std::io::Error::from)
                    });
                }
            }
            None => {
                command.env("EINHORN_FD_COUNT", "0");
            }
        }
        for (k, v) in extra_env {
            command.env(k, v);
        }
        command
    }

    /// Reads one whole message sent to the command socket.
    fn read_ack(&self) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            match self.command_socket.accept() {
                Ok((mut stream, _)) => {
                    stream.set_nonblocking(false).unwrap();
                    stream.set_read_timeout(Some(WAIT)).unwrap();
                    let mut text = String::new();
                    stream.read_to_string(&mut text).unwrap();
                    return text;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => panic!("no ACK arrived: {e}"),
            }
        }
    }

    fn no_ack_pending(&self) -> bool {
        matches!(self.command_socket.accept(), Err(e) if e.kind() == ErrorKind::WouldBlock)
    }
}

fn ack_for(server: &Server) -> String {
    format!(
        "{{\"command\": \"worker:ack\", \"pid\": {}}}\n",
        server.child.id()
    )
}

#[test]
fn adopts_the_inherited_tcp_socket_and_acks() {
    let master = FakeMaster::new();
    let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let inherited = socket.local_addr().unwrap();
    let command = master.worker(
        Some(socket.as_raw_fd()),
        &[],
        &["--bind", "127.0.0.1:1"], // must be ignored
    );
    let mut server = Server::spawn(command, TempDir::new());

    assert_eq!(master.read_ack(), ack_for(&server));
    let line = server.wait_for("Listening on");
    assert!(
        line.contains(&format!("Listening on {inherited}")),
        "{line}"
    );

    // Served by the worker through the socket the master still holds too.
    assert_eq!(get(inherited, "/").text(), "hello from baseplate-serve\n");
    assert_eq!(get(inherited, "/health").status, 200);

    // Einhorn asks workers to stop with SIGUSR2.
    server.signal(Signal::SIGUSR2);
    assert_eq!(server.wait_exit(Duration::from_secs(5)).code(), Some(0));
}

#[test]
fn adopts_an_inherited_unix_socket() {
    let master = FakeMaster::new();
    let path = master.dir.path().join("app.sock");
    let socket = UnixListener::bind(&path).unwrap();
    let command = master.worker(
        Some(socket.as_raw_fd()),
        &[("EINHORN_FD_FAMILY_0", "AF_UNIX")],
        &[],
    );
    let mut server = Server::spawn(command, TempDir::new());
    assert_eq!(master.read_ack(), ack_for(&server));
    let line = server.wait_for("Listening on");
    assert!(line.contains(&path.display().to_string()), "{line}");

    let reply = unix_get(&path);
    assert!(reply.starts_with("HTTP/1.1 200 OK"), "{reply}");
}

#[test]
fn a_worker_without_sockets_binds_itself_and_still_acks() {
    let master = FakeMaster::new();
    let command = master.worker(None, &[], &["--bind", "127.0.0.1:0"]);
    let mut server = Server::spawn(command, TempDir::new());
    assert_eq!(master.read_ack(), ack_for(&server));
    let addr = server.wait_listening();
    assert_eq!(get(addr, "/").status, 200);
}

#[test]
fn not_a_worker_when_the_master_is_not_the_parent() {
    let master = FakeMaster::new();
    let mut command = master.worker(None, &[], &["--bind", "127.0.0.1:0"]);
    command.env("EINHORN_MASTER_PID", "1");
    let mut server = Server::spawn(command, TempDir::new());
    server.wait_for("Listening on 127.0.0.1:");
    // The ACK would have been sent before `Listening on`.
    assert!(master.no_ack_pending(), "a non-worker must not ACK");
}

fn worker_error(master: &FakeMaster, fd: Option<RawFd>, env: &[(&str, &str)]) -> String {
    let mut command = master.worker(fd, env, &["--bind", "127.0.0.1:0"]);
    let output = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

#[test]
fn a_failed_ack_is_an_error() {
    let master = FakeMaster::new();
    let missing = master.dir.path().join("nobody-home.sock");
    let e = worker_error(
        &master,
        None,
        &[("EINHORN_SOCK_PATH", missing.to_str().unwrap())],
    );
    assert!(
        e.contains(&format!(
            "cannot send the Einhorn ACK to EINHORN_SOCK_PATH={}: No such file or directory",
            missing.display()
        )),
        "{e}"
    );
}

#[test]
fn bad_einhorn_environment_values_are_errors() {
    let master = FakeMaster::new();
    let e = worker_error(&master, None, &[("EINHORN_MASTER_PID", "abc")]);
    assert!(
        e.contains("EINHORN_MASTER_PID=\"abc\" is not a process id"),
        "{e}"
    );
    let e = worker_error(&master, None, &[("EINHORN_FD_COUNT", "many")]);
    assert!(e.contains("EINHORN_FD_COUNT=\"many\""), "{e}");
    let e = worker_error(
        &master,
        None,
        &[("EINHORN_FD_COUNT", "1"), ("EINHORN_FD_0", "x")],
    );
    assert!(
        e.contains("EINHORN_FD_0=\"x\" is not a file descriptor number"),
        "{e}"
    );
    let e = worker_error(
        &master,
        None,
        &[("EINHORN_FD_COUNT", "1"), ("EINHORN_FD_0", "900")],
    );
    assert!(
        e.contains("EINHORN_FD_0=900: file descriptor 900 is not open"),
        "{e}"
    );

    let file = std::fs::File::open(env!("CARGO_MANIFEST_DIR")).unwrap();
    let e = worker_error(&master, Some(file.as_raw_fd()), &[]);
    assert!(e.contains("is not a socket"), "{e}");

    let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let e = worker_error(
        &master,
        Some(socket.as_raw_fd()),
        &[("EINHORN_FD_FAMILY_0", "AF_UNIX")],
    );
    assert!(
        e.contains("EINHORN_FD_FAMILY_0 says AF_UNIX, but the socket is a TCP socket"),
        "{e}"
    );
    let e = worker_error(
        &master,
        Some(socket.as_raw_fd()),
        &[("EINHORN_FD_FAMILY_0", "AF_BOGUS")],
    );
    assert!(
        e.contains("EINHORN_FD_FAMILY_0=\"AF_BOGUS\" is not supported"),
        "{e}"
    );

    let e = worker_error(&master, None, &[("EINHORN_SOCK_PATH", "")]);
    assert!(e.contains("EINHORN_SOCK_PATH is not set"), "{e}");
}

#[test]
fn reload_under_einhorn_reuses_the_socket_and_acks_again() {
    let master = FakeMaster::new();
    let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let inherited = socket.local_addr().unwrap();
    let command = master.worker(Some(socket.as_raw_fd()), &[], &["--reload"]);
    let mut server = Server::spawn(command, TempDir::new());
    assert_eq!(master.read_ack(), ack_for(&server));
    server.wait_for("Listening on");

    // The config the worker runs is the master's app.ini.
    let config = master.dir.path().join("app.ini");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("{text}greeting = again\n")).unwrap();
    server.wait_for("Reloading, ");
    assert_eq!(
        master.read_ack(),
        ack_for(&server),
        "the same pid ACKs again"
    );
    let line = server.wait_for("Listening on");
    assert!(line.contains(&inherited.to_string()), "{line}");
    let settings: serde_json::Value =
        serde_json::from_str(&get(inherited, "/config").text()).unwrap();
    assert_eq!(settings["greeting"], "again");
}
