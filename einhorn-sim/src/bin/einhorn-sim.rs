//! `einhorn-sim [options] [--] PROGRAM [ARGS...]`: see docs/einhorn-sim.md.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let options = match einhorn_sim::cli::Options::try_parse() {
        Ok(options) => options,
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // One line, as every other startup error.
            let rendered = e.render().to_string();
            eprintln!(
                "{}",
                rendered
                    .lines()
                    .next()
                    .unwrap_or("error: invalid arguments")
            );
            return ExitCode::from(1);
        }
    };
    match einhorn_sim::run(options) {
        Ok(status) => ExitCode::from(status),
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(1)
        }
    }
}
