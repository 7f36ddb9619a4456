//! End-to-end: `--check`, `--print-config`, and every startup error path:
//! exit status 1 (2 for usage errors) and exactly one `error:` line.

mod common;

use assert_cmd::Command;
use common::*;

#[test]
fn check_the_shipped_example_config() {
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/example.ini");
    Command::new(binary())
        .args(["--check", fixture])
        .assert()
        .success()
        .stdout(predicates::str::contains(
            "config OK: server \"main\" (baseplate.server.wsgi), app \"main\" (baseplate.examples.http:make_app)",
        ));
}

#[test]
fn check_binds_nothing() {
    // The port is taken, yet --check succeeds: it never binds.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let bind = taken.local_addr().unwrap().to_string();
    let (code, stdout, stderr) = run_once(&config_with(""), &["--check", "--bind", &bind]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("config OK"), "{stdout}");
}

#[test]
fn print_config_merges_default_and_expands_variables() {
    let config = "[DEFAULT]\nshared = from default\nhome = $BP_TEST_HOME/x\n\n\
                  [server:web]\nfactory = baseplate.server.http\nshared = own\n\n\
                  [app:main]\nfactory = baseplate.examples.http:make_app\nunset = ${BP_TEST_UNSET} $$\n\
                  hosts =\n  a\n  b\n";
    let dir = TempDir::new();
    let path = dir.write("app.ini", config);
    let output = Command::new(binary())
        .args(["--print-config", "--server-name", "web"])
        .arg(&path)
        .env("BP_TEST_HOME", "/home/me")
        .env_remove("BP_TEST_UNSET")
        .output()
        .unwrap();
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        concat!(
            r#"{"server":{"shared":"own","home":"/home/me/x","factory":"baseplate.server.http"},"#,
            r#""app":{"shared":"from default","home":"/home/me/x","factory":"baseplate.examples.http:make_app","unset":"${BP_TEST_UNSET} $$","hosts":"\na\nb"}}"#,
            "\n"
        )
    );
}

/// Runs a config that must fail and returns its single error line.
fn startup_error(config: &str, args: &[&str]) -> String {
    let (code, _stdout, stderr) = run_once(config, args);
    assert_eq!(code, 1, "expected exit status 1; stderr:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "expected one line on stderr, got:\n{stderr}"
    );
    assert!(lines[0].starts_with("error: "), "{stderr}");
    lines[0].to_string()
}

#[test]
fn ini_syntax_errors_name_the_line() {
    let e = startup_error("[app:main]\nfactory = a\nfactory = b\n", &[]);
    assert!(
        e.ends_with("app.ini:3: [app:main] factory: key is defined twice in this section"),
        "{e}"
    );
    let e = startup_error("[server:main]\n[app:main]\n[server:main]\n", &[]);
    assert!(
        e.ends_with("app.ini:3: section [server:main] is defined twice"),
        "{e}"
    );
    let e = startup_error("this is not an ini file\n", &[]);
    assert!(e.contains("app.ini:1: expected a section header"), "{e}");
    let e = startup_error(&format!("{}\njust a key\n", config_with("")), &[]);
    assert!(e.contains("expected `key = value`"), "{e}");
    assert!(e.contains("app.ini:7:"), "{e}");
    let e = startup_error("[server:main]\nfactory = \u{0}\u{1}", &[]);
    assert!(e.contains("app.ini"), "{e}");
}

#[test]
fn not_utf8_is_an_error() {
    let dir = TempDir::new();
    let path = dir.path().join("app.ini");
    std::fs::write(&path, b"[server:main]\nfactory = \xff\n").unwrap();
    let output = Command::new(binary()).arg(&path).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("app.ini:2: the file is not valid UTF-8"),
        "{stderr}"
    );
}

#[test]
fn missing_sections_and_factories() {
    let e = startup_error(EXAMPLE_APP, &[]);
    assert!(
        e.contains("no [server:main] section (sections found: [app:main])"),
        "{e}"
    );
    let e = startup_error(&config_with(""), &["--app-name", "other"]);
    assert!(e.contains("no [app:other] section"), "{e}");
    assert!(e.contains("--app-name"), "{e}");
    let e = startup_error(
        "[server:main]\nstop_timeout = 1\n[app:main]\nfactory = x\n",
        &[],
    );
    assert!(
        e.contains("app.ini:1: [server:main] factory: missing"),
        "{e}"
    );
    let e = startup_error(
        "[server:main]\nfactory = baseplate.server.wsgi\n[app:main]\nx = 1\n",
        &[],
    );
    assert!(e.contains("app.ini:3: [app:main] factory: missing"), "{e}");
}

