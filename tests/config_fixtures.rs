//! `fixtures/configs/`: every valid file passes `--check`; every invalid
//! file makes `baseplate-serve` print exactly the lines of its `.expected`
//! file and exit 1.

mod common;

use std::path::Path;
use std::process::Command;

use common::binary;

fn files(dir: &str) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut names: Vec<String> = std::fs::read_dir(root.join(dir))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".ini"))
        .map(|n| format!("{dir}/{n}"))
        .collect();
    names.sort();
    names
}

#[test]
fn valid_configs_pass_the_check() {
    let valid = files("fixtures/configs/valid");
    assert!(valid.len() >= 2);
    for file in valid {
        let output = Command::new(binary())
            .args(["--check", &file])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn invalid_configs_print_exactly_their_expected_errors() {
    let invalid = files("fixtures/configs/invalid");
    assert!(invalid.len() >= 10, "{invalid:?}");
    for file in invalid {
        let expected_path = file.replace(".ini", ".expected");
        let expected =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(&expected_path))
                .unwrap_or_else(|_| panic!("{expected_path} is missing"));
        let output = Command::new(binary())
            .args(["--bind", "127.0.0.1:0", &file])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{file}: {stderr}");
        assert_eq!(stderr, expected, "{file}");
        assert!(!stderr.contains("panicked"));
    }
}
