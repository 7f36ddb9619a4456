//! A strict settings struct (`#[serde(deny_unknown_fields)]`) in a user's
//! own crate: baseplate's keys in the same app section never reach it, a
//! misspelled key is located and the near key suggested, and baseplate's
//! bad values and the app's come out in one run.

use std::process::Command;

/// Runs `downstream-service --check` on an app section of `app_keys`.
fn check(app_keys: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("app.ini");
    std::fs::write(
        &config,
        format!(
            "[server:main]\nfactory = baseplate.server.wsgi\n\n\
             [app:main]\nfactory = downstream.web:make_app\n{app_keys}"
        ),
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_downstream-service"))
        .args(["--check", config.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Lines as `app.ini:LINE: ...`, without the temporary directory.
    let shown = stderr.replace(&format!("{}/", dir.path().display()), "");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        shown,
    )
}

#[test]
fn baseplates_own_keys_do_not_reach_a_strict_struct() {
    let (code, stdout, stderr) = check(
        "greeting = hi\nmetrics.enabled = false\nmetrics.namespace = x\n\
         tracing.service_name = downstream\nserver_timeout.default = 5 seconds\n",
    );
    assert_eq!((code, stderr.as_str()), (0, ""), "{stdout}");
    assert!(stdout.starts_with("config OK"), "{stdout}");
}

#[test]
fn a_misspelled_key_is_located_with_the_near_one() {
    let (code, _, stderr) = check("greting = hi\n");
    assert_eq!(code, 1);
    assert_eq!(
        stderr,
        "error: app.ini:6: [app:main] greting: unknown key; expected one of: factory, \
         greeting, delay_ms (did you mean `greeting`?)\n"
    );
}

#[test]
fn baseplates_bad_values_and_the_apps_come_out_in_one_run() {
    let (code, _, stderr) = check("metrics.enabled = yes\ndelay_ms = soon\n");
    assert_eq!(code, 1);
    assert_eq!(
        stderr,
        "error: app.ini:6: [app:main] metrics.enabled: \"yes\" is not one of: true, false\n\
         error: app.ini:7: [app:main] delay_ms: \"soon\" is not a whole number\n"
    );
}
