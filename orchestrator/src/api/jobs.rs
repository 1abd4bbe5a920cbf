//! Jobs: `/trigger-script`, `/jobs`, `/jobs/{id}`, `/jobs/{id}/cancel`, `/fan-out`.

use crate::api::docs::Endpoint;
use crate::api::paging;
use crate::auth::Caller;
use crate::db::{self, jobs::JobFilter};
use crate::error::{Error, Result};
use crate::extract::JsonBody;
use crate::fanout;
use crate::secrets;
use crate::state::AppState;
use crate::tenant::{self, messages, validate};
use crate::views::job_view;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use shared_protocol::api::{FanOutJob, FanOutRequest, JobList, JobView, TriggerRequest};
use shared_protocol::JobStatus;
use std::collections::HashMap;
use std::time::Duration;
use utoipa_actix_web::service_config::ServiceConfig;

/// Longest a synchronous trigger (`async_exec: false`) holds the request.
const MAX_SYNC_WAIT: Duration = Duration::from_secs(300);

pub fn routes(cfg: &mut ServiceConfig) {
    cfg.service(Endpoint::new(__path_trigger, trigger));
    cfg.service(Endpoint::new(__path_list, list));
    cfg.service(Endpoint::new(__path_get, get));
    cfg.service(Endpoint::new(__path_cancel, cancel));
    cfg.service(Endpoint::new(__path_fan_out, fan_out));
    cfg.service(Endpoint::new(__path_get_fan_out, get_fan_out));
}

/// `POST /trigger-script` with `async_exec` true (the default): the job is queued.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Queued {
    job_id: String,
    /// Always `pending`.
    #[schema(example = "pending")]
    status: &'static str,
    agent: String,
    /// `offline` when the agent is offline (the job waits for it); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    agent_status: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
}

/// Run a script on an agent.
///
/// Asynchronous by default: answers 202 with the job id. With `"async_exec": false` the
/// request is held until the job finishes (200 with the result) or a wait limit passes
/// (202 with the job as it stands).
#[utoipa::path(
    post, path = "/trigger-script", tag = "jobs",
    request_body = TriggerRequest,
    responses(
        (status = 200, description = "`async_exec: false`: the finished job", body = JobView),
        (status = 202, description = "Queued (`async_exec` true), or still running after the synchronous wait (a JobView)", body = Queued),
        (status = 404, description = "The agent is not registered"),
        (status = 422, description = "Bad script name, parameters or timeout, or the script is not in the agent's manifest"),
    ),
    security(("bearer" = [])),
)]
async fn trigger(
    state: web::Data<AppState>,
    caller: Caller,
    JsonBody(request): JsonBody<TriggerRequest>,
) -> Result<HttpResponse> {
    validate::script_name(&request.run_script)?;
    let agent = request.agent.trim().to_owned();
    let scope = caller.scope();
    caller
        .require_in_scope(
            scope.allows_script(&request.run_script),
            format_args!("script {}", request.run_script),
        )
        .map_err(|error| caller.refused(&state, "job.trigger", agent.clone(), error))?;
    let params = validate::params(request.params)?;
    let message = messages::Trigger {
        agent: agent.clone(),
        script: request.run_script.clone(),
        secret_params: secrets::validate(request.secret_params, &params)?,
        params,
        timeout_secs: validate::timeout(request.timeout)?,
        required_tags: scope.tags.clone(),
    };
    let triggered = match tenant::ask(&state.tenants, &caller.tenant_id, message).await? {
        Ok(triggered) => triggered,
        Err(error @ Error::Forbidden { .. }) => return Err(caller.refused(&state, "job.trigger", agent, error)),
        Err(error) => return Err(error),
    };
    let job = triggered.job;
    state.audit.record(caller.audit(
        "job.trigger",
        job.id.clone(),
        crate::audit::Outcome::Ok,
        format!("{} on {}", job.script, job.agent_name),
    ));
    if request.async_exec.unwrap_or(true) {
        // The spec's answer: the job is queued ("pending"), even when a parked poll took it
        // the same instant (GET /jobs/{id} then shows "dispatched").
        let offline = !triggered.agent_online;
        return Ok(HttpResponse::Accepted().json(Queued {
            message: offline.then(|| {
                format!(
                    "agent {} is offline; the job is queued and runs when it reconnects",
                    job.agent_name
                )
            }),
            agent_status: offline.then_some("offline"),
            job_id: job.id,
            status: JobStatus::Pending.as_str(),
            agent: job.agent_name,
        }));
    }
    let wait = job
        .timeout_secs
        .map(|t| Duration::from_secs(t as u64 + 30))
        .unwrap_or(MAX_SYNC_WAIT)
        .min(MAX_SYNC_WAIT);
    let finished = wait_for_completion(&state, &caller.tenant_id, &job.id, wait).await?;
    let view = job_view(&finished, Some(triggered.agent_online));
    if finished.is_finished() {
        Ok(HttpResponse::Ok().json(view))
    } else {
        Ok(HttpResponse::Accepted().json(view))
    }
}

