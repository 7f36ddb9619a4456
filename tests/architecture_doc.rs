//! docs/architecture.md names only files and directories that exist: a
//! file moved or renamed without the map following fails here.
//!
//! Paths (`src/server/lifecycle.rs`, `src/process/`) are looked up from the
//! crate the section is about: the root package, then `einhorn-sim/` from
//! its heading on. A bare file name in a tree (`├─ ini.rs`) must be some
//! file of that crate's `src/`.

use std::path::{Path, PathBuf};

fn files_named(dir: &Path, name: &str, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files_named(&path, name, found);
        } else if path.file_name().is_some_and(|n| n == name) {
            found.push(path);
        }
    }
}

/// The path-like words of a line: `src/...`, `tests/...` and bare `x.rs`.
fn named_paths(line: &str) -> Vec<String> {
    line.split(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-')))
        .map(|word| word.trim_end_matches(['.', '-']))
        .filter(|word| {
            let rooted = [
                "src/",
                "tests/",
                "docs/",
                "fixtures/",
                "benches/",
                "examples/",
            ]
            .iter()
            .any(|root| word.starts_with(root));
            rooted || (word.ends_with(".rs") && !word.contains('/'))
        })
        .map(str::to_string)
        .collect()
}

#[test]
fn every_file_the_architecture_names_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("docs/architecture.md")).unwrap();
    let mut base = root.to_path_buf();
    let mut checked = 0;
    let mut missing = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.starts_with("## einhorn-sim") {
            base = root.join("einhorn-sim");
        }
        for word in named_paths(line) {
            checked += 1;
            let exists = if word.contains('/') {
                base.join(&word).exists() || root.join(&word).exists()
            } else {
                let mut found = Vec::new();
                files_named(&base.join("src"), &word, &mut found);
                !found.is_empty()
            };
            if !exists {
                missing.push(format!("docs/architecture.md:{}: {word}", n + 1));
            }
        }
    }
    assert!(checked > 100, "found only {checked} paths in the document");
    assert!(
        missing.is_empty(),
        "docs/architecture.md names files that do not exist; update the map:\n{}",
        missing.join("\n")
    );
}

#[test]
fn the_path_finder_sees_rooted_paths_and_bare_files() {
    assert_eq!(
        named_paths("  ├─ src/process/  the shell; see ini.rs, and `tests/x.rs`."),
        vec!["src/process/", "ini.rs", "tests/x.rs"]
    );
}
