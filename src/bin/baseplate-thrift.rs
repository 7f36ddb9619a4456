//! `baseplate-thrift IDL -o OUT.rs`: one command from an IDL file, and the
//! files it includes, to Rust code for both kinds of handlers. It runs the
//! Apache Thrift compiler (`thrift -r --gen rs`) for the types, clients and
//! sync processors, adds baseplate's async processors, and writes it all
//! as one file: the IDL's items at its top, each included file a module.
//! A build script does the same with `baseplate::codegen::Build`.

use std::path::PathBuf;
use std::process::ExitCode;

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
    /// A directory to search for included files, after the including
    /// file's own; repeatable, searched in order.
    #[arg(short = 'I', long = "include-dir", value_name = "DIR")]
    include_dirs: Vec<PathBuf>,
    /// The Thrift compiler to run (0.17 or later) [default: $THRIFT, else thrift]
    #[arg(long)]
    thrift: Option<PathBuf>,
    /// How the generated code names the baseplate crate.
    #[arg(long, default_value = "::baseplate")]
    crate_path: String,
    /// Write only baseplate's async processors (no `thrift --gen rs`
    /// output), in the same module layout: for a crate that runs the
    /// Apache compiler itself.
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
    let defaults = baseplate::codegen::Options::default();
    let options = baseplate::codegen::Options {
        crate_path: args.crate_path.clone(),
        include_dirs: args.include_dirs.clone(),
        compiler: args.thrift.clone().unwrap_or(defaults.compiler),
        async_only: args.async_only,
    };
    let generated = baseplate::codegen::generate(&args.idl, &options).map_err(|e| e.to_string())?;
    std::fs::write(&args.output, generated.code)
        .map_err(|e| format!("cannot write {}: {e}", args.output.display()))?;
    eprintln!("wrote {}", args.output.display());
    Ok(())
}
