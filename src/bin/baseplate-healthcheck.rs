//! `baseplate-healthcheck [--probe readiness|liveness|startup] TYPE ENDPOINT`:
//! asks a service whether it is healthy, as baseplate.py's
//! `python -m baseplate.healthcheck` does, for Kubernetes exec probes.
//! Prints `OK!` and exits 0 when healthy; otherwise prints one line saying
//! why and exits 1.

use std::process::ExitCode;
use std::time::Duration;

use baseplate::config::values::parse_timespan_or_seconds;
use baseplate::config::Endpoint;
use baseplate::health::checker::{self, Kind};
use baseplate::health::Probe;
use clap::Parser;

/// Checks the health of a baseplate service (Thrift or HTTP).
#[derive(Parser, Debug)]
#[command(name = "baseplate-healthcheck", version)]
struct Args {
    /// The service's protocol: thrift, or wsgi (also http).
    #[arg(value_name = "TYPE", value_parser = |s: &str| s.parse::<Kind>())]
    kind: Kind,
    /// Where it listens: HOST:PORT, or a UNIX socket path.
    #[arg(value_parser = |s: &str| s.parse::<Endpoint>())]
    endpoint: Endpoint,
    /// The probe to ask for: readiness, liveness or startup (or 1, 2, 3).
    #[arg(long, default_value = "readiness", value_parser = parse_probe)]
    probe: Probe,
    /// How long the whole check may take: seconds, or a timespan like
    /// `500 milliseconds`.
    #[arg(long, default_value = "30", value_parser = parse_timespan_or_seconds)]
    timeout: Duration,
}

fn parse_probe(text: &str) -> Result<Probe, String> {
    Probe::parse(text)
        .ok_or_else(|| format!("{text:?} is not a probe; use readiness, liveness or startup"))
}

fn main() -> ExitCode {
    let args = Args::parse();
    match checker::check(args.kind, &args.endpoint, args.probe, args.timeout) {
        Ok(()) => {
            println!("OK!");
            ExitCode::SUCCESS
        }
        Err(why) => {
            eprintln!("{why}");
            ExitCode::from(1)
        }
    }
}
