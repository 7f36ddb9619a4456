//! A service binary written on the library (`examples/axum_service.rs`)
//! registers an `axum::Router` factory and gets the full command line.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;

fn example_binary() -> PathBuf {
    let path = binary()
        .parent()
        .unwrap()
        .join("examples")
        .join("axum_service");
    {
        // `cargo test` builds examples, but a filtered run (`--test
        // library_axum`) does not: make sure it is there and current.
        let status = Command::new(env!("CARGO"))
            .args(["build", "--example", "axum_service"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .unwrap();
        assert!(
            status.success(),
            "cargo build --example axum_service failed"
        );
    }
    path
}

const CONFIG: &str = "[server:main]\nfactory = baseplate.server.wsgi\nstop_timeout = 5 seconds\n\n\
                      [app:main]\nfactory = my_service.web:make_app\ngreeting = howdy\n";

#[test]
fn an_axum_router_is_served_as_an_app() {
    let dir = TempDir::new();
    let config = dir.write("app.ini", CONFIG);
    let mut command = Command::new(example_binary());
    command.args(["--bind", "127.0.0.1:0"]).arg(&config);
    let mut server = Server::spawn(command, dir);
    let r = get(server.wait_listening(), "/");
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "howdy from axum (cache ttl 0s)\n")
    );
    server.signal(Signal::SIGTERM);
    assert_eq!(server.wait_exit(Duration::from_secs(5)).code(), Some(0));
}

#[test]
fn the_binary_knows_only_its_own_factories() {
    let dir = TempDir::new();
    let config = dir.write(
        "app.ini",
        &CONFIG.replace("my_service.web:make_app", "my_service.web:make_ap"),
    );
    let output = Command::new(example_binary())
        .arg("--check")
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "app factory \"my_service.web:make_ap\" is not registered in this binary; registered: my_service.web:make_app (did you mean \"my_service.web:make_app\"?)"
        ),
        "{stderr}"
    );
}

#[test]
fn a_failing_factory_is_one_error_line() {
    let dir = TempDir::new();
    let config = dir.write("app.ini", &CONFIG.replace("greeting = howdy", "greeting ="));
    let output = Command::new(example_binary())
        .arg("--check")
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.ends_with("app.ini:7: [app:main] greeting: no value specified\n"),
        "{stderr}"
    );
}
