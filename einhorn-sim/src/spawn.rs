//! Starting workers: real children of the master, each in its own process
//! group, with the listening sockets at their master fd numbers and the
//! `EINHORN_*` environment.

use std::ffi::OsString;
use std::os::fd::{BorrowedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::unistd::{getppid, setpgid, Pid};

use crate::bind::BoundSocket;

/// Finds PROGRAM: a path with `/` must exist; a bare name is looked up on
/// `PATH`, then next to the running executable (so a build directory works
/// without installing).
pub fn resolve_program(name: &str) -> Result<PathBuf, String> {
    if name.contains('/') {
        let path = PathBuf::from(name);
        return if path.exists() {
            Ok(path)
        } else {
            Err(format!("could not find {name}"))
        };
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    let beside_us = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf));
    on_path
        .into_iter()
        .chain(beside_us)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
        .ok_or_else(|| format!("could not find {name} in PATH or next to einhorn-sim"))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Everything a spawn needs.
pub struct Spawn<'a> {
    /// The resolved program.
    pub program: &'a Path,
    /// Its arguments.
    pub args: &'a [String],
    /// Our pid (`EINHORN_MASTER_PID`).
    pub master_pid: u32,
    /// The command socket path, as configured (`EINHORN_SOCK_PATH`).
    pub sock_path: &'a Path,
    /// The `-b` sockets, in order.
    pub sockets: &'a [BoundSocket],
    /// `EINHORN_CHILD_INDEX`.
    pub index: u32,
    /// `-k`: the signal the worker gets if the master dies (PDEATHSIG).
    pub kill_on_master_death: Option<Signal>,
    /// Variables removed from the worker's environment (`--drop-env-var` after an upgrade).
    pub dropped_env: &'a [String],
    /// `-g`: the worker's own connection to the command socket
    /// (`EINHORN_SOCK_FD`).
    pub command_connection: Option<RawFd>,
    /// `--nice`'s worker level, set before the exec.
    pub nice: Option<i32>,
}

impl Spawn<'_> {
    /// Forks and execs the worker; returns its pid.
    pub fn run(&self) -> std::io::Result<u32> {
        let mut command = Command::new(self.program);
        command.args(self.args);
        // Stale EINHORN_* values from our own environment would mislead the worker.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("EINHORN_") {
                command.env_remove(&key);
            }
        }
        for name in self.dropped_env {
            command.env_remove(name);
        }
        command
            .env("EINHORN_MASTER_PID", self.master_pid.to_string())
            .env("EINHORN_SOCK_PATH", self.sock_path)
            .env("EINHORN_FD_COUNT", self.sockets.len().to_string())
            .env("EINHORN_CHILD_INDEX", self.index.to_string());
        for (i, socket) in self.sockets.iter().enumerate() {
            command.env(format!("EINHORN_FD_{i}"), socket.raw_fd().to_string());
            if socket.family != "AF_INET" {
                command.env(format!("EINHORN_FD_FAMILY_{i}"), socket.family);
            }
        }
        if let Some(fd) = self.command_connection {
            command.env("EINHORN_SOCK_FD", fd.to_string());
        }
        let fds: Vec<RawFd> = self
            .sockets
            .iter()
            .map(BoundSocket::raw_fd)
            .chain(self.command_connection)
            .collect();
        let nice = self.nice;
        let kill_on_master_death = self.kill_on_master_death;
        let master = Pid::from_raw(self.master_pid as i32);
        // SAFETY: between fork and exec only async-signal-safe calls are made
        // (setpgid, sigprocmask, sigaction, fcntl, setpriority, prctl,
        // getppid), and
        // nothing allocates: the master may be embedded in a threaded
        // program (the conformance kit), where a child that allocates can
        // deadlock on an allocator lock another thread held at the fork.
        // Every error is a raw errno (`io::Error` of an OS code allocates
        // nothing), which std sends to the parent through its exec pipe.
        unsafe {
            command.pre_exec(move || {
                setpgid(Pid::from_raw(0), Pid::from_raw(0))?;
                // Workers start with no signal blocked or ignored, whatever
                // the master inherited (nohup, a shell's background job, an
                // embedding program's blocked set).
                SigSet::empty().thread_set_mask()?;
                for signal in Signal::iterator() {
                    if !matches!(signal, Signal::SIGKILL | Signal::SIGSTOP) {
                        let default =
                            SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
                        let _ = sigaction(signal, &default);
                    }
                }
                for &fd in &fds {
                    fcntl(
                        BorrowedFd::borrow_raw(fd),
                        FcntlArg::F_SETFD(FdFlag::empty()),
                    )?;
                }
                if let Some(level) = nice {
                    // What `renice LEVEL -p PID` does, without a command.
                    if nix::libc::setpriority(nix::libc::PRIO_PROCESS, 0, level) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                if let Some(signal) = kill_on_master_death {
                    nix::sys::prctl::set_pdeathsig(signal)?;
                    if getppid() != master {
                        return Err(master_gone());
                    }
                }
                Ok(())
            });
        }
        command.spawn().map(|child| child.id())
    }
}

/// The error of a child whose master exited before it could exec: a raw
/// errno (ESRCH), so making it allocates nothing after fork.
fn master_gone() -> std::io::Error {
    std::io::Error::from_raw_os_error(nix::errno::Errno::ESRCH as i32)
}

/// Ruby's `inspect` of the worker's argv, for the `About to exec` line.
pub fn inspect_argv(program: &Path, args: &[String]) -> String {
    let words: Vec<String> = std::iter::once(OsString::from(program))
        .map(|p| p.to_string_lossy().into_owned())
        .chain(args.iter().cloned())
        .map(|w| format!("{w:?}"))
        .collect();
    format!("[{}]", words.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_errors_are_raw_errno_values() {
        let e = master_gone();
        assert_eq!(e.raw_os_error(), Some(nix::errno::Errno::ESRCH as i32));
    }
}
