//! An IDL file and every file it includes, read and checked before any
//! code is written: includes resolve as the Apache compiler resolves them
//! (relative to the including file, then each include directory in
//! order), every file becomes one Rust module named as the Apache
//! generator names it, and cycles, missing files, unknown names and name
//! clashes are each one error naming the file and line.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use super::idl::{self, Document, Kind, Service};
use super::names::{field_name, is_keyword, snake, UNESCAPED_FIELD_KEYWORDS};

/// The largest IDL file read, and the most files in a tree: far beyond any
/// real service, small enough that a hostile tree cannot exhaust memory.
pub(crate) const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;
/// See [`MAX_FILE_BYTES`].
pub(crate) const MAX_FILES: usize = 1_000;
/// The most services in one `extends` chain. Each service's async trait
/// repeats every inherited method, so the output grows with the square of
/// a chain's length: this bound keeps it linear in the input (baseplate's
/// own chains are two long).
pub(crate) const MAX_EXTENDS_DEPTH: usize = 16;

/// An error in an IDL tree, located at a file and line where there is one.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct TreeError {
    /// The file, as the user named it (or as an include resolved).
    pub(crate) file: PathBuf,
    /// The 1-based line, if the error has one.
    pub(crate) line: Option<usize>,
    /// What is wrong, and what was expected.
    pub(crate) message: String,
}

impl TreeError {
    fn at(file: &Path, line: usize, message: impl Into<String>) -> TreeError {
        TreeError {
            file: file.to_path_buf(),
            line: Some(line),
            message: message.into(),
        }
    }
}

impl fmt::Display for TreeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.file.display(), self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

// Debug is the message, so that a build script's `main` returning this
// error prints one readable line.
impl fmt::Debug for TreeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for TreeError {}

/// One file of the tree.
#[derive(Debug, Clone)]
pub(crate) struct IdlFile {
    /// The path it was read from (the root as given; includes as resolved).
    pub(crate) path: PathBuf,
    /// How messages and the generated file name it: its path, or
    /// `baseplate.thrift (bundled)` for the copy baseplate ships.
    pub(crate) shown: PathBuf,
    /// Its Rust module name: the file name without `.thrift`, snake-cased,
    /// as `thrift --gen rs` names its output file.
    pub(crate) module: String,
    /// What it says.
    pub(crate) document: Document,
    /// Its includes by the name its definitions use (`shared` for
    /// `include "dir/shared.thrift"`), each an index into [`Tree::files`].
    pub(crate) includes: HashMap<String, usize>,
}

/// A root IDL file and every file it includes, each once.
#[derive(Debug, Clone)]
pub(crate) struct Tree {
    /// The files: the root first, then the included ones in the order they
    /// were first reached.
    pub(crate) files: Vec<IdlFile>,
}

/// Where a name resolved to: a file of the tree, and the name there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Resolved<'a> {
    /// The index of the defining file in [`Tree::files`].
    pub(crate) file: usize,
    /// The name inside that file.
    pub(crate) name: &'a str,
}

impl Tree {
    /// Reads `root` and everything it includes, searching `include_dirs`
    /// after each including file's own directory, and checks every name.
    /// `bundled`, searched last, is the directory of the baseplate.thrift
    /// baseplate ships.
    pub(crate) fn load(
        root: &Path,
        include_dirs: &[PathBuf],
        bundled: Option<&Path>,
    ) -> Result<Tree, TreeError> {
        let mut include_dirs = include_dirs.to_vec();
        include_dirs.extend(bundled.map(Path::to_path_buf));
        let mut loader = Loader {
            include_dirs: &include_dirs,
            bundled,
            files: Vec::new(),
            by_identity: HashMap::new(),
            by_module: HashMap::new(),
            stack: Vec::new(),
        };
        loader.load(root, None)?;
        let tree = Tree {
            files: loader.files,
        };
        for index in 0..tree.files.len() {
            tree.check_names(index)?;
        }
        Ok(tree)
    }

