//! The library's modules import one way: no file of `src/` reaches, through
//! the items it uses, back to itself.
//!
//! Each file is a node. A file points at the file that defines what it
//! names through `crate::`, `super::`, `self::` or a child module's name
//! (following `pub use` re-exports to the defining file). A file's uses of
//! the modules that contain it (a part of `metrics/` using what
//! `metrics/mod.rs` defines) are how a module shares its parts, and are not
//! counted; every other use is. Test modules (`#[cfg(test)] mod tests`)
//! and comments are left out: only the build's own imports count. A cycle
//! fails the test, listing its files and the names each takes from the
//! next.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module path from the crate root: `["server", "thrift", "call"]`.
type ModPath = Vec<String>;

/// One file of the library, with what it needs to resolve names.
struct Module {
    file: PathBuf,
    code: String,
    /// `mod NAME;` children.
    children: BTreeSet<String>,
}

fn library_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            // Binaries are crates of their own: they use `baseplate::`.
            if path.file_name().is_some_and(|n| n != "bin") {
                library_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a file under `src/`.
fn module_path(src: &Path, file: &Path) -> ModPath {
    let relative = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: ModPath = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts
}

/// The code the build sees: comments removed, test modules cut off.
fn build_code(text: &str) -> String {
    let mut code = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim();
        if trimmed == "#[cfg(test)]"
            && lines
                .peek()
                .is_some_and(|next| next.trim().starts_with("mod tests"))
        {
            break;
        }
        let line = match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        };
        code.push_str(line);
        code.push('\n');
    }
    code
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The paths of a use tree or a path expression starting at `at` (just
/// after a `prefix::`): `a::b`, `a::{b, c::d}`, `{a, b}`. Each is a list of
/// segments.
fn parse_tree(code: &[char], at: &mut usize) -> Vec<Vec<String>> {
    let skip_space = |at: &mut usize| {
        while *at < code.len() && code[*at].is_whitespace() {
            *at += 1;
        }
    };
    skip_space(at);
    if *at < code.len() && code[*at] == '{' {
        *at += 1;
        let mut paths = Vec::new();
        loop {
            skip_space(at);
            if *at >= code.len() {
                return paths;
            }
            match code[*at] {
                '}' => {
                    *at += 1;
                    return paths;
                }
                ',' => *at += 1,
                _ => {
                    let before = *at;
                    paths.extend(parse_tree(code, at));
                    if *at == before {
                        // Not a path (`*`, `self as x`): step over it.
                        *at += 1;
                    }
                }
            }
        }
    }
    let start = *at;
    while *at < code.len() && is_ident_char(code[*at]) {
        *at += 1;
    }
    if *at == start {
        return Vec::new();
    }
    let ident: String = code[start..*at].iter().collect();
    if code.get(*at) == Some(&':') && code.get(*at + 1) == Some(&':') {
        let mut after = *at + 2;
        skip_space(&mut after);
        let next = code.get(after).copied();
        if next.is_some_and(|c| c == '{' || is_ident_char(c)) {
            *at += 2;
            let rest = parse_tree(code, at);
            if rest.is_empty() {
                return vec![vec![ident]];
            }
            return rest
                .into_iter()
                .map(|mut path| {
                    path.insert(0, ident.clone());
                    path
                })
                .collect();
        }
    }
    vec![vec![ident]]
}

/// Every path the code names from its own crate, made absolute from the
/// crate root, with `use` statements marked (`true` for a `pub use`).
fn named_paths(module: &Module, here: &ModPath) -> Vec<(ModPath, bool)> {
    let code: Vec<char> = module.code.chars().collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i < code.len() {
        // A path starts at an identifier boundary.
        if i > 0 && (is_ident_char(code[i - 1]) || code[i - 1] == ':') {
            i += 1;
            continue;
        }
        let rest: String = code[i..(i + 40).min(code.len())].iter().collect();
        let (base, skip): (ModPath, usize) = if rest.starts_with("crate::") {
            (Vec::new(), "crate::".len())
        } else if rest.starts_with("super::") {
            let mut base = here.clone();
            let mut skip = 0;
            while code[i + skip..]
                .iter()
                .collect::<String>()
                .starts_with("super::")
            {
                base.pop();
                skip += "super::".len();
            }
            (base, skip)
        } else if rest.starts_with("self::") {
            (here.clone(), "self::".len())
        } else if let Some(child) = module
            .children
            .iter()
            .find(|c| rest.starts_with(&format!("{c}::")))
        {
            let mut base = here.clone();
            base.push(child.clone());
            (base, child.len() + 2)
        } else {
            i += 1;
            continue;
        };
        let line_start = code[..i]
            .iter()
            .rposition(|&c| c == '\n')
            .map_or(0, |p| p + 1);
        let line: String = code[line_start..i].iter().collect();
        let public_use = line.trim_start().starts_with("pub") && line.contains("use ");
        let mut at = i + skip;
        for path in parse_tree(&code, &mut at) {
            let mut full = base.clone();
            full.extend(path);
            found.push((full, public_use));
        }
        i = at.max(i + 1);
    }
    found
}

#[test]
fn no_file_of_the_library_imports_itself_back() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    library_files(&src, &mut files);
    let mut modules: BTreeMap<ModPath, Module> = BTreeMap::new();
    for file in files {
        if file == src.join("main.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let code = build_code(&text);
        let children = code
            .lines()
            .filter_map(|l| {
                let l = l.trim();
                let l = l.strip_prefix("pub ").unwrap_or(l);
                let l = l.strip_prefix("pub(crate) ").unwrap_or(l);
                l.strip_prefix("mod ")?
                    .strip_suffix(';')
                    .map(str::to_string)
            })
            .collect();
        let path = module_path(&src, &file);
        modules.insert(
            path,
            Module {
                file,
                code,
                children,
            },
        );
    }

    // Re-exports: (module, name) -> the path it stands for.
    let mut reexports: BTreeMap<(ModPath, String), ModPath> = BTreeMap::new();
    let mut named: BTreeMap<ModPath, Vec<(ModPath, bool)>> = BTreeMap::new();
    for (path, module) in &modules {
        let paths = named_paths(module, path);
        for (target, public_use) in &paths {
            if *public_use {
                if let Some(name) = target.last() {
                    reexports.insert((path.clone(), name.clone()), target.clone());
                }
            }
        }
        named.insert(path.clone(), paths);
    }

    // The file that defines what `target` names.
    let resolve = |target: &ModPath| -> Option<ModPath> {
        let mut target = target.clone();
        for _ in 0..16 {
            let module = (0..=target.len())
                .rev()
                .map(|n| target[..n].to_vec())
                .find(|prefix| modules.contains_key(prefix))?;
            let Some(name) = target.get(module.len()) else {
                return Some(module);
            };
            match reexports.get(&(module.clone(), name.clone())) {
                Some(next) if *next != target => {
                    let mut next = next.clone();
                    next.extend(target[module.len() + 1..].iter().cloned());
                    target = next;
                }
                _ => return Some(module),
            }
        }
        None
    };

    // from -> to -> the names taken.
    let mut edges: BTreeMap<ModPath, BTreeMap<ModPath, BTreeSet<String>>> = BTreeMap::new();
    for (from, paths) in &named {
        for (target, _) in paths {
            let Some(to) = resolve(target) else { continue };
            // The crate root, the file itself, or a module containing it.
            if from.starts_with(&to) {
                continue;
            }
            edges
                .entry(from.clone())
                .or_default()
                .entry(to)
                .or_default()
                .insert(target.join("::"));
        }
    }

    let cycles = strongly_connected(&modules.keys().cloned().collect::<Vec<_>>(), &edges);
    let mut report = String::new();
    for cycle in &cycles {
        let members: BTreeSet<&ModPath> = cycle.iter().collect();
        report.push_str("a cycle of files:\n");
        for from in cycle {
            for (to, names) in edges.get(from).into_iter().flatten() {
                if members.contains(to) {
                    let file = |p: &ModPath| {
                        modules[p]
                            .file
                            .strip_prefix(src.parent().unwrap())
                            .unwrap()
                            .display()
                            .to_string()
                    };
                    report.push_str(&format!(
                        "  {} -> {}: {}\n",
                        file(from),
                        file(to),
                        names.iter().cloned().collect::<Vec<_>>().join(", ")
                    ));
                }
            }
        }
    }
    assert!(
        cycles.is_empty(),
        "src/ has import cycles; make the imports point one way:\n{report}"
    );
}

/// Tarjan's strongly connected components with more than one member.
fn strongly_connected(
    nodes: &[ModPath],
    edges: &BTreeMap<ModPath, BTreeMap<ModPath, BTreeSet<String>>>,
) -> Vec<Vec<ModPath>> {
    struct State<'a> {
        edges: &'a BTreeMap<ModPath, BTreeMap<ModPath, BTreeSet<String>>>,
        index: BTreeMap<ModPath, usize>,
        low: BTreeMap<ModPath, usize>,
        stack: Vec<ModPath>,
        on_stack: BTreeSet<ModPath>,
        next: usize,
        found: Vec<Vec<ModPath>>,
    }
    fn visit(state: &mut State<'_>, node: &ModPath) {
        state.index.insert(node.clone(), state.next);
        state.low.insert(node.clone(), state.next);
        state.next += 1;
        state.stack.push(node.clone());
        state.on_stack.insert(node.clone());
        let targets: Vec<ModPath> = state
            .edges
            .get(node)
            .map(|t| t.keys().cloned().collect())
            .unwrap_or_default();
        for to in targets {
            if !state.index.contains_key(&to) {
                visit(state, &to);
                let low = state.low[node].min(state.low[&to]);
                state.low.insert(node.clone(), low);
            } else if state.on_stack.contains(&to) {
                let low = state.low[node].min(state.index[&to]);
                state.low.insert(node.clone(), low);
            }
        }
        if state.low[node] == state.index[node] {
            let mut component = Vec::new();
            while let Some(top) = state.stack.pop() {
                state.on_stack.remove(&top);
                let done = top == *node;
                component.push(top);
                if done {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                state.found.push(component);
            }
        }
    }
    let mut state = State {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        found: Vec::new(),
    };
    for node in nodes {
        if !state.index.contains_key(node) {
            visit(&mut state, node);
        }
    }
    state.found
}

/// The server core (`src/server/`) knows nothing of the process it runs
/// in: signals, systemd, Einhorn, `--reload` and the environment belong to
/// the process shell (`src/process/`, driven from `src/serve/`), which maps
/// them onto the core's controls.
#[test]
fn the_server_core_uses_no_process_api() {
    let server = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/server");
    let mut files = Vec::new();
    library_files(&server, &mut files);
    let forbidden = [
        "crate::process",
        "crate::serve::",
        "tokio::signal",
        "std::env",
        "nix::sys::signal",
    ];
    let mut found = Vec::new();
    for file in &files {
        let code = build_code(&std::fs::read_to_string(file).unwrap());
        for (n, line) in code.lines().enumerate() {
            for api in forbidden {
                if line.contains(api) {
                    found.push(format!("{}:{}: {api}", file.display(), n + 1));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "the server core reaches the process; move this to the shell:\n{}",
        found.join("\n")
    );
}
