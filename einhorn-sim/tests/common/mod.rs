//! Helpers for tests that drive the real `einhorn-sim` with the real
//! `einhorn-test-worker`, watching the `--events` file and the command socket.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use einhorn_sim::client::Client;
use einhorn_sim::conformance::harness;
pub use einhorn_sim::events::{Event, Record};
pub use einhorn_sim::worker_report::{WorkerEvent, WorkerReport};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

pub const WAIT: Duration = Duration::from_secs(20);

pub fn sim_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_einhorn-sim"))
}

pub fn worker_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_einhorn-test-worker"))
}

pub fn einhornsh_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_einhornsh"))
}

pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "es-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running einhorn-sim; it and every worker it spawned are killed on drop.
pub struct Sim {
    pub child: Child,
    pub dir: TempDir,
    pub stderr: Arc<Mutex<Vec<String>>>,
}

impl Sim {
    /// Starts `einhorn-sim OPTIONS -- einhorn-test-worker` with worker knobs.
    pub fn start(options: &[&str], worker_env: &[(&str, &str)]) -> Sim {
        let worker = worker_binary();
        Sim::start_program(options, &[worker.to_str().unwrap()], worker_env)
    }

    /// Starts `einhorn-sim OPTIONS -- PROGRAM...`.
    pub fn start_program(options: &[&str], program: &[&str], env: &[(&str, &str)]) -> Sim {
        let dir = TempDir::new();
        let mut command = Command::new(sim_binary());
        command
            .arg("-d")
            .arg(dir.0.join("cmd.sock"))
            .arg("-e")
            .arg(dir.0.join("einhorn.pid"))
            .arg("-f")
            .arg(dir.0.join("einhorn.lock"))
            .arg("--events")
            .arg(dir.0.join("events.jsonl"))
            .args(options)
            .arg("--")
            .args(program)
            .env("TEST_WORKER_REPORT", dir.0.join("report.jsonl"))
            .env("TEST_WORKER_CONFIG", dir.0.join("worker.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("spawn einhorn-sim");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let pipe = child.stderr.take().unwrap();
        let lines = Arc::clone(&stderr);
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
        let sim = Sim { child, dir, stderr };
        sim.ready();
        sim
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.0.join(name)
    }

    pub fn socket(&self) -> PathBuf {
        self.path("cmd.sock")
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    /// Sets worker knobs for workers spawned from now on.
    pub fn set_worker_config(&self, text: &str) {
        std::fs::write(self.path("worker.conf"), text).unwrap();
    }

    pub fn events(&self) -> Vec<Record> {
        Record::read_file(&self.path("events.jsonl"))
    }

    pub fn reports(&self) -> Vec<WorkerReport> {
        WorkerReport::read_file(&self.path("report.jsonl"))
    }

    /// Waits for the `ready` event; returns the ports bound, in `-b` order.
    pub fn ready(&self) -> Vec<u16> {
        self.wait_for(|events| {
            events.iter().find_map(|r| match &r.event {
                Event::Ready { bound, .. } => Some(bound.iter().map(|b| b.port).collect()),
                _ => None,
            })
        })
    }

    /// The master's stderr read so far. It is read by a thread of its own,
    /// so a line may lag behind the event it goes with: to check for a line,
    /// use `wait_log`.
    pub fn log(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// Waits until the master's stderr holds every one of `needles`; returns
    /// the log, or fails with it after WAIT.
    pub fn wait_log(&self, needles: &[&str]) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let log = self.log();
            if needles.iter().all(|n| log.contains(n)) {
                return log;
            }
            assert!(
                Instant::now() < deadline,
                "no {:?} in the master log:\n{log}",
                needles
                    .iter()
                    .filter(|n| !log.contains(*n))
                    .collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Polls the events until `check` returns something; fails after WAIT.
    pub fn wait_for<T>(&self, check: impl Fn(&[Record]) -> Option<T>) -> T {
        self.wait_for_within(WAIT, check)
    }

    pub fn wait_for_within<T>(&self, limit: Duration, check: impl Fn(&[Record]) -> Option<T>) -> T {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(found) = check(&self.events()) {
                return found;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out waiting on events:\n{}\nmaster log:\n{}",
                    self.events()
                        .iter()
                        .map(|r| format!("{r:?}"))
                        .collect::<Vec<_>>()
                        .join("\n"),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until `n` events that `kind` selects ([`is_ack`],
    /// [`is_spawn`]...) exist; returns them.
    pub fn wait_count(&self, kind: fn(&Event) -> bool, n: usize) -> Vec<Record> {
        self.wait_for(|events| {
            let found: Vec<Record> = events.iter().filter(|r| kind(&r.event)).cloned().collect();
            (found.len() >= n).then_some(found)
        })
    }

    /// Pids of workers spawned and not yet exited.
    pub fn live_workers(&self) -> Vec<i64> {
        live_workers(&self.events())
    }

    /// Runs one command and returns every reply message.
    pub fn command(&self, command: &str, args: &[&str]) -> Vec<String> {
        let mut client = Client::connect(&self.socket()).expect("connect to the command socket");
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let mut messages = Vec::new();
        client
            .run(command, &args, |reply| {
                messages.push(reply["message"].as_str().unwrap_or_default().to_string())
            })
            .expect("a final reply");
        messages
    }

    /// The `state` reply's `:state:`, read as a Rust client would: symbol
    /// keys without their `:`, a Ruby `Set` as the list of its members.
    pub fn state(&self) -> serde_norway::Value {
        let text = self.command("state", &[]).join("");
        let document: serde_norway::Value = serde_norway::from_str(&text)
            .unwrap_or_else(|e| panic!("the state reply is not YAML ({e}):\n{text}"));
        plain(document)["state"].clone()
    }

    pub fn signal(&self, signal: Signal) {
        kill(self.pid(), signal).unwrap();
    }

    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                panic!(
                    "einhorn-sim did not exit within {limit:?}; log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        // Freeze the master so it reaps nothing more: a pid it has not reaped
        // cannot have been reused, so killing it cannot hit another test's
        // process. Workers that reported their own exit are left alone.
        let _ = kill(self.pid(), Signal::SIGSTOP);
        let exited: Vec<i64> = self
            .reports()
            .iter()
            .filter(|r| r.event == WorkerEvent::Exit)
            .map(|r| i64::from(r.pid))
            .collect();
        for pid in live_workers(&self.events()) {
            if !exited.contains(&pid) {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The pid of a record's worker (panics for events about no worker).
/// `value` with Ruby's symbol keys (`:state`) as plain ones and each
/// `!ruby/object:Set` as a list of its members.
fn plain(value: serde_norway::Value) -> serde_norway::Value {
    use serde_norway::Value;
    match value {
        Value::Mapping(map) => Value::Mapping(
            map.into_iter()
                .map(|(k, v)| {
                    let k = match k {
                        Value::String(s) => Value::String(s.trim_start_matches(':').to_string()),
                        other => other,
                    };
                    (k, plain(v))
                })
                .collect(),
        ),
        Value::Sequence(items) => Value::Sequence(items.into_iter().map(plain).collect()),
        Value::Tagged(tagged) if tagged.tag == "!ruby/object:Set" => {
            let members = match &tagged.value["hash"] {
                Value::Mapping(hash) => hash.keys().cloned().collect(),
                _ => Vec::new(),
            };
            Value::Sequence(members)
        }
        other => other,
    }
}

pub fn pid_of(record: &Record) -> i64 {
    i64::from(record.event.pid().expect("an event about a worker"))
}

/// Pids spawned and not exited (the conformance kit's reading of the events).
pub fn live_workers(events: &[Record]) -> Vec<i64> {
    harness::live(events).into_iter().map(i64::from).collect()
}

/// Pids that have ACKed and are still alive.
pub fn live_acked(events: &[Record]) -> Vec<i64> {
    harness::acked(events).into_iter().map(i64::from).collect()
}

impl Sim {
    /// Waits until exactly `pids` have reported receiving `signal` (`USR1`...).
    pub fn wait_worker_signal(&self, signal: &str, pids: &std::collections::BTreeSet<i64>) {
        let deadline = Instant::now() + WAIT;
        loop {
            let got: std::collections::BTreeSet<i64> = self
                .reports()
                .iter()
                .filter(|r| matches!(&r.event, WorkerEvent::Signal { signal: s } if s == signal))
                .map(|r| i64::from(r.pid))
                .collect();
            if &got == pids {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{signal} reached {got:?} of {pids:?}\nreports: {:?}\nlog:\n{}",
                self.reports(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Event selectors for [`Sim::wait_count`]: typed, so a misspelt one does
/// not compile (a misspelt name would only time out).
pub fn is_ack(event: &Event) -> bool {
    matches!(event, Event::Ack { .. })
}

/// A worker was started.
pub fn is_spawn(event: &Event) -> bool {
    matches!(event, Event::Spawn { .. })
}

/// The master signalled a worker.
pub fn is_signal(event: &Event) -> bool {
    matches!(event, Event::Signal { .. })
}

/// A worker exited and was reaped.
pub fn is_exit(event: &Event) -> bool {
    matches!(event, Event::Exit { .. })
}

/// An upgrade was abandoned.
pub fn is_upgrade_abandoned(event: &Event) -> bool {
    matches!(event, Event::UpgradeAbandoned { .. })
}
