//! The master's pidfile and lockfile in a shared directory: beside the
//! command socket when `-d` is given, never written through a symlink, never
//! one another user owns, and both removed at exit.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Runs einhorn-sim with `args` (then `-- true`-like worker) expecting it to
/// refuse to start; returns its stderr.
fn refused(args: &[&str]) -> String {
    let mut child = Command::new(sim_binary())
        .args(args)
        .arg("--")
        .arg(worker_binary())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert_eq!(status.code(), Some(1), "einhorn-sim refused to start");
            let mut stderr = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
            return stderr;
        }
        if started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("einhorn-sim started instead of refusing");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_until(what: &str, check: impl Fn() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "timed out: {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn with_a_socket_path_the_pid_and_lock_files_go_beside_it_and_are_removed_at_exit() {
    let dir = TempDir::new();
    let socket = dir.0.join("svc.sock");
    let mut child = Command::new(sim_binary())
        .arg("-d")
        .arg(&socket)
        .arg("--")
        .arg(worker_binary())
        .env("TEST_WORKER_REPORT", dir.0.join("report.jsonl"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _guard = KillOnDrop(child.id());
    let pidfile = dir.0.join("svc.pid");
    wait_until("the pidfile", || pidfile.exists() && socket.exists());
    assert_eq!(
        std::fs::read_to_string(&pidfile).unwrap(),
        child.id().to_string()
    );
    let lockfile = dir.0.join("svc.lock");
    assert!(lockfile.exists(), "the lockfile is beside the socket");
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(started.elapsed() < Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(20));
    }
    for path in [&pidfile, &lockfile, &socket] {
        assert!(!path.exists(), "{} is left behind", path.display());
    }
}

fn precious(dir: &Path) -> std::path::PathBuf {
    let target = dir.join("precious");
    std::fs::write(&target, "keep me").unwrap();
    target
}

#[test]
fn a_planted_symlink_pidfile_is_refused_and_its_target_untouched() {
    let dir = TempDir::new();
    let target = precious(&dir.0);
    std::os::unix::fs::symlink(&target, dir.0.join("svc.pid")).unwrap();
    let stderr = refused(&["-d", dir.0.join("svc.sock").to_str().unwrap()]);
    assert!(
        stderr.contains("svc.pid is a symlink; refusing to follow it"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me");
    assert!(!dir.0.join("svc.sock").exists(), "the socket is cleaned up");
}

#[test]
fn a_planted_symlink_lockfile_is_refused() {
    let dir = TempDir::new();
    let target = precious(&dir.0);
    std::os::unix::fs::symlink(&target, dir.0.join("svc.lock")).unwrap();
    let stderr = refused(&["-d", dir.0.join("svc.sock").to_str().unwrap()]);
    assert!(
        stderr.contains("the lockfile") && stderr.contains("is a symlink"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me");
}

#[test]
fn files_owned_by_another_user_are_refused() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root to make a file another user owns");
        return;
    }
    let nobody = nix::unistd::Uid::from_raw(65534);
    for name in ["svc.pid", "svc.lock"] {
        let dir = TempDir::new();
        let planted = dir.0.join(name);
        std::fs::write(&planted, "999").unwrap();
        std::fs::set_permissions(
            &planted,
            std::os::unix::fs::PermissionsExt::from_mode(0o666),
        )
        .unwrap();
        nix::unistd::chown(&planted, Some(nobody), None).unwrap();
        let stderr = refused(&["-d", dir.0.join("svc.sock").to_str().unwrap()]);
        assert!(
            stderr.contains(&format!("{name} belongs to uid 65534, not to this user")),
            "{stderr}"
        );
        assert_eq!(std::fs::metadata(&planted).unwrap().uid(), 65534);
        assert_eq!(std::fs::read_to_string(&planted).unwrap(), "999");
    }
}

/// Kills a process if the test fails before it exits.
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.0 as i32), Signal::SIGKILL);
    }
}
