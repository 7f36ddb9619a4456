//! One run of `baseplate-serve`, from the config file to the end of
//! serving: the process shell's part (signals, logging, the panic hook,
//! metrics, the socket, the Einhorn ACK, systemd) around the server core's
//! [`lifecycle::run`](crate::server::lifecycle::run).

use std::os::fd::OwnedFd;
use std::sync::Arc;

use tracing::{debug, info, warn};

use super::build::AppInputs;
use super::Serve;
use crate::cli::Args;
use crate::config::{ConfigErrors, ConfigFile, Section};
use crate::error::Error;
use crate::health::Health;
use crate::logging::file_config::FileLogging;
use crate::metrics::bind::Bound;
use crate::metrics::{Metrics, MetricsOptions};
use crate::process::einhorn::Worker;
use crate::process::signals::Signals;
use crate::process::{socket, systemd};
use crate::server::lifecycle::{Outcome, ReloadTrigger, ShutdownFuture, Triggers};
use crate::server::thrift::ServerTimeouts;
use crate::server::tracker::Tracker;
use crate::server::{ProtocolOptions, ServerOptions};

/// What a run is handed: the file changes to watch for (`--reload`), the
/// socket the previous run left open, and the embedding program's shutdown.
#[derive(Default)]
pub(super) struct Handover {
    pub changes: Option<ReloadTrigger>,
    pub inherited: Option<OwnedFd>,
    pub shutdown: Option<ShutdownFuture>,
}

/// The config one run serves: the `[server:NAME]` and `[app:NAME]`
/// sections and the server's options read from the first.
pub(super) struct RunConfig {
    pub server: Section,
    pub app: Section,
    pub options: ServerOptions,
}

impl RunConfig {
    /// The sections `args` names, with the server's options.
    pub(super) fn read(file: &ConfigFile, args: &Args) -> Result<RunConfig, Error> {
        let (server, app) = sections(file, args)?;
        let options = ServerOptions::from_section(&server)?;
        Ok(RunConfig {
            server,
            app,
            options,
        })
    }

    /// What [`Serve::build_app`] needs from this config.
    pub(super) fn app_inputs<'a>(
        &'a self,
        health: &'a Health,
        metrics: Option<Arc<Metrics>>,
        timeouts: ServerTimeouts,
    ) -> AppInputs<'a> {
        AppInputs {
            options: &self.options,
            server_section: &self.server,
            app_section: &self.app,
            health,
            metrics,
            timeouts,
        }
    }
}

/// What baseplate itself reads from the app section.
pub(super) struct OwnOptions {
    /// `metrics.*`: `None` unless `metrics.enabled = true`.
    pub metrics: Option<MetricsOptions>,
    /// `server_timeout.*`, read for a Thrift server.
    pub timeouts: ServerTimeouts,
}

impl Serve {
    /// Reads baseplate's own options from the app section. When one is
    /// bad, the app is built anyway (without metrics), so that the app's
    /// own bad values come out in the same run, after baseplate's.
    pub(super) fn own_options(&self, config: &RunConfig) -> Result<OwnOptions, Error> {
        let metrics = MetricsOptions::from_app_section(&config.app);
        let timeouts = match config.options.protocol {
            ProtocolOptions::Thrift(_) => ServerTimeouts::from_app_section(&config.app),
            ProtocolOptions::Http(_) => Ok(ServerTimeouts::default()),
        };
        let (metrics, timeouts) = match (metrics, timeouts) {
            (Ok(metrics), Ok(timeouts)) => return Ok(OwnOptions { metrics, timeouts }),
            (metrics, timeouts) => (metrics.err(), timeouts.err()),
        };
        let own = metrics.into_iter().chain(timeouts).flat_map(|e| e.0);
        let error = Error::from(ConfigErrors(own.collect()));
        let health = Health::default();
        let inputs = config.app_inputs(&health, None, ServerTimeouts::default());
        Err(match self.build_app(inputs) {
            Ok(_) => error,
            Err(apps) => error.join(apps),
        })
    }
}

/// The server and app sections `args` names.
fn sections(file: &ConfigFile, args: &Args) -> Result<(Section, Section), Error> {
    Ok((
        file.section("server", &args.server_name)?,
        file.section("app", &args.app_name)?,
    ))
}

impl Serve {
    /// Reads the config, builds everything, and serves until shutdown (or a
    /// reload). What `handover` holds is taken only once serving starts.
    pub(super) async fn serve_once(
        &self,
        args: &Args,
        handover: &mut Handover,
    ) -> Result<Outcome, Error> {
        let file = ConfigFile::read(&args.config_file)?;
        if args.print_config {
            let (server, app) = sections(&file, args)?;
            let json = |s: &Section| serde_json::to_string(s).unwrap_or_default();
            println!("{{\"server\":{},\"app\":{}}}", json(&server), json(&app));
            return Ok(Outcome::Stopped);
        }
        let config = RunConfig::read(&file, args)?;
        let file_logging = FileLogging::from_config(&file)?;
        self.start(args, &config, file_logging.as_ref(), handover)
            .await
    }

