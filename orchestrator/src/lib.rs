//! The ScriptMesh orchestrator: the HTTP API and dashboard, tenant actors, storage and auth.

pub mod api;
pub mod audit;
pub mod auth;
pub mod bootstrap;
pub mod cluster;
pub mod config;
pub mod dashboard;
pub mod db;
pub mod email;
pub mod error;
pub mod events;
pub mod extract;
pub mod fanout;
pub mod healthcheck;
pub mod integrations;
pub mod metrics;
pub mod schedule;
pub mod secrets;
pub mod server;
pub mod state;
pub mod tenant;
pub mod views;
pub mod watch;

use std::process::ExitCode;

const USAGE: &str = "scriptmesh-orchestrator — the ScriptMesh orchestrator

USAGE:
    scriptmesh-orchestrator [serve]    run the API server (applies migrations first)
    scriptmesh-orchestrator migrate    apply database migrations and exit
    scriptmesh-orchestrator bootstrap [EMAIL]
                                       create (once) a verified local account and print
                                       shell assignments for it, a new admin API key
                                       (API_KEY) and a new agent key for local-agent
                                       (AGENT_API_KEY)
    scriptmesh-orchestrator healthcheck
                                       GET /health of the server at BIND_ADDR (on this
                                       host); exit 0 when it answers 2xx (for container
                                       HEALTHCHECKs)
    scriptmesh-orchestrator --version

Configuration comes from the environment (see README.md): BIND_ADDR, DATABASE_URL,
JWT_SECRET, SMTP_URL, EMAIL_FROM, RESEND_API_KEY, LOG_FORMAT, ...";

/// The binary's entry point (also used by the test suite's wrapper binary).
pub fn cli_main() -> ExitCode {
    let command = std::env::args().nth(1);
    match command.as_deref() {
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some("-V" | "--version") => {
            println!("scriptmesh-orchestrator {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        None | Some("serve" | "migrate" | "bootstrap" | "healthcheck") => {}
        Some(other) => {
            eprintln!("unknown command {other:?}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    }
    let config = match config::Config::from_env() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("scriptmesh-orchestrator: configuration error: {error}");
            return ExitCode::from(2);
        }
    };
    if command.as_deref() == Some("healthcheck") {
        // Not a run of the server: no log set-up, one line of outcome for `docker inspect`.
        return match healthcheck::run(&config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("scriptmesh-orchestrator healthcheck: {error}");
                ExitCode::FAILURE
            }
        };
    }
    server::init_logging(config.log_format);
    let outcome = if command.as_deref() == Some("bootstrap") {
        let email = std::env::args()
            .nth(2)
            .unwrap_or_else(|| "admin@scriptmesh.local".into());
        run_bootstrap(&config, &email)
    } else if command.as_deref() == Some("migrate") {
        db::Backend::from_url(&config.database_url)
            .map_err(error::Error::Internal)
            .and_then(|backend| db::migrate_blocking(&backend))
            .map(|()| println!("migrations applied"))
            .map_err(|e| e.to_string())
    } else {
        server::run(config).map_err(|e| e.to_string())
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "scriptmesh-orchestrator stopped");
            eprintln!("scriptmesh-orchestrator: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run_bootstrap(config: &config::Config, email: &str) -> Result<(), String> {
    let done = actix_rt::System::new()
        .block_on(bootstrap::bootstrap(config, email))
        .map_err(|e| e.to_string())?;
    // Shell assignments, so that scripts can `eval` them.
    println!("SCRIPTMESH_EMAIL='{}'", done.email);
    if let Some(password) = &done.password {
        println!("SCRIPTMESH_PASSWORD='{password}'");
    }
    println!("API_KEY='{}'", done.api_key);
    println!("AGENT_API_KEY='{}'", done.agent_key);
    Ok(())
}
