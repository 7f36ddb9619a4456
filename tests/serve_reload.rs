//! `--reload`: the same process serves again after the config or the
//! executable changes, on the same socket, without a failed request; a
//! broken config keeps the port open until it is fixed.

mod common;

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;

const CONFIG: &str = "[server:main]\nfactory = baseplate.server.wsgi\nstop_timeout = 5 seconds\n\n\
                      [app:main]\nfactory = baseplate.examples.http:make_app\ngreeting = one\n";

/// A copy of the binary in its own directory, so the test can replace it,
/// run with `--reload`.
fn start_reloading(dir: &TempDir) -> (Server, PathBuf, PathBuf) {
    start_copy(dir, &["--reload"])
}

/// A copy of the binary in `dir`, run with `args` and CONFIG on an
/// ephemeral port: the server, the copy's path and the config's.
fn start_copy(dir: &TempDir, args: &[&str]) -> (Server, PathBuf, PathBuf) {
    let exe = dir.path().join("baseplate-serve");
    std::fs::copy(binary(), &exe).unwrap();
    let config = dir.write("app.ini", CONFIG);
    let mut command = Command::new(&exe);
    command
        .args(args)
        .args(["--bind", "127.0.0.1:0"])
        .arg(&config);
    let mut server = Server::spawn(command, TempDir::new());
    server.addr = Some(server.wait_listening());
    (server, exe, config)
}

/// Replaces a file the way editors and cargo do: write aside, rename over.
fn replace(path: &std::path::Path, contents: &[u8]) {
    let aside = path.with_extension("new");
    std::fs::write(&aside, contents).unwrap();
    let mode = std::fs::metadata(path).unwrap().permissions();
    std::fs::set_permissions(&aside, mode).unwrap();
    std::fs::rename(&aside, path).unwrap();
}

fn health_pid(server: &Server) -> u64 {
    let body = get(server.addr(), "/health").text();
    serde_json::from_str::<serde_json::Value>(&body).unwrap()["pid"]
        .as_u64()
        .unwrap()
}

#[test]
fn reloads_on_config_and_executable_changes_without_failing_a_request() {
    let dir = TempDir::new();
    let (mut server, exe, config) = start_reloading(&dir);
    let addr = server.addr();
    let pid = health_pid(&server);

    // A light, continuous request loop on fresh connections.
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let load = {
        let (stop, done, failures) = (Arc::clone(&stop), Arc::clone(&done), Arc::clone(&failures));
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let result = TcpStream::connect(addr)
                    .map_err(|e| e.to_string())
                    .and_then(|mut s| {
                        s.set_read_timeout(Some(WAIT)).unwrap();
                        send(&mut s, "GET", "/", &[("Connection", "close")], b"");
                        read_response(&mut s).map_err(|e| e.to_string())
                    });
                match result {
                    Ok(r) if r.status == 200 => {}
                    Ok(r) => failures
                        .lock()
                        .unwrap()
                        .push(format!("status {}", r.status)),
                    Err(e) => failures.lock().unwrap().push(e),
                }
                done.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };

    std::fs::write(&config, CONFIG.replace("greeting = one", "greeting = two")).unwrap();
    server.wait_for("Reloading, ");
    server.wait_for("Listening on");
    let settings: serde_json::Value = serde_json::from_str(&get(addr, "/config").text()).unwrap();
    assert_eq!(settings["greeting"], "two");
    assert_eq!(health_pid(&server), pid, "the same process");

    replace(&exe, &std::fs::read(binary()).unwrap());
    let line = server.wait_for("Reloading, ");
    assert!(line.contains("baseplate-serve changed"), "{line}");
    server.wait_for("Listening on");
    assert_eq!(health_pid(&server), pid, "the same process");

    stop.store(true, Ordering::SeqCst);
    load.join().unwrap();
    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {} requests failed: {:?}",
        failures.len(),
        done.load(Ordering::SeqCst),
        &failures[..failures.len().min(3)]
    );
    assert!(done.load(Ordering::SeqCst) > 10);

    server.signal(Signal::SIGTERM);
    assert_eq!(server.wait_exit(Duration::from_secs(5)).code(), Some(0));
}

/// A change reloads only once the build as it is now has passed
/// `--check` with the config as it is now (#23 item 6): a broken config
/// leaves the running server serving its last good config, with one
/// line, until the file is fixed.
#[test]
fn a_broken_config_leaves_the_server_serving_until_it_is_fixed() {
    let dir = TempDir::new();
    let (mut server, _exe, config) = start_reloading(&dir);
    let addr = server.addr();
    let pid = health_pid(&server);
    std::fs::write(&config, format!("{CONFIG}this line is broken\n")).unwrap();
    let line = server.wait_for("not reloading (");
    assert!(
        line.contains("--check failed (exit status 1)")
            && line.contains("app.ini:8: expected `key = value`")
            && line.contains("serving on until the next change"),
        "{line}"
    );
    let settings: serde_json::Value = serde_json::from_str(&get(addr, "/config").text()).unwrap();
    assert_eq!(
        settings["greeting"], "one",
        "the last good config serves on"
    );

    std::fs::write(&config, CONFIG.replace("greeting = one", "greeting = two")).unwrap();
    server.wait_for("Listening on");
    let settings: serde_json::Value = serde_json::from_str(&get(addr, "/config").text()).unwrap();
    assert_eq!(settings["greeting"], "two");
    assert_eq!(health_pid(&server), pid, "the same process");
}

