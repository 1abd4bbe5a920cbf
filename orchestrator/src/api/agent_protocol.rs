//! The agents' own endpoints: heartbeat, long-poll, start and result. They take the agent's
//! API key, and an agent only ever sees and reports its own jobs.

use crate::api::docs::Endpoint;
use crate::auth::Caller;
use crate::db::jobs::Handover;
use crate::error::{Error, Result};
use crate::extract::JsonBody;
use crate::state::AppState;
use crate::tenant::{self, messages};
use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use shared_protocol::protocol::{
    HeartbeatRequest, HeartbeatResponse, JobResultReport, OutputAck, OutputBatch, PollResponse, ResultAck, ResultBatch,
    ResultBatchAck, StartRequest,
};
use std::time::Duration;
use tokio::sync::oneshot;
use utoipa_actix_web::service_config::ServiceConfig;

/// Results carry up to two capped outputs, JSON-escaped.
const RESULT_LIMIT: usize = 16 << 20;
/// A batch of results: the agent sends big outputs one by one.
const RESULT_BATCH_LIMIT: usize = 32 << 20;
const MAX_BATCHED_RESULTS: usize = 1000;
/// A batch of live output: the agent sends at most a few hundred KiB per job per tick.
const OUTPUT_BATCH_LIMIT: usize = 4 << 20;
const MAX_OUTPUT_CHUNKS: usize = 1000;
const MAX_CHUNK_BYTES: usize = 1 << 20;
/// Offsets are stored as BIGINT; no real output comes near this.
const MAX_OUTPUT_OFFSET: u64 = 1 << 53;

pub fn routes(cfg: &mut ServiceConfig) {
    cfg.service(Endpoint::new(__path_heartbeat, heartbeat));
    cfg.service(Endpoint::new(__path_poll, poll).and(__path_poll_with_heartbeat, poll_with_heartbeat));
    cfg.service(Endpoint::new(__path_start, start));
    cfg.service(Endpoint::new(__path_result, result));
    cfg.service(Endpoint::new(__path_results, results));
    cfg.service(Endpoint::new(__path_output, output));
}

/// The caller's key, which must be an API key; with `agent`, one whose scope includes that
/// agent. (Reports about jobs name no agent: the supervisor checks that the job's agent is
/// bound to this key.)
fn agent_key(caller: &Caller, agent: Option<&str>) -> Result<String> {
    let key = caller
        .api_key_id()
        .map(str::to_owned)
        .ok_or_else(|| Error::forbidden("api_key_required", "agent endpoints take the agent's sm_live_ API key"))?;
    if let Some(agent) = agent {
        caller.require_in_scope(caller.scope().allows_agent(agent.trim()), format_args!("agent {agent}"))?;
    }
    Ok(key)
}

/// Agent heartbeat.
///
/// Sent every `heartbeat_interval` seconds with the manifest re-read from disk; answers the
/// running jobs the agent must kill. Three missed intervals mark the agent offline.
#[utoipa::path(
    post, path = "/agent/heartbeat", tag = "agent protocol",
    request_body = HeartbeatRequest,
    responses(
        (status = 200, description = "Recorded", body = HeartbeatResponse),
        (status = 403, description = "Not an API key (`api_key_required`), or the agent is registered with another key"),
        (status = 404, description = "The agent is not registered"),
    ),
    security(("agent_key" = [])),
)]
async fn heartbeat(
    state: web::Data<AppState>,
    caller: Caller,
    JsonBody(request): JsonBody<HeartbeatRequest>,
) -> Result<HttpResponse> {
    let message = messages::Heartbeat {
        api_key_id: agent_key(&caller, Some(&request.agent_name))?,
        request,
    };
    let response = tenant::ask(&state.tenants, &caller.tenant_id, message).await??;
    Ok(HttpResponse::Ok().json(response))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct PollQuery {
    /// The polling agent's name.
    agent: String,
    /// Most jobs to hand out (default 1, at most 256).
    #[serde(default = "one")]
    #[param(default = 1, minimum = 0)]
    capacity: u32,
    /// Seconds to hold the request when there is nothing to do (capped by MAX_POLL_WAIT_SECS).
    #[serde(default)]
    wait: Option<u64>,
    /// `implicit`: the answer starts the jobs it hands out (they are `running` from then
    /// on; no `/start` follows). `confirmed` (the default): each is confirmed with `/start`.
    #[serde(default)]
    start: StartMode,
}

#[derive(Clone, Copy, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
enum StartMode {
    #[default]
    Confirmed,
    Implicit,
}

fn one() -> u32 {
    1
}

/// Long-poll for work.
///
/// Holds the request until a job or a cancel order arrives, or the wait runs out (then
/// both lists are empty).
#[utoipa::path(
    get, path = "/agent/poll", tag = "agent protocol",
    params(PollQuery),
    responses(
        (status = 200, description = "Jobs to start and jobs to kill (both empty when the wait ran out)", body = PollResponse),
        (status = 403, description = "Not an API key (`api_key_required`), or the agent is registered with another key"),
        (status = 404, description = "The agent is not registered"),
        (status = 422, description = "A query parameter is missing or malformed"),
    ),
    security(("agent_key" = [])),
)]
async fn poll(state: web::Data<AppState>, caller: Caller, query: web::Query<PollQuery>) -> Result<HttpResponse> {
    let api_key_id = agent_key(&caller, Some(&query.agent))?;
    let (wait, message) = poll_message(&state, query.into_inner(), api_key_id);
    let mut receiver = tenant::ask(&state.tenants, &caller.tenant_id, message).await??;
    let waited = tokio::time::timeout(wait, &mut receiver).await;
    Ok(HttpResponse::Ok().json(settle(waited, &mut receiver)))
}

