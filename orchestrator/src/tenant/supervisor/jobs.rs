//! Job state changes: triggers and fan-outs create jobs (in the database before anyone
//! hears of them), agents start them and report results, people cancel them. Every
//! change is one conditional write (see `db::jobs`), so it happens once even when
//! replicas or retried requests race.

use super::agents::AgentEntry;
use super::targets::{self, Candidate, Selector};
use super::TenantSupervisor;
use crate::db::jobs::{CancelOutcome, CompleteOutcome, Completion, Handover, ResultWrite, StartOutcome};
use crate::db::models::{Agent, Fanout, Job};
use crate::db::{self};
use crate::error::{Error, Result};
use crate::secrets;
use crate::tenant::messages::{Cancel, FanOut, FannedOut, ReportResult, ReportResults, StartJob, Trigger, Triggered};
use crate::views::job_view;
use actix::prelude::*;
use serde_json::json;
use shared_protocol::api::{FanOutJob, JobView};
use shared_protocol::protocol::{
    BatchedAck, BatchedOutcome, BatchedResult, JobResultReport, ResultAck, ResultBatchAck, RunOutcome,
};
use shared_protocol::JobStatus;
use std::collections::HashMap;

pub(super) fn not_in_manifest(agent: &AgentEntry, script: &str) -> Error {
    let listed: Vec<&str> = agent.scripts.iter().map(|s| s.name.as_str()).collect();
    Error::forbidden(
        "script_not_allowed",
        format!(
            "script {script:?} is not in the manifest of agent {}; its manifest lists: [{}]",
            agent.row.name,
            listed.join(", ")
        ),
    )
}

impl Handler<Trigger> for TenantSupervisor {
    type Result = ResponseActFuture<Self, Result<Triggered>>;

    fn handle(&mut self, msg: Trigger, ctx: &mut Context<Self>) -> Self::Result {
        let agent = msg.agent.clone();
        self.with_agent_then(&agent, ctx, move |act, ctx| act.trigger(msg, ctx))
    }
}

impl TenantSupervisor {
    fn trigger(&mut self, msg: Trigger, ctx: &mut Context<Self>) -> ResponseActFuture<Self, Result<Triggered>> {
        let checked = (|| {
            let agent = self
                .agents
                .get(&msg.agent)
                .ok_or_else(|| Error::not_found(format!("agent {}", msg.agent)))?;
            if !msg.required_tags.iter().all(|tag| agent.tags.contains(tag)) {
                return Err(Error::forbidden(
                    "outside_key_scope",
                    format!(
                        "this API key's scope does not include agent {}: it lacks the tags {}",
                        msg.agent,
                        msg.required_tags.join(", ")
                    ),
                ));
            }
            if !agent.allows(&msg.script) {
                return Err(not_in_manifest(agent, &msg.script));
            }
            let mut job = self.new_job(&msg.agent, &msg.script, &msg.params, msg.timeout_secs, None)?;
            job.secret_params = secrets::encode(&msg.secret_params);
            Ok((job, agent.online()))
        })();
        // Fast path: nothing queued ahead and a poll parked here, so the job is written as
        // handed over (dispatched, or running for an agent that starts implicitly) and
        // given to the poll once committed.
        let direct = match &checked {
            Ok(_) => self.dispatch.direct_waiter(&msg.agent),
            Err(_) => None,
        };
        let written = checked.map(|(mut job, online)| {
            if let Some(waiter) = &direct {
                let now = job.created_at;
                waiter.handover().apply(&mut job, now);
            }
            (self.insert_job(job.clone(), ctx), job, online)
        });
        Box::pin(
            async move {
                let (committed, job, online) = written?;
                committed.await?;
                Ok(Triggered {
                    job,
                    agent_online: online,
                })
            }
            .into_actor(self)
            .map(move |result: Result<Triggered>, act, ctx| {
                let triggered = match result {
                    Ok(triggered) => triggered,
                    Err(error) => {
                        if let Some(waiter) = direct {
                            act.dispatch.put_back(&msg.agent, waiter);
                        }
                        return Err(error);
                    }
                };
                let agent = triggered.job.agent_name.clone();
                if let Some(waiter) = direct {
                    // The caller sees the job as queued: the agent has not confirmed it yet.
                    if waiter.handover() == Handover::Implicit {
                        act.started_implicitly(std::slice::from_ref(&triggered.job));
                    }
                    act.deliver(&agent, vec![triggered.job.clone()], Some(waiter), ctx);
                } else {
                    act.dispatch.queued(&agent);
                    act.pump(&agent, ctx);
                }
                Ok(triggered)
            }),
        )
    }
}

