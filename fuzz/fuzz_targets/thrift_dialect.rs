//! The Thrift dialect detector on arbitrary first bytes of a connection and
//! of a frame: it must never panic, whatever a client sends first.
#![no_main]

use baseplate::wire::dialect::{classify_frame, detect};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = detect(data);
    let _ = classify_frame(data);
});