/// Waits until the job is terminal or `wait` has passed (whichever replica finishes it),
/// then returns it as stored.
async fn wait_for_completion(
    state: &AppState,
    tenant_id: &str,
    job_id: &str,
    wait: Duration,
) -> Result<db::models::Job> {
    state
        .watchers
        .wait_until(job_id, wait, || async {
            let job = db::jobs::get(&state.db, tenant_id, job_id).await?;
            let finished = job.is_finished();
            Ok((finished, job))
        })
        .await
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Only this agent's jobs.
    agent: Option<String>,
    /// Only jobs in this status: pending, dispatched, running, success, failed, timeout, cancelled, lost.
    status: Option<String>,
    /// Only runs of this script.
    script: Option<String>,
    /// Created at or after this RFC 3339 time.
    since: Option<String>,
    /// Created before this RFC 3339 time.
    until: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Page size, 1 to 500 (default 50).
    limit: Option<i64>,
}

/// Agent name -> online, for telling why pending jobs wait.
async fn agent_status(state: &AppState, tenant_id: &str) -> Result<HashMap<String, bool>> {
    Ok(db::agents::list(&state.db, tenant_id)
        .await?
        .into_iter()
        .map(|agent| (agent.name, agent.status == "online"))
        .collect())
}

/// List jobs, newest first.
#[utoipa::path(
    get, path = "/jobs", tag = "jobs",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of jobs", body = JobList),
        (status = 422, description = "A bad filter, time or limit"),
    ),
    security(("bearer" = [])),
)]
async fn list(state: web::Data<AppState>, caller: Caller, query: web::Query<ListQuery>) -> Result<HttpResponse> {
    let query = query.into_inner();
    if let Some(status) = &query.status {
        if JobStatus::parse(status).is_none() {
            return Err(Error::Validation(format!(
                "status must be one of {}",
                JobStatus::ALL.map(JobStatus::as_str).join(", ")
            )));
        }
    }
    let limit = paging::limit(query.limit)?;
    let filter = JobFilter {
        agent: query.agent,
        status: query.status,
        script: query.script,
        since: paging::time("since", &query.since)?,
        until: paging::time("until", &query.until)?,
        before_id: paging::cursor("job", query.cursor)?,
    };
    let jobs = db::jobs::list(&state.db, &caller.tenant_id, &filter, limit + 1).await?;
    let online = agent_status(&state, &caller.tenant_id).await?;
    let has_more = jobs.len() as i64 > limit;
    let page: Vec<_> = jobs.iter().take(limit as usize).collect();
    let next_cursor = if has_more {
        page.last().map(|job| job.id.clone())
    } else {
        None
    };
    Ok(HttpResponse::Ok().json(JobList {
        jobs: page
            .into_iter()
            .map(|job| job_view(job, online.get(&job.agent_name).copied()))
            .collect(),
        next_cursor,
    }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct GetQuery {
    /// Hold the request until the job is finished or this many seconds (at most 300)
    /// have passed, then answer the job as it stands. Absent or 0: answer at once.
    wait: Option<String>,
}

/// Longest `GET /jobs/{id}?wait=` holds a request.
const MAX_GET_WAIT_SECS: u64 = 300;

/// `?wait=`: whole seconds, 0 to [`MAX_GET_WAIT_SECS`].
fn parse_wait(value: Option<&str>) -> Result<Duration> {
    let Some(text) = value else {
        return Ok(Duration::ZERO);
    };
    let secs: u64 = text
        .trim()
        .parse()
        .ok()
        .filter(|secs| *secs <= MAX_GET_WAIT_SECS)
        .ok_or_else(|| Error::Validation(format!("wait must be whole seconds from 0 to {MAX_GET_WAIT_SECS}")))?;
    Ok(Duration::from_secs(secs))
}

/// One job and its result.
///
/// With `?wait=N` the request is held until the job is finished or N seconds have passed
/// (on whichever orchestrator replica it finishes), so scripts need not poll.
#[utoipa::path(
    get, path = "/jobs/{job_id}", tag = "jobs",
    params(("job_id" = String, Path, description = "The job's id"), GetQuery),
    responses(
        (status = 200, description = "The job", body = JobView),
        (status = 404, description = "No such job in your tenant"),
        (status = 422, description = "`wait` is not whole seconds from 0 to 300"),
    ),
    security(("bearer" = [])),
)]
async fn get(
    state: web::Data<AppState>,
    caller: Caller,
    job_id: web::Path<String>,
    query: web::Query<GetQuery>,
) -> Result<HttpResponse> {
    let wait = parse_wait(query.wait.as_deref())?;
    let job = if wait.is_zero() {
        db::jobs::get(&state.db, &caller.tenant_id, &job_id).await?
    } else {
        wait_for_completion(&state, &caller.tenant_id, &job_id, wait).await?
    };
    let online = if job.status == "pending" {
        db::agents::find(&state.db, &caller.tenant_id, &job.agent_name)
            .await?
            .map(|a| a.status == "online")
    } else {
        Some(true)
    };
    Ok(HttpResponse::Ok().json(job_view(&job, online)))
}

/// Cancel a job.
///
/// A pending job is cancelled at once; a running one is killed by its agent. Cancelling a
/// finished job leaves it as it is.
#[utoipa::path(
    post, path = "/jobs/{job_id}/cancel", tag = "jobs",
    params(("job_id" = String, Path, description = "The job's id")),
    responses(
        (status = 200, description = "The job after the cancel", body = JobView),
        (status = 404, description = "No such job in your tenant"),
    ),
    security(("bearer" = [])),
)]
async fn cancel(state: web::Data<AppState>, caller: Caller, job_id: web::Path<String>) -> Result<HttpResponse> {
    let job_id = job_id.into_inner();
    let scope = caller.scope();
    if !scope.tags.is_empty() || !scope.scripts.is_empty() {
        // A narrowed key cancels only what it could have started.
        let job = db::jobs::get(&state.db, &caller.tenant_id, &job_id).await?;
        let agent_tags = db::agents::find(&state.db, &caller.tenant_id, &job.agent_name)
            .await?
            .map(|agent| crate::views::agent_tags(&agent))
            .unwrap_or_default();
        let allowed = scope.allows_script(&job.script) && scope.allows_tags(&agent_tags);
        caller
            .require_in_scope(allowed, format_args!("job {job_id}"))
            .map_err(|error| caller.refused(&state, "job.cancel", job_id.clone(), error))?;
    }
    let view = tenant::ask(
        &state.tenants,
        &caller.tenant_id,
        messages::Cancel { job_id: job_id.clone() },
    )
    .await??;
    caller.did(&state, "job.cancel", job_id);
    Ok(HttpResponse::Ok().json(view))
}

