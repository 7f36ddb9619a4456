//! The command-socket commands, with Einhorn 1.1.1's validation and reply
//! texts (einhorn.md §6.5), except where docs/einhorn-sim.md says otherwise.

use std::time::SystemTime;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_norway::{Mapping, Value};

use super::{ConnId, Master, EINHORN_VERSION};
use crate::cli::AckMode;
use crate::protocol::{self, Request};
use crate::report::{format_time, Level};

/// `help` text: commands with a description, sorted by name.
/// The most workers `set_workers` and `inc` allow (Einhorn's `set_workers`
/// bound, 1000 included).
pub const MAX_WORKERS: u32 = 1000;

const DESCRIPTIONS: &[(&str, &str)] = &[
    ("config", "Merge in a new set of config options. (Note: this will likely be subsumed by config file reloading at some point.)"),
    ("dec", "Decrement the number of Einhorn child processes"),
    ("die", "Send SIGNAL (default: SIGUSR2) to all workers, stop spawning new ones, and exit once all workers die (args: [SIGNAL])"),
    ("help", "Print out available commands"),
    ("inc", "Increment the number of Einhorn child processes"),
    ("louder", "Increase verbosity"),
    ("quieter", "Decrease verbosity"),
    ("reload", "Reload Einhorn"),
    ("set_workers", "Set the number of Einhorn child processes"),
    ("signal", "Send one or more signals to all workers (args: SIG1 [SIG2 ...])"),
    ("state", "Get a dump of Einhorn's current state"),
    ("upgrade", "Upgrade all Einhorn workers smoothly. This causes Einhorn to reload its own code as well."),
    ("upgrade_fleet", "Upgrade all Einhorn workers a fleet at a time. This causes Einhorn to reload its own code as well."),
];

