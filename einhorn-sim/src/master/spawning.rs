//! Spawning workers: reaping the dead, replenishing the pool (at once, on
//! ACKs, or paced as Einhorn paces), and the ACKs that count them up.

use super::*;

impl Master {
    pub(super) fn reap(&mut self) {
        loop {
            let status = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(status) => status,
            };
            match status {
                WaitStatus::Exited(pid, code) => self.worker_exited(pid.as_raw(), Some(code), None),
                WaitStatus::Signaled(pid, signal, _) => {
                    self.worker_exited(pid.as_raw(), None, Some(signal.as_str()))
                }
                _ => continue,
            }
        }
    }

    /// After a re-exec: workers that are no longer this process's children
    /// (something in between reaped them, such as a `--reexec-as` shell)
    /// are gone, their status unknown.
    pub(super) fn forget_lost_workers(&mut self) {
        for pid in self.pool.pids() {
            // A look that leaves a zombie for reap().
            let look = nix::sys::wait::waitid(
                nix::sys::wait::Id::Pid(Pid::from_raw(pid)),
                WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT,
            );
            if let Err(nix::errno::Errno::ECHILD) = look {
                self.info(&format!(
                    "Worker {pid} exited during the re-exec, and its status was lost"
                ));
                self.worker_exited(pid, None, None);
            }
        }
    }

    fn worker_exited(&mut self, pid: i32, code: Option<i32>, signal: Option<&str>) {
        let Some(worker) = self.pool.remove(pid) else {
            self.error(&format!(
                "Could not find any config for exited child {pid}! This probably indicates a bug in Einhorn."
            ));
            return;
        };
        let quick = worker.spinup_time.elapsed() < Duration::from_secs_f64(self.settings.seconds);
        if worker.acked && worker.unsignaled() && quick {
            self.spinup.last_quick_exit = Some(Instant::now());
        }
        let suffix = if worker.acked {
            ""
        } else {
            self.spinup.deaths_before_ack += 1;
            " before it was ACKed"
        };
        self.upgrade_log(Level::Info, &format!("===> Exited worker {pid}{suffix}"));
        self.events.emit(Event::Exit {
            pid,
            status: code,
            signal: signal.map(str::to_string),
            acked: worker.acked,
            version: worker.version,
            index: worker.index,
        });
        let deaths = self.spinup.deaths_before_ack;
        if self.config.options.watch.is_some()
            && self.upgrade_state.current.is_some()
            && worker.version == self.version
            && deaths >= WATCH_CRASH_LIMIT
        {
            let version = self.version;
            self.abandon_upgrade(
                version,
                &format!("{deaths} workers of version {version} died before their ACK"),
            );
        }
    }

    pub(super) fn replenish(&mut self) {
        if !self.respawn {
            return;
        }
        if self.spinup.last.is_none() {
            self.replenish_immediately();
        } else {
            self.replenish_gradually();
        }
    }

    pub(super) fn replenish_immediately(&mut self) {
        let missing = self.pool.missing(self.version, self.settings.number);
        if missing <= 0 {
            return;
        }
        self.info(&format!("Launching {missing} new workers"));
        for _ in 0..missing {
            self.spawn_worker();
        }
    }

    pub(super) fn spinup_interval(&self) -> f64 {
        (self.settings.seconds * 1.5f64.powi(self.spinup.deaths_before_ack as i32)).min(30.0)
    }

    /// Whether the next spawn waits only for ACKs: manual ACK mode, unless
    /// `--einhorn-pacing`, while no new worker has died before its ACK (nor
    /// an ACKed one within `-s` of its start). After such a death, the `-s`
    /// interval and its backoff apply again, until an ACK breaks the streak.
    pub(super) fn paced_by_acks(&self) -> bool {
        matches!(self.settings.ack_mode, AckMode::Manual)
            && !self.config.options.einhorn_pacing
            && self.spinup.deaths_before_ack == 0
            && self
                .spinup
                .last_quick_exit
                .is_none_or(|t| t.elapsed().as_secs_f64() >= self.settings.seconds)
    }

    /// Starts workers while any are missing and the limits allow
    /// (`--max-unacked`, `--max-upgrade-additional`). Each ACK runs the
    /// loop again, which starts the next ones: no timer is involved.
    pub(super) fn replenish_on_acks(&mut self) {
        while self.paced_by_acks()
            && self.pool.missing(self.version, self.settings.number) > 0
            && self.spinup_blocked().is_none()
        {
            self.debug("Spinning up a new process: the previous new workers have ACKed.");
            self.spawn_worker();
        }
    }

    pub(super) fn replenish_gradually(&mut self) {
        if self.paced_by_acks() {
            self.replenish_on_acks();
            return;
        }
        if self.spinup.timer_armed || self.pool.missing(self.version, self.settings.number) <= 0 {
            return;
        }
        let interval = self.spinup_interval();
        let ago = self
            .spinup
            .last
            .map_or(f64::INFINITY, |t| t.elapsed().as_secs_f64());
        if ago > interval {
            if self.trigger_spinup() {
                let message = format!(
                    "Last spinup was {ago}s ago, and spinup_interval is {interval}s, so spinning up a new process."
                );
                if self.spinup.deaths_before_ack > 0 {
                    let deaths = self.spinup.deaths_before_ack;
                    self.upgrade_log(
                        Level::Info,
                        &format!("{message} (there have been {deaths} consecutive unacked worker deaths)"),
                    );
                } else {
                    self.debug(&message);
                }
                self.spawn_worker();
            }
        } else {
            self.debug(&format!(
                "Last spinup was {ago}s ago, and spinup_interval is {interval}s, so not spinning up a new process."
            ));
        }
        self.spinup.timer_armed = true;
        self.events.emit(Event::RespawnDelay { seconds: interval });
        self.timers.push((
            Instant::now() + Duration::from_secs_f64(interval),
            Timer::Spinup,
        ));
    }

    /// Whether the limits allow a spawn now; logs why not.
    pub(super) fn trigger_spinup(&self) -> bool {
        match self.spinup_blocked() {
            Some(reason) => {
                self.info(&reason);
                false
            }
            None => true,
        }
    }

    /// Why a spawn must wait: too many unacked new workers
    /// (`--max-unacked`), or too many workers during an upgrade
    /// (`--max-upgrade-additional`).
    pub(super) fn spinup_blocked(&self) -> Option<String> {
        let unacked = self.pool.unacked_new(self.version);
        if unacked >= self.settings.max_unacked as usize {
            return Some(format!(
                "There are {unacked} unacked new workers, and max_unacked is {}, so not spinning up a new process.",
                self.settings.max_unacked
            ));
        }
        if let Some(extra) = self.settings.max_upgrade_additional {
            let total = self.pool.workers.len() as i64;
            let capacity = i64::from(self.settings.number) + i64::from(extra);
            if capacity - total < 0 {
                return Some(format!(
                    "Over worker capacity by {} during upgrade, {} new workers of {total} total. Waiting for old workers to exit before spinning up a process.",
                    total - capacity,
                    self.pool.modern(self.version).count()
                ));
            }
        }
        None
    }

    /// `-g`: a connection of the worker's own to the command socket. The
    /// master's copy closes after the fork, and the master serves the
    /// other end as any client.
    fn worker_connection(&self) -> Option<std::os::unix::net::UnixStream> {
        if !self.config.options.command_socket_as_fd {
            return None;
        }
        std::os::unix::net::UnixStream::connect(&self.config.sock_path)
            .map_err(|e| {
                self.error(&format!(
                    "-g: cannot connect to the command socket for a worker: {e}"
                ))
            })
            .ok()
    }

    /// Records a worker just spawned, and its ACK timer and event.
    fn record_spawn(&mut self, pid: i32, index: u32, now: Instant) {
        self.upgrade_log(
            Level::Info,
            &format!("===> Launched {pid} (index: {index})"),
        );
        if self.log.verbosity <= 1 {
            crate::report::line(&format!(
                "[WORKER {pid}] INFO: About to exec {}",
                inspect_argv(&self.program, &self.config.options.command[1..])
            ));
        }
        self.pool.workers.push(Worker {
            pid,
            version: self.version,
            acked: false,
            signaled: Default::default(),
            last_signaled_at: None,
            last_signaled_wall: None,
            index,
            spinup_time: now,
            spinup_wall: SystemTime::now(),
            pinged_at: None,
            pinged_request_id: None,
        });
        self.start_ack_timer(pid, now);
        self.events.emit(Event::Spawn {
            pid,
            index,
            version: self.version,
            program: self.program.display().to_string(),
        });
    }

    /// Spawns one worker at the current version.
    pub(super) fn spawn_worker(&mut self) {
        let index = self.pool.free_index();
        let dropped: &[String] = if self.upgrade_state.drop_env_active {
            &self.config.options.drop_env_var
        } else {
            &[]
        };
        let args = &self.config.options.command[1..];
        let connection = self.worker_connection();
        let spawned = Spawn {
            program: &self.program,
            args,
            master_pid: self.pid,
            sock_path: &self.config.sock_path,
            sockets: &self.sockets,
            index,
            kill_on_master_death: self
                .config
                .options
                .kill_children_on_exit
                .then_some(self.config.options.master_death_signal),
            dropped_env: dropped,
            command_connection: connection.as_ref().map(|c| {
                use std::os::fd::AsRawFd;
                c.as_raw_fd()
            }),
            nice: self.config.options.nice.as_ref().and_then(|n| n.worker),
        }
        .run();
        drop(connection);
        let now = Instant::now();
        self.spinup.last = Some(now);
        self.spinup.last_wall = Some(SystemTime::now());
        let pid = match spawned {
            Ok(pid) => pid as i32,
            Err(e) => {
                // Counts like a worker that died before its ACK, so the
                // respawn backoff applies.
                self.spinup.deaths_before_ack += 1;
                self.upgrade_log(
                    Level::Error,
                    &format!("Could not spawn {}: {e}", self.program.display()),
                );
                self.events.emit(Event::SpawnFailed {
                    error: e.to_string(),
                    version: self.version,
                });
                return;
            }
        };
        self.record_spawn(pid, index, now);
    }

    /// The timer that ACKs a worker (`--ack-timer`), or gives up waiting
    /// for its manual ACK.
    fn start_ack_timer(&mut self, pid: i32, spawned_at: Instant) {
        match &self.settings.ack_mode {
            AckMode::Timer { timeout, .. } => self
                .timers
                .push((spawned_at + *timeout, Timer::Ack(pid, spawned_at))),
            AckMode::Manual => {
                if let Some(limit) = self.config.options.ack_timeout() {
                    self.timers
                        .push((spawned_at + limit, Timer::AckDeadline(pid, spawned_at)));
                }
            }
        }
    }

    pub(super) fn register_ack(&mut self, pid: i32) {
        let count_before = self.spinup.deaths_before_ack;
        let Some(worker) = self.pool.get_mut(pid) else {
            self.error(&format!(
                "Could not find state for PID {pid}; ignoring ACK."
            ));
            return;
        };
        if worker.acked {
            self.error(&format!("Pid {pid} already ACKed; ignoring new ACK."));
            return;
        }
        worker.acked = true;
        self.spinup.deaths_before_ack = 0;
        let streak = if count_before > 0 {
            format!(", breaking the streak of {count_before} consecutive unacked workers dying")
        } else {
            String::new()
        };
        self.info(&format!(
            "Up to {} / {} {} ACKs{streak}",
            self.pool.ack_count(self.version),
            self.settings.number,
            self.settings.ack_mode.name()
        ));
        self.events.emit(Event::Ack { pid });
    }
}