/// `POST /fan-out`: one job per targeted agent.
#[derive(Serialize, utoipa::ToSchema)]
pub struct FanOutCreated {
    fanout_id: String,
    jobs: Vec<FanOutJob>,
    /// Targeted agents that got no job, and why (offline, script not in manifest, ...).
    skipped: Vec<Skipped>,
    /// The rollout's `max_concurrency` as a number of jobs (a percentage resolved against
    /// the targets); absent without one.
    #[serde(skip_serializing_if = "Option::is_none")]
    max_concurrency: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_errors: Option<i64>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Skipped {
    agent: String,
    reason: String,
}

/// Run a script on many agents.
///
/// Targets the agents listed and/or those carrying every tag listed; with `only_online`
/// (default true) offline agents are skipped. Rollout controls: `max_concurrency` (a
/// number or `"25%"`) keeps the rest waiting for a slot, in agent order; `max_errors`
/// cancels the jobs not yet handed out once that many failed.
#[utoipa::path(
    post, path = "/fan-out", tag = "jobs",
    request_body = FanOutRequest,
    responses(
        (status = 202, description = "Jobs queued", body = FanOutCreated),
        (status = 422, description = "Bad targets, script name, parameters or timeout"),
    ),
    security(("bearer" = [])),
)]
async fn fan_out(
    state: web::Data<AppState>,
    caller: Caller,
    JsonBody(request): JsonBody<FanOutRequest>,
) -> Result<HttpResponse> {
    if let Some(agents) = &request.agents {
        if agents.is_empty() || agents.len() > 10_000 {
            return Err(Error::Validation(
                "agents must list 1 to 10000 names (or be left out to target by tags)".into(),
            ));
        }
    }
    validate::script_name(&request.run_script)?;
    let scope = caller.scope();
    caller
        .require_in_scope(
            scope.allows_script(&request.run_script),
            format_args!("script {}", request.run_script),
        )
        .map_err(|error| caller.refused(&state, "fanout.create", request.run_script.clone(), error))?;
    let mut tags = request.tags.as_deref().map(validate::tags).transpose()?;
    if !scope.tags.is_empty() {
        // A key narrowed to tags fans out to the agents carrying them only.
        let all = tags.get_or_insert_with(Vec::new);
        all.extend(
            scope
                .tags
                .iter()
                .filter(|tag| !all.contains(tag))
                .cloned()
                .collect::<Vec<_>>(),
        );
    }
    let params = validate::params(request.params)?;
    let script = request.run_script.clone();
    let message = messages::FanOut {
        script: request.run_script,
        secret_params: secrets::validate(request.secret_params, &params)?,
        params,
        agents: request.agents,
        tags,
        only_online: request.only_online.unwrap_or(true),
        timeout_secs: validate::timeout(request.timeout)?,
        max_concurrency: validate::max_concurrency(request.max_concurrency)?,
        max_errors: validate::max_errors(request.max_errors)?,
    };
    let fanned = tenant::ask(&state.tenants, &caller.tenant_id, message).await??;
    state.audit.record(caller.audit(
        "fanout.create",
        fanned.fanout_id.clone(),
        crate::audit::Outcome::Ok,
        format!("{script} on {} agents", fanned.jobs.len()),
    ));
    Ok(HttpResponse::Accepted().json(FanOutCreated {
        fanout_id: fanned.fanout_id,
        jobs: fanned.jobs,
        max_concurrency: fanned.max_concurrency,
        max_errors: request.max_errors,
        skipped: fanned
            .skipped
            .into_iter()
            .map(|(agent, reason)| Skipped { agent, reason })
            .collect(),
    }))
}

