//! Kubernetes: the manifests in docs/deploy/kubernetes.md parse and agree
//! with their config, and the shutdown sequence a kubelet drives works
//! against a real server: readiness fails at once on SIGTERM, requests keep
//! succeeding while the listener drains, and the process exits 0 within
//! `drain_time + stop_timeout` (+ `tracing.flush_timeout` with spans exported).

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use baseplate::config::values::parse_timespan;
use baseplate::config::ConfigFile;
use common::*;
use nix::sys::signal::Signal;
use serde_norway::Value;

/// The YAML documents of the doc's ```yaml blocks.
fn manifests() -> Vec<Value> {
    let doc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/deploy/kubernetes.md"),
    )
    .unwrap();
    let mut documents = Vec::new();
    let mut rest = doc.as_str();
    while let Some(start) = rest.find("```yaml\n") {
        let block = &rest[start + 8..];
        let end = block.find("```").expect("a closed yaml block");
        for part in block[..end].split("\n---\n") {
            let value: Value = serde_norway::from_str(part)
                .unwrap_or_else(|e| panic!("the YAML does not parse: {e}\n{part}"));
            documents.push(value);
        }
        rest = &block[end + 3..];
    }
    documents
}

fn of_kind<'a>(documents: &'a [Value], kind: &str) -> &'a Value {
    documents
        .iter()
        .find(|d| d["kind"].as_str() == Some(kind))
        .unwrap_or_else(|| panic!("no {kind} in the doc"))
}

#[test]
fn the_documented_manifests_parse_and_agree_with_their_config() {
    let documents = manifests();
    assert_eq!(documents.len(), 3, "ConfigMap, Deployment, Service");

    let ini = of_kind(&documents, "ConfigMap")["data"]["app.ini"]
        .as_str()
        .expect("app.ini in the ConfigMap");
    let config = ConfigFile::parse(Path::new("app.ini"), ini.as_bytes()).unwrap();
    let server = config.section("server", "main").unwrap();
    let timespan = |key: &str| parse_timespan(server.get(key).unwrap()).unwrap();
    // With spans exported, the last flush comes after stop_timeout.
    let app = config.section("app", "main").unwrap();
    let flush = match app.get("tracing.endpoint") {
        Some(_) => app
            .get("tracing.flush_timeout")
            .map_or(Duration::from_secs(5), |t| parse_timespan(t).unwrap()),
        None => Duration::ZERO,
    };
    let needed = timespan("drain_time") + timespan("stop_timeout") + flush;

    let deployment = of_kind(&documents, "Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    let grace = Duration::from_secs(pod["terminationGracePeriodSeconds"].as_u64().unwrap());
    assert!(
        grace > needed && grace <= needed + Duration::from_secs(10),
        "terminationGracePeriodSeconds {grace:?} should be a little over drain_time + stop_timeout + tracing.flush_timeout ({needed:?})"
    );
    let container = &pod["containers"][0];
    for (probe, name) in [
        ("startupProbe", "startup"),
        ("readinessProbe", "readiness"),
        ("livenessProbe", "liveness"),
    ] {
        let command: Vec<&str> = container[probe]["exec"]["command"]
            .as_sequence()
            .unwrap_or_else(|| panic!("{probe} is an exec probe"))
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(command[0], "baseplate-healthcheck", "{probe}");
        // The command line must be one baseplate-healthcheck accepts: run
        // it against a port nobody listens on, expecting exit 1 (unhealthy),
        // not 2 (usage).
        let mut args: Vec<String> = command[1..].iter().map(|s| s.to_string()).collect();
        let probe_at = args.iter().position(|a| a == "--probe").unwrap();
        assert_eq!(args[probe_at + 1], name, "{probe}");
        *args.last_mut().unwrap() = "127.0.0.1:1".to_string();
        let status = Command::new(env!("CARGO_BIN_EXE_baseplate-healthcheck"))
            .args(&args)
            .output()
            .unwrap()
            .status;
        assert_eq!(status.code(), Some(1), "{probe}: {args:?}");
        let timeout = container[probe]["timeoutSeconds"].as_u64().unwrap();
        let checker_timeout: u64 = args[args.iter().position(|a| a == "--timeout").unwrap() + 1]
            .parse()
            .unwrap();
        assert!(
            checker_timeout < timeout,
            "{probe}: the checker gives up first"
        );
    }
    let annotations = &deployment["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"].as_str(), Some("true"));
    let app = config.section("app", "main").unwrap();
    assert_eq!(app.get("metrics.enabled"), Some("true"));
    let bind: baseplate::config::Endpoint = app.get("metrics.bind").unwrap().parse().unwrap();
    let baseplate::config::Endpoint::Tcp { port, .. } = bind else {
        panic!("metrics.bind is not TCP")
    };
    assert_eq!(
        annotations["prometheus.io/port"].as_str(),
        Some(port.to_string().as_str())
    );
    let service = of_kind(&documents, "Service");
    assert_eq!(
        service["spec"]["selector"],
        deployment["spec"]["selector"]["matchLabels"]
    );
}

