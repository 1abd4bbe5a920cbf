//! `GET /health` (and `HEAD`, which `curl -I` sends): is the orchestrator and its database up?

use crate::api::docs::Endpoint;
use crate::error::ErrorDetail;
use crate::state::AppState;
use actix_web::{web, HttpResponse};
use serde::Serialize;
use utoipa_actix_web::service_config::ServiceConfig;

pub fn routes(cfg: &mut ServiceConfig) {
    cfg.service(Endpoint::new(__path_health, health));
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok` or `unavailable`.
    #[schema(example = "ok")]
    status: &'static str,
    version: &'static str,
    /// `ok` or `unreachable`.
    database: &'static str,
    /// `sqlite` or `postgres`; present when the database answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    backend: Option<&'static str>,
    /// Why the orchestrator is unavailable; present only then.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ErrorDetail>,
}

/// Health check.
///
/// No authentication. `HEAD` answers the same status without a body.
#[utoipa::path(
    method(get, head), path = "/health", tag = "health",
    responses(
        (status = 200, description = "Up, database reachable", body = Health),
        (status = 503, description = "The database cannot be reached", body = Health),
    ),
)]
async fn health(state: web::Data<AppState>) -> HttpResponse {
    let version = env!("CARGO_PKG_VERSION");
    match state.db.ping().await {
        Ok(()) => HttpResponse::Ok().json(Health {
            status: "ok",
            version,
            database: "ok",
            backend: Some(state.db.backend_name()),
            error: None,
        }),
        Err(error) => {
            tracing::warn!(%error, "health check: database unreachable");
            HttpResponse::ServiceUnavailable().json(Health {
                status: "unavailable",
                version,
                database: "unreachable",
                backend: None,
                error: Some(ErrorDetail {
                    code: "database_unavailable",
                    message: "the database cannot be reached".into(),
                }),
            })
        }
    }
}
