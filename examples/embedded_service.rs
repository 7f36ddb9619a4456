//! Embedding: a binary with its own runtime and its own flags runs the
//! whole `baseplate-serve` lifecycle inside it, and decides itself when to
//! shut down (here: when a line `stop` arrives on stdin), besides the usual
//! signals.
//!
//! ```text
//! cargo run --example embedded_service -- --greeting howdy --bind :9090 my_service.ini
//! ```
//! with `my_service.ini`:
//! ```ini
//! [server:main]
//! factory = baseplate.server.wsgi
//!
//! [app:main]
//! factory = my_service.web:make_app
//! ```

use std::process::ExitCode;

use axum::routing::get;
use axum::Router;
use baseplate::{AppConfig, Served};
use clap::Parser;

/// An embedded service: baseplate-serve's arguments plus its own.
#[derive(Parser)]
#[command(name = "my-service", version)]
struct Cli {
    #[command(flatten)]
    serve: baseplate::Args,

    /// The word the service greets with
    #[arg(long, value_name = "WORD", default_value = "hello")]
    greeting: String,
}

/// Resolves when stdin says `stop` (or closes). Read on a thread of its
/// own: a blocking read on tokio's blocking pool would hold up the
/// runtime's shutdown at the end of `main`.
async fn stop_requested() {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            match line {
                Ok(line) if line.trim() == "stop" => break,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        let _ = tx.send(());
    });
    let _ = rx.await;
}

/// Answers after half a second: a request still in flight at shutdown.
async fn slow() -> &'static str {
    println!("embedded_service: slow request started");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    "slow done\n"
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let greeting = cli.greeting;
    let make_app = move |_: &AppConfig| {
        let greeting = greeting.clone();
        Ok::<_, std::convert::Infallible>(
            Router::new()
                .route(
                    "/",
                    get(move || async move { format!("{greeting} from an embedded service\n") }),
                )
                .route("/slow", get(slow)),
        )
    };
    let served = baseplate::Serve::new()
        .http_app("my_service.web:make_app", make_app)
        .run(cli.serve, stop_requested())
        .await;
    match served {
        Ok(Served::Stopped) => {
            // Our runtime is still ours: anything else may run here.
            println!("embedded_service: baseplate stopped; exiting");
            ExitCode::SUCCESS
        }
        Ok(_) => ExitCode::from(1),
        Err(e) => {
            for line in e.lines() {
                eprintln!("error: {line}");
            }
            ExitCode::from(1)
        }
    }
}