/// What one client request came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// A whole `200` response.
    Ok,
    /// Refused: the listener is closed.
    Refused,
    /// A kept-alive connection the server had closed before the request
    /// reached it (no byte of a response): the case HTTP clients retry on
    /// a new connection, which the Service routes to another pod.
    Rerouted,
    /// Anything else: a request the server dropped.
    Failed,
}

/// Sends `GET /` on `stream` (connecting first when it is `None`); keeps
/// the connection for the next request unless the response says close.
fn request(addr: SocketAddr, stream: &mut Option<TcpStream>) -> (Outcome, String) {
    let reused = stream.is_some();
    if stream.is_none() {
        match TcpStream::connect(addr) {
            Ok(s) => {
                s.set_read_timeout(Some(WAIT)).unwrap();
                s.set_nodelay(true).unwrap();
                *stream = Some(s);
            }
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                return (Outcome::Refused, e.to_string())
            }
            Err(e) => return (Outcome::Failed, format!("connect: {e}")),
        }
    }
    let s = stream.as_mut().unwrap();
    let sent = s.write_all(b"GET / HTTP/1.1\r\nHost: k\r\n\r\n");
    let mut response = Vec::new();
    let mut chunk = [0u8; 4096];
    let read = loop {
        if let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&response[..end]).to_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if response.len() >= end + 4 + length {
                break Ok(head);
            }
        }
        match s.read(&mut chunk) {
            Ok(0) => break Err("EOF".to_string()),
            Ok(n) => response.extend_from_slice(&chunk[..n]),
            Err(e) => break Err(e.to_string()),
        }
    };
    match (sent, read) {
        (Ok(()), Ok(head)) if head.starts_with("http/1.1 200") => {
            if head.contains("connection: close") {
                *stream = None;
            }
            (Outcome::Ok, String::new())
        }
        (_, Ok(head)) => {
            *stream = None;
            (Outcome::Failed, head)
        }
        (_, Err(e)) => {
            *stream = None;
            if reused && response.is_empty() {
                (Outcome::Rerouted, e)
            } else {
                (Outcome::Failed, e)
            }
        }
    }
}

