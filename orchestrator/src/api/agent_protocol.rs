//! The agents' own endpoints: heartbeat, long-poll, start and result. They take the agent's
//! API key, and an agent only ever sees and reports its own jobs.

use crate::auth::Caller;
use crate::error::{Error, Result};
use crate::extract::JsonBody;
use crate::state::AppState;
use crate::tenant::{self, messages};
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use shared_protocol::protocol::{HeartbeatRequest, JobResultReport, PollResponse, StartRequest};
use std::time::Duration;

/// Results carry up to two capped outputs, JSON-escaped.
const RESULT_LIMIT: usize = 16 << 20;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/agent/heartbeat").route(web::post().to(heartbeat)));
    cfg.service(web::resource("/agent/poll").route(web::get().to(poll)));
    cfg.service(web::resource("/agent/jobs/{id}/start").route(web::post().to(start)));
    cfg.service(web::resource("/agent/jobs/{id}/result").route(web::post().to(result)));
}

fn agent_key(caller: &Caller) -> Result<String> {
    caller
        .api_key_id()
        .map(str::to_owned)
        .ok_or_else(|| Error::forbidden("api_key_required", "agent endpoints take the agent's sm_live_ API key"))
}

async fn heartbeat(
    state: web::Data<AppState>,
    caller: Caller,
    JsonBody(request): JsonBody<HeartbeatRequest>,
) -> Result<HttpResponse> {
    let message = messages::Heartbeat {
        request,
        api_key_id: agent_key(&caller)?,
    };
    let response = tenant::ask(&state.tenants, &caller.tenant_id, message).await??;
    Ok(HttpResponse::Ok().json(response))
}

#[derive(Deserialize)]
struct PollQuery {
    agent: String,
    #[serde(default = "one")]
    capacity: u32,
    #[serde(default)]
    wait: Option<u64>,
}

fn one() -> u32 {
    1
}

/// Holds the request until a job or a cancel order arrives, or the wait runs out (then
/// both lists are empty).
async fn poll(state: web::Data<AppState>, caller: Caller, query: web::Query<PollQuery>) -> Result<HttpResponse> {
    let query = query.into_inner();
    let wait = Duration::from_secs(
        query
            .wait
            .unwrap_or(state.config.max_poll_wait)
            .min(state.config.max_poll_wait),
    );
    let message = messages::Poll {
        agent: query.agent,
        api_key_id: agent_key(&caller)?,
        capacity: query.capacity.min(256),
    };
    let receiver = tenant::ask(&state.tenants, &caller.tenant_id, message).await??;
    let response = match tokio::time::timeout(wait, receiver).await {
        Ok(Ok(response)) => response,
        // Timed out, or the supervisor let go of the poll: nothing to do this round.
        Ok(Err(_)) | Err(_) => PollResponse::default(),
    };
    Ok(HttpResponse::Ok().json(response))
}

async fn start(
    state: web::Data<AppState>,
    caller: Caller,
    job_id: web::Path<String>,
    JsonBody(request): JsonBody<StartRequest>,
) -> Result<HttpResponse> {
    let message = messages::StartJob {
        agent: request.agent_name,
        api_key_id: agent_key(&caller)?,
        job_id: job_id.into_inner(),
        started_at_ms: request.started_at_ms,
    };
    tenant::ask(&state.tenants, &caller.tenant_id, message).await??;
    Ok(HttpResponse::Ok().json(serde_json::json!({"status": "ok"})))
}

async fn result(
    state: web::Data<AppState>,
    caller: Caller,
    job_id: web::Path<String>,
    JsonBody(report): JsonBody<JobResultReport, RESULT_LIMIT>,
) -> Result<HttpResponse> {
    let message = messages::ReportResult {
        job_id: job_id.into_inner(),
        api_key_id: agent_key(&caller)?,
        report,
    };
    let ack = tenant::ask(&state.tenants, &caller.tenant_id, message).await??;
    Ok(HttpResponse::Ok().json(ack))
}
