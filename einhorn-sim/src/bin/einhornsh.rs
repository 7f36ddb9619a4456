//! `einhornsh [-c NAME | NAME] [-d PATH] [-e "CMD; CMD"]`: a shell for an
//! Einhorn master's command socket (einhorn-sim's or the real Einhorn's).

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use einhorn_sim::client::{shell_words, Client};
use serde_norway::Value;

/// Talk to an Einhorn master over its command socket.
#[derive(Parser)]
#[command(name = "einhornsh", version, about, long_about = None)]
struct Args {
    /// The master's command name (-c given to it), for the default socket path
    #[arg(short = 'c', long = "command-name", value_name = "CMD_NAME")]
    command_name: Option<String>,

    /// The command socket path
    #[arg(short = 'd', long = "socket-path", value_name = "PATH")]
    socket_path: Option<PathBuf>,

    /// Run these commands (separated by `;`) and exit
    #[arg(short = 'e', long = "execute", value_name = "CMDS")]
    execute: Option<String>,

    /// The command name, as a positional argument
    #[arg(value_name = "CMD_NAME")]
    name: Option<String>,
}

enum Flow {
    Continue,
    Quit,
}

fn socket_path(args: &Args) -> PathBuf {
    if let Some(path) = &args.socket_path {
        return path.clone();
    }
    let dir = std::env::var_os("TMPDIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    match args.command_name.as_ref().or(args.name.as_ref()) {
        Some(name) => dir.join(format!("einhorn-{name}.sock")),
        None => dir.join("einhorn.sock"),
    }
}

/// Prints one reply's message as Ruby's `puts` would.
fn print_reply(reply: &Value) {
    match reply.get("message") {
        Some(Value::String(message)) => {
            if message.ends_with('\n') {
                print!("{message}");
            } else {
                println!("{message}");
            }
        }
        _ => println!("Invalid response type: {reply:?}"),
    }
}

/// Whether a command's final reply says it failed: an `ERROR:` message (an
/// abandoned upgrade, `not upgrading`), an unknown command, a request the
/// master could not parse, or arguments it refused.
fn is_failure(message: &str) -> bool {
    [
        "ERROR:",
        "Unrecognized command",
        "Could not parse command",
        "Invalid ",
    ]
    .iter()
    .any(|start| message.starts_with(start))
}

/// The exit status when a command's final reply was a failure.
const COMMAND_FAILED: u8 = 3;

/// Runs one input line (possibly several `;`-separated commands). `failed`
/// becomes true when a command's final reply is a failure.
fn run_line(
    client: &mut Client,
    line: &str,
    interactive: bool,
    failed: &mut bool,
) -> Result<Flow, String> {
    for part in line.split(';') {
        let words = shell_words(part).ok_or_else(|| format!("unbalanced quotes in {part:?}"))?;
        let Some((command, args)) = words.split_first() else {
            continue;
        };
        if command == "quit" || command == "exit" {
            if interactive {
                eprintln!("Goodbye!");
            }
            return Ok(Flow::Quit);
        }
        let mut last = String::new();
        client
            .run(command, args, |reply| {
                print_reply(reply);
                last = reply
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
            })
            .map_err(|e| format!("{e}"))?;
        if is_failure(&last) {
            *failed = true;
        }
    }
    Ok(Flow::Continue)
}

fn interactive(client: &mut Client) -> Result<(), String> {
    let user = std::env::var("USER").unwrap_or_default();
    let mut ehlo = serde_norway::Mapping::new();
    ehlo.insert("command".into(), "ehlo".into());
    ehlo.insert("user".into(), user.into());
    client
        .send(&Value::Mapping(ehlo))
        .map_err(|e| e.to_string())?;
    if let Some(reply) = client.read_reply().map_err(|e| e.to_string())? {
        if let Some(message) = reply.get("message").and_then(Value::as_str) {
            eprint!("{message}");
        }
    }
    eprintln!("Enter 'help' if you're not sure what to do.\n\nType \"quit\" or \"exit\" to quit at any time");
    let mut editor = rustyline::DefaultEditor::new().map_err(|e| e.to_string())?;
    loop {
        match editor.readline("> ") {
            Ok(line) => {
                let _ = editor.add_history_entry(line.as_str());
                let mut failed = false;
                if let Flow::Quit = run_line(client, &line, true, &mut failed)? {
                    return Ok(());
                }
            }
            Err(rustyline::error::ReadlineError::Interrupted) => {
                eprintln!();
                return Ok(());
            }
            Err(rustyline::error::ReadlineError::Eof) => return Ok(()),
            Err(e) => return Err(e.to_string()),
        }
    }
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) => {
            let _ = e.print();
            // As Einhorn's: usage and -h exit 1.
            return ExitCode::from(if e.use_stderr() { 1 } else { 0 });
        }
    };
    let path = socket_path(&args);
    let mut client = match Client::connect(&path) {
        Ok(client) => client,
        Err(e) => {
            let reason = e.to_string();
            let reason = reason.split(" (os error").next().unwrap_or(&reason);
            eprintln!(
                "Could not connect to Einhorn master process:\n\n  {reason} - connect(2) for {}\n\nHINT: Are you sure you are running an Einhorn master?  If so, you\nshould pass einhornsh the cmd_name (-c argument) provided to Einhorn.",
                path.display()
            );
            return ExitCode::from(1);
        }
    };
    let mut failed = false;
    let result = if let Some(commands) = &args.execute {
        run_line(&mut client, commands, false, &mut failed).map(|_| ())
    } else if std::io::stdin().is_terminal() {
        interactive(&mut client)
    } else {
        let mut result = Ok(());
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            match run_line(&mut client, &line, false, &mut failed) {
                Ok(Flow::Continue) => {}
                Ok(Flow::Quit) => break,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        result
    };
    match result {
        Ok(()) if failed => ExitCode::from(COMMAND_FAILED),
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(1)
        }
    }
}
