//! A Thrift load generator: N connections, each calling a method of the
//! example service in a loop (pipeline depth 1) for a fixed time, then
//! printing calls/s and latency percentiles.
//!
//! ```text
//! cargo bench --bench thriftload -- ADDR [--connections N] [--seconds S] [--mode framed|header] [--method add|echo1k|is_healthy]
//! ```

#[path = "support/frame.rs"]
mod frame;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

struct Options {
    addr: String,
    connections: usize,
    seconds: f64,
    header: bool,
    method: String,
}

fn parse() -> Result<Options, String> {
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    let mut options = Options {
        addr: String::new(),
        connections: 32,
        seconds: 5.0,
        header: false,
        method: "add".to_string(),
    };
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--connections" => {
                options.connections = value()?
                    .parse()
                    .map_err(|e| format!("--connections: {e}"))?
            }
            "--seconds" => {
                options.seconds = value()?.parse().map_err(|e| format!("--seconds: {e}"))?
            }
            "--mode" => options.header = value()? == "header",
            "--method" => options.method = value()?,
            other if options.addr.is_empty() && !other.starts_with('-') => {
                options.addr = other.to_string()
            }
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    if options.addr.is_empty() {
        return Err("usage: thriftload ADDR [--connections N] [--seconds S] [--mode framed|header] [--method add|echo1k|is_healthy]".into());
    }
    Ok(options)
}

fn main() {
    let options = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let request = match frame::example_call(options.header, &options.method) {
        Ok(request) => request,
        Err(e) => {
            eprintln!("error: --method: {e}");
            std::process::exit(2);
        }
    };
    let deadline = Instant::now() + Duration::from_secs_f64(options.seconds);
    let workers: Vec<_> = (0..options.connections)
        .map(|_| {
            let request = request.clone();
            let addr = options.addr.clone();
            std::thread::spawn(move || -> Result<Vec<Duration>, String> {
                let mut stream =
                    TcpStream::connect(&addr).map_err(|e| format!("connect {addr}: {e}"))?;
                stream.set_nodelay(true).ok();
                let mut latencies = Vec::with_capacity(100_000);
                let mut reply = Vec::new();
                while Instant::now() < deadline {
                    let started = Instant::now();
                    stream.write_all(&request).map_err(|e| e.to_string())?;
                    let mut len = [0u8; 4];
                    stream.read_exact(&mut len).map_err(|e| e.to_string())?;
                    reply.resize(u32::from_be_bytes(len) as usize, 0);
                    stream.read_exact(&mut reply).map_err(|e| e.to_string())?;
                    latencies.push(started.elapsed());
                }
                Ok(latencies)
            })
        })
        .collect();
    let mut all = Vec::new();
    for worker in workers {
        match worker.join() {
            Ok(Ok(latencies)) => all.extend(latencies),
            Ok(Err(e)) => {
                eprintln!("error: {e}");
                std::process::exit(1);
            }
            Err(_) => std::process::exit(1),
        }
    }
    all.sort();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    println!(
        "calls/s {:.0} p50_ms {:.3} p99_ms {:.3} calls {}",
        all.len() as f64 / options.seconds,
        pct(0.50).as_secs_f64() * 1000.0,
        pct(0.99).as_secs_f64() * 1000.0,
        all.len()
    );
}
