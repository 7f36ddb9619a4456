//! Upgrades and reloads: starting one, culling the old workers as the new
//! ones come up, finishing or abandoning it, and `--watch` rebuilds.

use super::*;

impl Master {
    /// `--watch`: a rebuild upgrades smoothly. During an upgrade it queues
    /// one more, unless the upgrade in progress is failing (a new worker
    /// died before its ACK): then the new build replaces it at once, as a
    /// second `upgrade` does in Einhorn.
    pub(super) fn on_rebuilt(&mut self, paths: &[std::path::PathBuf]) {
        if !self.respawn {
            return;
        }
        let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        let queued = self.upgrade_state.current.is_some() && self.spinup.deaths_before_ack == 0;
        self.events.emit(Event::Rebuilt {
            paths: names.clone(),
            queued,
        });
        let what = names.join(", ");
        if queued {
            self.upgrade_state.queued = true;
            self.upgrade_log(
                Level::Info,
                &format!("{what} changed during the upgrade: one more upgrade is queued."),
            );
        } else {
            self.upgrade_log(Level::Info, &format!("{what} changed: upgrading."));
            self.upgrade(true);
        }
    }

    pub(super) fn cull(&mut self) {
        let acked = self.pool.ack_count(self.version);
        let unsignaled = self.pool.unsignaled_count(self.version);
        let target = self.settings.number as usize;
        if self.upgrade_state.current.is_some() && acked >= target {
            self.upgrade_state.current = None;
            self.upgrade_log(
                Level::Info,
                &format!(
                    "Upgraded successfully to version {} (Einhorn {EINHORN_VERSION}).",
                    self.version
                ),
            );
            self.events.emit(Event::UpgradeDone {
                version: self.version,
            });
            self.finish_upgrade_streams("Upgrade done");
        }
        let old = self.pool.old(self.version);
        let smooth = self.upgrade_state.current.as_ref().map(|u| u.smooth);
        if smooth.is_none() && !old.is_empty() {
            self.upgrade_log(
                Level::Info,
                &format!("Killing off {} old workers.", old.len()),
            );
            self.signal_all(Signal::SIGUSR2, &old, true);
        } else if smooth == Some(true) {
            let excess = (old.len() + acked) as i64 - target as i64;
            if excess > 0 {
                let victims: Vec<i32> = old.into_iter().take(excess as usize).collect();
                self.upgrade_log(
                    Level::Info,
                    &format!("Smooth upgrade: killing off {excess} old workers."),
                );
                self.signal_all(Signal::SIGUSR2, &victims, true);
            }
        }
        if unsignaled > target {
            let mut candidates: Vec<&Worker> = self
                .pool
                .modern(self.version)
                .filter(|w| w.unsignaled())
                .collect();
            candidates.sort_by_key(|w| w.acked);
            let victims: Vec<i32> = candidates
                .iter()
                .take(unsignaled - target)
                .map(|w| w.pid)
                .collect();
            self.info(&format!(
                "Have too many workers at the current version, so killing off {} of them.",
                victims.len()
            ));
            self.signal_all(Signal::SIGUSR2, &victims, true);
        }
        if self.config.options.signal_timeout.is_some() {
            self.kill_expired_signaled_workers();
        }
    }

    /// Starts a smooth or fleet upgrade: the master re-execs itself (see
    /// [`super::reexec`]), and the new one upgrades the workers.
    pub(super) fn upgrade(&mut self, smooth: bool) {
        self.reload_for(Reexec::Upgrade(smooth));
    }

    /// New workers of a new version, the old ones told to go as the new
    /// ones ACK. PROGRAM is looked up again, so a rebuilt binary is picked
    /// up.
    pub(super) fn upgrade_workers(&mut self, smooth: bool) {
        self.refresh_program();
        self.upgrade_state.last_smooth = smooth;
        // A re-exec'd master already lacks --drop-env-var's names (a
        // --reexec-as wrapper may set them again, as in Einhorn); one that
        // reloads in place drops them from the workers it spawns.
        if !self.config.can_reexec {
            self.upgrade_state.drop_env_active = true;
        }
        let from = if let Some(upgrade) = &mut self.upgrade_state.current {
            upgrade.smooth = smooth;
            let from = upgrade.from;
            let msg = format!(
                "Currently upgrading ({} / {} ACKs; bumping version and starting over)...",
                self.pool.ack_count(self.version),
                self.settings.number
            );
            self.upgrade_log(Level::Info, &msg);
            from
        } else {
            self.upgrade_state.current = Some(Upgrade {
                smooth,
                from: self.version,
            });
            let kind = if smooth { "smooth" } else { "fleet" };
            let msg = format!("Starting {kind} upgrade from version {}...", self.version);
            self.upgrade_log(Level::Info, &msg);
            self.version
        };
        self.spinup.deaths_before_ack = 0;
        self.upgrade_state.last_upgraded = Some(SystemTime::now());
        self.upgrade_state.newest_version += 1;
        self.version = self.upgrade_state.newest_version;
        self.events.emit(Event::UpgradeStart {
            version: self.version,
            from,
            smooth,
        });
        if let Some(limit) = self.config.options.ack_timeout() {
            self.timers.push((
                Instant::now() + limit * 3,
                Timer::UpgradeDeadline(self.version),
            ));
        }
        if smooth {
            self.replenish_gradually();
        } else {
            self.replenish_immediately();
        }
    }

    /// A reload in place, for a master embedded in another program, which
    /// cannot re-exec its process: only the generation is counted.
    pub(super) fn reload(&mut self) {
        self.upgrade_state.generation += 1;
        self.info(&format!(
            "Reloaded in place (generation {}): an embedded master does not re-exec its process",
            self.upgrade_state.generation
        ));
    }

    /// Looks PROGRAM up again, so a rebuilt binary or a changed `PATH` is
    /// picked up.
    fn refresh_program(&mut self) {
        match resolve_program(&self.config.options.command[0]) {
            Ok(program) => self.program = program,
            Err(e) => self.error(&format!(
                "Could not resolve the program again, keeping {}: {e}",
                self.program.display()
            )),
        }
    }

    pub(super) fn finish_upgrade_streams(&mut self, message: &str) {
        for (conn, id) in std::mem::take(&mut self.clients.subscribers) {
            self.send(conn, protocol::reply(message, Some(&id), false));
        }
    }

    /// The new workers could not ACK in time (`--ack-timeout`), or kept
    /// crashing before their ACK (`--watch`): go back to the old version,
    /// keep its workers, and stop the new ones. `why` completes "upgrade
    /// abandoned: ...".
    pub(super) fn abandon_upgrade(&mut self, version: u64, why: &str) {
        let from = match &self.upgrade_state.current {
            Some(upgrade) if self.version == version => upgrade.from,
            _ => return,
        };
        let message = format!("upgrade abandoned: {why}; keeping version {from}");
        self.error(&message);
        self.events.emit(Event::UpgradeAbandoned {
            version,
            kept_version: from,
        });
        self.upgrade_state.current = None;
        self.version = from;
        self.finish_upgrade_streams(&format!("ERROR: {message}"));
        let failed: Vec<i32> = self
            .pool
            .workers
            .iter()
            .filter(|w| w.version == version)
            .map(|w| w.pid)
            .collect();
        if !failed.is_empty() {
            self.signal_all(Signal::SIGKILL, &failed, true);
        }
    }
}
