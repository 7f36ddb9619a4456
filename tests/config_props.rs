//! Property tests of the config layer:
//! - the INI reader never panics on arbitrary bytes;
//! - each value parser never panics, agrees with baseplate's documented
//!   results, and agrees with python3 implementations of the same rules on
//!   thousands of generated inputs, on what is accepted and what it reads
//!   as (the messages are ours; skipped with a reason without python3);
//! - `from_section` reads back generated structs written out as sections.
//!
//! INI agreement with CPython itself is in `ini_differential.rs`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};

use baseplate::config::types::parse_percent;
use baseplate::config::values::{parse_endpoint, parse_float, parse_int, parse_timespan, Endpoint};
use baseplate::config::{from_section, ini, ConfigFile, Timespan};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde::Deserialize;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn the_ini_reader_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = ini::parse_bytes(&bytes);
    }

    #[test]
    fn value_parsers_never_panic(text in ".{0,30}") {
        let _ = parse_int(&text);
        let _ = parse_float(&text);
        let _ = parse_timespan(&text);
        let _ = parse_percent(&text);
        let _ = parse_endpoint(&text);
        let _ = baseplate::config::types::parse_base64(&text);
    }
}

/// baseplate-py.md §13: inputs and what baseplate.lib.config makes of them,
/// with messages written for a Rust user rather than CPython's.
#[test]
fn value_parsers_match_baseplates_documented_results() {
    let int = parse_int;
    assert_eq!(int(" 42 "), Ok(42));
    assert_eq!(int("1_000"), Ok(1000));
    assert_eq!(int("-7"), Ok(-7));
    for bad in ["4.2", "", "0x10"] {
        assert_eq!(int(bad), Err(format!("{bad:?} is not a whole number")));
    }
    assert_eq!(parse_float("1e3"), Ok(1000.0));
    assert!(parse_float("inf").unwrap().is_infinite());
    assert!(parse_float("nan").unwrap().is_nan());
    assert_eq!(parse_float("abc"), Err("\"abc\" is not a number".into()));
    assert_eq!(parse_float(""), Err("\"\" is not a number".into()));
    assert_eq!(parse_timespan("1 secondss").map(|d| d.as_secs()), Ok(1));
    let not_a_timespan = |t: &str| {
        format!("{t:?} is not a timespan; write a whole number and a unit, like \"30 seconds\"")
    };
    assert_eq!(parse_timespan("1second"), Err(not_a_timespan("1second")));
    assert_eq!(parse_timespan(""), Err(not_a_timespan("")));
    assert_eq!(
        parse_timespan("1.5 seconds"),
        Err("\"1.5 seconds\" does not start with a whole number; write one, like \"1500 milliseconds\"".into())
    );
    let no_unit = |t: &str| {
        format!("{t:?} has no known unit; use milliseconds, seconds, minutes, hours or days")
    };
    assert_eq!(parse_timespan("1 week"), Err(no_unit("1 week")));
    assert_eq!(parse_timespan("1 Second"), Err(no_unit("1 Second")));
    let not_a_percentage =
        |t: &str| format!("{t:?} is not a percentage; write a number and %, like \"37.5%\"");
    assert_eq!(parse_percent("50"), Err(not_a_percentage("50")));
    assert_eq!(
        parse_percent("101%"),
        Err("\"101%\" is out of range; expected 0% to 100%".into())
    );
    assert_eq!(parse_percent("%"), Err(not_a_percentage("%")));
    assert_eq!(
        parse_endpoint("rel/sock"),
        Ok(Endpoint::Unix("rel/sock".into()))
    );
    assert_eq!(
        parse_endpoint(":80"),
        Ok(Endpoint::Tcp {
            host: String::new(),
            port: 80
        })
    );
    assert_eq!(
        parse_endpoint("h: 80"),
        Ok(Endpoint::Tcp {
            host: "h".into(),
            port: 80
        })
    );
    assert_eq!(
        parse_endpoint(""),
        Err("empty; expected HOST:PORT, [V6ADDR]:PORT or a UNIX socket path".into())
    );
    assert_eq!(
        parse_endpoint("host"),
        Err("\"host\" has no port; expected HOST:PORT, like \"localhost:9090\"".into())
    );
    assert_eq!(
        parse_endpoint("h:p"),
        Err("\"h:p\" has a port that is not a whole number (\"p\")".into())
    );
}

