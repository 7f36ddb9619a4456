//! Apache Thrift's cross-language test service, served by
//! `baseplate-serve fixtures/thrift-test.ini`, checked by Python's Apache
//! `thrift` library (PyPI) with code `thrift --gen py` generated from the
//! same IDL: every `ThriftTest` method, for its exact result or exception
//! (`oneway` included), in binary, compact and THeader, framed and
//! unframed, and multiplexed with `SecondService`
//! (tests/python/thrift_test_client.py).
//!
//! The library comes from a virtualenv: `$THRIFT_PY_VENV`, else
//! `target/thrift-py`, which .ci/run makes (`pip install thrift==0.20.0`).
//! Without one the test says so and passes, except under CI (`CI` set),
//! where it fails.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::thrift_clients::{call_without_args, crate_client, Dialect, HealthV1};
use common::*;
use thrift::TThriftClient;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn python() -> Option<PathBuf> {
    let venv = std::env::var_os("THRIFT_PY_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/thrift-py"));
    let python = venv.join("bin/python");
    if python.exists() {
        return Some(python);
    }
    let help = format!(
        "no Python Apache Thrift virtualenv at {} (make one with `python3 -m venv DIR && \
         DIR/bin/pip install thrift==0.20.0`, or set THRIFT_PY_VENV)",
        venv.display()
    );
    assert!(std::env::var_os("CI").is_none(), "CI needs it: {help}");
    eprintln!("skipped: {help}");
    None
}

/// `thrift --gen py` of the test IDL, into `dir`.
fn generate_python(dir: &Path) {
    let status = Command::new("thrift")
        .args(["--gen", "py", "-out"])
        .arg(dir)
        .arg(root().join("fixtures/thrift/thrift_test.thrift"))
        .status()
        .expect("running the Thrift compiler (apt-get install thrift-compiler)");
    assert!(status.success());
}

