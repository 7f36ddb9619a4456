//! `baseplate-thrift IDL -o OUT.rs`: one command from an IDL file to Rust
//! code for both kinds of handlers. It runs the Apache Thrift compiler
//! (`thrift --gen rs`) for the types, clients and sync processors, then
//! appends baseplate's async processors, and writes the two as one file.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use clap::Parser;

/// Generates sync and async Thrift processors for baseplate from an IDL file.
#[derive(Parser, Debug)]
#[command(name = "baseplate-thrift", version)]
struct Args {
    /// The IDL file (`service.thrift`).
    idl: PathBuf,
    /// Where to write the Rust code.
    #[arg(short, long)]
    output: PathBuf,
    /// The Thrift compiler to run (0.17 or later).
    #[arg(long, default_value = "thrift")]
    thrift: PathBuf,
    /// How the generated code names the baseplate crate.
    #[arg(long, default_value = "::baseplate")]
    crate_path: String,
    /// Write only the async processors (no `thrift --gen rs` output): for
    /// appending to a file generated separately.
    #[arg(long)]
    async_only: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(1)
        }
    }
}

fn run(args: &Args) -> Result<(), String> {
    let idl = &args.idl;
    let source =
        std::fs::read_to_string(idl).map_err(|e| format!("cannot read {}: {e}", idl.display()))?;
    let options = baseplate::codegen::Options {
        crate_path: args.crate_path.clone(),
    };
    let generated = baseplate::codegen::generate(&source, &options)
        .map_err(|e| format!("{}: {e}", idl.display()))?;
    let mut out = format!(
        "// Generated from {} by baseplate-thrift {}. Do not edit.\n",
        idl.display(),
        env!("CARGO_PKG_VERSION")
    );
    if !args.async_only {
        out.push_str(&apache_output(&args.thrift, idl)?);
    }
    out.push_str(&generated);
    std::fs::write(&args.output, out)
        .map_err(|e| format!("cannot write {}: {e}", args.output.display()))?;
    eprintln!("wrote {}", args.output.display());
    Ok(())
}

/// What `thrift --gen rs` writes for `idl`.
fn apache_output(thrift: &Path, idl: &Path) -> Result<String, String> {
    let dir = std::env::temp_dir().join(format!("baseplate-thrift-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let result = (|| {
        let status = Command::new(thrift)
            .args(["--gen", "rs", "-out"])
            .arg(&dir)
            .arg(idl)
            .status()
            .map_err(|e| {
                format!(
                    "cannot run the Thrift compiler {:?}: {e} (install it, e.g. `apt-get install thrift-compiler`, or pass --thrift PATH)",
                    thrift.display().to_string()
                )
            })?;
        if !status.success() {
            return Err(format!("`{} --gen rs` failed ({status})", thrift.display()));
        }
        // One .rs file per IDL file, named after it (snake-cased).
        let generated = std::fs::read_dir(&dir)
            .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .find(|path| path.extension().is_some_and(|x| x == "rs"))
            .ok_or_else(|| format!("`{} --gen rs` wrote no Rust file", thrift.display()))?;
        std::fs::read_to_string(&generated)
            .map_err(|e| format!("cannot read {}: {e}", generated.display()))
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}