impl Handler<FanOut> for TenantSupervisor {
    type Result = ResponseActFuture<Self, Result<FannedOut>>;

    /// The targets are chosen from the agents as stored, not from the cache: an agent whose
    /// registration just committed (and so shows online to everyone) is in, even while this
    /// supervisor has yet to take in that registration's answer.
    fn handle(&mut self, msg: FanOut, _: &mut Context<Self>) -> Self::Result {
        let (db, tenant) = (self.db.clone(), self.tenant_id.clone());
        Box::pin(
            async move { db::agents::list(&db, &tenant).await }
                .into_actor(self)
                .then(move |rows, act, _| match rows {
                    Ok(rows) => act.fan_out(msg, rows),
                    Err(error) => Box::pin(fut::ready(Err(error))),
                }),
        )
    }
}

impl TenantSupervisor {
    fn fan_out(&mut self, msg: FanOut, rows: Vec<Agent>) -> ResponseActFuture<Self, Result<FannedOut>> {
        let fanout_id = db::new_id("fan");
        let selector = Selector {
            agents: msg.agents.clone(),
            tags: msg.tags.clone().unwrap_or_default(),
            only_online: msg.only_online,
        };
        let stored: HashMap<String, AgentEntry> = rows
            .into_iter()
            .map(|row| (row.name.clone(), AgentEntry::new(row)))
            .collect();
        let selection = targets::select(|name| stored.get(name), stored.values(), &selector, &msg.script);
        let skipped = selection.skipped;
        let max_concurrency = msg.max_concurrency.map(|c| c.resolve(selection.targets.len()));
        let jobs: Result<Vec<Job>> = selection
            .targets
            .iter()
            .enumerate()
            .map(|(index, agent)| {
                let mut job = self.new_job(
                    agent,
                    &msg.script,
                    &msg.params,
                    msg.timeout_secs,
                    Some(fanout_id.clone()),
                )?;
                job.secret_params = secrets::encode(&msg.secret_params);
                if let Some(slots) = max_concurrency.filter(|&slots| index >= slots as usize) {
                    job.awaiting_slot = true;
                    job.reason = Some(format!("waiting for a rollout slot (max_concurrency {slots})"));
                }
                Ok(job)
            })
            .collect();
        let fanout = Fanout {
            id: fanout_id.clone(),
            tenant_id: self.tenant_id.clone(),
            script: msg.script.clone(),
            params: serde_json::to_string(&msg.params).unwrap_or_else(|_| "{}".into()),
            selector: json!({"agents": msg.agents, "tags": msg.tags, "only_online": msg.only_online}).to_string(),
            created_at: db::now_ms(),
            max_concurrency,
            max_errors: msg.max_errors,
            secret_params: secrets::encode(&msg.secret_params),
        };
        let db = self.db.clone();
        Box::pin(
            async move {
                let jobs = jobs?;
                if jobs.is_empty() {
                    let why: Vec<String> = skipped.iter().map(|(agent, why)| format!("{agent}: {why}")).collect();
                    return Err(Error::Validation(format!(
                        "no agent matches this fan-out{}",
                        if why.is_empty() {
                            String::new()
                        } else {
                            format!(" ({})", why.join("; "))
                        }
                    )));
                }
                db::jobs::insert_fanout(&db, &fanout, &jobs).await?;
                Ok((jobs, skipped))
            }
            .into_actor(self)
            .map(move |result, act, ctx| {
                let (jobs, skipped) = result?;
                for job in jobs.iter().filter(|job| !job.awaiting_slot) {
                    act.dispatch.queued(&job.agent_name);
                    act.pump(&job.agent_name, ctx);
                }
                Ok(FannedOut {
                    fanout_id,
                    max_concurrency,
                    jobs: jobs
                        .into_iter()
                        .map(|j| FanOutJob {
                            agent: j.agent_name,
                            job_id: j.id,
                        })
                        .collect(),
                    skipped,
                })
            }),
        )
    }
}

