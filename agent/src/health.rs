//! The agent's own small HTTP server: `/health` for probes and `/metrics` for Prometheus.
//! It only reads the shared metrics; it never talks to the other actors. [`probe`] is the
//! client side, for `scriptmesh-agent healthcheck` (container HEALTHCHECKs without curl).

use crate::error::AgentError;
use crate::metrics::Metrics;
use actix_web::{web, App, HttpResponse, HttpServer};
use serde::Serialize;
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

struct HealthState {
    agent_name: String,
    metrics: Metrics,
}

#[derive(Serialize)]
struct HealthBody<'a> {
    status: &'static str,
    agent: &'a str,
    version: &'static str,
    orchestrator: &'static str,
    running_jobs: i64,
    manifest_scripts: i64,
}

/// Binds the listener (so a port conflict fails start-up) and returns the running server
/// with the address it got.
pub fn start(
    bind: SocketAddr,
    agent_name: String,
    metrics: Metrics,
) -> Result<(actix_web::dev::Server, SocketAddr), AgentError> {
    let bind_error = |source| AgentError::Bind {
        address: bind.to_string(),
        source,
    };
    let listener = TcpListener::bind(bind).map_err(bind_error)?;
    let address = listener.local_addr().map_err(bind_error)?;
    let state = web::Data::new(HealthState { agent_name, metrics });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .route("/health", web::get().to(health))
            .route("/metrics", web::get().to(metrics_text))
    })
    // Two endpoints for probes: one worker is plenty on a box that runs real workloads.
    .workers(1)
    // The agent handles SIGTERM itself so running jobs are stopped in order.
    .disable_signals()
    .shutdown_timeout(1)
    .listen(listener)
    .map_err(bind_error)?
    .run();
    Ok((server, address))
}

async fn health(state: web::Data<HealthState>) -> HttpResponse {
    let metrics = &state.metrics;
    HttpResponse::Ok().json(HealthBody {
        status: "ok",
        agent: &state.agent_name,
        version: env!("CARGO_PKG_VERSION"),
        orchestrator: if metrics.orchestrator_connected.get() == 1 {
            "connected"
        } else {
            "unreachable"
        },
        running_jobs: metrics.running_jobs.get(),
        manifest_scripts: metrics.manifest_scripts.get(),
    })
}

async fn metrics_text(state: web::Data<HealthState>) -> HttpResponse {
    match state.metrics.render() {
        Ok(body) => HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(body),
        Err(error) => HttpResponse::InternalServerError().json(serde_json::json!({
            "error": {"code": "metrics_unavailable", "message": error.to_string()}
        })),
    }
}

/// Well inside Docker's default 30 s HEALTHCHECK timeout.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// `GET http://{address}/health` on a fresh actix System; an error says what went wrong (no
/// answer, or its status). Not for use inside the running agent.
pub fn probe(address: SocketAddr) -> Result<(), String> {
    // awc builds its TLS connector up front, which needs the process's rustls provider.
    crate::client::install_crypto_provider();
    let url = format!("http://{address}/health");
    actix_rt::System::new().block_on(async {
        let client = awc::Client::builder().timeout(PROBE_TIMEOUT).finish();
        let response = client
            .get(&url)
            .send()
            .await
            .map_err(|error| format!("{url}: {error}"))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("{url} answered {}", response.status()))
        }
    })
}