#[test]
fn unknown_factories_list_what_is_registered() {
    let e = startup_error(
        "[server:main]\nfactory = baseplate.server.wsgi\n[app:main]\nfactory = x.y:z\n",
        &[],
    );
    assert!(
        e.ends_with(
            "/app.ini:4: [app:main] factory: app factory \"x.y:z\" is not registered in this binary; \
             registered: baseplate.examples.http:make_app, baseplate.examples.thrift:make_processor, \
             baseplate.examples.thrift_async:make_service, baseplate.examples.thrift_test:make_service"
        ),
        "{e}"
    );
    let e = startup_error(
        "[server:main]\nfactory = baseplate.server.wsgi\n[app:main]\nfactory = baseplate.examples.http:make_ap\n",
        &[],
    );
    assert!(
        e.ends_with("(did you mean \"baseplate.examples.http:make_app\"?)"),
        "{e}"
    );
    let e = startup_error(
        &format!("[server:main]\nfactory = baseplate.server.wsgii\n{EXAMPLE_APP}"),
        &[],
    );
    assert!(
        e.contains(
            "[server:main] factory: server factory \"baseplate.server.wsgii\" is not registered"
        ),
        "{e}"
    );
    assert!(e.contains("did you mean \"baseplate.server.wsgi\""), "{e}");
    let e = startup_error(&config_with("handler = nope"), &[]);
    assert!(
        e.contains("app.ini:3: [server:main] handler: handler \"nope\" is not registered"),
        "{e}"
    );
}

#[test]
fn invalid_server_options_name_the_key() {
    let e = startup_error(&config_with("stop_timeout = soon"), &[]);
    assert!(
        e.ends_with(
            "app.ini:3: [server:main] stop_timeout: \"soon\" is not a number of seconds from 0 up (or a timespan like \"30 seconds\")"
        ),
        "{e}"
    );
    let e = startup_error(&config_with("drain_time = 2.5"), &[]);
    assert!(
        e.ends_with("app.ini:3: [server:main] drain_time: \"2.5\" is not a timespan; write a whole number and a unit, like \"30 seconds\""),
        "{e}"
    );
    let e = startup_error(&config_with("drain_time = 1 week"), &[]);
    assert!(e.ends_with("[server:main] drain_time: \"1 week\" has no known unit; use milliseconds, seconds, minutes, hours or days"), "{e}");
    let e = startup_error(&config_with("max_concurrency = lots"), &[]);
    assert!(
        e.ends_with("[server:main] max_concurrency: \"lots\" is not a whole number"),
        "{e}"
    );
    let e = startup_error(&config_with("max_concurrency = 0"), &[]);
    assert!(
        e.contains("[server:main] max_concurrency: 0 is not allowed"),
        "{e}"
    );
}

#[test]
fn unknown_server_keys_are_warnings() {
    let server = Server::start(&config_with("monitoring.blocked_hub = 1 second"), &[]);
    // Logged before `Listening on`, which Server::start waited for.
    let output = server.output();
    let line = output
        .lines()
        .find(|l| l.contains("monitoring.blocked_hub"))
        .expect("a warning");
    assert!(line.contains("\"level\":\"WARN\""), "{line}");
    assert!(
        line.contains("app.ini:3: [server:main] monitoring.blocked_hub: not an option"),
        "{line}"
    );
}

#[test]
fn missing_config_file_and_bind_failures() {
    let output = Command::new(binary())
        .arg("/nonexistent/app.ini")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "error: /nonexistent/app.ini: cannot read the config file: No such file or directory\n"
    );

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let bind = taken.local_addr().unwrap().to_string();
    let e = startup_error(&config_with(""), &["--bind", &bind]);
    assert_eq!(
        e,
        format!("error: cannot listen on {bind} (--bind {bind}): Address already in use")
    );

    let e = startup_error(&config_with(""), &["--bind", "no-such-host.invalid:80"]);
    assert!(
        e.contains("cannot resolve host \"no-such-host.invalid\""),
        "{e}"
    );
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        vec![],
        vec!["--bind", "foo", "app.ini"],
        vec!["--bind", "127.0.0.1:abc", "app.ini"],
        vec!["--no-such-flag", "app.ini"],
    ] {
        let output = Command::new(binary()).args(&args).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.starts_with("error: "), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    let output = Command::new(binary())
        .args(["--bind", "h:p", "x.ini"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("\"h:p\" has a port that is not a whole number (\"p\")"),
        "{stderr}"
    );
}

#[test]
fn invalid_rust_log_is_an_error() {
    let dir = TempDir::new();
    let path = dir.write("app.ini", &config_with(""));
    let output = Command::new(binary())
        .args(["--bind", "127.0.0.1:0"])
        .arg(&path)
        .env("RUST_LOG", "baseplate=loud")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with("error: RUST_LOG=\"baseplate=loud\" is not a valid log filter"),
        "{stderr}"
    );
}

#[test]
fn every_bad_server_option_is_reported_at_once() {
    let (code, _, stderr) = run_once(
        &config_with("stop_timeout = soon\ndrain_time = 1 week\nmax_concurrency = 0"),
        &["--check"],
    );
    assert_eq!(code, 1);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 3, "{stderr}");
    assert!(
        lines[0].ends_with(
            "app.ini:3: [server:main] stop_timeout: \"soon\" is not a number of seconds from 0 up (or a timespan like \"30 seconds\")"
        ),
        "{stderr}"
    );
    assert!(
        lines[1].contains("app.ini:4: [server:main] drain_time: ")
            && lines[1]
                .ends_with("has no known unit; use milliseconds, seconds, minutes, hours or days"),
        "{stderr}"
    );
    assert!(
        lines[2].contains("app.ini:5: [server:main] max_concurrency: 0 is not allowed"),
        "{stderr}"
    );
    assert!(lines.iter().all(|l| l.starts_with("error: ")));
}
