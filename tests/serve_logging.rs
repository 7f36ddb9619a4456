//! The `[loggers]` override: levels, stream and format from the config file.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const APP: &str = "[server:main]\nfactory = baseplate.server.wsgi\nnot_an_option = 1\n\n\
                   [app:main]\nfactory = baseplate.examples.http:make_app\n\n";

/// Starts the server on a UNIX socket and waits until it accepts.
fn start(config: &str) -> (Server, std::path::PathBuf) {
    let dir = TempDir::new();
    let path = dir.write("app.ini", config);
    let socket = dir.path().join("app.sock");
    let mut command = Command::new(binary());
    command.arg("--bind").arg(&socket).arg(&path);
    let server = Server::spawn(command, dir);
    wait_accepting(&socket);
    (server, socket)
}

fn wait_accepting(socket: &Path) {
    let deadline = Instant::now() + WAIT;
    while std::os::unix::net::UnixStream::connect(socket).is_err() {
        assert!(
            Instant::now() < deadline,
            "the server never accepted on {}",
            socket.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn sleep_request(socket: &Path) {
    use std::io::{Read, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(socket).unwrap();
    stream
        .write_all(b"GET /sleep?ms=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
}

#[test]
fn root_warning_hides_info_lines_and_text_format_applies() {
    let config = format!(
        "{APP}[loggers]\nkeys = root\n[logger_root]\nlevel = WARNING\nhandlers = console\n\
         [handlers]\nkeys = console\n[handler_console]\nclass = StreamHandler\nargs = (sys.stdout,)\nformatter = plain\n\
         [formatters]\nkeys = plain\n[formatter_plain]\nformat = %(levelname)s %(message)s\n"
    );
    let (mut server, socket) = start(&config);
    sleep_request(&socket);
    // A WARN line proves output flows; the INFO ones must be absent.
    let warning = server.wait_for("not_an_option");
    assert!(warning.contains(" WARN  ["), "text format: {warning}");
    server.signal(nix::sys::signal::Signal::SIGUSR1);
    server.wait_for("Received SIGUSR1");
    let output = server.output();
    assert!(!output.contains("Listening on"), "{output}");
    assert!(!output.contains("sleeping for"), "{output}");
}

#[test]
fn a_named_logger_gets_its_own_level_and_stderr_works() {
    let config = format!(
        "{APP}[loggers]\nkeys = root, example\n[logger_root]\nlevel = WARNING\nhandlers = err\n\
         [logger_example]\nlevel = INFO\nqualname = baseplate.example_apps.http\n\
         [handlers]\nkeys = err\n[handler_err]\nclass = StreamHandler\nargs = (sys.stderr,)\nformatter = j\n\
         [formatters]\nkeys = j\n[formatter_j]\nclass = pythonjsonlogger.jsonlogger.JsonFormatter\n"
    );
    let (mut server, socket) = start(&config);
    sleep_request(&socket);
    let line = server.wait_for("sleeping for 1 ms");
    assert!(line.starts_with('{'), "JSON format: {line}");
    let output = server.output();
    assert!(!output.contains("Listening on"), "{output}");
}

#[test]
fn unsupported_logging_settings_are_errors() {
    let config = format!(
        "{APP}[loggers]\nkeys = root\n[logger_root]\nlevel = WARNING\nhandlers = file\n\
         [handler_file]\nclass = FileHandler\nargs = ('app.log',)\n"
    );
    let (code, _, stderr) = run_once(&config, &["--check"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains(
            "[handler_file] class: \"FileHandler\" is not supported; only StreamHandler is"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("[handler_file] args:"), "{stderr}");
    assert_eq!(stderr.lines().count(), 2, "{stderr}");
}