    /// Installs the signal handlers and logging, then serves.
    async fn start(
        &self,
        args: &Args,
        config: &RunConfig,
        file_logging: Option<&FileLogging>,
        handover: &mut Handover,
    ) -> Result<Outcome, Error> {
        let signals =
            Signals::install().map_err(|e| Error::io("cannot install signal handlers", &e))?;
        let layers = std::mem::take(
            &mut *self
                .tracing_layers
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        #[cfg(feature = "otel")]
        let (layers, export) = {
            let mut layers = layers;
            let export = match args.check {
                true => crate::otel::check(&config.app).map(|()| None)?,
                false => crate::otel::start(&config.app)?.map(|(layer, export)| {
                    layers.push(layer);
                    export
                }),
            };
            (layers, export)
        };
        crate::logging::init(args.debug, file_logging, layers)?;
        // A panic in app code is a bug to log like any other error, as JSON
        // when logs are JSON, not a raw message on stderr.
        std::panic::set_hook(Box::new(|info| tracing::error!("{info}")));
        warn_about_options(args, config);
        let served = match args.check {
            true => self.check(args, config),
            false => self.serve_started(args, config, handover, signals).await,
        };
        // The last spans leave whether serving ended well or not.
        #[cfg(feature = "otel")]
        if let Some(export) = export {
            export.shutdown().await;
        }
        served
    }

    /// `--check`: builds the app once and says so.
    fn check(&self, args: &Args, config: &RunConfig) -> Result<Outcome, Error> {
        let own = self.own_options(config)?;
        self.build_app(config.app_inputs(&Health::default(), None, own.timeouts))?;
        println!(
            "config OK: server {:?} ({}), app {:?} ({})",
            args.server_name,
            config.options.factory,
            args.app_name,
            config.app.get("factory").unwrap_or_default()
        );
        Ok(Outcome::Stopped)
    }

    /// Builds the app, takes the socket, tells Einhorn and systemd, and
    /// serves until the run ends.
    async fn serve_started(
        &self,
        args: &Args,
        config: &RunConfig,
        handover: &mut Handover,
        signals: Signals,
    ) -> Result<Outcome, Error> {
        let OwnOptions {
            metrics: metrics_options,
            timeouts,
        } = self.own_options(config)?;
        let worker = Worker::from_env()?;
        let master = worker.as_ref().map(|w| w.master_pid);
        let http = matches!(config.options.protocol, ProtocolOptions::Http(_));
        let metrics = metrics_options
            .as_ref()
            .map(|options| open_metrics(options, master, http))
            .transpose()?;
        let health = Health::default();
        let app = self.build_app(config.app_inputs(&health, metrics.clone(), timeouts))?;
        let listener = socket::choose(handover.inherited.take(), worker.as_ref(), &args.bind)?;
        let address = listener
            .local_addr()
            .map_err(|e| Error::io("cannot read the listening address", &e))?;
        // Bound once the service's own socket is held, so that a
        // `metrics.bind` naming it is refused as such.
        let exporter = match (&metrics_options, &metrics) {
            (Some(options), Some(metrics)) => Some(start_exporter(options, metrics)?),
            _ => None,
        };
        if let Some(worker) = &worker {
            worker.ack()?;
            debug!("sent the Einhorn ACK to {}", worker.sock_path.display());
        }
        info!("Listening on {address}");
        systemd::notify("READY=1");
        let triggers = Triggers {
            controls: Some(signals.into_controls()),
            reload: handover.changes.clone(),
            shutdown: handover
                .shutdown
                .take()
                .unwrap_or_else(|| Box::pin(std::future::pending())),
        };
        let tracker = Tracker::new(metrics.clone());
        let outcome = app
            .serve(listener, &config.options, tracker, health, triggers)
            .await;
        // The exporter stops with the run; a directory of this process's
        // own goes when it stops for good.
        drop(exporter);
        if let (Some(metrics), false) = (&metrics, matches!(outcome, Outcome::Reload(_))) {
            metrics.remove_own_default_dir();
        }
        Ok(outcome)
    }
}

/// Warns about server options that are ignored, and about `--reload`.
fn warn_about_options(args: &Args, config: &RunConfig) {
    for (key, line) in &config.options.unknown_keys {
        warn!(
            "{}:{line}: [{}] {key}: not an option of {}; ignored",
            config.server.file().display(),
            config.server.name(),
            config.options.factory
        );
    }
    if args.reload {
        warn!("--reload is for development only: it restarts the server when files change");
    }
}

/// The exporter task: aborted when dropped.
struct Exporter(tokio::task::JoinHandle<()>);

impl Drop for Exporter {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Opens this worker's metrics file in the shared directory.
fn open_metrics(
    options: &MetricsOptions,
    einhorn_master: Option<i32>,
    http: bool,
) -> Result<Arc<Metrics>, Error> {
    let dir = options
        .directory(einhorn_master)
        .map_err(|e| Error::io("cannot use the metrics directory", &e))?;
    let metrics = Metrics::open(&dir, http).map_err(|e| {
        Error::io(
            format!(
                "cannot write metrics in {} (metrics.multiprocess_dir, or {})",
                dir.display(),
                crate::metrics::MULTIPROC_DIR_VAR
            ),
            &e,
        )
    })?;
    Ok(Arc::new(metrics))
}

/// Binds `metrics.bind` (see [`crate::metrics::bind`]) and starts the
/// exporter.
fn start_exporter(options: &MetricsOptions, metrics: &Arc<Metrics>) -> Result<Exporter, Error> {
    let dir = metrics.dir();
    let bound = crate::metrics::bind::bind(&options.bind, dir)?;
    match &bound {
        Bound::Listener(listener) => {
            let address = listener
                .local_addr()
                .map_err(|e| Error::io("cannot read the metrics address", &e))?;
            info!(
                "Prometheus metrics exported on {address}/metrics, summed over the workers writing to {}",
                dir.display()
            );
        }
        Bound::HeldBySibling(pid) => info!(
            "Prometheus metrics exported on {} by sibling worker {}, summed over the workers \
             writing to {} (this one too); this worker takes the socket over if that one exits",
            options.bind,
            pid.map_or_else(|| "(pid unknown)".to_string(), |pid| pid.to_string()),
            dir.display()
        ),
    }
    let exporter = tokio::spawn(crate::metrics::exporter::serve(
        bound,
        options.bind.clone(),
        Arc::clone(metrics),
    ));
    Ok(Exporter(exporter))
}
