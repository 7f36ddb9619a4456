//! Differential test of the INI reader against CPython's configparser, set
//! up as baseplate.py uses it (RawConfigParser + os.path.expandvars on every
//! value). Thousands of generated files go through both; every file must give
//! the same sections, keys and values, or the same error on the same line.
//!
//! Skips (with a printed reason) where python3 is missing. The seed is
//! printed; rerun one with INI_DIFF_SEED=N, and change the count with
//! INI_DIFF_CASES=N.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use baseplate::config::expand::expand_vars;
use baseplate::config::ini::{self, IniErrorKind};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

const ORACLE: &str = r#"
import configparser, json, os, sys

class EnvironmentInterpolation(configparser.Interpolation):
    def before_get(self, parser, section, option, value, defaults):
        return os.path.expandvars(value)

folder, count = sys.argv[1], int(sys.argv[2])
for i in range(count):
    parser = configparser.RawConfigParser(interpolation=EnvironmentInterpolation())
    try:
        with open(os.path.join(folder, "case-%d.ini" % i), encoding="utf-8") as f:
            parser.read_file(f)
        sections = ["DEFAULT"] + parser.sections()
        result = {"ok": [[s, [list(kv) for kv in parser.items(s)]] for s in sections]}
    except configparser.MissingSectionHeaderError as e:
        result = {"error": "MissingSectionHeader", "line": e.lineno}
    except configparser.DuplicateSectionError as e:
        result = {"error": "DuplicateSection", "line": e.lineno}
    except configparser.DuplicateOptionError as e:
        result = {"error": "DuplicateOption", "line": e.lineno}
    except configparser.ParsingError as e:
        result = {"error": "Parsing", "line": e.errors[0][0]}
    print(json.dumps(result))
"#;

const ENV: &[(&str, &str)] = &[("BP_A", "alpha"), ("BP_B", ""), ("BP_C", "$BP_A")];

fn python3() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("python3"))
        .find(|candidate| candidate.is_file())
}

fn pick(options: &'static [&'static str]) -> impl Strategy<Value = String> {
    proptest::sample::select(options).prop_map(str::to_string)
}

/// Text drawn from characters that matter to the parser: delimiters,
/// comment and header marks, `$` references, and Unicode whitespace.
fn text(max: usize) -> impl Strategy<Value = String> {
    let atoms: &'static [&'static str] = &[
        "a",
        "b",
        "Z",
        "1",
        "_",
        ".",
        "-",
        " ",
        " ",
        "\t",
        "=",
        ":",
        ";",
        "#",
        "[",
        "]",
        "%",
        "'",
        "\"",
        "\\",
        "$",
        "{",
        "}",
        "$BP_A",
        "${BP_B}",
        "$BP_C",
        "${BP_UNSET}",
        "$BP_A_X",
        "é",
        "İ",
        "\u{a0}",
        "\u{0c}",
        "\u{1f}",
        "\u{85}",
        "\u{2028}",
    ];
    proptest::collection::vec(proptest::sample::select(atoms), 0..max).prop_map(|v| v.concat())
}

fn indent() -> impl Strategy<Value = String> {
    prop_oneof![6 => Just(String::new()), 1 => pick(&[" ", "  ", "\t", "    ", "\u{a0}"])]
}

fn line() -> impl Strategy<Value = String> {
    let header = (
        indent(),
        pick(&[
            "DEFAULT",
            "app:main",
            "server:main",
            "app:other",
            "x",
            "a]b",
            "]",
        ]),
        pick(&["]", "]", "]", "] trailing", "]]", ""]),
    )
        .prop_map(|(i, name, close)| format!("{i}[{name}{close}"));
    let entry = (
        indent(),
        pick(&[
            "factory",
            "Factory",
            "key",
            "a.b.c",
            "two words",
            "x",
            "y",
            "z",
            "İ",
            "k\u{a0}",
        ]),
        pick(&["", " ", "\t"]),
        pick(&["=", ":", " = ", ": ", "="]),
        text(8),
    )
        .prop_map(|(i, k, ws, d, v)| format!("{i}{k}{ws}{d}{v}"));
    let comment = (indent(), pick(&["#", ";"]), text(6)).prop_map(|(i, m, t)| format!("{i}{m}{t}"));
    let blank = pick(&["", " ", "\t", "\u{a0}"]);
    let continuation =
        (pick(&[" ", "  ", "\t", "     "]), text(6)).prop_map(|(i, t)| format!("{i}{t}"));
    let garbage = text(6);
    prop_oneof![
        3 => header,
        8 => entry,
        2 => comment,
        2 => blank,
        3 => continuation,
        1 => garbage,
    ]
}

