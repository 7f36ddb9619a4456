//! Prometheus metrics across Einhorn workers, as users run them:
//! `einhorn-sim -n 4 -m manual -b ADDR -- baseplate-serve app.ini` with
//! `metrics.enabled = true`. Any worker answering `/metrics` returns the
//! sums over all four; counters survive a worker killed with SIGKILL and
//! respawned; gauges count live workers only.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::thread;

use baseplate::example_apps::example_thrift::TExampleSyncClient;
use common::thrift_clients::{crate_client, Dialect};
use common::*;
use einhorn_sim::conformance::procfs;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const WORKERS: usize = 4;

/// A running master with its workers ACKed.
struct Sim {
    _master: KillOnDrop,
    events: PathBuf,
    addr: SocketAddr,
    metrics: SocketAddr,
    /// The default metrics directory, when the config names none: removed
    /// at the end.
    _default_dir: Option<RemoveOnDrop>,
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Where the metrics go.
#[derive(Clone, Copy)]
enum Directory {
    /// `metrics.multiprocess_dir` in the test's directory.
    Configured,
    /// Neither the key nor PROMETHEUS_MULTIPROC_DIR: the default one of
    /// the Einhorn master.
    Default,
}

fn start(dir: &TempDir, server: &str, app: &str, directory: Directory) -> Sim {
    let port = fixed_port();
    let multiprocess_dir = match directory {
        Directory::Configured => format!(
            "metrics.multiprocess_dir = {}\n",
            dir.path().join("metrics").display()
        ),
        Directory::Default => String::new(),
    };
    let config = dir.write(
        "app.ini",
        &format!(
            "[server:main]\nfactory = {server}\nstop_timeout = 5 seconds\n\n[app:main]\nfactory = {app}\nmetrics.enabled = true\nmetrics.bind = 127.0.0.1:{port}\n{multiprocess_dir}"
        ),
    );
    let events_path = dir.path().join("events.jsonl");
    let child = sim_command(dir.path())
        .args(["-k", "-n", "4", "-m", "manual", "-b", "127.0.0.1:0,r", "--"])
        .arg(binary())
        .arg(&config)
        .env_remove("PROMETHEUS_MULTIPROC_DIR")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let default_dir = matches!(directory, Directory::Default).then(|| {
        RemoveOnDrop(std::env::temp_dir().join(format!(
            "baseplate-metrics-{}/einhorn-{}",
            nix::unistd::geteuid(),
            child.id()
        )))
    });
    let master = KillOnDrop(child);
    let sim_port = wait_events(&events_path, sim_port);
    wait_events(&events_path, |e| {
        (live_workers(e).len() == WORKERS).then_some(())
    });
    Sim {
        _master: master,
        events: events_path,
        addr: SocketAddr::from(([127, 0, 0, 1], sim_port)),
        metrics: SocketAddr::from(([127, 0, 0, 1], port)),
        _default_dir: default_dir,
    }
}

/// `GET /metrics` on a new connection.
fn scrape(metrics: SocketAddr) -> String {
    let r = get(metrics, "/metrics");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    let text = r.text();
    assert!(text.ends_with("# EOF\n"), "{text}");
    text
}

/// The samples of `name` (exactly: `name{...} V` or `name V`), with their
/// label text and value.
fn samples<'a>(text: &'a str, name: &str) -> Vec<(&'a str, f64)> {
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let (labels, value) = match rest.strip_prefix('{') {
                Some(rest) => {
                    let (labels, value) = rest.split_once("} ")?;
                    (labels, value)
                }
                None => ("", rest.strip_prefix(' ')?),
            };
            Some((labels, value.parse().ok()?))
        })
        .collect()
}

fn total(text: &str, name: &str) -> f64 {
    samples(text, name).iter().map(|(_, v)| v).sum()
}