impl Handler<StartJob> for TenantSupervisor {
    type Result = ResponseActFuture<Self, Result<()>>;

    fn handle(&mut self, msg: StartJob, ctx: &mut Context<Self>) -> Self::Result {
        let agent = msg.agent.clone();
        self.with_agent_then(&agent, ctx, move |act, _| {
            let checked = act.authorized_agent(&msg.agent, &msg.api_key_id).map(|_| ());
            let (db, tenant) = (act.db.clone(), act.tenant_id.clone());
            let metrics = act.metrics.clone();
            Box::pin(
                async move {
                    checked?;
                    match db::jobs::mark_started(&db, &tenant, &msg.agent, &msg.job_id, msg.started_at_ms).await? {
                        StartOutcome::Started { created_at } => {
                            // Measured on this clock (the one that stamped created_at) when the
                            // report arrives, so an agent's clock skew cannot distort it.
                            if let Some(created_at) = created_at {
                                metrics.dispatch_latency(db::now_ms() - created_at);
                            }
                            Ok(())
                        }
                        StartOutcome::Refused(why) => Err(Error::conflict(
                            "job_not_startable",
                            format!("do not run job {}: {why}", msg.job_id),
                        )),
                    }
                }
                .into_actor(act),
            )
        })
    }
}

impl Handler<ReportResult> for TenantSupervisor {
    type Result = ResponseActFuture<Self, Result<ResultAck>>;

    fn handle(&mut self, msg: ReportResult, ctx: &mut Context<Self>) -> Self::Result {
        let agent = msg.report.agent_name.clone();
        self.with_agent_then(&agent, ctx, move |act, ctx| {
            let job_id = msg.job_id.clone();
            let authorized = act
                .authorized_agent(&msg.report.agent_name, &msg.api_key_id)
                .map(|_| ());
            let stored = authorized.map(|()| act.store_result(result_write(msg.job_id, msg.report), ctx));
            Box::pin(
                async move { stored?.await }
                    .into_actor(act)
                    .map(move |outcome, act, _| match act.result_settled(outcome?) {
                        Ok(duplicate) => Ok(ResultAck {
                            status: "ok".into(),
                            duplicate,
                        }),
                        Err(why) => Err(Error::conflict(
                            "result_refused",
                            format!("result for job {job_id} refused: {why}"),
                        )),
                    }),
            )
        })
    }
}

impl Handler<ReportResults> for TenantSupervisor {
    type Result = ResponseActFuture<Self, Result<ResultBatchAck>>;

