//! End-to-end: HTTP/2 with prior knowledge (h2c), and its graceful shutdown.

mod common;

use std::time::Duration;

use common::*;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use nix::sys::signal::Signal;

type Sender = hyper::client::conn::http2::SendRequest<Empty<Bytes>>;

async fn h2_connect(server: &Server) -> Sender {
    let stream = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2c handshake");
    tokio::spawn(connection);
    sender
}

async fn h2_get(sender: &mut Sender, path: &str) -> (u16, String) {
    let request = http::Request::get(format!("http://test{path}"))
        .body(Empty::new())
        .unwrap();
    let response = sender.send_request(request).await.expect("h2 response");
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn serves_h2c_with_prior_knowledge() {
    let server = Server::start(&config_with(""), &[]);
    let mut sender = h2_connect(&server).await;
    assert_eq!(
        h2_get(&mut sender, "/").await,
        (200, "hello from baseplate-serve\n".to_string())
    );
    // Several streams on one connection at once.
    let (mut first, mut second) = (sender.clone(), sender.clone());
    let (a, b) = tokio::join!(
        h2_get(&mut first, "/sleep?ms=50"),
        h2_get(&mut second, "/health")
    );
    assert_eq!(a, (200, "slept 50 ms".to_string()));
    assert_eq!(b.0, 200);
}

#[tokio::test]
async fn h2_in_flight_stream_finishes_after_sigterm() {
    let mut server = Server::start(&config_with("stop_timeout = 10 seconds"), &[]);
    let mut sender = h2_connect(&server).await;
    let slow = tokio::spawn({
        let mut sender = sender.clone();
        async move { h2_get(&mut sender, "/sleep?ms=800").await }
    });
    tokio::task::spawn_blocking(move || {
        server.wait_for("sleeping for 800 ms");
        server.signal(Signal::SIGTERM);
        server.wait_for("Gracefully shutting down");
        let status = server.wait_exit(Duration::from_secs(5));
        assert_eq!(status.code(), Some(0), "{}", server.output());
    })
    .await
    .unwrap();
    assert_eq!(slow.await.unwrap(), (200, "slept 800 ms".to_string()));
    // After GOAWAY the connection takes no new streams.
    let request = http::Request::get("http://test/")
        .body(Empty::new())
        .unwrap();
    assert!(sender.send_request(request).await.is_err());
}
