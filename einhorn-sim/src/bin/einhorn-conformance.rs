//! `einhorn-conformance [options] -- PROGRAM [ARGS...]`: see docs/conformance.md.

use std::io::Write;
use std::os::fd::AsFd;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use clap::Parser;
use einhorn_sim::conformance::{self, harness, report, Options};
use nix::sys::signal::{SigSet, Signal};

/// Set by the signal thread: Ctrl-C or SIGTERM came, and it owns the exit.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

fn main() -> ExitCode {
    let options = match Options::try_parse() {
        Ok(options) => options,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let mut report_out = match report_stdout() {
        Ok(file) => file,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let events: harness::EventLog = Arc::new(Mutex::new(Vec::new()));
    stop_on_signal(Arc::clone(&events));
    let run = conformance::run(&options, Arc::clone(&events));
    if INTERRUPTED.load(Ordering::SeqCst) {
        // The workers killed by the signal thread failed the scenario in
        // flight; that thread exits 130 once they are all gone.
        loop {
            std::thread::park();
        }
    }
    let outcomes = match run {
        Ok(outcomes) => outcomes,
        Err(message) => {
            harness::kill_all(&events);
            eprintln!("error: {message}");
            return ExitCode::from(1);
        }
    };
    let _ = report_out.write_all(report::table(&outcomes).as_bytes());
    if let Err(e) = write_reports(&options, &outcomes) {
        eprintln!("error: {e}");
        return ExitCode::from(1);
    }
    if outcomes.iter().all(|o| o.passed) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// The real stdout, kept for the report alone: workers inherit stdout, so
/// it is pointed at stderr.
fn report_stdout() -> Result<std::fs::File, String> {
    let report_out = std::io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| format!("cannot duplicate stdout: {e}"))?;
    nix::unistd::dup2_stdout(std::io::stderr())
        .map_err(|e| format!("cannot redirect stdout: {e}"))?;
    Ok(std::fs::File::from(report_out))
}

/// Ctrl-C or SIGTERM: kill every worker, then exit 130. The signals are
/// blocked in every thread and taken by one.
fn stop_on_signal(events: harness::EventLog) {
    let mut stop = SigSet::empty();
    stop.add(Signal::SIGINT);
    stop.add(Signal::SIGTERM);
    let _ = stop.thread_block();
    std::thread::spawn(move || {
        if let Ok(signal) = stop.wait() {
            INTERRUPTED.store(true, Ordering::SeqCst);
            harness::kill_all(&events);
            eprintln!(
                "einhorn-conformance: {} received; workers killed",
                signal.as_str()
            );
            std::process::exit(130);
        }
    });
}

/// `--junit` and `--json`, where asked for.
fn write_reports(options: &Options, outcomes: &[report::Outcome]) -> Result<(), String> {
    let write = |path: &std::path::Path, text: String| {
        std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
    };
    if let Some(path) = &options.junit {
        write(path, report::junit(outcomes))?;
    }
    if let Some(path) = &options.json {
        write(
            path,
            report::json(&options.command, &options.protocol, outcomes),
        )?;
    }
    Ok(())
}
