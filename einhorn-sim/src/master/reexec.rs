//! The master re-execs itself on `reload` and before each upgrade, as
//! Einhorn does, so a new einhorn-sim binary (or what `--reexec-as`
//! names) takes over the same pid: the `-b` sockets, the command socket,
//! its client connections and the workers (still this process's
//! children) all carry over, and the state goes along through a memfd
//! ([`super::handover`]).
//!
//! The new master must first pass `--upgrade-check`. A re-exec that cannot
//! happen (that check fails, or `exec` does) leaves this master running
//! with everything as it was, says why in one ERROR line, and ends an
//! upgrade's stream with it. The master's signals are blocked across the
//! exec, so one sent meanwhile waits for the new master.

use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::os::unix::ffi::OsStrExt;

use std::path::Path;

use nix::fcntl::{fcntl, FcntlArg, FdFlag};

use super::handover::{ClientState, Handover};
use super::*;

/// How long the new master's `--upgrade-check` may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// How long replies already queued may take to reach their clients before
/// the exec.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(1);

/// How many times the clients are settled before an exec at most.
const SETTLE_ROUNDS: usize = 50;

/// The most unread command bytes passed to the new master, all clients
/// together (a line may be up to 1 MiB): the clients holding the most are
/// left out past it, and lose their connection with the exec.
const MAX_UNREAD_PASSED: usize = 8 << 20;

/// What a re-exec is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reexec {
    /// `reload`: the new master carries on.
    Reload,
    /// An upgrade, smooth or not, which the new master starts.
    Upgrade(bool),
}

impl Master {
    /// Einhorn's reload: re-exec, then (for an upgrade) upgrade the
    /// workers in the new master. A master embedded in another program
    /// cannot re-exec it: it reloads in place.
    pub(super) fn reload_for(&mut self, why: Reexec) {
        if !self.config.can_reexec {
            self.reload();
            if let Reexec::Upgrade(smooth) = why {
                self.upgrade_workers(smooth);
            }
            return;
        }
        // An upgrade asked for while a re-exec is pending is the same one.
        self.pending_reexec = Some(match (self.pending_reexec, why) {
            (Some(Reexec::Upgrade(_)), Reexec::Reload) => self.pending_reexec.unwrap_or(why),
            _ => why,
        });
    }

    /// Runs the pending re-exec; returns only if it could not happen.
    /// `inputs` are the connections' messages, handled up to the exec.
    pub(super) async fn reexec(&mut self, why: Reexec, inputs: &mut UnboundedReceiver<Input>) {
        if !self.respawn {
            self.info("Not reloading einhorn because we're exiting");
            self.reexec_failed(why, "the master is shutting down");
            return;
        }
        let mut command = self.reexec_command();
        self.info(&format!(
            "Reloading einhorn master ({})...",
            command.join(" ")
        ));
        if let Err(e) = self.upgrade_check(&command).await {
            self.error(&format!(
                "Can not initiate einhorn master reload safely, aborting: {e}"
            ));
            self.reexec_failed(why, &format!("the new master failed --upgrade-check: {e}"));
            return;
        }
        self.settle_clients(inputs).await;
        // From here to the exec nothing awaits: no connection is accepted,
        // and no reply queued, that the handover would miss.
        self.upgrade_state.generation += 1;
        let upgrade_after = match why {
            Reexec::Upgrade(smooth) => Some(smooth),
            Reexec::Reload => None,
        };
        // What the watcher saw, then the rebuilds it sent before that: a
        // change after this point is one the new master finds.
        let watch = self.config.watch.as_ref().map(crate::watch::Watch::carry);
        self.take_inputs(inputs);
        let handover = Handover::of(self, self.kept_clients(), upgrade_after, watch);
        let error = match handover.to_memfd() {
            Ok(state) => {
                command.push("--with-state-fd".into());
                command.push(state.as_raw_fd().to_string());
                command.push("--".into());
                command.push(self.program.display().to_string());
                command.extend(self.config.options.command[1..].iter().cloned());
                self.info(&format!(
                    "About to re-exec einhorn master as {}",
                    inspect_argv(Path::new(&command[0]), &command[1..])
                ));
                let kept = handover.descriptors(&state);
                self.exec(&command, &kept)
            }
            Err(e) => format!("cannot write the state: {e}"),
        };
        self.upgrade_state.generation -= 1;
        self.error(&format!(
            "Could not reload! Attempting to continue. Error was: {error}"
        ));
        self.reexec_failed(why, &format!("could not re-exec the master: {error}"));
    }

