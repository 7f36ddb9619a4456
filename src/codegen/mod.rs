//! Rust code from a Thrift IDL tree, for the `baseplate-thrift` command and
//! for build scripts ([`Build`]). The only module built without the
//! `server` feature: a build script's `baseplate` compiles nothing else.
//!
//! An IDL file and every file it includes become one Rust file: the root
//! file's items at its top, and each included file as a module inside it
//! (`include "baseplate.thrift"` gives `baseplate::Error`; baseplate ships
//! that file, [`BASEPLATE_THRIFT`], and finds it when no other is found). Each file's
//! code is what `thrift -r --gen rs` writes for it (types, clients and the
//! sync processors), followed by baseplate's async layer (a handler trait
//! and a processor per service, inherited methods included).
//!
//! The file has no inner attributes, so it works both as a module file
//! (`mod my_service;`) and through `include!` from `OUT_DIR`. Its lints
//! are allowed inside it: generated items a crate does not use do not warn.

mod apache;
mod async_layer;
mod exceptions;
mod idl;
mod names;
mod tree;

use std::fmt;
use std::path::{Path, PathBuf};

use tree::{Tree, TreeError};

/// Options for [`generate`].
#[derive(Debug, Clone)]
pub struct Options {
    /// How the generated code names this crate: `::baseplate`.
    pub crate_path: String,
    /// Directories searched for included files, after the including file's
    /// own directory (the compiler's `-I`).
    pub include_dirs: Vec<PathBuf>,
    /// The Apache Thrift compiler (0.17 or later).
    pub compiler: PathBuf,
    /// Only baseplate's async layer, without the compiler's code: for a
    /// crate that runs the Apache compiler itself.
    pub async_only: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            crate_path: "::baseplate".to_string(),
            include_dirs: Vec::new(),
            compiler: apache::default_compiler(),
            async_only: false,
        }
    }
}

