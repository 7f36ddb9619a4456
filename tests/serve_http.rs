//! End-to-end: the shipped binary serving the example app over HTTP.

mod common;

use common::*;

#[test]
fn example_routes() {
    let server = Server::start(&config_with(""), &[]);
    let addr = server.addr();

    let r = get(addr, "/");
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "hello from baseplate-serve\n")
    );

    let r = get(addr, "/health");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.text(),
        format!(
            "{{\"pid\":{},\"probe\":\"readiness\",\"status\":\"ok\"}}",
            server.child.id()
        )
    );

    let r = get(addr, "/sleep?ms=20");
    assert_eq!((r.status, r.text().as_str()), (200, "slept 20 ms"));
    assert_eq!(get(addr, "/sleep?ms=abc").status, 400);

    let r = request(addr, "POST", "/echo", &[], b"some bytes\x00\xff");
    assert_eq!(
        (r.status, r.body.as_slice()),
        (200, &b"some bytes\x00\xff"[..])
    );

    let r = get(addr, "/config");
    assert_eq!(
        r.text(),
        r#"{"backends":{},"cache":null,"deadline_ms":null,"factory":"baseplate.examples.http:make_app","greeting":null,"motd":null,"run_as_uid":null,"sample_rate":null,"secret_bytes":null,"tags":null,"verbose":null}"#
    );

    assert_eq!(get(addr, "/nope").status, 404);
    assert_eq!(request(addr, "POST", "/", &[], b"").status, 405);
}

#[test]
fn keep_alive_serves_several_requests_on_one_connection() {
    let server = Server::start(&config_with(""), &[]);
    let mut stream = connect(server.addr());
    for _ in 0..3 {
        send(&mut stream, "GET", "/", &[], b"");
        let r = read_response(&mut stream).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("connection"), None);
    }
}

#[test]
fn the_server_spawns_no_processes() {
    let server = Server::start(&config_with(""), &[]);
    for path in ["/", "/sleep?ms=1", "/nope"] {
        get(server.addr(), path);
    }
    // Each thread lists the children it forked; none should have any.
    let tasks = format!("/proc/{}/task", server.pid());
    for task in std::fs::read_dir(&tasks).unwrap() {
        let children = std::fs::read_to_string(task.unwrap().path().join("children")).unwrap();
        assert_eq!(children.trim(), "", "children in {tasks}");
    }
}

#[test]
fn logs_are_json_lines_with_pid_and_request_trace_id() {
    let mut server = Server::start(&config_with(""), &[]);
    let r = request(
        server.addr(),
        "GET",
        "/sleep?ms=1",
        &[("X-Trace", "12345")],
        b"",
    );
    assert_eq!(r.status, 200);
    let line = server.wait_for("sleeping for 1 ms");
    let value: serde_json::Value = serde_json::from_str(&line).expect("a JSON log line");
    assert_eq!(value["trace_id"], "12345");
    assert_eq!(value["pid"], server.child.id());
    assert_eq!(value["level"], "INFO");

    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    request(
        server.addr(),
        "GET",
        "/sleep?ms=2",
        &[("traceparent", traceparent)],
        b"",
    );
    let line = server.wait_for("sleeping for 2 ms");
    assert!(
        line.contains("\"trace_id\":\"4bf92f3577b34da6a3ce929d0e0e4736\""),
        "{line}"
    );

    request(server.addr(), "GET", "/sleep?ms=3", &[], b"");
    let line = server.wait_for("sleeping for 3 ms");
    let value: serde_json::Value = serde_json::from_str(&line).unwrap();
    let generated = value["trace_id"].as_str().unwrap();
    assert_eq!(generated.len(), 32, "{line}");
    assert!(generated.bytes().all(|b| b.is_ascii_hexdigit()));
}

#[test]
fn access_log_handler_logs_each_request_at_debug() {
    let config = config_with("handler = baseplate.handlers.access_log");
    let mut server = Server::start(&config, &["--debug"]);
    get(server.addr(), "/?x=1");
    let line = server.wait_for("/?x=1");
    assert!(line.contains("\"level\":\"DEBUG\""), "{line}");
    assert!(line.contains("\\\"GET /?x=1 HTTP/1.1\\\" 200"), "{line}");
    assert!(line.contains("127.0.0.1:"), "{line}");
}

#[test]
fn without_debug_the_access_log_is_silent() {
    let config = config_with("handler = baseplate.handlers.access_log");
    let mut server = Server::start(&config, &[]);
    get(server.addr(), "/health?quiet=1");
    // A later INFO line proves the output is flowing.
    get(server.addr(), "/sleep?ms=1");
    server.wait_for("sleeping for 1 ms");
    assert!(!server.output().contains("quiet=1"), "{}", server.output());
}

