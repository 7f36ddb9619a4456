//! The master's timers: the next wake-up, and what each timer does when
//! it fires (signal escalation, spin-up and upgrade deadlines).

use super::*;

impl Master {
    pub(super) fn next_wakeup(&self) -> Option<Instant> {
        let timer = self.timers.iter().map(|(at, _)| *at).min();
        let periodic = self
            .config
            .options
            .signal_timeout
            .map(|t| Instant::now() + Duration::from_secs(u64::from(t)));
        match (timer, periodic) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub(super) fn kill_expired_signaled_workers(&mut self) {
        let Some(t) = self.config.options.signal_timeout else {
            return;
        };
        let limit = Duration::from_secs(u64::from(t));
        let expired: Vec<(i32, Duration)> = self
            .pool
            .workers
            .iter()
            .filter(|w| w.signaled.contains("USR2") && !w.signaled.contains("KILL"))
            .filter_map(|w| {
                let ago = w.last_signaled_at?.elapsed();
                (ago >= limit).then_some((w.pid, ago))
            })
            .collect();
        if expired.is_empty() {
            return;
        }
        self.info(&format!(
            "{} expired signaled workers found.",
            expired.len()
        ));
        for (pid, ago) in expired {
            self.upgrade_log(
                Level::Info,
                &format!(
                    "Child {pid} was signaled {}s ago. Sending SIGKILL as it is still active after {t}s timeout.",
                    ago.as_secs()
                ),
            );
            self.escalate_to_kill(pid);
        }
    }

    /// `-t`: SIGKILL for a worker still alive after its graceful signal,
    /// recorded as that signal is (the `KILL` mark stops any further
    /// escalation; `last_signaled_at` is now).
    pub(super) fn escalate_to_kill(&mut self, pid: i32) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        if let Some(w) = self.pool.get_mut(pid) {
            w.signaled.insert("KILL".to_string());
            w.last_signaled_at = Some(Instant::now());
            w.last_signaled_wall = Some(SystemTime::now());
        }
        self.events.emit(Event::Signal {
            pid,
            signal: "SIGKILL".to_string(),
        });
    }

    pub(super) fn fire_timers(&mut self) {
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.timers)
            .into_iter()
            .partition(|(at, _)| *at <= now);
        self.timers = later;
        for (_, timer) in due {
            match timer {
                Timer::Ack(pid, spinup) => {
                    // Already counted: it sent a manual ACK first.
                    if self.pool.get(pid).is_some_and(|w| w.acked) {
                        continue;
                    }
                    if self.pool.get(pid).is_some_and(|w| w.spinup_time == spinup) {
                        if let AckMode::Timer { text, .. } = &self.settings.ack_mode {
                            self.info(&format!(
                                "Worker {pid} has been up for {text}s, so we are considering it alive."
                            ));
                        }
                        self.register_ack(pid);
                    } else {
                        self.debug(&format!("Worker {pid} died before its ACK timer fired"));
                    }
                }
                Timer::AckDeadline(pid, spinup) => {
                    let overdue = self.pool.get(pid).is_some_and(|w| {
                        w.spinup_time == spinup && !w.acked && !w.signaled.contains("KILL")
                    });
                    if overdue {
                        let limit = self.config.options.ack_timeout().unwrap_or_default();
                        self.upgrade_log(
                            Level::Error,
                            &format!(
                                "Worker {pid} did not ACK within {}s; killing it.",
                                limit.as_secs_f64()
                            ),
                        );
                        self.signal_all(Signal::SIGKILL, &[pid], true);
                    }
                }
                Timer::Spinup => {
                    self.spinup.timer_armed = false;
                    self.replenish();
                }
                Timer::SignalTimeout(targets) => {
                    let t = self.config.options.signal_timeout.unwrap_or_default();
                    for (pid, spinup) in targets {
                        match self.pool.get(pid) {
                            Some(w) if w.spinup_time == spinup => {
                                if w.signaled.contains("KILL") {
                                    continue;
                                }
                                self.info(&format!("Child {pid} is still active after {t}s. Sending SIGKILL."));
                                self.escalate_to_kill(pid);
                            }
                            Some(_) => self.info(&format!(
                                "Different spinup time recorded for {pid} after {t}s. This probably indicates a PID rollover."
                            )),
                            None => {}
                        }
                    }
                }
                Timer::UpgradeDeadline(version) => {
                    let limit = self.config.options.ack_timeout().unwrap_or_default() * 3;
                    let why = format!(
                        "the workers of version {version} did not ACK within {}s",
                        limit.as_secs_f64()
                    );
                    self.abandon_upgrade(version, &why);
                }
            }
        }
    }
}
