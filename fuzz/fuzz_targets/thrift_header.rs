//! The THeader decoder on arbitrary frame bodies: no panic, and no
//! allocation beyond the limit, whatever sizes the header claims.
#![no_main]

use baseplate::wire::header::decode;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decode(data, 1 << 20);
});
