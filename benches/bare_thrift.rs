//! The baseline for the Thrift benchmarks: a minimal tokio loop serving
//! framed-binary calls to the same generated example processor, inline,
//! with none of baseplate-serve's machinery.
//!
//! ```text
//! bare_thrift ADDR
//! ```

use std::sync::Arc;

use baseplate::example_apps::example_thrift::ExampleSyncProcessor;
use baseplate::example_apps::thrift::ExampleHandler;
use thrift::protocol::{TBinaryInputProtocol, TBinaryOutputProtocol};
use thrift::server::TProcessor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn main() {
    let addr = std::env::args()
        .skip(1)
        .find(|a| a != "--bench")
        .unwrap_or_else(|| "127.0.0.1:9092".to_string());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let processor = Arc::new(ExampleSyncProcessor::new(ExampleHandler));
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&addr).await.expect("bind");
        println!("Listening on {}", listener.local_addr().expect("addr"));
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("signal");
        loop {
            let (mut stream, _) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(_) => continue,
                },
                _ = term.recv() => return,
            };
            let _ = stream.set_nodelay(true);
            let processor = Arc::clone(&processor);
            tokio::spawn(async move {
                let mut frame = Vec::new();
                loop {
                    let mut len = [0u8; 4];
                    if stream.read_exact(&mut len).await.is_err() {
                        return;
                    }
                    frame.resize(u32::from_be_bytes(len) as usize, 0);
                    if stream.read_exact(&mut frame).await.is_err() {
                        return;
                    }
                    let mut out = Vec::new();
                    {
                        let mut input = TBinaryInputProtocol::new(&frame[..], true);
                        let mut output = TBinaryOutputProtocol::new(&mut out, true);
                        if processor.process(&mut input, &mut output).is_err() {
                            return;
                        }
                    }
                    let mut reply = (out.len() as u32).to_be_bytes().to_vec();
                    reply.extend_from_slice(&out);
                    if stream.write_all(&reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
}