/// Heartbeat and long-poll in one request.
///
/// Records the heartbeat in the body as `POST /agent/heartbeat` does, then holds the
/// request as `GET /agent/poll` does. Cancel orders the heartbeat turns up are answered at
/// once. An agent learns that the orchestrator takes this from `heartbeat_in_poll` in the
/// registration answer; it saves the agent a second connection and the orchestrator a
/// request per heartbeat.
#[utoipa::path(
    post, path = "/agent/poll", tag = "agent protocol",
    params(PollQuery),
    request_body = HeartbeatRequest,
    responses(
        (status = 200, description = "Jobs to start and jobs to kill (both empty when the wait ran out)", body = PollResponse),
        (status = 403, description = "Not an API key (`api_key_required`), or the agent is registered with another key"),
        (status = 404, description = "The agent is not registered"),
        (status = 422, description = "A malformed query or body, or a heartbeat for another agent than `agent`"),
    ),
    security(("agent_key" = [])),
)]
async fn poll_with_heartbeat(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<PollQuery>,
    JsonBody(request): JsonBody<HeartbeatRequest>,
) -> Result<HttpResponse> {
    let query = query.into_inner();
    if request.agent_name != query.agent {
        return Err(Error::Validation(format!(
            "the heartbeat is for agent {:?} but the poll is for {:?}",
            request.agent_name, query.agent
        )));
    }
    let api_key_id = agent_key(&caller, Some(&query.agent))?;
    // Boxed, and so freed before the long wait: a parked poll keeps only what it waits with.
    let (wait, parked) = Box::pin(beat_and_park(&state, &caller.tenant_id, query, request, api_key_id)).await?;
    let response = match parked {
        Ok(mut receiver) => {
            let waited = tokio::time::timeout(wait, &mut receiver).await;
            settle(waited, &mut receiver)
        }
        Err(answered) => answered,
    };
    Ok(HttpResponse::Ok().json(response))
}