/// The worker holding the server side of `client`'s connection.
fn worker_of(client: &TcpStream, sim: &Sim) -> i32 {
    let client_port = client.local_addr().unwrap().port();
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        if let Some(entry) = procfs::server_side(sim.addr.port(), client_port) {
            if let Some(pid) = live_workers(&events(&sim.events))
                .into_iter()
                .find(|pid| procfs::socket_inodes(*pid).contains(&entry.inode))
            {
                return pid;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no worker holds the connection"
        );
        thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Kills `pid` with SIGKILL and waits for its replacement's ACK.
fn kill_9_and_respawn(sim: &Sim, pid: i32) {
    kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    wait_events(&sim.events, |e| {
        let live = live_workers(e);
        (exited(e).contains(&pid) && live.len() == WORKERS).then_some(())
    });
}

/// Sends `n` requests over kept-alive connections, from 4 threads.
fn http_load(addr: SocketAddr, n: usize) {
    let threads: Vec<_> = (0..4)
        .map(|t| {
            thread::spawn(move || {
                let mut stream = connect(addr);
                for i in (t..n).step_by(4) {
                    send(&mut stream, "GET", "/", &[], b"");
                    let r = read_response(&mut stream).unwrap();
                    assert_eq!(r.status, 200, "request {i}");
                    if r.header("connection") == Some("close") {
                        stream = connect(addr);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

fn metrics_dir_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("metrics"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn http_counts_are_summed_over_workers_and_survive_a_kill_9() {
    let dir = TempDir::new();
    let sim = start(
        &dir,
        "baseplate.server.wsgi",
        "baseplate.examples.http:make_app",
        Directory::Configured,
    );
    http_load(sim.addr, 1000);

    // One request in flight on a worker that is about to be killed.
    let mut slow = connect(sim.addr);
    send(&mut slow, "GET", "/sleep?ms=60000", &[], b"");
    let victim = worker_of(&slow, &sim);
    let text = wait_for_scrape(sim.metrics, |text| {
        total(text, "http_server_active_requests") == 1.0
    });
    assert_eq!(
        samples(&text, "http_server_active_requests")
            .into_iter()
            .filter(|(_, v)| *v != 0.0)
            .collect::<Vec<_>>(),
        [(r#"http_method="GET",http_endpoint="/sleep""#, 1.0)]
    );
    assert_eq!(total(&text, "http_server_requests_total"), 1000.0);
    assert_eq!(total(&text, "baseplate_worker_processes"), WORKERS as f64);

    kill_9_and_respawn(&sim, victim);
    drop(slow);
    for scrape_number in 0..5 {
        let text = scrape(sim.metrics);
        assert_eq!(
            samples(&text, "http_server_requests_total"),
            [(
                r#"http_method="GET",http_endpoint="/",http_success="true",http_response_code="200""#,
                1000.0
            )],
            "scrape {scrape_number}:\n{text}"
        );
        // The killed worker's request in flight is not counted: it is dead.
        assert_eq!(
            total(&text, "http_server_active_requests"),
            0.0,
            "scrape {scrape_number}"
        );
        assert_eq!(total(&text, "baseplate_server_active_requests"), 0.0);
        assert_eq!(total(&text, "baseplate_worker_processes"), WORKERS as f64);
        assert_eq!(
            total(&text, "http_server_latency_seconds_count"),
            1000.0,
            "scrape {scrape_number}"
        );
        assert!(total(&text, "process_cpu_seconds_total") > 0.0);
        assert!(total(&text, "process_resident_memory_bytes") > 0.0);
    }
    // The dead worker's file was merged into the archive: four live files.
    let files = metrics_dir_files(dir.path());
    assert_eq!(
        files.iter().filter(|f| f.starts_with("w-")).count(),
        WORKERS,
        "{files:?}"
    );
    assert!(files.contains(&"archive.db".to_string()), "{files:?}");
}

/// Scrapes until `check` passes (a request just sent may not be counted
/// at once), and returns that scrape.
fn wait_for_scrape(metrics: SocketAddr, check: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let text = scrape(metrics);
        if check(&text) {
            return text;
        }
        assert!(std::time::Instant::now() < deadline, "never true:\n{text}");
        thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn thrift_counts_name_the_exception_and_survive_a_kill_9() {
    for app in [
        "baseplate.examples.thrift:make_processor",
        "baseplate.examples.thrift_async:make_service",
    ] {
        let dir = TempDir::new();
        // The sync app with the Einhorn master's default directory.
        let directory = match app.contains("async") {
            true => Directory::Configured,
            false => Directory::Default,
        };
        let sim = start(&dir, "baseplate.server.thrift", app, directory);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let addr = sim.addr;
                thread::spawn(move || {
                    let mut client = crate_client(addr, Dialect::FramedBinary);
                    for _ in 0..240 {
                        assert_eq!(client.echo("hi".into()).unwrap(), "hi");
                    }
                    for _ in 0..10 {
                        let e = client.fail("no".into()).unwrap_err();
                        assert!(e.to_string().contains("Oops"), "{e}");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // One call in flight on a worker that is about to be killed. A
        // method gets its own label once the app has answered it (names
        // come from the wire): the first call teaches the worker `sleep`.
        let slow = TcpStream::connect(sim.addr).unwrap();
        let stream = slow.try_clone().unwrap();
        let call = thread::spawn(move || {
            let mut client = crate_client_on(stream);
            client.sleep(0).unwrap();
            let _ = client.sleep(60_000);
        });
        let victim = worker_of(&slow, &sim);
        wait_for_scrape(sim.metrics, |text| {
            samples(text, "thrift_server_active_requests")
                .contains(&(r#"thrift_method="sleep""#, 1.0))
        });
        kill_9_and_respawn(&sim, victim);
        call.join().unwrap();

        for scrape_number in 0..5 {
            let text = scrape(sim.metrics);
            let mut requests = samples(&text, "thrift_server_requests_total");
            requests.sort_by(|a, b| a.0.cmp(b.0));
            assert_eq!(
                requests,
                [
                    (
                        r#"thrift_method="echo",thrift_success="true",thrift_exception_type="",thrift_baseplate_status="",thrift_baseplate_status_code="""#,
                        960.0
                    ),
                    (
                        r#"thrift_method="fail",thrift_success="false",thrift_exception_type="Oops",thrift_baseplate_status="",thrift_baseplate_status_code="""#,
                        40.0
                    ),
                    (
                        r#"thrift_method="sleep",thrift_success="true",thrift_exception_type="",thrift_baseplate_status="",thrift_baseplate_status_code="""#,
                        1.0
                    ),
                ],
                "{app}, scrape {scrape_number}:\n{text}"
            );
            assert_eq!(total(&text, "thrift_server_active_requests"), 0.0);
            assert_eq!(
                total(&text, "thrift_server_latency_seconds_count"),
                1001.0,
                "{app}"
            );
        }
    }
}

/// The example service's client over an open connection.
fn crate_client_on(stream: TcpStream) -> common::thrift_clients::Client {
    common::thrift_clients::client_on(stream, Dialect::FramedBinary)
}

/// Requests that never reach the app's response: a declared body over
/// `max_body_size` is counted as a 413 of endpoint `unknown`, and one whose
/// client closes the connection mid-request leaves the active-requests
/// gauges (hyper drops its future), uncounted, instead of staying active.
#[test]
fn refused_and_abandoned_requests_leave_no_active_request_behind() {
    let port = fixed_port();
    let metrics = SocketAddr::from(([127, 0, 0, 1], port));
    let files = TempDir::new();
    let mut server = Server::start(
        &format!(
            "[server:main]\nfactory = baseplate.server.wsgi\nmax_body_size = 1000\n\n\
             [app:main]\nfactory = baseplate.examples.http:make_app\n\
             metrics.enabled = true\nmetrics.bind = 127.0.0.1:{port}\n\
             metrics.multiprocess_dir = {}\n",
            files.path().display()
        ),
        &[],
    );
    let mut big = connect(server.addr());
    send(&mut big, "POST", "/echo", &[], &[b'x'; 2000]);
    assert_eq!(read_response(&mut big).unwrap().status, 413);

    let mut abandoned = connect(server.addr());
    send(&mut abandoned, "GET", "/sleep?ms=60000", &[], b"");
    server.wait_for("sleeping for 60000 ms");
    let text = wait_for_scrape(metrics, |text| {
        total(text, "http_server_active_requests") == 1.0
    });
    assert_eq!(
        total(&text, "baseplate_server_active_requests"),
        1.0,
        "{text}"
    );
    drop(abandoned);

    // Well before the 60 s sleep would end.
    let text = wait_for_scrape(metrics, |text| {
        total(text, "http_server_active_requests") == 0.0
            && total(text, "baseplate_server_active_requests") == 0.0
    });
    assert_eq!(
        samples(&text, "http_server_requests_total"),
        [(
            r#"http_method="POST",http_endpoint="unknown",http_success="false",http_response_code="413""#,
            1.0
        )],
        "{text}"
    );
}

/// Calls `name` with no arguments and reads its reply to the end: `Ok`
/// with the application error's kind for an exception, `Ok(None)` for a
/// result, `Err` when the server closed the connection.
fn call_named(
    client: &mut common::thrift_clients::Client,
    name: &str,
) -> thrift::Result<Option<thrift::ApplicationErrorKind>> {
    use thrift::protocol::{TMessageType, TType};
    use thrift::TThriftClient;
    let reply = common::thrift_clients::call_without_args(client, name)?;
    let i = client.i_prot_mut();
    if reply.message_type == TMessageType::Exception {
        let error = thrift::Error::read_application_error_from_in_protocol(i)?;
        i.read_message_end()?;
        return Ok(Some(error.kind));
    }
    i.skip(TType::Struct)?;
    i.read_message_end()?;
    Ok(None)
}

/// Method names come from the wire (#23 item 2): 1,000 made-up names of
/// 64 KiB and 1,000 of 200 bytes. A name over 256 bytes closes its own
/// connection before it is used anywhere; a shorter one the app does not
/// know is counted as `unknown`. Real methods keep their labels, and a
/// scrape stays small.
#[test]
fn made_up_method_names_add_no_series_and_scrapes_stay_small() {
    let port = fixed_port();
    let metrics = SocketAddr::from(([127, 0, 0, 1], port));
    let files = TempDir::new();
    let mut server = Server::start(
        &metrics_config_of("baseplate.server.thrift", THRIFT_APP, port, files.path()),
        &[],
    );
    let addr = server.addr();
    let random = |len: usize, seed: usize| -> String {
        (0..len)
            .map(|i| char::from(b'a' + ((i * 7 + seed * 13 + i * seed) % 26) as u8))
            .collect()
    };
    for seed in 0..1000 {
        let mut client = crate_client(addr, Dialect::FramedBinary);
        let long = format!("{seed}{}", random(64 * 1024, seed));
        assert!(
            call_named(&mut client, &long).is_err(),
            "a 64 KiB method name was answered"
        );
    }
    let mut client = crate_client(addr, Dialect::FramedBinary);
    for seed in 0..1000 {
        let name = format!("{seed}{}", random(200, seed));
        assert_eq!(
            call_named(&mut client, &name).unwrap(),
            Some(thrift::ApplicationErrorKind::UnknownMethod)
        );
    }
    for _ in 0..3 {
        assert_eq!(client.echo("hi".into()).unwrap(), "hi");
    }
    let text = scrape(metrics);
    assert!(text.len() < 64 * 1024, "a scrape of {} bytes", text.len());
    let mut requests = samples(&text, "thrift_server_requests_total");
    requests.sort_by(|a, b| a.0.cmp(b.0));
    assert_eq!(
        requests,
        [
            (
                r#"thrift_method="echo",thrift_success="true",thrift_exception_type="",thrift_baseplate_status="",thrift_baseplate_status_code="""#,
                3.0
            ),
            (
                r#"thrift_method="unknown",thrift_success="false",thrift_exception_type="TApplicationException",thrift_baseplate_status="",thrift_baseplate_status_code="""#,
                1000.0
            ),
        ],
        "{text}"
    );
    server.wait_for("a call named a method of 65539 bytes; the longest accepted is 256");
    let log = server.output();
    assert!(log.len() < 1000 * 400, "{} bytes of log", log.len());
    let worker_file: u64 = std::fs::read_dir(files.path())
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(
        worker_file < 1024 * 1024,
        "{worker_file} bytes of metrics files"
    );
}

/// A Thrift client that leaves in the middle of a call: the call is
/// dropped (a queued handler never starts) and leaves the active gauges at
/// once, though its handler thread sleeps on.
#[test]
fn a_thrift_call_whose_client_leaves_is_no_longer_active() {
    let port = fixed_port();
    let metrics = SocketAddr::from(([127, 0, 0, 1], port));
    let files = TempDir::new();
    let mut server = Server::start(
        &metrics_config_of("baseplate.server.thrift", THRIFT_APP, port, files.path()),
        &[],
    );
    let stream = TcpStream::connect(server.addr()).unwrap();
    let theirs = stream.try_clone().unwrap();
    let (learned_tx, learned) = std::sync::mpsc::channel();
    let call = thread::spawn(move || {
        let mut client = crate_client_on(theirs);
        client.sleep(0).unwrap();
        learned_tx.send(()).unwrap();
        client.sleep(60_000)
    });
    learned.recv().unwrap();
    server.wait_for("sleeping for 60000 ms");
    wait_for_scrape(metrics, |text| {
        samples(text, "thrift_server_active_requests").contains(&(r#"thrift_method="sleep""#, 1.0))
    });
    stream.shutdown(std::net::Shutdown::Both).unwrap();
    assert!(call.join().unwrap().is_err());
    let text = wait_for_scrape(metrics, |text| {
        total(text, "thrift_server_active_requests") == 0.0
            && total(text, "baseplate_server_active_requests") == 0.0
    });
    assert_eq!(
        total(&text, "thrift_server_requests_total"),
        1.0,
        "only the finished call is counted:\n{text}"
    );
}

/// The config of an HTTP server with metrics in `dir`, on `port`.
fn metrics_config(port: u16, dir: &Path) -> String {
    metrics_config_of("baseplate.server.wsgi", EXAMPLE_APP, port, dir)
}

/// The config of a `server` factory serving the `app` section, with
/// metrics in `dir`, on `port`.
fn metrics_config_of(server: &str, app: &str, port: u16, dir: &Path) -> String {
    format!(
        "[server:main]\nfactory = {server}\n\n{app}\
         metrics.enabled = true\nmetrics.bind = 127.0.0.1:{port}\n\
         metrics.multiprocess_dir = {}\n",
        dir.display()
    )
}

/// The example sync Thrift service's app section.
const THRIFT_APP: &str = "[app:main]\nfactory = baseplate.examples.thrift:make_processor\n";

/// A metrics directory others may write to, named by the config or by
/// `PROMETHEUS_MULTIPROC_DIR`, is refused at startup as the default one is
/// (#23 item 7): `/tmp` would let any user plant files every scrape reads.
#[test]
fn a_metrics_directory_others_may_write_to_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    // Runs the server to its exit (failing after WAIT: a server that
    // accepted the directory would serve on).
    let refused = |config: &str, env: Option<&Path>| -> String {
        let dir = TempDir::new();
        let path = dir.write("app.ini", config);
        let mut command = std::process::Command::new(binary());
        command.args(["--bind", "127.0.0.1:0"]).arg(&path);
        if let Some(env) = env {
            command.env(baseplate::metrics::MULTIPROC_DIR_VAR, env);
        }
        let mut server = Server::spawn(command, dir);
        let status = server.wait_exit(WAIT);
        assert_eq!(status.code(), Some(1), "{}", server.output());
        server.output()
    };
    let said = refused(&metrics_config(fixed_port(), Path::new("/tmp")), None);
    assert!(
        said.contains("metrics.multiprocess_dir = /tmp: not a private directory")
            && said.contains("mode 1777"),
        "{said}"
    );

    let files = TempDir::new();
    let open = files.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let config = format!(
        "[server:main]\nfactory = baseplate.server.wsgi\n\n{EXAMPLE_APP}\
         metrics.enabled = true\nmetrics.bind = 127.0.0.1:{}\n",
        fixed_port()
    );
    let said = refused(&config, Some(&open));
    assert!(
        said.contains(&format!(
            "PROMETHEUS_MULTIPROC_DIR = {}: not a private directory",
            open.display()
        )) && said.contains("mode 777"),
        "{said}"
    );

    // A missing one is made, private.
    let made = files.path().join("made/here");
    let server = Server::start(&metrics_config(fixed_port(), &made), &[]);
    assert!(server.output().contains("Prometheus metrics exported"));
    assert_eq!(
        std::fs::metadata(&made).unwrap().permissions().mode() & 0o777,
        0o700
    );
}

/// Files planted in the metrics directory (#23 item 7): a symlink named
/// `archive.tmp` is never written through, a FIFO never hangs a scrape, a
/// directory named like a worker file is no 500. Each is skipped with one
/// WARN, and dead workers are still compacted.
#[test]
fn files_planted_in_the_metrics_directory_are_skipped() {
    let port = fixed_port();
    let metrics = SocketAddr::from(([127, 0, 0, 1], port));
    let files = TempDir::new();
    let dir = files.path().join("metrics");
    let mut server = Server::start(&metrics_config(port, &dir), &[]);
    assert_eq!(get(server.addr(), "/").status, 200);
    let before = total(&scrape(metrics), "http_server_requests_total");
    assert_eq!(before, 1.0);

    let victim = files.write("victim", "precious");
    std::os::unix::fs::symlink(&victim, dir.join("archive.tmp")).unwrap();
    nix::unistd::mkfifo(
        &dir.join("w-fifo-1-1.db"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    std::fs::create_dir(dir.join("w-dir-2-2.db")).unwrap();
    std::os::unix::fs::symlink(&victim, dir.join("w-link-3-3.db")).unwrap();
    // A dead worker: a copy of the live one's file, which nobody locks.
    let live = format!("w-{}-", server.pid());
    let live = metrics_dir_files(files.path())
        .into_iter()
        .find(|n| n.starts_with(&live))
        .expect("the live worker's file");
    std::fs::copy(dir.join(&live), dir.join("w-dead-4-4.db")).unwrap();

    for _ in 0..3 {
        let text = scrape(metrics);
        assert_eq!(total(&text, "http_server_requests_total"), 2.0, "{text}");
    }
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    let archive = std::fs::symlink_metadata(dir.join("archive.db")).unwrap();
    assert!(archive.file_type().is_file(), "{archive:?}");
    assert!(
        !dir.join("w-dead-4-4.db").exists(),
        "the dead worker was compacted"
    );
    let lines: Vec<String> = [
        ("w-fifo-1-1.db", "not a regular file (a FIFO)"),
        ("w-dir-2-2.db", "not a regular file (a directory)"),
        ("w-link-3-3.db", "a symlink"),
    ]
    .iter()
    .map(|(planted, why)| format!("{}: skipped: {why}", dir.join(planted).display()))
    .collect();
    // The server logs before it answers, but the lines reach this test
    // on their own threads (in any order): wait for all, then count.
    let started = std::time::Instant::now();
    while !lines.iter().all(|l| server.output().contains(l.as_str())) {
        assert!(started.elapsed() < WAIT, "{}", server.output());
        thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = scrape(metrics);
    let log = server.output();
    for line in &lines {
        assert_eq!(
            log.matches(line.as_str()).count(),
            1,
            "{line} once in:\n{log}"
        );
    }
    server.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(server.wait_exit(WAIT).success());
}

/// The open descriptors of a process.
fn open_fds(pid: nix::unistd::Pid) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// 300 connections to the exporter that never send a request, against a
/// server allowed 128 descriptors (#23 item 3): the exporter holds at most
/// 16 of them (the rest wait in the listen backlog, costing the process
/// nothing), so the service keeps answering on fresh connections. Before,
/// it took every descriptor and `GET /` failed until the 10 s header
/// timeout.
#[test]
fn silent_exporter_connections_cannot_take_the_services_descriptors() {
    use nix::sys::resource::{setrlimit, Resource};
    use std::os::unix::process::CommandExt;
    let port = fixed_port();
    let metrics = SocketAddr::from(([127, 0, 0, 1], port));
    let files = TempDir::new();
    let config = files.write(
        "app.ini",
        &metrics_config(port, &files.path().join("metrics")),
    );
    let mut command = std::process::Command::new(binary());
    command.args(["--bind", "127.0.0.1:0"]).arg(&config);
    // SAFETY: only setrlimit between fork and exec.
    unsafe {
        command.pre_exec(|| {
            setrlimit(Resource::RLIMIT_NOFILE, 128, 128).map_err(std::io::Error::from)
        });
    }
    let mut server = Server::spawn(command, TempDir::new());
    let addr = server.wait_listening();
    let fds_before = open_fds(server.pid());
    let silent: Vec<TcpStream> = (0..300)
        .map(|_| TcpStream::connect(metrics).unwrap())
        .collect();
    for _ in 0..20 {
        let started = std::time::Instant::now();
        let mut stream = connect(addr);
        send(&mut stream, "GET", "/", &[("Connection", "close")], b"");
        let response = read_response(&mut stream).expect("the service answers");
        assert_eq!(response.status, 200);
        let took = started.elapsed();
        assert!(
            took < std::time::Duration::from_secs(3),
            "GET / took {took:?}"
        );
    }
    let fds = open_fds(server.pid());
    assert!(
        fds <= fds_before + 16 + 4,
        "{fds} descriptors open, {fds_before} before the silent connections"
    );
    drop(silent);
    wait_for_scrape(metrics, |text| {
        total(text, "http_server_requests_total") == 20.0
    });
}

/// Runs `baseplate-serve CONFIG` (with `args`) and returns its output once
/// it exits with status 1, failing if it serves on instead.
fn refused_at_startup(config: &Path, args: &[&str]) -> String {
    let mut command = std::process::Command::new(binary());
    command.args(args).arg(config);
    let mut server = Server::spawn(command, TempDir::new());
    let status = server.wait_exit(WAIT);
    assert_eq!(status.code(), Some(1), "{}", server.output());
    server.output()
}

/// `metrics.bind` is shared by the workers of one service only (#23 items 4
/// and 12): a second service on the same port, or a service whose
/// `metrics.bind` is its own listening address, is refused with one line
/// instead of scrapes landing on either at random.
#[test]
fn metrics_bind_is_shared_only_by_workers_of_one_service() {
    let port = fixed_port();
    let metrics = SocketAddr::from(([127, 0, 0, 1], port));
    let files = TempDir::new();
    let first = Server::start(&metrics_config(port, &files.path().join("first")), &[]);
    assert_eq!(get(first.addr(), "/").status, 200);

    let second = files.write(
        "second.ini",
        &metrics_config(port, &files.path().join("second")),
    );
    let said = refused_at_startup(&second, &["--bind", "127.0.0.1:0"]);
    let expected = format!(
        "cannot export metrics on 127.0.0.1:{port} (metrics.bind): pid {} (baseplate-serve) \
         listens there, and it is no worker of this service (it writes no metrics in {}); give \
         each service a metrics.bind of its own",
        first.pid(),
        std::fs::canonicalize(files.path().join("second"))
            .unwrap()
            .display()
    );
    assert!(said.contains(&expected), "{said}");
    // Every scrape still comes from the first service.
    for _ in 0..10 {
        assert_eq!(total(&scrape(metrics), "http_server_requests_total"), 1.0);
    }

    let own = fixed_port();
    let config = files.write("own.ini", &metrics_config(own, &files.path().join("own")));
    let said = refused_at_startup(&config, &["--bind", &format!("127.0.0.1:{own}")]);
    assert!(
        said.contains(&format!(
            "cannot export metrics on 127.0.0.1:{own} (metrics.bind): it is the address this \
             server itself listens on"
        )),
        "{said}"
    );
}

/// A UNIX `metrics.bind` under several workers (#23 item 12): one worker
/// serves the socket, the others say so and start (before, the second
/// crash-looped on "(--bind)"); scrapes sum every worker, and when the
/// serving worker dies another takes the socket over.
#[test]
fn a_unix_metrics_socket_is_served_by_one_worker_at_a_time() {
    let dir = TempDir::new();
    let socket = dir.path().join("metrics.sock");
    let config = dir.write(
        "app.ini",
        &format!(
            "[server:main]\nfactory = baseplate.server.wsgi\n\n{EXAMPLE_APP}\
             metrics.enabled = true\nmetrics.bind = {}\nmetrics.multiprocess_dir = {}\n",
            socket.display(),
            dir.path().join("metrics").display()
        ),
    );
    let events_path = dir.path().join("events.jsonl");
    let master = KillOnDrop(
        sim_command(dir.path())
            .args(["-k", "-n", "2", "-m", "manual", "-b", "127.0.0.1:0,r", "--"])
            .arg(binary())
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let port = wait_events(&events_path, sim_port);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let acked_workers = wait_events(&events_path, |e| {
        let acked = acked(e);
        (acked.len() == 2).then_some(acked)
    });
    for _ in 0..10 {
        assert_eq!(get(addr, "/").status, 200);
    }
    let unix_scrape = || {
        let reply = unix_request(&socket, "/metrics");
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        reply
    };
    let text = unix_scrape();
    assert_eq!(total(&text, "baseplate_worker_processes"), 2.0, "{text}");
    assert_eq!(total(&text, "http_server_requests_total"), 10.0, "{text}");
    // Kill the worker serving the socket: the other takes it over.
    let holder = unix_listener(&socket, &acked_workers).expect("one worker serves the socket");
    kill(Pid::from_raw(holder), Signal::SIGKILL).unwrap();
    let started = std::time::Instant::now();
    loop {
        // The survivor, or the worker started in the killed one's place.
        let now = unix_listener(&socket, &live_workers(&events(&events_path)));
        if now.is_some_and(|pid| pid != holder) {
            let text = unix_scrape();
            assert_eq!(total(&text, "http_server_requests_total"), 10.0, "{text}");
            break;
        }
        assert!(started.elapsed() < WAIT, "no worker took the socket over");
        thread::sleep(std::time::Duration::from_millis(50));
    }
    drop(master);
}

/// `GET path` over the UNIX socket at `socket`; the whole raw reply.
fn unix_request(socket: &Path, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(socket).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    reply
}

/// Which of `pids` listens on the UNIX socket at `path`.
fn unix_listener(path: &Path, pids: &std::collections::BTreeSet<i32>) -> Option<i32> {
    let table = std::fs::read_to_string("/proc/net/unix").unwrap();
    let wanted = path.to_str().unwrap();
    let inode: u64 = table.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields.get(3) == Some(&"00010000") && fields.get(7) == Some(&wanted))
            .then(|| fields[6].parse().ok())?
    })?;
    pids.iter()
        .copied()
        .find(|&pid| procfs::socket_inodes(pid).contains(&inode))
}

/// Default metrics directories do not pile up (#23 item 11): a server run
/// without Einhorn removes its own `process-PID` directory when it stops,
/// and a starting server removes the default directories whose owner
/// (process or Einhorn master) is gone, keeping those whose owner lives.
#[test]
fn default_metrics_directories_are_removed_when_their_owner_is_gone() {
    let tmp = TempDir::new();
    let base = tmp
        .path()
        .join(format!("baseplate-metrics-{}", nix::unistd::geteuid()));
    let dead = {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        child.wait().unwrap();
        child.id()
    };
    std::fs::create_dir_all(base.join(format!("einhorn-{dead}"))).unwrap();
    std::fs::write(base.join(format!("einhorn-{dead}/w-1-{dead}-1.db")), b"old").unwrap();
    std::fs::create_dir_all(base.join(format!("process-{dead}"))).unwrap();
    let living = base.join(format!("einhorn-{}", std::process::id()));
    std::fs::create_dir_all(&living).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o700)).unwrap();

    let config = tmp.write(
        "app.ini",
        &format!(
            "[server:main]\nfactory = baseplate.server.wsgi\n\n{EXAMPLE_APP}\
             metrics.enabled = true\nmetrics.bind = 127.0.0.1:{}\n",
            fixed_port()
        ),
    );
    let mut command = std::process::Command::new(binary());
    command
        .args(["--bind", "127.0.0.1:0"])
        .arg(&config)
        .env("TMPDIR", tmp.path())
        .env_remove(baseplate::metrics::MULTIPROC_DIR_VAR);
    let mut server = Server::spawn(command, TempDir::new());
    server.wait_listening();
    let own = base.join(format!("process-{}", server.pid()));
    assert!(own.is_dir(), "{}", server.output());
    let mut left: Vec<String> = std::fs::read_dir(&base)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    let mut expected = vec![
        format!("einhorn-{}", std::process::id()),
        format!("process-{}", server.pid()),
    ];
    expected.sort();
    assert_eq!(left, expected, "the dead owners' directories are gone");
    server.signal(Signal::SIGTERM);
    assert!(server.wait_exit(WAIT).success());
    assert!(
        !own.exists(),
        "the server removed its own directory at exit"
    );
    assert!(living.is_dir());
}
