//! The reports: a table for people, JUnit XML for CI systems, JSON for tools.

use serde_json::json;

/// One scenario's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The scenario name.
    pub name: String,
    /// Whether it passed.
    pub passed: bool,
    /// What it saw, or why it failed.
    pub reason: String,
    /// How long it took.
    pub seconds: f64,
}

/// The human table, one line per scenario.
pub fn table(outcomes: &[Outcome]) -> String {
    let width = outcomes
        .iter()
        .map(|o| o.name.len())
        .max()
        .unwrap_or(8)
        .max(8);
    let mut out = format!("{:width$}  RESULT  TIME     REASON\n", "SCENARIO");
    for o in outcomes {
        out.push_str(&format!(
            "{:width$}  {:6}  {:>6.2}s  {}\n",
            o.name,
            if o.passed { "PASS" } else { "FAIL" },
            o.seconds,
            o.reason
        ));
    }
    let failed = outcomes.iter().filter(|o| !o.passed).count();
    out.push_str(&format!(
        "{} passed, {failed} failed\n",
        outcomes.len() - failed
    ));
    out
}

fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// A JUnit XML document with one testcase per scenario.
pub fn junit(outcomes: &[Outcome]) -> String {
    let failures = outcomes.iter().filter(|o| !o.passed).count();
    let total: f64 = outcomes.iter().map(|o| o.seconds).sum();
    let mut xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n  <testsuite name=\"einhorn-conformance\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" time=\"{total:.3}\">\n",
        outcomes.len()
    );
    for o in outcomes {
        let name = xml_escape(&o.name);
        if o.passed {
            xml.push_str(&format!(
                "    <testcase classname=\"einhorn-conformance\" name=\"{name}\" time=\"{:.3}\">\n      <system-out>{}</system-out>\n    </testcase>\n",
                o.seconds,
                xml_escape(&o.reason)
            ));
        } else {
            let reason = xml_escape(&o.reason);
            xml.push_str(&format!(
                "    <testcase classname=\"einhorn-conformance\" name=\"{name}\" time=\"{:.3}\">\n      <failure message=\"{reason}\">{reason}</failure>\n    </testcase>\n",
                o.seconds
            ));
        }
    }
    xml.push_str("  </testsuite>\n</testsuites>\n");
    xml
}

/// The JSON report.
pub fn json(command: &[String], protocol: &str, outcomes: &[Outcome]) -> String {
    let scenarios: Vec<serde_json::Value> = outcomes
        .iter()
        .map(|o| json!({"name": o.name, "passed": o.passed, "reason": o.reason, "seconds": o.seconds}))
        .collect();
    let report = json!({
        "command": command,
        "protocol": protocol,
        "passed": outcomes.iter().all(|o| o.passed),
        "scenarios": scenarios,
    });
    serde_json::to_string_pretty(&report).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn junit_escapes_and_counts() {
        let outcomes = vec![
            Outcome {
                name: "ack".into(),
                passed: true,
                reason: "ok".into(),
                seconds: 0.5,
            },
            Outcome {
                name: "drain".into(),
                passed: false,
                reason: "got <500> & \"x\"".into(),
                seconds: 1.0,
            },
        ];
        let xml = junit(&outcomes);
        assert!(xml.contains("tests=\"2\" failures=\"1\""));
        assert!(xml.contains("message=\"got &lt;500&gt; &amp; &quot;x&quot;\""));
        assert!(table(&outcomes).ends_with("1 passed, 1 failed\n"));
    }
}
