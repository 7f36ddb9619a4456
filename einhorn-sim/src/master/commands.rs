//! The command-socket commands, with Einhorn 1.1.1's validation and reply
//! texts (einhorn.md §6.5), except where docs/einhorn-sim.md says otherwise.

use std::time::SystemTime;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_norway::Value;

use super::{ConnId, Master, Reexec, EINHORN_VERSION};
use crate::cli::AckMode;
use crate::protocol::{self, Request};
use crate::report::Level;

/// The most workers `set_workers` and `inc` allow (Einhorn's `set_workers`
/// bound, 1000 included).
pub const MAX_WORKERS: u32 = 1000;

/// What a command's handler did.
enum Outcome {
    /// This is the reply.
    Reply(String),
    /// The handler answered (or closed the connection) itself.
    Answered,
}

/// One command of the command socket.
struct Command {
    name: &'static str,
    /// What `help` says; `None` for the commands it does not list (those
    /// workers and clients send on their own).
    help: Option<&'static str>,
    /// Logged as `Command "NAME" from PEER` (the commands that change
    /// something, as Einhorn logs them).
    logged: bool,
    run: fn(&mut Master, ConnId, &Request) -> Outcome,
}

/// Every command, sorted by name: `help`, the log filter and the dispatch
/// all come from here.
const COMMANDS: &[Command] = &[
    Command {
        name: "config",
        help: Some("Merge in a new set of config options. (Note: this will likely be subsumed by config file reloading at some point.)"),
        logged: true,
        run: |m, _, r| Outcome::Reply(m.config_command(r)),
    },
    Command {
        name: "dec",
        help: Some("Decrement the number of Einhorn child processes"),
        logged: true,
        run: |m, _, _| Outcome::Reply(m.dec()),
    },
    Command {
        name: "die",
        help: Some("Send SIGNAL (default: SIGUSR2) to all workers, stop spawning new ones, and exit once all workers die (args: [SIGNAL])"),
        logged: true,
        run: |m, _, r| Outcome::Reply(m.die(r)),
    },
    Command {
        name: "ehlo",
        help: None,
        logged: false,
        run: |m, _, r| Outcome::Reply(m.ehlo(r)),
    },
    Command {
        name: "help",
        help: Some("Print out available commands"),
        logged: false,
        run: |_, _, _| {
            Outcome::Reply(format!(
                "You are speaking to the Einhorn command socket. You can run the following commands:\n\n{}\n",
                help_text()
            ))
        },
    },
    Command {
        name: "inc",
        help: Some("Increment the number of Einhorn child processes"),
        logged: true,
        run: |m, _, _| Outcome::Reply(m.inc()),
    },
    Command {
        name: "louder",
        help: Some("Increase verbosity"),
        logged: false,
        run: |m, _, _| {
            m.log.verbosity = m.log.verbosity.saturating_sub(1);
            Outcome::Reply(format!("Verbosity set to {}", m.log.verbosity))
        },
    },
    Command {
        name: "quieter",
        help: Some("Decrease verbosity"),
        logged: false,
        run: |m, _, _| {
            m.log.verbosity = (m.log.verbosity + 1).min(2);
            Outcome::Reply(format!("Verbosity set to {}", m.log.verbosity))
        },
    },
    Command {
        name: "reload",
        help: Some("Reload Einhorn"),
        logged: true,
        run: |m, conn, r| {
            m.respond(conn, r, "Reloading, as commanded");
            m.reload_for(Reexec::Reload);
            Outcome::Answered
        },
    },
    Command {
        name: "set_workers",
        help: Some("Set the number of Einhorn child processes"),
        logged: true,
        run: |m, _, r| Outcome::Reply(m.set_workers(r)),
    },
    Command {
        name: "signal",
        help: Some("Send one or more signals to all workers (args: SIG1 [SIG2 ...])"),
        logged: true,
        run: |m, _, r| Outcome::Reply(m.signal_command(r)),
    },
    Command {
        name: "state",
        help: Some("Get a dump of Einhorn's current state"),
        logged: false,
        run: |m, _, _| Outcome::Reply(m.state()),
    },
    Command {
        name: "upgrade",
        help: Some("Upgrade all Einhorn workers smoothly. This causes Einhorn to reload its own code as well."),
        logged: true,
        run: |m, conn, r| {
            m.start_upgrade(conn, r, true);
            Outcome::Answered
        },
    },
    Command {
        name: "upgrade_fleet",
        help: Some("Upgrade all Einhorn workers a fleet at a time. This causes Einhorn to reload its own code as well."),
        logged: true,
        run: |m, conn, r| {
            m.start_upgrade(conn, r, false);
            Outcome::Answered
        },
    },
    Command {
        name: "worker:ack",
        help: None,
        logged: false,
        run: |m, conn, r| {
            m.worker_ack(conn, r);
            Outcome::Answered
        },
    },
    Command {
        name: "worker:ping",
        help: None,
        logged: false,
        run: |m, conn, r| {
            m.worker_ping(conn, r);
            Outcome::Answered
        },
    },
];

