//! baseplate-serve passes every scenario of einhorn-conformance, over HTTP
//! (fixtures/example.ini) and Thrift (fixtures/thrift.ini).

mod common;

use std::process::Command;

use common::*;

fn conformance(args: &[&str], fixture: &str) {
    let dir = TempDir::new();
    let junit = dir.path().join("junit.xml");
    let output = Command::new(workspace_binary("einhorn-conformance"))
        .args(args)
        .arg("--junit")
        .arg(&junit)
        .arg("--")
        .arg(binary())
        .arg(format!("{}/fixtures/{fixture}", env!("CARGO_MANIFEST_DIR")))
        .output()
        .unwrap();
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