fn file() -> impl Strategy<Value = String> {
    (
        pick(&["[app:main]", "[server:main]", "[DEFAULT]", ""]),
        proptest::collection::vec(line(), 0..14),
        pick(&["\n", "\n", "\r\n", "\r"]),
        any::<bool>(),
    )
        .prop_map(|(first, lines, newline, trailing)| {
            let mut text = std::iter::once(first)
                .chain(lines)
                .collect::<Vec<_>>()
                .join(&newline);
            if trailing {
                text.push_str(&newline);
            }
            text
        })
}

/// Our reader's answer in the oracle's JSON shape.
fn ours(text: &str) -> serde_json::Value {
    let env: HashMap<&str, &str> = ENV.iter().copied().collect();
    let lookup = |name: &str| env.get(name).map(|v| v.to_string());
    match ini::parse(text) {
        Ok(parsed) => {
            let default = ini::RawSection {
                name: ini::DEFAULT_SECTION.to_string(),
                line: 0,
                entries: Vec::new(),
            };
            let sections: Vec<serde_json::Value> = std::iter::once(&default)
                .chain(parsed.sections.iter())
                .map(|s| {
                    let items: Vec<serde_json::Value> = parsed
                        .merged_entries(s)
                        .into_iter()
                        .map(|e| serde_json::json!([e.key, expand_vars(&e.value, lookup)]))
                        .collect();
                    serde_json::json!([s.name, items])
                })
                .collect();
            serde_json::json!({ "ok": sections })
        }
        Err(e) => {
            let kind = match e.kind {
                IniErrorKind::MissingSectionHeader => "MissingSectionHeader",
                IniErrorKind::DuplicateSection { .. } => "DuplicateSection",
                IniErrorKind::DuplicateOption { .. } => "DuplicateOption",
                IniErrorKind::Parsing => "Parsing",
                IniErrorKind::NotUtf8 => "NotUtf8",
            };
            serde_json::json!({ "error": kind, "line": e.line })
        }
    }
}

fn run_oracle(python: &Path, folder: &Path, count: usize) -> Vec<serde_json::Value> {
    let mut command = Command::new(python);
    command
        .arg("-c")
        .arg(ORACLE)
        .arg(folder)
        .arg(count.to_string())
        .env_clear()
        .env("PYTHONUTF8", "1")
        .env("PYTHONIOENCODING", "utf-8");
    for (k, v) in ENV {
        command.env(k, v);
    }
    let output = command.output().expect("run python3");
    assert!(
        output.status.success(),
        "the oracle failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn ini_reader_matches_cpython_configparser() {
    let Some(python) = python3() else {
        println!("SKIPPED: python3 is not on PATH, so the configparser oracle is unavailable");
        return;
    };
    let count: usize = std::env::var("INI_DIFF_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let seed: u64 = std::env::var("INI_DIFF_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    println!("INI_DIFF_SEED={seed} INI_DIFF_CASES={count}");
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes),
    );
    let strategy = file();
    let cases: Vec<String> = (0..count)
        .map(|_| strategy.new_tree(&mut runner).unwrap().current())
        .collect();

    let folder = std::env::temp_dir().join(format!("bp-ini-diff-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&folder);
    std::fs::create_dir_all(&folder).unwrap();
    for (i, text) in cases.iter().enumerate() {
        std::fs::write(folder.join(format!("case-{i}.ini")), text).unwrap();
    }
    let expected = run_oracle(&python, &folder, count);
    let _ = std::fs::remove_dir_all(&folder);
    assert_eq!(expected.len(), count);

    let mut valid = 0;
    for (i, (text, want)) in cases.iter().zip(&expected).enumerate() {
        let got = ours(text);
        assert_eq!(
            &got, want,
            "case {i} differs (INI_DIFF_SEED={seed}).\nfile: {text:?}\nours:   {got}\npython: {want}"
        );
        valid += usize::from(want.get("ok").is_some());
    }
    println!(
        "{count} files agreed with CPython ({valid} parsed, {} errors)",
        count - valid
    );
    assert!(
        valid * 10 >= count,
        "too few valid files ({valid}) to be a meaningful test"
    );
}
