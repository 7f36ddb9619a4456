//! A baseline for the default sync path: the `thrift` crate's own threaded
//! server (`thrift::server::TServer`, a thread per connection from a pool)
//! over the same generated example processor, framed binary. This is what a
//! user with a sync processor has without baseplate.
//!
//! ```text
//! thrift_tserver ADDR [WORKERS]
//! ```

use baseplate::example_apps::example_thrift::ExampleSyncProcessor;
use baseplate::example_apps::thrift::ExampleHandler;
use thrift::protocol::{TBinaryInputProtocolFactory, TBinaryOutputProtocolFactory};
use thrift::server::TServer;
use thrift::transport::{TFramedReadTransportFactory, TFramedWriteTransportFactory};

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:9093".to_string());
    // One thread per connection: the load generator opens 32.
    let workers: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(64);
    let mut server = TServer::new(
        TFramedReadTransportFactory::new(),
        TBinaryInputProtocolFactory::new(),
        TFramedWriteTransportFactory::new(),
        TBinaryOutputProtocolFactory::new(),
        ExampleSyncProcessor::new(ExampleHandler),
        workers,
    );
    println!("Listening on {addr}");
    if let Err(e) = server.listen(&addr) {
        eprintln!("thrift_tserver: {e}");
        std::process::exit(1);
    }
}
