//! Schedules: `/schedules`, `/schedules/preview`, `/schedules/{id}`, `/schedules/{id}/pause|resume|runs`.
//! Changes go through the tenant's supervisor, which owns the timers; reads come from the
//! database.

use crate::auth::Caller;
use crate::db;
use crate::error::{Error, Result};
use crate::extract::JsonBody;
use crate::integrations::ssrf::{self, GuardError};
use crate::schedule::spec::{preview_fires, run_view, view, MAX_PREVIEW_FIRES};
use crate::schedule::{NewSchedule, SchedulePatch, ScheduleSpec};
use crate::state::AppState;
use crate::tenant::{self, messages};
use actix_web::{web, HttpResponse};
use chrono::{SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::json;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/schedules")
            .route(web::get().to(list))
            .route(web::post().to(create)),
    );
    // Before `/schedules/{id}`, which would otherwise take "preview" for an id.
    cfg.service(web::resource("/schedules/preview").route(web::get().to(preview)));
    cfg.service(
        web::resource("/schedules/{id}")
            .route(web::get().to(get))
            .route(web::patch().to(update))
            .route(web::delete().to(delete)),
    );
    cfg.service(web::resource("/schedules/{id}/pause").route(web::post().to(pause)));
    cfg.service(web::resource("/schedules/{id}/resume").route(web::post().to(resume)));
    cfg.service(web::resource("/schedules/{id}/runs").route(web::get().to(runs)));
}

async fn create(
    state: web::Data<AppState>,
    caller: Caller,
    JsonBody(request): JsonBody<NewSchedule>,
) -> Result<HttpResponse> {
    let spec = ScheduleSpec::from_request(request)?;
    guard_webhook(&state, spec.webhook_url.as_deref()).await?;
    let row = tenant::ask(&state.tenants, &caller.tenant_id, messages::CreateSchedule { spec }).await??;
    Ok(HttpResponse::Created().json(view(&row)))
}

async fn list(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse> {
    let rows = db::schedules::list(&state.db, &caller.tenant_id).await?;
    Ok(HttpResponse::Ok().json(json!({"schedules": rows.iter().map(view).collect::<Vec<_>>()})))
}

async fn get(state: web::Data<AppState>, caller: Caller, id: web::Path<String>) -> Result<HttpResponse> {
    let row = db::schedules::find(&state.db, &caller.tenant_id, &id)
        .await?
        .ok_or_else(|| Error::not_found(format!("schedule {id}")))?;
    Ok(HttpResponse::Ok().json(view(&row)))
}

async fn update(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
    JsonBody(patch): JsonBody<SchedulePatch>,
) -> Result<HttpResponse> {
    if let Some(Some(url)) = &patch.webhook_url {
        guard_webhook(&state, Some(url)).await?;
    }
    let message = messages::UpdateSchedule {
        id: id.into_inner(),
        patch,
    };
    let row = tenant::ask(&state.tenants, &caller.tenant_id, message).await??;
    Ok(HttpResponse::Ok().json(view(&row)))
}

async fn delete(state: web::Data<AppState>, caller: Caller, id: web::Path<String>) -> Result<HttpResponse> {
    let id = id.into_inner();
    let message = messages::DeleteSchedule { id: id.clone() };
    tenant::ask(&state.tenants, &caller.tenant_id, message).await??;
    Ok(HttpResponse::Ok().json(json!({"status": "deleted", "id": id})))
}

async fn pause(state: web::Data<AppState>, caller: Caller, id: web::Path<String>) -> Result<HttpResponse> {
    set_enabled(&state, &caller, id.into_inner(), false).await
}

async fn resume(state: web::Data<AppState>, caller: Caller, id: web::Path<String>) -> Result<HttpResponse> {
    set_enabled(&state, &caller, id.into_inner(), true).await
}

async fn set_enabled(state: &AppState, caller: &Caller, id: String, enabled: bool) -> Result<HttpResponse> {
    let message = messages::SetScheduleEnabled { id, enabled };
    let row = tenant::ask(&state.tenants, &caller.tenant_id, message).await??;
    Ok(HttpResponse::Ok().json(view(&row)))
}

#[derive(Deserialize)]
struct PreviewQuery {
    cron_expression: Option<String>,
    timezone: Option<String>,
    count: Option<i64>,
}

/// The next fire times of an expression, checked as creating a schedule checks it.
async fn preview(_caller: Caller, query: web::Query<PreviewQuery>) -> Result<HttpResponse> {
    let query = query.into_inner();
    let cron_text = query
        .cron_expression
        .ok_or_else(|| Error::Validation("cron_expression is required, e.g. ?cron_expression=0 2 * * *".into()))?;
    let count = query.count.unwrap_or(5);
    if !(1..=MAX_PREVIEW_FIRES as i64).contains(&count) {
        return Err(Error::Validation(format!("count must be 1 to {MAX_PREVIEW_FIRES}")));
    }
    let (cron, timezone, fires) = preview_fires(&cron_text, query.timezone.as_deref(), count as usize, Utc::now())?;
    Ok(HttpResponse::Ok().json(json!({
        "cron_expression": cron.source(),
        "timezone": timezone.name(),
        "next_fires": fires.iter().map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true)).collect::<Vec<_>>(),
    })))
}

#[derive(Deserialize)]
struct RunsQuery {
    limit: Option<i64>,
}

/// Each fire, newest first: when it was due, when it fired, the outcome, its jobs, why.
async fn runs(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
    query: web::Query<RunsQuery>,
) -> Result<HttpResponse> {
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(Error::Validation("limit must be 1 to 1000".into()));
    }
    let schedule = db::schedules::find(&state.db, &caller.tenant_id, &id)
        .await?
        .ok_or_else(|| Error::not_found(format!("schedule {id}")))?;
    let runs = db::schedules::runs(&state.db, &caller.tenant_id, &schedule.id, limit).await?;
    Ok(HttpResponse::Ok().json(json!({
        "schedule_id": schedule.id,
        "runs": runs.iter().map(run_view).collect::<Vec<_>>(),
    })))
}

/// Refuses a webhook URL that points inside the network (SSRF) unless ALLOW_PRIVATE_WEBHOOKS.
/// A host that does not resolve right now is accepted: delivery checks it again.
async fn guard_webhook(state: &AppState, url: Option<&str>) -> Result<()> {
    let Some(text) = url else { return Ok(()) };
    let url = url::Url::parse(text).map_err(|_| Error::Validation("webhook_url is not a URL".into()))?;
    match ssrf::check_url(&url, state.config.allow_private_webhooks).await {
        Ok(_) | Err(GuardError::Unresolvable(_)) => Ok(()),
        Err(GuardError::Refused(message)) => Err(Error::Validation(format!("webhook_url: {message}"))),
    }
}
