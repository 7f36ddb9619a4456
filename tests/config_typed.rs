//! `baseplate::config::from_section`: typed settings from a flat section.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use baseplate::config::{
    from_section, Base64, ConfigFile, Endpoint, Percent, Section, Timespan, TimespanOrInfinite,
};
use serde::Deserialize;

fn section(text: &str) -> Section {
    ConfigFile::parse(Path::new("app.ini"), text.as_bytes())
        .unwrap()
        .section("app", "main")
        .unwrap()
}

#[derive(Debug, Deserialize, PartialEq)]
struct Noodles {
    blah: Vec<String>,
    count: i32,
    #[serde(default)]
    sauce: Option<String>,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
enum Mode {
    Fast,
    Safe,
}

#[derive(Debug, Deserialize, PartialEq)]
struct Settings {
    noodles: Noodles,
    timeout: Timespan,
    deadline: TimespanOrInfinite,
    mode: Mode,
    enabled: bool,
    ratio: Percent,
    backend: Endpoint,
    secret: Base64,
    #[serde(default)]
    retries: Option<u32>,
    #[serde(default = "default_port")]
    port: u16,
    hosts: HashMap<String, Endpoint>,
    weights: Vec<f64>,
}

fn default_port() -> u16 {
    8080
}

const GOOD: &str = "[DEFAULT]\nshared = yes\n\n[app:main]\nfactory = x\nnoodles.blah = one, two , ,three\nnoodles.count = 1_000\n\
timeout = 30 seconds\ndeadline = infinite\nmode = safe\nenabled = True\nratio = 37.5%\nbackend = [::1]:9090\n\
secret = aGVsbG8=\nhosts.a = a.example:80\nhosts.b = /run/b.sock\nweights = 1.5, -2, 1e3\n";

#[test]
fn reads_nested_lists_options_defaults_maps_and_enums() {
    let s: Settings = from_section(&section(GOOD)).unwrap();
    assert_eq!(
        s.noodles,
        Noodles {
            blah: vec!["one".into(), "two".into(), "three".into()],
            count: 1000,
            sauce: None
        }
    );
    assert_eq!(s.timeout, Timespan(Duration::from_secs(30)));
    assert_eq!(s.deadline, TimespanOrInfinite::Infinite);
    assert_eq!(s.mode, Mode::Safe);
    assert!(s.enabled);
    assert_eq!(s.ratio, Percent(0.375));
    assert_eq!(
        s.backend,
        Endpoint::Tcp {
            host: "::1".into(),
            port: 9090
        }
    );
    assert_eq!(s.secret, Base64(b"hello".to_vec()));
    assert_eq!(s.retries, None);
    assert_eq!(s.port, 8080);
    assert_eq!(
        s.hosts["a"],
        Endpoint::Tcp {
            host: "a.example".into(),
            port: 80
        }
    );
    assert_eq!(s.hosts["b"], Endpoint::Unix("/run/b.sock".into()));
    assert_eq!(s.weights, vec![1.5, -2.0, 1000.0]);
}

#[test]
fn reports_every_bad_value_with_file_line_section_and_key() {
    let text = "[app:main]\nnoodles.blah =\nnoodles.count = x\ntimeout = 1 week\ndeadline = Infinite\nmode = Fast\n\
enabled = yes\nratio = 150%\nbackend = nohost\nsecret = abc\nhosts.a = h:p\nweights = 1, two\n";
    let errors = from_section::<Settings>(&section(text)).unwrap_err();
    let lines: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
    let expected = [
        "app.ini:2: [app:main] noodles.blah: no values provided",
        "app.ini:3: [app:main] noodles.count: \"x\" is not a whole number",
        "app.ini:4: [app:main] timeout: \"1 week\" has no known unit; use milliseconds, seconds, minutes, hours or days",
        "app.ini:5: [app:main] deadline: \"Infinite\" is not a timespan; write a whole number and a unit, like \"30 seconds\"",
        "app.ini:6: [app:main] mode: \"Fast\" is not one of: fast, safe",
        "app.ini:7: [app:main] enabled: \"yes\" is not one of: true, false",
        "app.ini:8: [app:main] ratio: \"150%\" is out of range; expected 0% to 100%",
        "app.ini:9: [app:main] backend: \"nohost\" has no port; expected HOST:PORT, like \"localhost:9090\"",
        "app.ini:10: [app:main] secret: not valid base64: the `=` padding is missing",
        "app.ini:11: [app:main] hosts.a: \"h:p\" has a port that is not a whole number (\"p\")",
        "app.ini:12: [app:main] weights: \"two\" is not a number",
    ];
    for e in expected {
        assert!(
            lines.iter().any(|l| l == e),
            "missing {e:?} in:\n{}",
            lines.join("\n")
        );
    }
    assert_eq!(lines.len(), expected.len(), "{}", lines.join("\n"));
}

#[test]
fn a_missing_key_is_reported_at_the_section() {
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Needs {
        noodles: Noodles,
    }
    let e = from_section::<Needs>(&section("\n[app:main]\nnoodles.blah = a\n")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "app.ini:2: [app:main] noodles.count: missing; add `count = ...`"
    );
}

#[test]
fn deny_unknown_fields_names_the_key_and_its_line() {
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Strict {
        factory: String,
        timeout: Timespan,
    }
    let text =
        "[DEFAULT]\nshared = 1\n[app:main]\nfactory = x\ntimeout = 1 second\ntimeuot = 2 seconds\n";
    let e = from_section::<Strict>(&section(text)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "app.ini:6: [app:main] timeuot: unknown key; expected one of: factory, timeout \
         (did you mean `timeout`?)"
    );
    // No suggestion when nothing is near.
    let text = "[app:main]\nfactory = x\ntimeout = 1 second\ncolour = blue\n";
    let e = from_section::<Strict>(&section(text)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "app.ini:4: [app:main] colour: unknown key; expected one of: factory, timeout"
    );
}
