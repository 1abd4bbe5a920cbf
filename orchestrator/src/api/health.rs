//! `GET /health` (and `HEAD`, which `curl -I` sends): is the orchestrator and its database up?

use crate::state::AppState;
use actix_web::{web, HttpResponse};
use serde_json::json;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/health")
            .route(web::get().to(health))
            .route(web::head().to(health)),
    );
}

async fn health(state: web::Data<AppState>) -> HttpResponse {
    let version = env!("CARGO_PKG_VERSION");
    match state.db.ping().await {
        Ok(()) => HttpResponse::Ok().json(json!({
            "status": "ok",
            "version": version,
            "database": "ok",
            "backend": state.db.backend_name(),
        })),
        Err(error) => {
            tracing::warn!(%error, "health check: database unreachable");
            HttpResponse::ServiceUnavailable().json(json!({
                "status": "unavailable",
                "version": version,
                "database": "unreachable",
                "error": {"code": "database_unavailable", "message": "the database cannot be reached"},
            }))
        }
    }
}