/// `help`'s list: each listed command with its description, by name.
fn help_text() -> String {
    COMMANDS
        .iter()
        .filter_map(|c| Some(format!("{}: {}", c.name, c.help?)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Ruby's signal names (`Signal.list`), without `SIG`.
const SIGNALS: &[(&str, Option<Signal>)] = &[
    ("EXIT", None),
    ("HUP", Some(Signal::SIGHUP)),
    ("INT", Some(Signal::SIGINT)),
    ("QUIT", Some(Signal::SIGQUIT)),
    ("ILL", Some(Signal::SIGILL)),
    ("TRAP", Some(Signal::SIGTRAP)),
    ("ABRT", Some(Signal::SIGABRT)),
    ("IOT", Some(Signal::SIGABRT)),
    ("BUS", Some(Signal::SIGBUS)),
    ("FPE", Some(Signal::SIGFPE)),
    ("KILL", Some(Signal::SIGKILL)),
    ("USR1", Some(Signal::SIGUSR1)),
    ("SEGV", Some(Signal::SIGSEGV)),
    ("USR2", Some(Signal::SIGUSR2)),
    ("PIPE", Some(Signal::SIGPIPE)),
    ("ALRM", Some(Signal::SIGALRM)),
    ("TERM", Some(Signal::SIGTERM)),
    ("CHLD", Some(Signal::SIGCHLD)),
    ("CLD", Some(Signal::SIGCHLD)),
    ("CONT", Some(Signal::SIGCONT)),
    ("STOP", Some(Signal::SIGSTOP)),
    ("TSTP", Some(Signal::SIGTSTP)),
    ("TTIN", Some(Signal::SIGTTIN)),
    ("TTOU", Some(Signal::SIGTTOU)),
    ("URG", Some(Signal::SIGURG)),
    ("XCPU", Some(Signal::SIGXCPU)),
    ("XFSZ", Some(Signal::SIGXFSZ)),
    ("VTALRM", Some(Signal::SIGVTALRM)),
    ("PROF", Some(Signal::SIGPROF)),
    ("WINCH", Some(Signal::SIGWINCH)),
    ("IO", Some(Signal::SIGIO)),
    ("POLL", Some(Signal::SIGIO)),
    ("PWR", Some(Signal::SIGPWR)),
    ("SYS", Some(Signal::SIGSYS)),
];

/// Upcases and strips a leading `SIG`, then looks the name up.
fn parse_signal(text: &str) -> Result<(String, Option<Signal>), String> {
    let upper = text.to_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper).to_string();
    SIGNALS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, s)| (name.clone(), *s))
        .ok_or_else(|| format!("Invalid signal: {name:?}"))
}

/// Ruby's class name of a YAML value, for error texts.
fn ruby_class(value: &Value) -> &'static str {
    match value {
        Value::Null => "NilClass",
        Value::Bool(true) => "TrueClass",
        Value::Bool(false) => "FalseClass",
        Value::Number(n) if n.is_f64() => "Float",
        Value::Number(_) => "Integer",
        Value::String(_) => "String",
        Value::Sequence(_) => "Array",
        Value::Mapping(_) => "Hash",
        Value::Tagged(_) => "Object",
    }
}

