//! A service's own integration test, the way `axum::serve` allows one:
//! bind `127.0.0.1:0`, serve in-process (`Serve::serve_on`), call, stop,
//! and find the process as it was. One test in its own binary, because
//! signal dispositions belong to the whole process.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

/// The signals `baseplate-serve` handles as a process.
const SIGNALS: [(&str, u32); 5] = [
    ("SIGHUP", 1),
    ("SIGINT", 2),
    ("SIGUSR1", 10),
    ("SIGUSR2", 12),
    ("SIGTERM", 15),
];

/// The process's caught and ignored signal masks (`/proc/self/status`).
fn dispositions() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let mask = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
            .unwrap()
    };
    (mask("SigCgt:"), mask("SigIgn:"))
}

/// The signals of [`SIGNALS`] not at their default action.
fn not_default() -> Vec<&'static str> {
    let (caught, ignored) = dispositions();
    SIGNALS
        .iter()
        .filter(|(_, n)| (caught | ignored) & (1 << (n - 1)) != 0)
        .map(|(name, _)| *name)
        .collect()
}

fn fixture(name: &str) -> String {
    format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn connect(address: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream
}

fn http_get(address: SocketAddr) -> String {
    let mut stream = connect(address);
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    reply
}

/// `add(1, 2)` in framed binary; the reply's payload.
fn thrift_add(address: SocketAddr) -> Vec<u8> {
    let mut call = vec![0x80, 0x01, 0x00, 0x01, 0, 0, 0, 3];
    call.extend_from_slice(b"add");
    call.extend_from_slice(&1i32.to_be_bytes());
    for (id, n) in [(1u8, 1i32), (2, 2)] {
        call.extend_from_slice(&[8, 0, id]);
        call.extend_from_slice(&n.to_be_bytes());
    }
    call.push(0);
    let mut stream = connect(address);
    stream
        .write_all(&(call.len() as u32).to_be_bytes())
        .unwrap();
    stream.write_all(&call).unwrap();
    let mut length = [0u8; 4];
    stream.read_exact(&mut length).unwrap();
    let mut reply = vec![0; u32::from_be_bytes(length) as usize];
    stream.read_exact(&mut reply).unwrap();
    reply
}

/// Serves `config` in-process on a fresh port, runs `call` against it,
/// completes the shutdown future, and waits for the run to return.
async fn serve_and_call<T: Send + 'static>(config: &str, call: fn(SocketAddr) -> T) -> T {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let args = baseplate::Args::parse_command_line(["my-service", config]).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let serve = baseplate::Serve::new().with_examples();
        serve
            .serve_on(listener, &args, async {
                let _ = stopped.await;
            })
            .await
    });
    let answer = tokio::task::spawn_blocking(move || call(address))
        .await
        .unwrap();
    stop.send(()).unwrap();
    let returned = tokio::time::timeout(Duration::from_secs(30), server)
        .await
        .expect("the in-process run returned after its shutdown future completed");
    returned.unwrap().unwrap();
    answer
}

#[test]
fn a_service_is_served_in_process_and_the_process_is_left_as_it_was() {
    assert_eq!(not_default(), Vec::<&str>::new(), "before serving");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let reply = serve_and_call(&fixture("example.ini"), http_get).await;
        assert!(reply.starts_with("HTTP/1.1 200 OK"), "{reply}");
        assert!(reply.ends_with("hello from baseplate-serve\n"), "{reply}");

        let reply = serve_and_call(&fixture("thrift-async.ini"), thrift_add).await;
        // A REPLY to `add`, whose result struct's field 0 is the i32 3.
        assert_eq!(&reply[..4], &[0x80, 0x01, 0x00, 0x02], "{reply:?}");
        assert!(reply.ends_with(&[8, 0, 0, 0, 0, 0, 3, 0]), "{reply:?}");
    });
    drop(runtime);
    assert_eq!(
        not_default(),
        Vec::<&str>::new(),
        "serving in-process changed these signals' dispositions"
    );
}
