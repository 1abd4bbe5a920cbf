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
    scriptmesh-orchestrator bootstrap [EMAIL] [--agent NAME]
                                       create (once) a verified local account and print
                                       shell assignments for it, a new admin API key
                                       (API_KEY) and a new agent key for local-agent
                                       (AGENT_API_KEY); with --agent, only an agent
                                       key for that agent
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
        let args: Vec<String> = std::env::args().skip(2).collect();
        match bootstrap_args(&args) {
            Ok((email, agent)) => run_bootstrap(&config, &email, agent.as_deref()),
            Err(error) => Err(error),
        }
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

/// `bootstrap [EMAIL] [--agent NAME]`.
fn bootstrap_args(args: &[String]) -> Result<(String, Option<String>), String> {
    let mut email = None;
    let mut agent = None;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--agent" => {
                let name = rest.next().ok_or("--agent needs an agent name")?;
                shared_protocol::ids::validate_agent_name(name)?;
                agent = Some(name.clone());
            }
            flag if flag.starts_with("--") => return Err(format!("unknown option {flag}")),
            address if email.is_none() => email = Some(address.to_owned()),
            extra => return Err(format!("unexpected argument {extra:?}")),
        }
    }
    Ok((email.unwrap_or_else(|| "admin@scriptmesh.local".into()), agent))
}

fn run_bootstrap(config: &config::Config, email: &str, agent: Option<&str>) -> Result<(), String> {
    let system = actix_rt::System::new();
    if let Some(agent) = agent {
        // One more agent key for an existing (or new) local account.
        let keys = system
            .block_on(bootstrap::bootstrap_fleet_keys(config, email, &[agent.to_owned()]))
            .map_err(|e| e.to_string())?;
        println!("AGENT_NAME='{agent}'");
        println!("AGENT_API_KEY='{}'", keys[0]);
        return Ok(());
    }
    let done = system
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