/// Ruby's `inspect` of a YAML value (`:name` strings as symbols).
pub(super) fn ruby_inspect(value: &Value) -> String {
    match value {
        Value::Null => "nil".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) if s.starts_with(':') && s.len() > 1 && !s.contains(' ') => s.clone(),
        Value::String(s) => format!("{s:?}"),
        Value::Sequence(items) => {
            let parts: Vec<String> = items.iter().map(ruby_inspect).collect();
            format!("[{}]", parts.join(", "))
        }
        Value::Mapping(map) => {
            let parts: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{}=>{}", ruby_inspect(k), ruby_inspect(v)))
                .collect();
            format!("{{{}}}", parts.join(", "))
        }
        Value::Tagged(tagged) => ruby_inspect(&tagged.value),
    }
}

/// The `args` of a request as strings, checked as Einhorn checks them.
fn string_args(request: &Request) -> Result<Vec<String>, String> {
    match request.get("args") {
        None | Some(Value::Null) => Err("No args provided".to_string()),
        Some(Value::Sequence(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(s) => Ok(s.clone()),
                other => Err(format!(
                    "Argument is a {}, not a string: {}",
                    ruby_class(other),
                    ruby_inspect(other)
                )),
            })
            .collect(),
        Some(_) => Err("Args must be an array".to_string()),
    }
}

/// Ruby's `String#to_i`: leading whitespace, a sign, then digits; 0 if none.
fn ruby_to_i(text: &str) -> i64 {
    let t = text.trim_start();
    let (sign, digits) = match t.strip_prefix('-') {
        Some(rest) => (-1, rest),
        None => (1, t.strip_prefix('+').unwrap_or(t)),
    };
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end].parse::<i64>().map_or(0, |n| sign * n)
}

impl Master {
    fn respond(&mut self, conn: ConnId, request: &Request, message: &str) {
        self.send(conn, protocol::reply(message, request.id(), false));
    }

    /// Runs one request and answers it.
    pub(super) fn process(&mut self, conn: ConnId, request: Request) {
        let Some(command) = request.command().map(str::to_string) else {
            self.respond(
                conn,
                &request,
                "No \"command\" parameter provided; not sure what you want me to do.",
            );
            return;
        };
        let Some(found) = COMMANDS.iter().find(|c| c.name == command) else {
            let reply = format!("Unrecognized command: {command:?}\n\n{}\n", help_text());
            self.respond(conn, &request, &reply);
            return;
        };
        if found.logged {
            let peer = self.clients.peers.get(&conn).cloned().unwrap_or_default();
            self.info(&format!("Command {command:?} from {peer}"));
        }
        if let Outcome::Reply(reply) = (found.run)(self, conn, &request) {
            self.respond(conn, &request, &reply);
        }
    }

    fn ehlo(&self, request: &Request) -> String {
        let user = request.get("user").and_then(Value::as_str).unwrap_or("");
        let name = self
            .config
            .options
            .command_name
            .as_ref()
            .map_or(String::new(), |n| format!(" ({n})"));
        format!(
            "Welcome, {user}! You are speaking to Einhorn Master Process {}{name}.\nThis is Einhorn {EINHORN_VERSION}.\n",
            self.pid
        )
    }

    fn inc(&mut self) -> String {
        // Einhorn's inc has no cap; this one stops where set_workers does,
        // so a loop of `inc` cannot fork without bound.
        if self.settings.number >= MAX_WORKERS {
            return format!(
                "Can't increase number of workers (already at {}, the most set_workers allows).",
                self.settings.number
            );
        }
        let old = self.settings.number;
        self.settings.number += 1;
        let message = format!(
            "Incrementing number of workers from {old} -> {}",
            self.settings.number
        );
        crate::report::line(&message);
        message
    }

