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
            "app factory \"my_service.web:make_ap\" is not registered in this binary; registered: my_service.web:make_app, my_service.web:make_app_with_anyhow (did you mean \"my_service.web:make_app\"?)"
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

/// `--check` with the anyhow factory and this `greeting` line: the exit
/// status, stderr, and the config file's path.
fn check_anyhow_factory(greeting_line: &str) -> (Option<i32>, String, String) {
    let dir = TempDir::new();
    let config = dir.write(
        "app.ini",
        &CONFIG
            .replace(
                "my_service.web:make_app",
                "my_service.web:make_app_with_anyhow",
            )
            .replace("greeting = howdy", greeting_line),
    );
    let output = Command::new(example_binary())
        .arg("--check")
        .arg(&config)
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
        config.display().to_string(),
    )
}

#[test]
fn an_anyhow_factory_error_keeps_its_located_lines() {
    let (status, stderr, path) = check_anyhow_factory("greeting =");
    assert_eq!(status, Some(1));
    assert_eq!(
        stderr,
        format!(
            "error: {path}:6: [app:main] factory: my_service.web:make_app_with_anyhow failed: reading the web settings\n\
             error: {path}:7: [app:main] greeting: no value specified\n"
        )
    );
}

#[test]
fn an_anyhow_error_chain_is_one_line() {
    let (status, stderr, path) = check_anyhow_factory("greeting = unreachable");
    assert_eq!(status, Some(1));
    assert_eq!(
        stderr,
        format!(
            "error: {path}:6: [app:main] factory: my_service.web:make_app_with_anyhow failed: \
             connecting to the greeting service: connection refused\n"
        )
    );
}

#[test]
fn a_user_layer_sees_the_request_span_with_the_callers_ids() {
    let dir = TempDir::new();
    let config = dir.write("app.ini", CONFIG);
    let mut command = Command::new(example_binary());
    command
        .args(["--bind", "127.0.0.1:0"])
        .arg(&config)
        .env("REPORT_SPANS", "1");
    let mut server = Server::spawn(command, dir);
    let addr = server.wait_listening();
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let r = request(addr, "GET", "/", &[("traceparent", traceparent)], b"");
    assert_eq!(r.status, 200);
    let line = server.wait_for("span reporter: request");
    assert_eq!(
        line,
        "span reporter: request otel.name=\"GET\" otel.kind=\"server\" \
         http.request.method=\"GET\" url.path=\"/\" url.scheme=\"http\" \
         server.address=\"test\" network.protocol.version=\"1.1\" \
         baseplate.trace_id=4bf92f3577b34da6a3ce929d0e0e4736 \
         baseplate.parent_id=\"00f067aa0ba902b7\""
    );
}

#[test]
fn debug_shows_tower_http_trace_layer_events() {
    let dir = TempDir::new();
    let config = dir.write("app.ini", CONFIG);
    let mut command = Command::new(example_binary());
    command
        .args(["--debug", "--bind", "127.0.0.1:0"])
        .arg(&config);
    let mut server = Server::spawn(command, dir);
    let addr = server.wait_listening();
    assert_eq!(get(addr, "/").status, 200);
    let line = server.wait_for("tower_http::trace");
    assert!(line.contains("\"level\":\"DEBUG\""), "{line}");
}

#[test]
fn a_tower_http_timeout_layer_behind_handler_answers_408() {
    let dir = TempDir::new();
    let config = dir.write(
        "app.ini",
        &CONFIG.replace(
            "stop_timeout = 5 seconds",
            "stop_timeout = 5 seconds\nhandler = my_service.timeout",
        ),
    );
    let mut command = Command::new(example_binary());
    command.args(["--bind", "127.0.0.1:0"]).arg(&config);
    let mut server = Server::spawn(command, dir);
    let addr = server.wait_listening();
    assert_eq!(get(addr, "/").status, 200);
    assert_eq!(get(addr, "/slow").status, 408);
}

#[test]
fn a_tower_http_compression_layer_gzips_for_clients_that_accept_it() {
    let greeting = "a greeting long enough to be worth compressing, ".repeat(4);
    let dir = TempDir::new();
    let config = dir.write(
        "app.ini",
        &CONFIG.replace("greeting = howdy", &format!("greeting = {greeting}")),
    );
    let mut command = Command::new(example_binary());
    command.args(["--bind", "127.0.0.1:0"]).arg(&config);
    let mut server = Server::spawn(command, dir);
    let addr = server.wait_listening();
    let expected = format!("{} from axum (cache ttl 0s)\n", greeting.trim_end());

    let plain = get(addr, "/");
    assert_eq!(
        (plain.header("content-encoding"), plain.text()),
        (None, expected.clone())
    );

    let gzipped = request(addr, "GET", "/", &[("Accept-Encoding", "gzip")], b"");
    assert_eq!(gzipped.status, 200);
    assert_eq!(gzipped.header("content-encoding"), Some("gzip"));
    assert_eq!(&gzipped.body[..2], b"\x1f\x8b", "not a gzip stream");
    let mut gunzip = Command::new("gzip")
        .arg("-dc")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("gzip(1) runs");
    use std::io::Write as _;
    gunzip
        .stdin
        .take()
        .unwrap()
        .write_all(&gzipped.body)
        .unwrap();
    let out = gunzip.wait_with_output().unwrap();
    assert!(out.status.success(), "gzip -dc failed");
    assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
}
