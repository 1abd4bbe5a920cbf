//! Schedules: `/schedules`, `/schedules/preview`, `/schedules/{id}`, `/schedules/{id}/pause|resume|runs`.
//! Changes go through the tenant's supervisor, which owns the timers; reads come from the
//! database.

use crate::api::docs::Endpoint;
use crate::auth::Caller;
use crate::db;
use crate::error::{Error, Result};
use crate::extract::JsonBody;
use crate::integrations::ssrf::{self, GuardError};
use crate::schedule::spec::{preview_fires, run_view, view, ScheduleRunView, ScheduleView, MAX_PREVIEW_FIRES};
use crate::schedule::{NewSchedule, SchedulePatch, ScheduleSpec};
use crate::state::AppState;
use crate::tenant::{self, messages};
use actix_web::{web, HttpResponse};
use chrono::{SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use utoipa_actix_web::service_config::ServiceConfig;

pub fn routes(cfg: &mut ServiceConfig) {
    cfg.service(Endpoint::new(__path_list, list).and(__path_create, create));
    // Before `/schedules/{id}`, which would otherwise take "preview" for an id.
    cfg.service(Endpoint::new(__path_preview, preview));
    cfg.service(
        Endpoint::new(__path_get, get)
            .and(__path_update, update)
            .and(__path_delete, delete),
    );
    cfg.service(Endpoint::new(__path_pause, pause));
    cfg.service(Endpoint::new(__path_resume, resume));
    cfg.service(Endpoint::new(__path_runs, runs));
}

/// Create a schedule.
///
/// Runs `script` on `agent` (or on every agent carrying all `tags`) at each time
/// `cron_expression` (5 fields) names, in `timezone` (default UTC).
#[utoipa::path(
    post, path = "/schedules", tag = "schedules",
    request_body = NewSchedule,
    responses(
        (status = 201, description = "Created", body = ScheduleView),
        (status = 404, description = "The agent is not registered"),
        (status = 422, description = "Bad cron expression, timezone, target, parameters or webhook URL"),
    ),
    security(("bearer" = [])),
)]
async fn create(
    state: web::Data<AppState>,
    caller: Caller,
    JsonBody(request): JsonBody<NewSchedule>,
) -> Result<HttpResponse> {
    unnarrowed(&state, &caller, "schedule.create", "")?;
    let spec = ScheduleSpec::from_request(request)?;
    guard_webhook(&state, spec.webhook_url.as_deref()).await?;
    let row = tenant::ask(&state.tenants, &caller.tenant_id, messages::CreateSchedule { spec }).await??;
    caller.did(&state, "schedule.create", row.id.clone());
    Ok(HttpResponse::Created().json(view(&row)))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ScheduleList {
    schedules: Vec<ScheduleView>,
}

/// List schedules.
#[utoipa::path(
    get, path = "/schedules", tag = "schedules",
    responses((status = 200, description = "The tenant's schedules", body = ScheduleList)),
    security(("bearer" = [])),
)]
async fn list(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse> {
    let rows = db::schedules::list(&state.db, &caller.tenant_id).await?;
    Ok(HttpResponse::Ok().json(ScheduleList {
        schedules: rows.iter().map(view).collect(),
    }))
}

/// One schedule.
#[utoipa::path(
    get, path = "/schedules/{id}", tag = "schedules",
    params(("id" = String, Path, description = "The schedule's id")),
    responses(
        (status = 200, description = "The schedule", body = ScheduleView),
        (status = 404, description = "No such schedule in your tenant"),
    ),
    security(("bearer" = [])),
)]
async fn get(state: web::Data<AppState>, caller: Caller, id: web::Path<String>) -> Result<HttpResponse> {
    let row = db::schedules::find(&state.db, &caller.tenant_id, &id)
        .await?
        .ok_or_else(|| Error::not_found(format!("schedule {id}")))?;
    Ok(HttpResponse::Ok().json(view(&row)))
}

/// Change a schedule.
///
/// Changes the fields given; `null` clears `webhook_url`, `timeout`, `params`.
#[utoipa::path(
    patch, path = "/schedules/{id}", tag = "schedules",
    params(("id" = String, Path, description = "The schedule's id")),
    request_body = SchedulePatch,
    responses(
        (status = 200, description = "The schedule as changed", body = ScheduleView),
        (status = 404, description = "No such schedule in your tenant"),
        (status = 422, description = "A value is refused"),
    ),
    security(("bearer" = [])),
)]
async fn update(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
    JsonBody(patch): JsonBody<SchedulePatch>,
) -> Result<HttpResponse> {
    let id = id.into_inner();
    unnarrowed(&state, &caller, "schedule.update", &id)?;
    if let Some(Some(url)) = &patch.webhook_url {
        guard_webhook(&state, Some(url)).await?;
    }
    let message = messages::UpdateSchedule { id: id.clone(), patch };
    let row = tenant::ask(&state.tenants, &caller.tenant_id, message).await??;
    caller.did(&state, "schedule.update", id);
    Ok(HttpResponse::Ok().json(view(&row)))
}