    fn handle(&mut self, msg: ReportResults, ctx: &mut Context<Self>) -> Self::Result {
        let agent = msg.agent.clone();
        self.with_agent_then(&agent, ctx, move |act, ctx| {
            let authorized = act.authorized_agent(&msg.agent, &msg.api_key_id).map(|_| ());
            let mut pending = Vec::with_capacity(msg.results.len());
            if authorized.is_ok() {
                for BatchedResult { job_id, mut report } in msg.results {
                    // The batch speaks for one agent; each result is that agent's.
                    report.agent_name = msg.agent.clone();
                    let stored = act.store_result(result_write(job_id.clone(), report), ctx);
                    pending.push((job_id, stored));
                }
            }
            Box::pin(
                async move {
                    authorized?;
                    let mut outcomes = Vec::with_capacity(pending.len());
                    for (job_id, stored) in pending {
                        outcomes.push((job_id, stored.await));
                    }
                    Ok(outcomes)
                }
                .into_actor(act)
                .map(|outcomes: Result<Vec<(String, Result<CompleteOutcome>)>>, act, _| {
                    let mut results = Vec::new();
                    for (job_id, outcome) in outcomes? {
                        let (outcome, message) = match act.result_settled(outcome?) {
                            Ok(false) => (BatchedOutcome::Stored, None),
                            Ok(true) => (BatchedOutcome::Duplicate, None),
                            Err(why) => (BatchedOutcome::Refused, Some(why)),
                        };
                        results.push(BatchedAck {
                            job_id,
                            outcome,
                            message,
                        });
                    }
                    Ok(ResultBatchAck { results })
                }),
            )
        })
    }
}

/// An agent's report as the row it writes.
fn result_write(job_id: String, report: JobResultReport) -> ResultWrite {
    let status = match report.outcome {
        RunOutcome::Success => JobStatus::Success,
        RunOutcome::Failed | RunOutcome::Rejected => JobStatus::Failed,
        RunOutcome::Timeout => JobStatus::Timeout,
        RunOutcome::Cancelled => JobStatus::Cancelled,
    };
    let reason = if report.outcome == RunOutcome::Rejected {
        Some(format!(
            "refused by the agent: {}",
            report.reason.as_deref().unwrap_or("not allowed")
        ))
    } else {
        report.reason
    };
    ResultWrite {
        agent: report.agent_name,
        job_id,
        completion: Completion {
            status,
            exit_code: report.exit_code,
            stdout: report.stdout,
            stderr: report.stderr,
            stdout_truncated: report.stdout_truncated,
            stderr_truncated: report.stderr_truncated,
            duration_ms: report.duration_ms.min(i64::MAX as u64) as i64,
            started_at: report.started_at_ms,
            completed_at: report.completed_at_ms,
            reason,
        },
    }
}

impl TenantSupervisor {
    /// Jobs were started by their handover (an implicit start): how long each waited.
    pub(super) fn started_implicitly(&self, jobs: &[Job]) {
        let now = db::now_ms();
        for job in jobs {
            self.metrics.dispatch_latency(now - job.created_at);
        }
    }

    /// After a result's write: a stored one is counted, published and its waiters woken.
    /// Ok(duplicate?) or Err(why it was refused).
    fn result_settled(&mut self, outcome: CompleteOutcome) -> std::result::Result<bool, String> {
        match outcome {
            CompleteOutcome::Stored(job) => {
                if let Some(duration_ms) = job.duration_ms {
                    self.metrics.job_duration(duration_ms);
                }
                self.job_finished(&job);
                Ok(false)
            }
            CompleteOutcome::Duplicate => Ok(true),
            CompleteOutcome::Refused(why) => Err(why),
        }
    }
}

impl Handler<Cancel> for TenantSupervisor {
    type Result = ResponseActFuture<Self, Result<JobView>>;

    fn handle(&mut self, msg: Cancel, _: &mut Context<Self>) -> Self::Result {
        let db = self.db.clone();
        let tenant = self.tenant_id.clone();
        Box::pin(
            async move { db::jobs::cancel(&db, &tenant, &msg.job_id, "cancelled by request", db::now_ms()).await }
                .into_actor(self)
                .map(|result, act, _| {
                    Ok(match result? {
                        CancelOutcome::Cancelled(job) => {
                            act.job_finished(&job);
                            job_view(&job, None)
                        }
                        CancelOutcome::Requested(job) => {
                            // If the agent's poll is parked on another replica, that replica
                            // hears of the order from the database and sends it.
                            act.dispatch.send_cancel(&job.agent_name, &job.id);
                            job_view(&job, None)
                        }
                        CancelOutcome::AlreadyFinished(job) => job_view(&job, None),
                    })
                }),
        )
    }
}