/// No message a value parser writes reads like a Python traceback.
#[test]
fn config_values_speak_rust() {
    let python_words = [
        "invalid literal",
        "could not convert",
        "dict_keys",
        "base 10",
        "getpwnam",
        "getgrnam",
        "Incorrect padding",
        "invalid specification",
        "unknown unit",
    ];
    let inputs = [
        "4.2", "", "abc", "1 week", "1second", "50", "%", "h:p", "host", "=", "a", "ab",
    ];
    for text in inputs {
        let messages = [
            parse_int(text).err(),
            parse_float(text).err(),
            parse_timespan(text).err(),
            parse_percent(text).err(),
            parse_endpoint(text).err(),
            baseplate::config::types::parse_base64(text).err(),
        ];
        for message in messages.into_iter().flatten() {
            for word in python_words {
                assert!(!message.contains(word), "{text:?}: {message}");
            }
        }
    }
}

const ORACLE: &str = r#"
import json, sys

def timespan(text):
    units = {"millisecond": 1, "second": 1000, "minute": 60000, "hour": 3600000, "day": 86400000}
    parts = text.split()
    if len(parts) != 2:
        raise ValueError("invalid specification")
    count, unit = parts
    count = int(count)
    unit = unit.rstrip("s")
    if unit not in units:
        raise ValueError("unknown unit")
    return count * units[unit]

def percent(text):
    if not text.endswith("%"):
        raise ValueError("the value is not a percentage")
    value = float(text[:-1]) / 100.0
    if not 0.0 <= value <= 1.0:
        raise ValueError("percentage is out of valid range")
    return value

def endpoint(text):
    if not text:
        raise ValueError("no endpoint specified")
    if "/" in text:
        return ["unix", text]
    host, sep, port = text.partition(":")
    if not sep:
        raise ValueError("no port specified")
    return ["tcp", host, int(port)]

parsers = {"int": int, "float": float, "timespan": timespan, "percent": percent, "endpoint": endpoint}
out = []
for kind, text in json.load(sys.stdin):
    try:
        value = parsers[kind](text)
        if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
            value = repr(value)
        out.append({"ok": value})
    except ValueError as e:
        out.append({"err": str(e)})
print(json.dumps(out))
"#;

fn python3() -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("python3"))
        .find(|p| p.is_file())
}

fn pick(options: &'static [&'static str]) -> impl Strategy<Value = String> {
    proptest::sample::select(options).prop_map(str::to_string)
}

fn numberish() -> impl Strategy<Value = String> {
    let atoms: &'static [&'static str] = &[
        "0", "1", "2", "7", "9", "42", "_", "-", "+", ".", "e", "E", " ", "x", "inf", "nan", "1_0",
        "00",
    ];
    proptest::collection::vec(proptest::sample::select(atoms), 0..6).prop_map(|v| v.concat())
}

fn case() -> impl Strategy<Value = (String, String)> {
    prop_oneof![
        numberish().prop_map(|t| ("int".to_string(), t)),
        numberish().prop_map(|t| ("float".to_string(), t)),
        (
            numberish(),
            pick(&[" ", "  ", "\t", "", " x "]),
            pick(&[
                "seconds",
                "second",
                "secondss",
                "ms",
                "minute",
                "hours",
                "day",
                "Day",
                "week",
                "milliseconds",
                ""
            ])
        )
            .prop_map(|(n, sep, unit)| ("timespan".to_string(), format!("{n}{sep}{unit}"))),
        (numberish(), pick(&["%", "%", "", "%%"]))
            .prop_map(|(n, p)| ("percent".to_string(), format!("{n}{p}"))),
        (
            pick(&["", "localhost", "a.b", "h", "/run/x", "rel/y"]),
            pick(&[":", "", "::", ": "]),
            numberish()
        )
            .prop_map(|(h, sep, p)| ("endpoint".to_string(), format!("{h}{sep}{p}"))),
    ]
}

/// Ours, in the oracle's JSON shape.
fn ours(kind: &str, text: &str) -> serde_json::Value {
    let result: Result<serde_json::Value, String> = match kind {
        "int" => parse_int(text).map(|n| n.into()),
        "float" => parse_float(text).map(|f| {
            if f.is_finite() {
                f.into()
            } else if f.is_nan() {
                "nan".into()
            } else if f > 0.0 {
                "inf".into()
            } else {
                "-inf".into()
            }
        }),
        "timespan" => parse_timespan(text).map(|d| (d.as_millis() as u64).into()),
        "percent" => parse_percent(text).map(|f| f.into()),
        "endpoint" => parse_endpoint(text).map(|e| match e {
            Endpoint::Unix(p) => serde_json::json!(["unix", p.display().to_string()]),
            Endpoint::Tcp { host, port } => serde_json::json!(["tcp", host, port]),
        }),
        _ => unreachable!(),
    };
    match result {
        Ok(v) => serde_json::json!({ "ok": v }),
        Err(e) => serde_json::json!({ "err": e }),
    }
}

