//! `einhorn-conformance`: proves that a server behaves under Einhorn. It
//! runs the server under an embedded einhorn-sim master ([`harness`]), sends
//! traffic ([`probe`]), runs the [`scenarios`], and reports ([`report`]).

pub mod harness;
pub mod probe;
pub mod procfs;
pub mod report;
pub mod scenarios;

use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;

use harness::{EventLog, Pool};
use probe::Probe;
use report::Outcome;
use scenarios::Context;

fn parse_seconds(text: &str) -> Result<Duration, String> {
    let seconds = text.trim_end_matches('s');
    match seconds.parse::<f64>() {
        Ok(s) if s.is_finite() && s >= 0.0 => Ok(Duration::from_secs_f64(s)),
        _ => Err(format!("{text:?} is not a number of seconds")),
    }
}

/// Run a server under Einhorn and check that it starts, serves and shuts
/// down gracefully.
#[derive(Debug, Clone, Parser)]
#[command(name = "einhorn-conformance", version, about, long_about = None)]
pub struct Options {
    /// The protocol the server speaks
    #[arg(long, value_parser = ["http", "thrift"], default_value = "http")]
    pub protocol: String,

    /// Number of workers
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub workers: u32,

    /// The slow request: an HTTP path (default /sleep?ms=1000) or a Thrift METHOD:ms (default sleep:1000)
    #[arg(long, value_name = "SPEC")]
    pub slow_request: Option<String>,

    /// The server's stop timeout, in seconds: the longest a drain may take
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = parse_seconds)]
    pub stop_timeout: Duration,

    /// The server's drain time, in seconds (added to every shutdown bound)
    #[arg(long, value_name = "SECONDS", default_value = "0", value_parser = parse_seconds)]
    pub drain_time: Duration,

    /// How long a worker may take to ACK, in seconds
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = parse_seconds)]
    pub ack_deadline: Duration,

    /// A TCP port the workers may listen on besides the inherited socket,
    /// like a metrics exporter's (repeatable, or comma-separated)
    #[arg(long, value_name = "PORT", value_delimiter = ',')]
    pub allow_port: Vec<u16>,

    /// Run only these scenarios (comma-separated)
    #[arg(long, value_name = "NAME,...", value_delimiter = ',')]
    pub only: Vec<String>,

    /// Write a JUnit XML report here
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,

    /// Write a JSON report here
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,

    /// The server command
    #[arg(
        value_name = "PROGRAM",
        trailing_var_arg = true,
        allow_hyphen_values = true,
        required = true
    )]
    pub command: Vec<String>,
}

/// Runs the selected scenarios against `options.command`; `events` collects
/// the master's events (the caller's cleanup reads them).
pub fn run(options: &Options, events: EventLog) -> Result<Vec<Outcome>, String> {
    let probe = Probe::new(
        options.protocol == "thrift",
        options.slow_request.as_deref(),
    )?;
    let selected: Vec<&scenarios::Scenario> = scenarios::ALL
        .iter()
        .filter(|(name, _)| options.only.is_empty() || options.only.iter().any(|o| o == name))
        .collect();
    if let Some(unknown) = options
        .only
        .iter()
        .find(|o| !scenarios::ALL.iter().any(|(name, _)| name == o))
    {
        let names: Vec<&str> = scenarios::ALL.iter().map(|(n, _)| *n).collect();
        return Err(format!(
            "--only: no scenario {unknown:?}; scenarios: {}",
            names.join(", ")
        ));
    }
    let pool = Pool::start(options.workers, &options.command, events)?;
    let context = Arc::new(Context {
        pool,
        probe,
        workers: options.workers as usize,
        stop_timeout: options.stop_timeout,
        drain_time: options.drain_time,
        ack_deadline: options.ack_deadline,
        allowed_ports: options.allow_port.clone(),
    });
    // Every scenario's own waits are bounded; this is the backstop.
    let bound = Duration::from_secs(60)
        + 3 * (options.stop_timeout + options.drain_time + options.ack_deadline);
    let mut outcomes = Vec::new();
    for (name, scenario) in selected {
        let started = Instant::now();
        let (tx, rx) = mpsc::channel();
        let cx = Arc::clone(&context);
        let scenario = *scenario;
        std::thread::spawn(move || {
            let verdict = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| scenario(&cx)))
                .unwrap_or_else(|_| Err("the scenario panicked".to_string()));
            let _ = tx.send(verdict);
        });
        let verdict = rx
            .recv_timeout(bound)
            .unwrap_or_else(|_| Err(format!("timed out after {}s", bound.as_secs())));
        outcomes.push(Outcome {
            name: name.to_string(),
            passed: verdict.is_ok(),
            reason: verdict.unwrap_or_else(|e| e),
            seconds: started.elapsed().as_secs_f64(),
        });
    }
    match Arc::try_unwrap(context) {
        Ok(context) => context.pool.shut_down(),
        Err(context) => harness::kill_all_from(&context.pool),
    }
    Ok(outcomes)
}
