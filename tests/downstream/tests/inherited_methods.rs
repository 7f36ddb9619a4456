//! The service's own binary, called with its generated client: its own
//! method, the methods it inherits from the example service, and the
//! `is_healthy` it inherits from baseplate.thrift (answered by the app with
//! `health.answered_by = app`), with sync and async handlers.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use baseplate::thrift::protocol::{TBinaryInputProtocol, TBinaryOutputProtocol};
use baseplate::thrift::transport::{
    TFramedReadTransport, TFramedWriteTransport, TIoChannel, TTcpChannel,
};

mod downstream {
    include!(concat!(env!("OUT_DIR"), "/downstream.rs"));
}

use downstream::baseplate::{IsHealthyProbe, IsHealthyRequest, TBaseplateServiceV2SyncClient};
use downstream::example::{ExampleFailError, TExampleSyncClient};
use downstream::{DownstreamSyncClient, TDownstreamSyncClient};

/// The running binary, killed when dropped.
struct Service(Child);

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the binary serving `factory` on an ephemeral port; returns it
/// and the address from its `Listening on` line.
fn start(dir: &tempfile::TempDir, factory: &str) -> (Service, String) {
    let config = dir
        .path()
        .join(format!("{}.ini", factory.replace(':', "_")));
    std::fs::write(
        &config,
        format!(
            "[server:main]\nfactory = baseplate.server.thrift\nhealth.answered_by = app\n\n\
             [app:main]\nfactory = {factory}\n"
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_downstream-service"))
        .args(["--bind", "127.0.0.1:0"])
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let service = Service(child);
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(rest) = line.split("Listening on ").nth(1) {
            let addr = rest.split('"').next().unwrap().to_string();
            return (service, addr);
        }
    }
    panic!("the service exited before listening");
}

#[test]
fn own_inherited_and_base_methods_answer_through_sync_and_async_handlers() {
    let dir = tempfile::tempdir().unwrap();
    for factory in ["downstream:make_processor", "downstream:make_service"] {
        let (service, addr) = start(&dir, factory);
        let stream = TcpStream::connect(&addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let (r, w) = TTcpChannel::with_stream(stream).split().unwrap();
        let mut client = DownstreamSyncClient::new(
            TBinaryInputProtocol::new(TFramedReadTransport::new(r), true),
            TBinaryOutputProtocol::new(TFramedWriteTransport::new(w), true),
        );

        let me = client.whoami("downstream".to_string()).unwrap();
        assert_eq!(me.name.as_deref(), Some("downstream"), "{factory}");
        assert_eq!(me.pid, Some(i64::from(service.0.id())), "{factory}");

        assert_eq!(
            client.add(2, 40).unwrap(),
            42,
            "{factory}: inherited from Example"
        );
        // The declared exception, typed: no downcast.
        match client
            .fail("declared".to_string())
            .map_err(ExampleFailError::from)
        {
            Err(ExampleFailError::Oops(oops)) => {
                assert_eq!(oops.message.as_deref(), Some("declared"), "{factory}")
            }
            other => panic!("{factory}: expected Oops, got {other:?}"),
        }

        // The app's handler, inherited from BaseplateServiceV2, answers:
        // it says no to startup, where the server would say yes.
        let probe = IsHealthyRequest::new(IsHealthyProbe::LIVENESS);
        assert!(client.is_healthy(probe).unwrap(), "{factory}: liveness");
        let probe = IsHealthyRequest::new(IsHealthyProbe::STARTUP);
        assert!(
            !client.is_healthy(probe).unwrap(),
            "{factory}: the app's startup answer"
        );
    }
}
