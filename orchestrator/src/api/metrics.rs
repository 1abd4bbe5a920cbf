//! `GET /metrics` (Prometheus text, for the operator; optionally behind `METRICS_TOKEN`) and
//! `GET /metrics/json` (the caller's tenant only).

use crate::auth::{sha256_hex, Caller};
use crate::error::{Error, Result};
use crate::metrics::{summary, CONTENT_TYPE};
use crate::state::AppState;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use subtle::ConstantTimeEq;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/metrics").route(web::get().to(prometheus_text)));
    cfg.service(web::resource("/metrics/json").route(web::get().to(tenant_json)));
}

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

async fn tenant_json(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse> {
    Ok(HttpResponse::Ok().json(summary::tenant_metrics(&state.db, &caller.tenant_id).await?))
}