#[test]
fn python_clients_pass_every_thrift_test_method_in_every_dialect() {
    let Some(python) = python() else { return };
    let generated = TempDir::new();
    generate_python(generated.path());
    let config = std::fs::read_to_string(root().join("fixtures/thrift-test.ini")).unwrap();
    let server = Server::start(&config, &[]);
    let port = server.addr().port().to_string();

    let mut runs = Vec::new();
    for protocol in ["binary", "compact"] {
        for transport in ["framed", "unframed"] {
            runs.push(vec![protocol, transport]);
            runs.push(vec![protocol, transport, "--multiplexed"]);
        }
    }
    for protocol in ["header-binary", "header-compact"] {
        runs.push(vec![protocol, "-"]);
        runs.push(vec![protocol, "-", "--multiplexed"]);
    }
    // Each on a connection of its own, all at once.
    let clients: Vec<_> = runs
        .iter()
        .map(|args| {
            let child = Command::new(&python)
                .arg(root().join("tests/python/thrift_test_client.py"))
                .arg(generated.path())
                .args(["127.0.0.1", &port])
                .args(args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("running python");
            (args.join(" "), child)
        })
        .collect();
    for (what, child) in clients {
        let output = child.wait_with_output().expect("running python");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{what}:\n{stdout}\n{stderr}");
        let last = stdout.lines().last().unwrap_or_default();
        let passed: usize = last
            .strip_suffix(" passed, 0 failed")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{what}: {last}"));
        let expected = if what.ends_with("--multiplexed") {
            52
        } else {
            47
        };
        assert_eq!(passed, expected, "{what}: every check ran");
    }
}

/// The other direction: a Python Apache server raises `ThriftTest`'s
/// declared exceptions, and a Rust client built from baseplate's generated
/// code gets each as its typed variant (`From<thrift::Error>` for the
/// method's error enum), an undeclared one as `Other`.
#[test]
fn a_python_servers_declared_exceptions_reach_a_rust_client_typed() {
    use baseplate::example_apps::thrift_test_thrift::{
        TThriftTestSyncClient, ThriftTestSyncClient, ThriftTestTestExceptionError as OneError,
        ThriftTestTestMultiExceptionError as MultiError,
    };
    use std::io::BufRead;
    use thrift::protocol::{TBinaryInputProtocol, TBinaryOutputProtocol};
    use thrift::transport::{TFramedReadTransport, TFramedWriteTransport, TIoChannel, TTcpChannel};

    let Some(python) = python() else { return };
    let generated = TempDir::new();
    generate_python(generated.path());
    let mut server = KillOnDrop(
        Command::new(&python)
            .arg(root().join("tests/python/thrift_test_server.py"))
            .arg(generated.path())
            .stdout(Stdio::piped())
            .spawn()
            .expect("running python"),
    );
    let mut line = String::new();
    std::io::BufReader::new(server.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port: u16 = line
        .trim()
        .strip_prefix("listening on ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("the Python server said {line:?}"));
    let stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let (r, w) = TTcpChannel::with_stream(stream).split().unwrap();
    let mut client = ThriftTestSyncClient::new(
        TBinaryInputProtocol::new(TFramedReadTransport::new(r), true),
        TBinaryOutputProtocol::new(TFramedWriteTransport::new(w), true),
    );

    match client
        .test_exception("Xception".into())
        .map_err(OneError::from)
    {
        Err(OneError::Err1(e)) => {
            assert_eq!(
                (e.error_code, e.message.as_deref()),
                (Some(1001), Some("Xception"))
            )
        }
        other => panic!("expected Err1(Xception): {other:?}"),
    }
    match client
        .test_exception("TException".into())
        .map_err(OneError::from)
    {
        // Python's processor answers an undeclared exception with
        // INTERNAL_ERROR, and logs it.
        Err(OneError::Other(thrift::Error::Application(e))) => {
            assert_eq!(e.kind, thrift::ApplicationErrorKind::InternalError, "{e:?}")
        }
        other => panic!("expected Other(an application exception): {other:?}"),
    }
    match client
        .test_multi_exception("Xception2".into(), "x".into())
        .map_err(MultiError::from)
    {
        Err(MultiError::Err2(e)) => {
            assert_eq!(e.error_code, Some(2002));
            let thing = e.struct_thing.and_then(|t| t.string_thing);
            assert_eq!(thing.as_deref(), Some("This is an Xception2"));
        }
        other => panic!("expected Err2(Xception2): {other:?}"),
    }
    let fine = client
        .test_multi_exception("none".into(), "kept".into())
        .unwrap();
    assert_eq!(fine.string_thing.as_deref(), Some("kept"));
}

/// A multiplexed probe (`Service:is_healthy`) is answered by the server, as
/// a plain one is, and the reply carries the bare method name, as Apache's
/// multiplexed processors write it.
#[test]
fn multiplexed_probes_and_reply_names() {
    let config = std::fs::read_to_string(root().join("fixtures/thrift-test.ini")).unwrap();
    let server = Server::start(&config, &[]);
    let mut plain = crate_client(server.addr(), Dialect::FramedBinary);
    assert!(plain.is_healthy().unwrap(), "plain is_healthy");
    let mut probe = MultiplexedProbe(crate_client(server.addr(), Dialect::FramedCompact));
    assert!(probe.is_healthy("ThriftTest").unwrap());
    assert!(
        probe.is_healthy("NoSuchService").unwrap(),
        "answered before any service is chosen"
    );
}

/// A processor registered on its own (not in a `Multiplexed`) refuses a
/// multiplexed name, as Apache's processors do, and the connection serves
/// on.
#[test]
fn a_lone_processor_refuses_service_prefixed_names() {
    let server = Server::start(
        "[server:main]\nfactory = baseplate.server.thrift\n\n[app:main]\nfactory = baseplate.examples.thrift_async:make_service\n",
        &[],
    );
    let mut client = MultiplexedProbe(crate_client(server.addr(), Dialect::FramedBinary));
    let reply = client.call("Example:echo").unwrap();
    assert_eq!(
        reply.message_type,
        thrift::protocol::TMessageType::Exception
    );
    let error =
        thrift::Error::read_application_error_from_in_protocol(client.0.i_prot_mut()).unwrap();
    assert_eq!(
        error.kind,
        thrift::ApplicationErrorKind::UnknownMethod,
        "{error:?}"
    );
    client.0.i_prot_mut().read_message_end().unwrap();
    assert!(client.0.is_healthy().unwrap(), "the connection serves on");
}

/// Calls by any name with no arguments, on the example client's protocols.
struct MultiplexedProbe(common::thrift_clients::Client);

impl MultiplexedProbe {
    /// Sends `name` with empty arguments; returns the reply's header.
    fn call(&mut self, name: &str) -> thrift::Result<thrift::protocol::TMessageIdentifier> {
        call_without_args(&mut self.0, name)
    }

    /// `is_healthy` named `SERVICE:is_healthy`.
    fn is_healthy(&mut self, service: &str) -> thrift::Result<bool> {
        use thrift::protocol::{TMessageType, TType};
        let reply = self.call(&format!("{service}:is_healthy"))?;
        let i = self.0.i_prot_mut();
        assert_eq!(reply.name, "is_healthy", "the reply names the bare method");
        assert_eq!(reply.message_type, TMessageType::Reply);
        i.read_struct_begin()?;
        let field = i.read_field_begin()?;
        assert_eq!((field.id, field.field_type), (Some(0), TType::Bool));
        let healthy = i.read_bool()?;
        i.read_field_end()?;
        assert_eq!(i.read_field_begin()?.field_type, TType::Stop);
        i.read_struct_end()?;
        i.read_message_end()?;
        Ok(healthy)
    }
}
