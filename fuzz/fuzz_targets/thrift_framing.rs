//! The Thrift framing code on arbitrary bytes: the dialect detector, the
//! THeader decoder and the unframed scanner must never panic.
#![no_main]

use baseplate::server::thrift::dialect::{classify_frame, detect, Protocol};
use baseplate::server::thrift::header::decode;
use baseplate::server::thrift::scanner::scan;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = detect(data);
    let _ = classify_frame(data);
    let _ = decode(data, 1 << 20);
    let _ = scan(Protocol::Binary, data, 1 << 20);
    let _ = scan(Protocol::Compact, data, 1 << 20);
});
