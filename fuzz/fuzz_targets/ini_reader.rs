//! The INI reader on arbitrary bytes: it must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(ini) = baseplate::config::ini::parse_bytes(data) {
        for section in &ini.sections {
            let _ = ini.merged_entries(section);
        }
    }
});
