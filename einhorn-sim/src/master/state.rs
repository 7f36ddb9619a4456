//! The `state` reply: the pool and settings as a YAML document, with the
//! structure and key names of Einhorn's state dump (docs/einhorn-sim.md
//! says how its values differ).

use std::time::SystemTime;

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use serde_norway::Value;

use super::pool::Worker;
use super::Master;
use crate::cli::AckMode;
use crate::report::format_time;

#[derive(Serialize)]
struct Root<'a> {
    state: State<'a>,
}

#[derive(Serialize)]
struct State<'a> {
    children: Children<'a>,
    config: Settings,
    version: u64,
    orig_cmd: &'a [String],
    cmd: Vec<String>,
    bind: Vec<String>,
    bind_fds: Vec<i32>,
    bound_ports: Vec<u16>,
    respawn: bool,
    upgrading: bool,
    smooth_upgrade: bool,
    cmd_name: Option<&'a str>,
    verbosity: u8,
    generation: u64,
    last_spinup: Option<String>,
    ack_mode: AckModeState,
    kill_children_on_exit: bool,
    socket_path: String,
    pidfile: String,
    lockfile: String,
    consecutive_deaths_before_ack: u32,
    last_upgraded: Option<String>,
    drop_environment_variables: &'a [String],
    signal_timeout: Option<u32>,
}

/// The workers by pid, in spawn order.
struct Children<'a>(&'a [Worker]);

impl Serialize for Children<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for w in self.0 {
            map.serialize_entry(&w.pid, &Child::from(w))?;
        }
        map.end()
    }
}

#[derive(Serialize)]
struct Child<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    version: u64,
    acked: bool,
    signaled: Vec<&'a str>,
    last_signaled_at: Option<String>,
    index: u32,
    spinup_time: String,
    pinged_at: Option<String>,
    pinged_request_id: Option<&'a Value>,
}

impl<'a> From<&'a Worker> for Child<'a> {
    fn from(w: &'a Worker) -> Child<'a> {
        Child {
            kind: "worker",
            version: w.version,
            acked: w.acked,
            signaled: w.signaled.iter().map(String::as_str).collect(),
            last_signaled_at: w.last_signaled_wall.map(format_time),
            index: w.index,
            spinup_time: format_time(w.spinup_wall),
            pinged_at: w.pinged_at.map(format_time),
            pinged_request_id: w.pinged_request_id.as_ref(),
        }
    }
}

#[derive(Serialize)]
struct Settings {
    number: u32,
    backlog: i32,
    seconds: f64,
    max_unacked: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_upgrade_additional: Option<u32>,
}

#[derive(Serialize)]
struct AckModeState {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    timeout: Option<f64>,
}

fn time(t: Option<SystemTime>) -> Option<String> {
    t.map(format_time)
}

impl Master {
    /// The `state` reply.
    pub(super) fn state(&self) -> String {
        let options = &self.config.options;
        let mut cmd = vec![self.program.display().to_string()];
        cmd.extend(options.command[1..].iter().cloned());
        let state = State {
            children: Children(&self.pool.workers),
            config: Settings {
                number: self.settings.number,
                backlog: options.backlog,
                seconds: self.settings.seconds,
                max_unacked: self.settings.max_unacked,
                max_upgrade_additional: self.settings.max_upgrade_additional,
            },
            version: self.version,
            orig_cmd: &options.command,
            cmd,
            bind: self
                .sockets
                .iter()
                .map(|s| s.spec.address.to_string())
                .collect(),
            bind_fds: self.sockets.iter().map(|s| s.raw_fd()).collect(),
            bound_ports: self.sockets.iter().map(|s| s.port).collect(),
            respawn: self.respawn,
            upgrading: self.upgrade_state.current.is_some(),
            smooth_upgrade: self.upgrade_state.last_smooth,
            cmd_name: options.command_name.as_deref(),
            verbosity: self.log.verbosity,
            generation: self.upgrade_state.generation,
            last_spinup: time(self.spinup.last_wall),
            ack_mode: AckModeState {
                kind: self.settings.ack_mode.name(),
                timeout: match &self.settings.ack_mode {
                    AckMode::Timer { timeout, .. } => Some(timeout.as_secs_f64()),
                    AckMode::Manual => None,
                },
            },
            kill_children_on_exit: options.kill_children_on_exit,
            socket_path: self.config.sock_path.display().to_string(),
            pidfile: self.config.pidfile.display().to_string(),
            lockfile: self.config.lockfile.display().to_string(),
            consecutive_deaths_before_ack: self.spinup.deaths_before_ack,
            last_upgraded: time(self.upgrade_state.last_upgraded),
            drop_environment_variables: &options.drop_env_var,
            signal_timeout: options.signal_timeout,
        };
        let yaml = serde_norway::to_string(&Root { state }).unwrap_or_default();
        format!("---\n{yaml}")
    }
}