    /// `--reexec-as`'s words, or the executable this master first ran as
    /// (the same path picks up a rebuilt einhorn-sim).
    fn reexec_command(&self) -> Vec<String> {
        match &self.config.options.reexec_as {
            Some(words) => words.0.clone(),
            None => vec![self.config.exe.display().to_string()],
        }
    }

    /// The environment the new master gets: this one's, without
    /// `--drop-env-var`'s names (as Einhorn restores it).
    fn reexec_environment(&self) -> Vec<(std::ffi::OsString, std::ffi::OsString)> {
        let dropped = &self.config.options.drop_env_var;
        std::env::vars_os()
            .filter(|(name, _)| !dropped.iter().any(|d| name.as_bytes() == d.as_bytes()))
            .collect()
    }

    /// Runs `command --upgrade-check`: it must exit 0 within the timeout.
    async fn upgrade_check(&self, command: &[String]) -> Result<(), String> {
        let mut check = tokio::process::Command::new(&command[0]);
        check
            .args(&command[1..])
            .arg("--upgrade-check")
            .env_clear()
            .envs(self.reexec_environment())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true);
        let mut child = check
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", command[0]))?;
        match tokio::time::timeout(CHECK_TIMEOUT, child.wait()).await {
            Ok(Ok(status)) if status.success() => Ok(()),
            Ok(Ok(status)) => Err(format!("{} {status}", command[0])),
            Ok(Err(e)) => Err(format!("cannot wait for {}: {e}", command[0])),
            Err(_) => {
                let _ = child.kill().await;
                Err(format!(
                    "{} did not answer within {CHECK_TIMEOUT:?}",
                    command[0]
                ))
            }
        }
    }

    /// Handles what the connections did so far (new connections, closes;
    /// command lines wait for the new master) and writes out every reply,
    /// until nothing more has come in: a
    /// client then loses nothing in the exec. Bounded, so a flood of
    /// clients cannot hold the re-exec off.
    async fn settle_clients(&mut self, inputs: &mut UnboundedReceiver<Input>) {
        for _ in 0..SETTLE_ROUNDS {
            self.take_inputs(inputs);
            self.flush_clients().await;
            if inputs.is_empty() {
                return;
            }
        }
    }

    /// Handles the inputs queued so far; command lines wait for the new
    /// master.
    fn take_inputs(&mut self, inputs: &mut UnboundedReceiver<Input>) {
        while let Ok(input) = inputs.try_recv() {
            match input {
                // Commands sent after the one that asked for the exec are
                // the new master's, as in Einhorn.
                Input::Line(conn, request) => self.deferred_lines.push((conn, request)),
                other => self.on_input(other),
            }
        }
    }

    /// Waits (within a bound) until every client's queued replies are
    /// written, so that none is lost in the exec.
    async fn flush_clients(&self) {
        let deadline = Instant::now() + FLUSH_TIMEOUT;
        while Instant::now() < deadline
            && self
                .clients
                .connections
                .values()
                .any(|c| c.pending.load(Ordering::Relaxed) > 0)
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The client connections to keep: those whose descriptor is still the
    /// socket accepted (a connection closing meanwhile frees its number),
    /// with what they sent that was not run yet, within
    /// [`MAX_UNREAD_PASSED`].
    fn kept_clients(&self) -> Vec<ClientState> {
        let kept: Vec<ClientState> = self
            .clients
            .connections
            .iter()
            .filter(|(_, c)| crate::command_server::inode(c.fd) == Some(c.inode))
            .map(|(id, c)| ClientState {
                id: *id,
                fd: c.fd,
                peer: self.clients.peers.get(id).cloned().unwrap_or_default(),
                unread: c.unread.lock().map_or_else(
                    |e| e.into_inner().unread().to_vec(),
                    |r| r.unread().to_vec(),
                ),
            })
            .collect();
        within_budget(kept, MAX_UNREAD_PASSED)
    }

    /// Execs `command`, keeping `kept` open; returns why it failed.
    fn exec(&self, command: &[String], kept: &[RawFd]) -> String {
        let to_c = |bytes: &[u8]| {
            CString::new(bytes).map_err(|_| "a NUL byte in the command line".to_string())
        };
        let argv: Result<Vec<CString>, String> =
            command.iter().map(|w| to_c(w.as_bytes())).collect();
        let env: Result<Vec<CString>, String> = self
            .reexec_environment()
            .iter()
            .map(|(k, v)| to_c(&[k.as_bytes(), b"=", v.as_bytes()].concat()))
            .collect();
        let (argv, env) = match (argv, env) {
            (Ok(argv), Ok(env)) => (argv, env),
            (Err(e), _) | (_, Err(e)) => return e,
        };
        signals::block();
        set_close_on_exec(kept, false);
        let error = nix::unistd::execvpe(&argv[0], &argv, &env)
            .map_or_else(|e| e.desc().to_string(), |never| match never {});
        set_close_on_exec(kept, true);
        signals::unblock();
        error
    }

    /// A re-exec did not happen: an upgrade's clients hear why, the
    /// upgrade does not start, and the commands held for the new master
    /// run here.
    fn reexec_failed(&mut self, why: Reexec, reason: &str) {
        if let Reexec::Upgrade(_) = why {
            self.finish_upgrade_streams(&format!("ERROR: not upgrading: {reason}"));
        }
        for (conn, request) in std::mem::take(&mut self.deferred_lines) {
            self.on_input(Input::Line(conn, request));
        }
    }
}

