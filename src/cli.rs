//! The `baseplate-serve` command line.

use std::path::PathBuf;

use clap::Parser;

use crate::config::values::{parse_endpoint, Endpoint};

/// The baseplate server: serves the app described by CONFIG_FILE.
#[derive(Debug, Clone, Parser)]
#[command(name = "baseplate-serve", version, about, long_about = None)]
pub struct Args {
    /// Path to the INI config file
    #[arg(value_name = "CONFIG_FILE")]
    pub config_file: PathBuf,

    /// Log at DEBUG instead of INFO (RUST_LOG overrides both)
    #[arg(long)]
    pub debug: bool,

    /// Restart the server when code or config changes (development only)
    #[arg(long)]
    pub reload: bool,

    /// Name of the [app:NAME] section to load
    #[arg(long, value_name = "NAME", default_value = "main")]
    pub app_name: String,

    /// Name of the [server:NAME] section to load
    #[arg(long, value_name = "NAME", default_value = "main")]
    pub server_name: String,

    /// Endpoint to listen on: HOST:PORT, :PORT, [V6ADDR]:PORT or a UNIX
    /// socket path containing `/` (ignored under Einhorn)
    #[arg(long, value_name = "ENDPOINT", default_value = "localhost:9090", value_parser = parse_endpoint)]
    pub bind: Endpoint,

    /// With --reload: also reload when this file or directory changes (repeatable)
    #[arg(long, value_name = "PATH", requires = "reload")]
    pub reload_watch: Vec<PathBuf>,

    /// Load the config and build the app and server without binding, then exit
    #[arg(long, conflicts_with = "print_config")]
    pub check: bool,

    /// Print the server and app sections as JSON (DEFAULT merged, $VARs expanded) and exit
    #[arg(long)]
    pub print_config: bool,
}