/// Records the heartbeat and parks the poll: the parked poll, or (when the heartbeat
/// turned up cancel orders) the answer to give at once.
async fn beat_and_park(
    state: &AppState,
    tenant_id: &str,
    query: PollQuery,
    request: HeartbeatRequest,
    api_key_id: String,
) -> Result<(
    Duration,
    std::result::Result<oneshot::Receiver<PollResponse>, PollResponse>,
)> {
    let beat = messages::Heartbeat {
        request,
        api_key_id: api_key_id.clone(),
    };
    let (wait, poll) = poll_message(state, query, api_key_id);
    // Both go to the supervisor together (heartbeat first): the poll parks while the
    // heartbeat's batch is being committed, instead of after it.
    let (beat, parked) = futures_util::join!(
        tenant::ask(&state.tenants, tenant_id, beat),
        tenant::ask(&state.tenants, tenant_id, poll)
    );
    let mut receiver = match parked.and_then(|parked| parked) {
        Ok(receiver) => receiver,
        Err(error) => return Err(beat.and_then(|beat| beat).err().unwrap_or(error)),
    };
    let beat = match beat.and_then(|beat| beat) {
        Ok(beat) => beat,
        Err(error) => {
            // Jobs already handed to this poll (started, with an implicit start) must
            // reach the agent even so; otherwise the poll is given up and they stay queued.
            let answer = take_answer(&mut receiver);
            return if answer.jobs.is_empty() {
                Err(error)
            } else {
                Ok((wait, Err(answer)))
            };
        }
    };
    if beat.cancel.is_empty() {
        return Ok((wait, Ok(receiver)));
    }
    let mut response = take_answer(&mut receiver);
    for job in beat.cancel {
        if !response.cancel.contains(&job) {
            response.cancel.push(job);
        }
    }
    Ok((wait, Err(response)))
}

/// The wait the poll asked for (capped) and the message that parks it.
fn poll_message(state: &AppState, query: PollQuery, api_key_id: String) -> (Duration, messages::Poll) {
    let max = state.config.max_poll_wait;
    let wait = Duration::from_secs(query.wait.unwrap_or(max).min(max));
    let message = messages::Poll {
        agent: query.agent,
        api_key_id,
        capacity: query.capacity.min(256),
        handover: match query.start {
            StartMode::Confirmed => Handover::Confirmed,
            StartMode::Implicit => Handover::Implicit,
        },
    };
    (wait, message)
}

/// The parked poll's answer, or an empty one when the wait ran out. (Awaited in the
/// handlers themselves: an `async fn` around the wait made every parked poll ~3 KiB bigger.)
fn settle(
    waited: std::result::Result<
        std::result::Result<PollResponse, oneshot::error::RecvError>,
        tokio::time::error::Elapsed,
    >,
    receiver: &mut oneshot::Receiver<PollResponse>,
) -> PollResponse {
    match waited {
        Ok(Ok(response)) => response,
        // The supervisor let go of the poll: nothing to do this round.
        Ok(Err(_)) => PollResponse::default(),
        Err(_) => take_answer(receiver),
    }
}

/// Gives up on a parked poll: closed first, so that an answer is either taken here or
/// refused to the supervisor (which then keeps its jobs), never lost in between.
fn take_answer(receiver: &mut oneshot::Receiver<PollResponse>) -> PollResponse {
    receiver.close();
    receiver.try_recv().unwrap_or_default()
}

/// The agent starts a job.
///
/// Confirms the agent is about to run the job; a 409 means it must not (cancelled, or no
/// longer held by this agent).
#[utoipa::path(
    post, path = "/agent/jobs/{id}/start", tag = "agent protocol",
    params(("id" = String, Path, description = "The job's id")),
    request_body = StartRequest,
    responses(
        (status = 200, description = "Go ahead", body = StatusOk),
        (status = 403, description = "Not an API key (`api_key_required`)"),
        (status = 404, description = "No such job for this agent"),
        (status = 409, description = "Cancelled or not held by this agent: do not run it"),
    ),
    security(("agent_key" = [])),
)]
async fn start(
    state: web::Data<AppState>,
    caller: Caller,
    job_id: web::Path<String>,
    JsonBody(request): JsonBody<StartRequest>,
) -> Result<HttpResponse> {
    let message = messages::StartJob {
        agent: request.agent_name,
        api_key_id: agent_key(&caller, None)?,
        job_id: job_id.into_inner(),
        started_at_ms: request.started_at_ms,
    };
    tenant::ask(&state.tenants, &caller.tenant_id, message).await??;
    Ok(HttpResponse::Ok().json(StatusOk { status: "ok" }))
}