/// Query of `GET /fan-out/{id}`, for the document; `FanOutQuery::parse` reads it (`mask`
/// may repeat, which serde's query extractor cannot take).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Read by `parse`, field by field; the struct documents the parameters.
struct FanOutQuery {
    /// `false`: progress only (summary and jobs), no outputs read: cheap, for polling.
    /// Default `true`.
    groups: Option<bool>,
    /// A regular expression (Rust `regex` syntax, linear time) whose matches are replaced by
    /// `<masked>` in every line before comparing and diffing, e.g. a timestamp or host name.
    /// Repeat for several (at most 10, each at most 512 characters).
    #[param(style = Form, explode)]
    mask: Option<Vec<String>>,
    /// Ignore white space at line ends and blank lines at the end. Default `false`.
    ignore_trailing_whitespace: Option<bool>,
    /// Unchanged lines around each change in the diffs, 0 to 20 (default 3).
    context: Option<u32>,
    /// Hold the request until every job is finished or this many seconds (at most 300)
    /// have passed, then answer (on whichever replica the jobs finish). Default 0.
    wait: Option<u64>,
}

impl FanOutQuery {
    /// The comparison asked for, and how long to wait for the fan-out to finish.
    fn parse(query: &str) -> Result<(fanout::Options, Duration)> {
        let mut options = fanout::Options::default();
        let mut wait = Duration::ZERO;
        for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
            match name.as_ref() {
                "wait" => wait = parse_wait(Some(&value))?,
                "mask" => options.masks.push(value.into_owned()),
                "groups" => options.groups = parse_bool("groups", &value)?,
                "ignore_trailing_whitespace" => {
                    options.ignore_trailing_whitespace = parse_bool("ignore_trailing_whitespace", &value)?
                }
                "context" => {
                    options.context = value
                        .parse()
                        .ok()
                        .filter(|lines| *lines <= fanout::MAX_CONTEXT)
                        .ok_or_else(|| {
                            Error::Validation(format!(
                                "context must be a whole number from 0 to {}",
                                fanout::MAX_CONTEXT
                            ))
                        })?
                }
                // A misspelt option silently ignored would give a comparison other than the
                // one asked for.
                other => {
                    return Err(Error::Validation(format!(
                    "unknown query parameter {other:?}; use groups, mask, ignore_trailing_whitespace, context or wait"
                )))
                }
            }
        }
        Ok((options, wait))
    }
}