    /// Resolves `name` (`Name` or `module.Name`) as written in file `from`.
    /// `None` when the module is not included there or does not define it.
    pub(crate) fn resolve<'a>(
        &'a self,
        from: usize,
        name: &'a str,
    ) -> Option<(Resolved<'a>, Kind)> {
        let (file, local) = match name.split_once('.') {
            Some((module, local)) => (*self.files[from].includes.get(module)?, local),
            None => (from, name),
        };
        let kind = self.files[file]
            .document
            .definitions
            .iter()
            .find(|d| d.name == local)?
            .kind;
        Some((Resolved { file, name: local }, kind))
    }

    /// The service `name` extends, as written in file `from`, with the file
    /// that defines it.
    pub(crate) fn service(&self, from: usize, name: &str) -> Option<(usize, &Service)> {
        let (resolved, kind) = self.resolve(from, name)?;
        if kind != Kind::Service {
            return None;
        }
        let service = self.files[resolved.file]
            .document
            .services
            .iter()
            .find(|s| s.name == resolved.name)?;
        Some((resolved.file, service))
    }

    /// Every service of a service's chain: itself first, then what it
    /// extends, and so on, each with its file. Checked by [`Tree::load`].
    pub(crate) fn chain<'a>(
        &'a self,
        file: usize,
        service: &'a Service,
    ) -> Vec<(usize, &'a Service)> {
        let mut chain = vec![(file, service)];
        let (mut file, mut current) = (file, service);
        while let Some(parent) = &current.extends {
            match self.service(file, parent) {
                Some(found)
                    if !chain
                        .iter()
                        .any(|(f, s)| *f == found.0 && s.name == found.1.name) =>
                {
                    chain.push(found);
                    (file, current) = found;
                }
                _ => break,
            }
        }
        chain
    }

    /// Checks that file `index` defines each name once and uses only names
    /// it can see, and that every `extends` names a service without a loop.
    fn check_names(&self, index: usize) -> Result<(), TreeError> {
        let file = &self.files[index];
        check_unique_definitions(file)?;
        check_field_names(file)?;
        check_method_names(file)?;
        self.check_references(index)?;
        self.check_extends(index)
    }

    /// Every named type a file uses resolves to a type it can see.
    fn check_references(&self, index: usize) -> Result<(), TreeError> {
        let file = &self.files[index];
        let document = &file.document;
        for reference in &document.references {
            match self.resolve(index, &reference.name) {
                Some((_, kind)) if kind.is_type() => {}
                Some((_, kind)) => {
                    return Err(TreeError::at(
                        &file.shown,
                        reference.line,
                        format!("`{}` is a {}, not a type", reference.name, kind_name(kind)),
                    ))
                }
                None => return Err(self.unknown(index, &reference.name, reference.line, "type")),
            }
        }
        Ok(())
    }

    /// Every `extends` names a service, in a chain without a loop and of
    /// bounded depth.
    fn check_extends(&self, index: usize) -> Result<(), TreeError> {
        let file = &self.files[index];
        let document = &file.document;
        for service in &document.services {
            let Some(parent) = &service.extends else {
                continue;
            };
            if self.service(index, parent).is_none() {
                return Err(self.unknown(index, parent, service.line, "service"));
            }
            let chain = self.chain(index, service);
            if chain.len() > MAX_EXTENDS_DEPTH {
                return Err(TreeError::at(
                    &file.shown,
                    service.line,
                    format!(
                        "service `{}` extends a chain of more than {MAX_EXTENDS_DEPTH} services",
                        service.name
                    ),
                ));
            }
            let (last_file, last) = chain[chain.len() - 1];
            if let Some(extends) = &last.extends {
                return Err(TreeError::at(
                    &file.shown,
                    service.line,
                    format!(
                        "service `{}` extends itself through `{}` (in {}), which extends `{extends}`",
                        service.name,
                        last.name,
                        self.files[last_file].shown.display()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// "unknown type `x.Y`", with what to do about it.
    fn unknown(&self, index: usize, name: &str, line: usize, what: &str) -> TreeError {
        let file = &self.files[index];
        let message = match name.split_once('.') {
            Some((module, local)) => match file.includes.get(module) {
                Some(&included) => format!(
                    "unknown {what} `{name}`: {} defines no `{local}`",
                    self.files[included].shown.display()
                ),
                None => format!(
                    "unknown {what} `{name}`: no file named `{module}.thrift` is included here \
                     (add `include \"{module}.thrift\"`)"
                ),
            },
            None => format!("unknown {what} `{name}`: it is not defined in this file (a name from an included file is written `file.{name}`)"),
        };
        TreeError::at(&file.shown, line, message)
    }
}

/// Each name is defined once in a file.
fn check_unique_definitions(file: &IdlFile) -> Result<(), TreeError> {
    let document = &file.document;
    let mut defined: HashMap<&str, usize> = HashMap::new();
    for definition in &document.definitions {
        if let Some(first) = defined.insert(&definition.name, definition.line) {
            return Err(TreeError::at(
                    &file.shown,
                    definition.line,
                    format!(
                        "`{}` is defined twice (first at line {first}); each name in a file must be unique",
                        definition.name
                    ),
                ));
        }
    }
    Ok(())
}

/// Field names that `thrift --gen rs` turns into code that compiles: no
/// two of one list become the same Rust name, and none is a keyword it
/// does not escape.
fn check_field_names(file: &IdlFile) -> Result<(), TreeError> {
    let document = &file.document;
    for list in &document.field_lists {
        let mut rust_names: HashMap<String, &str> = HashMap::new();
        for field in list {
            let rust = field_name(&field.name);
            if let Some(first) = rust_names.insert(rust.clone(), &field.name) {
                return Err(TreeError::at(
                    &file.shown,
                    field.line,
                    format!(
                        "fields `{first}` and `{}` would both be `{rust}` in Rust, so the code \
                             `thrift --gen rs` writes would not compile; rename one (the wire \
                             uses its id)",
                        field.name
                    ),
                ));
            }
        }
    }
    for field in document.field_lists.iter().flatten() {
        if UNESCAPED_FIELD_KEYWORDS.contains(&field.name.as_str()) {
            return Err(TreeError::at(
                &file.shown,
                field.line,
                format!(
                    "field `{}` is a Rust keyword that `thrift --gen rs` does not escape, so \
                         its code would not compile; rename the field (the wire uses its id)",
                    field.name
                ),
            ));
        }
    }
    Ok(())
}

/// No method is named after a Rust keyword.
fn check_method_names(file: &IdlFile) -> Result<(), TreeError> {
    let document = &file.document;
    for function in document.services.iter().flat_map(|s| &s.functions) {
        if is_keyword(&function.name) {
            return Err(TreeError::at(
                &file.shown,
                function.line,
                format!(
                    "method `{}` is a Rust keyword, which `thrift --gen rs` writes unescaped \
                         (`fn {}`), so its code would not compile; rename the method",
                    function.name, function.name
                ),
            ));
        }
    }
    Ok(())
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Struct => "struct",
        Kind::Enum => "enum",
        Kind::Typedef => "typedef",
        Kind::Const => "constant",
        Kind::Service => "service",
    }
}

struct Loader<'a> {
    include_dirs: &'a [PathBuf],
    bundled: Option<&'a Path>,
    files: Vec<IdlFile>,
    /// Canonical path → index, so a file reached twice is read once.
    by_identity: HashMap<PathBuf, usize>,
    /// Module name → index, to refuse two files with one module name.
    by_module: HashMap<String, usize>,
    /// The canonical paths of the files being read, outermost first.
    stack: Vec<(PathBuf, PathBuf)>,
}

/// The file that includes another, and where.
struct IncludedAt<'a> {
    file: &'a Path,
    line: usize,
}

impl Loader<'_> {
    /// Reads `path` and, depth first, what it includes; returns its index.
    fn load(&mut self, path: &Path, from: Option<IncludedAt<'_>>) -> Result<usize, TreeError> {
        let locate = |message: String| match &from {
            Some(at) => TreeError::at(at.file, at.line, message),
            None => TreeError {
                file: path.to_path_buf(),
                line: None,
                message,
            },
        };
        let identity = path
            .canonicalize()
            .map_err(|e| locate(format!("cannot read {}: {e}", path.display())))?;
        if let Some(start) = self.stack.iter().position(|(id, _)| *id == identity) {
            let cycle: Vec<String> = self.stack[start..]
                .iter()
                .map(|(_, shown)| shown.display().to_string())
                .chain([path.display().to_string()])
                .collect();
            return Err(locate(format!("include cycle: {}", cycle.join(" -> "))));
        }
        if let Some(&index) = self.by_identity.get(&identity) {
            return Ok(index);
        }
        if self.files.len() >= MAX_FILES {
            return Err(locate(format!(
                "more than {MAX_FILES} files in one include tree"
            )));
        }
        let module = module_name(path).map_err(&locate)?;
        if let Some(&other) = self.by_module.get(&module) {
            return Err(locate(format!(
                "{} would be Rust module `{module}`, as {} already is; rename one of the two files",
                path.display(),
                self.files[other].shown.display()
            )));
        }
        let source = read(path).map_err(&locate)?;
        let document = idl::parse(&source).map_err(|e| TreeError::at(path, e.line, e.message))?;

        let index = self.files.len();
        self.by_identity.insert(identity.clone(), index);
        self.by_module.insert(module.clone(), index);
        let shown = self.shown(path);
        self.files.push(IdlFile {
            shown,
            path: path.to_path_buf(),
            module,
            document: document.clone(),
            includes: HashMap::new(),
        });
        self.stack.push((identity, path.to_path_buf()));
        let includes = self.load_includes(path, &document)?;
        self.stack.pop();
        self.files[index].includes = includes;
        Ok(index)
    }

    /// Loads what `document` (the file at `path`) includes: each include's
    /// module name and the file's index.
    fn load_includes(
        &mut self,
        path: &Path,
        document: &idl::Document,
    ) -> Result<HashMap<String, usize>, TreeError> {
        let mut includes = HashMap::new();
        for include in &document.includes {
            let found = self.find(path, &include.path).ok_or_else(|| {
                TreeError::at(
                    path,
                    include.line,
                    format!(
                        "cannot find included file \"{}\" (looked in {})",
                        include.path,
                        self.searched(path).join(", ")
                    ),
                )
            })?;
            let at = IncludedAt {
                file: path,
                line: include.line,
            };
            let included = self.load(&found, Some(at))?;
            let name = program_name(Path::new(&include.path));
            if let Some(previous) = includes.insert(name.clone(), included) {
                if previous != included {
                    return Err(TreeError::at(
                        path,
                        include.line,
                        format!("two included files are both named `{name}`; rename one of them"),
                    ));
                }
            }
        }
        Ok(includes)
    }

    /// How messages name the file at `path`: a bundled file by its name.
    fn shown(&self, path: &Path) -> PathBuf {
        match self.bundled {
            Some(dir) if path.starts_with(dir) => PathBuf::from(format!(
                "{} (bundled)",
                path.file_name().unwrap_or_default().to_string_lossy()
            )),
            _ => path.to_path_buf(),
        }
    }

    /// Where `include "name"` in `including` points: as written if
    /// absolute, else the including file's directory, then each include
    /// directory in order.
    fn find(&self, including: &Path, name: &str) -> Option<PathBuf> {
        let name = Path::new(name);
        if name.is_absolute() {
            return name.is_file().then(|| name.to_path_buf());
        }
        let own = including.parent().unwrap_or(Path::new(""));
        std::iter::once(own)
            .chain(self.include_dirs.iter().map(PathBuf::as_path))
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    }

    fn searched(&self, including: &Path) -> Vec<String> {
        let own = including.parent().unwrap_or(Path::new(""));
        let own = if own.as_os_str().is_empty() {
            ".".to_string()
        } else {
            own.display().to_string()
        };
        std::iter::once(own)
            .chain(
                self.include_dirs
                    .iter()
                    .filter(|d| Some(d.as_path()) != self.bundled)
                    .map(|d| d.display().to_string()),
            )
            .chain(
                self.bundled
                    .map(|_| "baseplate's bundled baseplate.thrift".to_string()),
            )
            .collect()
    }
}

/// The name an IDL file's definitions are known by in files that include
/// it: its file name without directories and `.thrift`.
fn program_name(path: &Path) -> String {
    let file = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    file.strip_suffix(".thrift")
        .map(str::to_string)
        .unwrap_or(file)
}

/// The Rust module for an IDL file, as `thrift --gen rs` names its output.
fn module_name(path: &Path) -> Result<String, String> {
    let program = program_name(path);
    let valid = program
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && program
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(format!(
            "{}: the file name `{program}` must be a valid identifier (letters, digits and `_`), \
             since included files are referred to by it",
            path.display()
        ));
    }
    Ok(snake(&program))
}

/// An IDL file's text, refusing what no IDL is (too large, not UTF-8).
fn read(path: &Path) -> Result<String, String> {
    let metadata =
        std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if !metadata.is_file() {
        return Err(format!("{} is not a file", path.display()));
    }
    if metadata.len() > MAX_FILE_BYTES {
        return Err(format!(
            "{} has {} bytes; an IDL file may have at most {MAX_FILE_BYTES}",
            path.display(),
            metadata.len()
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    String::from_utf8(bytes).map_err(|e| {
        format!(
            "{} is not UTF-8 (invalid byte at offset {})",
            path.display(),
            e.utf8_error().valid_up_to()
        )
    })
}