/// Why code could not be generated: one line naming the file and line
/// where there is one, and what was expected.
#[derive(Clone, PartialEq, Eq)]
pub struct Error(String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

// Debug is the message too: a build script's `main` returning this error
// prints `Error: <the line>`.
impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl From<TreeError> for Error {
    fn from(e: TreeError) -> Error {
        Error(e.to_string())
    }
}

/// Generated code for an IDL tree, and the files it was made from.
#[derive(Debug, Clone)]
pub struct Generated {
    /// The Rust code: one file.
    pub code: String,
    /// The root module's name (the root IDL's file name, snake-cased).
    pub module: String,
    /// Every IDL file read, the root first (the bundled baseplate.thrift
    /// left out).
    pub sources: Vec<PathBuf>,
}

/// The lints allowed inside the generated module: what the Apache
/// compiler's code would trip, and items a crate does not use.
const ALLOWED_LINTS: &str = "warnings, unused, dead_code, missing_docs, \
     missing_debug_implementations, unreachable_pub, unused_qualifications, unused_results, \
     non_camel_case_types, non_snake_case, non_upper_case_globals, rust_2018_idioms, deprecated, \
     clippy::all, clippy::pedantic, clippy::nursery, clippy::cargo";

/// The module the generated items live in, re-exported whole by the
/// file's top. A module of its own gives the `allow` above a place to
/// stand, since a file read by `include!` may have no inner attributes.
const INNER_MODULE: &str = "__idl";

/// baseplate.py's `baseplate.thrift` (health probes and the common
/// `Error`), shipped with baseplate: `include "baseplate.thrift"` finds
/// it when no file of that name is found first.
pub const BASEPLATE_THRIFT: &str = include_str!("baseplate.thrift");

/// Generates the code for the IDL file `root` and the files it includes.
pub fn generate(root: &Path, options: &Options) -> Result<Generated, Error> {
    // The bundled baseplate.thrift, in a directory only this user can enter.
    let bundle = apache::private_dir("baseplate-idl-").map_err(Error)?;
    std::fs::write(bundle.path().join("baseplate.thrift"), BASEPLATE_THRIFT)
        .map_err(|e| Error(format!("cannot write the bundled baseplate.thrift: {e}")))?;
    let tree = Tree::load(root, &options.include_dirs, Some(bundle.path()))?;
    let modules: Vec<&str> = tree.files.iter().map(|f| f.module.as_str()).collect();
    let apache = if options.async_only {
        vec![String::new(); modules.len()]
    } else {
        let mut include_dirs = options.include_dirs.clone();
        include_dirs.push(bundle.path().to_path_buf());
        apache::generate(&options.compiler, root, &include_dirs, &modules)
            .map_err(|e| Error(format!("{}: {e}", root.display())))?
    };

    let mut code = format!(
        "// Generated by baseplate-thrift {} from {}. Do not edit.\n\
         \n\
         #[allow({ALLOWED_LINTS})]\n\
         #[rustfmt::skip]\n\
         mod {INNER_MODULE} {{\n",
        env!("CARGO_PKG_VERSION"),
        tree.files
            .iter()
            .map(|f| f.shown.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let included: Vec<&str> = modules[1..].to_vec();
    code.push_str(&adapt_apache(
        &apache[0],
        &included,
        false,
        defines_error(&tree, 0),
        &options.crate_path,
    ));
    code.push_str(&async_layer::emit(&tree, 0, &options.crate_path));
    for (index, file) in tree.files.iter().enumerate().skip(1) {
        code.push_str(&format!(
            "\n/// The items of `{}`.\npub mod {} {{\n",
            file.shown.display(),
            file.module
        ));
        code.push_str(&adapt_apache(
            &apache[index],
            &included,
            true,
            defines_error(&tree, index),
            &options.crate_path,
        ));
        code.push_str(&async_layer::emit(&tree, index, &options.crate_path));
        code.push_str("}\n");
    }
    code.push_str(&format!(
        "}}\n\n#[allow(unused_imports, unreachable_pub)]\npub use self::{INNER_MODULE}::*;\n"
    ));
    Ok(Generated {
        code,
        module: tree.files[0].module.clone(),
        sources: tree
            .files
            .iter()
            .filter(|f| f.shown == f.path)
            .map(|f| f.path.clone())
            .collect(),
    })
}

/// Whether file `index` defines a type named `Error`, as baseplate.thrift
/// does.
fn defines_error(tree: &Tree, index: usize) -> bool {
    tree.files[index]
        .document
        .definitions
        .iter()
        .any(|d| d.name == "Error" && d.kind.is_type())
}

/// `line` with each path that starts at the `thrift` crate (`thrift::`,
/// not `x::thrift::` or `my_thrift::`) starting at `runtime` instead
/// (`::baseplate::thrift::`): the generated code uses the runtime
/// baseplate re-exports, so a crate needs no `thrift` dependency of its
/// own and the two versions always agree.
fn runtime_through(line: &str, runtime: &str) -> String {
    const CRATE: &str = "thrift::";
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(at) = rest.find(CRATE) {
        let starts_path = rest[..at]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == ':'));
        out.push_str(&rest[..at]);
        out.push_str(if starts_path { runtime } else { CRATE });
        rest = &rest[at + CRATE.len()..];
    }
    out.push_str(rest);
    out
}

/// The Apache compiler's file for one IDL file, made to live inside the
/// generated file:
/// - its inner attributes go (the module above allows its lints);
/// - its `use crate::...::MODULE;` lines for included files name the
///   sibling module instead (the root's are dropped: the included modules
///   are its children);
/// - in a file that defines `Error` (baseplate.thrift's exception), the
///   compiler's `use std::error::Error;` would clash with it, and its code
///   does not compile: the import goes and `impl Error for` names the
///   standard trait in full;
/// - the `thrift` crate is named through `KRATE::thrift` (see
///   [`runtime_through`]).
fn adapt_apache(
    text: &str,
    included: &[&str],
    nested: bool,
    defines_error: bool,
    krate: &str,
) -> String {
    let runtime = format!("{krate}::thrift::");
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let line = &runtime_through(line, &runtime);
        if line.starts_with("#![") || (defines_error && line == "use std::error::Error;") {
            continue;
        }
        if defines_error {
            if let Some(rest) = line.strip_prefix("impl Error for ") {
                out.push_str("impl ::std::error::Error for ");
                out.push_str(rest);
                out.push('\n');
                continue;
            }
        }
        let used = line
            .strip_prefix("use crate::")
            .and_then(|rest| rest.strip_suffix(';'))
            .map(|path| path.rsplit("::").next().unwrap_or(path));
        match used {
            Some(module) if included.contains(&module) => {
                if nested {
                    out.push_str(&format!("use super::{module};\n"));
                }
            }
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// Code generation from a build script, into `OUT_DIR`, as `prost-build`
/// and `tonic-build` do:
///
/// ```no_run
/// // build.rs
/// fn main() -> Result<(), baseplate::codegen::Error> {
///     baseplate::codegen::Build::new()
///         .include_dir("idl/shared")
///         .compile("idl/my_service.thrift")?;
///     Ok(())
/// }
/// ```
///
/// and in the crate:
///
/// ```ignore
/// pub mod my_service {
///     include!(concat!(env!("OUT_DIR"), "/my_service.rs"));
/// }
/// ```
///
/// (Inside that module, an IDL that includes baseplate.thrift has a module
/// named `baseplate`: name the crate `::baseplate` there.)
/// Cargo reruns the script when any file of the IDL tree changes, or the
/// `THRIFT` environment variable (the compiler to run).
#[derive(Debug, Clone, Default)]
pub struct Build {
    options: Options,
    out_dir: Option<PathBuf>,
}

impl Build {
    /// A build with the default options: the compiler from `$THRIFT` or
    /// `PATH`, output into `$OUT_DIR`.
    pub fn new() -> Build {
        Build::default()
    }

    /// Adds a directory to search for included files, after the including
    /// file's own directory (the compiler's `-I`).
    pub fn include_dir(mut self, dir: impl Into<PathBuf>) -> Build {
        self.options.include_dirs.push(dir.into());
        self
    }

    /// The Apache Thrift compiler to run, instead of `$THRIFT` or `thrift`.
    pub fn compiler(mut self, path: impl Into<PathBuf>) -> Build {
        self.options.compiler = path.into();
        self
    }

    /// How the generated code names baseplate (default `::baseplate`).
    pub fn crate_path(mut self, path: impl Into<String>) -> Build {
        self.options.crate_path = path.into();
        self
    }

    /// Where to write, instead of `$OUT_DIR`.
    pub fn out_dir(mut self, dir: impl Into<PathBuf>) -> Build {
        self.out_dir = Some(dir.into());
        self
    }

    /// Generates the code for `idl` and what it includes into
    /// `OUT_DIR/MODULE.rs` (MODULE: the IDL's file name, snake-cased), and
    /// returns that path. In a build script it tells Cargo to run the
    /// script again when any of the IDL files changes.
    pub fn compile(&self, idl: impl AsRef<Path>) -> Result<PathBuf, Error> {
        let idl = idl.as_ref();
        let in_build_script = std::env::var_os("OUT_DIR").is_some();
        if in_build_script {
            println!("cargo:rerun-if-env-changed={}", apache::COMPILER_ENV);
            // Before generating: a broken file must be watched too.
            println!("cargo:rerun-if-changed={}", idl.display());
        }
        let out_dir = match &self.out_dir {
            Some(dir) => dir.clone(),
            None => std::env::var_os("OUT_DIR").map(PathBuf::from).ok_or_else(|| {
                Error("OUT_DIR is not set: run Build::compile from a build script, or give Build::out_dir".to_string())
            })?,
        };
        let generated = generate(idl, &self.options)?;
        if in_build_script {
            for source in &generated.sources[1..] {
                println!("cargo:rerun-if-changed={}", source.display());
            }
        }
        let path = out_dir.join(format!("{}.rs", generated.module));
        std::fs::write(&path, &generated.code)
            .map_err(|e| Error(format!("cannot write {}: {e}", path.display())))?;
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apache_code_is_adapted_to_a_module() {
        let text = "// header\n#![allow(unused_imports)]\n#![cfg_attr(rustfmt, rustfmt_skip)]\n\
                    use thrift::OrderedFloat;\nuse crate::baseplate::baseplate;\nuse crate::other;\n\
                    pub struct S;\n";
        let root = adapt_apache(text, &["baseplate"], false, false, "::bp");
        assert_eq!(
            root,
            "// header\nuse ::bp::thrift::OrderedFloat;\nuse crate::other;\npub struct S;\n"
        );
        let nested = adapt_apache(text, &["baseplate", "other"], true, false, "::bp");
        assert_eq!(
            nested,
            "// header\nuse ::bp::thrift::OrderedFloat;\nuse super::baseplate;\nuse super::other;\npub struct S;\n"
        );
        let error =
            "use std::error::Error;\npub struct Error {}\nimpl Error for Error {}\nimpl Error {}\n";
        assert_eq!(
            adapt_apache(error, &[], true, true, "::bp"),
            "pub struct Error {}\nimpl ::std::error::Error for Error {}\nimpl Error {}\n"
        );
        assert_eq!(
            adapt_apache(error, &[], true, false, "::bp"),
            error,
            "only where Error is defined"
        );
    }

    #[test]
    fn only_paths_that_start_at_the_thrift_crate_go_through_baseplate() {
        let runtime = "::bp::thrift::";
        assert_eq!(
            runtime_through(
                "fn f() -> thrift::Result<()> { Err(thrift::Error::from(x)) }",
                runtime
            ),
            "fn f() -> ::bp::thrift::Result<()> { Err(::bp::thrift::Error::from(x)) }"
        );
        assert_eq!(
            runtime_through("use thrift::protocol::{A, B};", runtime),
            "use ::bp::thrift::protocol::{A, B};"
        );
        for kept in [
            "my_thrift::X",
            "a::thrift::X",
            "::thrift::X",
            "Thrift::X",
            "nothrift::Y",
        ] {
            assert_eq!(runtime_through(kept, runtime), kept);
        }
    }
}
