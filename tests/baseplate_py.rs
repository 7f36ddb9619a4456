//! Health checks across implementations, against baseplate.py 2.7.1
//! itself: its `baseplate-healthcheck` checks our servers, and ours checks
//! baseplate.py services (fixtures/baseplate-py/), on both protocols and
//! for every probe.
//!
//! baseplate.py comes from a virtualenv: `$BASEPLATE_PY_VENV`, else
//! `target/baseplate-py` (which .ci/run makes with `pip install
//! baseplate==2.7.1`). Without one, the tests say so and pass.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
use nix::sys::signal::Signal;

fn venv() -> Option<PathBuf> {
    let dir = std::env::var_os("BASEPLATE_PY_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/baseplate-py"));
    if dir.join("bin/baseplate-healthcheck").exists() {
        Some(dir)
    } else {
        eprintln!(
            "skipped: no baseplate.py virtualenv at {} (make one with `python3 -m venv DIR && DIR/bin/pip install baseplate==2.7.1`, or set BASEPLATE_PY_VENV)",
            dir.display()
        );
        None
    }
}

/// baseplate.py's checker.
fn py_check(venv: &Path, args: &[&str]) -> Output {
    Command::new(venv.join("bin/baseplate-healthcheck"))
        .args(args)
        .env("OTEL_SDK_DISABLED", "true")
        .output()
        .unwrap()
}

/// Ours.
fn check(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_baseplate-healthcheck"))
        .args(args)
        .output()
        .unwrap()
}

fn says_ok(output: &Output) -> bool {
    output.status.success() && String::from_utf8_lossy(&output.stdout) == "OK!\n"
}

#[test]
fn baseplate_pys_checker_checks_our_servers() {
    let Some(venv) = venv() else { return };
    let drain = "drain_time = 3 seconds\nstop_timeout = 3 seconds";
    for (config, kind) in [
        (config_with(drain), "wsgi"),
        (
            format!("[server:main]\nfactory = baseplate.server.thrift\n{drain}\n\n[app:main]\nfactory = baseplate.examples.thrift:make_processor\n"),
            "thrift",
        ),
    ] {
        let mut server = Server::start(&config, &[]);
        let addr = server.addr().to_string();
        for probe in ["readiness", "liveness", "startup"] {
            let output = py_check(&venv, &["--probe", probe, kind, &addr]);
            assert!(says_ok(&output), "{kind} {probe}: {output:?}");
        }
        server.signal(Signal::SIGTERM);
        server.wait_for("Draining inbound requests");
        let output = py_check(&venv, &[kind, &addr]);
        assert!(!output.status.success(), "{kind} readiness in drain: {output:?}");
        assert!(says_ok(&py_check(&venv, &["--probe", "liveness", kind, &addr])));
        assert!(server.wait_exit(WAIT).success());
    }
}

#[test]
fn our_checker_checks_baseplate_py_services() {
    let Some(venv) = venv() else { return };
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/baseplate-py");
    for (config, kind) in [("wsgi.ini", "wsgi"), ("thrift.ini", "thrift")] {
        let dir = TempDir::new();
        let flag = dir.path().join("unhealthy");
        let mut command = Command::new(venv.join("bin/baseplate-serve"));
        command
            .args(["--bind", "127.0.0.1:0", config])
            .current_dir(&fixtures)
            .env("OTEL_SDK_DISABLED", "true")
            .env("UNHEALTHY_FILE", &flag);
        let mut server = Server::spawn(command, dir);
        // `Listening on ('127.0.0.1', PORT)`
        let line = server.wait_for("Listening on");
        let port: u16 = line
            .split("', ")
            .nth(1)
            .and_then(|rest| rest.split(')').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {line}"));
        let addr = format!("127.0.0.1:{port}");
        for probe in ["readiness", "liveness", "startup"] {
            let output = check(&["--probe", probe, kind, &addr]);
            assert!(says_ok(&output), "{kind} {probe}: {output:?}");
        }
        std::fs::write(&flag, "").unwrap();
        let output = check(&[kind, &addr]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        let expected = match kind {
            "wsgi" => "with status 503",
            _ => "with false",
        };
        assert!(stderr.contains(expected), "{stderr}");
        assert!(says_ok(&check(&["--probe", "liveness", kind, &addr])));
    }
}
