//! The unframed-message scanner on arbitrary bytes, in both protocols: no
//! panic, whatever lengths and nesting the bytes claim.
#![no_main]

use baseplate::wire::dialect::Protocol;
use baseplate::wire::scanner::scan;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = scan(Protocol::Binary, data, 1 << 20);
    let _ = scan(Protocol::Compact, data, 1 << 20);
});