    fn dec(&mut self) -> String {
        if self.settings.number <= 1 {
            return format!(
                "Can't decrease number of workers (already at {}).  Run kill {} if you really want to kill einhorn.",
                self.settings.number, self.pid
            );
        }
        let old = self.settings.number;
        self.settings.number -= 1;
        let message = format!(
            "Decrementing number of workers from {old} -> {}",
            self.settings.number
        );
        crate::report::line(&message);
        message
    }

    fn set_workers(&mut self, request: &Request) -> String {
        let args = match string_args(request) {
            Ok(args) => args,
            Err(e) => return e,
        };
        let given = args.first().cloned().unwrap_or_default();
        let count = ruby_to_i(&given);
        if !(1..=i64::from(MAX_WORKERS)).contains(&count) {
            return format!("Invalid count: '{given}'. Must be an integer in [1,1000).");
        }
        let (old, new) = (self.settings.number, count as u32);
        if old == new {
            return String::new();
        }
        self.settings.number = new;
        let message = if new > old {
            format!("Altering worker count, {old} -> {new}. Will spin up additional workers.")
        } else {
            format!("Altering worker count, {old} -> {new}. Will gracefully terminate workers.")
        };
        crate::report::line(&message);
        message
    }

    fn signal_command(&mut self, request: &Request) -> String {
        let names = match string_args(request) {
            Ok(args) => args,
            Err(e) => return e,
        };
        let mut signals = Vec::new();
        for name in &names {
            match parse_signal(name) {
                Ok(signal) => signals.push(signal),
                Err(e) => return e,
            }
        }
        let pids = self.pool.pids();
        let mut lines = Vec::new();
        for (name, signal) in signals {
            let sent = match signal {
                Some(signal) => self.signal_all(signal, &pids, false),
                // Signal 0 only checks that the workers exist.
                None => pids
                    .iter()
                    .copied()
                    .filter(|p| kill(Pid::from_raw(*p), None).is_ok())
                    .collect(),
            };
            lines.push(format!(
                "Successfully sent {name}s to {} processes: {}",
                sent.len(),
                super::inspect_pids(&sent)
            ));
        }
        lines.join("\n")
    }

    fn die(&mut self, request: &Request) -> String {
        let args = match string_args(request) {
            Ok(args) => args,
            Err(e) => return e,
        };
        let signal = match args.first() {
            None => Signal::SIGUSR2,
            Some(name) => match parse_signal(name) {
                Ok((_, Some(signal))) => signal,
                Ok((_, None)) => return "Invalid signal: \"EXIT\"".to_string(),
                Err(e) => return e,
            },
        };
        self.respawn = false;
        let pids = self.pool.pids();
        self.signal_all(signal, &pids, true);
        "Einhorn is going down! ".to_string()
    }

    fn config_command(&mut self, request: &Request) -> String {
        let args = string_args(request).unwrap_or_default();
        if args.is_empty() {
            return "Must pass in a YAML-encoded hash".to_string();
        }
        let text = args.join(" ");
        let parsed: Value = match serde_norway::from_str(&text) {
            Ok(v) => v,
            Err(e) => {
                return format!(
                    "Error while processing command \"config\": {e} (Psych::SyntaxError)"
                )
            }
        };
        let Value::Mapping(map) = &parsed else {
            return format!("Parsed argument is a {}, not a hash", ruby_class(&parsed));
        };
        for (key, value) in map {
            let key = key.as_str().unwrap_or_default().trim_start_matches(':');
            let number = value.as_f64();
            match (key, number) {
                ("number", Some(n)) if (1.0..=1000.0).contains(&n) => {
                    self.settings.number = n as u32
                }
                ("seconds", Some(s)) if s > 0.0 && s.is_finite() => {
                    self.settings.seconds = s;
                    self.settings.seconds_integer = value.is_i64();
                }
                ("verbosity", Some(v)) if (0.0..=2.0).contains(&v) => self.log.verbosity = v as u8,
                ("max_unacked", Some(n)) if n >= 1.0 => self.settings.max_unacked = n as u32,
                ("max_upgrade_additional", Some(n)) if n >= 0.0 => {
                    self.settings.max_upgrade_additional = Some(n as u32)
                }
                _ => self.debug(&format!("config: ignoring {key}")),
            }
        }
        format!("Successfully merged in config: {}", ruby_inspect(&parsed))
    }

