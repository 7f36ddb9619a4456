//! The `einhorn-sim` command line, option for option as Einhorn's, plus the
//! simulator's own additions (`--ack-timeout`, `--events`).

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::bind::BindSpec;

/// How workers report that they are ready.
#[derive(Debug, Clone, PartialEq)]
pub enum AckMode {
    /// Alive after this long; `text` is the value as Einhorn prints it.
    Timer {
        /// How long until a worker counts as acked.
        timeout: Duration,
        /// Ruby's rendering of the value (`1` for the default, `1.0` for `-m 1`).
        text: String,
    },
    /// Workers send `worker:ack` on the command socket.
    Manual,
}

impl AckMode {
    /// Ruby's `inspect` of Einhorn's ack_mode hash, as its log lines show it.
    pub fn inspect(&self) -> String {
        match self {
            AckMode::Timer { text, .. } => format!("{{:type=>:timer, :timeout=>{text}}}"),
            AckMode::Manual => "{:type=>:manual}".to_string(),
        }
    }

    /// The word in `Up to A / N MODE ACKs`.
    pub fn name(&self) -> &'static str {
        match self {
            AckMode::Timer { .. } => "timer",
            AckMode::Manual => "manual",
        }
    }
}

fn parse_ack_mode(text: &str) -> Result<AckMode, String> {
    if text == "manual" {
        return Ok(AckMode::Manual);
    }
    match text.parse::<f64>() {
        Ok(seconds) if seconds.is_finite() && seconds >= 0.0 => Ok(AckMode::Timer {
            timeout: Duration::from_secs_f64(seconds),
            text: format!("{seconds:?}"),
        }),
        _ => Err(format!(
            "invalid ack-mode {text:?} (valid modes: FLOAT or manual)"
        )),
    }
}

fn parse_positive_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 => Ok(s),
        _ => Err(format!(
            "{text:?} is not a number of seconds greater than 0"
        )),
    }
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    parse_positive_seconds(text).map(Duration::from_secs_f64)
}

/// `--nice`: the master's and the workers' nice levels, and the command
/// that renices the master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nice {
    /// The master's level, if given.
    pub master: Option<i32>,
    /// The workers' level, if given.
    pub worker: Option<i32>,
    /// What renices the master: `/usr/bin/renice` by default.
    pub renice_cmd: String,
}

impl Nice {
    /// Einhorn's `MASTER[:WORKER][:RENICE_CMD]`: whole numbers (empty
    /// parts are not given).
    pub fn parse(text: &str) -> Result<Nice, String> {
        let mut parts = text.splitn(3, ':');
        let level = |part: Option<&str>| -> Result<Option<i32>, String> {
            match part.map(str::trim) {
                None | Some("") => Ok(None),
                Some(n) => n.parse().map(Some).map_err(|_| {
                    format!("{n:?} is not a nice level (a whole number, as in MASTER[:WORKER][:RENICE_CMD])")
                }),
            }
        };
        Ok(Nice {
            master: level(parts.next())?,
            worker: level(parts.next())?,
            renice_cmd: parts
                .next()
                .filter(|c| !c.is_empty())
                .unwrap_or("/usr/bin/renice")
                .to_string(),
        })
    }
}

/// A command line in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Words(pub Vec<String>);

/// `--reexec-as`'s command line in words, split as Einhorn splits it
/// (Ruby's `Shellwords`: quotes group, a backslash escapes).
pub fn parse_words(text: &str) -> Result<Words, String> {
    match crate::client::shell_words(text) {
        None => Err(format!("{text:?} has an unterminated quote")),
        Some(words) if words.is_empty() => Err("an empty command line".to_string()),
        Some(words) => Ok(Words(words)),
    }
}

fn parse_count(text: &str) -> Result<u32, String> {
    match text.parse::<u32>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("{text:?} is not a whole number from 1 up")),
    }
}