#[test]
fn unix_socket_bind_replaces_a_stale_socket_file() {
    let dir = TempDir::new();
    let socket = dir.path().join("app.sock");
    // Leave a socket file that nobody listens on.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(socket.exists());
    let config = dir.write("app.ini", &config_with(""));
    let mut command = std::process::Command::new(binary());
    command.arg("--bind").arg(&socket).arg(&config);
    let mut server = Server::spawn(command, TempDir::new());
    let line = server.wait_for("Listening on");
    assert!(line.contains(&socket.display().to_string()), "{line}");

    let reply = unix_get(&socket);
    assert!(reply.starts_with("HTTP/1.1 200 OK"), "{reply}");
    assert!(reply.ends_with("hello from baseplate-serve\n"), "{reply}");

    // A second server must not steal the live socket.
    let (code, _, stderr) = run_once(&config_with(""), &["--bind", socket.to_str().unwrap()]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("another process is listening on it"),
        "{stderr}"
    );
}

#[test]
fn an_app_panic_costs_one_500() {
    let mut server = Server::start(&config_with(""), &[]);
    let r = get(server.addr(), "/panic");
    assert_eq!(
        (r.status, r.text().as_str()),
        (500, "Internal Server Error")
    );
    let line = server.wait_for("the app panicked");
    assert!(
        line.contains("\"level\":\"ERROR\"") && line.contains("trace_id"),
        "{line}"
    );
    assert_eq!(get(server.addr(), "/").status, 200);
}

#[test]
fn logs_are_text_lines_on_a_terminal() {
    // `script` gives the server a pseudo-terminal as stdout.
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        println!("SKIPPED: `script` (util-linux) is not installed");
        return;
    }
    let dir = TempDir::new();
    let config = dir.write("app.ini", &config_with(""));
    let command_line = format!(
        "exec {} --bind 127.0.0.1:0 {}",
        binary().display(),
        config.display()
    );
    let mut command = std::process::Command::new("script");
    command.args(["-qefc", &command_line, "/dev/null"]);
    let mut server = Server::spawn(command, TempDir::new());
    let line = server.wait_for("Listening on");
    // The guard kills `script`; the server under it is killed here too.
    let pid: i32 = line
        .split('[')
        .nth(1)
        .and_then(|rest| rest.split(']').next())
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {line}"));
    let _server_itself = KillPid(pid);
    assert!(!line.contains('{'), "expected a text line, got {line}");
    assert!(line.contains(" INFO  ["), "{line}");
    assert!(line.contains("] Listening on 127.0.0.1:"), "{line}");
}

#[test]
fn binds_ipv6_literals() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        println!("SKIPPED: this machine has no IPv6 loopback");
        return;
    }
    let dir = TempDir::new();
    let config = dir.write("app.ini", &config_with(""));
    let mut command = std::process::Command::new(binary());
    command.args(["--bind", "[::1]:0"]).arg(&config);
    let mut server = Server::spawn(command, TempDir::new());
    let addr = server.wait_listening();
    assert!(addr.is_ipv6(), "{addr}");
    assert_eq!(get(addr, "/").status, 200);
}

#[test]
fn the_example_app_reads_typed_settings() {
    let config = format!(
        "{}cache.ttl = 2 minutes\ncache.size = 10\ntags = a, b\nbackends.db = [::1]:5432\n",
        config_with("")
    );
    let server = Server::start(&config, &[]);
    let value: serde_json::Value =
        serde_json::from_str(&get(server.addr(), "/config").text()).unwrap();
    assert_eq!(
        value["cache"],
        serde_json::json!({"ttl_ms": 120000, "size": 10})
    );
    assert_eq!(value["tags"], serde_json::json!(["a", "b"]));
    assert_eq!(value["backends"]["db"], "[::1]:5432");

    let bad = format!("{}cache.ttl = soon\ntags = ,\n", config_with(""));
    let (code, _, stderr) = run_once(&bad, &["--check"]);
    assert_eq!(code, 1);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 3, "{stderr}");
    assert!(
        lines[0].ends_with("app.ini:6: [app:main] cache.ttl: \"soon\" is not a timespan; write a whole number and a unit, like \"30 seconds\""),
        "{stderr}"
    );
    assert!(
        lines[1].ends_with("app.ini:4: [app:main] cache.size: missing; add `size = ...`"),
        "{stderr}"
    );
    assert!(
        lines[2].ends_with("app.ini:7: [app:main] tags: no values provided"),
        "{stderr}"
    );
}

/// SIGKILLs a process that is not this test's child when dropped.
struct KillPid(i32);

impl Drop for KillPid {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}
