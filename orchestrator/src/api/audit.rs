//! `GET /audit`: who did or tried what, to what, from where, newest first, a page at a
//! time. For admins and owners.

use crate::api::docs::Endpoint;
use crate::api::paging;
use crate::auth::Caller;
use crate::db;
use crate::db::audit::AuditFilter;
use crate::db::models::AuditEntry;
use crate::error::Result;
use crate::state::AppState;
use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa_actix_web::service_config::ServiceConfig;

pub fn routes(cfg: &mut ServiceConfig) {
    cfg.service(Endpoint::new(__path_list, list));
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct AuditQuery {
    /// An email, or a user's or API key's id.
    actor: Option<String>,
    /// An action, like `job.trigger`, `key.create`, `member.invite`, `agent.register`.
    action: Option<String>,
    /// What was acted on, as the entries show it (a job id, an agent name, ...).
    target: Option<String>,
    /// Entries at or after this RFC 3339 time.
    since: Option<String>,
    /// Entries at or before this RFC 3339 time.
    until: Option<String>,
    /// Entries per page, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AuditEntryView {
    id: String,
    /// When, RFC 3339.
    at: String,
    /// The user's email, or `key_... (name)`; null for an unknown caller.
    actor: Option<String>,
    /// The user's or the key's id.
    actor_id: Option<String>,
    #[schema(example = "job.trigger")]
    action: String,
    target: Option<String>,
    /// The client's address.
    client_addr: Option<String>,
    /// `ok` or `denied`.
    #[schema(example = "ok")]
    outcome: String,
    /// More about it (a refusal's reason, a key's role).
    detail: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    entries: Vec<AuditEntryView>,
    /// Pass as `cursor` for the next (older) page; null on the last.
    next_cursor: Option<String>,
}

fn view(entry: AuditEntry) -> AuditEntryView {
    AuditEntryView {
        at: db::format_time(entry.created_at),
        id: entry.id,
        actor: entry.actor,
        actor_id: entry.actor_id,
        action: entry.action,
        target: entry.target,
        client_addr: entry.client_addr,
        outcome: entry.outcome,
        detail: entry.detail,
    }
}

/// Read the audit log.
///
/// Entries are written within a fraction of a second of what they record and kept for
/// `AUDIT_RETENTION_DAYS` (90 by default).
#[utoipa::path(
    get, path = "/audit", tag = "audit",
    params(AuditQuery),
    responses(
        (status = 200, description = "A page of entries, newest first", body = AuditPage),
        (status = 422, description = "A bad time, limit or cursor"),
    ),
    security(("access_token" = [])),
)]
async fn list(state: web::Data<AppState>, caller: Caller, query: web::Query<AuditQuery>) -> Result<HttpResponse> {
    let query = query.into_inner();
    let limit = paging::limit(query.limit)?;
    let filter = AuditFilter {
        actor: query.actor,
        action: query.action,
        target: query.target,
        since: paging::time("since", &query.since)?,
        until: paging::time("until", &query.until)?,
        before_id: paging::cursor("aud", query.cursor)?,
    };
    let mut entries = db::audit::list(&state.db, &caller.tenant_id, &filter, limit + 1).await?;
    let next_cursor = if entries.len() as i64 > limit {
        entries.truncate(limit as usize);
        entries.last().map(|entry| entry.id.clone())
    } else {
        None
    };
    Ok(HttpResponse::Ok().json(AuditPage {
        entries: entries.into_iter().map(view).collect(),
        next_cursor,
    }))
}
