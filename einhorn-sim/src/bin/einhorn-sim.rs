//! `einhorn-sim [options] [--] PROGRAM [ARGS...]`: see docs/einhorn-sim.md.

use std::process::ExitCode;

use clap::Parser;

use clap::error::ErrorKind;
use einhorn_sim::cli::{Options, SHORT_USAGE};

/// Exit status for a command line that cannot be used, as clap's.
const USAGE: u8 = 2;

fn main() -> ExitCode {
    let options = match Options::try_parse() {
        Ok(options) => options,
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        // No PROGRAM: Einhorn's short usage on stdout and status 1, as
        // Einhorn answers (its own suite checks both); clap's message,
        // naming what is missing, on stderr.
        Err(e) if e.kind() == ErrorKind::MissingRequiredArgument => {
            print!("{SHORT_USAGE}");
            let _ = e.print();
            return ExitCode::from(1);
        }
        // The whole message: what is wrong, a near option if there is one,
        // and the usage.
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(USAGE);
        }
    };
    if let Some(why) = options.refusal() {
        eprintln!("error: {why}");
        return ExitCode::from(USAGE);
    }
    if options.upgrade_check {
        // What Einhorn logs here is its Ruby; this is what a re-exec runs.
        eprintln!(
            "[MASTER {}] INFO: Running einhorn-sim {} (Einhorn 1.1.1 compatible)",
            std::process::id(),
            env!("CARGO_PKG_VERSION")
        );
        return ExitCode::SUCCESS;
    }
    match einhorn_sim::run(options) {
        Ok(status) => ExitCode::from(status),
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(1)
        }
    }
}