/// A steady client: a request every 20 ms, on one kept-alive connection or
/// a new connection each time. It stops at the first refusal or reroute,
/// or, for new connections, once `routed_away` is set (the Service has
/// dropped this pod from its endpoints).
fn steady_client(
    addr: SocketAddr,
    keep_alive: bool,
    routed_away: Arc<AtomicBool>,
) -> thread::JoinHandle<Vec<(Instant, Outcome, String)>> {
    thread::spawn(move || {
        let mut outcomes = Vec::new();
        let mut stream = None;
        loop {
            if !keep_alive && routed_away.load(Ordering::SeqCst) {
                return outcomes;
            }
            let sent_at = Instant::now();
            let (outcome, detail) = request(addr, &mut stream);
            outcomes.push((sent_at, outcome, detail));
            if matches!(outcome, Outcome::Refused | Outcome::Rerouted) {
                return outcomes;
            }
            if !keep_alive {
                stream = None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    })
}

fn readiness(addr: SocketAddr) -> bool {
    Command::new(env!("CARGO_BIN_EXE_baseplate-healthcheck"))
        .args(["--probe", "readiness", "--timeout", "5", "wsgi"])
        .arg(addr.to_string())
        .output()
        .unwrap()
        .status
        .success()
}

#[test]
fn the_kubelet_shutdown_sequence_loses_no_request() {
    let drain = Duration::from_secs(2);
    let stop_timeout = Duration::from_secs(5);
    let mut server = Server::start(
        &config_with("drain_time = 2 seconds\nstop_timeout = 5 seconds"),
        &[],
    );
    let addr = server.addr();
    let routed_away = Arc::new(AtomicBool::new(false));
    let clients = [
        steady_client(addr, true, Arc::clone(&routed_away)),
        steady_client(addr, false, Arc::clone(&routed_away)),
    ];

    // The kubelet: a readiness probe every 200 ms. SIGTERM goes right after
    // the third healthy one, so the next probe is at most 200 ms later.
    let period = Duration::from_millis(200);
    let mut healthy = 0;
    let mut signaled_at = None;
    let mut first_after_signal = None;
    let mut tick = Instant::now();
    while first_after_signal.is_none() {
        let started = Instant::now();
        let ready = readiness(addr);
        match signaled_at {
            None => {
                assert!(
                    ready,
                    "readiness failed before SIGTERM:\n{}",
                    server.output()
                );
                healthy += 1;
                if healthy == 3 {
                    server.signal(Signal::SIGTERM);
                    signaled_at = Some(Instant::now());
                }
            }
            Some(at) => first_after_signal = Some((started.duration_since(at), ready)),
        }
        tick += period;
        thread::sleep(tick.saturating_duration_since(Instant::now()));
    }
    let signaled_at = signaled_at.unwrap();
    let (after, ready) = first_after_signal.unwrap();
    assert!(
        after <= period,
        "the next probe came {after:?} after SIGTERM"
    );
    assert!(!ready, "readiness still passed {after:?} after SIGTERM");
    // The endpoints controller drops the pod: no new connections from now.
    routed_away.store(true, Ordering::SeqCst);

    let status = server.wait_exit((drain + stop_timeout).saturating_sub(signaled_at.elapsed()));
    let exited_after = signaled_at.elapsed();
    assert!(status.success(), "{status:?}\n{}", server.output());
    assert!(
        exited_after >= drain,
        "exited {exited_after:?} after SIGTERM, before drain_time"
    );

    let mut served_during_drain = 0;
    for client in clients {
        for (sent_at, outcome, detail) in client.join().unwrap() {
            assert_ne!(
                outcome,
                Outcome::Failed,
                "a request sent {:?} after SIGTERM failed: {detail}\n{}",
                sent_at.checked_duration_since(signaled_at),
                server.output()
            );
            if outcome == Outcome::Ok && sent_at > signaled_at {
                served_during_drain += 1;
            }
            if outcome == Outcome::Refused || outcome == Outcome::Rerouted {
                // Only once the listener closed, after drain_time.
                assert!(
                    sent_at >= signaled_at + drain - Duration::from_millis(100),
                    "{outcome:?} {:?} after SIGTERM, during the drain: {detail}",
                    sent_at.checked_duration_since(signaled_at)
                );
            }
        }
    }
    // The kept-alive client alone sends a request every ~20 ms for 2 s.
    assert!(
        served_during_drain >= 10,
        "only {served_during_drain} requests served during the drain"
    );
}
