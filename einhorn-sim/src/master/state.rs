//! The `state` reply: what Einhorn 1.1.1's `state` dumps, key for key and
//! in its order, written as Ruby's Psych writes it (symbol keys, `Set`s,
//! `Time`s; see [`crate::ruby_yaml`]), so that Einhorn's clients read
//! `[:state][:children]` and get what Einhorn would give them. Keys of
//! einhorn-sim's own (`config`'s `max_unacked` when not given,
//! `pinged_*`) sit where Einhorn's clients ignore them.

use std::time::SystemTime;

use super::pool::Worker;
use super::Master;
use crate::bind::{BindAddress, BoundSocket};
use crate::cli::AckMode;
use crate::report::format_time;
use crate::ruby_yaml::{document, Key, Ruby};

fn time(t: Option<SystemTime>) -> Ruby {
    Ruby::option(t, |t| Ruby::Time(format_time(t)))
}

fn strings(items: &[String]) -> Ruby {
    Ruby::List(items.iter().cloned().map(Ruby::Str).collect())
}

fn path(p: &std::path::Path) -> Ruby {
    Ruby::Str(p.display().to_string())
}

/// One worker, as Einhorn's child spec.
fn child(w: &Worker) -> Ruby {
    let mut spec = vec![
        (Key::Sym("type"), Ruby::Sym("worker")),
        (Key::Sym("version"), Ruby::Int(w.version as i64)),
        (Key::Sym("acked"), Ruby::Bool(w.acked)),
        (
            Key::Sym("signaled"),
            Ruby::Set(w.signaled.iter().cloned().collect()),
        ),
        (Key::Sym("last_signaled_at"), time(w.last_signaled_wall)),
        (Key::Sym("index"), Ruby::Int(i64::from(w.index))),
        (
            Key::Sym("spinup_time"),
            Ruby::Time(format_time(w.spinup_wall)),
        ),
    ];
    // Einhorn adds these with the first ping.
    if let Some(at) = w.pinged_at {
        spec.push((Key::Sym("pinged_at"), Ruby::Time(format_time(at))));
        let id = w
            .pinged_request_id
            .as_ref()
            .and_then(|id| serde_json::to_value(id).ok())
            .map_or(Ruby::Nil, Ruby::Json);
        spec.push((Key::Sym("pinged_request_id"), id));
    }
    Ruby::Map(spec)
}

/// `--nice` as Einhorn keeps it.
fn nice_entries(nice: Option<&crate::cli::Nice>) -> Ruby {
    let level = |n: Option<i32>| Ruby::option(n, |n| Ruby::Int(i64::from(n)));
    Ruby::Map(vec![
        (Key::Sym("master"), level(nice.and_then(|n| n.master))),
        (Key::Sym("worker"), level(nice.and_then(|n| n.worker))),
        (
            Key::Sym("renice_cmd"),
            Ruby::Str(nice.map_or("/usr/bin/renice".to_string(), |n| n.renice_cmd.clone())),
        ),
    ])
}

/// A `-b` spec as Einhorn keeps it: `[host, port as given, [flags]]`.
fn bind(socket: &BoundSocket) -> Ruby {
    let (host, port) = match &socket.spec.address {
        BindAddress::Tcp(host, port) => (host.clone(), i64::from(*port)),
        BindAddress::Unix(path) => (format!("unix:{}", path.display()), 0),
    };
    Ruby::List(vec![
        Ruby::Str(host),
        Ruby::Int(port),
        strings(&socket.spec.flags),
    ])
}

impl Master {
    /// The `state` reply.
    pub(super) fn state(&self) -> String {
        let state = Ruby::Map(vec![(Key::Sym("state"), Ruby::Map(self.state_entries()))]);
        document(&state)
    }

