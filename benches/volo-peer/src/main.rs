//! volo-thrift serving the example IDL (`fixtures/thrift/example.thrift`)
//! over framed binary, with handlers as cheap as baseplate's async example:
//! the peer of the `async-vs-volo` benchmarks in benches/run.sh.
//!
//! ```text
//! volo-peer ADDR
//! ```

mod gen {
    include!(concat!(env!("OUT_DIR"), "/volo_gen.rs"));
}

use std::net::SocketAddr;
use std::time::Duration;

use gen::volo_gen::example::{Example, ExampleFailException, ExampleServer, Oops};
use pilota::FastStr;
use volo_thrift::codec::default::DefaultMakeCodec;
use volo_thrift::{MaybeException, ServerError};

struct Handlers;

impl Example for Handlers {
    /// `BaseplateServiceV2.is_healthy`, which the example service extends.
    async fn is_healthy(
        &self,
        _request: gen::volo_gen::baseplate::IsHealthyRequest,
    ) -> Result<bool, ServerError> {
        Ok(true)
    }

    async fn echo(&self, message: FastStr) -> Result<FastStr, ServerError> {
        Ok(message)
    }

    async fn sleep(&self, ms: i32) -> Result<(), ServerError> {
        tokio::time::sleep(Duration::from_millis(ms.clamp(0, 600_000) as u64)).await;
        Ok(())
    }

    async fn add(&self, a: i32, b: i32) -> Result<i32, ServerError> {
        Ok(a.wrapping_add(b))
    }

    async fn fail(
        &self,
        message: FastStr,
    ) -> Result<MaybeException<(), ExampleFailException>, ServerError> {
        Ok(MaybeException::Exception(ExampleFailException::Oops(Oops {
            message: Some(message),
        })))
    }

    async fn fire(&self, _note: FastStr) -> Result<(), ServerError> {
        Ok(())
    }

    async fn crash(&self, message: FastStr) -> Result<(), ServerError> {
        panic!("crash requested: {message}")
    }
}

#[volo::main]
async fn main() {
    let text = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9094".to_string());
    let addr: SocketAddr = match text.parse() {
        Ok(addr) => addr,
        Err(e) => {
            eprintln!("volo-peer: {text:?} is not an address like 127.0.0.1:9094: {e}");
            std::process::exit(2);
        }
    };
    println!("Listening on {addr}");
    let served = ExampleServer::new(Handlers)
        // Plain framed binary, as baseplate's example is benchmarked with.
        .make_codec(DefaultMakeCodec::framed())
        .run(volo::net::Address::from(addr))
        .await;
    if let Err(e) = served {
        eprintln!("volo-peer: cannot serve on {addr}: {e}");
        std::process::exit(1);
    }
}
