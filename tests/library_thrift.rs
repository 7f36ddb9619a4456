//! A Thrift service on the library (`examples/thrift_service.rs`): a tower
//! service sees the call as the server read it, and a tower layer named by
//! the server's `handler` key wraps a Thrift app.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use baseplate::example_apps::example_thrift::TExampleSyncClient;
use common::thrift_clients::*;
use common::*;

fn example_binary() -> PathBuf {
    // `cargo test` builds examples, but a filtered run does not.
    let status = Command::new(env!("CARGO"))
        .args(["build", "--example", "thrift_service"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .unwrap();
    assert!(
        status.success(),
        "cargo build --example thrift_service failed"
    );
    binary()
        .parent()
        .unwrap()
        .join("examples")
        .join("thrift_service")
}

fn start(config: &str) -> Server {
    let dir = TempDir::new();
    let path = dir.write("app.ini", config);
    let mut command = Command::new(example_binary());
    command.arg("--bind").arg("127.0.0.1:0").arg(&path);
    let mut server = Server::spawn(command, dir);
    server.addr = Some(server.wait_listening());
    server
}

#[test]
fn the_tower_request_carries_headers_trace_ids_and_the_deadline() {
    let server = start(
        "[server:main]\nfactory = baseplate.server.thrift\n\n[app:main]\nfactory = my_service:make_inspector\n",
    );
    let mut client = header_client(
        server.addr(),
        true,
        false,
        &[
            ("Trace", "1234"),
            ("Parent", "5678"),
            ("Span", "91011"),
            ("Sampled", "1"),
            ("User-Agent", "library-test"),
            ("Deadline-Budget", "5000"),
        ],
    );
    assert_eq!(
        client.echo("x".into()).unwrap(),
        "method=echo seq=1 protocol=Compact trace=1234 parent=5678 span=91011 sampled=Some(true) \
         user_agent=library-test deadline=5000 ms (Deadline-Budget)"
    );
    // Without THeader: no headers, a generated trace id, no deadline.
    let mut framed = crate_client(server.addr(), Dialect::FramedBinary);
    let text = framed.echo("x".into()).unwrap();
    assert!(
        text.starts_with("method=echo seq=1 protocol=Binary trace=")
            && text.ends_with(" parent=- span=- sampled=None user_agent=- deadline=-"),
        "{text}"
    );
    // Methods it does not answer get UNKNOWN_METHOD, and the connection
    // lives; `is_healthy` is the server's to answer.
    assert!(framed.is_healthy().unwrap());
    match framed.add(1, 2) {
        Err(thrift::Error::Application(e)) => {
            assert_eq!(e.kind, thrift::ApplicationErrorKind::UnknownMethod)
        }
        other => panic!("{other:?}"),
    }
    assert!(framed.echo("y".into()).is_ok());
}

#[test]
fn the_handler_key_wraps_a_thrift_app_in_a_tower_layer() {
    let server = start(
        "[server:main]\nfactory = baseplate.server.thrift\nhandler = my_service.timeout\n\n\
         [app:main]\nfactory = baseplate.examples.thrift:make_processor\n",
    );
    let mut client = crate_client(server.addr(), Dialect::FramedBinary);
    let started = Instant::now();
    match client.sleep(2000) {
        Err(thrift::Error::Application(e)) => {
            assert_eq!(e.kind, thrift::ApplicationErrorKind::InternalError);
            assert_eq!(e.message, "sleep failed: request timed out");
        }
        other => panic!("expected the layer's timeout, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_millis(1500));
    assert!(client.is_healthy().unwrap());
}

#[test]
fn an_unknown_thrift_handler_is_a_located_error() {
    let (code, _, stderr) = {
        let dir = TempDir::new();
        let path = dir.write(
            "app.ini",
            "[server:main]\nfactory = baseplate.server.thrift\nhandler = my_service.timeot\n\n\
             [app:main]\nfactory = baseplate.examples.thrift:make_processor\n",
        );
        let out = Command::new(example_binary())
            .arg("--check")
            .arg(&path)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains(
            ":3: [server:main] handler: handler \"my_service.timeot\" is not registered in this binary; registered: my_service.timeout (did you mean \"my_service.timeout\"?)"
        ),
        "{stderr}"
    );
}