/// A pure-Rust Einhorn master: runs N copies of PROGRAM on shared sockets.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "einhorn-sim",
    version = concat!(env!("CARGO_PKG_VERSION"), " (Einhorn 1.1.1 compatible)"),
    about,
    long_about = None
)]
pub struct Options {
    /// The `-b` sockets to bind and pass to the workers.
    #[arg(
        short = 'b',
        long = "bind",
        value_name = "ADDR",
        value_parser = BindSpec::parse,
        help = "Bind ADDR:PORT[,r][,n] ([V6]:PORT and unix:PATH too) and pass the fd to workers"
    )]
    pub bind: Vec<BindSpec>,

    /// Command name: names the default socket, pid and lock files
    #[arg(short = 'c', long = "command-name", value_name = "CMD_NAME")]
    pub command_name: Option<String>,

    /// Where to open the command socket
    #[arg(short = 'd', long = "socket-path", value_name = "PATH")]
    pub socket_path: Option<PathBuf>,

    /// Where to write the pidfile
    #[arg(short = 'e', long = "pidfile", value_name = "PIDFILE")]
    pub pidfile: Option<PathBuf>,

    /// Where to keep the lockfile
    #[arg(short = 'f', long = "lockfile", value_name = "LOCKFILE")]
    pub lockfile: Option<PathBuf>,

    /// Give each worker a connection to the command socket, its descriptor
    /// in EINHORN_SOCK_FD, so it can ACK without knowing the socket's path
    #[arg(short = 'g', long = "command-socket-as-fd")]
    pub command_socket_as_fd: bool,

    /// Nice levels, `MASTER[:WORKER][:RENICE_CMD]`: the master runs
    /// `RENICE_CMD` (default `/usr/bin/renice`) on itself at start; each
    /// worker gets its level before it execs.
    #[arg(
        long = "nice",
        value_name = "MASTER[:WORKER][:RENICE_CMD]",
        value_parser = Nice::parse,
        help = "Nice levels: the master runs RENICE_CMD (default /usr/bin/renice) on itself at start; each worker gets its level before it execs"
    )]
    pub nice: Option<Nice>,

    /// Accepted as Einhorn accepts it: it matters only for Ruby code
    /// preloaded into the master, which einhorn-sim never has
    #[arg(long = "gc-before-fork")]
    pub gc_before_fork: bool,

    /// Send USR2 to the workers when the master exits (and if it dies: PDEATHSIG)
    #[arg(short = 'k', long = "kill-children-on-exit")]
    pub kill_children_on_exit: bool,

    /// The signal `-k` workers get from the kernel if the master dies
    /// (PDEATHSIG): SIGUSR2 as in Einhorn. Not a flag: the conformance kit
    /// sets SIGKILL, since the program it tests may ignore SIGUSR2.
    #[arg(skip = nix::sys::signal::Signal::SIGUSR2)]
    pub master_death_signal: nix::sys::signal::Signal,

    /// Listen backlog of bound sockets
    #[arg(short = 'l', long = "backlog", value_name = "N", default_value_t = 100)]
    pub backlog: i32,

    /// ACK mode: FLOAT (seconds until a worker counts as alive) or manual
    #[arg(short = 'm', long = "ack-mode", value_name = "MODE", value_parser = parse_ack_mode)]
    pub ack_mode: Option<AckMode>,

    /// Number of workers
    #[arg(short = 'n', long = "number", value_name = "N", value_parser = parse_count, default_value = "1")]
    pub number: u32,

    /// Quieter logs (repeatable)
    #[arg(short = 'q', long = "quiet", action = clap::ArgAction::Count)]
    pub quiet: u8,

    /// Louder logs (repeatable)
    #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Base respawn interval in seconds [default: 1]
    #[arg(short = 's', long = "seconds", value_name = "N", value_parser = parse_positive_seconds)]
    pub seconds: Option<f64>,

    /// Escalate to SIGKILL T seconds after a graceful signal
    #[arg(short = 't', long = "signal-timeout", value_name = "T", value_parser = parse_count)]
    pub signal_timeout: Option<u32>,

    /// Space respawns and smooth-upgrade spawns by -s, as Einhorn does. By
    /// default, in manual ACK mode, the next worker starts as soon as the
    /// previous new ones have ACKed (within --max-unacked), and -s with its
    /// backoff applies only after a worker died before its ACK
    #[arg(long = "einhorn-pacing")]
    pub einhorn_pacing: bool,

    /// Start a smooth upgrade when PROGRAM's executable, or any PATH given
    /// (a directory counts with everything under it), changes and then
    /// stays unchanged for 300 ms. Put `--` before PROGRAM
    #[arg(long = "watch", value_name = "PATH", num_args = 0..)]
    pub watch: Option<Vec<PathBuf>>,

    /// Most unacked new workers before spawning pauses (default: CPU count)
    #[arg(long = "max-unacked", value_name = "N", value_parser = parse_count)]
    pub max_unacked: Option<u32>,

    /// Most extra workers alive during an upgrade
    #[arg(long = "max-upgrade-additional", value_name = "N")]
    pub max_upgrade_additional: Option<u32>,

    /// Remove VAR from the environment of workers spawned after an upgrade
    #[arg(long = "drop-env-var", value_name = "VAR_NAME")]
    pub drop_env_var: Vec<String>,

    /// Manual mode: kill a worker that has not ACKed after T seconds, and
    /// abandon an upgrade whose workers cannot ACK within 3 × T
    #[arg(long = "ack-timeout", value_name = "T", value_parser = parse_duration)]
    pub ack_timeout: Option<Duration>,

    /// Let members of GROUP use the command socket (mode 0660) instead of only its owner (0600)
    #[arg(long = "command-socket-group", value_name = "GROUP")]
    pub command_socket_group: Option<String>,

    /// Append one JSON line per lifecycle event to FILE
    #[arg(long = "events", value_name = "FILE")]
    pub events: Option<PathBuf>,

    /// Einhorn's `-p`: Ruby code loaded into the master. Parsed only to be
    /// refused with a message that says so (see [`Options::refusal`]).
    #[arg(short = 'p', long = "preload", value_name = "PATH", hide = true)]
    pub preload: Option<String>,

    /// What to exec when the master re-execs itself (each `upgrade` and
    /// `reload`), instead of einhorn-sim's own executable: a command line,
    /// split into words as a shell would (a wrapper that sets the
    /// environment, say)
    #[arg(long = "reexec-as", value_name = "CMDLINE", value_parser = parse_words)]
    pub reexec_as: Option<Words>,

    /// Internal: the re-exec'd master's state comes from this descriptor.
    #[arg(long = "with-state-fd", value_name = "FD", hide = true)]
    pub with_state_fd: Option<i32>,

    /// Einhorn's internal `--upgrade-check`: says what runs and exits 0,
    /// so a master about to re-exec can check that the new one starts.
    #[arg(long = "upgrade-check", hide = true)]
    pub upgrade_check: bool,

    /// The worker command. Options end at its first word (or at `--`), as
    /// in Einhorn: everything after it is the program's own.
    #[arg(
        value_name = "PROGRAM",
        trailing_var_arg = true,
        required_unless_present_any = ["upgrade_check", "with_state_fd"]
    )]
    pub command: Vec<String>,
}

