//! The ScriptMesh agent: registers with the orchestrator, long-polls it for jobs, runs the
//! whitelisted scripts they name and reports how they ended.
//!
//! Actors (all on one actix thread; see DESIGN.md):
//! - [`registration::Registrar`] registers at start-up and after a 404, then tells the others;
//! - [`poller::Poller`] keeps one long-poll open (carrying the heartbeats, when the
//!   orchestrator takes them on the poll);
//! - [`executor::Executor`] runs the jobs under the security contract;
//! - [`reporter::Reporter`] spools each result and delivers it, retrying forever;
//! - [`live::LiveOutput`] streams running jobs' output to the orchestrator (best effort);
//! - [`heartbeat::Heartbeat`] reloads the manifest every interval and composes the
//!   heartbeats (sending them itself to orchestrators that do not take them on the poll).
//!
//! The health server ([`health`]) runs beside them on its own worker thread.

pub mod backoff;
pub mod client;
pub mod config;
pub mod error;
pub mod executor;
pub mod health;
pub mod heartbeat;
pub mod job_id;
pub mod live;
pub mod manifest;
pub mod metrics;
pub mod poller;
pub mod registration;
pub mod reporter;
pub mod spool;

pub use config::Config;
pub use error::AgentError;

use actix::prelude::*;
use client::OrchestratorClient;
use executor::run::ExecutionSettings;
use executor::{Executor, SetSlotListener, Shutdown};
use heartbeat::Heartbeat;
use live::LiveOutput;
use metrics::Metrics;
use poller::{Poller, StopPolling};
use registration::{AgentIdentity, Register, Registrar, Subscribe};
use reporter::Reporter;
use spool::Spool;
use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

/// Exit status for a configuration error, distinct from a failure while running.
const EXIT_CONFIG: u8 = 2;
/// On shutdown, how long past the kill grace to wait for running jobs to be reported.
const SHUTDOWN_MARGIN: Duration = Duration::from_secs(3);

/// The binary's entry point (also run by the end-to-end tests' wrapper binary).
pub fn cli_main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("healthcheck") {
        return healthcheck_main();
    }
    init_tracing();
    client::install_crypto_provider();

    let config = match Config::from_env() {
        Ok(config) => config,
        Err(error) => {
            tracing::error!(%error, "scriptmesh-agent cannot start");
            return ExitCode::from(EXIT_CONFIG);
        }
    };

    let result = actix_rt::System::new().block_on(async move {
        let agent = start(config).await?;
        wait_for_stop_signal().await;
        tracing::info!("stop signal received; shutting down");
        agent.shutdown().await;
        Ok::<(), AgentError>(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "scriptmesh-agent stopped");
            ExitCode::FAILURE
        }
    }
}

/// `scriptmesh-agent healthcheck`: exit 0 when this host's agent answers `/health` with 2xx,
/// 1 when it does not, 2 on a configuration error. Prints one line for `docker inspect`.
fn healthcheck_main() -> ExitCode {
    let address = match config::health_probe_address_from_env() {
        Ok(address) => address,
        Err(error) => {
            eprintln!("scriptmesh-agent healthcheck: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match health::probe(address) {
        Ok(()) => {
            println!("ok: http://{address}/health");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("scriptmesh-agent healthcheck: {error}");
            ExitCode::FAILURE
        }
    }
}

/// A started agent. Dropping it leaves the actors running until the System stops.
pub struct RunningAgent {
    /// Where `/health` and `/metrics` are served (useful with AGENT_PORT=0).
    pub health_address: SocketAddr,
    server: actix_web::dev::ServerHandle,
    executor: Addr<Executor>,
    poller: Addr<Poller>,
    shutdown_timeout: Duration,
}

impl RunningAgent {
    /// Stops taking jobs, stops the running ones (their results are spooled, to be
    /// delivered now or after the next start) and closes the health server.
    pub async fn shutdown(self) {
        self.poller.do_send(StopPolling);
        if tokio::time::timeout(self.shutdown_timeout, self.executor.send(Shutdown))
            .await
            .is_err()
        {
            tracing::warn!("running jobs did not stop in time");
        }
        self.server.stop(true).await;
    }
}

/// Starts the health server and every actor. Must run inside an actix System.
pub async fn start(config: Config) -> Result<RunningAgent, AgentError> {
    let metrics = Metrics::new()?;
    // Bound first: a port conflict should stop start-up before anything else happens.
    let (server, health_address) = health::start(
        SocketAddr::new(config.bind_host, config.port),
        config.agent_name.to_string(),
        metrics.clone(),
    )?;
    let server_handle = server.handle();
    actix_rt::spawn(server);
    tracing::info!(address = %health_address, "health server listening");
    println!("scriptmesh-agent health on http://{health_address}");
    let _ = std::io::stdout().flush();

    let spool = Spool::open(&config.spool_dir)?;
    if !config.scripts_dir.is_dir() {
        tracing::warn!(scripts_dir = %config.scripts_dir.display(), "SCRIPTS_DIR is not a directory; no script can run until it exists");
    }
    let manifest = manifest::load_or_empty(&config.manifest_path, &config.scripts_dir);
    manifest.log_problems();
    metrics.manifest_scripts.set(manifest.len() as i64);
    tracing::info!(
        agent = %config.agent_name,
        orchestrator = %config.orchestrator_urls.join(","),
        manifest = %config.manifest_path.display(),
        scripts = manifest.len(),
        max_concurrent_jobs = config.max_concurrent_jobs,
        live_output = config.live_output,
        "scriptmesh-agent starting"
    );

    let client = OrchestratorClient::new(&config);
    let identity = AgentIdentity::from_config(&config);

    let reporter = Reporter::new(client.clone(), spool, metrics.clone()).start();
    let live = config
        .live_output
        .then(|| LiveOutput::spawn(client.clone(), config.agent_name.clone()));
    let executor = Executor::new(
        ExecutionSettings::from_config(&config),
        config.max_concurrent_jobs,
        manifest,
        reporter.clone().recipient(),
        live,
        metrics.clone(),
    )
    .start();
    let registrar = Registrar::new(client.clone(), identity.clone(), executor.clone(), metrics.clone()).start();
    let heartbeat = Heartbeat::new(
        client.clone(),
        identity,
        executor.clone(),
        reporter.clone(),
        registrar.clone(),
        metrics.clone(),
    )
    .start();
    let poller = Poller::new(
        client,
        executor.clone(),
        heartbeat.clone(),
        registrar.clone(),
        metrics,
        config.poll_wait,
        config.heartbeat_interval,
    )
    .start();

    executor.do_send(SetSlotListener(poller.clone().recipient()));
    registrar.do_send(Subscribe(poller.clone().recipient()));
    registrar.do_send(Subscribe(heartbeat.recipient()));
    registrar.do_send(Subscribe(reporter.recipient()));
    registrar.do_send(Register);

    Ok(RunningAgent {
        health_address,
        server: server_handle,
        executor,
        poller,
        shutdown_timeout: config.kill_grace + SHUTDOWN_MARGIN,
    })
}

async fn wait_for_stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut terminate) => {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops the agent");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Logs go to stderr (stdout carries only the health address line); JSON lines when
/// LOG_FORMAT=json. RUST_LOG refines the level, default `info`.
fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let json = std::env::var("LOG_FORMAT").is_ok_and(|format| format.eq_ignore_ascii_case("json"));
    // try_init: a host process (tests) may already have installed a subscriber.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