fn descriptions() -> String {
    DESCRIPTIONS
        .iter()
        .map(|(name, text)| format!("{name}: {text}"))
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

fn time_value(t: Option<SystemTime>) -> Value {
    t.map_or(Value::Null, |t| Value::String(format_time(t)))
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
        if matches!(
            command.as_str(),
            "inc"
                | "dec"
                | "set_workers"
                | "signal"
                | "die"
                | "config"
                | "reload"
                | "upgrade"
                | "upgrade_fleet"
        ) {
            let peer = self.peers.get(&conn).cloned().unwrap_or_default();
            self.info(&format!("Command {command:?} from {peer}"));
        }
        let reply = match command.as_str() {
            "worker:ack" => return self.worker_ack(conn, &request),
            "worker:ping" => return self.worker_ping(conn, &request),
            "upgrade" => return self.start_upgrade(conn, &request, true),
            "upgrade_fleet" => return self.start_upgrade(conn, &request, false),
            "ehlo" => self.ehlo(&request),
            "help" => format!(
                "You are speaking to the Einhorn command socket. You can run the following commands:\n\n{}\n",
                descriptions()
            ),
            "state" => self.state(),
            "inc" => self.inc(),
            "dec" => self.dec(),
            "set_workers" => self.set_workers(&request),
            "quieter" => {
                self.log.verbosity = (self.log.verbosity + 1).min(2);
                format!("Verbosity set to {}", self.log.verbosity)
            }
            "louder" => {
                self.log.verbosity = self.log.verbosity.saturating_sub(1);
                format!("Verbosity set to {}", self.log.verbosity)
            }
            "signal" => self.signal_command(&request),
            "die" => self.die(&request),
            "config" => self.config_command(&request),
            "reload" => {
                self.respond(conn, &request, "Reloading, as commanded");
                self.reload();
                return;
            }
            other => format!("Unrecognized command: {other:?}\n\n{}\n", descriptions()),
        };
        self.respond(conn, &request, &reply);
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
        if self.number >= MAX_WORKERS {
            return format!(
                "Can't increase number of workers (already at {}, the most set_workers allows).",
                self.number
            );
        }
        let old = self.number;
        self.number += 1;
        let message = format!(
            "Incrementing number of workers from {old} -> {}",
            self.number
        );
        eprintln!("{message}");
        message
    }

    fn dec(&mut self) -> String {
        if self.number <= 1 {
            return format!(
                "Can't decrease number of workers (already at {}).  Run kill {} if you really want to kill einhorn.",
                self.number, self.pid
            );
        }
        let old = self.number;
        self.number -= 1;
        let message = format!(
            "Decrementing number of workers from {old} -> {}",
            self.number
        );
        eprintln!("{message}");
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
        let (old, new) = (self.number, count as u32);
        if old == new {
            return String::new();
        }
        self.number = new;
        let message = if new > old {
            format!("Altering worker count, {old} -> {new}. Will spin up additional workers.")
        } else {
            format!("Altering worker count, {old} -> {new}. Will gracefully terminate workers.")
        };
        eprintln!("{message}");
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
                ("number", Some(n)) if (1.0..=1000.0).contains(&n) => self.number = n as u32,
                ("seconds", Some(s)) if s > 0.0 && s.is_finite() => self.seconds = s,
                ("verbosity", Some(v)) if (0.0..=2.0).contains(&v) => self.log.verbosity = v as u8,
                ("max_unacked", Some(n)) if n >= 1.0 => self.max_unacked = n as u32,
                ("max_upgrade_additional", Some(n)) if n >= 0.0 => {
                    self.max_upgrade_additional = Some(n as u32)
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
                self.subscribers.push((conn, id));
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
            Some(pid) => match &self.ack_mode {
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

    /// The `state` reply: the pool and settings as a YAML document.
    fn state(&self) -> String {
        let mut children = Mapping::new();
        for w in &self.pool.workers {
            let mut child = Mapping::new();
            child.insert("type".into(), "worker".into());
            child.insert("version".into(), w.version.into());
            child.insert("acked".into(), w.acked.into());
            child.insert(
                "signaled".into(),
                Value::Sequence(w.signaled.iter().map(|s| Value::from(s.as_str())).collect()),
            );
            child.insert("last_signaled_at".into(), time_value(w.last_signaled_wall));
            child.insert("index".into(), w.index.into());
            child.insert("spinup_time".into(), time_value(Some(w.spinup_wall)));
            child.insert("pinged_at".into(), time_value(w.pinged_at));
            child.insert(
                "pinged_request_id".into(),
                w.pinged_request_id.clone().unwrap_or(Value::Null),
            );
            children.insert(w.pid.into(), Value::Mapping(child));
        }
        let options = &self.config.options;
        let mut config = Mapping::new();
        config.insert("number".into(), self.number.into());
        config.insert("backlog".into(), options.backlog.into());
        config.insert("seconds".into(), self.seconds.into());
        config.insert("max_unacked".into(), self.max_unacked.into());
        if let Some(n) = self.max_upgrade_additional {
            config.insert("max_upgrade_additional".into(), n.into());
        }
        let strings = |items: &[String]| {
            Value::Sequence(items.iter().map(|s| Value::from(s.as_str())).collect())
        };
        let mut cmd = vec![self.program.display().to_string()];
        cmd.extend(options.command[1..].iter().cloned());
        let mut ack_mode = Mapping::new();
        ack_mode.insert("type".into(), self.ack_mode.name().into());
        if let AckMode::Timer { timeout, .. } = &self.ack_mode {
            ack_mode.insert("timeout".into(), timeout.as_secs_f64().into());
        }
        let mut state = Mapping::new();
        let mut put = |k: &str, v: Value| {
            state.insert(k.into(), v);
        };
        put("children", Value::Mapping(children));
        put("config", Value::Mapping(config));
        put("version", self.version.into());
        put("orig_cmd", strings(&options.command));
        put("cmd", strings(&cmd));
        put(
            "bind",
            Value::Sequence(
                self.sockets
                    .iter()
                    .map(|s| Value::from(s.spec.address.to_string()))
                    .collect(),
            ),
        );
        put(
            "bind_fds",
            Value::Sequence(
                self.sockets
                    .iter()
                    .map(|s| Value::from(s.raw_fd()))
                    .collect(),
            ),
        );
        put(
            "bound_ports",
            Value::Sequence(self.sockets.iter().map(|s| Value::from(s.port)).collect()),
        );
        put("respawn", self.respawn.into());
        put("upgrading", self.upgrading.into());
        put("smooth_upgrade", self.smooth_upgrade.into());
        put(
            "cmd_name",
            options
                .command_name
                .as_deref()
                .map_or(Value::Null, Value::from),
        );
        put("verbosity", self.log.verbosity.into());
        put("generation", self.generation.into());
        put("last_spinup", time_value(self.last_spinup_wall));
        put("ack_mode", Value::Mapping(ack_mode));
        put(
            "kill_children_on_exit",
            options.kill_children_on_exit.into(),
        );
        put(
            "socket_path",
            self.config.sock_path.display().to_string().into(),
        );
        put("pidfile", self.config.pidfile.display().to_string().into());
        put(
            "lockfile",
            self.config.lockfile.display().to_string().into(),
        );
        put(
            "consecutive_deaths_before_ack",
            self.consecutive_deaths_before_ack.into(),
        );
        put("last_upgraded", time_value(self.last_upgraded));
        put("drop_environment_variables", strings(&options.drop_env_var));
        put(
            "signal_timeout",
            options.signal_timeout.map_or(Value::Null, Value::from),
        );
        let mut root = Mapping::new();
        root.insert("state".into(), Value::Mapping(state));
        let yaml = serde_norway::to_string(&Value::Mapping(root)).unwrap_or_default();
        format!("---\n{yaml}")
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