    fn state_entries(&self) -> Vec<(Key, Ruby)> {
        let options = &self.config.options;
        let mut cmd = vec![self.program.display().to_string()];
        cmd.extend(options.command[1..].iter().cloned());
        let socket = |f: fn(&BoundSocket) -> Ruby| Ruby::List(self.sockets.iter().map(f).collect());
        vec![
            (
                Key::Sym("children"),
                Ruby::Map(
                    self.pool
                        .workers
                        .iter()
                        .map(|w| (Key::Int(i64::from(w.pid)), child(w)))
                        .collect(),
                ),
            ),
            (Key::Sym("config"), self.config_entries()),
            (Key::Sym("versions"), Ruby::Map(vec![])),
            (Key::Sym("version"), Ruby::Int(self.version as i64)),
            (Key::Sym("sockets"), Ruby::Map(vec![])),
            (Key::Sym("orig_cmd"), strings(&options.command)),
            (Key::Sym("bind"), socket(bind)),
            (
                Key::Sym("bind_fds"),
                socket(|s| Ruby::Int(i64::from(s.raw_fd()))),
            ),
            (
                Key::Sym("bound_ports"),
                socket(|s| Ruby::Int(i64::from(s.port))),
            ),
            (Key::Sym("cmd"), strings(&cmd)),
            (Key::Sym("script_name"), Ruby::Nil),
            (Key::Sym("respawn"), Ruby::Bool(self.respawn)),
            (
                Key::Sym("upgrading"),
                Ruby::Bool(self.upgrade_state.current.is_some()),
            ),
            (
                Key::Sym("smooth_upgrade"),
                Ruby::Bool(self.upgrade_state.last_smooth),
            ),
            (Key::Sym("reloading_for_upgrade"), Ruby::Bool(false)),
            (Key::Sym("path"), Ruby::Nil),
            (
                Key::Sym("cmd_name"),
                Ruby::option(options.command_name.clone(), Ruby::Str),
            ),
            (
                Key::Sym("verbosity"),
                Ruby::Int(i64::from(self.log.verbosity)),
            ),
            (
                Key::Sym("generation"),
                Ruby::Int(self.upgrade_state.generation as i64),
            ),
            (Key::Sym("last_spinup"), time(self.spinup.last_wall)),
            (Key::Sym("ack_mode"), self.ack_mode_entries()),
        ]
        .into_iter()
        .chain(self.process_entries())
        .collect()
    }

    /// The keys from `kill_children_on_exit` on: the master's files,
    /// options and upgrade times.
    fn process_entries(&self) -> Vec<(Key, Ruby)> {
        let options = &self.config.options;
        vec![
            (
                Key::Sym("kill_children_on_exit"),
                Ruby::Bool(options.kill_children_on_exit),
            ),
            (
                Key::Sym("command_socket_as_fd"),
                Ruby::Bool(options.command_socket_as_fd),
            ),
            (Key::Sym("socket_path"), path(&self.config.sock_path)),
            (Key::Sym("pidfile"), path(&self.config.pidfile)),
            (Key::Sym("lockfile"), path(&self.config.lockfile)),
            (
                Key::Sym("consecutive_deaths_before_ack"),
                Ruby::Int(i64::from(self.spinup.deaths_before_ack)),
            ),
            (
                Key::Sym("last_upgraded"),
                time(self.upgrade_state.last_upgraded),
            ),
            (Key::Sym("nice"), nice_entries(options.nice.as_ref())),
            (
                Key::Sym("reexec_commandline"),
                Ruby::option(options.reexec_as.as_ref(), |words| strings(&words.0)),
            ),
            (
                Key::Sym("drop_environment_variables"),
                strings(&options.drop_env_var),
            ),
            (
                Key::Sym("signal_timeout"),
                Ruby::option(options.signal_timeout, |t| Ruby::Int(i64::from(t))),
            ),
            (Key::Sym("preloaded"), Ruby::Bool(false)),
        ]
    }

    /// `config`: Einhorn's `number`, `backlog` and `seconds` (an Integer
    /// unless given as a Float), then the pacing limits.
    fn config_entries(&self) -> Ruby {
        let settings = &self.settings;
        let seconds = if settings.seconds_integer {
            Ruby::Int(settings.seconds as i64)
        } else {
            Ruby::float(settings.seconds)
        };
        let mut config = vec![
            (Key::Sym("number"), Ruby::Int(i64::from(settings.number))),
            (
                Key::Sym("backlog"),
                Ruby::Int(i64::from(self.config.options.backlog)),
            ),
            (Key::Sym("seconds"), seconds),
            (
                Key::Sym("max_unacked"),
                Ruby::Int(i64::from(settings.max_unacked)),
            ),
        ];
        if let Some(n) = settings.max_upgrade_additional {
            config.push((Key::Sym("max_upgrade_additional"), Ruby::Int(i64::from(n))));
        }
        Ruby::Map(config)
    }

    /// `{type: :timer, timeout: 1}` or `{type: :manual}`.
    fn ack_mode_entries(&self) -> Ruby {
        match &self.settings.ack_mode {
            AckMode::Timer { text, .. } => Ruby::Map(vec![
                (Key::Sym("type"), Ruby::Sym("timer")),
                (Key::Sym("timeout"), Ruby::Float(text.clone())),
            ]),
            AckMode::Manual => Ruby::Map(vec![(Key::Sym("type"), Ruby::Sym("manual"))]),
        }
    }
}