/// Einhorn's short usage, printed on stdout when no PROGRAM is given (as
/// Einhorn prints its `## Usage`, which its own suite checks for).
pub const SHORT_USAGE: &str = "## Usage

einhorn-sim is an Einhorn master written in Rust: it opens shared
sockets and runs copies of your program on them. Run `einhorn-sim -h`
to see every option.

    einhorn-sim [options] [--] PROGRAM [ARGS...]
";

/// `--ack-timeout` under `--watch` when none is given.
pub const WATCH_ACK_TIMEOUT: Duration = Duration::from_secs(10);

impl Options {
    /// Why this command line cannot run although it parsed: Einhorn's
    /// options that need Ruby.
    pub fn refusal(&self) -> Option<String> {
        self.preload.as_ref().map(|path| {
            format!(
                "-p/--preload {path:?} loads Ruby code into an Einhorn master, and einhorn-sim runs no \
                 Ruby: give your program itself as PROGRAM (einhorn-sim [options] -- PROGRAM [ARGS...])"
            )
        })
    }

    /// The ACK mode; Einhorn's default is a timer of (integer) 1 second.
    pub fn ack_mode(&self) -> AckMode {
        self.ack_mode.clone().unwrap_or(AckMode::Timer {
            timeout: Duration::from_secs(1),
            text: "1".to_string(),
        })
    }

    /// `--ack-timeout`; with `--watch`, 10 s when not given, so that a
    /// build whose workers never ACK is abandoned (after 3 × 10 s).
    pub fn ack_timeout(&self) -> Option<Duration> {
        self.ack_timeout
            .or_else(|| self.watch.is_some().then_some(WATCH_ACK_TIMEOUT))
    }