/// `{"status": "ok"}`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct StatusOk {
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// The agent reports a job's result.
///
/// Idempotent: a retried report (from the agent's spool) answers `duplicate: true`.
#[utoipa::path(
    post, path = "/agent/jobs/{id}/result", tag = "agent protocol",
    params(("id" = String, Path, description = "The job's id")),
    request_body = JobResultReport,
    responses(
        (status = 200, description = "Stored", body = ResultAck),
        (status = 403, description = "Not an API key (`api_key_required`)"),
        (status = 404, description = "No such job for this agent"),
        (status = 409, description = "The job is held by another agent"),
    ),
    security(("agent_key" = [])),
)]
async fn result(
    state: web::Data<AppState>,
    caller: Caller,
    job_id: web::Path<String>,
    JsonBody(report): JsonBody<JobResultReport, RESULT_LIMIT>,
) -> Result<HttpResponse> {
    let message = messages::ReportResult {
        job_id: job_id.into_inner(),
        api_key_id: agent_key(&caller, None)?,
        report,
    };
    let ack = tenant::ask(&state.tenants, &caller.tenant_id, message).await??;
    Ok(HttpResponse::Ok().json(ack))
}

/// The agent reports several results at once.
///
/// Each is settled on its own and answered in order: `stored`, `duplicate` (stored
/// before) or `refused` (never accepted; do not retry it). They are written in one
/// transaction.
#[utoipa::path(
    post, path = "/agent/results", tag = "agent protocol",
    request_body = ResultBatch,
    responses(
        (status = 200, description = "Each result's outcome", body = ResultBatchAck),
        (status = 403, description = "Not an API key (`api_key_required`), or the agent is registered with another key"),
        (status = 404, description = "The agent is not registered"),
        (status = 422, description = "More than 1000 results, or a malformed body"),
    ),
    security(("agent_key" = [])),
)]
async fn results(
    state: web::Data<AppState>,
    caller: Caller,
    JsonBody(batch): JsonBody<ResultBatch, RESULT_BATCH_LIMIT>,
) -> Result<HttpResponse> {
    if batch.results.len() > MAX_BATCHED_RESULTS {
        return Err(Error::Validation(format!(
            "at most {MAX_BATCHED_RESULTS} results per batch"
        )));
    }
    let message = messages::ReportResults {
        agent: batch.agent_name,
        api_key_id: agent_key(&caller, None)?,
        results: batch.results,
    };
    let ack = tenant::ask(&state.tenants, &caller.tenant_id, message).await??;
    Ok(HttpResponse::Ok().json(ack))
}

/// The agent streams live output of its running jobs.
///
/// Chunks of several jobs at once, in order per job. Chunks of jobs that are not running on
/// this agent are not stored, and those jobs are listed in `stop`: the agent sends no more
/// of them. A retried chunk (same job and offset) is stored once.
#[utoipa::path(
    post, path = "/agent/output", tag = "agent protocol",
    request_body = OutputBatch,
    responses(
        (status = 200, description = "Stored; `stop` lists the jobs that take no more output", body = OutputAck),
        (status = 403, description = "Not an API key (`api_key_required`), or the agent is registered with another key"),
        (status = 404, description = "The agent is not registered"),
        (status = 413, description = "The body is over 4 MiB"),
        (status = 422, description = "More than 1000 chunks, an empty or over-1-MiB chunk, a bad offset, or a malformed body"),
    ),
    security(("agent_key" = [])),
)]
async fn output(
    state: web::Data<AppState>,
    caller: Caller,
    JsonBody(batch): JsonBody<OutputBatch, OUTPUT_BATCH_LIMIT>,
) -> Result<HttpResponse> {
    if batch.chunks.len() > MAX_OUTPUT_CHUNKS {
        return Err(Error::Validation(format!(
            "at most {MAX_OUTPUT_CHUNKS} chunks per batch"
        )));
    }
    for chunk in &batch.chunks {
        if chunk.data.is_empty() || chunk.data.len() > MAX_CHUNK_BYTES {
            return Err(Error::Validation(format!(
                "a chunk holds 1 byte to {MAX_CHUNK_BYTES} bytes of output; one of job {:?} holds {}",
                chunk.job_id,
                chunk.data.len()
            )));
        }
        if chunk.end() > MAX_OUTPUT_OFFSET {
            return Err(Error::Validation(format!("offset must stay below {MAX_OUTPUT_OFFSET}")));
        }
    }
    let message = messages::AppendOutput {
        agent: batch.agent_name,
        api_key_id: agent_key(&caller, None)?,
        chunks: batch.chunks,
    };
    let ack = tenant::ask(&state.tenants, &caller.tenant_id, message).await??;
    Ok(HttpResponse::Ok().json(ack))
}