    fn start_upgrade(&mut self, conn: ConnId, request: &Request, smooth: bool) {
        if !self.respawn {
            self.respond(
                conn,
                request,
                "ERROR: not upgrading: the master is shutting down",
            );
            return;
        }
        let message = if smooth {
            "Upgrading smoothly, as commanded"
        } else {
            "Upgrading fleet, as commanded"
        };
        match request.id().cloned() {
            Some(id) => {
                self.send(conn, protocol::reply(message, Some(&id), true));
                self.clients.subscribers.push((conn, id));
            }
            None => self.respond(conn, request, message),
        }
        self.upgrade(smooth);
    }

    fn worker_ack(&mut self, conn: ConnId, request: &Request) {
        match request.get("pid") {
            None => self.error(&format!(
                "[client {conn}] Invalid request (no pid): {}",
                ruby_inspect(&Value::Mapping(request.fields.clone()))
            )),
            Some(pid) => match &self.settings.ack_mode {
                AckMode::Manual => {
                    self.info(&format!("Received a manual ACK from {}", ruby_inspect(pid)));
                    match pid.as_i64().and_then(|p| i32::try_from(p).ok()) {
                        Some(pid) => self.register_ack(pid),
                        None => self.error(&format!(
                            "Could not find state for PID {}; ignoring ACK.",
                            ruby_inspect(pid)
                        )),
                    }
                }
                mode => {
                    // Einhorn logs an ERROR and ignores it; a worker that
                    // says it is ready is ready, so count it now.
                    let mode = mode.inspect();
                    self.info(&format!(
                        "Received a manual ACK from {} in ack mode {mode}: counting the worker as up now",
                        ruby_inspect(pid)
                    ));
                    if let Some(pid) = pid.as_i64().and_then(|p| i32::try_from(p).ok()) {
                        if self.pool.get(pid).is_some_and(|w| !w.acked) {
                            self.register_ack(pid);
                        }
                    }
                }
            },
        }
        self.close(conn);
    }

    fn worker_ping(&mut self, conn: ConnId, request: &Request) {
        let pid = request.get("pid").cloned().unwrap_or(Value::Null);
        let request_id = request.get("request_id").cloned().unwrap_or(Value::Null);
        let found = pid
            .as_i64()
            .and_then(|p| i32::try_from(p).ok())
            .and_then(|p| self.pool.get_mut(p));
        match found {
            Some(worker) => {
                worker.pinged_at = Some(SystemTime::now());
                worker.pinged_request_id = Some(request_id);
            }
            None => self.log.write(
                Level::Error,
                &format!(
                    "Could not find state for PID {}; ignoring ACK.",
                    ruby_inspect(&pid)
                ),
            ),
        }
        self.close(conn);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_normalize_like_einhorn() {
        assert_eq!(parse_signal("sigusr1").unwrap().0, "USR1");
        assert_eq!(parse_signal("TERM").unwrap().1, Some(Signal::SIGTERM));
        assert_eq!(parse_signal("foo").unwrap_err(), "Invalid signal: \"FOO\"");
        assert_eq!(parse_signal("9").unwrap_err(), "Invalid signal: \"9\"");
    }

    #[test]
    fn to_i_like_ruby() {
        assert_eq!(ruby_to_i("3x"), 3);
        assert_eq!(ruby_to_i(""), 0);
        assert_eq!(ruby_to_i(" -2"), -2);
    }

    #[test]
    fn inspect_like_ruby() {
        let v: Value = serde_norway::from_str("seconds: 2\n:verbosity: 1\nname: x\n").unwrap();
        assert_eq!(
            ruby_inspect(&v),
            "{\"seconds\"=>2, :verbosity=>1, \"name\"=>\"x\"}"
        );
    }
}
