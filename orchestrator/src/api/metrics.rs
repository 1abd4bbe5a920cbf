//! `GET /metrics` (Prometheus text, for the operator; optionally behind `METRICS_TOKEN`) and
//! `GET /metrics/json` (the caller's tenant only).

use crate::api::docs::Endpoint;
use crate::auth::{sha256_hex, Caller};
use crate::error::{Error, Result};
use crate::metrics::{summary, CONTENT_TYPE};
use crate::state::AppState;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use shared_protocol::api::TenantMetrics;
use subtle::ConstantTimeEq;
use utoipa_actix_web::service_config::ServiceConfig;

pub fn routes(cfg: &mut ServiceConfig) {
    cfg.service(Endpoint::new(__path_prometheus_text, prometheus_text));
    cfg.service(Endpoint::new(__path_tenant_json, tenant_json));
}

/// Prometheus metrics.
///
/// The Prometheus text exposition (version 0.0.4) for the whole orchestrator: jobs by
/// status, queue depth, agents by status, job duration and dispatch latency histograms,
/// schedule fires and misses, integration deliveries, HTTP requests, process metrics. No
/// tenant data. Open unless `METRICS_TOKEN` is set; then it needs `Authorization: Bearer
/// <METRICS_TOKEN>`.
#[utoipa::path(
    get, path = "/metrics", tag = "metrics",
    responses(
        (status = 200, description = "The exposition", content_type = "text/plain; version=0.0.4; charset=utf-8", body = String),
        (status = 401, description = "`METRICS_TOKEN` is set and the bearer token is missing or wrong"),
    ),
    security((), ("metrics_token" = [])),
)]
async fn prometheus_text(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse> {
    if let Some(expected) = &state.config.metrics_token {
        check_token(&req, expected)?;
    }
    let text = state
        .metrics
        .render(&state.db)
        .await
        .map_err(|e| Error::Internal(format!("encoding metrics: {e}")))?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, CONTENT_TYPE))
        .body(text))
}

/// `Authorization: Bearer <METRICS_TOKEN>`. Both sides are hashed first, so the constant-time
/// comparison does not reveal the token's length either.
fn check_token(req: &HttpRequest, expected: &str) -> Result<()> {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .ok_or_else(|| Error::unauthorized("send `Authorization: Bearer <METRICS_TOKEN>`"))?;
    let matches: bool = sha256_hex(presented)
        .as_bytes()
        .ct_eq(sha256_hex(expected).as_bytes())
        .into();
    if matches {
        Ok(())
    } else {
        Err(Error::unauthorized("the metrics token is not valid"))
    }
}

/// Agent health and execution metrics.
///
/// For the caller's tenant: agents online and offline, and the jobs created in the last 24
/// hours by status, success rate and p50/p95 duration, in total and per agent.
#[utoipa::path(
    get, path = "/metrics/json", tag = "metrics",
    responses((status = 200, description = "The tenant's metrics", body = TenantMetrics)),
    security(("bearer" = [])),
)]
async fn tenant_json(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse> {
    Ok(HttpResponse::Ok().json(summary::tenant_metrics(&state.db, &caller.tenant_id).await?))
}