fn parse_bool(name: &str, value: &str) -> Result<bool> {
    match value {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(Error::Validation(format!("{name} must be true or false"))),
    }
}

/// A fan-out's progress, and its agents grouped by outcome with diffs.
///
/// Finished jobs are grouped by (status, exit code, stdout, stderr) after normalisation
/// (`mask`, `ignore_trailing_whitespace`). The largest group is the baseline (a tie goes to
/// the group with the alphabetically first agent); every other group has a unified diff of
/// its first agent's stdout and stderr against the baseline's first agent's. Unfinished jobs
/// are listed in `unfinished`. With `groups=false` no output is read (for polling). With
/// `wait=N` the answer waits until every job is finished or N seconds have passed.
#[utoipa::path(
    get, path = "/fan-out/{id}", tag = "jobs",
    params(("id" = String, Path, description = "The fan-out's id"), FanOutQuery),
    responses(
        (status = 200, description = "The fan-out, its jobs and their outcome groups", body = fanout::FanOutStatus),
        (status = 404, description = "No such fan-out in your tenant"),
        (status = 422, description = "A bad mask (invalid, too long, too complex, matching empty text, more than 10), option value or unknown parameter"),
    ),
    security(("bearer" = [])),
)]
async fn get_fan_out(
    state: web::Data<AppState>,
    caller: Caller,
    fanout_id: web::Path<String>,
    request: HttpRequest,
) -> Result<HttpResponse> {
    let (options, wait) = FanOutQuery::parse(request.query_string())?;
    if !wait.is_zero() {
        // Progress only while waiting; the comparison once, at the end.
        let progress_only = fanout::Options {
            groups: false,
            ..fanout::Options::default()
        };
        state
            .watchers
            .wait_until(&fanout_id, wait, || async {
                let progress = fanout::status(&state.db, &caller.tenant_id, &fanout_id, progress_only.clone()).await?;
                Ok::<_, Error>((progress.done, ()))
            })
            .await?;
    }
    let status = fanout::status(&state.db, &caller.tenant_id, &fanout_id, options).await?;
    Ok(HttpResponse::Ok().json(status))
}