    /// Einhorn's verbosity: 0 = DEBUG, 1 = INFO (default), 2 = ERROR only.
    pub fn verbosity(&self) -> u8 {
        (1 + i16::from(self.quiet) - i16::from(self.verbose)).clamp(0, 2) as u8
    }

    /// Where the command socket, pidfile and lockfile go by default:
    /// `$TMPDIR/einhorn[-NAME].EXT`.
    pub fn default_path(&self, extension: &str) -> PathBuf {
        let dir = std::env::var_os("TMPDIR")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/tmp"));
        let name = match &self.command_name {
            Some(name) => format!("einhorn-{name}.{extension}"),
            None => format!("einhorn.{extension}"),
        };
        dir.join(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reexec_as_is_split_as_a_shell_splits_it() {
        assert_eq!(
            parse_words(r#"env VAR='a b' X="q\"q" y\ z einhorn-sim"#)
                .unwrap()
                .0,
            ["env", "VAR=a b", "X=q\"q", "y z", "einhorn-sim"]
        );
        assert!(parse_words("'open").is_err());
        assert!(parse_words("   ").is_err());
    }

    #[test]
    fn nice_levels_are_read_as_einhorn_reads_them() {
        let nice = Nice::parse("5:10:/bin/renice").unwrap();
        assert_eq!(
            (nice.master, nice.worker, nice.renice_cmd.as_str()),
            (Some(5), Some(10), "/bin/renice")
        );
        let nice = Nice::parse("3").unwrap();
        assert_eq!(
            (nice.master, nice.worker, nice.renice_cmd.as_str()),
            (Some(3), None, "/usr/bin/renice")
        );
        assert_eq!(Nice::parse(":7").unwrap().worker, Some(7));
        assert!(Nice::parse("high").is_err());
    }

    #[test]
    fn options_end_where_the_program_starts() {
        let o =
            Options::try_parse_from(["einhorn-sim", "-n", "2", "prog", "-n", "3", "--x"]).unwrap();
        assert_eq!(o.number, 2);
        assert_eq!(o.command, ["prog", "-n", "3", "--x"]);
        let unknown =
            Options::try_parse_from(["einhorn-sim", "--nubmer", "3", "prog"]).unwrap_err();
        assert_eq!(unknown.kind(), clap::error::ErrorKind::UnknownArgument);
    }

    #[test]
    fn parses_einhorn_style_command_lines() {
        let o = Options::try_parse_from([
            "einhorn-sim",
            "-n",
            "4",
            "-m",
            "manual",
            "-b",
            "127.0.0.1:0,r",
            "-q",
            "--",
            "prog",
            "-x",
            "--y",
        ])
        .unwrap();
        assert_eq!(o.number, 4);
        assert_eq!(o.ack_mode(), AckMode::Manual);
        assert_eq!(o.command, vec!["prog", "-x", "--y"]);
        assert_eq!(o.verbosity(), 2);
        // --watch takes PATHs up to `--`, or none.
        let o = Options::try_parse_from(["e", "--watch", "--", "prog"]).unwrap();
        assert_eq!(
            (o.watch, o.command),
            (Some(vec![]), vec!["prog".to_string()])
        );
        let o = Options::try_parse_from(["e", "--watch", "a", "b", "-n", "2", "--", "p"]).unwrap();
        assert_eq!(o.watch, Some(vec![PathBuf::from("a"), PathBuf::from("b")]));
        assert_eq!((o.number, o.ack_timeout()), (2, Some(WATCH_ACK_TIMEOUT)));
        // Parsing stops at the first word that is not an option.
        let o = Options::try_parse_from(["einhorn-sim", "prog", "-n", "3"]).unwrap();
        assert_eq!((o.number, o.command.len()), (1, 3));
        assert_eq!(
            Options::try_parse_from(["e", "-m", "1", "p"])
                .unwrap()
                .ack_mode()
                .inspect(),
            "{:type=>:timer, :timeout=>1.0}"
        );
        assert_eq!(
            Options::try_parse_from(["e", "p"])
                .unwrap()
                .ack_mode()
                .inspect(),
            "{:type=>:timer, :timeout=>1}"
        );
        assert!(Options::try_parse_from(["e", "-m", "soon", "p"]).is_err());
        assert!(Options::try_parse_from(["e", "-n", "0", "p"]).is_err());
    }
}
