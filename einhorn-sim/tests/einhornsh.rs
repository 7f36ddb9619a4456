//! `einhornsh` against einhorn-sim.

mod common;

use assert_cmd::Command;
use common::*;

#[test]
fn einhornsh_runs_commands_from_e() {
    let sim = Sim::start(&["-n", "2", "-m", "manual"], &[]);
    sim.wait_count(is_ack, 2);
    let output = Command::new(einhornsh_binary())
        .arg("-d")
        .arg(sim.socket())
        .args(["-e", "ehlo; inc; dec; signal SIGUSR1"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines[0],
        format!(
            "Welcome, ! You are speaking to Einhorn Master Process {}.",
            sim.child.id()
        )
    );
    assert_eq!(lines[1], "This is Einhorn 1.1.1.");
    assert_eq!(lines[2], "Incrementing number of workers from 2 -> 3");
    assert_eq!(lines[3], "Decrementing number of workers from 3 -> 2");
    assert!(
        lines[4].starts_with("Successfully sent USR1s to "),
        "{stdout}"
    );
    assert_eq!(lines.len(), 5, "{stdout}");
}

#[test]
fn einhornsh_reads_commands_from_a_pipe_and_follows_upgrades() {
    let sim = Sim::start(&["-n", "1", "-m", "manual"], &[]);
    sim.wait_count(is_ack, 1);
    let output = Command::new(einhornsh_binary())
        .arg("-d")
        .arg(sim.socket())
        .write_stdin("upgrade\nquit\nehlo\n")
        .output()
        .unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        stdout.starts_with("Upgrading smoothly, as commanded\n"),
        "{stdout}"
    );
    assert!(stdout.ends_with("Upgrade done\n"), "{stdout}");
    assert!(
        !stdout.contains("Welcome"),
        "quit stops before ehlo: {stdout}"
    );
}

#[test]
fn einhornsh_explains_a_missing_master() {
    let dir = TempDir::new();
    let path = dir.0.join("nobody.sock");
    let output = Command::new(einhornsh_binary())
        .arg("-d")
        .arg(&path)
        .args(["-e", "state"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        String::from_utf8(output.stderr).unwrap(),
        format!(
            "Could not connect to Einhorn master process:\n\n  No such file or directory - connect(2) for {}\n\nHINT: Are you sure you are running an Einhorn master?  If so, you\nshould pass einhornsh the cmd_name (-c argument) provided to Einhorn.\n",
            path.display()
        )
    );
}

#[test]
fn einhornsh_is_interactive_on_a_terminal() {
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        println!("SKIPPED: `script` (util-linux) is not installed");
        return;
    }
    let sim = Sim::start(&["-n", "1", "-m", "manual"], &[]);
    sim.wait_count(is_ack, 1);
    let command_line = format!(
        "{} -d {}",
        einhornsh_binary().display(),
        sim.socket().display()
    );
    let output = Command::new("script")
        .args(["-qec", &command_line, "/dev/null"])
        .env("USER", "tester")
        .write_stdin("inc\nquit\n")
        .timeout(std::time::Duration::from_secs(20))
        .output()
        .unwrap();
    let screen = String::from_utf8_lossy(&output.stdout);
    assert!(
        screen.contains("Welcome, tester! You are speaking to Einhorn Master Process"),
        "{screen}"
    );
    assert!(
        screen.contains("Enter 'help' if you're not sure what to do."),
        "{screen}"
    );
    assert!(screen.contains("> "), "{screen}");
    assert!(
        screen.contains("Incrementing number of workers from 1 -> 2"),
        "{screen}"
    );
    // (The typed-ahead `quit` may be flushed when the line editor takes the
    // terminal; end of input ends the session either way.)
    assert!(output.status.success(), "{screen}");
}

/// Runs `einhornsh -e COMMANDS` against `sim`; returns its exit code.
fn exit_code(sim: &Sim, commands: &str) -> Option<i32> {
    Command::new(einhornsh_binary())
        .arg("-d")
        .arg(sim.socket())
        .args(["-e", commands])
        .output()
        .unwrap()
        .status
        .code()
}

#[test]
fn exit_status_0_when_every_command_succeeds() {
    let sim = Sim::start(&["-n", "1", "-m", "manual"], &[]);
    sim.wait_count(is_ack, 1);
    assert_eq!(exit_code(&sim, "ehlo; inc; dec"), Some(0));
}

#[test]
fn exit_status_3_for_an_unknown_command_or_refused_arguments() {
    let sim = Sim::start(&["-n", "1", "-m", "manual"], &[]);
    sim.wait_count(is_ack, 1);
    assert_eq!(exit_code(&sim, "ehlo; no_such_command"), Some(3));
    assert_eq!(exit_code(&sim, "set_workers zero"), Some(3));
}

#[test]
fn exit_status_3_for_an_abandoned_upgrade() {
    let sim = Sim::start(
        &[
            "-n",
            "1",
            "-m",
            "manual",
            "--ack-timeout",
            "0.4",
            "-s",
            "0.1",
        ],
        &[],
    );
    sim.wait_count(is_ack, 1);
    sim.set_worker_config("TEST_WORKER_ACK=never\n");
    assert_eq!(exit_code(&sim, "upgrade"), Some(3));
}

#[test]
fn exit_status_3_for_an_upgrade_while_shutting_down() {
    let sim = Sim::start(
        &["-n", "1", "-m", "manual"],
        &[("TEST_WORKER_IGNORE_USR2", "1")],
    );
    sim.wait_count(is_ack, 1);
    sim.signal(nix::sys::signal::Signal::SIGUSR2);
    sim.wait_count(is_signal, 1);
    assert_eq!(exit_code(&sim, "upgrade"), Some(3));
}

#[test]
fn exit_status_1_when_the_master_cannot_be_reached() {
    let dir = TempDir::new();
    let code = Command::new(einhornsh_binary())
        .arg("-d")
        .arg(dir.0.join("nobody.sock"))
        .args(["-e", "ehlo"])
        .output()
        .unwrap()
        .status
        .code();
    assert_eq!(code, Some(1));
}
