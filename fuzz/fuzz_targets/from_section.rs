//! `from_section` on arbitrary config text, into a struct with every kind of
//! field: it must never panic, only return values or located errors.
#![no_main]

use std::collections::HashMap;
use std::path::Path;

use baseplate::config::{from_section, Base64, ConfigFile, Endpoint, Percent, Timespan, TimespanOrInfinite};
use libfuzzer_sys::fuzz_target;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct Nested {
    count: Option<i32>,
    names: Option<Vec<String>>,
    ratio: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct Settings {
    flag: Option<bool>,
    timeout: Option<Timespan>,
    deadline: Option<TimespanOrInfinite>,
    share: Option<Percent>,
    backend: Option<Endpoint>,
    secret: Option<Base64>,
    nested: Option<Nested>,
    #[serde(default)]
    table: HashMap<String, u16>,
    list: Option<Vec<u8>>,
}

fuzz_target!(|data: &[u8]| {
    let mut text = b"[app:main]\n".to_vec();
    text.extend_from_slice(data);
    if let Ok(file) = ConfigFile::parse(Path::new("fuzz.ini"), &text) {
        if let Ok(section) = file.section("app", "main") {
            let _ = from_section::<Settings>(&section);
        }
    }
});
