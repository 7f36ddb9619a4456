//! The `baseplate-serve` command line.

use std::path::PathBuf;

use std::ffi::OsString;

use clap::{Args as _, FromArgMatches as _};

use crate::config::values::{parse_endpoint, Endpoint};

/// The `baseplate-serve` arguments. A binary with flags of its own flattens
/// them into its parser and hands them to [`Serve::main_with`] or
/// [`Serve::run`]:
///
/// ```
/// use clap::Parser;
///
/// /// My service.
/// #[derive(Parser)]
/// #[command(version)]
/// struct Cli {
///     #[command(flatten)]
///     serve: baseplate::Args,
///     /// Greet with this word
///     #[arg(long, default_value = "hello")]
///     greeting: String,
/// }
///
/// let cli = Cli::parse_from(["my-service", "--greeting", "hi", "app.ini"]);
/// assert_eq!(cli.greeting, "hi");
/// assert_eq!(cli.serve.config_file, std::path::Path::new("app.ini"));
/// ```
///
/// [`Serve::main_with`]: crate::Serve::main_with
/// [`Serve::run`]: crate::Serve::run
#[derive(Debug, Clone, clap::Args)]
// This doc comment is for rustdoc only: a binary that flattens `Args`
// shows its own description in `--help`, or none.
#[command(about = None, long_about = None)]
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

    /// Which `[app:NAME]` section to load.
    #[arg(
        long,
        value_name = "NAME",
        default_value = "main",
        help = "Name of the [app:NAME] section to load"
    )]
    pub app_name: String,

    /// Which `[server:NAME]` section to load.
    #[arg(
        long,
        value_name = "NAME",
        default_value = "main",
        help = "Name of the [server:NAME] section to load"
    )]
    pub server_name: String,

    /// Where to listen when no socket is inherited.
    #[arg(
        long,
        value_name = "ENDPOINT",
        default_value = "localhost:9090",
        value_parser = parse_endpoint,
        help = "Endpoint to listen on: HOST:PORT, :PORT, [V6ADDR]:PORT or a UNIX socket path containing `/` (ignored under Einhorn)"
    )]
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

impl Args {
    /// Parses a whole command line (program name first) as
    /// [`Serve::main`](crate::Serve::main) does: the program is named after
    /// `argv[0]`, with baseplate's description and version.
    pub fn parse_command_line<I, T>(argv: I) -> Result<Args, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let argv: Vec<OsString> = argv.into_iter().map(Into::into).collect();
        let name = argv
            .first()
            .and_then(|p| std::path::Path::new(p).file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "baseplate-serve".to_string());
        let command = Args::augment_args(clap::Command::new(name))
            .version(env!("CARGO_PKG_VERSION"))
            .about("The baseplate server: serves the app described by CONFIG_FILE.");
        let matches = command.try_get_matches_from(argv)?;
        Args::from_arg_matches(&matches)
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    // A user's binary whose parser has no doc comment of its own (a
    // plain comment: a doc comment would become its description).
    #[derive(Parser)]
    #[command(name = "my-service")]
    struct Undocumented {
        #[command(flatten)]
        serve: super::Args,
    }

    /// My service, documented.
    #[derive(Parser)]
    #[command(name = "my-service")]
    struct Documented {
        #[command(flatten)]
        serve: super::Args,
    }

    #[test]
    fn a_flattening_binary_shows_only_its_own_description() {
        let help = Undocumented::command().render_long_help().to_string();
        assert!(!help.contains("baseplate-serve"), "{help}");
        assert!(!help.contains("flattens"), "{help}");
        assert!(help.starts_with("Usage: my-service"), "{help}");
        let help = Documented::command().render_long_help().to_string();
        assert!(help.starts_with("My service, documented\n"), "{help}");
        assert!(!help.contains("flattens"), "{help}");
    }

    #[test]
    fn baseplate_serve_describes_itself_in_one_line() {
        let help = super::Args::parse_command_line(["baseplate-serve", "--help"])
            .unwrap_err()
            .to_string();
        assert!(
            help.starts_with("The baseplate server: serves the app described by CONFIG_FILE.\n"),
            "{help}"
        );
        assert!(!help.contains("flattens"), "{help}");
    }
}