/// The first 64 KiB of the real binary: an ELF that execve accepts and
/// that dies at once.
fn truncated_binary() -> Vec<u8> {
    let mut bytes = std::fs::read(binary()).unwrap();
    bytes.truncate(64 * 1024);
    bytes
}

/// A build that cannot start, put where the executable was (#23 item 6):
/// a file without the execute bit, then a truncated ELF. Each is refused
/// with one line before the server drains, the server serves on (same
/// pid, port open), and the next good build reloads. Before, the exec
/// failed after the drain and the process exited with the port closed.
#[test]
fn a_build_that_cannot_start_leaves_the_reloading_server_serving() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new();
    let (mut server, exe, _config) = start_reloading(&dir);
    let addr = server.addr();
    let pid = health_pid(&server);

    let aside = exe.with_extension("new");
    std::fs::write(&aside, std::fs::read(binary()).unwrap()).unwrap();
    std::fs::set_permissions(&aside, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::rename(&aside, &exe).unwrap();
    let line = server.wait_for("not reloading (");
    assert!(
        line.contains("cannot run") && line.contains("ermission denied"),
        "{line}"
    );
    assert_eq!(get(addr, "/").status, 200);

    replace(&exe, &truncated_binary());
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let line = server.wait_for("not reloading (");
    assert!(
        line.contains("--check failed (killed by signal") || line.contains("cannot run"),
        "{line}"
    );
    assert_eq!(get(addr, "/").status, 200);
    assert_eq!(health_pid(&server), pid);

    replace(&exe, &std::fs::read(binary()).unwrap());
    server.wait_for("Reloading, ");
    server.wait_for("Listening on");
    assert_eq!(get(addr, "/").status, 200);
    assert_eq!(health_pid(&server), pid, "the same process");
}

/// SIGHUP with a truncated build in place: the restart drains, finds that
/// the build cannot start, says so in one line and serves again in the
/// same process, on the same socket (#23 item 6).
#[test]
fn sighup_with_a_build_that_cannot_start_serves_on() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new();
    let (mut server, exe, _config) = start_copy(&dir, &[]);
    let pid = health_pid(&server);

    replace(&exe, &truncated_binary());
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    server.signal(Signal::SIGHUP);
    let line = server.wait_for("not restarting: ");
    assert!(line.contains("until the next SIGHUP"), "{line}");
    server.wait_for("Listening on");
    assert_eq!(get(server.addr(), "/").status, 200);
    assert_eq!(health_pid(&server), pid);

    replace(&exe, &std::fs::read(binary()).unwrap());
    server.signal(Signal::SIGHUP);
    server.wait_for("Handing the listener to the new process");
    server.wait_for("Listening on");
    assert_eq!(get(server.addr(), "/").status, 200);
    assert_eq!(health_pid(&server), pid, "restarted in place");
}

/// A burst of SIGHUPs (each a restart in place) never kills the server:
/// across each restart's exec, until the new run installs its handler,
/// SIGHUP is ignored instead of fatal (its default action). Before, a few
/// hundred HUPs killed it with status 129.
#[test]
fn a_burst_of_sighups_never_kills_the_server() {
    let mut server = Server::start(CONFIG, &[]);
    let addr = server.addr();
    for sent in 1..=400 {
        server.signal(Signal::SIGHUP);
        std::thread::sleep(Duration::from_millis(2));
        if let Some(status) = server.child.try_wait().unwrap() {
            panic!("died after {sent} SIGHUPs: {status}\n{}", server.output());
        }
    }
    // Serves on, on the same port, whatever restart is under way.
    assert_eq!(get(addr, "/").status, 200);
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "{}",
        server.output()
    );
}

/// A SIGTERM during a SIGHUP restart's drain wins: the request in flight
/// finishes and the process exits, instead of handing the listener to a
/// new run that serves on past the supervisor's stop.
#[test]
fn a_sigterm_during_a_sighup_restart_stops_the_server() {
    let mut server = Server::start(CONFIG, &[]);
    let addr = server.addr();
    let slow = std::thread::spawn(move || request(addr, "GET", "/sleep?ms=1500", &[], b""));
    server.wait_for("sleeping for 1500 ms");
    server.signal(Signal::SIGHUP);
    server.wait_for("Received SIGHUP: restarting in place");
    server.signal(Signal::SIGTERM);
    server.wait_for("Shutdown triggered.");
    let response = slow.join().unwrap();
    assert_eq!(response.status, 200, "the request in flight finished");
    let status = server.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{}", server.output());
    // Whether the TERM came before the restart's drain began (a plain
    // shutdown) or during it ("exiting instead of restarting"), no new run.
    let output = server.output();
    assert!(
        !output.contains("Handing the listener to the new process"),
        "{output}"
    );
}

/// SIGHUP after a build replaced the executable by rename runs the new
/// build (the path as it is now), instead of failing on the running
/// file's deleted inode and exiting with the port closed.
#[test]
fn sighup_after_the_binary_was_replaced_runs_the_new_one() {
    let dir = TempDir::new();
    let (mut server, exe, _config) = start_copy(&dir, &[]);
    let pid = health_pid(&server);

    replace(&exe, &std::fs::read(binary()).unwrap());
    server.signal(Signal::SIGHUP);
    server.wait_for("Handing the listener to the new process");
    let line = server.wait_for("Listening on");
    assert!(line.contains(&server.addr().to_string()), "{line}");
    assert_eq!(get(server.addr(), "/").status, 200);
    assert_eq!(health_pid(&server), pid, "restarted in place");
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "{}",
        server.output()
    );
}