/// Where this crate chooses to differ from baseplate.py (docs/config.md):
/// negative timespans and ports outside 0..=65535 are refused, and numbers
/// beyond 64 bits do not fit.
fn documented_difference(kind: &str, python: &serde_json::Value, ours: &serde_json::Value) -> bool {
    let Some(value) = python.get("ok") else {
        return false;
    };
    let refused = ours.get("err").and_then(|e| e.as_str()).unwrap_or("");
    match kind {
        "timespan" => {
            value.as_i64().is_some_and(|v| v < 0)
                || value.as_u64().is_none() && refused.contains("too")
        }
        "endpoint" => value[2].as_i64().is_none_or(|p| !(0..=65535).contains(&p)),
        "int" => value.as_i64().is_none() && refused.contains("too large"),
        _ => false,
    }
}

#[test]
fn value_parsers_agree_with_python_implementations_of_baseplates_rules() {
    let Some(python) = python3() else {
        println!("SKIPPED: python3 is not on PATH");
        return;
    };
    let count: usize = std::env::var("CONFIG_PROP_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let seed: u64 = std::env::var("CONFIG_PROP_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(seed);
    println!("CONFIG_PROP_SEED={seed} CONFIG_PROP_CASES={count}");
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &bytes),
    );
    let strategy = case();
    let cases: Vec<(String, String)> = (0..count)
        .map(|_| strategy.new_tree(&mut runner).unwrap().current())
        .collect();

    let mut child = Command::new(python)
        .args(["-c", ORACLE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let input = serde_json::to_vec(&cases).unwrap();
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(&input).unwrap();
    }
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    let expected: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(expected.len(), count);
    let mut differences = 0;
    for ((kind, text), want) in cases.iter().zip(&expected) {
        let got = ours(kind, text);
        let same = match (got.get("ok"), want.get("ok")) {
            // serde_json reads floats to within an ulp; compare relatively.
            (Some(a), Some(b)) if a.is_f64() || b.is_f64() => {
                let (a, b) = (
                    a.as_f64().unwrap_or(f64::NAN),
                    b.as_f64().unwrap_or(f64::NAN),
                );
                a == b || (a - b).abs() <= 1e-15 * a.abs().max(b.abs())
            }
            // Both refuse it: the wording is ours (config_values_speak_rust
            // checks it), not CPython's.
            (None, None) => got.get("err").is_some() && want.get("err").is_some(),
            _ => &got == want,
        };
        if !same {
            assert!(
                documented_difference(kind, want, &got),
                "{kind} {text:?}: ours {got}, python {want} (CONFIG_PROP_SEED={seed})"
            );
            differences += 1;
        }
    }
    println!("{count} inputs agreed with the Python rules ({differences} documented differences)");
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
struct Inner {
    count: i64,
    names: Vec<String>,
    ratio: f64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
struct Outer {
    title: String,
    flag: bool,
    inner: Inner,
    maybe: Option<u16>,
    timeout: Timespan,
    // A map with no keys set is absent: `default` makes it empty (DictOf).
    #[serde(default)]
    table: BTreeMap<String, i32>,
}

fn word() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_][a-zA-Z0-9_ .:/-]{0,10}[a-zA-Z0-9_]".prop_map(|s| s)
}

fn outer() -> impl Strategy<Value = (Outer, u64)> {
    (
        word(),
        any::<bool>(),
        any::<i64>(),
        proptest::collection::vec(word(), 1..5),
        -1e9f64..1e9,
        proptest::option::of(any::<u16>()),
        0u64..100_000,
        proptest::collection::btree_map("[a-z][a-z0-9_]{0,6}", any::<i32>(), 0..4),
    )
        .prop_map(
            |(title, flag, count, names, ratio, maybe, seconds, table)| {
                (
                    Outer {
                        title,
                        flag,
                        inner: Inner {
                            count,
                            names,
                            ratio,
                        },
                        maybe,
                        timeout: Timespan(std::time::Duration::from_secs(seconds)),
                        table,
                    },
                    seconds,
                )
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn from_section_reads_back_what_was_written((value, seconds) in outer()) {
        let mut text = String::from("[app:main]\n");
        text.push_str(&format!("title = {}\n", value.title));
        text.push_str(&format!("flag = {}\n", if value.flag { "True" } else { "false" }));
        text.push_str(&format!("inner.count = {}\n", value.inner.count));
        text.push_str(&format!("inner.names = {}\n", value.inner.names.join(" , ")));
        text.push_str(&format!("inner.ratio = {:?}\n", value.inner.ratio));
        match value.maybe {
            Some(n) => text.push_str(&format!("maybe = {n}\n")),
            None => text.push_str("maybe =\n"),
        }
        text.push_str(&format!("timeout = {seconds} seconds\n"));
        for (k, v) in &value.table {
            text.push_str(&format!("table.{k} = {v}\n"));
        }
        let file = ConfigFile::parse(Path::new("gen.ini"), text.as_bytes()).unwrap();
        let section = file.section("app", "main").unwrap();
        let back: Outer = from_section(&section).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(back, value);
    }
}