/// Delete a schedule.
#[utoipa::path(
    delete, path = "/schedules/{id}", tag = "schedules",
    params(("id" = String, Path, description = "The schedule's id")),
    responses(
        (status = 200, description = "Deleted", body = Deleted),
        (status = 404, description = "No such schedule in your tenant"),
    ),
    security(("bearer" = [])),
)]
async fn delete(state: web::Data<AppState>, caller: Caller, id: web::Path<String>) -> Result<HttpResponse> {
    let id = id.into_inner();
    unnarrowed(&state, &caller, "schedule.delete", &id)?;
    let message = messages::DeleteSchedule { id: id.clone() };
    tenant::ask(&state.tenants, &caller.tenant_id, message).await??;
    caller.did(&state, "schedule.delete", id.clone());
    Ok(HttpResponse::Ok().json(Deleted { status: "deleted", id }))
}

/// Pause a schedule (it stops firing).
#[utoipa::path(
    post, path = "/schedules/{id}/pause", tag = "schedules",
    params(("id" = String, Path, description = "The schedule's id")),
    responses(
        (status = 200, description = "The schedule, paused", body = ScheduleView),
        (status = 404, description = "No such schedule in your tenant"),
    ),
    security(("bearer" = [])),
)]
async fn pause(state: web::Data<AppState>, caller: Caller, id: web::Path<String>) -> Result<HttpResponse> {
    set_enabled(&state, &caller, id.into_inner(), false).await
}

/// Resume a paused schedule.
#[utoipa::path(
    post, path = "/schedules/{id}/resume", tag = "schedules",
    params(("id" = String, Path, description = "The schedule's id")),
    responses(
        (status = 200, description = "The schedule, active", body = ScheduleView),
        (status = 404, description = "No such schedule in your tenant"),
    ),
    security(("bearer" = [])),
)]
async fn resume(state: web::Data<AppState>, caller: Caller, id: web::Path<String>) -> Result<HttpResponse> {
    set_enabled(&state, &caller, id.into_inner(), true).await
}

async fn set_enabled(state: &AppState, caller: &Caller, id: String, enabled: bool) -> Result<HttpResponse> {
    let action = if enabled { "schedule.resume" } else { "schedule.pause" };
    unnarrowed(state, caller, action, &id)?;
    let message = messages::SetScheduleEnabled {
        id: id.clone(),
        enabled,
    };
    let row = tenant::ask(&state.tenants, &caller.tenant_id, message).await??;
    caller.did(state, action, id);
    Ok(HttpResponse::Ok().json(view(&row)))
}

/// A key narrowed to tags or scripts does not manage schedules: a schedule runs later, on
/// agents chosen then, beyond what the key's scope could be checked against now.
fn unnarrowed(state: &AppState, caller: &Caller, action: &'static str, target: &str) -> Result<()> {
    let scope = caller.scope();
    if scope.tags.is_empty() && scope.scripts.is_empty() {
        return Ok(());
    }
    let error = Error::forbidden(
        "outside_key_scope",
        "an API key narrowed to tags or scripts cannot manage schedules",
    );
    Err(caller.refused(state, action, target.to_owned(), error))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct PreviewQuery {
    /// The five-field cron expression (or `@daily`, ...), as for creating a schedule.
    cron_expression: Option<String>,
    /// IANA time zone; default `UTC`.
    timezone: Option<String>,
    /// How many fire times, 1 to 20; default 5.
    count: Option<i64>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct SchedulePreview {
    #[schema(example = "0 2 * * *")]
    cron_expression: String,
    #[schema(example = "UTC")]
    timezone: String,
    /// The next fire times (UTC, RFC 3339), earliest first.
    next_fires: Vec<String>,
}

/// Preview a cron expression.
///
/// The next fire times of an expression in a time zone, checked exactly as creating a
/// schedule checks it; nothing is created.
#[utoipa::path(
    get, path = "/schedules/preview", tag = "schedules",
    params(PreviewQuery),
    responses(
        (status = 200, description = "The next fire times", body = SchedulePreview),
        (status = 422, description = "Bad cron expression, time zone or count"),
    ),
    security(("bearer" = [])),
)]
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
    Ok(HttpResponse::Ok().json(SchedulePreview {
        cron_expression: cron.source().to_owned(),
        timezone: timezone.name().to_owned(),
        next_fires: fires
            .iter()
            .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
            .collect(),
    }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct RunsQuery {
    /// How many, 1 to 1000 (default 100).
    limit: Option<i64>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ScheduleRuns {
    schedule_id: String,
    runs: Vec<ScheduleRunView>,
}

/// A schedule's fires.
///
/// Each fire, newest first: when it was due, when it fired, the outcome, its jobs, why.
#[utoipa::path(
    get, path = "/schedules/{id}/runs", tag = "schedules",
    params(("id" = String, Path, description = "The schedule's id"), RunsQuery),
    responses(
        (status = 200, description = "The runs", body = ScheduleRuns),
        (status = 404, description = "No such schedule in your tenant"),
        (status = 422, description = "A bad limit"),
    ),
    security(("bearer" = [])),
)]
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
    Ok(HttpResponse::Ok().json(ScheduleRuns {
        schedule_id: schedule.id,
        runs: runs.iter().map(run_view).collect(),
    }))
}

/// `{"status": "deleted", "id": ...}`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Deleted {
    #[schema(example = "deleted")]
    pub status: &'static str,
    pub id: String,
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