/// The clients whose unread bytes fit in `budget` together, those holding
/// the least first; in connection order.
fn within_budget(mut clients: Vec<ClientState>, mut budget: usize) -> Vec<ClientState> {
    clients.sort_by_key(|c| c.unread.len());
    clients.retain(|c| {
        let fits = c.unread.len() <= budget;
        budget -= c.unread.len().min(budget);
        fits
    });
    clients.sort_by_key(|c| c.id);
    clients
}

fn set_close_on_exec(fds: &[RawFd], on: bool) {
    for &fd in fds {
        // SAFETY: only the descriptor's flags change; each is open and owned
        // by this master for its whole life.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let flag = if on {
            FdFlag::FD_CLOEXEC
        } else {
            FdFlag::empty()
        };
        let _ = fcntl(fd, FcntlArg::F_SETFD(flag));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(id: ConnId, unread: usize) -> ClientState {
        ClientState {
            id,
            fd: 0,
            peer: String::new(),
            unread: vec![b'x'; unread],
        }
    }

    #[test]
    fn the_clients_holding_the_most_unread_bytes_are_left_out_past_the_budget() {
        let clients = vec![client(1, 600), client(2, 0), client(3, 500), client(4, 100)];
        let kept: Vec<ConnId> = within_budget(clients, 1000).iter().map(|c| c.id).collect();
        assert_eq!(kept, [2, 3, 4]);
        let all: Vec<ConnId> = within_budget(vec![client(1, 5), client(2, 5)], 10)
            .iter()
            .map(|c| c.id)
            .collect();
        assert_eq!(all, [1, 2]);
    }
}
