//! baseplate-serve passes every scenario of einhorn-conformance, over HTTP
//! (fixtures/example.ini) and Thrift (fixtures/thrift.ini).

mod common;

use std::process::Command;

use common::*;

fn conformance(args: &[&str], fixture: &str) {
    conformance_of(
        args,
        format!("{}/fixtures/{fixture}", env!("CARGO_MANIFEST_DIR")),
    );
}

fn conformance_of(args: &[&str], config: impl AsRef<std::ffi::OsStr>) {
    let dir = TempDir::new();
    let junit = dir.path().join("junit.xml");
    let output = run(args, &junit, config);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "einhorn-conformance failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("9 passed, 0 failed"), "{stdout}");
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert_eq!(xml.matches("<testcase ").count(), 9);
    assert_eq!(xml.matches("<failure").count(), 0);
}

fn run(
    args: &[&str],
    junit: &std::path::Path,
    config: impl AsRef<std::ffi::OsStr>,
) -> std::process::Output {
    Command::new(workspace_binary("einhorn-conformance"))
        .args(args)
        .arg("--junit")
        .arg(junit)
        .arg("--")
        .arg(binary())
        .arg(config)
        .output()
        .unwrap()
}

#[test]
fn http_server_passes_every_scenario() {
    conformance(&[], "example.ini");
}

#[test]
fn thrift_server_passes_every_scenario() {
    conformance(
        &["--protocol", "thrift", "--slow-request", "sleep:1000"],
        "thrift.ini",
    );
}

/// With metrics on, every worker also listens on the exporter's port:
/// `no-stray-listeners` fails and says how to declare it, and with
/// `--allow-port` every scenario passes, the exporter included.
#[test]
fn a_server_with_metrics_passes_with_its_exporter_port_allowed() {
    let dir = TempDir::new();
    let port = fixed_port();
    let config = dir.write(
        "app.ini",
        &format!(
            "[server:main]\nfactory = baseplate.server.wsgi\nstop_timeout = 10 seconds\n\n{EXAMPLE_APP}metrics.enabled = true\nmetrics.bind = 127.0.0.1:{port}\nmetrics.multiprocess_dir = {}\n",
            dir.path().join("metrics").display()
        ),
    );
    let output = run(
        &["--only", "no-stray-listeners"],
        &dir.path().join("junit.xml"),
        &config,
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!("TCP port(s) [{port}]")) && stdout.contains("--allow-port"),
        "{stdout}"
    );
    conformance_of(&["--allow-port", &port.to_string()], &config);
}
