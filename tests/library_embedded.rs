//! A binary with its own runtime and flags (`examples/embedded_service.rs`)
//! runs the lifecycle through `Serve::run` and stops it with its own
//! shutdown future.

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

fn example_binary() -> PathBuf {
    let path = binary()
        .parent()
        .unwrap()
        .join("examples")
        .join("embedded_service");
    // A filtered run (`--test library_embedded`) does not build examples.
    let status = Command::new(env!("CARGO"))
        .args(["build", "--example", "embedded_service"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .unwrap();
    assert!(
        status.success(),
        "cargo build --example embedded_service failed"
    );
    path
}

const CONFIG: &str =
    "[server:main]\nfactory = baseplate.server.wsgi\nstop_timeout = 10 seconds\n\n\
                      [app:main]\nfactory = my_service.web:make_app\n";

#[test]
fn the_lifecycle_runs_in_the_users_runtime_and_stops_with_its_future() {
    let dir = TempDir::new();
    let config = dir.write("app.ini", CONFIG);
    let mut command = Command::new(example_binary());
    command
        .args(["--greeting", "howdy", "--bind", "127.0.0.1:0"])
        .arg(&config);
    let mut server = Server::spawn_with_stdin(command, dir, Stdio::piped());
    let addr = server.wait_listening();
    let r = get(addr, "/");
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "howdy from an embedded service\n")
    );
    let slow = std::thread::spawn(move || get(addr, "/slow"));
    server.wait_for("slow request started");
    let mut stdin = server.stdin();
    stdin.write_all(b"stop\n").unwrap();
    server.wait_for("Shutdown triggered by the embedding program");
    let r = slow.join().unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "slow done\n"));
    // The lifecycle returned into the program's own main.
    server.wait_for("embedded_service: baseplate stopped; exiting");
    assert_eq!(server.wait_exit(Duration::from_secs(10)).code(), Some(0));
}

#[test]
fn signals_still_work_when_embedded() {
    let dir = TempDir::new();
    let config = dir.write("app.ini", CONFIG);
    let mut command = Command::new(example_binary());
    command.args(["--bind", "127.0.0.1:0"]).arg(&config);
    let mut server = Server::spawn_with_stdin(command, dir, Stdio::piped());
    let addr = server.wait_listening();
    assert_eq!(get(addr, "/").text(), "hello from an embedded service\n");
    server.signal(nix::sys::signal::Signal::SIGTERM);
    server.wait_for("embedded_service: baseplate stopped; exiting");
    assert_eq!(server.wait_exit(Duration::from_secs(10)).code(), Some(0));
}

#[test]
fn the_users_flags_and_name_are_in_help_and_version() {
    let binary = example_binary();
    let help = Command::new(&binary).arg("--help").output().unwrap();
    assert_eq!(help.status.code(), Some(0));
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("Usage: embedded_service [OPTIONS] <CONFIG_FILE>"),
        "{help}"
    );
    assert!(
        help.contains("--greeting <WORD>") && help.contains("The word the service greets with"),
        "{help}"
    );
    // baseplate's own flags are all there.
    for flag in [
        "--debug",
        "--reload",
        "--bind <ENDPOINT>",
        "--app-name <NAME>",
    ] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
    let version = Command::new(&binary).arg("--version").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&version.stdout),
        format!("my-service {}\n", env!("CARGO_PKG_VERSION"))
    );
    let usage = Command::new(&binary)
        .arg("--no-such-flag")
        .output()
        .unwrap();
    assert_eq!(usage.status.code(), Some(2));
}
